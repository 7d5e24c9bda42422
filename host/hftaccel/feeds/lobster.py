"""LOBSTER message and orderbook files: loader, and conversion to a self-consistent ITCH 5.0 stream.

LOBSTER (Limit Order Book System - The Efficient Reconstructor, lobster.wiwi.hu-berlin.de)
publishes, per ticker and day, a *message* file (one event a row: time, type, order id, size,
price, direction) and an *orderbook* file (per event row, the book after it: ask price, ask size,
bid price, bid size for each requested level). Format: ``LOBSTER_SampleFiles_ReadMe.txt``
(01 Sept 2013), vendored in :mod:`hftaccel.data`.

A message file of ``L`` levels only holds the events that touch the first ``L`` price levels:
orders resting before the start time, or entering the top ``L`` levels from deeper ones, are
referenced without ever being added, and their shares appear in the orderbook file without an
event. :func:`to_itch` therefore synthesizes the missing Add Orders (and the cancels and deletes
that keep the book equal to LOBSTER's) so that the ITCH stream it writes references no unknown
order and replays LOBSTER's level-1 book exactly after every row; it reports what it
synthesized, by kind.
"""

from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from hftaccel.feeds import itch
from hftaccel.spec import itch as spec

__all__ = [
    "LobsterError",
    "MESSAGE_DTYPE",
    "MESSAGE_TYPES",
    "EMPTY_ASK_PRICE",
    "EMPTY_BID_PRICE",
    "SYNTH_KINDS",
    "FRAMING_TIMES_NS",
    "DEFAULT_DIRECTORY",
    "orderbook_dtype",
    "load_messages",
    "load_orderbook",
    "Conversion",
    "to_itch",
    "level1",
]

#: One LOBSTER message-file row. ``time_ns``: ns after midnight (parsed exactly from the decimal
#: seconds); ``type``: :data:`MESSAGE_TYPES`; ``order_id``: LOBSTER's order reference (0 for
#: hidden executions and halts); ``size``: shares; ``price``: 1/10,000 USD (-1/0/1 on halt rows);
#: ``direction``: 1 buy limit order, -1 sell limit order.
MESSAGE_DTYPE = np.dtype([("time_ns", "<u8"), ("type", "i1"), ("order_id", "<u8"),
                          ("size", "<u4"), ("price", "<i8"), ("direction", "i1")])

#: LOBSTER event types (ReadMe, "Message File", column 2).
MESSAGE_TYPES = {1: "submission", 2: "cancellation (partial)", 3: "deletion",
                 4: "execution of a visible order", 5: "execution of a hidden order",
                 7: "trading halt indicator"}

#: Dummy prices LOBSTER writes into unoccupied levels (their sizes are 0).
EMPTY_ASK_PRICE = 9_999_999_999
EMPTY_BID_PRICE = -9_999_999_999

#: Kinds of synthesized ITCH messages counted in :attr:`Conversion.synthesized`.
#: ``add_unknown_order``: Add Order for an order LOBSTER references but never adds (shares: all
#: the shares its rows reference over the day); ``add_hidden_depth``: filler Add Order for
#: shares the orderbook file shows at the best level without an event (a level revealed from
#: depth); ``cancel_fill`` / ``delete_fill``: Order Cancel / Delete of filler orders;
#: ``cancel_stale`` / ``delete_stale``: Order Cancel / Delete of the part of a LOBSTER order that
#: left the book while it rested deeper than level L (no row references those shares again).
SYNTH_KINDS = ("add_unknown_order", "add_hidden_depth", "cancel_fill", "delete_fill",
               "cancel_stale", "delete_stale")

_NS = 1_000_000_000
#: Timestamps (ns after midnight) of the framing messages: System Event 'O' start of messages,
#: 'S' start of system hours (the Stock Directory follows at the same time), 'Q' start of market
#: hours (the synthesized pre-open book is stamped with it), 'M' end of market hours, 'E' end of
#: system hours, 'C' end of messages (NASDAQ's 2012 schedule). A stream whose events lie outside
#: 09:30-16:00 moves 'Q' back to its first event and 'M', 'E', 'C' on past its last one.
FRAMING_TIMES_NS = {"O": 3 * 3600 * _NS, "S": 4 * 3600 * _NS, "Q": 34_200 * _NS,
                    "M": 57_600 * _NS, "E": 72_000 * _NS, "C": 72_300 * _NS}

