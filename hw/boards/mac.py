"""1000BASE-T MAC for the board tops: GMII/RGMII receive and transmit, 64-bit packet streams.

Receive (:class:`MacRx`): preamble and SFD stripped, FCS checked and removed, frames with a bad
FCS, ``rx_er``, runts (< 64 bytes with FCS) or giants (> ``max_frame``) dropped and counted; the
frame crosses from the PHY's receive clock into the core clock through an Amaranth async FIFO
and leaves as the core's packet stream (:func:`hftaccel.rtl.stream.packet_layout`, AXI4-Stream
byte order). A frame that started into the FIFO and then fails ends with ``abort`` set (the
core's :class:`hftaccel.rtl.eth.EthRx` drops it); a frame that finds the FIFO full is cut the
same way and counted as an overflow.

Transmit (:class:`MacTx`): store and forward (a frame is sent once all of it has crossed into the
transmit clock, so the wire never underruns), preamble/SFD, padding to 60 bytes, FCS generated,
inter-frame gap of ``ifg`` byte times. With ``udp=True`` each packet on ``i`` is the payload of a
UDP/IPv4 datagram and the MAC prepends the 42-byte Ethernet II + IPv4 + UDP header from its
address ports (IPv4 header checksum computed, UDP checksum 0 as RFC 768 allows): that is how the
board sends the core's SoupBinTCP-framed OUCH orders to the host.

PHY side: :class:`RgmiiRx` / :class:`RgmiiTx` turn RGMII (4 bits on both clock edges, ``ctl`` =
``dv`` on the rising and ``dv ^ er`` on the falling edge) into GMII bytes and back, through the
platform's DDR I/O buffers (ECP5 ``IDDRX1F``/``ODDRX1F``) on a board, or through rising- and
falling-edge flip-flops when ``pads`` is None (simulation). The PHYs are expected to add the
RGMII clock skew themselves (RGMII-ID).

Counters are 32-bit, kept in the clock domain that sees the event and carried to the core clock
as Gray code through two-flop synchronizers (one bit changes per increment).

Source: IEEE 802.3 clauses 3 (frame, FCS: CRC-32 0x04C11DB7 reflected, residue 0xDEBB20E3) and
35 (GMII); RGMII v2.0 (HP/Marvell); RFC 791 / RFC 1071 (IPv4 header checksum); RFC 768 (UDP).
"""

from amaranth.hdl import Array, Cat, ClockDomain, ClockSignal, Const, DomainRenamer, Module, \
    Mux, Signal, unsigned
from amaranth.lib import io, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.fifo import AsyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hftaccel.rtl.stream import BEAT_BYTES, keep_count, keep_mask, packet_layout

__all__ = ["crc32_update", "PREAMBLE", "SFD", "FCS_RESIDUE", "MIN_FRAME", "UDP_HEADER_BYTES",
           "GmiiRx", "GmiiTx", "MacRx", "MacTx", "RgmiiRx", "RgmiiTx"]

PREAMBLE = 0x55                 # 7 bytes of it, then the SFD
SFD = 0xD5
FCS_RESIDUE = 0xDEBB20E3        # CRC register after a good frame's FCS went through it
_CRC_POLY = 0xEDB88320          # 0x04C11DB7 bit-reversed
MIN_FRAME = 64                  # bytes with FCS
UDP_HEADER_BYTES = 42           # Ethernet II 14 + IPv4 20 + UDP 8


def _crc_masks():
    """For each bit of the next CRC register: the mask of (crc bits 0..31, data bits 32..39)
    whose XOR it is, for one byte (reflected CRC-32, LSB first)."""
    state = [1 << k for k in range(32)]
    data = [1 << (32 + k) for k in range(8)]
    for k in range(8):
        state[k] ^= data[k]
    for _ in range(8):
        lsb = state[0]
        state = state[1:] + [0]
        for k in range(32):
            if _CRC_POLY >> k & 1:
                state[k] ^= lsb
    return state


