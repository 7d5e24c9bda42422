"""Server-side downsampling of a time window to what a panel of a few hundred pixels can show.

Every function takes columns already cut to a window ``[t0, t1)`` (ns since midnight) and
returns arrays whose size depends on the number of bins, not on the number of records: a
liquidity grid (time bins x price rows, shares summed), min/max-preserving line decimation
(M4: first, last, minimum and maximum record of every bucket; Jugel et al. 2014, "M4: a
visualization-oriented time series data aggregation", PVLDB 7(10)), one marker per occupied
(time bucket, price) cell, and event counts per time bin. Nothing is interpolated: every kept
point is a record, every sum is exact in integers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Grid", "bin_index", "bin_edges", "liquidity_grid", "grid_row_vector", "decimate",
           "cell_markers", "counts_per_bin"]


def _check_window(t0: int, t1: int, n_bins: int) -> None:
    if not (isinstance(n_bins, (int, np.integer)) and n_bins >= 1):
        raise ValueError(f"number of bins must be a positive integer, got {n_bins!r}")
    if not t1 > t0:
        raise ValueError(f"time window must have t1 > t0 (ns), got [{t0}, {t1})")


def bin_index(ts: np.ndarray, t0: int, t1: int, n_bins: int) -> np.ndarray:
    """Time bin of each timestamp: ``floor((ts - t0) * n_bins / (t1 - t0))``.

    Parameters
    ----------
    ts : np.ndarray of int, shape (n,)
        Timestamps, ns since midnight, all in ``[t0, t1)``.
    t0, t1 : int
        Window, ns since midnight.
    n_bins : int
        Equal-width bins over the window.

    Returns
    -------
    np.ndarray of int64, shape (n,), values in ``[0, n_bins)``.

    Raises
    ------
    ValueError
        ``t1 <= t0``, ``n_bins < 1``, or a timestamp outside the window.
    """
    _check_window(t0, t1, n_bins)
    d = np.asarray(ts, np.int64) - np.int64(t0)
    if d.size and (d.min() < 0 or d.max() >= t1 - t0):
        raise ValueError(f"timestamps outside the window [{t0}, {t1}) ns")
    # (t1 - t0) * n_bins stays far below 2**63 for a day (8.64e13 ns) and n_bins <= 10**4
    return (d * np.int64(n_bins)) // np.int64(t1 - t0)


def bin_edges(t0: int, t1: int, n_bins: int) -> np.ndarray:
    """Left edges of the bins of :func:`bin_index` plus ``t1``: ``(n_bins + 1,)`` int64, ns.

    Bin ``i`` holds the timestamps ``ts`` with ``edges[i] <= ts < edges[i + 1]``.
    """
    _check_window(t0, t1, n_bins)
    i = np.arange(n_bins + 1, dtype=np.int64)
    # smallest ts with floor((ts - t0) * n / w) >= i is t0 + ceil(i * w / n)
    w = np.int64(t1 - t0)
    return np.int64(t0) + -((-i * w) // np.int64(n_bins))


@dataclass
class Grid:
    """Resting shares on a (price row x time bin) grid.

    Attributes
    ----------
    edges : np.ndarray of int64, shape (n_time + 1,)
        Time bin edges, ns since midnight (see :func:`bin_edges`).
    lo_tick : int
        Price of row 0 in ticks (price // tick).
    ticks_per_row : int
        Ticks summed in one row.
    tick : int
        Tick size, 1/10,000 USD.
    shares : np.ndarray of int64, shape (n_rows, n_time)
        Sum over the records of a bin of the shares resting at the row's prices (every level of
        both sides): a bin's shares are the sum of the records falling in it.
    updates : np.ndarray of int64, shape (n_time,)
        Records in each bin.
    last_state : np.ndarray of float64, shape (n_rows, n_time)
        The resting shares of each bin's last record (zeros for empty bins).
    """

    edges: np.ndarray
    lo_tick: int
    ticks_per_row: int
    tick: int
    shares: np.ndarray
    updates: np.ndarray
    last_state: np.ndarray

    @property
    def prices(self) -> np.ndarray:
        """Lowest price of each row, 1/10,000 USD, ``(n_rows,)`` int64."""
        n_rows = self.shares.shape[0]
        return (self.lo_tick + np.arange(n_rows, dtype=np.int64) * self.ticks_per_row) * self.tick

    def mean(self, carry: np.ndarray | None = None) -> np.ndarray:
        """Resting shares per book update, ``(n_rows, n_time)`` float64.

        A bin with records holds ``shares / updates``; an empty bin repeats the state of the
        last record before it (the book did not change): ``carry`` (``(n_rows,)``, see
        :func:`grid_row_vector`, the record just before the window) for the leading empty
        bins, NaN without it.
        """
        n_rows, n_time = self.shares.shape
        out = np.full((n_rows, n_time), np.nan)
        have = self.updates > 0
        out[:, have] = self.shares[:, have] / self.updates[have]
        last = np.where(have, np.arange(n_time), -1)
        np.maximum.accumulate(last, out=last)
        fill = (~have) & (last >= 0)
        out[:, fill] = self.last_state[:, last[fill]]
        if carry is not None:
            out[:, last < 0] = np.asarray(carry, np.float64)[:, None]
        return out


def _rows(price: np.ndarray, lo_tick: int, ticks_per_row: int, tick: int) -> np.ndarray:
    return (price.astype(np.int64) // tick - lo_tick) // ticks_per_row


def liquidity_grid(ts, prices, shares, t0: int, t1: int, n_time: int, *, tick: int,
                   max_rows: int = 240, price_range: tuple | None = None) -> Grid:
    """Sum resting shares by (price row, time bin) over a window of book records.

    Parameters
    ----------
    ts : np.ndarray of int, shape (n,)
        Record timestamps, ns since midnight, in ``[t0, t1)``, non-decreasing.
    prices, shares : np.ndarray of int, shape (n, L)
        Level prices (1/10,000 USD; 0 = empty level, left out) and resting shares of every
        level of both sides.
    t0, t1 : int
        Window, ns since midnight.
    n_time : int
        Time bins.
    tick : int
        Tick size, 1/10,000 USD (:data:`hftaccel.spec.itch.TICK_SIZE`).
    max_rows : int
        At most this many price rows; rows hold ``ceil(range / max_rows)`` ticks each.
    price_range : (int, int), optional
        Lowest and highest price to show, 1/10,000 USD (default: those of the non-empty levels
        of the window); levels outside are left out.

    Returns
    -------
    Grid
        ``last_state`` holds, per bin, the grid row vector of the bin's last record (used by
        :meth:`Grid.mean` to fill empty bins).

    Raises
    ------
    ValueError
        Shapes disagree, the window or ``max_rows`` is invalid, or a timestamp lies outside it.
    """
    prices = np.asarray(prices)
    shares = np.asarray(shares)
    ts = np.asarray(ts)
    if prices.shape != shares.shape or prices.ndim != 2 or prices.shape[0] != ts.shape[0]:
        raise ValueError(f"prices {prices.shape} and shares {shares.shape} must be (n, L) with "
                         f"n = len(ts) = {ts.shape[0]}")
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows!r}")
    b = bin_index(ts, t0, t1, n_time)
    live = prices > 0
    if price_range is None:
        if live.any():
            price_range = (int(prices[live].min()), int(prices[live].max()))
        else:
            price_range = (0, 0)
    lo_tick, hi_tick = int(price_range[0]) // tick, int(price_range[1]) // tick
    span = hi_tick - lo_tick + 1
    tpr = max(1, -(-span // max_rows))
    n_rows = -(-span // tpr)
    r = _rows(prices, lo_tick, tpr, tick)
    keep = live & (r >= 0) & (r < n_rows)
    cell = r * n_time + b[:, None]
    grid = np.bincount(cell[keep], weights=shares[keep].astype(np.float64),
                       minlength=n_rows * n_time)
    # float64 sums of integers below 2**53 are exact; return them as integers
    grid = np.rint(grid).astype(np.int64).reshape(n_rows, n_time)
    updates = np.bincount(b, minlength=n_time).astype(np.int64)
    last_state = np.zeros((n_rows, n_time))
    if ts.shape[0]:
        last_row = np.zeros(n_time, np.int64)
        have = updates > 0
        last_row[have] = np.cumsum(updates)[have] - 1
        lr = last_row[have]
        k = keep[lr]
        rows = np.where(k, r[lr], 0)
        cols = np.broadcast_to(np.flatnonzero(have)[:, None], rows.shape)
        np.add.at(last_state, (rows[k], cols[k]), shares[lr][k].astype(np.float64))
    return Grid(bin_edges(t0, t1, n_time), lo_tick, tpr, tick, grid, updates, last_state)


def grid_row_vector(prices, shares, grid: Grid) -> np.ndarray:
    """One record's resting shares on ``grid``'s price rows, ``(n_rows,)`` float64 (the
    ``carry`` of :meth:`Grid.mean`). ``prices``, ``shares``: ``(L,)``."""
    prices = np.asarray(prices)
    shares = np.asarray(shares)
    n_rows = grid.shares.shape[0]
    r = _rows(prices, grid.lo_tick, grid.ticks_per_row, grid.tick)
    keep = (prices > 0) & (r >= 0) & (r < n_rows)
    out = np.zeros(n_rows)
    np.add.at(out, r[keep], shares[keep].astype(np.float64))
    return out


def decimate(ts, values, t0: int, t1: int, n_buckets: int) -> np.ndarray:
    """Rows to draw so that a line keeps every bucket's first, last, lowest and highest point.

    Parameters
    ----------
    ts : np.ndarray of int, shape (n,)
        Timestamps, ns since midnight, in ``[t0, t1)``, non-decreasing.
    values : np.ndarray, shape (n,) or (n, k)
        One or ``k`` series over the same records (NaN values are never chosen as extremes).
    t0, t1 : int
        Window, ns since midnight.
    n_buckets : int
        Buckets over the window (about the panel's width in pixels).

    Returns
    -------
    np.ndarray of int64
        Sorted, unique row indices into ``ts``: all rows when ``n <= 4 * n_buckets``.

    Raises
    ------
    ValueError
        As :func:`bin_index`, or ``values`` does not have ``n`` rows.
    """
    ts = np.asarray(ts)
    v = np.asarray(values, np.float64)
    if v.ndim == 1:
        v = v[:, None]
    n = ts.shape[0]
    if v.shape[0] != n:
        raise ValueError(f"values has {v.shape[0]} rows, ts has {n}")
    if n <= 4 * n_buckets:
        _check_window(t0, t1, n_buckets)
        return np.arange(n, dtype=np.int64)
    b = bin_index(ts, t0, t1, n_buckets)
    starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    ends = np.r_[starts[1:], n] - 1
    keep = [starts, ends]
    seg = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, n]))
    for j in range(v.shape[1]):
        col = v[:, j]
        ok = ~np.isnan(col)
        if not ok.any():
            continue
        for fill, red in ((np.inf, np.minimum), (-np.inf, np.maximum)):
            c = np.where(ok, col, fill)
            ext = red.reduceat(c, starts)
            rows = np.flatnonzero((c == ext[seg]) & ok)
            s = seg[rows]           # non-decreasing: keep the first hit of each bucket
            keep.append(rows[np.r_[True, s[1:] != s[:-1]]])
    return np.unique(np.concatenate(keep))


def cell_markers(ts, price, t0: int, t1: int, n_time: int, *, tick: int) -> tuple:
    """One marker per occupied (time bucket, price tick) cell.

    Parameters
    ----------
    ts : np.ndarray of int, shape (n,)
        Event timestamps, ns since midnight, in ``[t0, t1)``, non-decreasing.
    price : np.ndarray of int, shape (n,)
        Event prices, 1/10,000 USD.
    t0, t1, n_time : int
        Window (ns) and time buckets.
    tick : int
        Tick size, 1/10,000 USD.

    Returns
    -------
    rows : np.ndarray of int64
        The first event of each occupied cell, in time order.
    counts : np.ndarray of int64
        Events in that cell (same length as ``rows``).
    """
    ts = np.asarray(ts)
    b = bin_index(ts, t0, t1, n_time)
    key = b * np.int64(1 << 32) + np.asarray(price, np.int64) // tick
    _, first, counts = np.unique(key, return_index=True, return_counts=True)
    order = np.argsort(first, kind="stable")
    return first[order].astype(np.int64), counts[order].astype(np.int64)


def counts_per_bin(ts, t0: int, t1: int, n_bins: int, category=None,
                   n_categories: int = 1) -> np.ndarray:
    """Events per time bin, optionally split by a category code.

    Parameters
    ----------
    ts : np.ndarray of int, shape (n,)
        Timestamps, ns since midnight, in ``[t0, t1)``.
    t0, t1, n_bins : int
        Window (ns) and bins.
    category : np.ndarray of int, shape (n,), optional
        Category code of each event, in ``[0, n_categories)``.
    n_categories : int

    Returns
    -------
    np.ndarray of int64, shape (n_categories, n_bins)

    Raises
    ------
    ValueError
        As :func:`bin_index`, or a category code out of range.
    """
    b = bin_index(ts, t0, t1, n_bins)
    c = np.zeros(b.shape, np.int64) if category is None else np.asarray(category, np.int64)
    if c.size and (c.min() < 0 or c.max() >= n_categories):
        raise ValueError(f"category codes must lie in [0, {n_categories})")
    return np.bincount(c * n_bins + b, minlength=n_categories * n_bins).reshape(
        n_categories, n_bins).astype(np.int64)
