"""Send a replay's OUCH orders through a :class:`~hftaccel.router.Router`.

The pipeline (any backend) produces Enter Order records
(:data:`hftaccel.spec.ouch.ENTER_ORDER_DTYPE`) for its approved decisions; this module routes them one by one, in time order, to a venue: each
order is re-gated by the router's own risk gate (resting fill model: the venue's real fills and
cancels count, not the replay's assumption of an immediate fill) with the quote it was decided
on, journaled, sent, and waited for until the venue has answered. With the simulator in lockstep
(``venue`` given) the simulator's market clock is moved to each order's decision time first, so
fills are those the replayed book offered at that moment.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from hftaccel.spec.ouch import ENTER_ORDER_DTYPE

from .router import Router
from .venue import Market, Venue, VenueConfig

__all__ = ["RouteInput", "route_orders", "route"]


@dataclass
class RouteInput:
    """What the router needs per order, aligned with ``orders``.

    Attributes
    ----------
    orders : (k,) ENTER_ORDER_DTYPE
    timestamp : (k,) uint64
        Decision time, ns since midnight.
    stock_locate : (k,) uint16
    best_bid, best_ask : (k,) int64
        Quote the order was decided on, 1/10,000 USD.
    """

    orders: np.ndarray
    timestamp: np.ndarray
    stock_locate: np.ndarray
    best_bid: np.ndarray
    best_ask: np.ndarray

    @classmethod
    def from_decisions(cls, orders: np.ndarray, decisions: np.ndarray,
                       records: np.ndarray) -> "RouteInput":
        """Align the Enter Orders of ``orders_from_decisions`` with their decisions and the
        book records the decisions were made on (one record per decision)."""
        if orders.dtype != ENTER_ORDER_DTYPE:
            raise TypeError("orders must be spec.ouch.ENTER_ORDER_DTYPE records")
        rows = np.flatnonzero(decisions["verdict"] == 1)
        if rows.shape[0] != orders.shape[0]:
            raise ValueError(f"{orders.shape[0]} orders but {rows.shape[0]} approved decisions")
        return cls(orders, decisions["timestamp"][rows], decisions["stock_locate"][rows],
                   records["bid_price"][rows, 0].astype(np.int64),
                   records["ask_price"][rows, 0].astype(np.int64))


async def route_orders(router: Router, inp: RouteInput, *, venue: Venue | None = None,
                       timeout: float = 5.0, progress=None) -> dict:
    """Route every order of ``inp`` (in order) and wait for each answer.

    Returns
    -------
    dict
        ``router.summary()`` with the last quote of each locate as the P&L mark.
    """
    o = inp.orders
    marks = {}
    for i in range(o.shape[0]):
        ts = int(inp.timestamp[i])
        if venue is not None:
            venue.now = ts
        loc = int(inp.stock_locate[i])
        bid, ask = int(inp.best_bid[i]), int(inp.best_ask[i])
        marks[loc] = (bid + ask) // 2
        order = router.submit(o["symbol"][i], loc, o["side"][i].decode(), int(o["quantity"][i]),
                              int(o["price"][i]), best_bid=bid, best_ask=ask, timestamp=ts,
                              time_in_force=o["time_in_force"][i].decode(),
                              display=o["display"][i].decode(),
                              capacity=o["capacity"][i].decode(), cl_ord_id=o["cl_ord_id"][i])
        if order is not None:
            await router.wait_settled([order.user_ref_num], timeout)
        if progress is not None:
            progress(i + 1, o.shape[0])
    if router.orders.open_orders():
        router.kill()  # end of the replay: nothing stays open
        await router.wait_settled(timeout=timeout)
    return router.summary(marks)


def route(inp: RouteInput, *, risk_config, host: str | None = None, port: int | None = None,
          market: Market | None = None, venue_config: VenueConfig | None = None, journal=None,
          username: str = "HFT", password: str = "", progress=None) -> dict:
    """Route ``inp`` to ``host:port``, or (``market`` given) to a simulator started on loopback
    in lockstep with the orders' decision times. Returns the routing summary (with the
    simulator's ``venue_stats`` when one ran)."""

    async def main():
        venue = None
        h, p = host, port
        if market is not None:
            cfg = venue_config or VenueConfig(username=username, password=password)
            venue = Venue(market, cfg, clock="lockstep")
            h, p = "127.0.0.1", await venue.start("127.0.0.1", 0)
        router = Router(h, p, risk_config=risk_config, journal=journal, username=username,
                        password=password)
        try:
            await router.start()
            await router.wait_settled()
            summary = await route_orders(router, inp, venue=venue, progress=progress)
        finally:
            await router.close()
            if venue is not None:
                await venue.close()
        if venue is not None:
            summary["venue_stats"] = dict(venue.stats)
        return summary

    return asyncio.run(main())
