"""cocotb testbench of ``hftaccel.rtl.moldudp64.MoldRx`` (A/B arbitration, sequencing, de-framing).

Scoreboard: the packets the DUT took, in the order it took them (first-beat handshake cycles
on A and B), are written to a pcap and read back by the golden reader
(``hftaccel.feeds.moldudp64.read_pcap``); its messages (re-encoded to bytes by the golden
``hftaccel.feeds.itch.encode``), gaps, heartbeats and End of Session are what the DUT must
produce. Packets are built by the golden writer (``write_pcap``) or, for malformed ones, from
the spec's header dtype and the golden block framer, wrapped in frames by scapy.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cocotb
import numpy as np

from hftaccel.rtl.eth import UDP_META
from hftaccel.rtl.moldudp64 import (EVENT_END_OF_SESSION, EVENT_GAP, EVENT_LAYOUT, MAX_MESSAGE,
                                    MESSAGE_META, MoldRx)
from hftaccel.rtl.stream import message_layout, packet_layout
from hftaccel.sim.common import (TB, PacketSource, StreamSink, full_run, itch_file, mold_pcap,
                                 pcap_frames, real_pcaps, record_latency, udp_payload,
                                 write_frames)
from hftaccel.spec import moldudp64 as mspec


class MoldTB(TB):
    def __init__(self, dut, *, idle=0.3, stall=0.3):
        super().__init__(dut)
        self.a = PacketSource(self, "i_a", packet_layout(UDP_META), idle=idle)
        self.b = PacketSource(self, "i_b", packet_layout(UDP_META), idle=idle)
        self.sink = StreamSink(self, "o", message_layout(MAX_MESSAGE, MESSAGE_META),
                               stall=stall)
        self.events = StreamSink(self, "o_event", EVENT_LAYOUT, stall=stall)
        self.frames: dict = {}

    def send(self, feed: str, frame: bytes, *, cut: int | None = None):
        """Send a frame's UDP payload on feed "a" or "b"; ``cut``: keep only that many payload
        bytes and end with ``abort`` (what EthRx does with a truncated frame)."""
        body, meta = udp_payload(frame)
        tag = len(self.frames)
        self.frames[tag] = frame if cut is None else frame[:len(frame) - (len(body) - cut)]
        src = self.a if feed == "a" else self.b
        src.send_packet(body if cut is None else body[:cut], meta, abort=cut is not None,
                        tag=tag)

    async def settle(self, timeout=20_000):
        for _ in range(timeout):
            if self.a.empty() and self.b.empty():
                break
            await self.cycles(1)
        else:
            d = self.dut
            raise AssertionError(f"DUT stuck: A {len(self.a.queue)} B {len(self.b.queue)} beats "
                                 f"queued; delivered {int(d.delivered.value)}, packets "
                                 f"{int(d.packets.value)}")
        await self.cycles(30)

    def taken_order(self) -> list:
        starts = sorted(self.a.packet_starts + self.b.packet_starts)
        return [self.frames[tag] for _, tag in starts]


def expected_from_golden(frames, tmp: Path):
    """Golden view of a capture: [(seq, bytes)], [(first, count)], heartbeats, eos."""
    from hftaccel.feeds import itch
    from hftaccel.feeds.moldudp64 import read_pcap
    p = tmp / "taken.pcap"
    write_frames(p, frames)
    cap = read_pcap(p, lenient=True)
    payload, offsets, lengths = itch.encode(cap.messages)
    msgs = [(int(s), bytes(payload[o:o + n])) for s, o, n in
            zip(cap.seq.tolist(), offsets.tolist(), lengths.tolist())]
    gaps = [(first, count) for _, first, count in cap.gaps]
    return msgs, gaps, cap


def check(tb: MoldTB, frames, tmp: Path, *, check_dups=True):
    msgs, gaps, cap = expected_from_golden(frames, tmp)
    got = []
    while not tb.sink.empty():
        _, beat = tb.sink.recv_nowait()
        n = beat["length"]
        got.append((beat["meta"]["seq"], bytes(beat["data"][:n])))
    assert len(got) == len(msgs), f"{len(got)} messages out, golden {len(msgs)}"
    for k, (g, e) in enumerate(zip(got, msgs)):
        assert g == e, f"message {k}: DUT seq {g[0]} {g[1].hex()} != golden seq {e[0]} {e[1].hex()}"
    ev = []
    while not tb.events.empty():
        _, e = tb.events.recv_nowait()
        ev.append(e)
    got_gaps = [(e["first"], e["count"]) for e in ev if e["kind"] == EVENT_GAP]
    assert got_gaps == gaps, f"gap events {got_gaps} != golden {gaps}"
    n_eos = sum(e["kind"] == EVENT_END_OF_SESSION for e in ev)
    assert n_eos == int(cap.end_of_session), f"{n_eos} End of Session events, golden {cap.end_of_session}"
    assert tb.counter("heartbeats") == cap.heartbeats
    assert tb.counter("delivered") == len(msgs)
    assert tb.counter("gaps") == len(gaps)
    if check_dups:
        assert tb.counter("duplicates") == cap.duplicates
    assert tb.a.empty() and tb.b.empty() and tb.sink.empty() and tb.events.empty()
    return len(msgs)


@cocotb.test()
async def test_real_pcaps(dut):
    """The OMI captures (one session, a gap between them) on feed A, then all again on B."""
    tb = MoldTB(dut)
    await tb.reset()
    frames = [f for p in real_pcaps() for f in pcap_frames(p)]
    for f in frames:
        tb.send("a", f)
    await tb.settle()
    for f in frames:
        tb.send("b", f)
    await tb.settle()
    with tempfile.TemporaryDirectory() as d:
        check(tb, tb.taken_order(), Path(d))
    assert tb.counter("packets_b") == len(frames)


def synthetic_messages(n: int, seed: int):
    from hftaccel.feeds import itch, synthetic
    return itch.concat(list(synthetic.generate(n, n_symbols=16, seed=seed)))


@cocotb.test()
async def test_ab_loss(dut):
    """The real ITCH file and a synthetic order flow re-framed into MoldUDP64 (heartbeats,
    End of Session), sent on A and B with independent packet loss (so both feeds are needed
    and some messages are lost on both: gaps), random idle gaps and back-pressure."""
    from hftaccel.feeds import itch
    tb = MoldTB(dut)
    await tb.reset()
    rng = np.random.default_rng(7)
    n_syn = 3000 if full_run() else 600
    msgs = itch.concat([itch.read_file(itch_file()).messages])
    syn = synthetic_messages(n_syn, 11)
    for a in syn.values():
        a["seq"] += 10_000
    with tempfile.TemporaryDirectory() as d:
        frames = mold_pcap(Path(d) / "f.pcap", itch.concat([msgs, syn]), max_payload=400,
                           heartbeat_interval_ns=5_000_000_000, first_seq=1000)
        lost_a = rng.random(len(frames)) < 0.15
        lost_b = rng.random(len(frames)) < 0.15
        for k, f in enumerate(frames):
            if not lost_a[k]:
                tb.send("a", f)
            if not lost_b[k]:
                tb.send("b", f)
            if k % 8 == 7:
                await tb.settle()
        await tb.settle()
        n = check(tb, tb.taken_order(), Path(d))
    tb.dut._log.info("A/B with loss: %d frames, %d messages delivered, %d gaps", len(frames), n,
                     tb.counter("gaps"))


def _beats(body: bytes) -> int:
    """Beats a packet of ``body`` takes on a 64-bit stream."""
    return (len(body) + 7) // 8


def mold_packet(session: bytes, seq: int, count: int, blocks: list) -> bytes:
    """MoldUDP64 packet from the spec's header dtype and the golden block framer."""
    from hftaccel.feeds import itch
    hdr = np.zeros(1, mspec.HEADER_DTYPE)
    hdr["session"] = session
    hdr["sequence_number"] = seq
    hdr["message_count"] = count
    if not blocks:
        return hdr.tobytes()
    payload = np.frombuffer(b"".join(blocks), np.uint8)
    lengths = np.array([len(b) for b in blocks], np.int64)
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return hdr.tobytes() + itch.frame(payload, offsets, lengths)


