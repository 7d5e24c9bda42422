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

__all__ = ["BookCheck", "LevelCheck", "check_level1"]


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
    check = LevelCheck(main_seq, orderbook, stock_locate=stock_locate)
    check.update(records, None)
    return check.finish()


class LevelCheck:
    """:func:`check_level1` fed step by step: call :meth:`update` with each step's book
    records (in order), then :meth:`finish`. Holds the LOBSTER rows' level 1 and, between
    steps, only the last level 1 of the symbol.

    Parameters
    ----------
    main_seq, orderbook, stock_locate
        As :func:`check_level1` (``main_seq`` non-decreasing).

    Raises
    ------
    ValueError
        ``main_seq`` and ``orderbook`` have different lengths, or ``main_seq`` decreases.
    """

    def __init__(self, main_seq: np.ndarray, orderbook: np.ndarray, *,
                 stock_locate: int | None = None):
        self.main_seq = np.asarray(main_seq, dtype=np.uint64)
        if len(orderbook) != self.main_seq.shape[0]:
            raise ValueError(f"{self.main_seq.shape[0]} LOBSTER messages but {len(orderbook)} "
                             "orderbook rows")
        if self.main_seq.shape[0] > 1 and (np.diff(self.main_seq.astype(np.int64)) < 0).any():
            raise ValueError("main_seq must not decrease")
        self.stock_locate = stock_locate
        self.want = lobster.level1(orderbook)
        self.ours = {k: np.zeros(self.main_seq.shape[0], np.int64) for k in self.want}
        self.last = dict.fromkeys(self.want, 0)
        self.done = 0

    def _fill(self, upto: int, rec) -> None:
        rows = slice(self.done, upto)
        if rec is None or rec.shape[0] == 0:
            for k, v in self.last.items():
                self.ours[k][rows] = v
        else:
            idx = np.searchsorted(rec["seq"], self.main_seq[rows], side="right") - 1
            for k in self.want:
                col = rec[k][:, 0].astype(np.int64)
                self.ours[k][rows] = np.where(idx >= 0, col[np.clip(idx, 0, None)],
                                              self.last[k])
                self.last[k] = int(col[-1])
        self.done = upto

    def update(self, records: np.ndarray, upto_seq: int | None) -> None:
        """Check the rows whose ``main_seq`` is at most ``upto_seq`` (the last event of the
        step; None: every row) against the records seen so far plus ``records``."""
        rec = records if self.stock_locate is None else \
            records[records["stock_locate"] == self.stock_locate]
        upto = self.main_seq.shape[0] if upto_seq is None else int(
            np.searchsorted(self.main_seq, np.uint64(upto_seq), side="right"))
        self._fill(max(upto, self.done), rec)

    def finish(self) -> BookCheck:
        """The :class:`BookCheck` of every row (rows after the last record keep its level 1)."""
        self._fill(self.main_seq.shape[0], None)
        bad = np.zeros(self.main_seq.shape[0], bool)
        for name, theirs in self.want.items():
            bad |= self.ours[name] != theirs
        rows = np.flatnonzero(bad)
        first = None
        if rows.shape[0]:
            i = int(rows[0])
            first = {"row": i, "seq": int(self.main_seq[i]),
                     "lobster": {k: int(v[i]) for k, v in self.want.items()},
                     "ours": {k: int(v[i]) for k, v in self.ours.items()}}
        return BookCheck(int(self.main_seq.shape[0]), int(rows.shape[0]), first, bad)