_MASKS = _crc_masks()


def crc32_update(crc, byte):
    """Next value of the (non-inverted) Ethernet CRC register after ``byte``: a 32-bit value."""
    bits = Cat(crc, byte)
    out = []
    for mask in _MASKS:
        terms = [bits[k] for k in range(40) if mask >> k & 1]
        acc = terms[0]
        for t in terms[1:]:
            acc = acc ^ t
        out.append(acc)
    return Cat(*out)


class _GrayCount(wiring.Component):
    """A 32-bit event counter in the ``src`` domain, read in ``sync`` through Gray code (four
    ``sync`` cycles late)."""

    inc: In(1)
    value: Out(32)

    def __init__(self, src: str):
        self._src = src
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        binary = Signal(32)
        gray = Signal(32)
        with m.If(self.inc):
            m.d[self._src] += [binary.eq(binary + 1),
                               gray.eq((binary + 1) ^ ((binary + 1) >> 1))]
        if self._src == "sync":
            m.d.comb += self.value.eq(binary)
            return m
        synced = Signal(32)
        m.submodules.sync = FFSynchronizer(gray, synced, o_domain="sync", stages=2)
        # Gray -> binary, registered so that it is not in series with whatever reads the count
        # (the register bank's read multiplexer)
        # (prefix XOR b ^= b >> 1, 2, 4, 8, 16 in two registered halves: a 32-input XOR in
        # one cycle is routing-bound below 156 MHz on ECP5)
        half = Signal(32)
        value = synced
        for shift in (1, 2):
            value = value ^ (value >> shift)
        m.d.sync += half.eq(value)
        value = half
        for shift in (4, 8, 16):
            value = value ^ (value >> shift)
        m.d.sync += self.value.eq(value)
        return m


# ----------------------------------------------------------------------------- GMII engines