#: Stock Directory fields of the converted stream (ITCH 5.0 section 4.2.1), those of AMZN in 2012:
#: NASDAQ Global Select, normal, round lots of 100, common stock, live, LULD tier 1.
DEFAULT_DIRECTORY = {
    "market_category": b"Q", "financial_status_indicator": b"N", "round_lot_size": 100,
    "round_lots_only": b"N", "issue_classification": b"C", "issue_sub_type": b"Z ",
    "authenticity": b"P", "short_sale_threshold_indicator": b"N", "ipo_flag": b"N",
    "luld_reference_price_tier": b"1", "etp_flag": b"N", "etp_leverage_factor": 0,
    "inverse_indicator": b"N",
}

_TRADING_STATE = {-1: b"H", 0: b"Q", 1: b"T"}   # halt row price -> ITCH 'H' trading state


class LobsterError(ValueError):
    """Malformed LOBSTER input. ``source`` names the file, ``line`` the 1-based line (0: none)."""

    def __init__(self, message: str, *, source: str, line: int = 0):
        where = f"{source}: line {line}: " if line else f"{source}: "
        super().__init__(where + message)
        self.source = source
        self.line = line


# ---------------------------------------------------------------------------------------------
# Loader
# ---------------------------------------------------------------------------------------------

def _read_bytes(path) -> tuple[str, bytes]:
    path = os.fspath(path)
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise LobsterError(f"bad gzip stream: {exc}", source=path) from exc
    return path, data


def _first_bad_line(data: bytes, kinds: list, source: str) -> LobsterError:
    """Walk the text line by line to name the first row pyarrow refused (error path only).

    ``kinds`` gives each column's expected content: ``"int"`` or ``"dec"`` (decimal seconds).
    """
    ncols = len(kinds)
    for lineno, raw in enumerate(data.decode("ascii", "replace").splitlines(), start=1):
        cells = raw.split(",")
        if len(cells) != ncols:
            return LobsterError(f"{len(cells)} columns, expected {ncols}: {raw[:80]!r}",
                                source=source, line=lineno)
        for k, (cell, kind) in enumerate(zip(cells, kinds)):
            text = cell.strip()
            if kind == "int" and not text.lstrip("-").isdigit():
                return LobsterError(f"column {k + 1}: {cell!r} is not an integer",
                                    source=source, line=lineno)
            if kind == "dec" and not _is_decimal(text):
                return LobsterError(f"column {k + 1}: {cell!r} is not seconds after midnight "
                                    "with at most 9 decimals", source=source, line=lineno)
    return LobsterError("unreadable CSV", source=source)


def _is_decimal(text: str) -> bool:
    whole, _, frac = text.partition(".")
    return whole.isdigit() and (frac == "" or frac.isdigit()) and len(frac) <= 9


def _line_of(data: bytes, row: int) -> int:
    """1-based line number of data row ``row`` (pyarrow skips blank lines; error path only)."""
    seen = -1
    for lineno, raw in enumerate(data.splitlines(), start=1):
        seen += bool(raw.strip())
        if seen == row:
            return lineno
    return row + 1


def _parse_times(col: np.ndarray, source: str, data: bytes) -> np.ndarray:
    """Exact ns after midnight from decimal-seconds strings ``S[.F]`` (at most 9 decimals)."""
    n = col.shape[0]
    width = max(int(col.dtype.itemsize), 1)
    b = col.view(np.uint8).reshape(n, width)
    length = (b != 0).sum(axis=1)
    dots = b == ord(".")
    digits = (b >= ord("0")) & (b <= ord("9"))
    has_dot = dots.any(axis=1)
    dot = np.where(has_dot, dots.argmax(axis=1), length)
    pos = np.arange(width)[None, :]
    inside = pos < length[:, None]
    ok = (digits | dots | ~inside).all(axis=1) & (dots.sum(axis=1) <= 1) & (dot >= 1)
    nfrac = np.where(has_dot, length - dot - 1, 0)
    ok &= (nfrac <= 9) & (dot <= 11)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise LobsterError(f"time {col[i].decode('ascii', 'replace')!r} is not seconds after "
                           "midnight with at most 9 decimals", source=source,
                           line=_line_of(data, i))
    d = np.where(digits, b.astype(np.int64) - ord("0"), 0)
    # Integer part: digit k (k < dot) has weight 10**(dot-1-k); fraction: digit at dot+j has
    # weight 10**(9-j) ns for j = 1..9.
    exp_int = np.where(pos < dot[:, None], dot[:, None] - 1 - pos, -1)
    exp_frac = np.where((pos > dot[:, None]) & inside, 9 - (pos - dot[:, None]), -1)
    p10 = 10 ** np.arange(12, dtype=np.int64)
    w_int = np.where(exp_int >= 0, p10[np.clip(exp_int, 0, 11)], 0)
    w_frac = np.where(exp_frac >= 0, p10[np.clip(exp_frac, 0, 11)], 0)
    seconds = (d * w_int).sum(axis=1)
    frac_ns = (d * w_frac).sum(axis=1)
    return (seconds.astype(np.uint64) * np.uint64(_NS) + frac_ns.astype(np.uint64))


