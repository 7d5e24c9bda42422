"""Tests of hftaccel.golden.features: hand-computed books, a pure-Python reference, LOBSTER."""

from __future__ import annotations

import gzip
import math
from fractions import Fraction
from importlib import resources

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hftaccel.golden import features as gf
from hftaccel.spec import book as book_spec
from hftaccel.spec import features as fs
from hftaccel.spec import itch as itch_spec

U32 = (1 << 32) - 1
COL = fs.FEATURE_INDEX
B, S = itch_spec.SIDE_BUY, itch_spec.SIDE_SELL
FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------------------------
# Record construction
# --------------------------------------------------------------------------------------------

def make_records(rows, depth=book_spec.BOOK_DEPTH):
    """Build book records from dicts: locate, ts, mt ('A'...), side ('B'/'S'/None), shares,
    price, bids/asks = [(price, shares), ...] best first."""
    rec = np.zeros(len(rows), dtype=book_spec.book_record_dtype(depth))
    for i, r in enumerate(rows):
        rec[i]["seq"] = i
        rec[i]["stock_locate"] = r.get("locate", 1)
        rec[i]["timestamp"] = r.get("ts", 0)
        rec[i]["msg_type"] = ord(r.get("mt", "A"))
        side = r.get("side")
        rec[i]["side"] = ord(side) if side else 0
        rec[i]["shares"] = r.get("shares", 0)
        rec[i]["price"] = r.get("price", 0)
        for j, (p, q) in enumerate(r.get("bids", ())):
            rec[i]["bid_price"][j] = p
            rec[i]["bid_shares"][j] = q
            rec[i]["bid_orders"][j] = 1 if q else 0
        for j, (p, q) in enumerate(r.get("asks", ())):
            rec[i]["ask_price"][j] = p
            rec[i]["ask_shares"][j] = q
            rec[i]["ask_orders"][j] = 1 if q else 0
    return rec


def col(out, name):
    return out[:, COL[name]].tolist()


# --------------------------------------------------------------------------------------------
# Pure-Python reference: written from the spec text, Python ints, windows summed directly
# --------------------------------------------------------------------------------------------

def ref_round_shift(x, s):
    if s == 0:
        return x
    h = 1 << (s - 1)
    return (x + h) >> s if x >= 0 else -((-x + h) >> s)


def ref_saturate(x, name):
    return max(fs.feature_min(name), min(fs.feature_max(name), x))


def ref_log2q(x):
    assert x >= 1
    e = x.bit_length() - 1
    m_bits = fs.LOG2_MANT_BITS
    frac = (x - (1 << e)) << m_bits >> e          # the m_bits bits below the leading one
    return e * (1 << fs.LOG2_FRAC_BITS) + int(fs.LOG2_MANT_TABLE[frac])


def ref_imbalance(b, a):
    if b == a:
        return 0
    if a == 0:
        return fs.IMB_ONE
    if b == 0:
        return -fs.IMB_ONE
    d = ref_log2q(b) - ref_log2q(a)
    k = abs(d) >> fs.IMB_INDEX_SHIFT
    v = int(fs.IMB_TANH_TABLE[k]) if k < fs.IMB_TABLE_SIZE else fs.IMB_ONE
    return (d > 0) * v - (d < 0) * v


def ref_to_ticks(x, frac_bits, half):
    return ref_round_shift(x * fs.TICK_RECIP, fs.TICK_RECIP_SHIFT - frac_bits + half)


