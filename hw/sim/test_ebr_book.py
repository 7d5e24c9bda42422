"""cocotb testbench of ``hftaccel.rtl.ebr_book.EbrBook`` (order events -> book records).

Scoreboard: the golden book ``hftaccel.golden.book.Book(depth=N)`` over the events of the
subscribed locates: every record the DUT delivers must equal the golden record, field by field,
in order, and the DUT's ``bad_<kind>`` counters must equal the golden bad-reference counts.
Events of unsubscribed locates are sent too and must only move ``unsubscribed``. Streams stay
within the DUT's capacities (order and level table rows, window depth: ``short`` stays 0)
except in the capacity tests.

The DUT's parameters come from the environment (``EBR_BOOK_PARAMS``, JSON keyword arguments of
:class:`~hftaccel.rtl.ebr_book.EbrBook`), set by ``tests/rtl/test_rtl_ebr_book.py``.
"""

from __future__ import annotations

import collections
import json
import os

import numpy as np

import cocotb

from hftaccel.rtl.ebr_book import EbrBook
from hftaccel.rtl.level_table import level_row
from hftaccel.rtl.order_table import order_row
from hftaccel.sim.common import full_run, record_latency
from hftaccel.sim.test_book import BookTB, _as_dict, events, hand_built_rows, replay
from hftaccel.spec.book import BAD_REFERENCE_KINDS

PARAMS = json.loads(os.environ.get("EBR_BOOK_PARAMS", "{}"))
DUT = EbrBook(**PARAMS)
# subscribed (slot order): the synthetic generator's locates 1..n
LOCATES = list(range(1, min(DUT.slots, 8) + 1))
UNSUB = len(LOCATES) + 3                               # a locate never subscribed


class EbrBookTB(BookTB):
    def __init__(self, dut, *, idle=0.3, stall=0.3):
        super().__init__(dut, idle=idle, stall=stall, record_layout=DUT.record_layout)
        dut.degraded_index.value = 0

    async def cleared(self):
        for _ in range(1 << 16):
            if not int(self.dut.clearing.value):
                return
            await self.cycles(1)
        raise AssertionError("the tables never finished clearing")

    async def settle(self, timeout=2_000_000):
        await self.drain(self.src, timeout=timeout, tail=80, what="events")


async def check(tb: EbrBookTB, evs: np.ndarray, *, unsubscribed=0, table_full=0,
                level_full=0, golden_events=None, what="stream", max_short=0.0):
    """Send ``evs``; compare every record with golden over the subscribed locates' events
    (or ``golden_events``) and every counter. At most ``max_short`` of the records may be
    ``short`` (a window that lost more levels than its slack before its refill arrived: the
    DUT flags and counts them); those are left out of the comparison, every other record must
    equal golden's. Returns the golden book."""
    if golden_events is None:
        golden_events = evs[np.isin(evs["stock_locate"], LOCATES)]
    book, gold, got = await replay(tb, evs, golden_events, DUT.depth)
    bad = [k for k, (g, r) in enumerate(zip(got, gold)) if g != _as_dict(r)]
    shorts = tb.counter("short")
    tb.dut._log.info("%s: %d records, %d short, refills %d, stale %d, missed %d", what,
                     len(got), shorts, tb.counter("refill"), tb.counter("refill_stale"),
                     tb.counter("refill_miss"))
    assert len(bad) <= shorts <= max_short * len(gold), \
        (f"{what}: {tb.counter('short')} short records, {len(bad)} of {len(gold)} records "
         f"differ (first {bad[:5]}); refills {tb.counter('refill')}, stale "
         f"{tb.counter('refill_stale')}, missed {tb.counter('refill_miss')}; level_full "
         f"{tb.counter('level_full')}, level_unknown {tb.counter('level_unknown')}, table_full "
         f"{tb.counter('table_full')}" + (f"; record {bad[0]}: DUT {got[bad[0]]} golden "
                                         f"{_as_dict(gold[bad[0]])}" if bad else ""))
    if shorts:
        # the records that differ are the short ones: the DUT knows which records are inexact
        short_ok = [k for k in bad if _is_short(got[k], gold[k])]
        assert short_ok == bad, f"{what}: records differ that are not short: " \
            f"{sorted(set(bad) - set(short_ok))[:5]}"
    else:
        for k, (g, r) in enumerate(zip(got, gold)):
            e = _as_dict(r)
            assert g == e, (f"{what}: record {k} (seq {e['seq']}, type {chr(e['msg_type'])}): "
                            f"DUT {g} golden {e}")
    assert len(got) == len(gold), f"{what}: {len(got)} records, golden {len(gold)}"
    for kind in BAD_REFERENCE_KINDS:
        assert tb.counter(f"bad_{kind}") == book.bad_references[kind], \
            (kind, tb.counter(f"bad_{kind}"), book.bad_references[kind])
    assert tb.counter("unsubscribed") == unsubscribed
    assert tb.counter("table_full") == table_full
    assert tb.counter("level_full") == level_full
    assert tb.counter("level_unknown") == 0
    assert tb.counter("ref_range") == 0
    assert tb.counter("updates") == len(gold)
    assert tb.src.empty() and tb.sink.empty()
    if not (table_full or level_full):
        assert tb.counter("live_orders") == book.live_orders
        assert tb.counter("live_levels") == book.price_levels
    return book


