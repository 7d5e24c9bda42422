"""Run outputs written while the replay goes: Parquet one row group per step (zstd), OUCH bytes
appended, ``summary.json`` at the end (also after an interrupted run, marked incomplete).

``DIR/book.parquet`` holds the book records (``--records all``: every level; ``bbo``: level 1
only; ``none``: no file), ``DIR/signals.parquet`` the features, logits and decisions of every
book update, ``DIR/orders.ouch`` the OUCH 5.0 Enter Orders as SoupBinTCP packets. A file is
valid Parquet once :meth:`RunWriter.close` has written its footer, which happens on success,
on an error and on an interrupt.
"""

from __future__ import annotations

import json
from pathlib import Path

import numba
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["RECORDS_MODES", "STATISTICS_COLUMNS", "RunWriter", "records_table",
           "scoring_table"]

#: Values of ``hftaccel run --records``: which book record columns are written.
RECORDS_MODES = ("none", "bbo", "all")

#: Columns whose row-group min/max statistics the Parquet files carry (the others carry none).
STATISTICS_COLUMNS = ("timestamp", "seq", "stock_locate")


def _chars(col: np.ndarray) -> pa.Array:
    """ASCII code bytes (uint8) as one-character strings, 0 as the empty string (what
    ``col.view("S1").astype(str)`` gives), without a Python object per row."""
    col = np.ascontiguousarray(col, np.uint8)
    nz = col != 0
    offsets = np.zeros(col.shape[0] + 1, np.int32)
    np.cumsum(nz, out=offsets[1:])
    return pa.StringArray.from_buffers(col.shape[0], pa.py_buffer(offsets),
                                       pa.py_buffer(col[nz].tobytes()))


@numba.njit(cache=True, inline="always")
def _gather_block(src, idx, out, b0, b1):  # pragma: no cover - compiled
    """``out[j, b0:b1] = src[b0:b1, idx[j]]`` for every j."""
    for j in range(idx.shape[0]):
        c = idx[j]
        for i in range(b0, b1):
            out[j, i] = src[i, c]


@numba.njit(cache=True)
def _gather(src, idx, out):  # pragma: no cover - compiled
    """``out[j, i] = src[i, idx[j]]``: the columns ``idx`` of a row-major 2-D array, each
    made contiguous. Blocks of 256 rows: a block's rows stay in L1 while every column is read
    out of them (a strided copy per column reads every row once per column; one pass writing
    every column at each row scatters its stores)."""
    n = src.shape[0]
    for b0 in range(0, n, 256):
        _gather_block(src, idx, out, b0, min(n, b0 + 256))


@numba.njit(cache=True)
def _gather_fields(s8, i8, o8, s4, i4, o4, s2, i2, o2, s1, i1, o1):  # pragma: no cover
    """:func:`_gather` of four word-size views of one record array at once, 64 rows at a time,
    so that each row is read from memory once for all of its fields."""
    n = s1.shape[0]
    for b0 in range(0, n, 64):
        b1 = min(n, b0 + 64)
        _gather_block(s8, i8, o8, b0, b1)
        _gather_block(s4, i4, o4, b0, b1)
        _gather_block(s2, i2, o2, b0, b1)
        _gather_block(s1, i1, o1, b0, b1)


_WORDS = (np.uint64, np.uint32, np.uint16, np.uint8)


