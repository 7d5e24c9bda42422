"""MoldUDP64 receive stage: A/B arbitration, sequencing (gaps, duplicates), de-framing.

Source: NASDAQ MoldUDP64 Protocol Specification 1.00, sections 2-3 (layout in
:mod:`hftaccel.spec.moldudp64`). Sequencing follows the golden reader
(``hftaccel.feeds.moldudp64.read_pcap``): the first packet sets the expected sequence number;
a packet (data, heartbeat or End of Session) whose Sequence Number is beyond it reports a gap
and moves the expectation; messages below it are duplicates (the A/B copy that lost the race)
and are dropped; a packet straddling it delivers only its unseen suffix.
"""

from amaranth.hdl import Array, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hftaccel.spec import itch as itch_spec
from hftaccel.spec import moldudp64 as spec

from .eth import UDP_META
from .stream import BEAT_BYTES, be_value, keep_count, message_layout, packet_layout

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


class MoldRx(wiring.Component):
    """Receive MoldUDP64 packets from an A and a B feed; deliver each message once, in order.

    Arbitration is per packet: when idle the stage takes the next packet from ``i_a`` if one
    is waiting, else from ``i_b``, and holds that input until its last beat (so the first copy
    of a packet to arrive wins and the later copy is dropped as duplicates). The 20-byte header
    is parsed as it streams in; message blocks are de-framed at byte-lane granularity, each
    message gathered into one ``o`` beat that is presented the cycle after its last byte is
    accepted. Line rate: one input beat a cycle as long as no message shorter than 7 bytes
    (never the case for ITCH 5.0) starts and ends within one beat.

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

        # ------------------------------------------------------------ A/B arbitration
        busy = Signal()
        sel_b = Signal()
        pick_b = Signal()
        m.d.comb += pick_b.eq(Mux(busy, sel_b, ~self.i_a.valid & self.i_b.valid))
        in_valid = Signal()
        cur = Signal(packet_layout(UDP_META))
        consume = Signal()
        m.d.comb += [
            in_valid.eq(Mux(pick_b, self.i_b.valid, self.i_a.valid)),
            cur.eq(Mux(pick_b, self.i_b.payload, self.i_a.payload)),
            self.i_a.ready.eq(consume & ~pick_b),
            self.i_b.ready.eq(consume & pick_b),
        ]
        with m.If(in_valid & consume):
            m.d.sync += [busy.eq(~cur.last), sel_b.eq(pick_b)]

        lanes = [cur.data[8 * i:8 * i + 8] for i in range(BEAT_BYTES)]
        larr = Array(lanes)
        n = Signal(range(BEAT_BYTES + 1))
        m.d.comb += n.eq(keep_count(cur.keep))

        # ------------------------------------------------------------ header
        HDR, LEN0, LEN1, MSG, SKIP, DISCARD = range(6)
        phase = Signal(range(6), init=HDR)
        hb = Signal(range(spec.HEADER_SIZE // BEAT_BYTES + 1))     # header beat index
        hdr_reg = [Signal(8, name=f"hdr{p}") for p in range(spec.HEADER_SIZE)]
        hdr_beat = spec.HEADER_SIZE // BEAT_BYTES      # beat where the header completes
        hdr_lane = spec.HEADER_SIZE % BEAT_BYTES       # first block lane in that beat

        def hbyte(p):   # header byte p as seen at the header-completing beat
            if p // BEAT_BYTES == hdr_beat:
                return lanes[p % BEAT_BYTES]
            return hdr_reg[p]

        h_session = Cat(*[hbyte(_SESSION + k) for k in range(spec.SESSION_SIZE)])
        h_seq = be_value([hbyte(_SEQ + k) for k in range(8)])
        h_count = be_value([hbyte(_COUNT + k) for k in range(2)])
        in_hdr = phase == HDR
        hdr_done = Signal()     # this beat completes the header
        m.d.comb += hdr_done.eq(in_hdr & (hb == hdr_beat) & (n >= hdr_lane))
        is_hb = h_count == spec.HEARTBEAT_COUNT
        is_eos = h_count == spec.END_OF_SESSION_COUNT
        new_session = ~self.synced | (self.end_of_session & (h_session != self.session))
        wrong_session = self.synced & ~new_session & (h_session != self.session)
        exp_eff = Mux(new_session, h_seq, self.expected)
        gap = hdr_done & ~wrong_session & (h_seq > exp_eff)
        eos_ev = hdr_done & ~wrong_session & is_eos & (new_session | ~self.end_of_session)
        ev_fire = gap | eos_ev

        # ------------------------------------------------------------ block de-framing
        lane_start = Signal(range(BEAT_BYTES + 1))
        mrem = Signal(16)
        mlen = Signal(16)
        wp = Signal(16)
        len_hi = Signal(8)
        blocks = Signal(16)
        cur_seq = Signal(64)
        trail = Signal()

        a = Signal(range(BEAT_BYTES + 1))
        eff_phase = Signal(range(6))
        eff_blocks = Signal(16)
        m.d.comb += [
            a.eq(Mux(in_hdr, hdr_lane, lane_start)),
            eff_blocks.eq(Mux(in_hdr, h_count, blocks)),
        ]
        with m.If(in_hdr):
            with m.If(wrong_session):
                m.d.comb += eff_phase.eq(DISCARD)
            with m.Elif(is_hb | is_eos):
                m.d.comb += eff_phase.eq(SKIP)
            with m.Else():
                m.d.comb += eff_phase.eq(LEN0)
        with m.Else():
            m.d.comb += eff_phase.eq(phase)

        # tail of the message in progress
        avail = Signal(range(BEAT_BYTES + 1))
        m.d.comb += avail.eq(n - a)
        in_msg = eff_phase == MSG
        t_end = Signal()
        m.d.comb += t_end.eq(in_msg & (mrem <= avail))
        tail_n = Signal(range(BEAT_BYTES + 1))
        m.d.comb += tail_n.eq(Mux(in_msg, Mux(t_end, mrem, avail), 0))
        blocks_after = Signal(16)
        m.d.comb += blocks_after.eq(eff_blocks - t_end)
        # where a Message Length field may start in this beat
        x = Signal(range(2 * BEAT_BYTES + 1))
        len_from_x = Signal()
        m.d.comb += [
            x.eq(Mux(t_end, a + mrem, a)),
            len_from_x.eq((t_end & (blocks_after != 0)) | (eff_phase == LEN0)),
        ]
        # Message Length and the head of the next message
        new_len = Signal(16)
        y = Signal(range(2 * BEAT_BYTES + 2))
        has_len = Signal()
        with m.If(len_from_x & (x + 1 < n)):
            m.d.comb += [new_len.eq(be_value([larr[x], larr[x + 1]])), y.eq(x + 2),
                         has_len.eq(1)]
        with m.Elif((eff_phase == LEN1) & (a < n)):
            m.d.comb += [new_len.eq(be_value([len_hi, larr[a]])), y.eq(a + 1), has_len.eq(1)]
        stop = Signal()       # next message would also end in this beat: resume there
        m.d.comb += stop.eq(has_len & (y + new_len <= n))
        head_n = Signal(range(BEAT_BYTES + 1))
        m.d.comb += head_n.eq(Mux(has_len & ~stop, n - y, 0))

        # gather buffer: tail view (what an ending message holds) and next buffer state
        buf = [Signal(8, name=f"msg{p}") for p in range(cap)]
        tview = []
        rot_t = Signal(3)
        m.d.comb += rot_t.eq(a - wp[0:3])
        for p in range(cap):
            v = Signal(8, name=f"tv{p}")
            lane = larr[(rot_t + (p % BEAT_BYTES))[0:3]]
            m.d.comb += v.eq(Mux((wp <= p) & (p < wp + tail_n), lane, buf[p]))
            tview.append(v)
        msg_end = t_end

        # ------------------------------------------------------------ handshake
        eos_pending = Signal()
        eos_first = Signal(64)
        o_free = ~self.o.valid | self.o.ready
        ev_free = ~self.o_event.valid | self.o_event.ready
        fire = Signal()
        m.d.comb += fire.eq(in_valid & (~msg_end | o_free)
                            & (~ev_fire | (ev_free & ~eos_pending)))
        m.d.comb += consume.eq(fire & ~stop)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.o_event.valid & self.o_event.ready):
            m.d.sync += self.o_event.valid.eq(0)

        # End of Session event, sent on its own cycle (a gap event may be due with it)
        with m.If(eos_pending & ev_free & ~(fire & gap)):
            m.d.sync += [eos_pending.eq(0), self.o_event.valid.eq(1),
                         self.o_event.payload.kind.eq(EVENT_END_OF_SESSION),
                         self.o_event.payload.first.eq(eos_first),
                         self.o_event.payload.count.eq(0)]

        def inc(name, cond=1):
            ctr = getattr(self, name)
            return ctr.eq(ctr + cond)

        expected_next = Signal(64)
        m.d.comb += expected_next.eq(self.expected)
        with m.If(fire):
            m.d.sync += self.expected.eq(expected_next)
            # header beats before the completing one
            with m.If(in_hdr & ~hdr_done):
                for p in range(min(spec.HEADER_SIZE, (hdr_beat + 1) * BEAT_BYTES)):
                    if p // BEAT_BYTES < hdr_beat:
                        with m.If(hb == p // BEAT_BYTES):
                            m.d.sync += hdr_reg[p].eq(lanes[p % BEAT_BYTES])
                m.d.sync += hb.eq(hb + 1)
                with m.If(cur.last):
                    m.d.sync += [inc("short"), hb.eq(0), inc("packets"),
                                 inc("packets_b", pick_b)]
            with m.If(hdr_done):
                m.d.sync += [hb.eq(0), inc("packets"), inc("packets_b", pick_b),
                             cur_seq.eq(h_seq), trail.eq(0)]
                with m.If(~wrong_session):
                    m.d.comb += expected_next.eq(Mux(h_seq > exp_eff, h_seq, exp_eff))
                    m.d.sync += inc("heartbeats", is_hb)
                    with m.If(new_session):
                        m.d.sync += [self.synced.eq(1), self.session.eq(h_session),
                                     self.end_of_session.eq(0)]
                    with m.If(is_eos):
                        m.d.sync += self.end_of_session.eq(1)
                with m.Else():
                    m.d.sync += inc("wrong_session")
                with m.If(gap):
                    m.d.sync += [self.o_event.valid.eq(1),
                                 self.o_event.payload.kind.eq(EVENT_GAP),
                                 self.o_event.payload.first.eq(exp_eff),
                                 self.o_event.payload.count.eq(h_seq - exp_eff),
                                 inc("gaps"),
                                 self.gap_messages.eq(self.gap_messages
                                                      + (h_seq - exp_eff)[0:32])]
                with m.If(eos_ev):      # after the gap event when both are due
                    m.d.sync += [eos_pending.eq(1), eos_first.eq(expected_next)]
            # message end
            with m.If(msg_end):
                m.d.sync += [cur_seq.eq(cur_seq + 1)]
                with m.If(cur_seq == self.expected):
                    m.d.comb += expected_next.eq(self.expected + 1)
                    m.d.sync += [self.o.valid.eq(1),
                                 self.o.payload.length.eq(mlen),
                                 self.o.payload.meta.seq.eq(cur_seq),
                                 inc("delivered")]
                    for p in range(cap):
                        m.d.sync += self.o.payload.data[p].eq(tview[p])
                with m.Else():
                    m.d.sync += inc("duplicates")
            # block state
            with m.If(~in_hdr | hdr_done):
                m.d.sync += blocks.eq(blocks_after)
                with m.If(in_msg & ~t_end):
                    m.d.sync += [mrem.eq(mrem - tail_n), wp.eq(wp + tail_n)]
                    for p in range(cap):
                        m.d.sync += buf[p].eq(tview[p])
                with m.If(has_len):
                    m.d.sync += [mrem.eq(new_len - head_n), mlen.eq(new_len), wp.eq(head_n),
                                 phase.eq(MSG)]
                    for p in range(min(cap, BEAT_BYTES)):
                        with m.If(p < head_n):
                            m.d.sync += buf[p].eq(larr[(y + p)[0:3]])
                    with m.If(stop):
                        m.d.sync += lane_start.eq(y)
                with m.Elif(len_from_x & (x < n)):
                    m.d.sync += [len_hi.eq(larr[x]), phase.eq(LEN1)]
                with m.Elif(len_from_x):
                    m.d.sync += phase.eq(LEN0)
                with m.Elif(t_end | (eff_phase == SKIP)):
                    m.d.sync += phase.eq(SKIP)
                    with m.If(x < n):
                        m.d.sync += trail.eq(1)
                with m.Elif(eff_phase == DISCARD):
                    m.d.sync += phase.eq(DISCARD)
                with m.If(~stop):
                    m.d.sync += lane_start.eq(0)
                # end of packet
                with m.If(cur.last & ~stop):
                    m.d.sync += [phase.eq(HDR), lane_start.eq(0)]
                    with m.If(cur.abort):
                        m.d.sync += inc("aborted")
                    ends_in_skip = (t_end & (blocks_after == 0)) | (eff_phase == SKIP)
                    with m.If(ends_in_skip):
                        with m.If(trail | (x < n)):
                            m.d.sync += inc("trailing")
                    with m.Elif(eff_phase != DISCARD):
                        m.d.sync += inc("overrun")
        return m
