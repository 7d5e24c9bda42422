"""Mark-to-market evaluation of trading signals on the book they were computed from.

Each signal (buy or sell, one lot) is entered at the book update that produced it and marked
``horizon`` book updates of the same symbol later, the label horizon of the model. Two marks are
reported, both honest about costs:

- ``gross``: mid to mid, ``side * (mid[t+h] - mid[t])``: the signal's directional edge before
  any cost;
- ``net``: crossing the spread both ways: a buy pays the best ask at ``t`` and sells at the best
  bid at ``t+h`` (``bid[t+h] - ask[t]``); a sell receives the bid and buys back at the ask
  (``bid[t] - ask[t+h]``). This is what a liquidity-taking strategy would realize, before fees.

Prices are ITCH Price(4) integers (1/10,000 USD); results are given in ticks per share and in
USD. Signals whose entry or exit book lacks a side, or that have no update ``horizon`` steps
later, are not evaluated (counted as ``unmarked``).
"""

from __future__ import annotations

import numpy as np

from hftaccel.spec.itch import TICK_SIZE

__all__ = ["mark_to_market"]


def _later_index(locates: np.ndarray, horizon: int) -> np.ndarray:
    """For every record, the index of the record ``horizon`` updates later of the same locate
    (-1 when there is none)."""
    n = locates.shape[0]
    order = np.argsort(locates, kind="stable")
    sorted_loc = locates[order]
    later = np.full(n, -1, np.int64)
    if n > horizon:
        same = sorted_loc[horizon:] == sorted_loc[:-horizon]
        src = order[:-horizon][same]
        later[src] = order[horizon:][same]
    return later


def mark_to_market(records: np.ndarray, side: np.ndarray, *, horizon: int, start: int = 0,
                   shares: int = 100, tick_size: int = TICK_SIZE) -> dict:
    """Evaluate signals against the book ``horizon`` updates later.

    Parameters
    ----------
    records : np.ndarray of BOOK_RECORD_DTYPE, shape (n,)
        The book updates the signals were computed on, in sequence order.
    side : np.ndarray of int, shape (n,)
        +1 buy, -1 sell, 0 no signal, aligned with ``records``.
    horizon : int
        Book updates of the same symbol between entry and mark (>= 1).
    start : int
        First record index evaluated (e.g. the start of the test split).
    shares : int
        Shares per signal (the lot size).
    tick_size : int
        1/10,000 USD per tick.

    Returns
    -------
    dict
        ``signals`` (evaluated), ``unmarked``, ``buy``, ``sell``, ``gross_ticks_per_share``
        and ``net_ticks_per_share`` (means), ``net_hit_rate`` (fraction with net > 0),
        ``gross_pnl_usd``, ``net_pnl_usd``, ``spread_cost_usd`` (gross - net), ``horizon``,
        ``start``.

    Raises
    ------
    ValueError
        ``horizon`` < 1 or ``side`` does not align with ``records``.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 update, got {horizon}")
    side = np.asarray(side, np.int64)
    if side.shape != records.shape:
        raise ValueError(f"side has shape {side.shape}, records {records.shape}")
    bid = records["bid_price"][:, 0].astype(np.int64)
    ask = records["ask_price"][:, 0].astype(np.int64)
    later = _later_index(records["stock_locate"], horizon)
    idx = np.flatnonzero((side != 0) & (np.arange(side.shape[0]) >= start))
    j = later[idx]
    ok = (j >= 0) & (bid[idx] > 0) & (ask[idx] > 0)
    ok[ok] &= (bid[j[ok]] > 0) & (ask[j[ok]] > 0)
    i, j, s = idx[ok], j[ok], side[idx[ok]]
    mid2_in, mid2_out = bid[i] + ask[i], bid[j] + ask[j]
    gross2 = s * (mid2_out - mid2_in)  # in half units of 1/10,000 USD
    net = np.where(s > 0, bid[j] - ask[i], bid[i] - ask[j])
    n = int(i.shape[0])
    usd = shares / 10_000
    return {
        "horizon": int(horizon),
        "start": int(start),
        "signals": n,
        "unmarked": int(idx.shape[0] - n),
        "buy": int((s > 0).sum()),
        "sell": int((s < 0).sum()),
        "gross_ticks_per_share": float(gross2.mean() / 2 / tick_size) if n else 0.0,
        "net_ticks_per_share": float(net.mean() / tick_size) if n else 0.0,
        "net_hit_rate": float((net > 0).mean()) if n else 0.0,
        "gross_pnl_usd": float(gross2.sum() / 2 * usd),
        "net_pnl_usd": float(net.sum() * usd),
        "spread_cost_usd": float((gross2.sum() / 2 - net.sum()) * usd),
    }
