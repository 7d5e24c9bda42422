"""Helpers shared by the router tests (not a test module): a simulator on an ephemeral
loopback port, a logged-in router, order shortcuts."""

import asyncio

from hftaccel.router import Market, Router, Venue, VenueConfig
from hftaccel.spec.risk import RiskConfig

LOC = 7
SYMBOL = "AMZN"
BID, ASK = 2_230_000, 2_230_100


def flat_market(size: int = 500) -> Market:
    return Market.constant({SYMBOL: (LOC, BID, ASK, size)})


def stepped_market() -> Market:
    """Three book states at t = 1000, 2000, 3000 ns: the ask falls, then the bid rises."""
    import numpy as np

    q = {LOC: (np.array([1000, 2000, 3000]), np.array([BID, BID, BID + 300]),
               np.array([300, 300, 300]), np.array([ASK, ASK - 100, ASK + 300]),
               np.array([200, 400, 200]))}
    return Market({SYMBOL.encode(): LOC}, q)


def risk(**kw) -> RiskConfig:
    base = dict(throttle_orders=1000, throttle_window_us=1, max_position=1000,
                max_order_size=1000, collar_ticks=50)
    base.update(kw)
    return RiskConfig(**base)


async def start_pair(tmp_path=None, *, market=None, venue_config=None, journal=True, **router_kw):
    """Start a venue (lockstep clock) and a logged-in router against it."""
    venue = Venue(market or flat_market(), venue_config or VenueConfig(heartbeat_s=0.2))
    port = await venue.start()
    kw = dict(risk_config=risk(), heartbeat_s=0.2)
    kw.update(router_kw)
    if journal and tmp_path is not None:
        kw["journal"] = tmp_path / "router.journal"
    router = Router("127.0.0.1", port, **kw)
    await router.start()
    await router.wait_settled()
    return venue, router


async def stop_pair(venue, router):
    await router.close()
    await venue.close()
    await asyncio.sleep(0)


def buy(router, qty=100, price=ASK, tif="3", **kw):
    return router.submit(SYMBOL, LOC, "B", qty, price, best_bid=BID, best_ask=ASK,
                         time_in_force=tif, **kw)


def sell(router, qty=100, price=BID, tif="3", **kw):
    return router.submit(SYMBOL, LOC, "S", qty, price, best_bid=BID, best_ask=ASK,
                         time_in_force=tif, **kw)


def arun(coro, timeout: float = 30):
    """Run a coroutine to completion (no pytest-asyncio here)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))