class RefEngine:
    """Obviously-correct per-record model of the feature contract."""

    def __init__(self):
        self.sym = {}
        self.anomalies = {"time_reversal": 0, "trade_without_side": 0}

    def _state(self, loc):
        if loc not in self.sym:
            self.sym[loc] = {
                "prev": {"bid": [(0, 0)] * fs.OFI_LEVELS, "ask": [(None, 0)] * fs.OFI_LEVELS},
                "hist": [], "last_mid2": None, "ib": 0, "is": 0, "last_trade": None,
                "last_ts": None,
            }
        return self.sym[loc]

    def step(self, r):
        s = self._state(int(r["stock_locate"]))
        ts = int(r["timestamp"])
        mt = chr(int(r["msg_type"]))
        side = int(r["side"])
        shares = int(r["shares"])
        bp = [int(v) for v in r["bid_price"]]
        bq = [int(v) for v in r["bid_shares"]]
        ap = [int(v) for v in r["ask_price"]]
        aq = [int(v) for v in r["ask_shares"]]
        f = {}
        two = bp[0] != 0 and ap[0] != 0
        if two:
            f["spread"] = ref_saturate(ref_to_ticks(ap[0] - bp[0], 4, 0), "spread")
        else:
            f["spread"] = fs.feature_max("spread")
        f["imb_l1"] = ref_imbalance(bq[0], aq[0])
        n = fs.DEPTH_IMB_LEVELS
        f["imb_depth"] = ref_imbalance(sum(bq[i] * 2 ** (n - 1 - i) for i in range(n)),
                                       sum(aq[i] * 2 ** (n - 1 - i) for i in range(n)))
        f["microprice_mid"] = (ref_saturate(ref_round_shift(f["spread"] * f["imb_l1"], 13),
                                            "microprice_mid") if two else 0)
        # per-event quantities; an empty ask level (price 0) is "above every price"
        ev = {}
        for m in range(fs.OFI_LEVELS):
            pb0, qb0 = s["prev"]["bid"][m]
            pa0, qa0 = s["prev"]["ask"][m]
            pb, qb, pa, qa = bp[m], bq[m], (ap[m] or None), aq[m]

            def ask_ge(x, y):       # x >= y with None = +infinity
                return x is None or (y is not None and x >= y)

            e = 0
            e += qb if pb >= pb0 else 0
            e -= qb0 if pb <= pb0 else 0
            e -= qa if ask_ge(pa0, pa) else 0
            e += qa0 if ask_ge(pa, pa0) else 0
            ev[f"ofi_l{m + 1}"] = e
            s["prev"]["bid"][m] = (pb, qb)
            s["prev"]["ask"][m] = (pa, qa)
        tv = 0
        if mt in "ECP":
            if side == B:
                tv = -shares
            elif side == S:
                tv = shares
            else:
                self.anomalies["trade_without_side"] += 1
        ev["tvol"] = tv
        dm = 0
        if two:
            mid2 = bp[0] + ap[0]
            if s["last_mid2"] is not None:
                dm = mid2 - s["last_mid2"]
            s["last_mid2"] = mid2
        ev["dmid2"] = dm
        ev["adm2"] = abs(dm)
        s["hist"].append(ev)
        for k in fs.WINDOWS:
            last = s["hist"][-k:]
            for m in range(1, fs.OFI_LEVELS + 1):
                f[f"ofi_l{m}_k{k}"] = ref_saturate(sum(e[f"ofi_l{m}"] for e in last),
                                                   f"ofi_l{m}_k{k}")
            f[f"tvol_k{k}"] = ref_saturate(sum(e["tvol"] for e in last), f"tvol_k{k}")
            f[f"dmid_k{k}"] = ref_saturate(ref_to_ticks(sum(e["dmid2"] for e in last), 4, 1),
                                           f"dmid_k{k}")
            f[f"rv_k{k}"] = ref_saturate(ref_to_ticks(sum(e["adm2"] for e in last), 4, 1),
                                         f"rv_k{k}")
        # intensities
        dt = 0
        if s["last_ts"] is not None:
            dt = ts - s["last_ts"]
            if dt < 0:
                self.anomalies["time_reversal"] += 1
                dt = 0
        bucket = 0 if dt < 2 ** fs.DECAY_MIN_LOG2 else min(dt.bit_length() - fs.DECAY_MIN_LOG2,
                                                           fs.DECAY_BUCKETS - 1)
        dec = int(fs.DECAY_TABLE[bucket])
        one = 1 << fs.INTENSITY_FRAC_BITS
        s["ib"] = ref_saturate(ref_round_shift(s["ib"] * dec, 15) + (one if side == B else 0),
                               "intensity_buy")
        s["is"] = ref_saturate(ref_round_shift(s["is"] * dec, 15) + (one if side == S else 0),
                               "intensity_sell")
        f["intensity_buy"], f["intensity_sell"] = s["ib"], s["is"]
        if mt in "ECP":
            s["last_trade"] = ts
        if s["last_trade"] is None:
            f["t_since_trade"] = fs.TRADE_AGE_NONE
        else:
            f["t_since_trade"] = max(ts - s["last_trade"], 0).bit_length()
        s["last_ts"] = ts
        return [f[name] for name in fs.FEATURE_NAMES]

    def run(self, records):
        return np.array([self.step(r) for r in records], dtype=np.int64).reshape(-1, fs.N_FEATURES)


# --------------------------------------------------------------------------------------------
# Random self-consistent record streams
# --------------------------------------------------------------------------------------------

