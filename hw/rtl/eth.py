"""Ethernet II / 802.1Q / IPv4 / UDP receive stage: header checks, filters, UDP payload out.

Source: IEEE 802.3 clause 3 (Ethernet II frame), IEEE 802.1Q (VLAN tags, TPIDs 0x8100 /
0x88A8 and the legacy 0x9100 / 0x9200 QinQ values), RFC 791 (IPv4 header, header checksum per
RFC 1071), RFC 768 (UDP). The checks and their order mirror the golden frame classifier in
``hftaccel.feeds.moldudp64`` (``_parse_frames``) so drop counters can be compared with it;
the IPv4 header checksum is checked here in addition.
"""

from amaranth.hdl import Array, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .stream import BEAT_BYTES, be_value, keep_count, keep_mask, packet_layout

__all__ = ["UDP_META", "DROP_REASONS", "EthRx"]

#: Per-packet fields of the UDP payload stream.
UDP_META = data.StructLayout({
    "src_ip": unsigned(32),
    "dst_ip": unsigned(32),
    "src_port": unsigned(16),
    "dst_port": unsigned(16),
    "length": unsigned(16),     # UDP payload bytes (UDP Length - 8)
})

#: Drop counters, one output port ``drop_<reason>`` each, in the order the checks are made.
DROP_REASONS = ("truncated", "not_ipv4", "bad_header", "not_udp", "fragment", "dst_ip",
                "dst_port", "checksum")

_ETHERTYPE_IPV4 = 0x0800                      # IEEE 802 EtherType of IPv4
_TPIDS = (0x8100, 0x88A8, 0x9100, 0x9200)     # 802.1Q / 802.1ad (and pre-standard QinQ) TPIDs
_IP_PROTO_UDP = 17                            # IANA protocol number of UDP (RFC 768)
_ETH_HEADER = 14                              # dst MAC, src MAC, EtherType
_VLAN_TAG = 4                                 # TPID + TCI
_IPV4_MIN_HEADER = 20                         # IHL 5
_IPV4_MAX_HEADER = 60                         # IHL 15
_UDP_HEADER = 8


