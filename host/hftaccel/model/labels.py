"""Mid-price direction labels (down / flat / up over k events) and time-ordered splits.

Labels follow the FI-2010 benchmark (Ntakaris et al., "Benchmark dataset for mid-price
forecasting of limit order book data with machine learning methods", J. Forecasting 2018) and
LOBCAST (Prata et al., "LOB-based deep learning models for stock price trend prediction",
2024): the relative change ``l_t = (m_+(t) - m_t) / m_t`` of the mid price ``m`` over a horizon of
``k`` events, where ``m_+`` is either the mean of the next ``k`` mids (``method="mean"``, FI-2010)
or the mid ``k`` events ahead (``method="point"``); ``l_t > alpha`` is up, ``l_t < -alpha`` down,
otherwise flat (``|l_t| == alpha`` is flat). Events whose horizon runs past the end of the series,
or that touch a mid with an empty side, get :data:`NO_LABEL`.

Splits are contiguous blocks in time (no shuffling across time); ``gap`` events (by default the
horizon) are dropped between consecutive blocks so that no training label looks into the
validation or test block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hftaccel.spec.quant import CLASS_NAMES, N_CLASSES

__all__ = [
    "DOWN", "FLAT", "UP", "NO_LABEL", "LABEL_METHODS",
    "LabelConfig", "mid_prices", "direction_labels", "labels_from_records",
    "Split", "chronological_split", "walk_forward", "class_balance",
]

DOWN, FLAT, UP = 0, 1, 2
NO_LABEL = -1
LABEL_METHODS = ("mean", "point")
assert CLASS_NAMES[DOWN] == "down" and CLASS_NAMES[FLAT] == "flat" and CLASS_NAMES[UP] == "up"


@dataclass(frozen=True)
class LabelConfig:
    """Label definition.

    Attributes
    ----------
    horizon : int
        k, number of events ahead (>= 1).
    alpha : float
        Threshold on the relative mid change (dimensionless, e.g. 2e-5 = 0.2 bp), >= 0.
    method : str
        ``"mean"`` (mean of the next k mids, FI-2010) or ``"point"`` (mid k events ahead).
    """

    horizon: int = 50
    alpha: float = 2e-5
    method: str = "mean"

    def __post_init__(self):
        if not isinstance(self.horizon, (int, np.integer)) or self.horizon < 1:
            raise ValueError(f"horizon must be an integer >= 1, got {self.horizon!r}")
        if not np.isfinite(self.alpha) or self.alpha < 0:
            raise ValueError(f"alpha must be a finite number >= 0, got {self.alpha!r}")
        if self.method not in LABEL_METHODS:
            raise ValueError(f"method must be one of {LABEL_METHODS}, got {self.method!r}")


def mid_prices(records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mid price after every book record.

    Parameters
    ----------
    records : np.ndarray
        Book records (``hftaccel.spec.book_record_dtype``), shape (n,).

    Returns
    -------
    mid : np.ndarray, float64, shape (n,)
        ``(best_bid + best_ask) / 2`` in 1/10,000 USD (exact: a half-integer); NaN where a side
        is empty.
    valid : np.ndarray, bool, shape (n,)
        Both sides present.
    """
    bid = records["bid_price"][:, 0].astype(np.int64)
    ask = records["ask_price"][:, 0].astype(np.int64)
    valid = (bid > 0) & (ask > 0)
    mid = np.where(valid, (bid + ask) / 2.0, np.nan)
    return mid, valid


def direction_labels(mid: np.ndarray, config: LabelConfig = LabelConfig()) -> np.ndarray:
    """Down / flat / up labels of one symbol's mid-price series.

    Parameters
    ----------
    mid : np.ndarray, float, shape (n,)
        Mid prices in event order (any positive unit, e.g. 1/10,000 USD); NaN or <= 0 = invalid.
    config : LabelConfig

    Returns
    -------
    np.ndarray, int8, shape (n,)
        :data:`DOWN` / :data:`FLAT` / :data:`UP`, or :data:`NO_LABEL` where ``t + k >= n`` or
        a mid in ``[t, t + k]`` (``"mean"``) / at ``t`` or ``t + k`` (``"point"``) is invalid.
    """
    mid = np.asarray(mid, dtype=np.float64)
    if mid.ndim != 1:
        raise ValueError(f"mid must be one-dimensional, got shape {mid.shape}")
    n, k = mid.shape[0], int(config.horizon)
    out = np.full(n, NO_LABEL, dtype=np.int8)
    if n <= k:
        return out
    valid = np.isfinite(mid) & (mid > 0)
    m = np.where(valid, mid, 0.0)
    t = np.arange(n - k)
    if config.method == "point":
        fut = m[t + k]
        ok = valid[t] & valid[t + k]
        num = fut - m[t]
        den = m[t]
    else:
        csum = np.concatenate([[0.0], np.cumsum(m)])
        cval = np.concatenate([[0], np.cumsum(valid.astype(np.int64))])
        s = csum[t + k + 1] - csum[t + 1]                      # sum of m[t+1 .. t+k]
        ok = valid[t] & (cval[t + k + 1] - cval[t + 1] == k)
        num = s - k * m[t]                                      # k * (mean - m_t)
        den = k * m[t]
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(ok, num / np.where(ok, den, 1.0), 0.0)
    lab = np.full(n - k, FLAT, dtype=np.int8)
    lab[rel > config.alpha] = UP
    lab[rel < -config.alpha] = DOWN
    lab[~ok] = NO_LABEL
    out[: n - k] = lab
    return out