def random_stream(rng, n, locates=(1, 7, 300), depth=book_spec.BOOK_DEPTH, extreme=False):
    """Random book records: sorted, gap-free levels per side (empty levels trailing zeros),
    mostly whole-tick prices around a drifting mid, occasional one-sided, locked and crossed
    books, timestamps non-decreasing per symbol with gaps from 0 ns to hours."""
    rec = np.zeros(n, dtype=book_spec.book_record_dtype(depth))
    mid = {loc: int(rng.integers(50, 5000)) * 100 for loc in locates}
    ts = {loc: int(rng.integers(0, 10**12)) for loc in locates}
    for i in range(n):
        loc = int(rng.choice(locates))
        mid[loc] = max(mid[loc] + int(rng.integers(-2, 3)) * 50, 1000)
        ts[loc] += int(rng.choice([0, rng.integers(1, 2000), rng.integers(1, 10**7),
                                   rng.integers(1, 10**12)], p=[0.2, 0.4, 0.35, 0.05]))
        r = rec[i]
        r["seq"] = i
        r["stock_locate"] = loc
        r["timestamp"] = ts[loc]
        mt = "AFECXDUP"[int(rng.integers(0, 8))]
        r["msg_type"] = ord(mt)
        r["side"] = rng.choice([B, S, B, S, 0] if mt in "ECP" else [B, S])
        r["shares"] = int(rng.integers(1, 1000)) if not extreme else int(rng.choice([0, U32]))
        r["price"] = mid[loc]
        half_spread = int(rng.choice([-100, 0, 50, 100, 100, 200, 300], p=[.05, .05, .1, .4,
                                                                            .2, .15, .05]))
        for side_name, sign in (("bid", -1), ("ask", 1)):
            nlev = int(rng.choice([0, 1, 2, 3, 5, depth], p=[.05, .1, .1, .15, .2, .4]))
            step = 100 if rng.random() < 0.9 else int(rng.integers(1, 100))
            best = mid[loc] + sign * half_spread
            for j in range(nlev):
                p = best + sign * j * step
                if p <= 0 or p > U32:
                    break
                q = int(rng.integers(1, 5000)) if not extreme else int(rng.choice([1, U32]))
                r[f"{side_name}_price"][j] = p
                r[f"{side_name}_shares"][j] = q
                r[f"{side_name}_orders"][j] = 1
    return rec


# --------------------------------------------------------------------------------------------
# Spec
# --------------------------------------------------------------------------------------------

def test_spec_tables_follow_their_formulas():
    # decay: bucket k >= 1 covers [2**(k+9), 2**(k+10)) ns, evaluated at its geometric centre
    expect = [1 << fs.DECAY_FRAC_BITS] + [
        round((1 << fs.DECAY_FRAC_BITS)
              * 2.0 ** (-(2.0 ** (k + fs.DECAY_MIN_LOG2 - 0.5)) / fs.DECAY_HALF_LIFE_NS))
        for k in range(1, fs.DECAY_BUCKETS)]
    assert fs.DECAY_TABLE.tolist() == expect
    assert fs.DECAY_TABLE.dtype == np.int32
    assert np.all(np.diff(fs.DECAY_TABLE) <= 0)
    # log2 mantissa: log2(1.5) * 256 = 149.75 -> 150 ; log2(1) = 0
    assert fs.LOG2_MANT_TABLE[128] == 150 and fs.LOG2_MANT_TABLE[0] == 0
    assert np.all(np.diff(fs.LOG2_MANT_TABLE) >= 0) and fs.LOG2_MANT_TABLE[-1] < 256
    assert np.all(np.diff(fs.IMB_TANH_TABLE) >= 0)
    assert 0 < fs.IMB_TANH_TABLE[0] and fs.IMB_TANH_TABLE[-1] <= fs.IMB_ONE
    assert fs.TICK_RECIP == 167772


def test_spec_feature_table_consistent():
    assert len(fs.FEATURE_NAMES) == fs.N_FEATURES == len(fs.FEATURES)
    assert fs.FEATURE_RECORD_DTYPE.itemsize == 4 * fs.N_FEATURES
    for f in fs.FEATURES:
        assert f.units and f.definition and f.source and f.latency_cycles >= 1
        assert fs.feature_min(f.name) >= -(1 << 31) and fs.feature_max(f.name) <= (1 << 31) - 1
    assert fs.FEATURES_LATENCY_CYCLES == max(f.latency_cycles for f in fs.FEATURES)
    assert fs.FEATURE_SPEC_VERSION
    m = np.arange(2 * fs.N_FEATURES, dtype=np.int32).reshape(2, -1)
    named = m.view(fs.FEATURE_RECORD_DTYPE)[:, 0]
    assert named["t_since_trade"].tolist() == m[:, -1].tolist()


# --------------------------------------------------------------------------------------------
# Hand-computed books
# --------------------------------------------------------------------------------------------

P0 = 1_000_000          # $100.00 in 1/10,000 USD


def test_spread_hand():
    rows = [
        dict(bids=[(P0, 100)], asks=[(P0 + 300, 100)]),     # 3 ticks -> 3 * 16 = 48
        dict(bids=[(P0, 100)], asks=[(P0 + 50, 100)]),      # half a tick -> 8
        dict(bids=[(P0, 100)], asks=[(P0, 100)]),           # locked -> 0
        dict(bids=[(P0 + 100, 100)], asks=[(P0, 100)]),     # crossed by 1 tick -> -16
        dict(bids=[(P0, 100)], asks=[]),                    # one-sided -> feature_max
        dict(bids=[], asks=[]),                             # empty -> feature_max
        dict(bids=[(1, 1)], asks=[(U32, 1)]),               # 42,949,672 ticks -> saturates
        dict(bids=[(U32, 1)], asks=[(1, 1)]),               # crossed by as much -> min
    ]
    out = gf.compute_features(make_records(rows))
    top = fs.feature_max("spread")
    assert col(out, "spread") == [48, 8, 0, -16, top, top, top, fs.feature_min("spread")]