def load_messages(path) -> np.ndarray:
    """Load a LOBSTER message file (plain or gzip, detected by its magic bytes).

    Parameters
    ----------
    path : str or os.PathLike
        ``TICKER_Date_Start_End_message_LEVEL.csv`` (or ``.csv.gz``): 6 columns, no header.

    Returns
    -------
    np.ndarray of :data:`MESSAGE_DTYPE`, shape (n_rows,)
        ``time_ns`` is parsed exactly from the decimal string (``34200.18960767`` ->
        34,200,189,607,670 ns): no float rounding.

    Raises
    ------
    LobsterError
        An empty file, a row with another number of columns, a non-numeric or empty cell, a
        time with more than 9 decimals, an unknown event type, a direction other than +-1, a
        size outside 0..2**32-1, or times going backwards; the text names the file and the
        1-based line.
    OSError
        The file cannot be read.
    """
    source, data = _read_bytes(path)
    if not data.strip():
        raise LobsterError("empty message file", source=source)
    names = ["time", "type", "order_id", "size", "price", "direction"]
    types = {"time": pa.binary(), "type": pa.int64(), "order_id": pa.int64(),
             "size": pa.int64(), "price": pa.int64(), "direction": pa.int64()}
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=names),
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise _first_bad_line(data, ["dec"] + ["int"] * 5, source) from exc
    n = table.num_rows
    out = np.zeros(n, dtype=MESSAGE_DTYPE)
    if n == 0:
        return out
    for k in names[1:]:
        if table.column(k).null_count:
            i = int(np.flatnonzero(table.column(k).is_null().to_numpy(zero_copy_only=False))[0])
            raise LobsterError(f"empty {k} cell", source=source, line=_line_of(data, i))
    cols = {k: table.column(k).to_numpy() for k in names[1:]}
    tcol = np.asarray(table.column("time").to_numpy(zero_copy_only=False), dtype=bytes)
    times = _parse_times(tcol, source, data)
    typ, oid, size, price, dirn = (cols["type"], cols["order_id"], cols["size"], cols["price"],
                                   cols["direction"])
    checks = [
        (~np.isin(typ, list(MESSAGE_TYPES)), lambda i: f"unknown event type {typ[i]} "
         f"(LOBSTER types are {sorted(MESSAGE_TYPES)})"),
        ((dirn != 1) & (dirn != -1), lambda i: f"direction {dirn[i]} is neither 1 nor -1"),
        ((size < 0) | (size > 0xFFFFFFFF), lambda i: f"size {size[i]} outside 0..2**32-1"),
        (oid < 0, lambda i: f"negative order id {oid[i]}"),
        (np.r_[False, times[1:] < times[:-1]], lambda i: "time goes backwards "
         f"({times[i]} ns after {times[i - 1]} ns on the line before)"),
    ]
    for bad, text in checks:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise LobsterError(text(i), source=source, line=_line_of(data, i))
    for name, col in zip(MESSAGE_DTYPE.names, (times, typ, oid, size, price, dirn)):
        out[name] = col
    return out


def orderbook_dtype(levels: int) -> np.dtype:
    """Record dtype of one orderbook-file row: ``ask_price``, ``ask_size``, ``bid_price``,
    ``bid_size``, each ``(levels,)`` int64 (prices in 1/10,000 USD, :data:`EMPTY_ASK_PRICE` /
    :data:`EMPTY_BID_PRICE` on unoccupied levels; sizes in shares)."""
    if not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be a positive integer, got {levels!r}")
    return np.dtype([(k, "<i8", (levels,)) for k in ("ask_price", "ask_size", "bid_price",
                                                      "bid_size")])