class GmiiRx(wiring.Component):
    """GMII receive engine (its own clock is ``sync``; rename it to the PHY's receive clock).

    Attributes
    ----------
    rxd : In(8), rx_dv : In(1), rx_er : In(1)
        GMII receive data, data valid, receive error.
    o : Out(stream.Signature(packet_layout()))
        Frames without preamble, SFD and FCS; ``o.ready`` low means no room (the frame is cut
        with ``abort`` and counted as an overflow: the wire cannot wait).
    frame, fcs_error, error, overflow : Out(1)
        One-cycle event strobes: a good frame was delivered; a frame was dropped for its FCS;
        for ``rx_er``, a runt or a giant; for lack of room.

    Parameters
    ----------
    max_frame : int
        Longest frame accepted, bytes with FCS (default 1522: 1500-byte payload, one VLAN tag).
    """

    rxd: In(8)
    rx_dv: In(1)
    rx_er: In(1)
    o: Out(stream.Signature(packet_layout()))
    frame: Out(1)
    fcs_error: Out(1)
    error: Out(1)
    overflow: Out(1)

    def __init__(self, *, max_frame: int = 1522):
        if not isinstance(max_frame, int) or not MIN_FRAME <= max_frame <= 16383:
            raise ValueError(f"max_frame must be an integer in {MIN_FRAME}..16383, "
                             f"not {max_frame!r}")
        self.max_frame = max_frame
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        # register the PHY inputs once (timing), then decode
        d, dv, er, dv_prev = Signal(8), Signal(), Signal(), Signal()
        m.d.sync += [d.eq(self.rxd), dv.eq(self.rx_dv), er.eq(self.rx_er), dv_prev.eq(dv)]

        crc = Signal(32, init=0xFFFFFFFF)
        n = Signal(range(self.max_frame + 2))       # bytes after the SFD, saturating
        dly = Signal(32)                            # the last 4 bytes: FCS candidates
        bad = Signal()                              # rx_er or giant
        cut = Signal()                              # overflow: this frame lost a beat
        cur = Signal(64)
        cnt = Signal(range(BEAT_BYTES + 1))         # bytes in cur
        sent = Signal()                             # a beat of this frame went out

        push = Signal()
        push_last = Signal()
        push_abort = Signal()
        m.d.comb += [self.o.valid.eq(push),
                     self.o.payload.data.eq(cur),
                     self.o.payload.keep.eq(keep_mask(cnt)),
                     self.o.payload.last.eq(push_last),
                     self.o.payload.abort.eq(push_abort)]

        with m.FSM(name="rx"):
            with m.State("IDLE"):
                m.d.sync += [crc.eq(0xFFFFFFFF), n.eq(0), bad.eq(0), cut.eq(0), cnt.eq(0),
                             sent.eq(0)]
                with m.If(dv & (d == SFD)):
                    m.next = "DATA"
                with m.Elif(dv & (d != PREAMBLE)):
                    m.next = "SKIP"
            with m.State("SKIP"):                    # no SFD: ignore until the line is idle
                with m.If(~dv):
                    m.next = "IDLE"
            with m.State("DATA"):
                with m.If(dv):
                    m.d.sync += [crc.eq(crc32_update(crc, d)), dly.eq(Cat(dly[8:], d))]
                    with m.If(n <= self.max_frame):
                        m.d.sync += n.eq(n + 1)
                    with m.Else():
                        m.d.sync += bad.eq(1)
                    with m.If(er):
                        m.d.sync += bad.eq(1)
                    with m.If(n >= 4):              # dly[0:8] is now surely not FCS
                        emit = dly[:8]
                        with m.If(cnt == BEAT_BYTES):
                            m.d.comb += push.eq(~cut)
                            with m.If(~cut):
                                with m.If(self.o.ready):
                                    m.d.sync += sent.eq(1)
                                with m.Else():
                                    m.d.sync += cut.eq(1)
                            m.d.sync += [cur.eq(emit), cnt.eq(1)]
                        with m.Else():
                            m.d.sync += [cur.word_select(cnt, 8).eq(emit), cnt.eq(cnt + 1)]
                with m.Else():
                    m.next = "END"
            with m.State("END"):
                fcs_bad = crc != FCS_RESIDUE
                short = n < MIN_FRAME
                failed = fcs_bad | short | bad
                with m.If(cut | ~(sent | (cnt != 0)) | (failed & ~sent)):
                    # nothing out yet and dropped, or already cut: no final beat owed ...
                    with m.If(cut & sent):
                        # ... except that a cut frame must still be closed downstream
                        m.next = "CLOSE"
                    with m.Else():
                        m.next = "IDLE"
                    m.d.comb += [self.overflow.eq(cut),
                                 self.fcs_error.eq(~cut & fcs_bad & ~short & ~bad),
                                 self.error.eq(~cut & (short | bad))]
                with m.Else():
                    m.d.comb += [push.eq(1), push_last.eq(1), push_abort.eq(failed)]
                    with m.If(self.o.ready):
                        m.next = "IDLE"
                        m.d.comb += [self.frame.eq(~failed),
                                     self.fcs_error.eq(fcs_bad & ~short & ~bad),
                                     self.error.eq(short | bad)]
                    with m.Else():
                        m.next = "CLOSE"
                        m.d.comb += self.overflow.eq(1)
            with m.State("CLOSE"):                  # owe an aborting last beat
                m.d.sync += cnt.eq(0)
                with m.If(dv & ~dv_prev):           # a frame starts meanwhile: lost too
                    m.d.comb += self.overflow.eq(1)
                m.d.comb += [push.eq(1), push_last.eq(1), push_abort.eq(1),
                             self.o.payload.keep.eq(0)]
                with m.If(self.o.ready):
                    m.next = "SKIP"
        return m


