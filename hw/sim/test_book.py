"""cocotb testbench of ``hftaccel.rtl.book.OrderBook`` (order events -> book records).

Scoreboard: the golden book ``hftaccel.golden.book.Book(depth=N)`` over the events of the
subscribed locates: every record the DUT delivers must equal the golden record, field by field,
in order, and the DUT's ``bad_<kind>`` counters must equal the golden bad-reference counts.
Events of unsubscribed locates are sent to the DUT too and must only move ``unsubscribed``.
Streams stay within the DUT's capacities (order table ways, levels per side) except in
``test_capacity``, which checks the ``table_full`` and ``level_full`` counters.

The DUT's parameters come from the environment (``BOOK_PARAMS``, JSON keyword arguments of
:class:`~hftaccel.rtl.book.OrderBook`), set by ``tests/rtl/test_rtl_book.py``.
"""

from __future__ import annotations

import collections
import json
import os

import numpy as np

import cocotb

from hftaccel.rtl.book import OrderBook, order_row
from hftaccel.rtl.itch import DECODED_LAYOUT
from hftaccel.sim.common import TB, StreamSink, StreamSource, full_run, record_latency
from hftaccel.spec.book import BAD_REFERENCE_KINDS
from hftaccel.spec.itch import ORDER_EVENT_DTYPE

PARAMS = json.loads(os.environ.get("BOOK_PARAMS", "{}"))
DUT = OrderBook(**PARAMS)
LOCATES = [1, 2, 3, 4, 7, 9, 11, 13][:DUT.n_symbols]   # subscribed, symbol index order
UNSUB = 5                                              # a locate never subscribed
_FIELDS = [n for n in ORDER_EVENT_DTYPE.names if not n.startswith("_")]


class BookTB(TB):
    """Decoded messages in, records out (``record_layout``: the DUT's), the symbol table
    written through ``sym_*``; shared by the book benches."""

    def __init__(self, dut, *, idle=0.3, stall=0.3, record_layout=None):
        super().__init__(dut)
        self.src = StreamSource(self, "i", DECODED_LAYOUT, idle=idle)
        self.sink = StreamSink(self, "o", record_layout or DUT.record_layout, stall=stall)
        dut.sym_we.value = 0

    async def subscribe(self, locates):
        for k, loc in enumerate(locates):
            self.dut.sym_index.value = k
            self.dut.sym_locate.value = loc
            self.dut.sym_enable.value = 1
            self.dut.sym_we.value = 1
            await self.cycles(1)
        self.dut.sym_we.value = 0
        await self.cleared()

    async def cleared(self):
        """Wait until the tables are cleared after reset."""
        await self.cycles(DUT.rows + 2)

    def send(self, events):
        for e in events:
            self.src.send_nowait({n: int(e[n]) for n in _FIELDS})

    async def settle(self, timeout=1_000_000):
        await self.drain(self.src, timeout=timeout, tail=40, what="events")


def events(rows) -> np.ndarray:
    """ORDER_EVENT_DTYPE array from (type, ref, shares, price, locate, side, new_ref) tuples;
    seq and timestamp are numbered."""
    out = np.zeros(len(rows), ORDER_EVENT_DTYPE)
    for k, (t, ref, shares, price, loc, side, nref) in enumerate(rows):
        out[k] = (1000 + 7 * k, k + 1, ref, nref, shares, price, loc, ord(t),
                  ord(side) if isinstance(side, str) else side, 1, b"")
    return out


def _as_dict(rec) -> dict:
    return {n: (rec[n].tolist() if rec.dtype.fields[n][0].shape else int(rec[n]))
            for n in rec.dtype.names if not n.startswith("_")}


async def replay(tb: BookTB, evs: np.ndarray, golden_events: np.ndarray, depth: int):
    """Send ``evs`` through the DUT and ``golden_events`` through the golden book at
    ``depth``; returns (golden book, golden records, the DUT's records as dicts)."""
    from hftaccel.golden.book import Book
    tb.send(evs)
    await tb.settle()
    book = Book(depth=depth)
    gold = book.apply(golden_events)
    got = []
    while not tb.sink.empty():
        got.append(tb.sink.recv_nowait()[1])
    return book, gold, got


async def check(tb: BookTB, evs: np.ndarray, *, unsubscribed=0, table_full=0, level_full=0,
                golden_events=None):
    """Send ``evs``; compare every record with golden over the subscribed locates' events
    (or ``golden_events``) and every counter."""
    if golden_events is None:
        golden_events = evs[np.isin(evs["stock_locate"], LOCATES)]
    book, gold, got = await replay(tb, evs, golden_events, DUT.depth)
    for k, (g, r) in enumerate(zip(got, gold)):
        e = _as_dict(r)
        assert g == e, (f"record {k} (seq {e['seq']}, type {chr(e['msg_type'])}): "
                        f"DUT {g} golden {e}")
    assert len(got) == len(gold), f"{len(got)} records, golden {len(gold)}"
    for kind in BAD_REFERENCE_KINDS:
        assert tb.counter(f"bad_{kind}") == book.bad_references[kind], kind
    assert tb.counter("unsubscribed") == unsubscribed
    assert tb.counter("table_full") == table_full
    assert tb.counter("level_full") == level_full
    assert tb.counter("updates") == len(gold)
    assert tb.src.empty() and tb.sink.empty()
    return book