def load_orderbook(path, levels: int | None = None) -> np.ndarray:
    """Load a LOBSTER orderbook file (plain or gzip).

    Parameters
    ----------
    path : str or os.PathLike
        ``TICKER_Date_Start_End_orderbook_LEVEL.csv`` (or ``.csv.gz``): 4 x LEVEL integer columns
        per row (ask price, ask size, bid price, bid size for level 1, then level 2, ...).
    levels : int, optional
        Keep the first ``levels`` levels; all of them by default.

    Returns
    -------
    np.ndarray of :func:`orderbook_dtype` (levels), shape (n_rows,)
        Row ``i`` is the book after message row ``i``.

    Raises
    ------
    LobsterError
        A column count that is not a multiple of 4, rows of differing lengths, a non-integer
        cell, negative sizes, or fewer levels than ``levels``; names the file and line.
    """
    source, data = _read_bytes(path)
    first = data.split(b"\n", 1)[0].strip()
    if not first:
        raise LobsterError("empty orderbook file", source=source)
    ncols = first.count(b",") + 1
    if ncols % 4:
        raise LobsterError(f"{ncols} columns; an orderbook row has 4 per level", source=source,
                           line=1)
    file_levels = ncols // 4
    if levels is None:
        levels = file_levels
    if not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be a positive integer, got {levels!r}")
    if levels > file_levels:
        raise LobsterError(f"{levels} levels requested, the file has {file_levels}",
                           source=source)
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(autogenerate_column_names=True),
            convert_options=pacsv.ConvertOptions(
                column_types={f"f{k}": pa.int64() for k in range(ncols)}))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise _first_bad_line(data, ["int"] * ncols, source) from exc
    n = table.num_rows
    for k in range(ncols):
        if table.column(k).null_count:
            i = int(np.flatnonzero(table.column(k).is_null().to_numpy(zero_copy_only=False))[0])
            raise LobsterError(f"column {k + 1} is empty", source=source, line=_line_of(data, i))
    mat = np.empty((n, ncols), np.int64)
    for k in range(ncols):
        mat[:, k] = table.column(k).to_numpy()
    mat = mat.reshape(n, file_levels, 4)[:, :levels, :]
    sizes = mat[:, :, [1, 3]]
    if (sizes < 0).any():
        i = int(np.flatnonzero((sizes < 0).any(axis=(1, 2)))[0])
        raise LobsterError("negative size", source=source, line=_line_of(data, i))
    out = np.empty(n, dtype=orderbook_dtype(levels))
    for j, k in enumerate(("ask_price", "ask_size", "bid_price", "bid_size")):
        out[k] = mat[:, :, j]
    return out


# ---------------------------------------------------------------------------------------------
# Conversion to ITCH 5.0
# ---------------------------------------------------------------------------------------------

@dataclass
class Conversion:
    """The result of :func:`to_itch`.

    Attributes
    ----------
    messages : dict[str, np.ndarray]
        ITCH 5.0 messages dict (see :mod:`hftaccel.feeds.itch`): ``seq`` = 0..n-1 in stream
        order, ``offset`` 0 (synthesized), timestamps non-decreasing in ``seq``.
    main_seq : np.ndarray[uint64], shape (n_rows,)
        ``seq`` of the message each LOBSTER row became (A, X, D, E, P, or H for type 7).
    synthesized : dict[str, int]
        Synthesized order messages by kind (:data:`SYNTH_KINDS`) and their ``"total"``; the
        framing messages (System Events, Stock Directory) are not counted.
    order_ref_map : None
        LOBSTER order ids are kept as ITCH Order Reference Numbers (no renumbering); filler
        orders get numbers above the largest LOBSTER id.
    first_filler_ref : int
        The first Order Reference Number given to a filler order.
    unmatched_rows : int
        Rows after which the converter could not make its level-1 book equal the orderbook file
        (0 when it could; always 0 without an orderbook).
    """

    messages: dict
    main_seq: np.ndarray
    synthesized: dict = field(default_factory=dict)
    order_ref_map: dict | None = None
    first_filler_ref: int = 0
    unmatched_rows: int = 0


