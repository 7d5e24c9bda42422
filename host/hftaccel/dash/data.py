"""The dashboard's data layer: a run folder read columnar and windowed, never whole.

A run folder is what ``hftaccel run --out DIR`` writes: ``summary.json``, ``book.parquet``
(one row per book update, :func:`hftaccel.backends.cpu.records_table`), ``signals.parquet``
(features, logits and decision of the same updates, row for row), ``orders.ouch`` (the Enter
Orders, SoupBinTCP framed) and, when routed, ``router.journal``. With ``--live`` the two
Parquet files are folders of part files instead (``book/part-000000.parquet``, ...; see
:mod:`hftaccel.dash.live`) that grow while the replay runs; :meth:`Run.refresh` picks up new
parts.

On opening, only the small per-row columns every panel needs are loaded (timestamp, sequence
number, stock locate of the book; intent, verdict and reason of the decisions: 21 bytes a
row). Everything else is read per window: only the row groups that hold the window's rows and
only the columns a panel draws (pyarrow), then cut to the rows. Nothing in this module raises
on a bad or missing file: each problem is recorded as a :class:`Problem` naming the file, and
the panels that need that file say so.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hftaccel.spec import ouch as ouch_spec
from hftaccel.spec.features import FEATURE_NAMES
from hftaccel.spec.risk import VERDICT_APPROVED

__all__ = ["Problem", "ParquetRows", "Run", "Window", "Latency", "Fills", "read_orders",
           "read_fills", "read_latency", "find_latency", "load_window", "WindowData",
           "FLOW_FEATURES", "LIVE_FILE"]

#: Status file of a live run (:mod:`hftaccel.dash.live`).
LIVE_FILE = "live.json"
#: Columns of the book every window needs besides the levels.
INDEX_COLUMNS = ("timestamp", "seq", "stock_locate")
#: Columns of the decisions kept in memory for the whole run.
DECISION_COLUMNS = ("intent", "verdict", "reason")


@dataclass(frozen=True)
class Problem:
    """Something wrong with one file of a run: shown in the page and printed on the console.

    Attributes
    ----------
    file : str
        The file (path as given).
    message : str
        What is wrong and what it costs (which panels cannot be drawn).
    """

    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


class ParquetRows:
    """Row-addressable, column-selective reads over one Parquet file or a folder of parts.

    Rows are numbered across the row groups of the file (or of the part files, in name
    order). Reads touch only the row groups that hold the requested rows and only the
    requested columns.

    Parameters
    ----------
    path : Path
        A ``.parquet`` file or a folder of ``part-*.parquet`` files.
    cache_bytes : int
        Decoded column chunks kept in memory (least recently used first out), bytes.

    Raises
    ------
    OSError, pyarrow.ArrowException
        The file (or a part) cannot be opened or is not Parquet; the message names it.
    """

    def __init__(self, path: Path, *, cache_bytes: int = 256 << 20):
        self.path = Path(path)
        self.cache_bytes = int(cache_bytes)
        self._files: list[pq.ParquetFile] = []
        self._names: list[str] = []
        self._pieces: list[tuple[int, int]] = []      # (file index, row group)
        self._starts = np.zeros(1, np.int64)          # first row of each piece, then num_rows
        self._stamp = None
        self._cache: OrderedDict = OrderedDict()
        self._cached = 0
        self.schema: pa.Schema | None = None
        self.refresh()

    @property
    def num_rows(self) -> int:
        """Rows in all pieces read so far."""
        return int(self._starts[-1])

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names) if self.schema is not None else []

    def _part_paths(self) -> list[Path]:
        return sorted(p for p in self.path.glob("part-*.parquet") if p.is_file())

    def _open(self, p: Path) -> None:
        try:
            pf = pq.ParquetFile(p)
        except (OSError, pa.ArrowException) as exc:
            raise type(exc)(f"{p}: not a readable Parquet file ({exc})") from exc
        if self.schema is None:
            self.schema = pf.schema_arrow
        elif not pf.schema_arrow.equals(self.schema):
            raise ValueError(f"{p}: columns differ from the first part's")
        k = len(self._files)
        self._files.append(pf)
        self._names.append(p.name)
        md = pf.metadata
        starts = [self.num_rows]
        for g in range(md.num_row_groups):
            self._pieces.append((k, g))
            starts.append(starts[-1] + md.row_group(g).num_rows)
        self._starts = np.r_[self._starts[:-1], starts].astype(np.int64)

    def refresh(self) -> bool:
        """Pick up new part files (folder), or reopen a file that changed on disk.

        Returns
        -------
        bool
            True when rows were added or the file was replaced.

        Raises
        ------
        OSError, pyarrow.ArrowException, ValueError
            A new part or the replaced file cannot be read (names the file).
        """
        if self.path.is_dir():
            new = [p for p in self._part_paths() if p.name not in set(self._names)]
            for p in new:
                self._open(p)
            return bool(new)
        st = self.path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return False
        self._files, self._names, self._pieces = [], [], []
        self._starts = np.zeros(1, np.int64)
        self._cache.clear()
        self._cached = 0
        self.schema = None
        self._open(self.path)
        self._stamp = stamp
        return True

    def _chunk(self, piece: int, column: str) -> np.ndarray:
        key = (piece, column)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        f, g = self._pieces[piece]
        col = self._files[f].read_row_group(g, columns=[column]).column(0)
        arr = col.to_numpy()
        self._cache[key] = arr
        self._cached += arr.nbytes
        while self._cached > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached -= old.nbytes
        return arr

    def clear_cache(self) -> None:
        """Forget every decoded column chunk (the next read goes to the file)."""
        self._cache.clear()
        self._cached = 0

    def _check(self, columns) -> None:
        missing = [c for c in columns if c not in self.columns]
        if missing:
            raise KeyError(f"{self.path}: no column {', '.join(missing)}")

    def read(self, columns, start: int = 0, stop: int | None = None) -> dict:
        """Columns of rows ``start:stop``.

        Returns
        -------
        dict[str, np.ndarray]
            One array per column, ``stop - start`` long.

        Raises
        ------
        KeyError
            A column the file does not have (the file is named).
        """
        stop = self.num_rows if stop is None else min(int(stop), self.num_rows)
        start = max(0, int(start))
        return self.take(columns, np.arange(start, max(start, stop), dtype=np.int64))

    def take(self, columns, rows: np.ndarray) -> dict:
        """Columns of the given rows.

        Parameters
        ----------
        columns : sequence of str
        rows : np.ndarray of int, shape (k,)
            Row numbers, sorted ascending, in ``[0, num_rows)``.

        Returns
        -------
        dict[str, np.ndarray]
            One array per column, ``k`` long.

        Raises
        ------
        KeyError
            A column the file does not have.
        IndexError
            A row out of range.
        """
        columns = list(columns)
        self._check(columns)
        rows = np.asarray(rows, np.int64)
        if rows.size and (rows[0] < 0 or rows[-1] >= self.num_rows):
            raise IndexError(f"{self.path}: rows {rows[0]}..{rows[-1]} outside "
                             f"0..{self.num_rows - 1}")
        piece = np.searchsorted(self._starts, rows, side="right") - 1
        bounds = np.flatnonzero(np.r_[True, piece[1:] != piece[:-1]]) if rows.size else []
        ends = list(bounds[1:]) + [rows.size]
        out = {c: [] for c in columns}
        for a, b in zip(bounds, ends):
            p = int(piece[a])
            local = rows[a:b] - self._starts[p]
            for c in columns:
                out[c].append(self._chunk(p, c)[local])
        return {c: (np.concatenate(v) if v else
                    pa.array([], self.schema.field(c).type).to_numpy(zero_copy_only=False))
                for c, v in out.items()}


def _levels(columns, side: str, what: str) -> list[str]:
    names = [c for c in columns if c.startswith(f"{side}_{what}_")]
    return sorted(names, key=lambda c: int(c.rsplit("_", 1)[1]))


# --------------------------------------------------------------------------- orders, fills


def read_orders(path: Path) -> np.ndarray:
    """Decode ``orders.ouch``: Enter Orders (OUCH 5.0 section 2.1, empty appendage) each inside
    a SoupBinTCP Unsequenced Data packet, as ``hftaccel run --out`` writes them.

    Returns
    -------
    np.ndarray
        Records of :data:`hftaccel.spec.ouch.ENTER_ORDER_WIRE_DTYPE` (big-endian fields;
        ``price`` in 1/10,000 USD).

    Raises
    ------
    OSError
        The file cannot be read.
    ValueError
        The file is not a whole number of such packets (the first bad packet's byte offset
        is named).
    """
    path = Path(path)
    data = path.read_bytes()
    n_payload = ouch_spec.ENTER_ORDER_LENGTH
    size = ouch_spec.SOUP_HEADER_SIZE + n_payload
    head = np.dtype({"names": ["length", "packet_type"], "formats": [">u2", "S1"],
                     "offsets": [0, 2], "itemsize": size})
    if len(data) % size:
        raise ValueError(f"{path}: {len(data)} bytes is not a whole number of {size}-byte "
                         "SoupBinTCP Unsequenced Data packets with one Enter Order each")
    h = np.frombuffer(data, head)
    body = np.frombuffer(data, np.dtype((np.void, size)))
    bad = np.flatnonzero((h["length"] != n_payload + 1) | (h["packet_type"] != b"U"))
    if bad.size:
        raise ValueError(f"{path} @ byte {int(bad[0]) * size}: not an Unsequenced Data packet "
                         f"of one {n_payload}-byte Enter Order")
    orders = np.frombuffer(body.tobytes(), np.dtype(
        {"names": list(ouch_spec.ENTER_ORDER_WIRE_DTYPE.names),
         "formats": [ouch_spec.ENTER_ORDER_WIRE_DTYPE.fields[n][0]
                     for n in ouch_spec.ENTER_ORDER_WIRE_DTYPE.names],
         "offsets": [ouch_spec.ENTER_ORDER_WIRE_DTYPE.fields[n][1] + ouch_spec.SOUP_HEADER_SIZE
                     for n in ouch_spec.ENTER_ORDER_WIRE_DTYPE.names],
         "itemsize": size}))
    bad = np.flatnonzero(orders["type"] != b"O")
    if bad.size:
        raise ValueError(f"{path} @ byte {int(bad[0]) * size}: message type "
                         f"{orders['type'][bad[0]]!r}, not an Enter Order (O)")
    return orders


@dataclass
class Fills:
    """Executions of a routed run, in journal order.

    Attributes
    ----------
    timestamp : np.ndarray of uint64
        Order Executed timestamp, ns since midnight (the venue simulator's market clock).
    stock_locate : np.ndarray of uint16
    side : np.ndarray of int8
        +1 buy, -1 sell (from the Enter Order of the UserRefNum).
    quantity : np.ndarray of int64
        Shares.
    price : np.ndarray of int64
        1/10,000 USD.
    broken : int
        Broken Trade messages seen (not applied here).
    """

    timestamp: np.ndarray
    stock_locate: np.ndarray
    side: np.ndarray
    quantity: np.ndarray
    price: np.ndarray
    broken: int = 0

    def position(self, locate: int) -> tuple:
        """Position (shares) and P&L (USD, cash plus the position marked at the fill price)
        after each fill of ``locate``: ``(timestamp, position, pnl_usd)`` arrays."""
        m = self.stock_locate == locate
        signed = self.side[m].astype(np.int64) * self.quantity[m]
        pos = np.cumsum(signed)
        cash = np.cumsum(-signed * self.price[m])
        return self.timestamp[m], pos, (cash + pos * self.price[m]) / 10_000


def read_fills(path: Path) -> Fills:
    """Executions from a router journal (:mod:`hftaccel.router.journal`).

    Every outbound Enter Order (kind ``O``) gives the side of its UserRefNum; every sequenced
    Order Executed (kind ``S``, OUCH 5.0 section 3.6) is one fill.

    Raises
    ------
    OSError
        The file cannot be read.
    hftaccel.router.journal.JournalError
        A corrupt journal (byte offset named).
    ValueError
        An execution of a UserRefNum the journal never sent.
    """
    from hftaccel.router.journal import Journal, read_journal

    records, _, _ = read_journal(path)
    enter = ouch_spec.wire_dtype("inbound", "O")
    executed = ouch_spec.wire_dtype("outbound", "E")
    sides: dict[int, tuple[int, int]] = {}
    rows, broken = [], 0
    for rec in records:
        if rec.kind == "O":
            msg, locate, _ = Journal.parse_outbound(rec.body)
            if msg[:1] == b"O" and len(msg) >= enter.itemsize:
                o = np.frombuffer(msg[:enter.itemsize], enter)[0]
                sides[int(o["user_ref_num"])] = (locate, 1 if o["side"] == b"B" else -1)
        elif rec.kind == "S":
            _, msg = Journal.parse_sequenced(rec.body)
            if msg[:1] == b"E" and len(msg) >= executed.itemsize:
                e = np.frombuffer(msg[:executed.itemsize], executed)[0]
                urn = int(e["user_ref_num"])
                if urn not in sides:
                    raise ValueError(f"{path} @ byte {rec.offset}: execution of UserRefNum "
                                     f"{urn}, which the journal never sent")
                loc, side = sides[urn]
                rows.append((int(e["timestamp"]), loc, side, int(e["quantity"]),
                             int(e["price"])))
            elif msg[:1] == b"B":
                broken += 1
    a = np.array(rows, np.int64).reshape(-1, 5)
    return Fills(a[:, 0].astype(np.uint64), a[:, 1].astype(np.uint16), a[:, 2].astype(np.int8),
                 a[:, 3], a[:, 4], broken)


# --------------------------------------------------------------------------- latency


@dataclass
class Latency:
    """Tick-to-trade distribution of the RTL pipeline as a report gives it.

    Attributes
    ----------
    source : str
        The file read (``build/sim/latency.json`` or an ``hftaccel profile`` ``report.json``).
    clock_mhz : float
        Clock the ns figures are at.
    nominal : bool
        The clock is a stated nominal one, not a build's fmax.
    ns : dict
        ``n``, ``min``, ``median``, ``max``, ``mean`` and whichever of ``p90``, ``p99``,
        ``p99_9`` the report has, ns.
    cycles : dict
        The same in clock cycles.
    """

    source: str
    clock_mhz: float
    nominal: bool
    ns: dict
    cycles: dict

    #: Quantile keys of the distributions and their probabilities.
    QUANTILES = (("min", 0.0), ("median", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99_9", 0.999),
                 ("max", 1.0))

    def quantiles(self) -> tuple:
        """``(ns, probability)`` arrays of the reported quantiles, ascending: the points the
        empirical CDF passes through (raw samples are not in the reports)."""
        pts = [(float(self.ns[k]), q) for k, q in self.QUANTILES if self.ns.get(k) is not None]
        x = np.array([p[0] for p in pts])
        y = np.array([p[1] for p in pts])
        return x, y


def read_latency(path: Path) -> Latency | None:
    """Tick-to-trade of ``build/sim/latency.json`` or of a ``hftaccel profile`` report.

    Returns
    -------
    Latency or None
        None when the report holds no measured RTL tick-to-trade (no order sent, or RTL not
        measured).

    Raises
    ------
    OSError
        The file cannot be read.
    ValueError
        Not JSON, or neither kind of report.
    """
    path = Path(path)
    rep = json.loads(path.read_text())
    if not isinstance(rep, dict):
        raise ValueError(f"{path}: not a latency report (a JSON object)")
    if "backends" in rep:                      # hftaccel profile report.json
        rtl = rep["backends"].get("rtl") or {}
        if not rtl.get("measured") or not rtl.get("tick_to_trade_cycles", {}).get("n"):
            return None
        clock = rep.get("clock") or {}
        mhz = float(clock["mhz"])
        cycles = rtl["tick_to_trade_cycles"]
        ns = rtl.get("tick_to_trade_ns") or {k: (v * 1e3 / mhz if k != "n" else v)
                                              for k, v in cycles.items()}
        return Latency(str(path), mhz, bool(clock.get("nominal")), ns, cycles)
    if "tick_to_trade_cycles" in rep and "clock_mhz" in rep:   # build/sim/latency.json
        cycles = rep["tick_to_trade_cycles"]
        if not cycles.get("n"):
            return None
        mhz = float(rep["clock_mhz"])
        ns = rep.get("tick_to_trade_ns") or {k: (v * 1e3 / mhz if k != "n" else v)
                                             for k, v in cycles.items()}
        return Latency(str(path), mhz, True, ns, cycles)
    raise ValueError(f"{path}: neither build/sim/latency.json nor an hftaccel profile "
                     "report.json (no tick_to_trade_cycles)")


def _repo_root() -> Path:
    up = Path(__file__).resolve().parents[3]
    return up if (up / "pyproject.toml").is_file() else Path.cwd()


def find_latency(run_dir: Path | None = None) -> list[Path]:
    """Latency reports that exist, newest first: the run folder's ``latency.json`` /
    ``report.json``, then ``build/profile/report.json`` and ``build/sim/latency.json`` of the
    current folder and of the source checkout."""
    cands = []
    if run_dir is not None:
        cands += [Path(run_dir) / "latency.json", Path(run_dir) / "report.json"]
    for root in dict.fromkeys([Path.cwd(), _repo_root()]):
        cands += [root / "build" / "profile" / "report.json", root / "build" / "sim" /
                  "latency.json"]
    have = [p for p in dict.fromkeys(c.resolve() for c in cands) if p.is_file()]
    return sorted(have, key=lambda p: p.stat().st_mtime, reverse=True)


# --------------------------------------------------------------------------- the run


@dataclass
class Window:
    """The rows of one symbol inside a time window.

    Attributes
    ----------
    t0, t1 : int
        Window, ns since midnight (``[t0, t1)``).
    rows : np.ndarray of int64
        Book (and signals) row numbers, in order.
    prev : int
        The symbol's last row before ``t0`` (its book state at ``t0``), or -1.
    """

    t0: int
    t1: int
    rows: np.ndarray
    prev: int = -1


class Run:
    """A run folder opened for the dashboard.

    Parameters
    ----------
    path : Path
        The folder ``hftaccel run --out`` (optionally ``--live``) wrote.
    latency : Path, optional
        Tick-to-trade report to show (default: the newest of :func:`find_latency`).
    cache_bytes : int
        Decoded column chunks kept per Parquet file, bytes.

    Attributes
    ----------
    problems : list[Problem]
        What is missing or unreadable, naming each file.
    summary : dict or None
        ``summary.json``.
    book, signals : ParquetRows or None
    timestamp, seq : np.ndarray of uint64
        Of every book row: ns since midnight, sequence number.
    stock_locate : np.ndarray of uint16
    intent, verdict, reason : np.ndarray of uint8 or None
        Of every decision read so far (row ``i`` is book row ``i``; a live run's signals may
        trail its book), None without signals.
    orders : np.ndarray or None
        ``orders.ouch`` (:func:`read_orders`), one per approved decision.
    order_rows : np.ndarray of int64 or None
        Book row of each order.
    fills : Fills or None
        Executions of a routed run (``router.journal``).
    latency : Latency or None
    live : dict or None
        ``live.json`` of a live run.
    sorted_time : bool
        Timestamps are non-decreasing over the rows (windows are then found by bisection).
    version : int
        Bumped whenever :meth:`refresh` finds new data.
    """

    def __init__(self, path, *, latency=None, cache_bytes: int = 256 << 20):
        self.path = Path(path)
        self.latency_path = Path(latency) if latency is not None else None
        self.cache_bytes = int(cache_bytes)
        self._problems: dict[str, Problem] = {}
        self._stamps: dict = {}
        self._by_locate: dict = {}
        self.version = 0
        self._reset()
        self._open()
        self._stamps = self._file_stamps()

    def _reset(self) -> None:
        self.summary = self.book = self.signals = self.live = None
        self.timestamp = np.zeros(0, np.uint64)
        self.seq = np.zeros(0, np.uint64)
        self.stock_locate = np.zeros(0, np.uint16)
        self.intent = self.verdict = self.reason = None
        self.orders = self.order_rows = self.fills = self.latency = None
        self.sorted_time = True
        self._by_locate = {}

    @property
    def problems(self) -> list[Problem]:
        return list(self._problems.values())

    # ------------------------------------------------------------------ opening

    def _problem(self, name: str, message: str | None) -> None:
        """Record (``message``) or clear (None) the problem of file ``name``."""
        key = str(self.path / name) if name else str(self.path)
        if message is None:
            self._problems.pop(key, None)
        else:
            self._problems[key] = Problem(key, message)

    @property
    def _in_progress(self) -> bool:
        return bool(self.live) and self.live.get("state") != "done"

    def _table_path(self, stem: str) -> Path | None:
        d, f = self.path / stem, self.path / f"{stem}.parquet"
        if f.is_file():
            return f
        if d.is_dir() and any(d.glob("part-*.parquet")):
            return d
        return None

    def _open(self) -> None:
        self._problems = {}
        if not self.path.is_dir():
            self._problem("", "no such folder: give a folder written by `hftaccel run --out "
                          "DIR`, or an input file to replay")
            return
        self._read_live()
        self._read_summary()
        self._open_book()
        self._open_signals()
        self._read_orders()
        self._read_fills()
        self._read_latency()

    def _read_live(self) -> None:
        p = self.path / LIVE_FILE
        self.live = None
        self._problem(LIVE_FILE, None)
        if p.is_file():
            try:
                self.live = json.loads(p.read_text())
            except (OSError, ValueError) as exc:
                self._problem(LIVE_FILE, f"unreadable ({_msg(exc)})")

    def _read_summary(self) -> None:
        p = self.path / "summary.json"
        self.summary = None
        self._problem("summary.json", None)
        if not p.is_file():
            if not self._in_progress:
                self._problem("summary.json", "missing: message counts, gaps, duplicates and "
                              "risk totals are not shown")
            return
        try:
            s = json.loads(p.read_text())
            if not isinstance(s, dict):
                raise ValueError("not a JSON object")
            self.summary = s
        except (OSError, ValueError) as exc:
            self._problem("summary.json", f"unreadable ({_msg(exc)}): message counts, gaps, "
                          "duplicates and risk totals are not shown")

    def _open_book(self) -> None:
        p = self._table_path("book")
        self.book = None
        self._problem("book.parquet", None)
        if p is None:
            if not self._in_progress:
                self._problem("book.parquet", "missing: no book, so no panel over time")
            return
        try:
            t = ParquetRows(p, cache_bytes=self.cache_bytes)
            t._check([*INDEX_COLUMNS, "bid_price_1", "ask_price_1", "bid_shares_1",
                      "ask_shares_1"])
            self.book = t
            self._load_index(0)
        except (OSError, pa.ArrowException, ValueError, KeyError) as exc:
            self.book = None
            self._problem("book.parquet", f"unreadable ({_msg(exc)}): no book, so no panel "
                          "over time")

    def _load_index(self, start: int) -> None:
        cols = self.book.read(INDEX_COLUMNS, start)
        ts = cols["timestamp"].astype(np.uint64)
        seq = cols["seq"].astype(np.uint64)
        loc = cols["stock_locate"].astype(np.uint16)
        if start:
            ts, seq, loc = (np.r_[self.timestamp, ts], np.r_[self.seq, seq],
                            np.r_[self.stock_locate, loc])
        self.timestamp, self.seq, self.stock_locate = ts, seq, loc
        t = ts.view(np.int64)
        self.sorted_time = bool(t.size < 2 or (t[1:] >= t[:-1]).all())
        self._by_locate = {}

    def _open_signals(self) -> None:
        p = self._table_path("signals")
        self.signals = None
        self.intent = self.verdict = self.reason = None
        self._problem("signals.parquet", None)
        if p is None:
            if not self._in_progress:
                self._problem("signals.parquet", "missing: no features, signals, orders or "
                              "risk rejections")
            return
        try:
            self.signals = ParquetRows(p, cache_bytes=self.cache_bytes)
            self.signals._check(["seq", *DECISION_COLUMNS, "price", *FEATURE_NAMES])
            self._load_decisions(0)
        except (OSError, pa.ArrowException, ValueError, KeyError) as exc:
            self.signals = None
            self.intent = self.verdict = self.reason = None
            self._problem("signals.parquet", f"unreadable ({_msg(exc)}): no features, signals, "
                          "orders or risk rejections")

    def _load_decisions(self, start: int) -> None:
        n = min(self.signals.num_rows, self.timestamp.shape[0])
        cols = self.signals.read(("seq", *DECISION_COLUMNS), start, n)
        bad = np.flatnonzero(cols["seq"] != self.seq[start:n])
        if bad.size:
            k = start + int(bad[0])
            raise ValueError(f"row {k} has seq {int(cols['seq'][bad[0]])} but the book's row "
                             f"{k} has seq {int(self.seq[k])}: the files are not of one run")
        new = [cols[c] for c in DECISION_COLUMNS]
        if start:
            new = [np.r_[old[:start], v] for old, v in zip((self.intent, self.verdict,
                                                            self.reason), new)]
        self.intent, self.verdict, self.reason = new

    def _read_orders(self) -> None:
        p = self.path / "orders.ouch"
        self.orders = self.order_rows = None
        self._problem("orders.ouch", None)
        if self.verdict is None:
            return
        approved = np.flatnonzero(self.verdict == VERDICT_APPROVED)
        if not p.is_file():
            if not self._in_progress:
                self._problem("orders.ouch", "missing: orders are drawn from the approved "
                              "decisions, symbols are shown by stock locate")
            return
        try:
            orders = read_orders(p)
        except (OSError, ValueError) as exc:
            self._problem("orders.ouch", f"unreadable ({_msg(exc)})")
            return
        if orders.shape[0] != approved.shape[0]:
            if not self._in_progress:
                self._problem("orders.ouch", f"{orders.shape[0]:,} orders but "
                              f"{approved.shape[0]:,} approved decisions in signals: not of "
                              "one run")
            return
        self.orders, self.order_rows = orders, approved

    def _read_fills(self) -> None:
        from hftaccel.router.journal import JournalError

        p = self.path / "router.journal"
        self.fills = None
        self._problem("router.journal", None)
        if p.is_file():
            try:
                self.fills = read_fills(p)
            except (OSError, ValueError, JournalError) as exc:
                self._problem("router.journal", f"unreadable ({_msg(exc)}): no fills")

    def _read_latency(self) -> None:
        self.latency = None
        paths = [self.latency_path] if self.latency_path else find_latency(self.path)
        for p in paths:
            try:
                self.latency = read_latency(p)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self._problems[str(p)] = Problem(str(p), f"unreadable latency report "
                                                 f"({_msg(exc)})")
                continue
            if self.latency is not None or self.latency_path:
                return

    # ------------------------------------------------------------------ following

    def _file_stamps(self) -> dict:
        out = {}
        for n in ("summary.json", LIVE_FILE, "orders.ouch", "router.journal", "book.parquet",
                  "signals.parquet", "book", "signals"):
            try:
                st = (self.path / n).stat()
                out[n] = (st.st_mtime_ns, st.st_size)
            except OSError:
                out[n] = None
        return out

    def refresh(self) -> bool:
        """Take in what a live run (or a rewrite of the folder) added since the last look.

        Part folders grow: new parts are read (index and decisions of the new rows only);
        the small files are read again. A single-file run that changed on disk is reopened.

        Returns
        -------
        bool
            True when something changed (:attr:`version` is then bumped); :attr:`problems`
            is updated either way.
        """
        stamps = self._file_stamps()
        changed = stamps != self._stamps
        self._stamps = stamps
        parts = self.book is not None and self.book.path.is_dir()
        if not parts:
            if not changed:
                return False
            self._reset()
            self._open()
            self.version += 1
            return True
        try:
            n0 = self.book.num_rows
            if self.book.refresh():
                self._load_index(n0)
                changed = True
            if self.signals is None:
                if self._table_path("signals") is not None:
                    self._open_signals()
                    changed = True
            else:
                self.signals.refresh()
                done = self.intent.shape[0]
                if min(self.signals.num_rows, self.timestamp.shape[0]) > done:
                    self._load_decisions(done)
                    changed = True
            self._problem("", None)
        except (OSError, pa.ArrowException, ValueError, KeyError) as exc:
            self._problem("", f"reading new parts: {_msg(exc)}")
            changed = True
        if changed:
            self._read_live()
            self._read_summary()
            self._read_orders()
            self._read_fills()
            self.version += 1
        return changed

    # ------------------------------------------------------------------ queries

    def span(self) -> tuple[int, int]:
        """``(first, last + 1)`` timestamp of the run, ns since midnight (``(0, 1)`` if
        empty)."""
        if self.timestamp.size == 0:
            return 0, 1
        ts = self.timestamp.view(np.int64)
        return int(ts.min()), int(ts.max()) + 1

    def symbols(self) -> list[tuple[int, str, int]]:
        """``(stock_locate, name, book rows)`` of every symbol, most active first. Names are
        those of the symbol's OUCH orders; a symbol without orders is ``locate N``."""
        locs, counts = np.unique(self.stock_locate, return_counts=True)
        names = {}
        if self.orders is not None and self.orders.shape[0]:
            ol = self.stock_locate[self.order_rows]
            u, first = np.unique(ol, return_index=True)
            for loc, i in zip(u, first):
                names[int(loc)] = self.orders["symbol"][i].decode("ascii", "replace").strip()
        order = np.argsort(-counts, kind="stable")
        return [(int(locs[i]), names.get(int(locs[i]), f"locate {int(locs[i])}"),
                 int(counts[i])) for i in order]

    def rows_of(self, locate: int) -> np.ndarray:
        """Row numbers of one symbol (int64, ascending)."""
        hit = self._by_locate.get(locate)
        if hit is None:
            hit = np.flatnonzero(self.stock_locate == locate).astype(np.int64)
            self._by_locate[locate] = hit
        return hit

    def window(self, locate: int | None, t0: int, t1: int) -> Window:
        """Rows of ``locate`` (every symbol when None) with ``t0 <= timestamp < t1``.

        Raises
        ------
        ValueError
            ``t1 <= t0``.
        """
        if t1 <= t0:
            raise ValueError(f"time window must have t1 > t0, got [{t0}, {t1}) ns")
        rows = self.rows_of(locate) if locate is not None else None
        ts = self.timestamp.view(np.int64)
        sub = ts[rows] if rows is not None else ts
        if self.sorted_time:
            a, b = np.searchsorted(sub, [t0, t1], side="left")
            sel = np.arange(a, b, dtype=np.int64)
            prev = int(a) - 1
        else:
            sel = np.flatnonzero((sub >= t0) & (sub < t1)).astype(np.int64)
            before = np.flatnonzero(sub < t0)
            prev = int(before[-1]) if before.size else -1
        if rows is not None:
            return Window(t0, t1, rows[sel], int(rows[prev]) if prev >= 0 else -1)
        return Window(t0, t1, sel, prev)

    def level_columns(self) -> tuple[list[str], list[str]]:
        """``(price columns, shares columns)`` of every level of both sides of ``book``."""
        cols = self.book.columns
        return (_levels(cols, "bid", "price") + _levels(cols, "ask", "price"),
                _levels(cols, "bid", "shares") + _levels(cols, "ask", "shares"))

    def clear_cache(self) -> None:
        """Forget the decoded column chunks and per-symbol row lists (the next read is cold)."""
        for t in (self.book, self.signals):
            if t is not None:
                t.clear_cache()
        self._by_locate = {}


@dataclass
class WindowData:
    """What the panels of one symbol draw for one time window, read from the run.

    Attributes
    ----------
    t0, t1 : int
        Window, ns since midnight.
    locate : int
        Stock locate of the symbol.
    rows : np.ndarray of int64
        Book rows of the symbol in the window.
    book : dict[str, np.ndarray]
        ``timestamp``, ``seq`` and every level price / shares column of those rows.
    prev : dict[str, np.ndarray] or None
        The same columns of the symbol's last row before ``t0`` (one row), or None.
    signals : dict[str, np.ndarray] or None
        Features (codes), ``intent``, ``verdict``, ``reason``, ``price`` of the rows that have
        been scored (the first ``len(signals["intent"])`` of ``rows``), or None.
    """

    t0: int
    t1: int
    locate: int
    rows: np.ndarray
    book: dict
    prev: dict | None
    signals: dict | None


#: Feature columns the order-flow panel draws.
FLOW_FEATURES = ("ofi_l1_k16", "ofi_l2_k16", "ofi_l3_k16", "ofi_l1_k64", "ofi_l2_k64",
                 "ofi_l3_k64", "imb_l1", "imb_depth", "intensity_buy", "intensity_sell")


def load_window(run: Run, locate: int, t0: int, t1: int) -> WindowData:
    """Read one symbol's window from ``run``: only its rows' row groups, only drawn columns.

    Raises
    ------
    ValueError
        ``t1 <= t0``, or the run has no readable book.
    KeyError, OSError, pyarrow.ArrowException
        A file changed under the reader (named in the message).
    """
    if run.book is None:
        raise ValueError(f"{run.path}: no readable book")
    w = run.window(locate, t0, t1)
    prices, shares = run.level_columns()
    cols = ["timestamp", "seq", *prices, *shares]
    book = run.book.take(cols, w.rows)
    prev = run.book.take(cols, np.array([w.prev])) if w.prev >= 0 else None
    signals = None
    if run.signals is not None and run.intent is not None:
        scored = w.rows[w.rows < run.intent.shape[0]]
        signals = run.signals.take([*FLOW_FEATURES, "price"], scored)
        for c in ("intent", "verdict", "reason"):
            signals[c] = getattr(run, c)[scored]
    return WindowData(t0, t1, locate, w.rows, book, prev, signals)


def _msg(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