def udp_frame(mold: bytes) -> bytes:
    from scapy.all import IP, UDP, Ether, Raw
    return bytes(Ether() / IP(dst="233.252.0.1") / UDP(dport=mspec.DEFAULT_UDP_PORT)
                 / Raw(mold))


@cocotb.test()
async def test_adversarial(dut):
    """Rounds of (malformed copy on A, good copy on B): Message Count too large / too small,
    a packet cut mid-message, a packet shorter than the header; then duplicates, stale
    packets, a gap, a heartbeat revealing a gap, End of Session twice."""
    from hftaccel.feeds import itch
    tb = MoldTB(dut)
    await tb.reset()
    m = synthetic_messages(200, 5)
    payload, offsets, lengths = itch.encode(m)
    blocks = [bytes(payload[o:o + n]) for o, n in zip(offsets.tolist(), lengths.tolist())]
    sess = b"ADVERSE001"
    seq = 1
    frames_good = []
    pos = 0
    rounds = []
    k = 0
    while pos + 6 <= len(blocks):
        nb = 3 + k % 4
        good = mold_packet(sess, seq, nb, blocks[pos:pos + nb])
        kind = k % 5
        if kind == 0:
            bad = mold_packet(sess, seq, nb + 2, blocks[pos:pos + nb])          # overrun
        elif kind == 1:
            bad = mold_packet(sess, seq, nb - 1, blocks[pos:pos + nb])          # trailing
        elif kind == 2:
            bad = None                                                          # cut
        elif kind == 3:
            bad = mold_packet(sess, seq, nb, blocks[pos:pos + nb])[:15]         # short
        else:
            bad = good                                                          # duplicate
        rounds.append((kind, bad, good))
        frames_good.append(good)
        seq += nb
        pos += nb
        k += 1
    for kind, bad, good in rounds:
        fg = udp_frame(good)
        if kind == 2:
            tb.send("a", fg, cut=len(good) - 7)
        else:
            tb.send("a", udp_frame(bad))
        tb.send("b", fg)
        await tb.settle()
    # stale replay of an old packet, a gap, a heartbeat beyond the expectation, EOS twice
    tb.send("a", udp_frame(frames_good[1]))
    await tb.settle()
    tb.send("a", udp_frame(mold_packet(sess, seq + 5, 2, blocks[pos:pos + 2])))
    await tb.settle()
    tb.send("b", udp_frame(mold_packet(sess, seq + 20, 0, [])))
    await tb.settle()
    tb.send("a", udp_frame(mold_packet(sess, seq + 20, mspec.END_OF_SESSION_COUNT, [])))
    tb.send("b", udp_frame(mold_packet(sess, seq + 20, mspec.END_OF_SESSION_COUNT, [])))
    await tb.settle()
    with tempfile.TemporaryDirectory() as d:
        check(tb, tb.taken_order(), Path(d), check_dups=False)
    assert tb.counter("short") == sum(r[0] == 3 for r in rounds)
    assert tb.counter("aborted") == sum(r[0] == 2 for r in rounds)
    assert tb.counter("trailing") == sum(r[0] == 1 for r in rounds)
    assert tb.counter("overrun") == sum(r[0] in (0, 2) for r in rounds)