class GmiiTx(wiring.Component):
    """GMII transmit engine (its own clock is ``sync``; rename it to the transmit clock).

    Attributes
    ----------
    i : In(stream.Signature(packet_layout()))
        Frame beats without FCS (``udp=False``) or UDP payload beats (``udp=True``); a frame is
        only started once ``start`` is seen, and then its beats must be available on ``i``
        without gaps (store and forward, see :class:`MacTx`).
    start : In(1), length : In(16), discard : In(1)
        A whole frame of ``length`` bytes is ready on ``i``; ``discard``: drop it unsent.
    start_ack : Out(1)
        ``start`` was taken this cycle.
    txd : Out(8), tx_en : Out(1), tx_er : Out(1)
        GMII transmit data, enable, error.
    dst_mac, src_mac : In(48); src_ip, dst_ip : In(32); src_port, dst_port : In(16)
        Header fields, ``udp=True`` only (quasi-static: change them while no frame is sent).
    sent, underflow : Out(1)
        Event strobes: a frame finished; a beat was missing mid-frame (sent with ``tx_er``).

    Parameters
    ----------
    udp : bool
        Prepend the Ethernet II / IPv4 / UDP header.
    ifg : int
        Inter-frame gap, byte times (12 minimum by IEEE 802.3).
    """

    def __init__(self, *, udp: bool = False, ifg: int = 12):
        if not isinstance(ifg, int) or ifg < 12:
            raise ValueError(f"ifg must be an integer >= 12 byte times, not {ifg!r}")
        self.udp, self.ifg = bool(udp), ifg
        members = {
            "i": In(stream.Signature(packet_layout())),
            "start": In(1), "length": In(16), "discard": In(1), "start_ack": Out(1),
            "txd": Out(8), "tx_en": Out(1), "tx_er": Out(1),
            "sent": Out(1), "underflow": Out(1),
        }
        if self.udp:
            members.update({"dst_mac": In(48), "src_mac": In(48), "src_ip": In(32),
                            "dst_ip": In(32), "src_port": In(16), "dst_port": In(16)})
        super().__init__(members)

    def _header(self, m, length):
        """The 42 header bytes (wire order) and the IPv4 checksum pipeline."""
        total = Signal(16)
        udp_len = Signal(16)
        m.d.sync += [total.eq(length + 28), udp_len.eq(length + 8)]
        words = [0x4500, total, 0x0000, 0x4000, 0x4011,
                 self.src_ip[16:], self.src_ip[:16], self.dst_ip[16:], self.dst_ip[:16]]
        s1 = Signal(20)
        s2 = Signal(16)
        acc = Const(0, 20)
        for w in words:
            acc = acc + w
        m.d.sync += [s1.eq(acc), s2.eq(~(s1[:16] + s1[16:] + ((s1[:16] + s1[16:]) >> 16)))]

        def be(value, nbytes):
            return [value[8 * (nbytes - 1 - k):8 * (nbytes - k)] for k in range(nbytes)]
        hdr = (be(self.dst_mac, 6) + be(self.src_mac, 6) + be(Const(0x0800, 16), 2)
               + be(Const(0x4500, 16), 2) + be(total, 2) + be(Const(0, 16), 2)
               + be(Const(0x4000, 16), 2) + be(Const(0x4011, 16), 2) + be(s2, 2)
               + be(self.src_ip, 4) + be(self.dst_ip, 4)
               + be(self.src_port, 2) + be(self.dst_port, 2) + be(udp_len, 2)
               + be(Const(0, 16), 2))
        assert len(hdr) == UDP_HEADER_BYTES
        return Array(hdr)

    def elaborate(self, platform):
        m = Module()
        crc = Signal(32, init=0xFFFFFFFF)
        cnt = Signal(16)              # bytes of the frame after the SFD / of a state
        length = Signal(16)
        beat = Signal(64)
        nbytes = Signal(range(BEAT_BYTES + 1))
        blast = Signal()
        idx = Signal(range(BEAT_BYTES))
        have = Signal()               # beat holds a valid beat
        byte = Signal(8)
        en = Signal()
        err = Signal()
        m.d.sync += [self.txd.eq(byte), self.tx_en.eq(en), self.tx_er.eq(err)]
        hdr = self._header(m, length) if self.udp else None

        def frame_byte(value):
            m.d.comb += [byte.eq(value), en.eq(1)]
            m.d.sync += [crc.eq(crc32_update(crc, byte)), cnt.eq(cnt + 1)]

        def load():
            m.d.comb += self.i.ready.eq(1)
            m.d.sync += [beat.eq(self.i.payload.data), nbytes.eq(keep_count(self.i.payload.keep)),
                         blast.eq(self.i.payload.last), idx.eq(0), have.eq(self.i.valid)]

        with m.FSM(name="tx"):
            with m.State("IDLE"):
                m.d.sync += [crc.eq(0xFFFFFFFF), cnt.eq(0), have.eq(0)]
                with m.If(self.start):
                    m.d.comb += self.start_ack.eq(1)
                    m.d.sync += length.eq(self.length)
                    with m.If(self.discard):
                        m.next = "DISCARD"
                    with m.Else():
                        m.next = "PRE"
            with m.State("DISCARD"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid & self.i.payload.last):
                    m.next = "IDLE"
            with m.State("PRE"):
                m.d.comb += [byte.eq(Mux(cnt == 7, SFD, PREAMBLE)), en.eq(1)]
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(cnt == 0):
                    load()
                with m.If(cnt == 7):
                    m.d.sync += cnt.eq(0)
                    m.next = "HDR" if self.udp else "DATA"
            if self.udp:
                with m.State("HDR"):
                    frame_byte(hdr[cnt[:6]])
                    with m.If(cnt == UDP_HEADER_BYTES - 1):
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(~have):
                    # store and forward makes this impossible unless the producer broke it
                    m.d.comb += [byte.eq(0), en.eq(1), err.eq(1), self.underflow.eq(1)]
                    m.next = "ABORT"
                with m.Else():
                    frame_byte(beat.word_select(idx, 8))
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == nbytes - 1):
                        with m.If(blast):
                            m.d.sync += have.eq(0)
                            m.next = "PAD"
                        with m.Else():
                            load()
            with m.State("ABORT"):                  # drain the rest of the frame unsent
                m.d.comb += self.i.ready.eq(~(have & blast))
                with m.If((self.i.valid & self.i.payload.last) | (have & blast)):
                    m.d.sync += [cnt.eq(0), have.eq(0)]
                    m.next = "IFG"
            with m.State("PAD"):
                with m.If(cnt < MIN_FRAME - 4):
                    frame_byte(Const(0, 8))
                with m.Else():
                    m.next = "FCS"
                    m.d.comb += [byte.eq(~crc[:8]), en.eq(1)]
                    m.d.sync += cnt.eq(1)
            with m.State("FCS"):
                m.d.comb += [byte.eq(~crc.word_select(cnt[:2], 8)), en.eq(1)]
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(cnt == 3):
                    m.d.sync += cnt.eq(0)
                    m.d.comb += self.sent.eq(1)
                    m.next = "IFG"
            with m.State("IFG"):
                m.d.sync += cnt.eq(cnt + 1)
                with m.If(cnt == self.ifg - 1):
                    m.next = "IDLE"
        return m