def test_imbalance_l1_hand():
    rows = [
        dict(bids=[(P0, 300)], asks=[(P0 + 100, 100)]),
        dict(bids=[(P0, 100)], asks=[(P0 + 100, 100)]),
        dict(bids=[(P0, 100)], asks=[]),
        dict(bids=[], asks=[(P0 + 100, 100)]),
        dict(bids=[], asks=[]),
        dict(bids=[(P0, 100)], asks=[(P0 + 100, 300)]),
    ]
    out = gf.compute_features(make_records(rows))
    # 300 = 2**8 * (1 + 44/256): log2q = 8*256 + LOG2_MANT_TABLE[44]; table[44] =
    #   round(256 * log2(1.171875)) = round(58.58) = 59 -> 2107
    # 100 = 2**6 * (1 + 144/256): log2q = 6*256 + round(256 * log2(1.5625)) = 1536 + 165 = 1701
    # d = 406, k = 406 >> 2 = 101, table[101] = round(16384 * tanh(101.5/64 * ln2/2)) = 8196
    assert fs.LOG2_MANT_TABLE[44] == 59 and fs.LOG2_MANT_TABLE[144] == 165
    assert round(16384 * math.tanh(101.5 / 64 * math.log(2) / 2)) == 8196
    # exact (300-100)/(300+100) = 0.5 = 8192; equal sizes 0; empty ask +1; empty bid -1
    assert col(out, "imb_l1") == [8196, 0, 16384, -16384, 0, -8196]
    # micro-price minus mid: spread 1 tick (code 16) * 8196 >> 13 rounded: 131136/8192 =
    # 16.008 -> 16 = 0.25 tick in Q.6 (exact: 1/2 tick * 0.5 = 0.25 tick); one-sided -> 0
    assert col(out, "microprice_mid") == [16, 0, 0, 0, 0, -16]


def test_imbalance_depth_hand():
    rows = [dict(bids=[(P0, 100), (P0 - 100, 200), (P0 - 200, 999)],
                 asks=[(P0 + 100, 100), (P0 + 200, 0)]
                 + [(P0 + 300 + 100 * j, 7) for j in range(6)])]
    # weights 16, 8, 4, 2, 1 over 5 levels; level 3 of the bids is empty.
    # B = 100*16 + 200*8 + 999*4 = 7196 ; asks: level 2 has price but 0 shares;
    # A = 100*16 + 0*8 + 7*4 + 7*2 + 7*1 = 1649 (levels 6..8 ignored)
    b, a = 7196, 1649
    # 7196 = 2**12 * (1 + 3100/4096): mantissa bits = 3100 >> 4 = 193
    # 1649 = 2**10 * (1 + 625/1024): mantissa bits = 625 >> 2 = 156
    lb = 12 * 256 + int(fs.LOG2_MANT_TABLE[193])
    la = 10 * 256 + int(fs.LOG2_MANT_TABLE[156])
    k = (lb - la) >> 2
    expect = int(fs.IMB_TANH_TABLE[k])
    out = gf.compute_features(make_records(rows))
    assert col(out, "imb_depth") == [expect]
    assert abs(expect - 16384 * (b - a) / (b + a)) <= fs.IMB_MAX_ABS_ERROR


def test_ofi_hand():
    bid2 = (P0 - 100, 50)
    rows = [
        # r0, from the empty reset book: L1 = +100 - 200 = -100 ; L2 = +50 - 60 = -10 ; L3 = 0
        dict(bids=[(P0, 100), bid2], asks=[(P0 + 100, 200), (P0 + 200, 60)]),
        # r1, 50 added at the best bid: L1 = +150 - 100 = +50 ; L2, L3 unchanged = 0
        dict(bids=[(P0, 150), bid2], asks=[(P0 + 100, 200), (P0 + 200, 60)]),
        # r2, best ask deleted, ask rises: L1 ask = +200 (old queue gone), bid 150-150 = 0
        #     L2 ask empties (= +inf >= old price): +60 ; L3 0
        dict(bids=[(P0, 150), bid2], asks=[(P0 + 200, 60)]),
        # r3, a new better bid (10 @ P0+50): L1 = +10 ; L2 = bid (P0,150) vs (P0-100,50):
        #     price up -> +150 ; L3 = (P0-100, 50) vs empty -> +50
        dict(bids=[(P0 + 50, 10), (P0, 150), bid2], asks=[(P0 + 200, 60)]),
    ]
    out = gf.compute_features(make_records(rows))
    for k in fs.WINDOWS:
        assert col(out, f"ofi_l1_k{k}") == [-100, -50, 150, 160]
        assert col(out, f"ofi_l2_k{k}") == [-10, -10, 50, 200]
        assert col(out, f"ofi_l3_k{k}") == [0, 0, 0, 50]


