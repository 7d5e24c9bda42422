"""Ethernet II / 802.1Q / IPv4 / UDP receive stage: header checks, filters, UDP payload out.

Source: IEEE 802.3 clause 3 (Ethernet II frame), IEEE 802.1Q (VLAN tags), RFC 791 (IPv4
header, header checksum per RFC 1071), RFC 768 (UDP); field offsets, TPIDs and drop reasons
from :mod:`hftaccel.spec.net`. The checks and their order mirror the golden frame classifier
in ``hftaccel.feeds.moldudp64`` (``_parse_frames``) so drop counters can be compared with it;
the IPv4 header checksum is checked here in addition.

Pipeline (every register-to-register path holds at most one carry chain): the frame streams
through a two-beat window. Header fields are captured from it as they pass (VLAN tags and the
IHL nibbles from fixed lanes, IPv4 fields from the IP-aligned view), the header checksum is
summed beat by beat (two adder levels, then an accumulator), and the window realigns the
frame to the UDP header with one 2:1 byte shift: the UDP header offset is always 2 or 6 mod 8
(14 + 4 * tags + 4 * IHL). The UDP header beat (or the frame's end, if it comes first) carries
the decision: comparisons in one cycle, the first failing check in the next, the checksum
result joins in the third, just when the first payload beat reaches the trimming stage. A
skid buffer decouples ``o.ready`` from the pipeline, which advances as a whole.
"""

from amaranth.hdl import Cat, Const, EnableInserter, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hftaccel.spec import net

from .stream import BEAT_BYTES, be_value, packet_layout

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
DROP_REASONS = net.DROP_REASONS

_ETH = net.ETH_HEADER_BYTES
_TAG = net.VLAN_TAG_BYTES
_IP = net.IPV4_HEADER_FIELDS
_UDP = net.UDP_HEADER_FIELDS
_IP_MIN = net.IPV4_MIN_HEADER_BYTES
_UDP_HDR = net.UDP_HEADER_BYTES
_ET = net.ETH_HEADER_FIELDS["ethertype"].offset
# The realignment relies on these: every header start after the Ethernet one is 2 mod 4.
assert _ETH % 4 == 2 and _TAG % 4 == 0 and _UDP_HDR == BEAT_BYTES == 8
assert _ET == _ETH - 2 and net.VLAN_TAG_FIELDS["tpid"].offset == 0

# item kinds of the realigned (UDP-header-aligned) stream
_PAY, _HDR, _END = 0, 1, 2      # payload beat, UDP header beat, end of a frame without either


def _byte(v, i):
    return v[8 * i:8 * i + 8]


def _be(v, i, size):
    """Big-endian field of ``size`` bytes at byte ``i`` of the little-endian lane vector ``v``."""
    return be_value([_byte(v, i + j) for j in range(size)])


def _field(v, table, name, base=0):
    f = table[name]
    return _be(v, base + f.offset, f.size)


def _tpid(v):
    return Cat(*[v == t for t in net.VLAN_TPIDS]).any()