class _Tracker:
    """Minimal order/level book of one stock, with a journal of the messages synthesized.

    Orders: ref -> [side (+1 buy / -1 sell), price, remaining shares]; levels per side:
    price -> {ref: None} (insertion ordered) and price -> total shares. ``need[ref]`` is what the
    LOBSTER rows still to come will take from the order (its shares that must stay live).
    """

    def __init__(self, refs_total: dict, next_filler: int):
        self.orders = {}
        self.members = {1: {}, -1: {}}
        self.total = {1: {}, -1: {}}
        self.need = refs_total          # consumed in place as rows are applied
        self.fillers = set()
        self._best = {1: None, -1: None}  # cached best price per side (None: side empty)
        self.next_filler = next_filler
        self.journal = []               # (row, kind, mtype, ref, side, shares, price)

    # -- book operations --------------------------------------------------------------------
    def add(self, ref, side, price, shares):
        self.orders[ref] = [side, price, shares]
        self.members[side].setdefault(price, {})[ref] = None
        tot = self.total[side]
        tot[price] = tot.get(price, 0) + shares
        b = self._best[side]
        if b is None or (price > b if side == 1 else price < b):
            self._best[side] = price

    def take(self, ref, shares):
        """Remove ``shares`` (None: all) from ``ref``; return the shares removed."""
        o = self.orders[ref]
        side, price, rem = o
        shares = rem if shares is None or shares > rem else shares
        o[2] = rem - shares
        tot = self.total[side]
        tot[price] -= shares
        if o[2] == 0:
            del self.orders[ref]
            lvl = self.members[side][price]
            del lvl[ref]
            if not lvl:
                del self.members[side][price]
                del tot[price]
                if price == self._best[side]:
                    self._best[side] = None if not tot else max(tot) if side == 1 else min(tot)
        return shares

    def best(self, side):
        """Best price of ``side`` (highest bid, lowest ask), None when the side is empty."""
        return self._best[side]

    # -- synthesis --------------------------------------------------------------------------
    def add_filler(self, row, side, price, shares):
        ref = self.next_filler
        self.next_filler += 1
        self.fillers.add(ref)
        self.add(ref, side, price, shares)
        self.journal.append((row, "add_hidden_depth", "A", ref, side, shares, price))

    def remove_at(self, row, side, price, shares, keep):
        """Cancel up to ``shares`` (None: all that may go) at ``price``; fillers first, then
        the slack of LOBSTER orders. ``keep`` is never touched. Return the shares removed."""
        done = 0
        lvl = self.members[side].get(price)
        if not lvl:
            return 0
        for pass_fillers in (True, False):
            for ref in list(lvl):
                if shares is not None and done >= shares:
                    return done
                if ref == keep or (ref in self.fillers) != pass_fillers:
                    continue
                rem = self.orders[ref][2]
                slack = rem - (0 if pass_fillers else self.need.get(ref, 0))
                if slack <= 0:
                    continue
                want = slack if shares is None else min(slack, shares - done)
                whole = want == rem
                tag = "fill" if pass_fillers else "stale"
                if whole:
                    self.journal.append((row, "delete_" + tag, "D", ref, side, 0, price))
                else:
                    self.journal.append((row, "cancel_" + tag, "X", ref, side, want, price))
                self.take(ref, want)
                done += want
        return done

    def match(self, row, side, price, size, keep) -> bool:
        """Make this side's level 1 equal LOBSTER's (price, size); price None: side empty."""
        better = (lambda a, b: a > b) if side == 1 else (lambda a, b: a < b)
        for _ in range(64):
            bp = self.best(side)
            if price is None:
                if bp is None:
                    return True
                if self.remove_at(row, side, bp, None, keep) == 0:
                    return False
            elif bp is not None and better(bp, price):
                if self.remove_at(row, side, bp, None, keep) == 0:
                    return False
            elif bp == price:
                have = self.total[side][bp]
                if have == size:
                    return True
                if have < size:
                    self.add_filler(row, side, price, size - have)
                elif self.remove_at(row, side, price, have - size, keep) != have - size:
                    return False
            else:
                if size <= 0:
                    return False
                self.add_filler(row, side, price, size)
        return False


def _reference_totals(msgs: np.ndarray) -> dict:
    """Order id -> total shares the rows of types 2, 3 and 4 take from it over the file."""
    sel = np.isin(msgs["type"], (2, 3, 4))
    ids, inv = np.unique(msgs["order_id"][sel], return_inverse=True)
    tot = np.bincount(inv, weights=msgs["size"][sel].astype(np.float64),
                      minlength=ids.shape[0]).astype(np.int64)
    return dict(zip(ids.tolist(), tot.tolist()))