@cocotb.test()
async def test_latency(dut):
    """No back-pressure: cycles from a message's last byte accepted to its beat accepted, the
    same for every message and equal to ``MoldRx.latency``."""
    from hftaccel.feeds.moldudp64 import iter_packets
    tb = MoldTB(dut, idle=0.0, stall=0.0)
    await tb.reset()
    m = synthetic_messages(300, 9)
    with tempfile.TemporaryDirectory() as d:
        frames = mold_pcap(Path(d) / "l.pcap", m, max_payload=1472)
        lengths = [[len(x) for x in p.messages] for p in iter_packets(Path(d) / "l.pcap")]
    lat = []
    for f, msg_lengths in zip(frames, lengths):
        body, _ = udp_payload(f)
        tb.send("a", f)
        await tb.settle()
        cycles = tb.a.accepted[-_beats(body):]
        last = mspec.HEADER_SIZE - 1          # payload offset of each message's last byte
        for n in msg_lengths:
            last += mspec.BLOCK_LENGTH_SIZE + n
            out_cycle, _ = tb.sink.recv_nowait()
            lat.append(out_cycle - cycles[last // 8])
    assert tb.sink.empty() and tb.a.empty()
    tb.dut._log.info("moldudp64 latency (message last byte in -> message out), cycles: "
                     "min %d max %d over %d messages", min(lat), max(lat), len(lat))
    record_latency("moldudp64", lat)
    assert set(lat) == {MoldRx.latency}, (f"latency {min(lat)}..{max(lat)} cycles, documented "
                                          f"{MoldRx.latency}")

@cocotb.test()
async def test_line_rate(dut):
    """Back-to-back minimum-size messages (S, 12 bytes, and D, 19 bytes, so blocks straddle
    beat boundaries at every lane) in full packets, no idle, no back-pressure: every beat of a
    packet is accepted on consecutive cycles and all messages come out."""
    from hftaccel.feeds import itch
    tb = MoldTB(dut, idle=0.0, stall=0.0)
    await tb.reset()
    n = 400
    s = itch.empty("S", n)
    s["seq"] = np.arange(0, 2 * n, 2)
    s["event_code"] = b"O"
    d = itch.empty("D", n)
    d["seq"] = np.arange(1, 2 * n, 2)
    d["order_ref"] = np.arange(n) * 7919
    d["stock_locate"] = np.arange(n) % 5
    with tempfile.TemporaryDirectory() as tmp:
        frames = mold_pcap(Path(tmp) / "s.pcap", {"S": s, "D": d}, max_payload=1472,
                           end_of_session=False)
        stalls = 0
        for f in frames:
            body, _ = udp_payload(f)
            tb.send("a", f)
            await tb.settle()
            acc = tb.a.accepted[-_beats(body):]
            stalls += sum(b - a - 1 for a, b in zip(acc, acc[1:]))
        check(tb, tb.taken_order(), Path(tmp))
    assert stalls == 0, f"{stalls} stall cycles on back-to-back minimum-size messages"
    tb.dut._log.info("line rate: %d frames of S/D messages, 0 stall cycles", len(frames))