class EthRx(wiring.Component):
    """Receive Ethernet frames; deliver the payload of matching IPv4/UDP datagrams.

    Frames arrive without preamble and FCS (as a MAC delivers them), 8 bytes a beat. The
    header (Ethernet, up to ``max_tags`` VLAN tags, IPv4 with options, UDP) is examined as it
    streams in; once its last byte is in, the frame is either accepted or dropped and counted
    by the first failing check, in this order: frame ends inside a header (``truncated``),
    EtherType not IPv4 or more than ``max_tags`` tags (``not_ipv4``), IPv4 version != 4,
    IHL < 5 or Total Length < IHL (``bad_header``), protocol != UDP (``not_udp``), More
    Fragments or a fragment offset (``fragment``), destination address (``dst_ip``, when
    ``ip_filter``), destination port (``dst_port``, when ``port_filter``), UDP Length outside
    (8, Total Length - IHL] (``bad_header``), frame shorter than the IPv4 Total Length when
    that is already known, i.e. the frame ends in the beat that holds the UDP header's last
    byte (``truncated``), header checksum (``checksum``). An accepted datagram's payload
    streams out cut-through, one beat a cycle, realigned to lane 0 and trimmed to the UDP
    Length (Ethernet padding removed); a frame that ends before the UDP Length is complete
    ends its output with ``abort`` set and counts as ``truncated``.

    Latency: :attr:`latency` cycles from a frame's last beat accepted on ``i`` to its
    payload's last beat on ``o`` (no back-pressure). That is the minimum and the case when the
    frame's last beat holds no byte at or past lane ``(UDP header offset) mod 8`` (2 or 6:
    6 for the usual 802.1Q + IHL 5 feed frame); otherwise the last payload beat needs one more
    cycle (``latency + 1``), as the payload realignment then spills into one more beat.
    ``i.ready`` only falls when ``o`` is back-pressured.

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
    latency : int
        Cycles, last frame beat in to last payload beat out, minimum (see above): 3.
    ii : int
        Cycles per beat: 1 (one 64-bit beat a cycle in and out, 10 Gb/s at 156.25 MHz).
    """

    #: Cycles from a frame's last beat accepted to its payload's last beat out (minimum, and
    #: the case without a spill beat; see the class docstring), no back-pressure.
    latency = 3
    #: One beat a cycle.
    ii = 1

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

    def elaborate(self, platform):
        m = Module()
        ce = Signal()                       # the pipeline advances (registered: ~skid full)
        cand = Signal(packet_layout(UDP_META))
        cand_valid = Signal()
        m.submodules.core = EnableInserter(ce)(self._core(cand, cand_valid))

        # ---------------------------------------------------------------- skid buffer
        skid = Signal(packet_layout(UDP_META))
        skid_valid = Signal()
        m.d.comb += [ce.eq(~skid_valid), self.i.ready.eq(ce)]
        push = ce & cand_valid
        with m.If(~self.o.valid | self.o.ready):
            m.d.sync += [self.o.payload.eq(Mux(skid_valid, skid.as_value(), cand.as_value())),
                         self.o.valid.eq(skid_valid | push), skid_valid.eq(0)]
        with m.Elif(push):
            m.d.sync += [skid.eq(cand), skid_valid.eq(1)]
        return m

    def _core(self, cand, cand_valid):
        """The pipeline; every register in it advances only when the enable is high.

        Timing the decision relies on (cycles counted in enabled cycles): the decision item
        (the UDP header beat, at beat ``b + 1 >= 5`` or as the flush after the last beat; or an
        end item, always a flush one cycle after the last beat) is in P1 one cycle later (d1:
        comparisons), in P2 two (d2: first failing check), and the first payload beat meets
        the verdict in the trimming stage three cycles later (d3). Everything d1 reads is in
        its register by then: the IHL nibbles (beats 1, 2) give ``l4`` from beat 4 on, IPv4
        bytes 0..15 come at beats 2..4, the destination address in the beat that completes it
        (4, or 5 with two tags) and its comparison one cycle later; the header checksum of the
        last header beat ``b`` is in ``csum_ok`` four cycles after beat ``b``, i.e. by d3. The
        next frame overwrites none of these before: its first captures come at its beat 1.
        """
        m = Module()
        mt = self._max_tags
        cur = self.i.payload
        take_in = self.i.valid                  # a beat is accepted (under the enable)
        R = {r: i for i, r in enumerate(DROP_REASONS)}

        # ================================================================ window (stage 0)
        prev = Signal(64)
        prev_keep = Signal(8)
        k = Signal(range(16))                   # index of the beat now on ``i`` (saturates)
        hdr_done = Signal()                     # the UDP header beat was emitted
        flush = Signal()                        # an item is due from ``prev`` alone
        fl_kind = Signal(2)
        fl_len = Signal(8)
        win = Cat(prev, cur.data)               # lanes past ``keep`` are don't-care
        win_keep = Cat(prev_keep, Mux(flush, 0, cur.keep))
        kp = cur.keep                           # contiguous from lane 0: count by edges
        n_lo = Cat((kp[0] & ~kp[1]) | (kp[2] & ~kp[3]) | (kp[4] & ~kp[5]) | (kp[6] & ~kp[7]),
                   (kp[1] & ~kp[3]) | (kp[5] & ~kp[7]), kp[3] & ~kp[7])
        len_cur = Signal(8)                     # bytes up to and with this beat (saturates)
        m.d.comb += len_cur.eq(Cat(n_lo, k + kp[7]))

        # ---- L2: tags and EtherType from fixed lanes (beats 1 and 2)
        t1 = Signal()                           # TPID at 12
        e12 = Signal()                          # IPv4 EtherType at 12
        t2r = Signal()                          # TPID at 16
        e16 = Signal()
        tp20 = Signal()                         # TPID at 20
        e20 = Signal()
        ihl14, ihl18, ihl22 = Signal(4), Signal(4), Signal(4)   # IHL nibble if l3 = 14/18/22
        with m.If(take_in & (k == 1)):
            et = _be(cur.data, _ET - 8, 2)
            m.d.sync += [t1.eq(_tpid(et)), e12.eq(et == net.ETHERTYPE_IPV4),
                         ihl14.eq(_byte(cur.data, _ETH - 8)[0:4])]
        with m.If(take_in & (k == 2)):
            et1 = _be(cur.data, _ET + _TAG - 16, 2)
            et2 = _be(cur.data, _ET + 2 * _TAG - 16, 2)
            m.d.sync += [t2r.eq(_tpid(et1)), e16.eq(et1 == net.ETHERTYPE_IPV4),
                         tp20.eq(_tpid(et2)), e20.eq(et2 == net.ETHERTYPE_IPV4),
                         ihl18.eq(_byte(cur.data, _ETH + _TAG - 16)[0:4]),
                         ihl22.eq(_byte(cur.data, _ETH + 2 * _TAG - 16)[0:4])]
        t2 = (t1 & t2r) if mt >= 1 else Const(0)        # two tags (when allowed)
        t3 = (t2 & tp20) if mt >= 2 else Const(0)       # a third TPID
        one_tag = t1 & ~t2                              # l3 = 18, else 14 or 22 (= 6 mod 8)
        too_many = (t1 if mt < 1 else Const(0)) | (t2 if mt < 2 else Const(0)) | t3
        et_bad = Mux(t2, ~e20, Mux(t1, ~e16, ~e12))
        not_ipv4 = Signal()
        m.d.sync += not_ipv4.eq(too_many | et_bad)

        # ---- l4 = l3 + 4 IHL = 4 * (IHL + l3 // 4) + 2: one small adder, valid from beat 4 on
        l4q = Signal(5)
        m.d.sync += l4q.eq(Mux(t2, ihl22, Mux(t1, ihl18, ihl14))
                           + Mux(t2, (_ETH + 2 * _TAG) // 4,
                                 Mux(t1, (_ETH + _TAG) // 4, _ETH // 4)))
        s4_2 = ~l4q[0]                          # UDP header at 2 mod 8 (else 6)
        b_udp = l4q[1:]                         # beat of the UDP header's first byte
        hdr_end = Signal(8)                     # l4 + 8
        m.d.sync += hdr_end.eq(Cat(Const(2, 2), l4q) + _UDP_HDR)

        # ---- IPv4 fields from the IP-aligned view (2:1 byte shift)
        ipv = Mux(one_tag, win[8 * ((_ETH + _TAG) % 8):][:64], win[8 * (_ETH % 8):][:64])
        ip_ver_ihl = Signal(8)
        ip_total = Signal(16)
        ip_frag = Signal(16)
        ip_proto = Signal(8)
        ip_src = Signal(32)
        ip_dst = Signal(32)
        with m.If(take_in & Mux(t1, k == 3, k == 2)):       # IPv4 bytes 0..7
            m.d.sync += [ip_ver_ihl.eq(_field(ipv, _IP, "version_ihl")),
                         ip_total.eq(_field(ipv, _IP, "total_length")),
                         ip_frag.eq(_field(ipv, _IP, "flags_fragment"))]
        with m.If(take_in & Mux(t1, k == 4, k == 3)):       # IPv4 bytes 8..15
            m.d.sync += [ip_proto.eq(_field(ipv, _IP, "protocol", -8)),
                         ip_src.eq(_field(ipv, _IP, "src_ip", -8))]
        # destination address: frame bytes l3+16..19 end in beat 4 (l3 = 14, 18) or 5 (22);
        # taken from the window as soon as they are in
        dst_off = _IP["dst_ip"].offset
        with m.If(take_in & Mux(t2, k == 5, k == 4)):
            m.d.sync += ip_dst.eq(Mux(one_tag, _be(win, _ETH + _TAG + dst_off - 24, 4),
                                      _be(win, _ETH + dst_off - 24, 4)))
        ihl = ip_ver_ihl[0:4]
        ip_hdr_bytes = Cat(Const(0, 2), ihl)
        bad_ip = Signal()
        frag = Signal()
        not_udp = Signal()
        dst_mis = Signal()
        ip_udp_len = Signal(16)                 # Total Length - 4 IHL
        l3_total = Signal(17)                   # l3 + Total Length
        m.d.sync += [
            bad_ip.eq((ip_ver_ihl[4:8] != net.IPV4_VERSION) | (ihl < net.IPV4_MIN_IHL)
                      | (ip_total < ip_hdr_bytes)),
            frag.eq((ip_frag & net.IPV4_FRAGMENT_MASK) != 0),
            not_udp.eq(ip_proto != net.IP_PROTO_UDP),
            dst_mis.eq(ip_dst != self.dst_ip),
            ip_udp_len.eq(ip_total - ip_hdr_bytes),
            l3_total.eq(ip_total + Mux(t2, _ETH + 2 * _TAG, Mux(t1, _ETH + _TAG, _ETH))),
        ]

        # ---- IPv4 header checksum (RFC 1071), beat by beat. Words of beat k sit at frame
        # offsets 8k + 2w; the header is [l3, l4). Beat 1 holds word 14 (lane 3) when
        # untagged; beat 2 words 16 (untagged), 18, 20 (unless l3 = 22) and 22; beats 3 ..
        # b - 1 are whole; beat b holds 1 (l4 = 2 mod 8) or 3 header words.
        w = [_be(cur.data, 2 * j, 2) for j in range(4)]
        c_v = Signal()
        c_p0 = Signal(17)                       # w1 + w2
        c_p1 = Signal(17)                       # w0 (masked) + w3
        c_w0 = Signal(16)
        c_z, c_b1, c_b2t, c_eq = Signal(), Signal(), Signal(), Signal()
        c_sel_a, c_sel_b = Signal(), Signal()
        k_ge4 = k >= 4
        m0 = (k >= 3) | ((k == 2) & ~t1)
        m.d.sync += c_v.eq(take_in)
        with m.If(take_in):
            lt = (k == 3) | (k_ge4 & (k < b_udp))
            eq = k_ge4 & (k == b_udp)
            m.d.sync += [c_p0.eq(w[1] + w[2]), c_p1.eq(Mux(m0, w[0], 0) + w[3]), c_w0.eq(w[0]),
                         c_z.eq(k == 0), c_b1.eq(k == 1), c_b2t.eq((k == 2) & t1),
                         c_eq.eq(eq),
                         c_sel_a.eq(lt | (eq & ~s4_2) | ((k == 2) & ~t1)),
                         c_sel_b.eq(lt | (k == 2))]
        q_v = Signal()
        q = Signal(18)
        q_z = Signal()
        m.d.sync += q_v.eq(c_v)
        with m.If(c_v):
            sel_a = c_sel_a | (c_b2t & ~t2)
            sel_b = c_sel_b | (c_b1 & ~t1)
            m.d.sync += [q.eq(Mux(sel_a, c_p0, 0) + Mux(c_eq, c_w0, Mux(sel_b, c_p1, 0))),
                         q_z.eq(c_z)]
        acc = Signal(22)
        with m.If(q_v):
            m.d.sync += acc.eq(Mux(q_z, 0, acc) + q)
        # one's-complement fold is 0xFFFF  <=>  low half == ~high half (high half < 64)
        csum_ok = Signal()
        m.d.sync += csum_ok.eq(acc[0:16] == ~Cat(acc[16:], Const(0, 10)))

        # ---- realign to the UDP header (2:1 byte shift), one item a cycle
        p1_v = Signal()
        p1_data = Signal(64)
        p1_keep = Signal(8)
        p1_kind = Signal(2)
        p1_last = Signal()
        p1_end = Signal()                       # the frame ended in this window
        p1_len = Signal(8)                      # frame bytes up to this window
        udp_data = Mux(s4_2, win[16:80], win[48:112])
        udp_keep = Mux(s4_2, win_keep[2:10], win_keep[6:14])
        spill = Mux(s4_2, cur.keep[2], cur.keep[6])        # bytes left for one more item
        emit = (k >= 5) & (k > b_udp)
        m.d.sync += p1_v.eq(0)
        with m.If(flush):
            m.d.sync += [p1_v.eq(1), p1_data.eq(udp_data), p1_keep.eq(udp_keep),
                         p1_kind.eq(fl_kind), p1_last.eq(1), p1_end.eq(1), p1_len.eq(fl_len),
                         flush.eq(0)]
        with m.If(take_in):
            m.d.sync += [prev.eq(cur.data), prev_keep.eq(cur.keep),
                         k.eq(Mux(cur.last, 0, Mux(k == 15, 15, k + 1))),
                         hdr_done.eq(~cur.last & (hdr_done | emit))]
            with m.If(emit):
                m.d.sync += [p1_v.eq(1), p1_data.eq(udp_data), p1_keep.eq(udp_keep),
                             p1_kind.eq(Mux(hdr_done, _PAY, _HDR)),
                             p1_last.eq(cur.last & ~spill), p1_end.eq(cur.last),
                             p1_len.eq(len_cur)]
            with m.If(cur.last):
                m.d.sync += [fl_len.eq(len_cur),
                             flush.eq(~emit | spill),
                             fl_kind.eq(Mux(emit, _PAY,
                                            Mux(k_ge4 & (k == b_udp) & spill, _HDR, _END)))]

        # ================================================================ decision
        # d1 (P1 holds the UDP header beat or the end item): comparisons
        d_v = Signal()
        f = {n: Signal(name=f"f_{n}") for n in
             ("trunc_l2", "not_ipv4", "trunc_ip", "bad_ip", "not_udp", "frag", "dst_ip",
              "trunc_udp", "dst_port", "udp_short", "udp_long", "trunc_short")}
        rem0 = Signal(16)
        meta = Signal(UDP_META)
        m.d.sync += d_v.eq(0)
        with m.If(p1_v & (p1_kind != _PAY)):
            L = p1_len
            udp_len = _field(p1_data, _UDP, "length")
            m.d.sync += [
                d_v.eq(1),
                f["trunc_l2"].eq(p1_end & ((L < _ETH) | (t1 & (L < _ETH + _TAG))
                                           | (t2 & (L < _ETH + 2 * _TAG)))),
                f["not_ipv4"].eq(not_ipv4),
                f["trunc_ip"].eq(p1_end & Mux(t2, L < _ETH + 2 * _TAG + _IP_MIN,
                                              Mux(t1, L < _ETH + _TAG + _IP_MIN,
                                                  L < _ETH + _IP_MIN))),
                f["bad_ip"].eq(bad_ip), f["not_udp"].eq(not_udp), f["frag"].eq(frag),
                f["dst_ip"].eq(self.ip_filter & dst_mis),
                f["trunc_udp"].eq(p1_end & (L < hdr_end)),
                f["dst_port"].eq(self.port_filter
                                 & (_field(p1_data, _UDP, "dst_port") != self.dst_port)),
                f["udp_short"].eq(udp_len <= _UDP_HDR),
                f["udp_long"].eq(udp_len > ip_udp_len),
                f["trunc_short"].eq(p1_end & ((L < l3_total) | (L <= hdr_end))),
                rem0.eq(udp_len - _UDP_HDR),
            ]
            with m.If(p1_kind == _HDR):
                m.d.sync += [meta.src_ip.eq(ip_src), meta.dst_ip.eq(ip_dst),
                             meta.src_port.eq(_field(p1_data, _UDP, "src_port")),
                             meta.dst_port.eq(_field(p1_data, _UDP, "dst_port")),
                             meta.length.eq(udp_len - _UDP_HDR)]
        # d2: the first failing check (the checksum, last in order, joins in d3)
        order = [("trunc_l2", "truncated"), ("not_ipv4", "not_ipv4"),
                 ("trunc_ip", "truncated"), ("bad_ip", "bad_header"), ("not_udp", "not_udp"),
                 ("frag", "fragment"), ("dst_ip", "dst_ip"), ("trunc_udp", "truncated"),
                 ("dst_port", "dst_port"), ("udp_short", "bad_header"),
                 ("udp_long", "bad_header"), ("trunc_short", "truncated")]
        pre_drop = Signal()
        pre_reason = Signal(range(len(DROP_REASONS)))
        v_strobe = Signal()
        reason = Const(0, range(len(DROP_REASONS)))
        for flag, r in reversed(order):
            reason = Mux(f[flag], R[r], reason)
        m.d.sync += v_strobe.eq(d_v)
        with m.If(d_v):
            m.d.sync += [pre_drop.eq(Cat(*f.values()).any()), pre_reason.eq(reason)]

        # ================================================================ trimming (d3)
        p2_v = Signal()
        p2_data = Signal(64)
        p2_keep = Signal(8)
        p2_kind = Signal(2)
        p2_last = Signal()
        m.d.sync += [p2_v.eq(p1_v), p2_data.eq(p1_data), p2_keep.eq(p1_keep),
                     p2_kind.eq(p1_kind), p2_last.eq(p1_last)]
        WAIT, PASS, SKIP = 0, 1, 2
        tstate = Signal(range(3))
        rem = Signal(16)                        # payload bytes still to deliver
        fin = Signal()                          # rem <= 8
        msk = Signal(8)                         # keep mask of min(rem, 8) bytes

        def mask_of(n3):
            return (Const(0xFF, 8) << n3)[8:16]

        with m.If(d_v & (p2_kind == _HDR)):     # d2 time: P2 holds the UDP header beat
            m.d.sync += [rem.eq(rem0), fin.eq(rem0 <= 8),
                         msk.eq(Mux(rem0 >= 8, 0xFF, mask_of(rem0[0:3])))]
        is_pay = p2_v & (p2_kind == _PAY)
        accept = ~pre_drop & csum_ok
        take = is_pay & ((tstate == PASS) | ((tstate == WAIT) & accept))
        out_last = fin | p2_last
        abort = p2_last & (~fin | (msk & ~p2_keep).any())
        m.d.comb += [cand_valid.eq(take),
                     cand.data.eq(p2_data), cand.keep.eq(p2_keep & msk),
                     cand.last.eq(out_last), cand.abort.eq(abort), cand.meta.eq(meta)]
        with m.If(p2_v):
            with m.If(p2_last):
                m.d.sync += tstate.eq(WAIT)
            with m.Elif(is_pay):
                m.d.sync += tstate.eq(Mux(take & ~fin, PASS, SKIP))
        with m.If(take & ~fin):
            m.d.sync += [rem.eq(rem - 8), fin.eq(rem <= 16),
                         msk.eq(Mux(rem >= 16, 0xFF, mask_of(rem[0:3])))]

        # ================================================================ counters
        inc = Signal(len(DROP_REASONS))
        inc_frame = Signal()
        inc_acc = Signal()
        inc_abort = Signal()
        m.d.sync += [
            inc_frame.eq(v_strobe),
            inc_acc.eq(v_strobe & ~pre_drop & csum_ok),
            inc.eq(Mux(v_strobe & pre_drop, 1 << pre_reason, 0)
                   | Mux(v_strobe & ~pre_drop & ~csum_ok, 1 << R["checksum"], 0)),
            inc_abort.eq(take & abort),
        ]
        with m.If(inc_frame):
            m.d.sync += self.frames.eq(self.frames + 1)
        with m.If(inc_acc):
            m.d.sync += self.accepted.eq(self.accepted + 1)
        for i, r in enumerate(DROP_REASONS):
            ctr = getattr(self, f"drop_{r}")
            if r == "truncated":
                m.d.sync += ctr.eq(ctr + (inc[i] + inc_abort))
            else:
                with m.If(inc[i]):
                    m.d.sync += ctr.eq(ctr + 1)
        return m
