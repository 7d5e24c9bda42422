"""Check a replayed book against LOBSTER's own book, row by row (the external oracle).

LOBSTER's orderbook file gives, for every event of its message file, the book after that event.
The LOBSTER -> ITCH converter maps each row to the sequence number of the ITCH message the row
became (``main_seq``); the state after that message is the last book record of the symbol whose
sequence number is at most ``main_seq`` (records are only written when the book changes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BookCheck", "check_level1", "LOBSTER_EMPTY_ASK", "LOBSTER_EMPTY_BID"]

#: LOBSTER's dummy prices for unoccupied levels (LOBSTER_SampleFiles_ReadMe.txt).
LOBSTER_EMPTY_ASK = 9_999_999_999
LOBSTER_EMPTY_BID = -9_999_999_999


@dataclass
class BookCheck:
    """Outcome of a row-by-row comparison.

    Attributes
    ----------
    rows : int
        LOBSTER rows compared.
    mismatches : int
        Rows whose best bid/offer (price and shares, both sides) differ.
    first_mismatch : dict or None
        Row index, sequence number, LOBSTER's and our level 1, for the first mismatching row.
    """

    rows: int
    mismatches: int
    first_mismatch: dict | None = None

    def as_dict(self) -> dict:
        return {"rows": self.rows, "mismatches": self.mismatches,
                "first_mismatch": self.first_mismatch}


def check_level1(records: np.ndarray, main_seq: np.ndarray, orderbook: np.ndarray,
                 *, stock_locate: int) -> BookCheck:
    """Compare level 1 of the book after each LOBSTER row with LOBSTER's orderbook.

    Parameters
    ----------
    records : np.ndarray of BOOK_RECORD_DTYPE, shape (m,)
        Book records of the replay, sorted by ``seq`` (any symbols).
    main_seq : np.ndarray of uint64, shape (n,)
        Sequence number of the ITCH message each LOBSTER row became.
    orderbook : np.ndarray, shape (n,) structured or (n, >=4) int64
        LOBSTER orderbook rows: ask price, ask size, bid price, bid size (level 1 first).
    stock_locate : int
        The symbol the LOBSTER files describe.

    Returns
    -------
    BookCheck

    Raises
    ------
    ValueError
        ``main_seq`` and ``orderbook`` have different lengths.
    """
    ob = _as_matrix(orderbook)
    main_seq = np.asarray(main_seq, dtype=np.uint64)
    if ob.shape[0] != main_seq.shape[0]:
        raise ValueError(f"{main_seq.shape[0]} LOBSTER messages but {ob.shape[0]} orderbook rows")
    rec = records[records["stock_locate"] == stock_locate]
    idx = np.searchsorted(rec["seq"], main_seq, side="right") - 1
    have = idx >= 0
    safe = np.where(have, idx, 0)
    ours = np.zeros((main_seq.shape[0], 4), np.int64)
    if rec.shape[0]:
        ours[:, 0] = rec["ask_price"][safe, 0]
        ours[:, 1] = rec["ask_shares"][safe, 0]
        ours[:, 2] = rec["bid_price"][safe, 0]
        ours[:, 3] = rec["bid_shares"][safe, 0]
    ours[~have] = 0
    theirs = ob[:, :4].copy()
    empty_ask = theirs[:, 0] >= LOBSTER_EMPTY_ASK
    empty_bid = theirs[:, 2] <= LOBSTER_EMPTY_BID
    theirs[empty_ask, 0:2] = 0
    theirs[empty_bid, 2:4] = 0
    bad = np.flatnonzero((ours != theirs).any(axis=1))
    first = None
    if bad.shape[0]:
        i = int(bad[0])
        names = ("ask_price", "ask_shares", "bid_price", "bid_shares")
        first = {"row": i, "seq": int(main_seq[i]),
                 "lobster": dict(zip(names, map(int, theirs[i]))),
                 "ours": dict(zip(names, map(int, ours[i])))}
    return BookCheck(int(main_seq.shape[0]), int(bad.shape[0]), first)


def _as_matrix(orderbook) -> np.ndarray:
    ob = np.asarray(orderbook)
    if ob.dtype.names:
        names = ob.dtype.names
        cols = []
        for n in names:
            col = ob[n]
            cols.append(col.reshape(col.shape[0], -1) if col.ndim > 1 else col[:, None])
        # structured with per-level arrays: interleave ask px, ask sz, bid px, bid sz level 1
        want = ("ask_price", "ask_size", "bid_price", "bid_size")
        if all(w in names for w in want):
            return np.stack([np.asarray(ob[w]).reshape(ob.shape[0], -1)[:, 0] for w in want],
                            axis=1).astype(np.int64)
        return np.concatenate(cols, axis=1).astype(np.int64)
    return ob.astype(np.int64)