def test_windows_expire_hand():
    # 70 sell-side executions (a resting sell order hit = buyer-initiated, +shares) of
    # 1, 2, ..., 70 shares; then a buy-side execution of 1000 (seller-initiated, -1000).
    rows = [dict(mt="E", side="S", shares=i + 1, ts=i) for i in range(70)]
    rows.append(dict(mt="C", side="B", shares=1000, ts=70))
    out = gf.compute_features(make_records(rows))
    k16, k64 = col(out, "tvol_k16"), col(out, "tvol_k64")
    assert k16[14] == sum(range(1, 16)) == 120           # window not yet full
    assert k16[19] == sum(range(5, 21)) == 200           # shares 5..20
    assert k64[19] == sum(range(1, 21)) == 210
    assert k64[69] == sum(range(7, 71)) == 2464          # shares 7..70
    assert k16[70] == sum(range(56, 71)) - 1000 == -55   # 56..70 and -1000
    assert k64[70] == sum(range(8, 71)) - 1000 == 1457


def test_mid_change_and_realized_variation_hand():
    rows = [
        dict(bids=[(P0, 1)], asks=[(P0 + 100, 1)]),          # first mid: no change
        dict(bids=[(P0, 1)], asks=[(P0 + 200, 1)]),          # mid +0.5 tick: mid2 +100
        dict(bids=[(P0 + 100, 1)], asks=[(P0 + 200, 1)]),    # +0.5 tick
        dict(bids=[(P0, 1)], asks=[(P0 + 100, 1)]),          # -1 tick: mid2 -200
        dict(bids=[(P0, 1)], asks=[]),                       # one-sided: no change, last kept
        dict(bids=[(P0, 1)], asks=[(P0 + 300, 1)]),          # vs last valid: +1 tick
    ]
    out = gf.compute_features(make_records(rows))
    # Q.4 ticks: 0.5 tick = 8
    assert col(out, "dmid_k16") == [0, 8, 16, 0, 0, 16]
    assert col(out, "rv_k16") == [0, 8, 16, 32, 32, 48]
    assert col(out, "dmid_k64") == col(out, "dmid_k16")


def test_intensities_hand():
    one = 1 << 16
    rows = [
        dict(ts=1_000, side="B"),                     # I_b = 1.0
        dict(ts=1_000, side="S"),                     # dt 0: bucket 0, no decay; I_s = 1.0
        dict(ts=1_500, side="S"),                     # dt 500 < 1024: no decay; I_s = 2.0
        dict(ts=1_501_500, side="S"),                 # dt 1.5 ms: bit_length 21 -> bucket 11
        dict(ts=1_501_500 + (1 << 40), side="B"),     # dt 2**40: bucket 15, decay 0
    ]
    out = gf.compute_features(make_records(rows))
    d11 = int(fs.DECAY_TABLE[11])                     # 11723 (2**-1.448 of 2**15)
    assert (1_500_000).bit_length() - fs.DECAY_MIN_LOG2 == 11
    # 65536 * d11 / 32768 = 2 * d11 exactly ; 131072 * d11 / 32768 = 4 * d11
    assert col(out, "intensity_buy") == [one, one, one, 2 * d11, one]
    assert col(out, "intensity_sell") == [0, one, 2 * one, 4 * d11 + one, 0]


def test_time_since_trade_hand():
    rows = [
        dict(ts=1_000, mt="A", side="B"),             # no trade yet -> 48
        dict(ts=2_000, mt="E", side="B", shares=5),   # a trade: age 0 -> bit_length 0
        dict(ts=2_001, mt="D", side="B"),             # 1 ns -> 1
        dict(ts=3_024, mt="X", side="B"),             # 1024 ns -> 11
        dict(ts=2_000 + (1 << 46), mt="U", side="S"),  # 2**46 ns -> 47
        dict(ts=2_000 + (1 << 46), mt="P", side="S", shares=1),  # trade -> 0
    ]
    out = gf.compute_features(make_records(rows))
    assert col(out, "t_since_trade") == [fs.TRADE_AGE_NONE, 0, 1, 11, 47, 0]


def test_extreme_sizes_saturate():
    # 20 events with level-1 bid queue alternating between 2**32-1 and 0 at one price:
    # OFI L1 per event: +U32 (r0), -U32, +U32, ... ; also a U32 trade each event.
    rows = []
    for i in range(20):
        q = U32 if i % 2 == 0 else 0
        rows.append(dict(ts=i, mt="P", side="S", shares=U32,
                         bids=[(P0, q)] if q else [], asks=[(P0 + 100, 1)]))
    out = gf.compute_features(make_records(rows))
    top = fs.feature_max("tvol_k16")
    assert col(out, "tvol_k16")[0] == top              # 4294967295 > 2**31 - 1
    assert set(col(out, "tvol_k64")) == {top}
    ofi = col(out, "ofi_l1_k16")
    assert ofi[0] == top                                # U32 - 1 (ask) > 2**31 - 1
    assert ofi[1] == -1                                 # exact sum back in range
    assert col(out, "imb_l1")[0] == fs.IMB_ONE and col(out, "imb_l1")[1] == -fs.IMB_ONE
    assert col(out, "microprice_mid")[1] == 0           # one-sided
    # imbalance of U32 against 1: |log2 ratio| ~ 32 > 16 -> exactly 1.0
    assert gf.imbalance(U32, 1, gf._LOG2_TABLE, gf._TANH_TABLE) == fs.IMB_ONE