def hand_built_rows(locates, unsub) -> list:
    """The hand-built stream of ``test_hand_built`` as event tuples (see :func:`events`) for
    subscribed ``locates`` and a locate ``unsub`` never subscribed: every message type, bad
    references of every kind, 3 events of the unsubscribed locate and one non-book message."""
    a, b = locates[0], locates[-1]
    rows = [
        ("A", 1, 100, 1000000, a, "B", 0), ("A", 2, 200, 1000100, a, "S", 0),
        ("A", 3, 300, 999900, a, "B", 0), ("F", 4, 50, 1000000, a, "B", 0),
        ("A", 5, 70, 1000200, a, "S", 0), ("A", 6, 10, 1000100, a, "S", 0),
        ("A", 7, 5, 1000050, a, "B", 0), ("A", 8, 40, 999800, a, "B", 0),
        ("A", 9, 40, 999700, a, "B", 0), ("A", 10, 40, 999600, a, "B", 0),
        ("A", 20, 500, 2000000, b, "S", 0), ("A", 21, 600, 1999000, b, "B", 0),
        ("E", 1, 30, 0, a, 0, 0),                      # partial execution
        ("C", 2, 50, 1000150, a, 0, 0),                # execution with price
        ("X", 3, 100, 0, a, 0, 0),                     # partial cancel
        ("D", 4, 0, 0, a, 0, 0),                       # delete, level keeps order 1
        ("U", 5, 80, 1000050, a, 0, 11),               # replace, new price (new level)
        ("U", 11, 90, 1000050, a, 0, 11),              # replace in place
        ("P", 0, 25, 1000010, a, "B", 0),              # trade, non-cross
        ("P", 12345, 25, 1999500, b, "S", 0),          # P records carry reference 0
        ("E", 7, 5, 0, a, 0, 0),                       # execution removes the level
        ("D", 7, 0, 0, a, 0, 0),                       # ... and the order: unknown now
        ("X", 20, 600, 0, b, 0, 0),                    # over-execution
        ("E", 99, 1, 0, a, 0, 0),                      # unknown
        ("C", 98, 1, 5, a, 0, 0), ("X", 97, 1, 0, a, 0, 0), ("D", 96, 0, 0, a, 0, 0),
        ("U", 95, 10, 5, a, 0, 94),                    # unknown original
        ("U", 1, 0, 5, a, 0, 94),                      # zero shares
        ("U", 1, 10, 5, a, 0, 6),                      # duplicate new reference
        ("A", 6, 10, 5, a, "B", 0),                    # duplicate
        ("A", 30, 10, 5, a, "Z", 0),                   # bad side
        ("A", 31, 0, 5, a, "S", 0),                    # zero shares
        ("E", 21, 0, 0, b, 0, 0),                      # zero-share execution: no change
        ("A", 40, 10, 123, unsub, "B", 0), ("P", 0, 1, 1, unsub, "B", 0),
        ("D", 40, 0, 0, unsub, 0, 0),
        ("D", 1, 0, 0, a, 0, 0), ("D", 11, 0, 0, a, 0, 0), ("D", 6, 0, 0, a, 0, 0),
        ("D", 8, 0, 0, a, 0, 0), ("D", 9, 0, 0, a, 0, 0), ("D", 10, 0, 0, a, 0, 0),
        ("D", 21, 0, 0, b, 0, 0),
        ("S", 0, 0, 0, 0, 0, 0),                       # not a book message: counted "other"
    ]
    if len(locates) > 2:
        rows += [("A", 50 + k, 10 + k, 500000 + 100 * k, locates[1 + k % 2], "BS"[k % 2], 0)
                 for k in range(6)]
    return rows


@cocotb.test()
async def test_hand_built(dut):
    """Adds on both sides, partial E, C, X, D, U moving price and in place, P, several
    locates, bad references of every kind, an unsubscribed locate."""
    tb = BookTB(dut)
    await tb.reset()
    await tb.subscribe(LOCATES)
    rows = hand_built_rows(LOCATES, UNSUB)
    book = await check(tb, events(rows), unsubscribed=3)
    assert all(book.bad_references[k] for k in BAD_REFERENCE_KINDS), book.bad_references
    assert tb.counter("other") == 1


