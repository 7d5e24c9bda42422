"""Check a replayed book against LOBSTER's own book, row by row (the external oracle).

LOBSTER's orderbook file gives, for every event of its message file, the book after that event.
The LOBSTER -> ITCH converter maps each row to the sequence number of the ITCH message the row
became (``main_seq``); the state after that message is the last book record of the symbol whose
sequence number is at most ``main_seq`` (records are only written when the book changes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hftaccel.feeds import lobster

__all__ = ["BookCheck", "check_level1"]


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
    mask : np.ndarray of bool, shape (rows,) or None
        True for every row that differs.
    """

    rows: int
    mismatches: int
    first_mismatch: dict | None = None
    mask: np.ndarray | None = None

    def as_dict(self) -> dict:
        return {"rows": self.rows, "mismatches": self.mismatches,
                "first_mismatch": self.first_mismatch}


def check_level1(records: np.ndarray, main_seq: np.ndarray, orderbook: np.ndarray,
                 *, stock_locate: int | None = None) -> BookCheck:
    """Compare level 1 of the book after each LOBSTER row with LOBSTER's orderbook.

    Parameters
    ----------
    records : np.ndarray of BOOK_RECORD_DTYPE, shape (m,)
        Book records of the replay, sorted by ``seq`` (any symbols).
    main_seq : np.ndarray of uint64, shape (n,)
        Sequence number of the ITCH message each LOBSTER row became (the converter's
        ``main_seq``, plus the first MoldUDP64 sequence number for a capture).
    orderbook : np.ndarray of :func:`hftaccel.feeds.lobster.orderbook_dtype`, shape (n,)
        LOBSTER's orderbook rows (empty levels as LOBSTER's dummy prices).
    stock_locate : int, optional
        The symbol the LOBSTER files describe; None when ``records`` hold that symbol only.

    Returns
    -------
    BookCheck
        ``mask`` (bool, shape (n,)) marks the rows that differ.

    Raises
    ------
    ValueError
        ``main_seq`` and ``orderbook`` have different lengths.
    """
    main_seq = np.asarray(main_seq, dtype=np.uint64)
    if len(orderbook) != main_seq.shape[0]:
        raise ValueError(f"{main_seq.shape[0]} LOBSTER messages but {len(orderbook)} "
                         "orderbook rows")
    rec = records if stock_locate is None else records[records["stock_locate"] == stock_locate]
    idx = np.searchsorted(rec["seq"], main_seq, side="right") - 1
    got = rec[np.clip(idx, 0, None)] if rec.shape[0] else None
    want = lobster.level1(orderbook)
    bad = np.zeros(main_seq.shape[0], bool)
    ours = {}
    for name, theirs in want.items():
        have = np.zeros(main_seq.shape[0], np.int64)
        if got is not None:
            have = np.where(idx >= 0, got[name][:, 0].astype(np.int64), 0)
        ours[name] = have
        bad |= have != theirs
    rows = np.flatnonzero(bad)
    first = None
    if rows.shape[0]:
        i = int(rows[0])
        first = {"row": i, "seq": int(main_seq[i]),
                 "lobster": {k: int(v[i]) for k, v in want.items()},
                 "ours": {k: int(v[i]) for k, v in ours.items()}}
    return BookCheck(int(main_seq.shape[0]), int(rows.shape[0]), first, bad)
