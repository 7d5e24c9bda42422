"""MoldUDP64 receive stage: A/B arbitration, sequencing (gaps, duplicates), de-framing.

Source: NASDAQ MoldUDP64 Protocol Specification 1.00, sections 2-3 (layout in
:mod:`hftaccel.spec.moldudp64`). Sequencing follows the golden reader
(``hftaccel.feeds.moldudp64.read_pcap``): the first packet sets the expected sequence number;
a packet (data, heartbeat or End of Session) whose Sequence Number is beyond it reports a gap
and moves the expectation; messages below it are duplicates (the A/B copy that lost the race)
and are dropped; a packet straddling it delivers only its unseen suffix.
"""

import functools
import operator

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hftaccel.spec import itch as itch_spec
from hftaccel.spec import moldudp64 as spec

from .eth import UDP_META
from .stream import BEAT_BYTES, be_value, message_layout, packet_layout

__all__ = ["MESSAGE_META", "EVENT_LAYOUT", "EVENT_GAP", "EVENT_END_OF_SESSION",
           "MAX_MESSAGE", "MoldRx"]

#: Per-message fields of the de-framed message stream.
MESSAGE_META = data.StructLayout({"seq": unsigned(64)})
#: ``kind`` values of the host event stream.
EVENT_GAP = 1
EVENT_END_OF_SESSION = 2
#: Host event: a gap (first missing sequence number and count) or End of Session (``first``:
#: the next expected sequence number, ``count`` 0).
EVENT_LAYOUT = data.StructLayout({"kind": unsigned(2), "first": unsigned(64),
                                  "count": unsigned(64)})
#: Default message capacity: the longest ITCH 5.0 message.
MAX_MESSAGE = max(itch_spec.MESSAGE_LENGTH.values())

_SESSION = spec.HEADER_DTYPE.fields["session"][1]
_SEQ = spec.HEADER_DTYPE.fields["sequence_number"][1]
_COUNT = spec.HEADER_DTYPE.fields["message_count"][1]
assert spec.HEADER_DTYPE.fields["sequence_number"][0].itemsize == 8
assert spec.BLOCK_LENGTH_SIZE == 2
assert spec.HEADER_SIZE % BEAT_BYTES != 0, "the header must end inside a beat"

# One beat as the stage keeps it (``b``: taken from feed B).
_RAW = data.StructLayout({"data": unsigned(8 * BEAT_BYTES), "keep": unsigned(BEAT_BYTES),
                          "last": unsigned(1), "abort": unsigned(1), "b": unsigned(1)})


