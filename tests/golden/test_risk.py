"""Decision stage and risk gate: unit cases, a plain-Python reference model compared bit for bit,
and hypothesis properties (no limit is ever exceeded; the kill switch blocks everything)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hftaccel.golden import risk
from hftaccel.spec.ouch import MAX_PRICE
from hftaccel.spec.risk import (DECISION_DTYPE, FILL_IMMEDIATE, FILL_RESTING, INTENT_BUY,
                                INTENT_DTYPE, INTENT_NONE, INTENT_SELL, POLICY_JOIN, POLICY_TAKE,
                                REASON_NONE, REJECT_REASONS, SCORED_UPDATE_DTYPE,
                                VERDICT_APPROVED, VERDICT_NONE, VERDICT_REJECTED, RiskConfig)

# --------------------------------------------------------------------------- decide


def _updates(scores, bid=1_000_000, ask=1_000_300):
    u = np.zeros(len(scores), SCORED_UPDATE_DTYPE)
    u["timestamp"] = np.arange(len(scores)) * 1_000_000
    u["seq"] = np.arange(len(scores))
    u["stock_locate"] = 3
    u["best_bid"], u["best_ask"] = bid, ask
    u["scores"] = scores
    return u


def test_decide_thresholds_ties_and_policies():
    scores = [[0, 0, 10], [0, 0, 9], [10, 0, 0], [0, 10, 0], [10, 0, 10], [-5, -20, 6]]
    cfg = RiskConfig(buy_threshold=10, sell_threshold=10, price_policy=POLICY_TAKE)
    it = risk.decide(_updates(scores), cfg)
    assert list(it["intent"]) == [INTENT_BUY, INTENT_NONE, INTENT_SELL, INTENT_NONE,
                                  INTENT_NONE, INTENT_BUY]
    # take: buy at ask, sell at bid; shares = lot
    assert list(it["price"]) == [1_000_300, 0, 1_000_000, 0, 0, 1_000_300]
    assert list(it["shares"]) == [100, 0, 100, 0, 0, 100]
    cfg = RiskConfig(buy_threshold=0, sell_threshold=0, price_policy=POLICY_JOIN,
                     price_offset_ticks=2)
    it = risk.decide(_updates([[10, 0, 10], [10, 0, 3]]), cfg)
    assert list(it["intent"]) == [INTENT_BUY, INTENT_SELL]          # buy wins a tie
    assert list(it["price"]) == [1_000_000 + 200, 1_000_300 - 200]   # join +/- 2 ticks


def test_decide_int32_extremes_do_not_overflow():
    lo, hi = np.iinfo(np.int32).min, np.iinfo(np.int32).max
    it = risk.decide(_updates([[lo, lo, hi], [hi, lo, lo]]),
                     RiskConfig(buy_threshold=2**32 - 2, sell_threshold=2**32 - 2))
    assert list(it["intent"]) == [INTENT_BUY, INTENT_SELL]   # int32 math would wrap to -1


# --------------------------------------------------------------------------- reference model


class Ref:
    """Plain-Python restatement of the spec.risk rules (the oracle for the Numba gate)."""

    def __init__(self, c: RiskConfig):
        self.c = c
        self.pos, self.ob, self.os = {}, {}, {}
        self.gross = 0
        self.kill = c.kill_switch
        self.urn = 1
        self.times = []
        self.counts = [0] * len(REJECT_REASONS)

    def step(self, t, loc, it, q, p, b, a):
        c = self.c
        if it == INTENT_NONE:
            v, r, side, urn = VERDICT_NONE, REASON_NONE, 0, 0
        else:
            buy = it == INTENT_BUY
            pos, ob, os_ = self.pos.get(loc, 0), self.ob.get(loc, 0), self.os.get(loc, 0)
            checks = [
                self.kill != 0,
                b <= 0 or a <= 0 or b > a,
                q <= 0 or p <= 0 or p > MAX_PRICE,
                q > c.max_order_size,
                abs(2 * p - (b + a)) > 2 * c.collar_ticks * c.tick_size,
                (pos + ob + q > c.max_position) if buy else (os_ - pos + q > c.max_position),
                self.gross + q * p > c.max_gross_notional,
                len(self.times) >= c.throttle_orders
                and t - self.times[-c.throttle_orders] < c.throttle_window_us * 1000,
            ]
            r = next((k for k, bad in enumerate(checks) if bad), REASON_NONE)
            side = ord("B") if buy else ord("S")
            if r == REASON_NONE:
                v, urn = VERDICT_APPROVED, self.urn
                self.urn += 1
                self.gross += q * p
                self.times.append(t)
                if c.fill_model == FILL_RESTING:
                    (self.ob if buy else self.os)[loc] = (ob if buy else os_) + q
                else:
                    self.pos[loc] = pos + (q if buy else -q)
            else:
                v, urn = VERDICT_REJECTED, 0
                self.counts[r] += 1
        return (v, r, side, urn, self.pos.get(loc, 0), self.ob.get(loc, 0), self.os.get(loc, 0),
                self.gross)


# --------------------------------------------------------------------------- strategies

LOCATES = (1, 2, 7)


@st.composite
def configs(draw):
    return RiskConfig(
        tick_size=100,
        collar_ticks=draw(st.integers(0, 20)),
        max_order_size=draw(st.integers(50, 1_500)),
        max_position=draw(st.integers(0, 3_000)),
        max_gross_notional=draw(st.sampled_from([0, 10**9, 3 * 10**9, 10**10, 10**12])),
        throttle_orders=draw(st.integers(1, 6)),
        throttle_window_us=draw(st.integers(0, 200)),
        fill_model=draw(st.sampled_from([FILL_IMMEDIATE, FILL_RESTING])),
        kill_switch=draw(st.sampled_from([0] * 7 + [1])),
    )


@st.composite
def intent_streams(draw, max_size=120):
    n = draw(st.integers(1, max_size))
    gaps = draw(st.lists(st.sampled_from([0, 0, 1_000, 5_000, 30_000, 250_000]), min_size=n,
                         max_size=n))
    t0 = draw(st.integers(0, 10**12))
    rows = []
    for i in range(n):
        bid = draw(st.sampled_from([1_000_000] * 6 + [999_000, 2_500_000, 0]))
        spread = draw(st.sampled_from([-100, 0, 100, 100, 100, 500, 5_000]))
        ask = 0 if draw(st.integers(0, 40)) == 0 else max(bid + spread, 0)
        off = draw(st.integers(-15, 15)) * 100
        price = draw(st.sampled_from([(bid + ask) // 2 + off] * 4 + [ask, bid, -1, MAX_PRICE + 1]))
        rows.append((draw(st.sampled_from([INTENT_BUY, INTENT_SELL, INTENT_BUY, INTENT_SELL,
                                           INTENT_NONE])),
                     draw(st.sampled_from([100] * 5 + [0, 1, 250, 999, 2_000])),
                     price, bid, ask, draw(st.sampled_from(LOCATES))))
    out = np.zeros(n, INTENT_DTYPE)
    out["timestamp"] = t0 + np.cumsum(gaps)
    out["seq"] = np.arange(n)
    for k, name in enumerate(("intent", "shares", "price", "best_bid", "best_ask",
                              "stock_locate")):
        out[name] = [r[k] for r in rows]
    return out


def _check_invariants(cfg, dec, state):
    ok = dec["verdict"] == VERDICT_APPROVED
    rej = dec["verdict"] == VERDICT_REJECTED
    # worst-case position never beyond the limit, on either side, after any record
    assert np.all(dec["position"] + dec["open_buy"] <= cfg.max_position)
    assert np.all(dec["open_sell"] - dec["position"] <= cfg.max_position)
    for loc in LOCATES:
        assert state.position[loc] + state.open_buy[loc] <= cfg.max_position
        assert state.open_sell[loc] - state.position[loc] <= cfg.max_position
    # committed gross notional never beyond the limit
    assert np.all(dec["gross_notional"] <= cfg.max_gross_notional)
    # approved orders: size, quote and collar
    a = dec[ok]
    assert np.all(a["shares"] <= cfg.max_order_size) and np.all(a["shares"] > 0)
    assert np.all((a["price"] > 0) & (a["price"] <= MAX_PRICE))
    # rejection counts by reason sum to the rejected records and match their reasons
    assert state.n_rejected == int(rej.sum())
    assert dec["reason"][ok | (dec["verdict"] == VERDICT_NONE)].tolist() == \
        [REASON_NONE] * int((~rej).sum())


def _collar_and_throttle(cfg, intents, dec):
    ok = dec["verdict"] == VERDICT_APPROVED
    b, a, p = (intents[ok][k].astype(np.int64) for k in ("best_bid", "best_ask", "price"))
    assert np.all((b > 0) & (a > 0) & (b <= a))
    assert np.all(np.abs(2 * p - (b + a)) <= 2 * cfg.collar_ticks * cfg.tick_size)
    t = dec["timestamp"][ok].astype(np.int64)
    n, w = cfg.throttle_orders, cfg.throttle_window_us * 1000
    if t.size > n:   # never more than N approved orders in any window [t0, t0 + W)
        assert np.all(t[n:] - t[:-n] >= w)


# --------------------------------------------------------------------------- properties


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(), intents=intent_streams())
def test_gate_never_exceeds_limits_and_matches_reference(cfg, intents):
    dec, state = risk.gate(intents, cfg)
    _check_invariants(cfg, dec, state)
    _collar_and_throttle(cfg, intents, dec)
    ref = Ref(cfg)
    for i, r in enumerate(intents):
        want = ref.step(int(r["timestamp"]), int(r["stock_locate"]), int(r["intent"]),
                        int(r["shares"]), int(r["price"]), int(r["best_bid"]), int(r["best_ask"]))
        got = tuple(int(dec[i][k]) for k in ("verdict", "reason", "side", "user_ref_num",
                                              "position", "open_buy", "open_sell",
                                              "gross_notional"))
        assert got == want, f"record {i}: {r}"
    assert state.reject_counts.tolist() == ref.counts
    if cfg.kill_switch:
        assert not np.any(dec["verdict"] == VERDICT_APPROVED)
        assert state.rejections()["kill_switch"] == int((intents["intent"] != INTENT_NONE).sum())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(), chunks=st.lists(intent_streams(max_size=40), min_size=2, max_size=4),
       fill_frac=st.floats(0, 1), data=st.data())
def test_resting_orders_with_fills_and_cancels_keep_limits(cfg, chunks, fill_frac, data):
    cfg = RiskConfig(**{**cfg.__dict__, "fill_model": FILL_RESTING, "kill_switch": 0})
    state = risk.RiskState(cfg)
    t_last, n_rej = 0, 0
    for chunk in chunks:
        chunk["timestamp"] = chunk["timestamp"] - chunk["timestamp"][0] + t_last
        dec, state = risk.gate(chunk, cfg, state)
        t_last = int(chunk["timestamp"][-1])
        n_rej += int((dec["verdict"] == VERDICT_REJECTED).sum())
        assert state.n_rejected == n_rej
        assert np.all(dec["position"] + dec["open_buy"] <= cfg.max_position)
        assert np.all(dec["open_sell"] - dec["position"] <= cfg.max_position)
        assert np.all(dec["gross_notional"] <= cfg.max_gross_notional)
        # the router reports fills / cancels of the orders just approved
        for rec in dec[dec["verdict"] == VERDICT_APPROVED]:
            loc, side, q = int(rec["stock_locate"]), chr(rec["side"]), int(rec["shares"])
            filled = int(q * fill_frac)
            if filled:
                risk.on_fill(state, loc, side, filled)
            if data.draw(st.booleans()) and q - filled:
                risk.on_cancel(state, loc, side, q - filled, int(rec["price"]))
        for loc in LOCATES:
            assert state.position[loc] + state.open_buy[loc] <= cfg.max_position
            assert state.open_sell[loc] - state.position[loc] <= cfg.max_position
        assert 0 <= state.gross_notional <= cfg.max_gross_notional


@settings(max_examples=25, deadline=None)
@given(intents=intent_streams(max_size=60))
def test_kill_switch_blocks_everything(intents):
    cfg = RiskConfig(max_position=10**9, max_order_size=10**9, max_gross_notional=2**62,
                     collar_ticks=10**6, throttle_orders=1000, throttle_window_us=0)
    state = risk.RiskState(cfg)
    risk.set_kill_switch(state, True)
    dec, state = risk.gate(intents, cfg, state)
    n_int = int((intents["intent"] != INTENT_NONE).sum())
    assert state.n_approved == 0 and not np.any(dec["verdict"] == VERDICT_APPROVED)
    assert state.rejections() == {r: (n_int if r == "kill_switch" else 0) for r in REJECT_REASONS}
    assert np.all(dec["user_ref_num"] == 0) and state.gross_notional == 0


# --------------------------------------------------------------------------- unit cases


def _one(intent=INTENT_BUY, shares=100, price=1_000_100, bid=1_000_000, ask=1_000_100, t=0,
         loc=4):
    r = np.zeros(1, INTENT_DTYPE)
    r["timestamp"], r["stock_locate"], r["intent"] = t, loc, intent
    r["shares"], r["price"], r["best_bid"], r["best_ask"] = shares, price, bid, ask
    return r


@pytest.mark.parametrize("kwargs,cfg_kw,reason", [
    ({}, {"kill_switch": 1}, "kill_switch"),
    ({"bid": 0}, {}, "bad_quote"),
    ({"bid": 1_000_200}, {}, "bad_quote"),
    ({"shares": 0}, {}, "bad_order"),
    ({"price": MAX_PRICE + 1, "bid": MAX_PRICE, "ask": MAX_PRICE + 2}, {}, "bad_order"),
    ({"shares": 1_001}, {}, "max_order_size"),
    ({"price": 1_002_100}, {"collar_ticks": 10}, "price_collar"),
    ({"shares": 600}, {"max_position": 500}, "max_position"),
    ({}, {"max_gross_notional": 100 * 1_000_100 - 1}, "max_gross_notional"),
    # several failing checks: the first in priority order is the one counted
    ({"bid": 0, "shares": 5_000}, {"kill_switch": 1}, "kill_switch"),
    ({"shares": 5_000, "price": 9_000_000}, {"max_position": 10}, "max_order_size"),
])
def test_single_rejection_reason(kwargs, cfg_kw, reason):
    cfg = RiskConfig(**cfg_kw)
    dec, state = risk.gate(_one(**kwargs), cfg)
    assert dec["verdict"][0] == VERDICT_REJECTED
    assert REJECT_REASONS[dec["reason"][0]] == reason
    assert state.rejections()[reason] == 1 and state.n_rejected == 1


def test_collar_edge_is_inclusive_and_mid_is_exact():
    cfg = RiskConfig(collar_ticks=1, tick_size=100)
    # bid 1,000,000 ask 1,000,101: mid 1,000,050.5; 1,000,150 is 99.5 away, 1,000,151 is 100.5
    dec, _ = risk.gate(np.concatenate([_one(price=1_000_150, ask=1_000_101),
                                       _one(price=1_000_151, ask=1_000_101, t=10**9)]), cfg)
    assert list(dec["verdict"]) == [VERDICT_APPROVED, VERDICT_REJECTED]


def test_throttle_window_boundary():
    cfg = RiskConfig(throttle_orders=2, throttle_window_us=10, max_position=10**6)
    ts = [0, 1_000, 9_999, 10_000, 10_999, 11_000]
    dec, _ = risk.gate(np.concatenate([_one(t=t) for t in ts]), cfg)
    assert list(dec["verdict"]) == [1, 1, 2, 1, 2, 1]
    assert list(dec["user_ref_num"]) == [1, 2, 0, 3, 0, 4]


def test_hooks_and_state_errors():
    cfg = RiskConfig(fill_model=FILL_RESTING)
    dec, state = risk.gate(_one(shares=300), cfg)
    assert state.open_buy[4] == 300 and state.position[4] == 0
    risk.on_fill(state, 4, "B", 100)
    assert (state.position[4], state.open_buy[4]) == (100, 200)
    risk.on_cancel(state, 4, ord("B"), 200, 1_000_100)
    assert state.open_buy[4] == 0 and state.gross_notional == 100 * 1_000_100
    with pytest.raises(risk.RiskError, match="only 0 are open"):
        risk.on_fill(state, 4, "B", 1)
    with pytest.raises(risk.RiskError, match="side must be"):
        risk.on_fill(state, 4, "X", 1)
    with pytest.raises(risk.RiskError, match="created for throttle_orders"):
        risk.gate(_one(), RiskConfig(throttle_orders=3), state)
    with pytest.raises(risk.RiskError, match="record 1 .* before the previous"):
        risk.gate(np.concatenate([_one(t=5), _one(t=4)]), cfg, state)
    bad = _one()
    bad["intent"] = 7
    with pytest.raises(risk.RiskError, match="intent code 7"):
        risk.gate(bad, cfg, state)
    with pytest.raises(TypeError, match="INTENT_DTYPE"):
        risk.gate(np.zeros(1, DECISION_DTYPE), cfg)


@pytest.mark.parametrize("kw,match", [
    ({"throttle_orders": 0}, "throttle_orders"), ({"tick_size": 0}, "tick_size"),
    ({"price_policy": 2}, "price_policy"), ({"max_position": -1}, "max_position"),
    ({"lot_size": 1.5}, "integer"), ({"kill_switch": 2}, "kill_switch"),
])
def test_config_validation(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        RiskConfig(**kw)