def test_anomalies_counted():
    rows = [dict(ts=100, side="B"), dict(ts=50, side="S"),
            dict(ts=60, mt="E", side=None, shares=10)]
    eng = gf.FeatureEngine()
    out = eng.update(make_records(rows))
    assert eng.anomalies == {"time_reversal": 1, "trade_without_side": 1}
    # the reversed event does not decay (dt taken as 0); its own side adds 1.0
    assert col(out, "intensity_buy") == [1 << 16] * 3
    assert col(out, "tvol_k16") == [0, 0, 0]


def test_bad_input_rejected():
    rec = make_records([dict(), dict()])
    rec[1]["msg_type"] = ord("Z")
    rec[1]["seq"] = 4242
    with pytest.raises(ValueError, match="seq 4242"):
        gf.compute_features(rec)
    with pytest.raises(TypeError):
        gf.compute_features(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="DEPTH_IMB_LEVELS"):
        gf.compute_features(np.zeros(1, dtype=book_spec.book_record_dtype(3)))
    assert gf.compute_features(make_records([])).shape == (0, fs.N_FEATURES)


# --------------------------------------------------------------------------------------------
# Streams: isolation, chunking, differential against the reference
# --------------------------------------------------------------------------------------------

def test_multi_symbol_isolation():
    rng = np.random.default_rng(11)
    rec = random_stream(rng, 900, locates=(3, 9, 65535))
    out = gf.compute_features(rec)
    for loc in (3, 9, 65535):
        sel = rec["stock_locate"] == loc
        alone = gf.compute_features(rec[sel])
        np.testing.assert_array_equal(out[sel], alone)
        # the same symbol under another locate code gives the same features
        moved = rec[sel].copy()
        moved["stock_locate"] = 12345
        np.testing.assert_array_equal(gf.compute_features(moved), alone)


def test_chunked_equals_one_shot():
    rng = np.random.default_rng(5)
    rec = random_stream(rng, 1500, locates=tuple(range(1, 40)))
    whole = gf.compute_features(rec)
    eng = gf.FeatureEngine()
    cuts = np.sort(rng.choice(np.arange(1, len(rec)), size=25, replace=False))
    parts = [eng.update(c) for c in np.split(rec, cuts)]
    parts.append(eng.update(rec[:0]))
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert eng.n_records == len(rec)
    assert sorted(eng.symbols.tolist()) == sorted(set(rec["stock_locate"].tolist()))


@pytest.mark.parametrize("seed,extreme", [(1, False), (2, False), (3, True)])
def test_differential_vs_reference(seed, extreme):
    rng = np.random.default_rng(seed)
    rec = random_stream(rng, 1200, extreme=extreme)
    ref = RefEngine()
    expect = ref.run(rec)
    eng = gf.FeatureEngine()
    got = eng.update(rec)
    np.testing.assert_array_equal(got, expect)
    assert eng.anomalies == ref.anomalies
    for j, name in enumerate(fs.FEATURE_NAMES):
        assert got[:, j].min() >= fs.feature_min(name) and got[:, j].max() <= fs.feature_max(name)


def test_reference_depth_variants():
    # any book depth >= DEPTH_IMB_LEVELS works and matches the reference
    rng = np.random.default_rng(8)
    rec = random_stream(rng, 300, depth=fs.DEPTH_IMB_LEVELS)
    np.testing.assert_array_equal(gf.compute_features(rec), RefEngine().run(rec))


# --------------------------------------------------------------------------------------------
# Property tests: rounding, saturation, division-free primitives, edge records
# --------------------------------------------------------------------------------------------

@FAST
@given(st.integers(-(1 << 58), 1 << 58), st.integers(0, 40))
def test_round_shift_is_round_half_away(x, s):
    q = Fraction(x, 1 << s)
    fl = math.floor(abs(q))
    mag = fl + 1 if abs(q) - fl >= Fraction(1, 2) else fl
    expect = mag if x >= 0 else -mag
    assert gf.round_shift(x, s) == expect == ref_round_shift(x, s)
    assert gf.round_shift(-x, s) == -expect          # symmetric about zero


@FAST
@given(st.integers(-(1 << 62), 1 << 62), st.sampled_from(fs.FEATURE_NAMES))
def test_saturate_edges(x, name):
    lo, hi = fs.feature_min(name), fs.feature_max(name)
    y = gf.saturate(x, lo, hi)
    assert lo <= y <= hi
    assert y == x if lo <= x <= hi else y in (lo, hi)
    for edge in (lo - 1, lo, hi, hi + 1):
        assert gf.saturate(edge, lo, hi) == min(max(edge, lo), hi)


