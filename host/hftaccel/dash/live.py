"""The run folder of ``hftaccel run --out DIR --live``: book and signals as growing part files.

A Parquet file cannot be read until its footer is written, so a live run does not grow one
file: it writes ``DIR/book/part-000000.parquet``, ``part-000001.parquet``, ... (one row group
each, ``rows_per_part`` rows) and the same under ``DIR/signals/`` (row for row the decisions of
the book rows). Each part is written under a temporary name and renamed into place, so a reader
(:class:`hftaccel.dash.data.ParquetRows`, pyarrow.dataset, DuckDB) only ever sees whole parts.
``DIR/live.json`` says how far the run is: ``state`` (``replaying``, ``writing``, ``routing``,
``done``), ``parts``, ``book_rows``, ``signals_rows``, ``updated_unix_s``.
``summary.json`` and ``orders.ouch`` are written when the run is done.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .data import LIVE_FILE

__all__ = ["LiveWriter", "STATES"]

#: Values of ``live.json``'s ``state``, in the order a run goes through them.
STATES = ("replaying", "writing", "routing", "done")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class LiveWriter:
    """Write a run folder's book and signals as part files while the run produces them.

    Parameters
    ----------
    out : Path
        The run folder (created). Outputs of an earlier run in it (``book.parquet``,
        ``signals.parquet``, ``summary.json``, ``orders.ouch``, ``router.journal``, old parts)
        are removed first, so that a reader never mixes two runs.
    rows_per_part : int
        Rows per part file (one row group each).

    Raises
    ------
    ValueError
        ``rows_per_part < 1``.
    OSError
        The folder cannot be written.
    """

    def __init__(self, out: Path, *, rows_per_part: int = 65_536):
        if rows_per_part < 1:
            raise ValueError(f"rows_per_part must be >= 1, got {rows_per_part!r}")
        self.out = Path(out)
        self.rows_per_part = int(rows_per_part)
        self.out.mkdir(parents=True, exist_ok=True)
        for name in ("book.parquet", "signals.parquet", "summary.json", "orders.ouch",
                     "router.journal"):
            (self.out / name).unlink(missing_ok=True)
        for stem in ("book", "signals"):
            d = self.out / stem
            d.mkdir(exist_ok=True)
            for p in d.glob("part-*.parquet"):
                p.unlink()
        self.parts = {"book": 0, "signals": 0}
        self.rows = {"book": 0, "signals": 0}
        self.state = None
        self.set_state("replaying")

    def set_state(self, state: str) -> None:
        """Record how far the run is in ``live.json``.

        Raises
        ------
        ValueError
            ``state`` is not one of :data:`STATES`.
        """
        if state not in STATES:
            raise ValueError(f"live state must be one of {STATES}, got {state!r}")
        self.state = state
        _atomic_write(self.out / LIVE_FILE, json.dumps({
            "state": state, "parts": self.parts["book"], "book_rows": self.rows["book"],
            "signals_rows": self.rows["signals"], "rows_per_part": self.rows_per_part,
            "updated_unix_s": time.time()}, indent=1).encode())

    def _part(self, stem: str, table: pa.Table) -> None:
        k = self.parts[stem]
        path = self.out / stem / f"part-{k:06d}.parquet"
        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(table, tmp, row_group_size=max(table.num_rows, 1))
        os.replace(tmp, path)
        self.parts[stem] = k + 1
        self.rows[stem] += table.num_rows

    def append(self, book: pa.Table | None = None, signals: pa.Table | None = None) -> None:
        """Append rows: each table is cut into parts of at most ``rows_per_part`` rows, each
        part renamed into place when whole; ``live.json`` is updated after them.

        Raises
        ------
        ValueError
            The signals would run ahead of the book (they describe book rows).
        """
        if signals is not None and self.rows["signals"] + signals.num_rows > \
                self.rows["book"] + (book.num_rows if book is not None else 0):
            raise ValueError("signals rows would run ahead of the book rows they describe")
        for stem, table in (("book", book), ("signals", signals)):
            if table is None:
                continue
            for a in range(0, table.num_rows, self.rows_per_part):
                self._part(stem, table.slice(a, self.rows_per_part))
        self.set_state(self.state if self.state != "replaying" else "writing")

    def finish(self, summary: dict, orders: bytes) -> None:
        """Write ``orders.ouch`` and ``summary.json``, then mark the run done."""
        _atomic_write(self.out / "orders.ouch", bytes(orders))
        _atomic_write(self.out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
        self.set_state("done")
