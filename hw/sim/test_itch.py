"""cocotb testbench of ``hftaccel.rtl.itch.ItchParser`` (ITCH 5.0 message -> decoded record).

Scoreboard: the golden decoder ``hftaccel.feeds.itch.decode_blocks`` (lenient) over the very
message blocks the DUT receives: its ``order_events`` records (book types) and decoded arrays
(S, H, R and the ``stock`` of A/F/P) are what each decoded record must hold, field by field;
its skip counts, and the count of other message types it decodes, are what the DUT's skip
counters must show.
"""

from __future__ import annotations

import numpy as np

import cocotb

from hftaccel.rtl.itch import DECODED_LAYOUT, DECODED_TYPES, ItchParser
from hftaccel.rtl.moldudp64 import MAX_MESSAGE, MESSAGE_META
from hftaccel.rtl.stream import message_layout
from hftaccel.sim.common import (TB, StreamSink, StreamSource, full_run, itch_file, real_pcaps,
                                 record_latency)
from hftaccel.spec import itch as spec



class ItchTB(TB):
    def __init__(self, dut, *, idle=0.3, stall=0.3):
        super().__init__(dut)
        self.src = StreamSource(self, "i", message_layout(MAX_MESSAGE, MESSAGE_META), idle=idle)
        self.sink = StreamSink(self, "o", DECODED_LAYOUT, stall=stall)

    def send(self, seq: int, msg: bytes):
        self.src.send_nowait({"data": msg[:MAX_MESSAGE], "length": len(msg),
                              "meta": {"seq": seq}})

    async def settle(self, timeout=200_000):
        await self.drain(self.src, timeout=timeout, tail=20, what="messages")


def _as_int(value, size):
    if isinstance(value, (bytes, np.bytes_)):
        b = bytes(value).ljust(size, b" ")
        return int.from_bytes(b, "little")
    return int(value)


def expected_records(messages: dict) -> list:
    """Golden records by seq: {field: int} for every DECODED_TYPES message."""
    from hftaccel.feeds import itch
    recs: dict = {}
    for ev in itch.order_events(messages):
        recs[int(ev["seq"])] = {n: int(ev[n]) for n in spec.ORDER_EVENT_DTYPE.names
                                if not n.startswith("_")}
    for t in DECODED_TYPES:
        arr = messages.get(t)
        if arr is None:
            continue
        lay = spec.LAYOUTS[t]
        for row in arr:
            r = recs.setdefault(int(row["seq"]), {})
            r["seq"] = int(row["seq"])
            r["msg_type"] = ord(t)
            for f in lay.fields:
                if f.name in DECODED_LAYOUT.members and f.name not in r and f.name != "msg_type":
                    r[f.name] = _as_int(row[f.name], f.size)
    return [recs[s] for s in sorted(recs)]


def blocks_of(messages: dict):
    """(seqs, [bytes]) of a messages dict, encoded by the golden encoder in seq order."""
    from hftaccel.feeds import itch
    payload, offsets, lengths = itch.encode(messages)
    seqs = np.sort(np.concatenate([a["seq"] for a in messages.values()]))
    return seqs.tolist(), [bytes(payload[o:o + n]) for o, n in
                           zip(offsets.tolist(), lengths.tolist())]


async def run_blocks(tb: ItchTB, seqs, blocks):
    """Send blocks, compare with golden decode_blocks of the same bytes; returns #records."""
    from hftaccel.feeds import itch
    buf = np.frombuffer(b"".join(blocks) or b"\0", np.uint8)
    lengths = np.array([len(b) for b in blocks], np.int64)
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    gold = itch.decode_blocks(buf, offsets, lengths, np.array(seqs, np.uint64), lenient=True)
    expected = expected_records(gold.messages)
    for s, b in zip(seqs, blocks):
        tb.send(s, b)
    await tb.settle()
    cycles, got = [], []
    while not tb.sink.empty():
        c, rec = tb.sink.recv_nowait()
        cycles.append(c)
        got.append(rec)
    assert len(got) == len(expected), f"{len(got)} records, golden {len(expected)}"
    for k, (g, e) in enumerate(zip(got, expected)):
        for name, v in e.items():
            assert g[name] == v, (f"record {k} (seq {e['seq']}, type {chr(e['msg_type'])}): "
                                  f"{name} = {g[name]:#x}, golden {v:#x}")
    other = sum(len(a) for t, a in gold.messages.items() if t not in DECODED_TYPES)
    assert tb.counter("skipped_other") == other
    for r in ("unknown_type", "bad_length", "zero_length"):
        assert tb.counter(f"skipped_{r}") == gold.skipped[r], r
    assert tb.counter("decoded") == len(expected)
    assert tb.src.empty() and tb.sink.empty()
    return list(zip(cycles, got))


