"""cocotb testbench of ``hftaccel.rtl.features.FeatureEngine`` (book record -> feature vector).

Scoreboard: the golden ``hftaccel.golden.features.compute_features`` over the very records the
DUT receives (from reset, one expected vector per record, in order): every feature code, the
record carried through, the meta tag (the record's index) and the anomaly counters must
match. Inputs: the real AMZN day (LOBSTER-derived ITCH, embedded sample) through the golden
book; a synthetic multi-symbol stream with interleaved and back-to-back records of one symbol,
time jumps, time going backwards and side-less trades; random records at the extremes of every
field (one-sided, crossed and empty books, 2**32 - 1 shares, timestamps past 2**63). Random
back-pressure and idle gaps on every test but the latency one.

The DUT's parameters come from the environment (``FEATURES_PARAMS``, JSON keyword arguments of
:class:`~hftaccel.rtl.features.FeatureEngine`), set by ``tests/rtl/test_rtl_features.py``;
locates used by the tests are distinct modulo ``n_symbols``.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

import cocotb

from hftaccel.rtl.features import FeatureEngine
from hftaccel.sim.common import TB, StreamSink, StreamSource, full_run, pack, record_latency
from hftaccel.spec import features as fs
from hftaccel.spec.book import book_record_dtype
from hftaccel.spec.itch import BOOK_MESSAGE_TYPES

PARAMS = json.loads(os.environ.get("FEATURES_PARAMS", "{}"))
DUT = FeatureEngine(**PARAMS)
META = DUT.meta_layout is not None
_M32 = 0xFFFF_FFFF
_FIELDS = [n for n in book_record_dtype(DUT.depth).names if not n.startswith("_")]
# Verilator's VPI returns at most VL_VALUE_STRING_MAX_WORDS (64) 32-bit words of a signal:
# an output payload wider than 2048 bits (the default depth 8 carries a 1856-bit record) is
# read cut short, so only its low 2048 bits (every feature code comes first) are compared.
_VISIBLE = 2048 if os.environ.get("SIM", "verilator") == "verilator" else None
_REC_OFF = DUT.out_layout["rec"].offset
_REC_MASK = ((1 << max(0, _VISIBLE - _REC_OFF)) - 1
             if _VISIBLE is not None and DUT.out_layout.size > _VISIBLE else -1)
_META_SEEN = META and (_VISIBLE is None or DUT.out_layout.size <= _VISIBLE)


class FeaturesTB(TB):
    def __init__(self, dut, *, idle=0.3, stall=0.3):
        super().__init__(dut)
        self.src = StreamSource(self, "i", DUT.in_layout, idle=idle)
        self.sink = StreamSink(self, "o", DUT.out_layout, stall=stall)

    def send(self, records: np.ndarray):
        for k, rec in enumerate(_as_dicts(records)):
            self.src.send_nowait({"rec": rec, "meta": k & _M32} if META else rec)

    async def settle(self, timeout=2_000_000):
        await self.drain(self.src, timeout=timeout, tail=DUT.latency + 20, what="records")


def _as_dicts(records: np.ndarray) -> list:
    cols = {n: records[n].tolist() for n in _FIELDS}
    return [{n: cols[n][k] for n in _FIELDS} for k in range(records.shape[0])]


async def check(tb: FeaturesTB, records: np.ndarray) -> list:
    """Reset, send ``records``, compare every output beat with golden; returns the beats as
    ``(cycle, beat)``."""
    from hftaccel.golden.features import FeatureEngine as Golden
    await tb.reset()
    golden = Golden()
    expected = golden.update(records)
    tb.send(records)
    await tb.settle()
    got = []
    while not tb.sink.empty():
        got.append(tb.sink.recv_nowait())
    recs = _as_dicts(records)
    for k, ((_, g), e) in enumerate(zip(got, expected)):
        want = [int(v) & _M32 for v in e]
        if g["x"] != want:
            bad = [(fs.FEATURE_NAMES[j], g["x"][j], want[j]) for j in range(fs.N_FEATURES)
                   if g["x"][j] != want[j]]
            raise AssertionError(f"record {k} (seq {int(records['seq'][k])}, locate "
                                 f"{int(records['stock_locate'][k])}, type "
                                 f"{chr(records['msg_type'][k])}): (feature, DUT, golden) "
                                 f"{bad}\n record {recs[k]}")
        if _REC_MASK == -1:
            assert g["rec"] == recs[k], f"record {k}: carried record {g['rec']} != {recs[k]}"
        else:
            rl = DUT.record_layout
            assert pack(rl, g["rec"]) & _REC_MASK == pack(rl, recs[k]) & _REC_MASK, \
                f"record {k}: carried record {g['rec']} != {recs[k]} (low bits compared)"
        if _META_SEEN:
            assert g["meta"] == k & _M32, f"record {k}: meta {g['meta']}"
    assert len(got) == len(expected), f"{len(got)} vectors, golden {len(expected)}"
    for kind, n in golden.anomalies.items():
        assert tb.counter(kind) == n, f"{kind} = {tb.counter(kind)}, golden {n}"
    assert tb.counter("records") == len(expected)
    assert tb.src.empty() and tb.sink.empty()
    tb.dut._log.info("%d feature vectors equal golden; anomalies %s", len(got),
                     golden.anomalies)
    return got


# ----------------------------------------------------------------------------- inputs

def amzn_records(n: int | None = None) -> np.ndarray:
    """Book records of the real AMZN day (embedded sample) from the golden book: those of its
    first ``n`` order events, or of all of them."""
    from hftaccel.feeds import source
    from hftaccel.golden.book import Book
    events = source.open_feed(source.embedded_sample()).events
    return Book(depth=DUT.depth).apply(events if n is None else events[:n])


def _locates(n: int) -> list:
    """Up to ``n`` stock locates (1, 2, ...), distinct modulo ``n_symbols``."""
    return list(range(1, 1 + min(n, DUT.n_symbols)))


def synthetic_records(n: int, seed: int) -> np.ndarray:
    """A synthetic multi-symbol stream through the golden book, then perturbed: time jumps of
    up to 2**40 ns, ~2 % of records moved back in time, ~3 % of trades without a side."""
    from hftaccel.feeds import itch, synthetic
    from hftaccel.golden.book import Book
    n_sym = min(6, DUT.n_symbols)
    msgs = {}
    for chunk in synthetic.generate(n, n_symbols=n_sym, seed=seed, max_live_orders=4096):
        for t, arr in chunk.items():
            msgs[t] = arr if t not in msgs else np.concatenate([msgs[t], arr])
    recs = Book(depth=DUT.depth).apply(itch.order_events(msgs))
    rng = np.random.default_rng(seed)
    m = recs.shape[0]
    jump = np.where(rng.random(m) < 0.01, 1 << rng.integers(10, 41, m), 0).astype(np.uint64)
    recs["timestamp"] += np.cumsum(jump, dtype=np.uint64)
    back = rng.random(m) < 0.02
    recs["timestamp"][back] -= np.minimum(recs["timestamp"][back],
                                          rng.integers(1, 1 << 22, int(back.sum()))
                                          .astype(np.uint64))
    trade = np.isin(recs["msg_type"], [ord(c) for c in fs.TRADE_MESSAGE_TYPES])
    noside = trade & (rng.random(m) < 0.03)
    recs["side"][noside] = rng.choice([0, ord("Z")], int(noside.sum()))
    return recs


def extreme_records(n: int, seed: int) -> np.ndarray:
    """Random records at the extremes: empty, one-sided, crossed and locked books, prices and
    shares up to 2**32 - 1, every message type and side code, timestamps stepping by any
    power of two (backwards too, and past 2**63)."""
    rng = np.random.default_rng(seed)
    d = DUT.depth
    r = np.zeros(n, book_record_dtype(d))
    locs = np.array(_locates(3))
    r["stock_locate"] = rng.choice(locs, n)
    r["seq"] = np.arange(1, n + 1)
    r["msg_type"] = rng.choice([ord(c) for c in BOOK_MESSAGE_TYPES], n)
    r["side"] = rng.choice([ord("B"), ord("S"), ord("B"), ord("S"), 0, ord("Z")], n)
    big = rng.random(n) < 0.2
    r["shares"] = np.where(big, _M32 - rng.integers(0, 3, n), rng.integers(0, 1000, n))
    step = np.where(rng.random(n) < 0.7, rng.integers(0, 1 << 12, n),
                    np.left_shift(1, rng.integers(0, 50, n), dtype=np.int64))
    step = np.where(rng.random(n) < 0.05, -step, step)
    ts = 34_200_000_000_000 + np.cumsum(step)
    hi = rng.random(n) < 0.02
    ts = ts.astype(np.uint64)
    ts[hi] |= np.uint64(1 << 63)
    r["timestamp"] = ts
    for side in ("bid", "ask"):
        mode = rng.integers(0, 4, n)                 # 0 small, 1 huge, 2 near 2**32, 3 mixed
        base = np.select([mode == 0, mode == 1, mode == 2],
                         [rng.integers(1, 2000, n) * 100, rng.integers(1, _M32 // 2, n),
                          _M32 - rng.integers(0, 5000, n)], rng.integers(1, _M32, n))
        steps = rng.integers(0, 3, (n, d)) * 100
        sign = -1 if side == "bid" else 1
        px = base[:, None] + sign * np.cumsum(steps, axis=1)
        px = np.clip(px, 0, _M32)
        nlev = rng.integers(0, d + 1, n)             # occupied levels, the rest empty
        nlev[rng.random(n) < 0.5] = d
        occ = np.arange(d)[None, :] < nlev[:, None]
        qty = np.where(rng.random((n, d)) < 0.15, _M32 - rng.integers(0, 3, (n, d)),
                       rng.integers(1, 5000, (n, d)))
        r[f"{side}_price"] = np.where(occ, px, 0)
        r[f"{side}_shares"] = np.where(occ, qty, 0)
        r[f"{side}_orders"] = np.where(occ, rng.integers(1, 9, (n, d)), 0)
    return r


# ----------------------------------------------------------------------------- tests

@cocotb.test()
async def test_amzn_day(dut):
    """The real AMZN day (first records; all of it with ``TB_FULL=1``), one symbol,
    back-to-back records of that symbol throughout."""
    t0 = time.perf_counter()
    recs = amzn_records(None if full_run() else 3000)
    dut._log.info("%d AMZN records built in %.1f s", len(recs), time.perf_counter() - t0)
    await check(FeaturesTB(dut), recs)


@cocotb.test()
async def test_synthetic(dut):
    """A synthetic multi-symbol stream: interleaved symbols, time jumps and reversals,
    trades with and without a side."""
    recs = synthetic_records(40_000 if full_run() else 3000, seed=11)
    assert len(np.unique(recs["stock_locate"] % DUT.n_symbols)) == \
        len(np.unique(recs["stock_locate"]))
    await check(FeaturesTB(dut), recs)


@cocotb.test()
async def test_extremes(dut):
    """Random records at the extremes of every field: every saturation and special case."""
    await check(FeaturesTB(dut), extreme_records(20_000 if full_run() else 2000, seed=5))


@cocotb.test(skip=not full_run())
async def test_intensity_saturation(dut):
    """34,000 buy-side records of one symbol within a microsecond: the buy intensity climbs to
    its saturation (2**31 - 1 codes, 32,768 events) and stays there; OFI sums saturate too."""
    n = 34_000
    r = extreme_records(n, seed=9)
    r["stock_locate"] = 1
    r["side"] = ord("B")
    r["timestamp"] = 34_200_000_000_000 + np.arange(n) // 64
    await check(FeaturesTB(dut, idle=0.05, stall=0.05), r)


@cocotb.test()
async def test_latency(dut):
    """No back-pressure, no gaps: one record accepted every cycle (II = 1, back-to-back
    records of one symbol included) and every vector valid ``latency`` cycles after its record
    was valid and accepted at the input."""
    recs = synthetic_records(600, seed=3)
    tb = FeaturesTB(dut, idle=0.0, stall=0.0)
    await check(tb, recs)
    acc = tb.src.accepted
    assert len(acc) == len(recs)
    gaps = {acc[k + 1] - acc[k] for k in range(len(acc) - 1)}
    assert gaps == {1}, f"initiation intervals {sorted(gaps)}"
    same = int(np.sum(recs["stock_locate"][1:] == recs["stock_locate"][:-1]))
    assert same > 50, same
    # accepted = index of the accepting edge; first_valid = edges counted when the beat is
    # first seen valid: the cycle after the accepting edge is cycle +1 from the input cycle
    lat = [f - a + 1 for a, f in zip(acc, tb.sink.first_valid)]
    record_latency("features", lat)
    assert set(lat) == {DUT.latency}, f"latencies {sorted(set(lat))}, documented {DUT.latency}"
    tb.dut._log.info("II 1, latency %d cycles over %d records (%d back-to-back same symbol)",
                     DUT.latency, len(lat), same)