class EthRx(wiring.Component):
    """Receive Ethernet frames; deliver the payload of matching IPv4/UDP datagrams.

    Frames arrive without preamble and FCS (as a MAC delivers them), 8 bytes a beat. The
    header (Ethernet, up to ``max_tags`` VLAN tags, IPv4 with options, UDP) is collected;
    when its last byte is in, the frame is either accepted or dropped and counted by the
    first failing check, in this order: frame ends inside a header (``truncated``),
    EtherType not IPv4 or more than ``max_tags`` tags (``not_ipv4``), IPv4 version != 4,
    IHL < 5 or Total Length < IHL (``bad_header``), protocol != UDP (``not_udp``), More
    Fragments or a fragment offset (``fragment``), destination address (``dst_ip``, when
    ``ip_filter``), destination port (``dst_port``, when ``port_filter``), UDP Length outside
    (8, Total Length - IHL] (``bad_header``), frame shorter than the IPv4 Total Length when
    that is already known (``truncated``), header checksum (``checksum``). An accepted
    datagram's payload streams out cut-through, realigned to lane 0 and trimmed to the UDP
    Length (Ethernet padding removed); a frame that ends before the UDP Length is complete
    ends its output with ``abort`` set and counts as ``truncated``.

    Parameters
    ----------
    max_tags : int
        VLAN tags accepted (0, 1 or 2); a frame with more counts as ``not_ipv4``.

    Attributes
    ----------
    i : In(stream.Signature(packet_layout()))
        Ethernet frames (destination MAC first; no FCS).
    o : Out(stream.Signature(packet_layout(UDP_META)))
        UDP payloads; ``meta`` holds addresses, ports and the payload length (bytes).
    dst_ip : In(32)
        Destination IPv4 address to accept (CSR), big-endian as on the wire.
    dst_port : In(16)
        Destination UDP port to accept (CSR).
    ip_filter, port_filter : In(1)
        Enable the destination address / port filters (CSR).
    frames : Out(32)
        Frames seen (counted when their fate is decided).
    accepted : Out(32)
        Datagrams delivered on ``o`` (aborted ones included).
    drop_<reason> : Out(32)
        Frames dropped, one counter per entry of :data:`DROP_REASONS` (``drop_truncated`` also
        counts deliveries that ended in ``abort``).
    """

    def __init__(self, *, max_tags: int = 2):
        if max_tags not in (0, 1, 2):
            raise ValueError(f"max_tags must be 0, 1 or 2, not {max_tags!r}")
        self._max_tags = max_tags
        members = {
            "i": In(stream.Signature(packet_layout())),
            "o": Out(stream.Signature(packet_layout(UDP_META))),
            "dst_ip": In(32),
            "dst_port": In(16),
            "ip_filter": In(1),
            "port_filter": In(1),
            "frames": Out(32),
            "accepted": Out(32),
        }
        for reason in DROP_REASONS:
            members[f"drop_{reason}"] = Out(32)
        super().__init__(members)
        max_hdr = _ETH_HEADER + _VLAN_TAG * max_tags + _IPV4_MAX_HEADER + _UDP_HEADER
        self._hdr_beats = -(-max_hdr // BEAT_BYTES)

    def elaborate(self, platform):
        m = Module()
        nb = self._hdr_beats
        # ---------------------------------------------------------------- header collection
        buf = [Signal(8 * BEAT_BYTES, name=f"hdr{k}") for k in range(nb)]
        hbytes = [buf[p // BEAT_BYTES][8 * (p % BEAT_BYTES):8 * (p % BEAT_BYTES) + 8]
                  for p in range(nb * BEAT_BYTES)]
        nbeats = Signal(range(nb + 1))
        have = Signal(range(nb * BEAT_BYTES + 1))     # bytes collected
        ended = Signal()                              # the frame's last beat is collected
        # the most recently collected beat (the one the payload starts in, at decision time)
        prev = Signal(8 * BEAT_BYTES)
        prev_n = Signal(range(BEAT_BYTES + 1))
        prev_last = Signal()

        def b(p):
            return hbytes[p]

        def be16(p):
            return be_value([b(p), b(p + 1)])

        def tpid(v):
            return Cat(*[v == t for t in _TPIDS]).any()

        # ---------------------------------------------------------------- decision (comb)
        et0 = be16(12)
        t1 = Signal()
        t2 = Signal()
        t3 = Signal()
        m.d.comb += t1.eq(tpid(et0))
        if self._max_tags >= 1:
            m.d.comb += t2.eq(t1 & tpid(be16(16)))
        if self._max_tags >= 2:
            m.d.comb += t3.eq(t2 & tpid(be16(20)))
        ntags = Signal(range(3))
        m.d.comb += ntags.eq(Mux(t2, 2, Mux(t1, 1, 0)))
        l3 = Signal(range(_ETH_HEADER + 2 * _VLAN_TAG + 1))
        m.d.comb += l3.eq(_ETH_HEADER + _VLAN_TAG * ntags)
        known_eth = Signal()
        m.d.comb += known_eth.eq((have >= _ETH_HEADER)
                                 & (~t1 | (have >= _ETH_HEADER + _VLAN_TAG))
                                 & (~t2 | (have >= _ETH_HEADER + 2 * _VLAN_TAG)))
        ethertype = Signal(16)
        too_many_tags = (t1 & (self._max_tags < 1)) | (t2 & (self._max_tags < 2)) | t3
        m.d.comb += ethertype.eq(Mux(t2, be16(20), Mux(t1, be16(16), et0)))

        def ipb(k):     # byte k of the IPv4 header (up to 2 tags before it)
            choices = [b(_ETH_HEADER + _VLAN_TAG * t + k) for t in range(self._max_tags + 1)]
            v = choices[0]
            for t in range(1, len(choices)):
                v = Mux(ntags == t, choices[t], v)
            return v

        known_ip = Signal()
        m.d.comb += known_ip.eq(have >= l3 + _IPV4_MIN_HEADER)
        version = ipb(0)[4:8]
        ihl = ipb(0)[0:4]
        total = Signal(16)
        m.d.comb += total.eq(be_value([ipb(2), ipb(3)]))
        ip_hdr_bytes = Signal(range(_IPV4_MAX_HEADER + 1))
        m.d.comb += ip_hdr_bytes.eq(ihl * 4)
        bad_ip = (version != 4) | (ihl < 5) | (total < ip_hdr_bytes)
        not_udp = ipb(9) != _IP_PROTO_UDP
        fragment = be_value([ipb(6), ipb(7)])[0:14] != 0
        ip_dst = be_value([ipb(16), ipb(17), ipb(18), ipb(19)])
        ip_src = be_value([ipb(12), ipb(13), ipb(14), ipb(15)])
        l4 = Signal(range(nb * BEAT_BYTES + 1))
        m.d.comb += l4.eq(l3 + ip_hdr_bytes)
        hdr_end = Signal(range(nb * BEAT_BYTES + 1))
        m.d.comb += hdr_end.eq(l4 + _UDP_HEADER)
        known_udp = Signal()
        m.d.comb += known_udp.eq(have >= hdr_end)
        # l4 = 14 + 4 * tags + 4 * IHL is always 2 mod 4, so the UDP header's 16-bit fields sit
        # on that grid: each is a 13-way mux (IHL 5..15, 0..2 tags), not an 88-byte index
        j0 = (_ETH_HEADER + _IPV4_MIN_HEADER) >> 2
        j1 = (_ETH_HEADER + _VLAN_TAG * self._max_tags + _IPV4_MAX_HEADER) >> 2
        l4q = Signal(range(j1 - j0 + 1))
        m.d.comb += l4q.eq(l4[2:] - j0)     # only read once the header checks have passed

        def udp16(k):   # the 16-bit field at byte k of the UDP header
            return Array(be16(4 * j + 2 + k) for j in range(j0, j1 + 1))[l4q]

        udp_src = udp16(0)
        udp_dst = udp16(2)
        udp_len = Signal(16)
        m.d.comb += udp_len.eq(udp16(4))
        bad_udp_len = (udp_len <= _UDP_HEADER) | (udp_len > total - ip_hdr_bytes)
        short_ip = ended & (have < l3 + total)
        # RFC 1071: one's-complement sum over the header (checksum included) must be 0xFFFF.
        # Every 16-bit word at an even frame offset that can lie in the IPv4 header (l3 is 14,
        # 18 or 22, so they all sit on even offsets) is masked by "inside [l3, l3 + 4 IHL)" and
        # the masked words are summed as a balanced tree of kept adders (yosys would otherwise
        # merge the sum into one LUT compressor tree, several times larger).
        ip_end = Signal(range(nb * BEAT_BYTES + 1))
        m.d.comb += ip_end.eq(l3 + ip_hdr_bytes)
        words = []
        l3_max = _ETH_HEADER + _VLAN_TAG * self._max_tags
        for p in range(_ETH_HEADER, l3_max + _IPV4_MAX_HEADER, 2):
            w = Signal(16, name=f"ip_word{p}")
            m.d.comb += w.eq(Mux((l3 <= p) & (p < ip_end), be16(p), 0))
            words.append(w)
        level = 0
        while len(words) > 1:
            pairs = []
            for k, (x, y) in enumerate(zip(words[0::2], words[1::2])):
                t = Signal(len(x) + 1, name=f"csum_l{level}_{k}", attrs={"keep": 1})
                m.d.comb += t.eq(x + y)
                pairs.append(t)
            words = pairs + words[len(pairs) * 2:]
            level += 1
        csum = Signal(22)
        m.d.comb += csum.eq(words[0])
        fold1 = Signal(17)
        fold2 = Signal(16)
        m.d.comb += [fold1.eq(csum[0:16] + csum[16:]), fold2.eq(fold1[0:16] + fold1[16])]
        bad_csum = fold2 != 0xFFFF

        # verdict: wait / drop(reason) / accept, first failing check wins
        wait = Signal()
        drop = Signal()
        reason = Signal(range(len(DROP_REASONS)))
        R = {r: i for i, r in enumerate(DROP_REASONS)}

        def verdict(r):
            return [drop.eq(1), reason.eq(R[r])]

        accept = Signal()
        with m.If(~known_eth):
            with m.If(ended):
                m.d.comb += verdict("truncated")
            with m.Else():
                m.d.comb += wait.eq(1)
        with m.Elif(too_many_tags | (ethertype != _ETHERTYPE_IPV4)):
            m.d.comb += verdict("not_ipv4")
        with m.Elif(~known_ip):
            with m.If(ended):
                m.d.comb += verdict("truncated")
            with m.Else():
                m.d.comb += wait.eq(1)
        with m.Elif(bad_ip):
            m.d.comb += verdict("bad_header")
        with m.Elif(not_udp):
            m.d.comb += verdict("not_udp")
        with m.Elif(fragment):
            m.d.comb += verdict("fragment")
        with m.Elif(self.ip_filter & (ip_dst != self.dst_ip)):
            m.d.comb += verdict("dst_ip")
        with m.Elif(~known_udp):
            with m.If(ended):
                m.d.comb += verdict("truncated")
            with m.Else():
                m.d.comb += wait.eq(1)
        with m.Elif(self.port_filter & (udp_dst != self.dst_port)):
            m.d.comb += verdict("dst_port")
        with m.Elif(bad_udp_len):
            m.d.comb += verdict("bad_header")
        with m.Elif(short_ip | (ended & (have <= hdr_end))):
            m.d.comb += verdict("truncated")
        with m.Elif(bad_csum):
            m.d.comb += verdict("checksum")
        with m.Else():
            m.d.comb += accept.eq(1)

        # ---------------------------------------------------------------- state
        HDR, PAY, DROP = 0, 1, 2
        state = Signal(range(3))
        off8 = Signal(range(BEAT_BYTES + 1))      # header bytes in ``prev`` (1..8)
        rem = Signal(16)                          # payload bytes still to deliver
        drop_count = Signal(len(DROP_REASONS))    # one-hot counter strobe
        frame_done = Signal()
        m.d.comb += drop_count.eq(0)

        reset_hdr = [nbeats.eq(0), have.eq(0), ended.eq(0)]
        cur = self.i.payload
        cur_n = Signal(range(BEAT_BYTES + 1))
        m.d.comb += cur_n.eq(keep_count(cur.keep))

        # ---------------------------------------------------------------- payload step (comb)
        in_pay = Signal()
        m.d.comb += in_pay.eq((state == PAY) | ((state == HDR) & accept))
        s_off = Signal(range(BEAT_BYTES + 1))
        s_rem = Signal(16)
        m.d.comb += [s_off.eq(Mux(state == PAY, off8, hdr_end - 8 * (nbeats - 1))),
                     s_rem.eq(Mux(state == PAY, rem, udp_len - _UDP_HEADER))]
        prev_bytes = Signal(range(BEAT_BYTES + 1))
        m.d.comb += prev_bytes.eq(Mux(prev_last, prev_n - s_off, BEAT_BYTES - s_off))
        use_cur = Signal()
        m.d.comb += use_cur.eq(~prev_last & (s_rem > BEAT_BYTES - s_off))
        cur_take = Signal(range(BEAT_BYTES + 1))
        m.d.comb += cur_take.eq(Mux(cur_n < s_off, cur_n, s_off))
        avail = Signal(range(2 * BEAT_BYTES + 1))
        m.d.comb += avail.eq(prev_bytes + Mux(use_cur, cur_take, 0))
        in_finished = Signal()
        m.d.comb += in_finished.eq(prev_last | (use_cur & cur.last & (cur_n <= s_off)))
        in_done_after = Signal()
        m.d.comb += in_done_after.eq(prev_last | (use_cur & cur.last))
        out_last = Signal()
        m.d.comb += out_last.eq((s_rem <= avail) | in_finished)
        out_n = Signal(range(BEAT_BYTES + 1))
        m.d.comb += out_n.eq(Mux(s_rem < avail, s_rem, avail))
        shifted = Signal(16 * BEAT_BYTES)
        m.d.comb += shifted.eq(Cat(prev, cur.data) >> (s_off * 8))
        o_free = ~self.o.valid | self.o.ready
        step = Signal()
        m.d.comb += step.eq(in_pay & o_free & (~use_cur | self.i.valid))

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        # ---------------------------------------------------------------- transitions
        with m.If(state == HDR):
            with m.If(wait):
                m.d.comb += self.i.ready.eq(nbeats < nb)
                with m.If(self.i.valid & (nbeats < nb)):
                    for k in range(nb):
                        with m.If(nbeats == k):
                            m.d.sync += buf[k].eq(cur.data)
                    m.d.sync += [nbeats.eq(nbeats + 1), have.eq(have + cur_n),
                                 ended.eq(cur.last), prev.eq(cur.data), prev_n.eq(cur_n),
                                 prev_last.eq(cur.last)]
            with m.Elif(drop):
                m.d.comb += [drop_count.eq(1 << reason), frame_done.eq(1)]
                m.d.sync += reset_hdr
                with m.If(~ended):
                    m.d.sync += state.eq(DROP)
            with m.Elif(accept & step):
                m.d.comb += frame_done.eq(1)
                m.d.sync += [self.accepted.eq(self.accepted + 1), reset_hdr,
                             self.o.payload.meta.src_ip.eq(ip_src),
                             self.o.payload.meta.dst_ip.eq(ip_dst),
                             self.o.payload.meta.src_port.eq(udp_src),
                             self.o.payload.meta.dst_port.eq(udp_dst),
                             self.o.payload.meta.length.eq(udp_len - _UDP_HEADER),
                             off8.eq(s_off)]
        with m.Elif(state == DROP):
            m.d.comb += self.i.ready.eq(1)
            with m.If(self.i.valid & cur.last):
                m.d.sync += state.eq(HDR)

        with m.If(step):
            m.d.comb += self.i.ready.eq(use_cur)
            m.d.sync += [self.o.valid.eq(1),
                         self.o.payload.data.eq(shifted[:8 * BEAT_BYTES]),
                         self.o.payload.keep.eq(keep_mask(out_n)),
                         self.o.payload.last.eq(out_last),
                         self.o.payload.abort.eq(in_finished & (avail < s_rem))]
            with m.If(out_last):
                m.d.sync += state.eq(Mux(in_done_after, HDR, DROP))
                with m.If(in_finished & (avail < s_rem)):
                    m.d.comb += drop_count.eq(1 << R["truncated"])
            with m.Else():
                m.d.sync += [state.eq(PAY), prev.eq(cur.data), prev_n.eq(cur_n),
                             prev_last.eq(cur.last), rem.eq(s_rem - avail)]

        # ---------------------------------------------------------------- counters
        with m.If(frame_done):
            m.d.sync += self.frames.eq(self.frames + 1)
        for i, r in enumerate(DROP_REASONS):
            ctr = getattr(self, f"drop_{r}")
            with m.If(drop_count[i]):
                m.d.sync += ctr.eq(ctr + 1)
        return m