def _is_short(got: dict, gold) -> bool:
    """Whether a DUT record can be short against its golden record: one of its sides holds
    fewer levels than golden's, and the levels it holds are golden's first ones."""
    g = _as_dict(gold)
    for side in ("bid", "ask"):
        n = sum(1 for o in got[f"{side}_orders"] if o)
        m = sum(1 for o in g[f"{side}_orders"] if o)
        if n > m or any(got[f"{side}_{f}"][:n] != g[f"{side}_{f}"][:n]
                        for f in ("price", "shares", "orders")):
            return False
    head = [k for k in g if not k.startswith(("bid_", "ask_"))]
    return all(got[k] == g[k] for k in head) and got != g


@cocotb.test()
async def test_hand_built(dut):
    """Every message type, U moving price, in place and onto its own reference, P, several
    locates, bad references of every kind, an unsubscribed locate."""
    tb = EbrBookTB(dut)
    await tb.reset()
    await tb.subscribe(LOCATES)
    rows = hand_built_rows(LOCATES, UNSUB)
    book = await check(tb, events(rows), unsubscribed=3, what="hand built")
    assert all(book.bad_references[k] for k in BAD_REFERENCE_KINDS), book.bad_references
    assert tb.counter("other") == 1


def _same_row_refs(n, start=1):
    """``n`` references sharing the order table row of ``start``."""
    row = order_row(start, DUT.order_rows, DUT.ref_bits)
    return [r for r in range(start, start + (n + 2) * DUT.order_rows * 4)
            if order_row(r, DUT.order_rows, DUT.ref_bits) == row][:n]


@cocotb.test()
async def test_hazards(dut):
    """Back to back on consecutive cycles (no idle, no stall): E then D of one order, A then
    D, U chains (U of a U of a U), U onto its own reference, two orders in one order table
    row, one price level touched by two symbols and by both sides, a visible level emptying
    while the next one is created."""
    tb = EbrBookTB(dut, idle=0.0, stall=0.0)
    await tb.reset()
    await tb.subscribe(LOCATES)
    a, b = LOCATES[0], LOCATES[1 % len(LOCATES)]
    r1, r2, r3, r4 = _same_row_refs(4, start=101)
    p = 1_000_000
    rows = [
        ("A", 1, 100, p, a, "B", 0), ("E", 1, 40, 0, a, 0, 0), ("D", 1, 0, 0, a, 0, 0),
        ("A", 2, 100, p, a, "B", 0), ("D", 2, 0, 0, a, 0, 0),
        ("A", 3, 100, p, a, "S", 0), ("U", 3, 90, p + 100, a, 0, 4),
        ("U", 4, 80, p + 200, a, 0, 5), ("U", 5, 70, p + 100, a, 0, 6),
        ("U", 6, 60, p + 100, a, 0, 6), ("X", 6, 10, 0, a, 0, 0),
        ("A", r1, 10, p, a, "B", 0), ("A", r2, 20, p, a, "B", 0),
        ("A", r3, 30, p - 100, a, "B", 0),
        ("D", r1, 0, 0, a, 0, 0), ("A", r4, 40, p, a, "B", 0), ("E", r2, 20, 0, a, 0, 0),
        # one price on both sides and two symbols
        ("A", 20, 10, p + 500, a, "B", 0), ("A", 21, 10, p + 500, b, "B", 0),
        ("A", 22, 10, p + 500, b, "S", 0), ("A", 23, 10, p + 500, a, "S", 0),
        ("D", 20, 0, 0, a, 0, 0), ("D", 22, 0, 0, b, 0, 0), ("A", 24, 5, p + 500, b, "S", 0),
        # the best bid empties while the next best bid is created
        ("A", 30, 10, p + 900, a, "B", 0), ("D", 30, 0, 0, a, 0, 0),
        ("A", 31, 10, p + 800, a, "B", 0), ("E", 31, 10, 0, a, 0, 0),
        ("A", 32, 10, p + 700, a, "B", 0), ("P", 0, 5, p, a, "B", 0),
    ]
    rows += [("D", ref, 0, 0, loc, 0, 0) for ref, loc in
             ((6, a), (r3, a), (r4, a), (21, b), (23, a), (24, b), (32, a))]
    await check(tb, events(rows), what="hazards")
    assert tb.counter("live_orders") == 0 and tb.counter("live_levels") == 0