@cocotb.test()
async def test_real_itch(dut):
    """The real ITCH file (S, R, H, Y) and every message of the OMI captures."""
    from hftaccel.feeds import itch
    from hftaccel.feeds.moldudp64 import read_pcap
    tb = ItchTB(dut)
    await tb.reset()
    parts = [itch.read_file(itch_file()).messages]
    for k, p in enumerate(real_pcaps()):
        msgs = read_pcap(p).messages          # one session; renumber so captures follow on
        lo = min(int(a["seq"].min()) for a in msgs.values() if len(a))
        for a in msgs.values():
            a["seq"] = a["seq"] - np.uint64(lo) + np.uint64(10_000_000 * (k + 1))
        parts.append(msgs)
    seqs, blocks = blocks_of(itch.concat(parts))
    out = await run_blocks(tb, seqs, blocks)
    tb.dut._log.info("real ITCH: %d messages, %d decoded", len(blocks), len(out))


@cocotb.test()
async def test_synthetic_flow(dut):
    """Synthetic multi-symbol order flow: every A F E C X D U P plus framing S and R."""
    from hftaccel.feeds import itch, synthetic
    tb = ItchTB(dut)
    await tb.reset()
    n = 20_000 if full_run() else 1500
    m = itch.concat(list(synthetic.generate(n, n_symbols=50, seed=21)))
    seqs, blocks = blocks_of(m)
    await run_blocks(tb, seqs, blocks)


@cocotb.test()
async def test_adversarial(dut):
    """Unknown message types, wrong lengths (one short, one long), empty messages and other
    ITCH types mixed into a synthetic flow."""
    from hftaccel.feeds import itch, synthetic
    tb = ItchTB(dut)
    await tb.reset()
    m = itch.concat(list(synthetic.generate(300, n_symbols=8, seed=2)))
    seqs, blocks = blocks_of(m)
    rng = np.random.default_rng(3)
    known = set(spec.LAYOUTS)
    unknown = [c for c in range(256) if chr(c) not in known]
    out = []
    for b in blocks:
        r = rng.random()
        if r < 0.05:
            out.append(bytes([int(rng.choice(unknown))]) + b[1:])
        elif r < 0.08:
            out.append(b[:-1])
        elif r < 0.10:
            out.append(b + b[-1:])
        elif r < 0.12:
            out.append(b"")
        else:
            out.append(b)
    await run_blocks(tb, seqs, out)


@cocotb.test()
async def test_latency_line_rate(dut):
    """No back-pressure: one message accepted every cycle (``ItchParser.ii``) and the record
    out ``ItchParser.latency`` cycles after its message is accepted."""
    from hftaccel.feeds import itch, synthetic
    tb = ItchTB(dut, idle=0.0, stall=0.0)
    await tb.reset()
    m = itch.concat(list(synthetic.generate(500, n_symbols=8, seed=4)))
    seqs, blocks = blocks_of(m)
    out = await run_blocks(tb, seqs, blocks)
    acc = tb.src.accepted[-len(blocks):]
    assert all(b - a == ItchParser.ii for a, b in zip(acc, acc[1:])), "input stalled"
    in_cycle = dict(zip(seqs, acc))
    lat = [c - in_cycle[rec["seq"]] for c, rec in out]
    tb.dut._log.info("itch latency (message accepted -> record accepted), cycles: min %d max "
                     "%d over %d records", min(lat), max(lat), len(lat))
    record_latency("itch", lat)
    assert set(lat) == {ItchParser.latency}, (f"latencies {sorted(set(lat))}, documented "
                                              f"{ItchParser.latency}")