@FAST
@given(st.integers(-(1 << 15) + 1, (1 << 15) - 1))
def test_to_ticks_exact_for_whole_ticks(k):
    # whole-tick differences below 2**(19 - frac_bits) ticks convert exactly
    assert gf.to_ticks(k * fs.TICK_SIZE, 4, 0) == 16 * k
    assert gf.to_ticks(k * fs.TICK_SIZE, 4, 1) == 8 * k          # mid2 units: half
    k6 = k >> 2                                                  # |k6| < 2**13
    assert gf.to_ticks(k6 * fs.TICK_SIZE, 6, 0) == 64 * k6
    # and the first whole tick count where Q.6 is off is 2**13 + 1, as the spec says
    assert gf.to_ticks(((1 << 13) + 1) * fs.TICK_SIZE, 6, 0) != 64 * ((1 << 13) + 1)


@FAST
@given(st.one_of(st.integers(-(1 << 40), 1 << 40), st.sampled_from([0, U32, -U32, 1 << 31])))
def test_to_ticks_operand_clamp_is_harmless(x):
    # the spec allows the gateware to clamp the operand to +-2**31 before the multiply
    c = max(-(1 << 31), min(1 << 31, x))
    for name, half in (("spread", 0), ("dmid_k16", 1), ("rv_k64", 1)):
        lo, hi = fs.feature_min(name), fs.feature_max(name)
        assert (gf.saturate(gf.to_ticks(x, 4, half), lo, hi)
                == gf.saturate(gf.to_ticks(c, 4, half), lo, hi))


sizes = st.one_of(st.sampled_from([0, 1, 2, U32, U32 - 1, 1 << 31]), st.integers(0, U32))


@settings(max_examples=500, deadline=None)
@given(sizes, sizes)
def test_imbalance_properties(b, a):
    L, T = gf._LOG2_TABLE, gf._TANH_TABLE
    v = gf.imbalance(b, a, L, T)
    assert v == ref_imbalance(b, a)
    assert -fs.IMB_ONE <= v <= fs.IMB_ONE
    assert gf.imbalance(a, b, L, T) == -v                       # antisymmetric
    if b + a:
        assert abs(v - Fraction(fs.IMB_ONE * (b - a), b + a)) <= fs.IMB_MAX_ABS_ERROR
    if b < U32:
        assert gf.imbalance(b + 1, a, L, T) >= v                # monotone in the bid size


@FAST
@given(st.integers(1, (1 << 40) - 1))
def test_log2q_error_bound(x):
    v = gf.log2q(x, gf._LOG2_TABLE)
    assert v == ref_log2q(x)
    err = v - math.log2(x) * (1 << fs.LOG2_FRAC_BITS)
    assert -1.95 <= err <= 0.5 + 1e-9


level = st.tuples(st.integers(0, U32), st.sampled_from([0, 1, U32]) | st.integers(0, U32))


@st.composite
def edge_records(draw):
    """Short single-symbol streams of arbitrary (also crossed, locked, one-sided) tops with
    extreme sizes, and Δt of 0, tiny, huge or negative."""
    n = draw(st.integers(1, 40))
    rows, ts = [], draw(st.integers(0, 1 << 40))
    for _ in range(n):
        ts = max(0, ts + draw(st.sampled_from([0, 1, 1023, 1024, (1 << 46), -5])
                              | st.integers(0, 1 << 30)))
        nb, na = draw(st.integers(0, 3)), draw(st.integers(0, 3))
        bids = [draw(level) for _ in range(nb)]
        asks = [draw(level) for _ in range(na)]
        bids = [(p, q) for p, q in bids if p] or []
        asks = [(p, q) for p, q in asks if p] or []
        rows.append(dict(ts=ts, mt=draw(st.sampled_from("AFECXDUP")),
                         side=draw(st.sampled_from(["B", "S", None])),
                         shares=draw(st.sampled_from([0, 1, U32])), bids=bids, asks=asks))
    return make_records(rows)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edge_records())
def test_edge_streams_match_reference(rec):
    got = gf.compute_features(rec)
    np.testing.assert_array_equal(got, RefEngine().run(rec))


# --------------------------------------------------------------------------------------------
# Real data: LOBSTER AMZN level-1 book, against a vectorised floating-point / numpy oracle
# --------------------------------------------------------------------------------------------

def _lobster_records(limit=20000):
    base = resources.files("hftaccel.data")
    with gzip.open(base / "AMZN_2012-06-21_34200000_57600000_message_1.csv.gz", "rt") as fh:
        msg = np.loadtxt(fh, delimiter=",", max_rows=limit, dtype=np.float64)
    with gzip.open(base / "AMZN_2012-06-21_34200000_57600000_orderbook_1.csv.gz", "rt") as fh:
        ob = np.loadtxt(fh, delimiter=",", max_rows=limit, dtype=np.int64)
    keep = msg[:, 1] != 7                                   # trading halts carry no book change
    msg, ob = msg[keep], ob[keep]
    n = len(msg)
    rec = np.zeros(n, dtype=book_spec.BOOK_RECORD_DTYPE)
    rec["seq"] = np.arange(n)
    rec["stock_locate"] = 1
    rec["timestamp"] = np.rint(msg[:, 0] * 1e9).astype(np.int64)
    rec["msg_type"] = np.array([ord(c) for c in " AXDEP"])[msg[:, 1].astype(int)]
    rec["side"] = np.where(msg[:, 5] > 0, B, S)
    rec["shares"] = msg[:, 3].astype(np.int64)
    rec["price"] = msg[:, 4].astype(np.int64)
    ask_ok = (ob[:, 0] > 0) & (ob[:, 0] < 9_999_999_999)
    bid_ok = ob[:, 2] > 0
    rec["ask_price"][:, 0] = np.where(ask_ok, ob[:, 0], 0)
    rec["ask_shares"][:, 0] = np.where(ask_ok, ob[:, 1], 0)
    rec["bid_price"][:, 0] = np.where(bid_ok, ob[:, 2], 0)
    rec["bid_shares"][:, 0] = np.where(bid_ok, ob[:, 3], 0)
    return rec