def _fits(evs: np.ndarray, windows: bool = True) -> np.ndarray:
    """The longest prefix of a valid stream within the DUT's order table and level table rows
    and (``windows``) ``window`` levels per (locate, side) (a Python model)."""
    orders = {}
    o_fill = collections.Counter()
    l_fill = collections.Counter()
    levels = collections.defaultdict(collections.Counter)   # (slot, side) -> price -> orders
    slot = {loc: k for k, loc in enumerate(LOCATES)}

    def lrow(s, side, price):
        return level_row(s, side, price, DUT.level_rows, DUT.slot_bits)

    def add(ref, loc, side, price):
        r = order_row(ref, DUT.order_rows, DUT.ref_bits)
        s = slot[loc]
        lv = levels[(s, side)]
        new = price not in lv
        if o_fill[r] >= DUT.order_ways or (new and (l_fill[lrow(s, side, price)] >= DUT.level_ways
                                                    or (windows and len(lv) >= DUT.window))):
            return False
        o_fill[r] += 1
        l_fill[lrow(s, side, price)] += new
        lv[price] += 1
        orders[ref] = (loc, side, price)
        return True

    def remove(ref):
        loc, side, price = orders.pop(ref)
        o_fill[order_row(ref, DUT.order_rows, DUT.ref_bits)] -= 1
        s = slot[loc]
        lv = levels[(s, side)]
        lv[price] -= 1
        if not lv[price]:
            del lv[price]
            l_fill[lrow(s, side, price)] -= 1

    rem = {}
    for k, e in enumerate(evs):
        t, ref = chr(e["msg_type"]), int(e["order_ref"])
        if int(e["stock_locate"]) not in slot:
            continue
        if t in "AF":
            side = int(e["side"] == ord("S"))
            if ref in orders:
                continue
            if not add(ref, int(e["stock_locate"]), side, int(e["price"])):
                return evs[:k]
            rem[ref] = int(e["shares"])
        elif t in "ECX" and ref in orders:
            rem[ref] -= min(rem[ref], int(e["shares"]))
            if rem[ref] == 0:
                remove(ref)
        elif t == "D" and ref in orders:
            remove(ref)
        elif t == "U" and ref in orders and int(e["shares"]):
            loc, side, _ = orders[ref]
            remove(ref)
            if not add(int(e["new_order_ref"]), loc, side, int(e["price"])):
                return evs[:k]
            rem[int(e["new_order_ref"])] = int(e["shares"])
    return evs