def capacity_limited(evs: np.ndarray) -> np.ndarray:
    """The longest prefix of a valid stream that stays within the DUT's order-table ways and
    levels per side (a Python model of both)."""
    orders = {}
    row_fill = collections.Counter()
    levels = collections.defaultdict(collections.Counter)   # (loc, side) -> price -> orders

    def add(ref, loc, side, price):
        r = order_row(ref, DUT.rows)
        lv = levels[(loc, side)]
        if row_fill[r] >= DUT.max_probe or (price not in lv and len(lv) >= DUT.levels):
            return False
        row_fill[r] += 1
        lv[price] += 1
        orders[ref] = (loc, side, price)
        return True

    def remove(ref):
        loc, side, price = orders.pop(ref)
        row_fill[order_row(ref, DUT.rows)] -= 1
        lv = levels[(loc, side)]
        lv[price] -= 1
        if not lv[price]:
            del lv[price]

    rem = {}
    for k, e in enumerate(evs):
        t, ref = chr(e["msg_type"]), int(e["order_ref"])
        if t in "AF":
            if ref in orders:
                continue
            if not add(ref, int(e["stock_locate"]), int(e["side"]), int(e["price"])):
                return evs[:k]
            rem[ref] = int(e["shares"])
        elif t in "ECX" and ref in orders:
            rem[ref] -= min(rem[ref], int(e["shares"]))
            if rem[ref] == 0:
                remove(ref)
        elif t == "D" and ref in orders:
            remove(ref)
        elif t == "U" and ref in orders:
            loc, side, _ = orders[ref]
            remove(ref)
            if not add(int(e["new_order_ref"]), loc, side, int(e["price"])):
                return evs[:k]
            rem[int(e["new_order_ref"])] = int(e["shares"])
    return evs


def synthetic_events(n: int, seed: int) -> np.ndarray:
    from hftaccel.feeds import itch, synthetic
    msgs = {}
    for chunk in synthetic.generate(n, n_symbols=len(LOCATES), seed=seed,
                                    max_live_orders=DUT.order_slots // 4):
        for t, arr in chunk.items():
            msgs[t] = arr if t not in msgs else np.concatenate([msgs[t], arr])
    evs = itch.order_events(msgs)
    return capacity_limited(evs)


@cocotb.test()
async def test_random_stream(dut):
    """A synthetic multi-symbol stream, record by record against golden, back-pressure on."""
    n = 20_000 if full_run() else 3_000
    evs = synthetic_events(n, seed=7)
    assert len(evs) > n // 2, f"only {len(evs)} of {n} events fit the DUT's capacities"
    tb = BookTB(dut)
    await tb.reset()
    await tb.subscribe(LOCATES)
    await check(tb, evs)


@cocotb.test()
async def test_throughput(dut):
    """No back-pressure: cycles between accepted events (the initiation interval) by type,
    and latency from acceptance to the record's first valid cycle."""
    evs = synthetic_events(600, seed=3)
    tb = BookTB(dut, idle=0.0, stall=0.0)
    await tb.reset()
    await tb.subscribe(LOCATES)
    await check(tb, evs)
    acc = tb.src.accepted
    ii = collections.defaultdict(list)
    for k in range(len(acc) - 1):
        ii[chr(evs["msg_type"][k])].append(acc[k + 1] - acc[k])
    summary = {t: (min(v), max(v)) for t, v in sorted(ii.items())}
    tb.dut._log.info("initiation interval (min, max) cycles by type: %s", summary)
    for t, (lo, hi) in summary.items():
        assert hi <= {"U": 5, "P": 2}.get(t, 3), (t, lo, hi)
    lat = [f - a for a, f in zip(acc, tb.sink.first_valid)]
    record_latency("book", lat)


@cocotb.test()
async def test_capacity(dut):
    """An add to a full order-table row and a new level on a full side are refused and
    counted (``table_full``, ``level_full``); the rest of the book stays exact."""
    tb = BookTB(dut)
    await tb.reset()
    await tb.subscribe(LOCATES)
    a = LOCATES[0]
    # max_probe + 1 references that share one row
    row = order_row(1, DUT.rows)
    refs = [r for r in range(1, 1 << 20) if order_row(r, DUT.rows) == row][:DUT.max_probe + 1]
    rows = [("A", r, 10, 1000000, a, "B", 0) for r in refs]
    refused = [len(rows) - 1]
    # levels + 1 distinct ask prices on one side
    base = max(refs) + 1
    lv_refs = []
    for k in range(DUT.levels + 1):
        ref = base + k
        while order_row(ref, DUT.rows) == row:
            ref += 10_000
        lv_refs.append(ref)
        rows.append(("A", ref, 5, 2000000 + 100 * k, a, "S", 0))
    refused.append(len(rows) - 1)
    rows += [("D", r, 0, 0, a, 0, 0) for r in refs[:2] + lv_refs[:3]]
    rows += [("A", 900_001, 7, 2000000 + 100 * DUT.levels, a, "S", 0)]
    evs = events(rows)
    keep = np.ones(len(evs), bool)
    keep[refused] = False
    await check(tb, evs, table_full=1, level_full=1, golden_events=evs[keep])
