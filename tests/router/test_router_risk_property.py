"""Under random orders, fills, rejects, replaces, cancels and market moves, the venue never
holds more risk than the router's pre-trade limits allow."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from router_helpers import ASK, BID, LOC, SYMBOL, arun, risk, start_pair, stop_pair

from hftaccel.router import Market, RouterError, VenueConfig
from hftaccel.router.orders import risk_side

LIMITS = dict(max_position=500, max_order_size=300, max_gross_notional=400 * BID * 3,
              throttle_orders=1000, throttle_window_us=1, collar_ticks=20)


def _market(seed: int) -> Market:
    rng = np.random.default_rng(seed)
    n = 40
    mid = BID + np.cumsum(rng.integers(-2, 3, n)) * 100
    sizes = rng.integers(0, 400, (2, n))
    return Market({SYMBOL.encode(): LOC}, {LOC: (
        np.arange(n) * 1000, mid, sizes[0], mid + 100, sizes[1])})


action = st.one_of(
    st.tuples(st.just("new"), st.sampled_from("BST"), st.integers(1, 400),
              st.integers(-25, 25), st.sampled_from("03")),
    st.tuples(st.just("replace"), st.integers(0, 50), st.integers(1, 400), st.integers(-25, 25)),
    st.tuples(st.just("cancel"), st.integers(0, 50), st.integers(0, 200)),
    st.tuples(st.just("tick"), st.integers(1, 3)),
)


def _check(venue, r):
    """The venue's view: executed position plus every open order stays inside the limits."""
    sess = venue.sessions["HFT"]
    pos = sum((1 if risk_side(o.side) == "B" else -1) * o.filled for o in r.orders.orders.values())
    open_b = sum(o.leaves for o in sess.orders.values() if o.side == "B")
    open_s = sum(o.leaves for o in sess.orders.values() if o.side != "B")
    assert pos + open_b <= LIMITS["max_position"]
    assert -pos + open_s <= LIMITS["max_position"]
    assert r.risk.gross_notional <= LIMITS["max_gross_notional"]
    assert all(o.quantity <= LIMITS["max_order_size"] for o in r.orders.orders.values())
    assert int(r.risk.position[LOC]) == pos == r.positions.by_locate.get(LOC, {}).get(
        "position", 0)
    assert int(r.risk.open_buy[LOC]) >= open_b and int(r.risk.open_sell[LOC]) >= open_s


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 16), reject_rate=st.sampled_from([0.0, 0.2, 0.6]),
       actions=st.lists(action, min_size=20, max_size=60))
def test_no_risk_limit_is_ever_exceeded(seed, reject_rate, actions):
    async def main():
        venue, r = await start_pair(market=_market(seed), risk_config=risk(**LIMITS),
                                    venue_config=VenueConfig(reject_rate=reject_rate, seed=seed))
        venue.now = 0
        try:
            for act in actions:
                _, bid, _, ask, _ = venue.market.top(LOC, venue.now)
                live = [o for o in r.orders.orders.values() if o.state == "live"]
                if act[0] == "new":
                    _, side, qty, off, tif = act
                    price = (ask if side == "B" else bid) + off * 100
                    r.submit(SYMBOL, LOC, side, qty, max(price, 100), best_bid=bid, best_ask=ask,
                             time_in_force=tif)
                elif act[0] == "replace" and live:
                    o = live[act[1] % len(live)]
                    r.replace(o.user_ref_num, act[2], max(o.price + act[3] * 100, 100),
                              best_bid=bid, best_ask=ask)
                elif act[0] == "cancel" and live:
                    o = live[act[1] % len(live)]
                    try:
                        r.cancel(o.user_ref_num, act[2])
                    except RouterError:
                        assert 0 < act[2] >= o.leaves   # would not reduce it: refused
                        continue
                elif act[0] == "tick":
                    venue.now += 1000 * act[1]
                    venue.sweep()
                await r.wait_settled()
                _check(venue, r)
            r.kill()
            await r.wait_settled()
            _check(venue, r)
            assert not venue.sessions["HFT"].orders and int(r.risk.open_buy[LOC]) == 0
        finally:
            await stop_pair(venue, r)

    arun(main())


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2 ** 16))
def test_router_gate_matches_the_golden_gate(seed):
    """The router's one-intent gate is the golden gate: same verdicts, reasons and state."""
    from hftaccel.golden import risk as grisk
    from hftaccel.spec.risk import FILL_RESTING, INTENT_DTYPE

    rng = np.random.default_rng(seed)
    cfg = risk(**{**LIMITS, "throttle_orders": 3, "throttle_window_us": 5,
                  "fill_model": FILL_RESTING})
    n = 200
    intents = np.zeros(n, INTENT_DTYPE)
    intents["timestamp"] = np.cumsum(rng.integers(0, 3000, n))
    intents["best_bid"] = BID
    intents["best_ask"] = ASK
    intents["price"] = rng.integers(-30, 30, n) * 100 + BID
    intents["shares"] = rng.integers(0, 400, n)
    intents["stock_locate"] = rng.integers(0, 3, n)
    intents["intent"] = rng.integers(1, 3, n)
    want, ref = grisk.gate(intents, cfg)
    state = grisk.RiskState(cfg)
    one = grisk.OneGate(cfg, state)
    got = [one(intents[i:i + 1].copy()) for i in range(n)]
    assert [g[0] for g in got] == want["verdict"].tolist()
    assert [g[1] for g in got] == want["reason"].tolist()
    assert [g[2] for g in got] == want["user_ref_num"].tolist()
    for name in ("position", "open_buy", "open_sell", "ring", "scalars", "reject_counts"):
        assert np.array_equal(getattr(state, name), getattr(ref, name)), name