# ----------------------------------------------------------------------------- with the CDC

class MacRx(wiring.Component):
    """GMII receive engine in ``domain``, frames delivered in ``sync`` through an async FIFO.

    Attributes
    ----------
    rxd : In(8), rx_dv : In(1), rx_er : In(1)
        GMII, in ``domain``.
    o : Out(stream.Signature(packet_layout()))
        Frames (``sync``).
    frames, fcs_errors, errors, overflows : Out(32)
        Counters (``sync``): good frames delivered; dropped for a bad FCS; for ``rx_er``,
        runts and giants; cut for lack of FIFO room.

    Parameters
    ----------
    domain : str
        The receive clock domain (the PHY's RX clock).
    fifo_depth : int
        Beats of the CDC FIFO (256 holds a 2 KiB frame).
    max_frame : int
        As :class:`GmiiRx`.
    """

    rxd: In(8)
    rx_dv: In(1)
    rx_er: In(1)
    o: Out(stream.Signature(packet_layout()))
    frames: Out(32)
    fcs_errors: Out(32)
    errors: Out(32)
    overflows: Out(32)

    def __init__(self, *, domain: str = "eth_rx", fifo_depth: int = 256, max_frame: int = 1522):
        self.domain, self.fifo_depth, self.max_frame = domain, fifo_depth, max_frame
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        eng = m.submodules.engine = DomainRenamer(self.domain)(GmiiRx(max_frame=self.max_frame))
        width = packet_layout().size
        fifo = m.submodules.fifo = AsyncFIFOBuffered(width=width, depth=self.fifo_depth,
                                                     r_domain="sync", w_domain=self.domain)
        m.d.comb += [eng.rxd.eq(self.rxd), eng.rx_dv.eq(self.rx_dv), eng.rx_er.eq(self.rx_er),
                     fifo.w_en.eq(eng.o.valid), fifo.w_data.eq(eng.o.payload.as_value()),
                     eng.o.ready.eq(fifo.w_rdy),
                     self.o.valid.eq(fifo.r_rdy), self.o.payload.eq(fifo.r_data),
                     fifo.r_en.eq(self.o.ready)]
        for name, strobe in (("frames", eng.frame), ("fcs_errors", eng.fcs_error),
                             ("errors", eng.error), ("overflows", eng.overflow)):
            c = m.submodules[f"count_{name}"] = _GrayCount(self.domain)
            m.d.comb += [c.inc.eq(strobe), getattr(self, name).eq(c.value)]
        return m