def _run(msgs: np.ndarray, book, next_filler: int):
    """The per-row synthesis loop. Returns the tracker (journal) and the unmatched-row count."""
    refs = _reference_totals(msgs)
    trk = _Tracker(dict(refs), next_filler)
    typ = msgs["type"].tolist()
    oid = msgs["order_id"].tolist()
    size = msgs["size"].tolist()
    price = msgs["price"].tolist()
    dirn = msgs["direction"].tolist()
    if book is not None:
        ap = book["ask_price"][:, 0].tolist()
        asz = book["ask_size"][:, 0].tolist()
        bp = book["bid_price"][:, 0].tolist()
        bsz = book["bid_size"][:, 0].tolist()
    unmatched = 0
    orders = trk.orders
    need = trk.need
    for i in range(len(typ)):
        t, ref = typ[i], oid[i]
        if t in (2, 3, 4):
            if ref not in orders:
                shares = need.get(ref, 0)
                trk.add(ref, dirn[i], price[i], shares)
                trk.journal.append((i, "add_unknown_order", "A", ref, dirn[i], shares, price[i]))
            need[ref] -= size[i]
            trk.take(ref, None if t == 3 else size[i])
        elif t == 1:
            trk.add(ref, dirn[i], price[i], size[i])
        if book is None:
            continue
        keep = ref if t in (1, 2, 3, 4) else -1
        ok = trk.match(i, -1, None if ap[i] >= EMPTY_ASK_PRICE else ap[i], asz[i], keep)
        ok &= trk.match(i, 1, None if bp[i] <= EMPTY_BID_PRICE else bp[i], bsz[i], keep)
        unmatched += not ok
    return trk, unmatched


def _stock_field(stock: str) -> bytes:
    raw = stock.encode("ascii")
    if not raw or len(raw) > 8:
        raise ValueError(f"stock symbol must be 1 to 8 ASCII characters, got {stock!r}")
    return raw.ljust(8)