def synthetic_events(n: int, seed: int, windows: bool = True) -> np.ndarray:
    from hftaccel.feeds import itch, synthetic
    msgs = {}
    for chunk in synthetic.generate(n, n_symbols=len(LOCATES), seed=seed,
                                    max_live_orders=DUT.order_rows * DUT.order_ways // 4):
        for t, arr in chunk.items():
            msgs[t] = arr if t not in msgs else np.concatenate([msgs[t], arr])
    return _fits(itch.order_events(msgs), windows)


@cocotb.test()
async def test_random_stream(dut):
    """A synthetic multi-symbol stream, record by record against golden, back-pressure on."""
    n = 20_000 if full_run() else 3_000
    evs = synthetic_events(n, seed=7)
    assert len(evs) > n // 4, f"only {len(evs)} of {n} events fit the DUT's capacities"
    tb = EbrBookTB(dut)
    await tb.reset()
    await tb.subscribe(LOCATES)
    await check(tb, evs, what="random stream")


def level_churn_events(n: int, seed: int) -> np.ndarray:
    """A stream of ``n`` events on two locates with many levels near the top on both sides (a
    $0.01 grid at about $100, gaps of up to 12 ticks): adds, executions, cancels, deletes and
    replaces concentrated on the best levels, so levels keep leaving the window while levels
    remain beyond it. Within the DUT's table rows (:func:`_fits`)."""
    rng = np.random.default_rng(seed)
    live = {}                                   # ref -> (loc, side, price, shares)
    rows, ref = [], 1
    locs = LOCATES[:2]
    for _ in range(n):
        if len(live) < 60 or rng.random() < (0.5 if len(live) < 150 else 0.2):
            loc, side = locs[rng.integers(len(locs))], "BS"[rng.integers(2)]
            off = int(rng.geometric(0.12)) - 1
            price = 999_900 - 100 * off if side == "B" else 1_000_000 + 100 * off
            sh = int(rng.integers(1, 500))
            rows.append(("A", ref, sh, price, loc, side, 0))
            live[ref] = (loc, side, price, sh)
            ref += 1
            continue
        # an order near the top of its side
        cand = sorted(live, key=lambda r: abs(live[r][2] - 999_950))[:12]
        r = int(cand[rng.integers(len(cand))])
        loc, side, price, sh = live[r]
        u = rng.random()
        if u < 0.4:
            rows.append(("D", r, 0, 0, loc, 0, 0))
            del live[r]
        elif u < 0.7:
            x = int(rng.integers(1, sh + 1))
            rows.append(("E" if u < 0.6 else "X", r, x, 0, loc, 0, 0))
            if x == sh:
                del live[r]
            else:
                live[r] = (loc, side, price, sh - x)
        else:
            newp = price + (100 if side == "S" else -100) * int(rng.integers(1, 4))
            rows.append(("U", r, sh, newp, loc, 0, ref))
            del live[r]
            live[ref] = (loc, side, newp, sh)
            ref += 1
    return _fits(events(rows), windows=False)


@cocotb.test()
async def test_refill(dut):
    """More levels per side than the window holds: levels leaving the window are refilled
    from the level table (bursts of FINDs beyond the window's worst price), and every record
    equals golden's at any depth."""
    n = 20_000 if full_run() else 4_000
    evs = level_churn_events(n, seed=11)
    assert len(evs) > n // 2, f"only {len(evs)} of {n} events fit the DUT's tables"
    # one event every 2.6 cycles on average: minimum-size ITCH messages at 10 GbE line rate
    # (156.25 MHz, 64-bit beats)
    tb = EbrBookTB(dut, idle=1 - 1 / 2.6, stall=0.0)
    await tb.reset()
    await tb.subscribe(LOCATES)
    await check(tb, evs, what="refill stream", max_short=0.01)
    tb.dut._log.info("refills %d, stale %d, missed %d", tb.counter("refill"),
                     tb.counter("refill_stale"), tb.counter("refill_miss"))
    assert tb.counter("refill") > 0, "the stream never needed a refill"


@cocotb.test()
async def test_throughput(dut):
    """No back-pressure: cycles between accepted events (the initiation interval) by type,
    and latency from acceptance to the record's first valid cycle."""
    evs = synthetic_events(1_000, seed=3)
    tb = EbrBookTB(dut, idle=0.0, stall=0.0)
    await tb.reset()
    await tb.subscribe(LOCATES)
    await check(tb, evs, what="throughput stream")
    acc = tb.src.accepted
    ii = collections.defaultdict(list)
    for k in range(len(acc) - 1):
        e = evs[k]
        t = chr(e["msg_type"])
        if t == "U" and e["new_order_ref"] == e["order_ref"]:
            t = "U same"
        ii[t].append(acc[k + 1] - acc[k])
    summary = {t: (min(v), max(v)) for t, v in sorted(ii.items())}
    tb.dut._log.info("initiation interval (min, max) cycles by type: %s", summary)
    for t, (lo, hi) in summary.items():
        assert hi <= {"U": 3, "U same": 2}.get(t, 1), (t, lo, hi)
    # every event of the stream gives a record; a U's comes from its last request
    extra = [0 if chr(e["msg_type"]) != "U" else 1 if e["new_order_ref"] == e["order_ref"]
             else 2 for e in evs]
    lat = [f - a for a, f in zip(acc, tb.sink.first_valid)]
    assert len(lat) == len(evs)
    bad = [(k, n, x) for k, (n, x) in enumerate(zip(lat, extra)) if n != DUT.latency + x]
    assert not bad, f"latency (event, cycles, extra requests): {bad[:10]}"
    record_latency("ebr_book", lat)


@cocotb.test()
async def test_capacity(dut):
    """Full order table row: an A and a U onto it are refused and counted (``table_full``),
    the U's original stays; full level table row: a new level is refused and counted
    (``level_full``) and its slot flagged ``degraded``; the rest of the book stays exact."""
    tb = EbrBookTB(dut)
    await tb.reset()
    await tb.subscribe(LOCATES)
    a, b = LOCATES[0], LOCATES[-1]
    refs = _same_row_refs(DUT.order_ways + 2, start=1001)
    rows = [("A", r, 10, 1_000_000, a, "B", 0) for r in refs[:DUT.order_ways + 1]]
    refused = [len(rows) - 1]
    other = max(refs) + 1
    while order_row(other, DUT.order_rows, DUT.ref_bits) == order_row(refs[0], DUT.order_rows,
                                                                       DUT.ref_bits):
        other += 1
    rows += [("A", other, 20, 1_000_100, a, "S", 0),
             ("U", other, 25, 1_000_200, a, 0, refs[-1])]       # new reference: full row
    refused.append(len(rows) - 1)
    rows += [("E", other, 5, 0, a, 0, 0)]                       # the original is still live
    # ways + 1 ask prices of slot of b in one level table row
    s = LOCATES.index(b)
    row = level_row(s, 1, 2_000_000, DUT.level_rows, DUT.slot_bits)
    prices = [p for p in range(2_000_000, 2_000_000 + 100 * 64 * DUT.level_rows, 100)
              if level_row(s, 1, p, DUT.level_rows, DUT.slot_bits) == row][:DUT.level_ways + 1]
    ref = 5000
    for p in prices:
        while order_row(ref, DUT.order_rows, DUT.ref_bits) == order_row(refs[0], DUT.order_rows,
                                                                         DUT.ref_bits):
            ref += 1
        rows.append(("A", ref, 7, p, b, "S", 0))
        ref += 1
    refused.append(len(rows) - 1)
    rows += [("D", refs[0], 0, 0, a, 0, 0), ("A", 9999, 3, 999_000, b, "B", 0)]
    evs = events(rows)
    keep = np.ones(len(evs), bool)
    keep[refused] = False
    await check(tb, evs, table_full=2, level_full=1, golden_events=evs[keep],
                what="capacity")
    flags = []
    for k in range(len(LOCATES)):
        dut.degraded_index.value = k
        await tb.cycles(1)
        flags.append(int(dut.degraded.value))
    assert flags == [int(k == s) for k in range(len(LOCATES))], flags


@cocotb.test(skip=DUT.depth != 8 or DUT.order_rows * DUT.order_ways < 2048)
async def test_real_day(dut):
    """The embedded AMZN 2012-06-21 day (LOBSTER's sample as ITCH 5.0, 86,852 book events; the
    first 20,000 unless ``TB_FULL``) at line rate: at depth 8 (AMZN reaches 282 levels on a
    side; the windows hold 12 and are refilled from the level table) every record not flagged
    ``short`` equals golden's, at most 2 % are, and no capacity counter moves."""
    from hftaccel.feeds import source
    ev = source.open_feed(source.embedded_sample(), lenient=True).events
    if not full_run():
        ev = ev[:20_000]
    assert set(np.unique(ev["stock_locate"]).tolist()) <= set(LOCATES)
    tb = EbrBookTB(dut, idle=1 - 1 / 2.6, stall=0.0)
    await tb.reset()
    await tb.subscribe(LOCATES)
    # windows of 12 at depth 8: 325 of the first 20,000 records (1.6 %), 357 of the first
    # 40,000 are short (the busy morning); windows of 16: 48 of 40,000
    await check(tb, ev, what="AMZN day", max_short=0.02)
    tb.dut._log.info("AMZN: %d records, refills %d, stale %d, missed %d, %d cycles",
                     tb.counter("updates"), tb.counter("refill"), tb.counter("refill_stale"),
                     tb.counter("refill_miss"), tb.cycle)