class MoldRx(wiring.Component):
    """Receive MoldUDP64 packets from an A and a B feed; deliver each message once, in order.

    Arbitration is per packet: when idle the stage takes the next packet from ``i_a`` if one
    is waiting, else from ``i_b``, and holds that input until its last beat (so the first copy
    of a packet to arrive wins and the later copy is dropped as duplicates). The 20-byte header
    is parsed as it streams in; message blocks are de-framed at byte-lane granularity, each
    message gathered into one ``o`` beat.

    Pipeline (every register-to-register path holds at most one carry chain): the inputs are
    skid-buffered into a beat register (``ready`` is a register, never a function of
    ``o.ready``), which also holds, for every lane where a Message Length field may start,
    the precomputed next de-framer state, so that the per-beat loop is a selection; the
    de-framer, the sequencer and the message assembly (a rotation fixed per message and a
    one-hot beat index, no wide byte muxes) then work on that beat in one cycle and load
    ``o``, whose second message slot is the assembly buffer itself (frozen while ``o`` is
    full). The 64-bit sequence number compares run while the header streams in (upper 48 bits
    on its second beat, lower 16 on its third, applied the cycle after), so the duplicate
    decision is a registered count by the time a message ends. :attr:`latency` (2 cycles from a
    message's last byte accepted to its ``o`` beat, no back-pressure) and :attr:`ii` (1: one
    input beat and up to one message a cycle) hold as long as no message shorter than 7 bytes
    starts and ends within one beat and the first message of a packet is at least 11 bytes
    long (always the case for ITCH 5.0); otherwise that beat takes an extra cycle. A header
    also waits while the event output still holds an earlier event.

    Malformed packets are handled cut-through, message by message: every message whose bytes
    are all in and within Message Count is delivered; a packet that ends before Message Count
    blocks are complete (or with ``abort``) counts as ``overrun`` and only its delivered
    messages advance the expected sequence number, so the other feed's copy fills in the rest;
    bytes after the last block count as ``trailing`` and are dropped.

    Parameters
    ----------
    max_message : int
        Bytes of a message kept in an ``o`` beat; longer messages are delivered cut to this
        size with their true ``length``.

    Attributes
    ----------
    i_a, i_b : In(stream.Signature(packet_layout(UDP_META)))
        UDP payloads (MoldUDP64 packets) of the A and B feeds.
    o : Out(stream.Signature(message_layout(max_message, MESSAGE_META)))
        One message a beat: bytes, length, MoldUDP64 sequence number.
    o_event : Out(stream.Signature(EVENT_LAYOUT))
        Gap and End of Session events for the host (End of Session once per session).
    expected : Out(64)
        Next expected sequence number.
    session : Out(8 * SESSION_SIZE)
        Current session (byte 0 in bits 0..7).
    synced, end_of_session : Out(1)
        A first packet has set the expectation; End of Session seen for ``session``.
    packets, packets_b, heartbeats, delivered, duplicates, gaps, gap_messages, short, overrun,
    trailing, aborted, wrong_session : Out(32)
        Counters: packets taken (both feeds), of those from B, heartbeats, messages delivered,
        duplicate messages dropped, gap events, messages missing in gaps, packets shorter than
        the header, packets cut short of their blocks, packets with trailing bytes, packets
        ending in ``abort``, packets of another session dropped.
    """

    #: Cycles from a message's last byte accepted on ``i_a``/``i_b`` to its ``o`` beat, with
    #: no back-pressure (input beat register, de-framing + assembly, output register).
    latency = 2
    #: Initiation interval: one input beat a cycle, one message a cycle.
    ii = 1

    _COUNTERS = ("packets", "packets_b", "heartbeats", "delivered", "duplicates", "gaps",
                 "gap_messages", "short", "overrun", "trailing", "aborted", "wrong_session")

    def __init__(self, *, max_message: int = MAX_MESSAGE):
        if not isinstance(max_message, int) or not 1 <= max_message <= 1024:
            raise ValueError(f"max_message must be an integer in [1, 1024], not {max_message!r}")
        self._cap = max_message
        members = {
            "i_a": In(stream.Signature(packet_layout(UDP_META))),
            "i_b": In(stream.Signature(packet_layout(UDP_META))),
            "o": Out(stream.Signature(message_layout(max_message, MESSAGE_META))),
            "o_event": Out(stream.Signature(EVENT_LAYOUT)),
            "expected": Out(64),
            "session": Out(8 * spec.SESSION_SIZE),
            "synced": Out(1),
            "end_of_session": Out(1),
        }
        for c in self._COUNTERS:
            members[c] = Out(32)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cap = self._cap
        B = BEAT_BYTES

        # ------------------------------------------------------------ A/B arbitration, skid
        busy = Signal()
        sel_b = Signal()
        pick_b = Signal()
        m.d.comb += pick_b.eq(Mux(busy, sel_b, ~self.i_a.valid & self.i_b.valid))
        in_valid = Signal()
        cur = Signal(packet_layout(UDP_META))
        s_valid = Signal()          # skid register holds a beat
        take = Signal()
        m.d.comb += [
            in_valid.eq(Mux(pick_b, self.i_b.valid, self.i_a.valid)),
            cur.eq(Mux(pick_b, self.i_b.payload, self.i_a.payload)),
            self.i_a.ready.eq(~s_valid & ~pick_b),
            self.i_b.ready.eq(~s_valid & pick_b),
            take.eq(in_valid & ~s_valid),
        ]
        with m.If(take):
            m.d.sync += [busy.eq(~cur.last), sel_b.eq(pick_b)]

        in_beat = Signal(_RAW)
        s_beat = Signal(_RAW)
        nxt = Signal(_RAW)
        m.d.comb += [
            in_beat.data.eq(cur.data), in_beat.keep.eq(cur.keep), in_beat.last.eq(cur.last),
            in_beat.abort.eq(cur.abort), in_beat.b.eq(pick_b),
            nxt.eq(Mux(s_valid, s_beat, in_beat)),
        ]

        # ------------------------------------------------------------ beat register R0
        # Holds the beat being de-framed and, for every lane x where a Message Length field may
        # start (x = -1: its high byte was lane 7 of the previous beat), precomputed candidates
        # of the next de-framer state, so that the per-beat loop is a selection, not a sum.
        pl7 = Signal(8)             # lane 7 of the beat loaded before
        r0_valid = Signal()
        r0 = Signal(_RAW)
        r0_pl7 = Signal(8)
        r0_cnt0 = Signal()
        r0_cntf = Signal()
        NC = B                      # candidates x = -1 .. 6
        c_dn = [Signal(16, name=f"c_dn{c}") for c in range(NC)]
        c_dr = [Signal(4, name=f"c_dr{c}") for c in range(NC)]
        c_ok = [Signal(name=f"c_ok{c}") for c in range(NC)]
        c_sf = [Signal(name=f"c_sf{c}") for c in range(NC)]
        c_le = [Signal(name=f"c_le{c}") for c in range(NC)]

        nl = [nxt.data[8 * i:8 * i + 8] for i in range(B)]
        cand_d = []
        for c in range(NC):
            x = c - 1
            hi = pl7 if x < 0 else nl[x]
            ln = Cat(nl[x + 1], hi)                     # big-endian Message Length
            endl = Signal(3, name=f"endl{c}")
            m.d.comb += endl.eq(x + 1 + ln[0:3])
            cand_d += [
                c_dn[c].eq((ln - (6 - x))[0:16]),       # next start, relative to next beat
                c_dr[c].eq((ln[0:4] + (x + 2))[0:4]),   # next start, same beat (replay)
                c_ok[c].eq(nxt.keep[x + 1]),
                c_sf[c].eq(nxt.keep[x + 1] & (ln <= 6 - x) & nxt.keep.bit_select(endl, 1)),
                c_le[c].eq(ln <= 14 - x),
            ]

        consume = Signal()
        r0_load = Signal()
        m.d.comb += r0_load.eq(~r0_valid | consume)
        with m.If(r0_load):
            m.d.sync += [
                r0_valid.eq(s_valid | take), s_valid.eq(0), r0.eq(nxt), r0_pl7.eq(pl7),
                r0_cnt0.eq(Cat(nl[3], nl[2]) == spec.HEARTBEAT_COUNT),
                r0_cntf.eq(Cat(nl[3], nl[2]) == spec.END_OF_SESSION_COUNT),
            ] + cand_d
            with m.If(s_valid | take):
                m.d.sync += pl7.eq(nl[B - 1])
        with m.Elif(take):
            m.d.sync += s_valid.eq(1)
        with m.If(~s_valid):
            m.d.sync += s_beat.eq(in_beat)

        lanes = [r0.data[8 * i:8 * i + 8] for i in range(B)]
        last = r0.last

        # ------------------------------------------------------------ de-framer state
        HDR, LEN0, LEN1, MSG, SKIP, DISCARD = range(6)
        phase = Signal(6, init=1 << HDR)   # one-hot
        hb = Signal(2)                  # header beat index
        D = Signal(16, init=spec.HEADER_SIZE % B)   # next block start, rel. to this beat
        le8 = Signal()                  # D <= 8
        replay = Signal()               # this beat again: the message ends in it
        blocks = Signal(16)             # blocks not yet ended
        mlen = Signal(16)
        trail = Signal()
        hdr_beat = spec.HEADER_SIZE // B
        hdr_lane = spec.HEADER_SIZE % B

        adv = Signal()
        fire = Signal()
        m.d.comb += fire.eq(r0_valid & adv)

        in_hdr = phase[HDR]
        hdr_slot = Signal()
        m.d.comb += hdr_slot.eq(in_hdr & (hb == hdr_beat))
        hdr_done = Signal()
        m.d.comb += hdr_done.eq(hdr_slot & r0.keep[hdr_lane - 1])

        # sequencing state needed by the header slot
        sess_eq = Signal()
        new_session = ~self.synced | (self.end_of_session & ~sess_eq)
        wrong_session = Signal()
        m.d.comb += wrong_session.eq(self.synced & ~new_session & ~sess_eq)

        e_len0 = Signal()
        e_len1 = Signal()
        e_msg = Signal()
        e_skip = Signal()
        e_disc = Signal()
        with m.If(in_hdr):
            with m.If(hdr_done):
                m.d.comb += [e_disc.eq(wrong_session),
                             e_skip.eq(~wrong_session & (r0_cnt0 | r0_cntf)),
                             e_len0.eq(~wrong_session & ~r0_cnt0 & ~r0_cntf)]
        with m.Else():
            m.d.comb += [e_len0.eq(phase[LEN0]), e_skip.eq(phase[SKIP]),
                         e_disc.eq(phase[DISCARD])]
        # (phase is one-hot; plain expressions, which a 4-state simulator evaluates at time 0)
        m.d.comb += [e_len1.eq(phase[LEN1]), e_msg.eq(phase[MSG])]

        x = D[0:4]
        x_lt_n = Signal()
        x_le_n = Signal()
        m.d.comb += [x_lt_n.eq(Array(list(r0.keep) + [Const(0, 1)] * 8)[x]),
                     x_le_n.eq(Array([Const(1, 1)] + list(r0.keep) + [Const(0, 1)] * 7)[x])]
        t_end = Signal()
        m.d.comb += t_end.eq(e_msg & (replay | (le8 & x_le_n)))
        b1 = Signal()
        m.d.comb += b1.eq(blocks == 1)
        len_from_x = Signal()
        m.d.comb += len_from_x.eq((t_end & ~b1) | e_len0)
        def pick(vals, dummy):
            # candidate x (lanes 0..6; 7 and 8: no Message Length here) or x = -1 in LEN1
            return Mux(e_len1, vals[0], Array(vals[1:] + [dummy])[x[0:3]])
        ok_x = Signal()
        m.d.comb += ok_x.eq(Array(c_ok[1:] + [Const(0, 1)])[x[0:3]] & ~x[3])
        has_len = Signal()
        m.d.comb += has_len.eq((len_from_x & ok_x) | (e_len1 & c_ok[0]))
        sf_x = Signal()
        m.d.comb += sf_x.eq(Array(c_sf[1:] + [Const(0, 1)])[x[0:3]] & ~x[3])
        stop = Signal()
        m.d.comb += stop.eq((len_from_x & sf_x) | (e_len1 & c_sf[0]))
        m.d.comb += consume.eq(fire & ~stop)
        blk_fire = Signal()
        m.d.comb += blk_fire.eq(fire & (~in_hdr | hdr_done))
        lens = [Cat(lanes[0], r0_pl7)] + [Cat(lanes[c], lanes[c - 1]) for c in range(1, NC)]
        y_new = Signal(4)
        m.d.comb += y_new.eq(Mux(e_len1, 1, x + 2))

        pulse = {k: Signal(name=f"inc_{k}") for k in
                 ("short", "short_b", "aborted", "trailing", "overrun", "delivered",
                  "duplicates")}
        for k in pulse:
            m.d.sync += pulse[k].eq(0)

        with m.If(fire & in_hdr & ~hdr_done):
            m.d.sync += [hb.eq(hb + 1), D.eq(hdr_lane)]
            with m.If(last):
                m.d.sync += [hb.eq(0), pulse["short"].eq(1), pulse["short_b"].eq(r0.b)]
        with m.If(fire & hdr_done):
            m.d.sync += [hb.eq(0), trail.eq(0)]
        with m.If(blk_fire):
            m.d.sync += [blocks.eq(Mux(in_hdr, Cat(lanes[3], lanes[2]), blocks - t_end)),
                         replay.eq(stop)]
            with m.If(e_msg & ~t_end):
                m.d.sync += [D.eq(D - B), le8.eq(D <= 2 * B)]
            with m.If(has_len):
                m.d.sync += [D.eq(Mux(stop, pick(c_dr, Const(0, 4)), pick(c_dn, Const(0, 16)))),
                             le8.eq(stop | pick(c_le, Const(0, 1))),
                             mlen.eq(pick(lens, Const(0, 16))), phase.eq(1 << MSG)]
            with m.Elif(len_from_x & x_lt_n):
                m.d.sync += phase.eq(1 << LEN1)
            with m.Elif(len_from_x):
                m.d.sync += [phase.eq(1 << LEN0), D.eq(0)]
            with m.Elif(t_end | e_skip):
                m.d.sync += [phase.eq(1 << SKIP), D.eq(0)]
                with m.If(x_lt_n):
                    m.d.sync += trail.eq(1)
            with m.Elif(e_disc):
                m.d.sync += phase.eq(1 << DISCARD)
            with m.If(last & ~stop):
                m.d.sync += [phase.eq(1 << HDR), D.eq(hdr_lane), trail.eq(0),
                             pulse["aborted"].eq(r0.abort)]
                with m.If((t_end & b1) | e_skip):
                    m.d.sync += pulse["trailing"].eq(trail | x_lt_n)
                with m.Elif(~e_disc):
                    m.d.sync += pulse["overrun"].eq(1)

        # ------------------------------------------------------------ message assembly
        # Byte p of a message that starts at lane y of its first beat arrives in lane
        # (y + p) % 8 of that message's beat (y + p) // 8: a rotation by y fixed per message
        # and a one-hot beat index select which buffer bytes each beat writes.
        K = (B + cap - 1) // B + 2
        k_valid = Signal()          # o is full: buf holds the next message (frozen)
        y_m = Signal(4)
        roh = Signal(B)             # one-hot rotation y_m % 8
        oh = Signal(K)
        cj = Signal(B)
        prev = Signal(8 * B)
        with m.If(blk_fire & has_len):
            m.d.sync += [y_m.eq(y_new), oh.eq(Mux(stop, 1, 2)),
                         roh.eq(Const(1, B) << y_new[0:3]),
                         cj.eq(Array([Const(sum(1 << j for j in range(B) if y + j >= B), B)
                                          for y in range(16)])[y_new])]
        with m.Elif(consume):
            m.d.sync += oh.eq(oh << 1)
        with m.If(consume):
            m.d.sync += prev.eq(r0.data)
        pl = [prev[8 * i:8 * i + 8] for i in range(B)]
        rc = [Signal(8, name=f"rc{j}") for j in range(B)]
        rp = [Signal(8, name=f"rp{j}") for j in range(B)]
        for j in range(B):
            m.d.comb += [
                rc[j].eq(functools.reduce(operator.or_, [Mux(roh[i], lanes[(i + j) % B], 0)
                                                         for i in range(B)])),
                rp[j].eq(functools.reduce(operator.or_, [Mux(roh[i], pl[(i + j) % B], 0)
                                                         for i in range(B)]))]
        buf = [Signal(8, name=f"msg{p}") for p in range(cap)]
        tview = []
        for p in range(cap):
            w, j = divmod(p, B)
            v = Signal(8, name=f"tv{p}")
            if w == 0:
                en = ((oh[0] & ~cj[j]) | oh[1]) & ~k_valid
                dat = Mux(oh[1] & ~cj[j], rp[j], rc[j])
            else:
                en = Mux(cj[j], oh[w + 1], oh[w]) & ~k_valid
                dat = rc[j]
            m.d.comb += v.eq(Mux(en, dat, buf[p]))
            m.d.sync += buf[p].eq(v)
            tview.append(v)

        # ------------------------------------------------------------ sequencing
        dups = Signal(16)           # messages of this packet still below the expectation
        dz = Signal()
        m.d.comb += dz.eq(dups == 0)
        deliver = Signal()
        m.d.comb += deliver.eq(fire & t_end & dz)
        with m.If(fire & t_end):
            m.d.sync += [pulse["delivered"].eq(dz), pulse["duplicates"].eq(~dz)]
            with m.If(dz):
                m.d.sync += self.expected.eq(self.expected + 1)
            with m.Else():
                m.d.sync += dups.eq(dups - 1)

        # header: compared while it streams in (registers sample while the state matches)
        hdr0 = Signal(64)               # header bytes 0..7 (session 0..7)
        sess_hi = Signal(16)            # session bytes 8, 9
        seq_hi = Signal(48)             # sequence number bits 63..16
        d_hi = Signal(48)
        gt_hi = Signal()
        h_lo = Signal(16)
        d_lo = Signal(16)
        borrow_lo = Signal()
        eq_lo = Signal()
        eq_hi = Signal()
        one_hi = Signal()
        is_hb = Signal()
        is_eos = Signal()
        h_b = Signal()
        assert _SESSION == 0 and spec.SESSION_SIZE == 10 and _SEQ == 10 and _COUNT == 18
        with m.If(in_hdr & (hb == 0)):
            m.d.sync += hdr0.eq(r0.data)
        b1_seq = be_value(lanes[2:8])
        dh = Signal(49)
        m.d.comb += dh.eq(self.expected[16:64] - b1_seq)
        lo = be_value(lanes[0:2])
        dl = Signal(17)
        m.d.comb += dl.eq(self.expected[0:16] - lo)
        with m.If(in_hdr & (hb == 1)):
            m.d.sync += [sess_hi.eq(r0.data[0:16]), seq_hi.eq(b1_seq), d_hi.eq(dh[0:48]),
                         gt_hi.eq(dh[48]),
                         sess_eq.eq((hdr0 == self.session[0:64])
                                    & (r0.data[0:16] == self.session[64:80]))]
        with m.If(hdr_slot):
            m.d.sync += [h_lo.eq(lo), d_lo.eq(dl[0:16]), borrow_lo.eq(dl[16]),
                         eq_lo.eq(lo == self.expected[0:16]), eq_hi.eq(d_hi == 0),
                         one_hi.eq(d_hi == 1), is_hb.eq(r0_cnt0), is_eos.eq(r0_cntf),
                         h_b.eq(r0.b)]

        h1 = Signal()                   # the cycle after the header slot
        stall_q = Signal()              # ... and the next slot may end a message
        m.d.sync += [h1.eq(fire & hdr_done),
                     stall_q.eq(fire & hdr_done & has_len & (stop | pick(c_le, Const(0, 1))))]
        eos_pending = Signal()
        eos_first = Signal(64)
        h_seq = Cat(h_lo, seq_hi)
        gt = gt_hi | (eq_hi & borrow_lo)
        eq = eq_hi & eq_lo
        gap = Signal()
        m.d.comb += gap.eq(h1 & ~wrong_session & ~new_session & gt)
        exp_new = Signal(64)
        m.d.comb += exp_new.eq(Mux(new_session | gt, h_seq, self.expected))
        g2 = Signal()
        m.d.sync += g2.eq(gap)
        with m.If(h1):
            with m.If(~wrong_session):
                m.d.sync += [self.expected.eq(exp_new),
                             dups.eq(Mux(~new_session & ~gt & ~eq,
                                         Mux(eq_hi | (one_hi & borrow_lo), d_lo, 0xFFFF), 0))]
                with m.If(new_session):
                    m.d.sync += [self.synced.eq(1), self.session.eq(Cat(hdr0, sess_hi)),
                                 self.end_of_session.eq(0)]
                with m.If(is_eos):
                    m.d.sync += self.end_of_session.eq(1)
                with m.If(is_eos & (new_session | ~self.end_of_session)):
                    m.d.sync += [eos_pending.eq(1), eos_first.eq(exp_new)]

        # ------------------------------------------------------------ events
        ev_free = ~self.o_event.valid | self.o_event.ready
        with m.If(self.o_event.valid & self.o_event.ready):
            m.d.sync += self.o_event.valid.eq(0)
        with m.If(eos_pending & ev_free):
            m.d.sync += [eos_pending.eq(0), self.o_event.valid.eq(1),
                         self.o_event.payload.kind.eq(EVENT_END_OF_SESSION),
                         self.o_event.payload.first.eq(eos_first),
                         self.o_event.payload.count.eq(0)]
        with m.If(gap):     # the event register is empty here (the header slot waited)
            m.d.sync += [self.o_event.valid.eq(1),
                         self.o_event.payload.kind.eq(EVENT_GAP),
                         self.o_event.payload.first.eq(self.expected),
                         self.o_event.payload.count.eq(h_seq - self.expected)]

        # ------------------------------------------------------------ output, skid
        o_free = ~self.o.valid | self.o.ready
        k_len = Signal(16)
        k_seq = Signal(64)
        with m.If(o_free):
            m.d.sync += [self.o.valid.eq(k_valid | deliver), k_valid.eq(0),
                         self.o.payload.length.eq(Mux(k_valid, k_len, mlen)),
                         self.o.payload.meta.seq.eq(Mux(k_valid, k_seq, self.expected))]
            for p in range(cap):
                m.d.sync += self.o.payload.data[p].eq(tview[p])   # = buf while k_valid
        with m.Elif(deliver):
            m.d.sync += k_valid.eq(1)
        with m.If(~k_valid):
            m.d.sync += [k_len.eq(mlen), k_seq.eq(self.expected)]

        m.d.comb += adv.eq(~k_valid & ~stall_q
                           & ~(hdr_slot & (self.o_event.valid | eos_pending)))

        # ------------------------------------------------------------ counters
        def add(name, *incs):
            ctr = getattr(self, name)
            m.d.sync += ctr.eq(ctr + sum(incs))

        hv = ~wrong_session
        add("packets", pulse["short"], h1)
        add("packets_b", pulse["short_b"], h1 & h_b)
        add("short", pulse["short"])
        add("heartbeats", h1 & hv & is_hb)
        add("wrong_session", h1 & wrong_session)
        add("gaps", gap)
        add("delivered", pulse["delivered"])
        add("duplicates", pulse["duplicates"])
        add("overrun", pulse["overrun"])
        add("trailing", pulse["trailing"])
        add("aborted", pulse["aborted"])
        with m.If(g2):
            m.d.sync += self.gap_messages.eq(self.gap_messages
                                             + self.o_event.payload.count[0:32])
        return m