def to_itch(messages: np.ndarray, orderbook: np.ndarray | None = None, *, stock: str = "AMZN",
            stock_locate: int = 1, tracking_number: int = 0,
            directory: dict | None = None) -> Conversion:
    """Convert LOBSTER rows to a self-consistent ITCH 5.0 message stream.

    Mapping (one ITCH message per row): type 1 submission -> A Add Order; 2 partial cancel ->
    X Order Cancel; 3 deletion -> D Order Delete; 4 visible execution -> E Order Executed;
    5 hidden execution -> P Trade (Non-Cross) with Order Reference Number 0; 7 halt indicator
    -> H Stock Trading Action (price -1: 'H' halted, 0: 'Q' quotation only, 1: 'T' trading).
    Side: direction 1 -> 'B', -1 -> 'S'. Match numbers of E and P count 1, 2, ... in stream
    order. Framing: S 'O', S 'S', R Stock Directory, the synthesized pre-open book, S 'Q', the
    events, S 'M', S 'E', S 'C' (times: :data:`FRAMING_TIMES_NS`). Timestamps are the LOBSTER
    times in ns; synthesized messages are placed just before the row they serve and carry its
    time (the pre-open book: the time of S 'Q').

    Synthesis (see :data:`SYNTH_KINDS`): before a row that references an order never added, an
    Add Order for it with all the shares its rows reference over the file. With ``orderbook``,
    after each row the converter's own level-1 book is compared with the orderbook row and
    repaired with messages placed before the row's message, so that the book after that
    message equals LOBSTER's: missing shares at LOBSTER's best price become a filler order;
    excess shares, or a better level LOBSTER does not show, are cancelled from filler orders
    first, then from shares of LOBSTER orders that no later row references. The order the row
    itself names is never touched.

    Parameters
    ----------
    messages : np.ndarray of :data:`MESSAGE_DTYPE`, shape (n_rows,)
        From :func:`load_messages`.
    orderbook : np.ndarray of :func:`orderbook_dtype`, shape (n_rows,), optional
        From :func:`load_orderbook` (level 1 is used). Without it only the unknown-order adds
        are synthesized (the stream is consistent, but deeper levels revealed by LOBSTER's book
        are not reproduced).
    stock : str
        Stock symbol (1-8 characters) for R, A, P and H messages.
    stock_locate, tracking_number : int
        Header fields of every message (0..65535).
    directory : dict, optional
        Overrides of the Stock Directory fields (:data:`DEFAULT_DIRECTORY`).

    Returns
    -------
    Conversion

    Raises
    ------
    ValueError
        ``messages`` has the wrong dtype, ``orderbook`` another number of rows, a header field
        is out of range, an order row has a price outside 1..2**32-1, or a submission reuses a
        live order id.
    """
    msgs = np.asarray(messages)
    if msgs.dtype != MESSAGE_DTYPE:
        raise ValueError(f"messages must have MESSAGE_DTYPE, got {msgs.dtype}")
    if orderbook is not None and len(orderbook) != len(msgs):
        raise ValueError(f"orderbook has {len(orderbook)} rows, messages {len(msgs)}")
    for name, v in (("stock_locate", stock_locate), ("tracking_number", tracking_number)):
        if not 0 <= int(v) <= 0xFFFF:
            raise ValueError(f"{name} must be in 0..65535, got {v!r}")
    stock_b = _stock_field(stock)
    typ = msgs["type"]
    is_order = typ != 7
    bad_px = is_order & ((msgs["price"] <= 0) | (msgs["price"] > 0xFFFFFFFF))
    if bad_px.any():
        i = int(np.flatnonzero(bad_px)[0])
        raise ValueError(f"row {i}: price {msgs['price'][i]} outside 1..2**32-1 (1/10,000 USD)")
    bad_halt = (typ == 7) & ~np.isin(msgs["price"], list(_TRADING_STATE))
    if bad_halt.any():
        i = int(np.flatnonzero(bad_halt)[0])
        raise ValueError(f"row {i}: halt indicator price {msgs['price'][i]} is not -1, 0 or 1")
    late = msgs["time_ns"] >= np.uint64(1 << 48)
    if late.any():
        i = int(np.flatnonzero(late)[0])
        raise ValueError(f"row {i}: time {msgs['time_ns'][i]} ns does not fit the 6-byte ITCH "
                         f"timestamp (< 2**48 ns after midnight)")
    add_rows = np.flatnonzero(typ == 1)
    adds = msgs["order_id"][add_rows]
    if np.unique(adds).shape[0] != adds.shape[0]:
        order = np.argsort(adds, kind="stable")
        dup = order[1:][adds[order][1:] == adds[order][:-1]]
        i = int(add_rows[dup.min()])
        raise ValueError(f"row {i}: LOBSTER order id {int(msgs['order_id'][i])} is submitted "
                         f"twice")

    n = msgs.shape[0]
    max_id = int(msgs["order_id"].max()) if n else 0
    first_filler = max_id + 1
    trk, unmatched = _run(msgs, orderbook, first_filler)
    # An id submitted (type 1) after a row already referenced it would be added twice.
    first_ref = {}
    for e in trk.journal:
        if e[1] == "add_unknown_order":
            first_ref[e[3]] = e[0]
    if first_ref and adds.shape[0]:
        sub_rows = np.flatnonzero(typ == 1)
        late = [int(r) for r, o in zip(sub_rows, adds.tolist()) if o in first_ref]
        if late:
            raise ValueError(f"row {late[0]}: order id {int(msgs['order_id'][late[0]])} is "
                             "submitted after a row already referenced it")

    # ---- stream layout ------------------------------------------------------------------
    j = trk.journal
    nj = len(j)
    syn_row = np.fromiter((e[0] for e in j), np.int64, nj)
    nfix = np.bincount(syn_row, minlength=n) if n else np.zeros(0, np.int64)
    cum_incl = np.cumsum(nfix)
    cum_excl = cum_incl - nfix
    rows = np.arange(n, dtype=np.int64)
    pre = 3                                             # S 'O', S 'S', R
    main_seq = pre + 1 + cum_incl + rows                # S 'Q' sits after the pre-open book
    # Synthesized message k of row r: seq = pre + (r > 0) + cum_excl[r] + r + k.
    if nj:
        k_in_row = np.arange(nj) - cum_excl[syn_row]
        syn_seq = pre + (syn_row > 0) + cum_excl[syn_row] + syn_row + k_in_row
    else:
        syn_seq = np.zeros(0, np.int64)
    n0 = int(nfix[0]) if n else 0
    q_seq = pre + n0
    end_seq = pre + 1 + n + nj                           # S 'M'

    times = msgs["time_ns"].astype(np.uint64)
    ft = {k: np.uint64(v) for k, v in FRAMING_TIMES_NS.items()}
    if n:
        ft["Q"] = min(ft["Q"], times[0])
        ft["S"] = min(ft["S"], ft["Q"])
        ft["O"] = min(ft["O"], ft["S"])
        ft["M"] = max(ft["M"], times[-1])
        ft["E"] = max(ft["E"], ft["M"])
        ft["C"] = max(ft["C"], ft["E"])
    syn_time = np.where(syn_row > 0, times[syn_row] if n else 0, ft["Q"]).astype(np.uint64)

    out: dict = {}

    def put(mtype, seqs, ts):
        arr = itch.empty(mtype, len(seqs))
        arr["seq"] = seqs
        arr["timestamp"] = ts
        arr["stock_locate"] = stock_locate
        arr["tracking_number"] = tracking_number
        if "stock" in arr.dtype.names:
            arr["stock"] = stock_b
        out.setdefault(mtype, []).append(arr)
        return arr

    sys_codes = [("O", 0), ("S", 1), ("Q", q_seq), ("M", end_seq), ("E", end_seq + 1),
                 ("C", end_seq + 2)]
    s = put("S", [q for _, q in sys_codes], [ft[c] for c, _ in sys_codes])
    s["event_code"] = [c.encode() for c, _ in sys_codes]
    s["stock_locate"] = 0                              # system events carry locate 0
    r = put("R", [2], [ft["S"]])
    for k, v in {**DEFAULT_DIRECTORY, **(directory or {})}.items():
        r[k] = v

    side_code = np.where(msgs["direction"] == 1, spec.SIDE_BUY, spec.SIDE_SELL).astype(np.uint8)
    match = np.cumsum(np.isin(typ, (4, 5)))
    for t, mtype in ((1, "A"), (2, "X"), (3, "D"), (4, "E"), (5, "P"), (7, "H")):
        sel = np.flatnonzero(typ == t)
        if not sel.shape[0]:
            continue
        a = put(mtype, main_seq[sel], times[sel])
        if mtype in "AXDE":
            a["order_ref"] = msgs["order_id"][sel]
        if mtype in "AP":
            a["side"] = side_code[sel].view("S1")
            a["shares"] = msgs["size"][sel]
            a["price"] = msgs["price"][sel]
        if mtype == "X":
            a["cancelled_shares"] = msgs["size"][sel]
        if mtype == "E":
            a["executed_shares"] = msgs["size"][sel]
        if mtype in "EP":
            a["match_number"] = match[sel]
        if mtype == "H":
            a["trading_state"] = [_TRADING_STATE[int(p)] for p in msgs["price"][sel]]

    if nj:
        jt = np.array([e[2] for e in j])
        ref = np.fromiter((e[3] for e in j), np.uint64, nj)
        jside = np.fromiter((e[4] for e in j), np.int64, nj)
        jsh = np.fromiter((e[5] for e in j), np.int64, nj)
        jpx = np.fromiter((e[6] for e in j), np.int64, nj)
        for mtype in "AXD":
            sel = np.flatnonzero(jt == mtype)
            if not sel.shape[0]:
                continue
            a = put(mtype, syn_seq[sel], syn_time[sel])
            a["order_ref"] = ref[sel]
            if mtype == "A":
                a["side"] = np.where(jside[sel] == 1, spec.SIDE_BUY,
                                     spec.SIDE_SELL).astype(np.uint8).view("S1")
                a["shares"] = jsh[sel]
                a["price"] = jpx[sel]
            elif mtype == "X":
                a["cancelled_shares"] = jsh[sel]

    merged = {}
    for mtype, parts in out.items():
        arr = np.concatenate(parts)
        merged[mtype] = arr[np.argsort(arr["seq"], kind="stable")]
    counts = dict.fromkeys(SYNTH_KINDS, 0)
    for e in j:
        counts[e[1]] += 1
    counts["total"] = nj
    return Conversion(messages=merged, main_seq=main_seq.astype(np.uint64), synthesized=counts,
                      order_ref_map=None, first_filler_ref=first_filler,
                      unmatched_rows=int(unmatched))


# ---------------------------------------------------------------------------------------------
# Checking a replay against LOBSTER's book
# ---------------------------------------------------------------------------------------------

def level1(orderbook: np.ndarray) -> dict:
    """Level 1 of an orderbook file in book-record conventions (an empty side is price 0,
    size 0, as in :func:`hftaccel.spec.book.book_record_dtype`).

    Returns
    -------
    dict of np.ndarray[int64], shape (n_rows,)
        ``bid_price``, ``bid_shares``, ``ask_price``, ``ask_shares`` (1/10,000 USD, shares).
    """
    bp = orderbook["bid_price"][:, 0]
    ap = orderbook["ask_price"][:, 0]
    bid_empty = bp <= EMPTY_BID_PRICE
    ask_empty = ap >= EMPTY_ASK_PRICE
    return {"bid_price": np.where(bid_empty, 0, bp),
            "bid_shares": np.where(bid_empty, 0, orderbook["bid_size"][:, 0]),
            "ask_price": np.where(ask_empty, 0, ap),
            "ask_shares": np.where(ask_empty, 0, orderbook["ask_size"][:, 0])}