def labels_from_records(records: np.ndarray, config: LabelConfig = LabelConfig()) -> np.ndarray:
    """Labels for book records of one or more symbols; the horizon counts each symbol's own events.

    Parameters
    ----------
    records : np.ndarray
        Book records (``hftaccel.spec.book_record_dtype``), shape (n,), in event order.
    config : LabelConfig

    Returns
    -------
    np.ndarray, int8, shape (n,)
        Labels aligned with ``records`` (:data:`NO_LABEL` where undefined).
    """
    mid, _ = mid_prices(records)
    out = np.full(records.shape[0], NO_LABEL, dtype=np.int8)
    loc = records["stock_locate"]
    for sym in np.unique(loc):
        idx = np.flatnonzero(loc == sym)
        out[idx] = direction_labels(mid[idx], config)
    return out


@dataclass(frozen=True)
class Split:
    """Index sets of a time-ordered split (int64 arrays of event positions, ascending)."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    def items(self):
        return (("train", self.train), ("validation", self.validation), ("test", self.test))


def chronological_split(n: int, fractions=(0.6, 0.2, 0.2), gap: int = 0) -> Split:
    """Split ``range(n)`` into consecutive train / validation / test blocks.

    Parameters
    ----------
    n : int
        Number of events.
    fractions : tuple of 3 floats
        Shares of train, validation and test (positive, summing to 1).
    gap : int
        Events dropped before the validation block and before the test block (use the label
        horizon so that no label of an earlier block looks into a later one).

    Returns
    -------
    Split
        ``max(train) + gap < min(validation)``, ``max(validation) + gap < min(test)``.

    Raises
    ------
    ValueError
        Bad fractions, negative gap, or a block would be empty.
    """
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (3,) or np.any(fr <= 0) or abs(fr.sum() - 1.0) > 1e-9:
        raise ValueError(f"fractions must be 3 positive numbers summing to 1, got {fractions!r}")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    usable = n - 2 * gap
    b1 = int(round(usable * fr[0]))
    b2 = b1 + int(round(usable * fr[1]))
    if b1 < 1 or b2 - b1 < 1 or usable - b2 < 1:
        raise ValueError(f"{n} events with gap {gap} leave an empty block for fractions {fractions!r}")
    train = np.arange(0, b1, dtype=np.int64)
    val = np.arange(b1 + gap, b2 + gap, dtype=np.int64)
    test = np.arange(b2 + 2 * gap, n, dtype=np.int64)
    return Split(train, val, test)


def walk_forward(n: int, n_folds: int, *, min_train: float = 0.4, gap: int = 0):
    """Expanding-window walk-forward folds over ``range(n)``.

    Fold ``i`` trains on ``[0, s_i)``, validates on the next block and tests on the block after
    it; blocks are ``(1 - min_train) / (n_folds + 1)`` of ``n`` each, and ``gap`` events are
    dropped between blocks.

    Yields
    ------
    Split
    """
    if n_folds < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}")
    if not 0 < min_train < 1:
        raise ValueError(f"min_train must be in (0, 1), got {min_train}")
    start = int(round(n * min_train))
    block = (n - start) // (n_folds + 1)
    if block <= gap:
        raise ValueError(f"{n} events are too few for {n_folds} folds with gap {gap}")
    for i in range(n_folds):
        s = start + i * block
        train = np.arange(0, s, dtype=np.int64)
        val = np.arange(s + gap, s + block, dtype=np.int64)
        test = np.arange(s + block + gap, s + 2 * block, dtype=np.int64)
        yield Split(train, val, test)


def class_balance(labels: np.ndarray) -> dict:
    """Counts and fractions of each class among defined labels.

    Parameters
    ----------
    labels : np.ndarray, int, shape (n,)

    Returns
    -------
    dict
        ``{"n": int, "counts": {class: int}, "fractions": {class: float}, "undefined": int}``.
    """
    labels = np.asarray(labels)
    defined = labels[labels != NO_LABEL]
    counts = np.bincount(defined.astype(np.int64), minlength=N_CLASSES)[:N_CLASSES]
    n = int(defined.size)
    return {
        "n": n,
        "counts": {c: int(counts[i]) for i, c in enumerate(CLASS_NAMES)},
        "fractions": {c: (float(counts[i]) / n if n else 0.0) for i, c in enumerate(CLASS_NAMES)},
        "undefined": int(labels.size - n),
    }