def _field_columns(arr: np.ndarray, wanted: list) -> dict:
    """Contiguous columns of a structured array, gathered in one pass over its rows.

    Parameters
    ----------
    arr : np.ndarray, structured, shape (n,)
        Every requested field's offset a multiple of its element size (1, 2, 4 or 8 bytes),
        and the item size a multiple of 8 bytes (true of the spec's record dtypes).
    wanted : list of (key, field, level)
        ``level`` None for a scalar field, else the index into its sub-array.

    Returns
    -------
    dict
        ``key -> np.ndarray`` of the field's element dtype, shape (n,), C-contiguous, in the
        order of ``wanted``.

    Raises
    ------
    ValueError
        A field is not aligned to its element size, or the item size is not a multiple of 8.
    """
    n, size = arr.shape[0], arr.dtype.itemsize
    if size % 8:
        raise ValueError(f"record size {size} bytes is not a multiple of 8")
    raw = np.ascontiguousarray(arr).view(np.uint8).reshape(n, size)
    groups = {w: [] for w in _WORDS}
    for key, name, level in wanted:
        dt, off = arr.dtype.fields[name][:2]
        base = dt.base if dt.subdtype is not None else dt
        off += 0 if level is None else level * base.itemsize
        word = _WORDS[(8, 4, 2, 1).index(base.itemsize)] if base.itemsize in (8, 4, 2, 1) \
            else None
        if word is None or off % base.itemsize:
            raise ValueError(f"field {name!r} at byte {off} is not aligned to its "
                             f"{base.itemsize}-byte elements")
        groups[word].append((key, off // base.itemsize, base))
    args, outs = [], {}
    for word, items in groups.items():
        out = np.empty((len(items), n), word)
        args += [raw.view(word), np.array([i for _, i, _ in items], np.int64), out]
        outs[word] = out
    _gather_fields(*args)
    cols = {key: outs[word][j].view(base)
            for word, items in groups.items() for j, (key, _, base) in enumerate(items)}
    return {key: cols[key] for key, _, _ in wanted}


def _matrix_columns(a: np.ndarray) -> list:
    """The columns of a 2-D array, each contiguous (one pass over the rows)."""
    a = np.ascontiguousarray(a)
    out = np.empty((a.shape[1], a.shape[0]), a.dtype)
    _gather(a, np.arange(a.shape[1], dtype=np.int64), out)
    return list(out)


def records_table(records: np.ndarray, levels: int | None = None) -> pa.Table:
    """Book records as a :class:`pyarrow.Table`, one column per field and level
    (``bid_price_1`` ... ``ask_orders_N``, level 1 = best).

    Parameters
    ----------
    records : np.ndarray of BOOK_RECORD_DTYPE, shape (n,)
    levels : int, optional
        Levels per side to write (default: all of the records').

    Returns
    -------
    pyarrow.Table
        Integer columns of the fields' dtypes; ``msg_type`` and ``side`` as one-character
        strings (the ASCII code; 0 as the empty string).
    """
    wanted = []
    for name in records.dtype.names:
        if name.startswith("_"):
            continue
        dt = records.dtype.fields[name][0]
        if dt.subdtype is not None:
            depth = dt.shape[0]
            wanted += [(f"{name}_{k + 1}", name, k)
                       for k in range(depth if levels is None else min(levels, depth))]
        else:
            wanted.append((name, name, None))
    cols = _field_columns(records, wanted)
    return pa.table({k: _chars(v) if k in ("msg_type", "side") else pa.array(v)
                     for k, v in cols.items()})


def scoring_table(records: np.ndarray, scoring) -> pa.Table:
    """Per-update features, logits and decisions as a :class:`pyarrow.Table` (``seq``,
    ``stock_locate``, one column per feature, ``logit_down/flat/up``, ``intent``,
    ``verdict``, ``reason``, ``price``, ``shares``, ``user_ref_num``).

    Parameters
    ----------
    records : np.ndarray of BOOK_RECORD_DTYPE, shape (n,)
    scoring : hftaccel.backends.cpu.Scoring
        Aligned with ``records``: features int32 (n, N_FEATURES), logits int32 (n, 3),
        decisions DECISION_DTYPE (n,).

    Returns
    -------
    pyarrow.Table
        Columns of the arrays' dtypes.
    """
    from hftaccel.spec.features import FEATURE_NAMES

    cols = _field_columns(records, [("seq", "seq", None), ("stock_locate", "stock_locate", None)])
    cols.update(zip(FEATURE_NAMES, _matrix_columns(scoring.features)))
    cols.update(zip(("logit_down", "logit_flat", "logit_up"),
                    _matrix_columns(scoring.logits)))
    cols.update(_field_columns(scoring.decisions, [
        (name, name, None) for name in ("intent", "verdict", "reason", "price", "shares",
                                        "user_ref_num")]))
    return pa.table({k: pa.array(v) for k, v in cols.items()})


class RunWriter:
    """The ``sink`` of :func:`hftaccel.backends.cpu.run` that writes a run folder.

    Parameters
    ----------
    out : Path
        Folder (created).
    records : str
        One of :data:`RECORDS_MODES`.
    live : hftaccel.dash.live.LiveWriter, optional
        Write the book and signals as part files through it instead (``--live``), a part
        per step, so that a dashboard following the folder sees the run as it goes.
    compression : str
        Parquet codec.
    depth : int
        Book levels of the records (the schema of an empty book file).

    Raises
    ------
    ValueError
        ``records`` is not one of :data:`RECORDS_MODES`.
    OSError
        The folder cannot be written.
    """

    def __init__(self, out: Path, *, records: str = "bbo", live=None,
                 compression: str = "zstd", depth: int = 8):
        if records not in RECORDS_MODES:
            raise ValueError(f"records must be one of {RECORDS_MODES}, got {records!r}")
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.records = records
        self.live = live
        self.compression = compression
        self.depth = depth
        self._writers = {}
        self.rows = 0
        if live is None:
            for name in ("book.parquet", "signals.parquet"):
                (self.out / name).unlink(missing_ok=True)
        self._ouch = open(self.out / ("orders.ouch.part" if live is not None else "orders.ouch"),
                          "wb")

    def _write(self, stem: str, table: pa.Table) -> None:
        w = self._writers.get(stem)
        if w is None:
            # no dictionary pages: the columns are numbers that rarely repeat, and building
            # the dictionaries costs more than zstd itself. Min/max statistics only on the
            # index columns: the writer keeps every row group's metadata until the footer,
            # ~0.8 KiB per column chunk with statistics and next to nothing without, so
            # statistics on every column would make memory grow with the day (~60 MiB per
            # 100M updates) while only the index columns are worth pruning on.
            stats = [c for c in STATISTICS_COLUMNS if c in table.schema.names]
            w = self._writers[stem] = pq.ParquetWriter(self.out / f"{stem}.parquet",
                                                       table.schema, use_dictionary=False,
                                                       compression=self.compression,
                                                       write_statistics=stats)
        w.write_table(table, row_group_size=max(table.num_rows, 1))

    def __call__(self, records: np.ndarray, scoring) -> None:
        """Append one step: its book records and their :class:`Scoring`."""
        if records.shape[0] == 0 and scoring.ouch == b"":
            return
        book = None
        if self.records != "none":
            book = records_table(records, 1 if self.records == "bbo" else None)
        signals = scoring_table(records, scoring)
        if self.live is not None:
            self.live.append(book, signals)
            self.live.set_state("replaying")
        else:
            if book is not None:
                self._write("book", book)
            self._write("signals", signals)
        self._ouch.write(scoring.ouch)
        self.rows += records.shape[0]

    def close(self) -> None:
        """Write the Parquet footers and flush the orders (idempotent)."""
        for w in self._writers.values():
            w.close()
        self._writers = {}
        if not self._ouch.closed:
            self._ouch.close()

    def finish(self, summary: dict) -> list[Path]:
        """Close the files and write ``summary.json``; returns the paths written."""
        if self.live is None:   # a run without book updates still leaves readable files
            from hftaccel.backends.cpu import Scoring, _concat_scoring
            from hftaccel.spec import book_record_dtype

            empty = np.zeros(0, book_record_dtype(self.depth))
            sc: Scoring = _concat_scoring([], None)
            if "book" not in self._writers and self.records != "none":
                self._write("book", records_table(empty, 1 if self.records == "bbo" else None))
            if "signals" not in self._writers:
                self._write("signals", scoring_table(empty, sc))
        self.close()
        if self.live is not None:
            data = (self.out / "orders.ouch.part").read_bytes()
            (self.out / "orders.ouch.part").unlink()
            self.live.finish(summary, data)
            names = ["summary.json", "book", "signals", "orders.ouch", "live.json"]
        else:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            names = ["summary.json", "book.parquet", "signals.parquet", "orders.ouch"]
            if self.records == "none":
                names.remove("book.parquet")
        return [self.out / n for n in names if (self.out / n).exists()]