class MacTx(wiring.Component):
    """Frames (or UDP payloads) from ``sync`` sent by a GMII transmit engine in ``domain``.

    Attributes
    ----------
    i : In(stream.Signature(packet_layout()))
        Frames without FCS, or UDP payloads with ``udp=True`` (``sync``). A packet ending with
        ``abort`` is dropped. At most ``8 * fifo_depth`` bytes a packet.
    txd : Out(8), tx_en : Out(1), tx_er : Out(1)
        GMII, in ``domain``.
    dst_mac, src_mac, src_ip, dst_ip, src_port, dst_port : In
        ``udp=True`` only: the header (quasi-static, from ``sync`` registers).
    frames, underflows : Out(32)
        Counters (``sync``).

    Parameters
    ----------
    domain : str
        The transmit clock domain (125 MHz for 1000BASE-T).
    udp, ifg : as :class:`GmiiTx`.
    fifo_depth : int
        Beats of the CDC FIFO.
    """

    def __init__(self, *, domain: str = "eth_tx", udp: bool = False, ifg: int = 12,
                 fifo_depth: int = 64):
        self.domain, self.udp, self.ifg, self.fifo_depth = domain, udp, ifg, fifo_depth
        members = {"i": In(stream.Signature(packet_layout())),
                   "txd": Out(8), "tx_en": Out(1), "tx_er": Out(1),
                   "frames": Out(32), "underflows": Out(32)}
        if udp:
            members.update({"dst_mac": In(48), "src_mac": In(48), "src_ip": In(32),
                            "dst_ip": In(32), "src_port": In(16), "dst_port": In(16)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        eng = m.submodules.engine = DomainRenamer(self.domain)(GmiiTx(udp=self.udp,
                                                                       ifg=self.ifg))
        width = packet_layout().size
        data = m.submodules.data = AsyncFIFOBuffered(width=width, depth=self.fifo_depth,
                                                     r_domain=self.domain, w_domain="sync")
        lens = m.submodules.lens = AsyncFIFOBuffered(width=17, depth=8,
                                                     r_domain=self.domain, w_domain="sync")
        # sync side: beats into the data FIFO, the packet's length (and abort) when it ends
        count = Signal(16)
        fire = self.i.valid & self.i.ready
        nbytes = keep_count(self.i.payload.keep)
        m.d.comb += [self.i.ready.eq(data.w_rdy & lens.w_rdy),
                     data.w_en.eq(fire), data.w_data.eq(self.i.payload.as_value()),
                     lens.w_en.eq(fire & self.i.payload.last),
                     lens.w_data.eq(Cat((count + nbytes)[:16], self.i.payload.abort))]
        with m.If(fire):
            m.d.sync += count.eq(Mux(self.i.payload.last, 0, count + nbytes))
        # transmit side
        m.d.comb += [eng.i.valid.eq(data.r_rdy), eng.i.payload.eq(data.r_data),
                     data.r_en.eq(eng.i.ready),
                     eng.start.eq(lens.r_rdy), eng.length.eq(lens.r_data[:16]),
                     eng.discard.eq(lens.r_data[16]), lens.r_en.eq(eng.start_ack),
                     self.txd.eq(eng.txd), self.tx_en.eq(eng.tx_en), self.tx_er.eq(eng.tx_er)]
        if self.udp:
            for name in ("dst_mac", "src_mac", "src_ip", "dst_ip", "src_port", "dst_port"):
                m.d.comb += getattr(eng, name).eq(getattr(self, name))
        for name, strobe in (("frames", eng.sent), ("underflows", eng.underflow)):
            c = m.submodules[f"count_{name}"] = _GrayCount(self.domain)
            m.d.comb += [c.inc.eq(strobe), getattr(self, name).eq(c.value)]
        return m


# ----------------------------------------------------------------------------- RGMII

def _ctl_name(pads, base):
    """amaranth-boards spells the control pin ``rx_ctl`` on one Versa PHY, ``rx_ctrl`` on the
    other."""
    for name in (f"{base}_ctl", f"{base}_ctrl"):
        if hasattr(pads, name):
            return getattr(pads, name)
    raise AttributeError(f"RGMII pads have no {base}_ctl / {base}_ctrl")


class RgmiiRx(wiring.Component):
    """RGMII receive pins -> GMII bytes in ``domain`` (the RGMII RX clock).

    Parameters
    ----------
    pads : amaranth resource, optional
        ``platform.request("eth_rgmii", n, dir="-")``: uses DDR input buffers. None: the pins
        are ports ``rgmii_rxd`` (In(4)) and ``rgmii_rx_ctl`` (In(1)) sampled by rising- and
        falling-edge flip-flops (simulation).
    domain : str
        The RX clock domain (defined by the caller from the PHY's ``rx_clk``).

    Attributes
    ----------
    rxd : Out(8), rx_dv : Out(1), rx_er : Out(1)
        GMII, in ``domain``.
    """

    def __init__(self, pads=None, *, domain: str = "eth_rx"):
        self.pads, self.domain = pads, domain
        members = {"rxd": Out(8), "rx_dv": Out(1), "rx_er": Out(1)}
        if pads is None:
            members.update({"rgmii_rxd": In(4), "rgmii_rx_ctl": In(1)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        if self.pads is not None:
            dq = m.submodules.rxd = io.DDRBuffer("i", self.pads.rx_data, i_domain=self.domain)
            ctl = m.submodules.rxctl = io.DDRBuffer("i", _ctl_name(self.pads, "rx"),
                                                    i_domain=self.domain)
            rise, fall, c_rise, c_fall = dq.i[0], dq.i[1], ctl.i[0], ctl.i[1]
        else:
            neg = f"{self.domain}_neg"
            cd = ClockDomain(neg, clk_edge="neg", reset_less=True, local=True)
            m.domains += cd
            m.d.comb += cd.clk.eq(ClockSignal(self.domain))
            rise, fall = Signal(4), Signal(4)
            c_rise, c_fall = Signal(), Signal()
            m.d[self.domain] += [rise.eq(self.rgmii_rxd), c_rise.eq(self.rgmii_rx_ctl)]
            fall_n, c_fall_n = Signal(4), Signal()
            m.d[neg] += [fall_n.eq(self.rgmii_rxd), c_fall_n.eq(self.rgmii_rx_ctl)]
            # byte k: low nibble at rising edge k, high nibble at the falling edge after it
            # (at rising edge k+1, ``rise`` still holds edge k's nibble)
            m.d.comb += [fall.eq(fall_n), c_fall.eq(c_fall_n)]
        m.d[self.domain] += [self.rxd.eq(Cat(rise, fall)), self.rx_dv.eq(c_rise),
                             self.rx_er.eq(c_rise ^ c_fall)]
        return m


class RgmiiTx(wiring.Component):
    """GMII bytes in ``domain`` (125 MHz) -> RGMII transmit pins.

    Parameters
    ----------
    pads : amaranth resource, optional
        As :class:`RgmiiRx`: DDR output buffers for ``tx_data``, ``tx_ctl`` and ``tx_clk``.
        None: ports ``rgmii_txd`` (Out(4)) and ``rgmii_tx_ctl`` (Out(1)) made from rising- and
        falling-edge flip-flops, each nibble settled half a cycle before the edge that samples
        it (simulation; the receiver clocks on ``domain``'s clock).
    domain : str
        The TX clock domain.

    Attributes
    ----------
    txd : In(8), tx_en : In(1), tx_er : In(1)
        GMII, in ``domain``.
    """

    def __init__(self, pads=None, *, domain: str = "eth_tx"):
        self.pads, self.domain = pads, domain
        members = {"txd": In(8), "tx_en": In(1), "tx_er": In(1)}
        if pads is None:
            members.update({"rgmii_txd": Out(4), "rgmii_tx_ctl": Out(1)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        if self.pads is not None:
            dq = m.submodules.txd = io.DDRBuffer("o", self.pads.tx_data, o_domain=self.domain)
            ctl = m.submodules.txctl = io.DDRBuffer("o", _ctl_name(self.pads, "tx"),
                                                    o_domain=self.domain)
            clk = m.submodules.txclk = io.DDRBuffer("o", self.pads.tx_clk, o_domain=self.domain)
            m.d.comb += [dq.o[0].eq(self.txd[:4]), dq.o[1].eq(self.txd[4:]),
                         ctl.o[0].eq(self.tx_en), ctl.o[1].eq(self.tx_en ^ self.tx_er),
                         clk.o[0].eq(1), clk.o[1].eq(0)]
            return m
        # simulation: each nibble is put out half a cycle before the edge that samples it
        # (low nibble of byte B at the falling edge inside B's cycle, for the next rising
        # edge; high nibble at that rising edge, for the falling edge after it), so a receiver
        # sampling exactly at the edges sees settled values
        neg = f"{self.domain}_neg"
        cd = ClockDomain(neg, clk_edge="neg", reset_less=True, local=True)
        m.domains += cd
        m.d.comb += cd.clk.eq(ClockSignal(self.domain))
        lo, hi = Signal(4), Signal(4)
        c_lo, c_hi = Signal(), Signal()
        m.d[neg] += [lo.eq(self.txd[:4]), c_lo.eq(self.tx_en)]
        m.d[self.domain] += [hi.eq(self.txd[4:]), c_hi.eq(self.tx_en ^ self.tx_er)]
        level = ClockSignal(self.domain)
        m.d.comb += [self.rgmii_txd.eq(Mux(level, hi, lo)),
                     self.rgmii_tx_ctl.eq(Mux(level, c_hi, c_lo))]
        return m