def _window_sum(v, k):
    c = np.concatenate([[0], np.cumsum(v)])
    idx = np.arange(1, len(v) + 1)
    return c[idx] - c[np.maximum(idx - k, 0)]


def test_lobster_amzn_against_float_oracle():
    rec = _lobster_records()
    out = gf.compute_features(rec)
    bp, bq = rec["bid_price"][:, 0].astype(np.int64), rec["bid_shares"][:, 0].astype(np.int64)
    ap, aq = rec["ask_price"][:, 0].astype(np.int64), rec["ask_shares"][:, 0].astype(np.int64)
    assert np.all(bp > 0) and np.all(ap > 0)                # AMZN's sample is two-sided
    # spread: exact ticks * 16 (AMZN trades on a whole-cent grid)
    assert np.all((ap - bp) % fs.TICK_SIZE == 0)
    np.testing.assert_array_equal(out[:, COL["spread"]], (ap - bp) // fs.TICK_SIZE * 16)
    # level-1 imbalance within the documented bound of the exact ratio
    exact = fs.IMB_ONE * (bq - aq) / (bq + aq)
    assert np.max(np.abs(out[:, COL["imb_l1"]] - exact)) <= fs.IMB_MAX_ABS_ERROR
    # micro-price minus mid within rounding of (spread/2) * imbalance, in 1/64 tick
    mpm = (ap - bp) / fs.TICK_SIZE / 2 * (bq - aq) / (bq + aq) * 64
    spread_ticks = (ap - bp) / fs.TICK_SIZE
    assert np.all(np.abs(out[:, COL["microprice_mid"]] - mpm)
                  <= 0.5 + spread_ticks * fs.IMB_MAX_ABS_ERROR / fs.IMB_ONE * 32 + 1e-9)
    # OFI (Cont, Kukanov & Stoikov eq. 10), vectorised, the first record against an empty book
    pb0 = np.concatenate([[0], bp[:-1]])
    qb0 = np.concatenate([[0], bq[:-1]])
    pa0 = np.concatenate([[np.iinfo(np.int64).max], ap[:-1]])
    qa0 = np.concatenate([[0], aq[:-1]])
    e = (np.where(bp >= pb0, bq, 0) - np.where(bp <= pb0, qb0, 0)
         - np.where(ap <= pa0, aq, 0) + np.where(ap >= pa0, qa0, 0))
    mid = (bp + ap) / 2
    dmid = np.concatenate([[0.0], np.diff(mid)])
    signed = np.where(np.isin(rec["msg_type"], [ord("E"), ord("P")]),
                      np.where(rec["side"] == B, -1, 1) * rec["shares"].astype(np.int64), 0)
    for k in fs.WINDOWS:
        np.testing.assert_array_equal(out[:, COL[f"ofi_l1_k{k}"]], _window_sum(e, k))
        np.testing.assert_array_equal(out[:, COL[f"tvol_k{k}"]], _window_sum(signed, k))
        np.testing.assert_allclose(out[:, COL[f"dmid_k{k}"]] / 16,
                                   _window_sum(dmid, k) / fs.TICK_SIZE, atol=1e-9)
        np.testing.assert_allclose(out[:, COL[f"rv_k{k}"]] / 16,
                                   _window_sum(np.abs(dmid), k) / fs.TICK_SIZE, atol=1e-9)
    # level-1-only book: OFI at levels 2, 3 is identically zero
    assert not out[:, COL["ofi_l2_k16"]].any() and not out[:, COL["ofi_l3_k64"]].any()
    # intensities: exact recursion in floats with the table's decay
    ts = rec["timestamp"].astype(np.int64)
    dt = np.concatenate([[0], np.diff(ts)])
    bucket = np.where(dt < 1024, 0, np.minimum(np.floor(np.log2(np.maximum(dt, 1))).astype(int)
                                               + 1 - fs.DECAY_MIN_LOG2, fs.DECAY_BUCKETS - 1))
    dec = fs.DECAY_TABLE[bucket] / 32768.0
    ib = np.zeros(len(rec))
    acc = 0.0
    for i in range(len(rec)):
        acc = acc * dec[i] + (rec["side"][i] == B)
        ib[i] = acc
    # fixed-point rounding of 2**-17 per step, decaying: tiny absolute error in events
    assert np.max(np.abs(out[:, COL["intensity_buy"]] / 65536.0 - ib)) < 1e-3
