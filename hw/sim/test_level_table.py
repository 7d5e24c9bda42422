"""cocotb testbench of ``hftaccel.rtl.level_table.LevelTable``.

Scoreboard: :class:`Model`, the table's contract written plainly (a dict of live levels and a
count per row): every result the DUT delivers must equal the model's, field by field, in
order, and so must ``live``, ``level_full`` and ``unknown``. The real-day test also checks the
model against an oracle nobody here wrote for this table: after the AMZN day, every level the
table holds equals the golden book's level list (:meth:`hftaccel.golden.book.Book.levels`).

Streams are sent back to back (no idle cycles) with and without output back-pressure, so every
read-modify-write hazard is exercised: one level or one row touched by updates 1..5 apart.

The DUT's parameters come from ``LEVEL_TABLE_PARAMS`` (JSON keyword arguments of
:class:`~hftaccel.rtl.level_table.LevelTable`), set by ``tests/rtl/test_rtl_level_table.py``.
"""

from __future__ import annotations

import json
import os
import random

import cocotb

from hftaccel.rtl.level_table import LevelOp, LevelStatus, LevelTable, level_row, \
    request_layout, result_layout
from hftaccel.sim.common import TB, StreamSink, StreamSource, full_run

PARAMS = json.loads(os.environ.get("LEVEL_TABLE_PARAMS", "{}"))
DUT = LevelTable(**PARAMS)
REQ = request_layout(DUT.slot_bits, DUT.ctx_bits)
RES = result_layout(DUT.slot_bits, DUT.shares_bits, DUT.orders_bits, DUT.ctx_bits)
ADD, TAKE, FIND = LevelOp.ADD.value, LevelOp.TAKE.value, LevelOp.FIND.value
OK, FULL, UNKNOWN = LevelStatus.OK.value, LevelStatus.FULL.value, LevelStatus.UNKNOWN.value
SHARES_MAX = (1 << DUT.shares_bits) - 1


class Model:
    """The table's contract: results of each request, counters."""

    def __init__(self):
        self.levels = {}            # (slot, side, price) -> [shares, orders]
        self.per_row = [0] * DUT.rows
        self.level_full = self.unknown = 0

    def row(self, key):
        return level_row(*key, DUT.rows, DUT.slot_bits)

    def apply(self, op, slot, side, price, shares, remove, ctx=0) -> dict:
        key = (slot, side, price)
        res = {"op": op, "slot": slot, "side": side, "price": price, "shares": 0, "orders": 0,
               "new": 0, "gone": 0, "ctx": ctx}
        lv = self.levels.get(key)
        if op == ADD:
            if lv is None:
                if self.per_row[self.row(key)] == DUT.ways:
                    self.level_full += 1
                    return {**res, "status": FULL}
                lv = self.levels[key] = [0, 0]
                self.per_row[self.row(key)] += 1
                res["new"] = 1
            lv[0] = (lv[0] + shares) & SHARES_MAX
            lv[1] += 1
            return {**res, "status": OK, "shares": lv[0], "orders": lv[1]}
        if lv is None:
            self.unknown += op == TAKE
            return {**res, "status": UNKNOWN}
        if op == FIND:
            return {**res, "status": OK, "shares": lv[0], "orders": lv[1]}
        lv[0] = (lv[0] - shares) & SHARES_MAX
        lv[1] -= remove
        if lv[1] == 0:
            del self.levels[key]
            self.per_row[self.row(key)] -= 1
            return {**res, "status": OK, "gone": 1}
        return {**res, "status": OK, "shares": lv[0], "orders": lv[1]}


class TableTB(TB):
    def __init__(self, dut, *, idle=0.0, stall=0.0):
        super().__init__(dut)
        self.src = StreamSource(self, "i", REQ, idle=idle)
        self.sink = StreamSink(self, "o", RES, stall=stall)
        self.model = Model()
        self.expected = []

    async def start(self):
        await self.reset()
        await self.cycles(DUT.rows + 4)
        assert int(self.dut.clearing.value) == 0

    def send(self, reqs):
        for r in reqs:
            op, slot, side, price, shares, remove = r[:6]
            ctx = r[6] if len(r) > 6 else len(self.expected) & ((1 << DUT.ctx_bits) - 1)
            self.src.send_nowait({"op": op, "slot": slot, "side": side, "price": price,
                                  "shares": shares, "remove": remove, "ctx": ctx})
            self.expected.append(self.model.apply(op, slot, side, price, shares, remove, ctx))

    async def check(self, what):
        await self.drain(self.src, timeout=50 * len(self.expected) + 10_000, tail=40,
                         what="requests")
        got = [b for _, b in self.sink.queue]
        self.sink.queue.clear()
        assert len(got) == len(self.expected), \
            f"{what}: {len(got)} results for {len(self.expected)} requests"
        for k, (g, e) in enumerate(zip(got, self.expected)):
            g = {n: g[n] for n in e}
            assert g == e, f"{what}: request {k}: DUT {g} != model {e}"
        self.expected.clear()
        m = self.model
        assert self.counter("live") == len(m.levels), f"{what}: live"
        assert self.counter("level_full") == m.level_full, f"{what}: level_full"
        assert self.counter("unknown") == m.unknown, f"{what}: unknown"


def _same_row_levels(row, n, slot=1, side=0):
    """``n`` prices of (slot, side) whose levels share one row."""
    out, p = [], 10_000
    while len(out) < n:
        if level_row(slot, side, p, DUT.rows, DUT.slot_bits) == row:
            out.append(p)
        p += 100
    return out


@cocotb.test()
async def test_directed_hazards(dut):
    """Back to back on consecutive cycles: two orders at one price then both leave; a level
    emptied and created again; one price on both sides and in two symbols; a row filled then
    FULL, a level of it emptied then a new one in the freed way; TAKE and FIND of absent
    levels."""
    tb = TableTB(dut)
    await tb.start()
    s1, s2, p = 3, 4 % (1 << DUT.slot_bits), 1_234_500
    tb.send([(ADD, s1, 0, p, 100, 0), (ADD, s1, 0, p, 50, 0), (TAKE, s1, 0, p, 30, 0),
             (TAKE, s1, 0, p, 70, 1), (TAKE, s1, 0, p, 50, 1), (FIND, s1, 0, p, 0, 0),
             (ADD, s1, 0, p, 7, 0), (TAKE, s1, 0, p, 7, 1), (ADD, s1, 0, p, 9, 0)])
    tb.send([(ADD, s1, 1, p, 11, 0), (ADD, s2, 0, p, 12, 0), (ADD, s2, 1, p, 13, 0),
             (TAKE, s1, 1, p, 11, 1), (FIND, s1, 0, p, 0, 0), (FIND, s2, 0, p, 0, 0),
             (FIND, s2, 1, p, 0, 0), (TAKE, s2, 0, p, 12, 1), (FIND, s2, 1, p, 0, 0)])
    row = _same_row_levels(7, DUT.ways + 2)
    tb.send([(ADD, 1, 0, q, 10 + k, 0) for k, q in enumerate(row)])        # last 2: FULL
    tb.send([(TAKE, 1, 0, row[1], 11, 1), (ADD, 1, 0, row[-1], 99, 0),
             (ADD, 1, 0, row[-2], 98, 0), (FIND, 1, 0, row[-1], 0, 0),
             (TAKE, 1, 0, row[0], 10, 1), (ADD, 1, 0, row[-2], 97, 0)])
    tb.send([(FIND, 1, 0, q, 0, 0) for q in row])
    tb.send([(TAKE, 2, 1, 777, 5, 1), (FIND, 2, 1, 777, 0, 0)])
    await tb.check("directed")


def _hazard_stream(rng, model_levels, n, prices, slots=2):
    """Random updates over a few levels (so most requests hit a level or a row touched 1..5
    requests earlier); TAKEs follow the live levels so they rarely miss."""
    out, live = [], {}
    for _ in range(n):
        u = rng.random()
        if u < 0.5 or not live:
            key = (rng.randrange(slots), rng.randrange(2), 10_000 + 100 * rng.randrange(prices))
            sh = rng.choice([1, 100, rng.randrange(1, 1 << 20)])
            out.append((ADD, *key, sh, 0))
            lv = live.setdefault(key, [0, 0])
            lv[0] += sh
            lv[1] += 1
        elif u < 0.9:
            key = rng.choice(list(live))
            lv = live[key]
            rm = int(lv[1] == 1 or rng.random() < 0.6)
            sh = lv[0] if lv[1] == 1 else rng.randrange(0, lv[0] // 2 + 1)
            out.append((TAKE, *key, sh, rm))
            lv[0] -= sh
            lv[1] -= rm
            if lv[1] == 0:
                del live[key]
        else:
            key = (rng.randrange(slots), rng.randrange(2), 10_000 + 100 * rng.randrange(prices))
            out.append((FIND, *key, 0, 0))
    return out


@cocotb.test()
async def test_random_hazards(dut):
    """Random updates on few levels, back to back, no back-pressure."""
    tb = TableTB(dut)
    await tb.start()
    rng = random.Random(tb.seed)
    n = 150_000 if full_run() else 15_000
    for prices in (3, DUT.rows // 2, 2 * DUT.rows):
        tb.send(_hazard_stream(rng, tb.model.levels, n // 3, prices))
        await tb.check(f"random hazards over {prices} prices")


@cocotb.test()
async def test_backpressure(dut):
    """The same with random back-pressure on the output (skid buffer, stalled pipeline)."""
    tb = TableTB(dut, stall=0.4, idle=0.1)
    await tb.start()
    rng = random.Random(tb.seed + 1)
    tb.send(_hazard_stream(rng, tb.model.levels, 8_000, DUT.rows))
    await tb.check("back-pressure")


@cocotb.test()
async def test_throughput(dut):
    """II 1: ``n`` requests back to back are accepted on ``n`` consecutive cycles and the
    first result is valid :attr:`LevelTable.latency` cycles after the first acceptance."""
    tb = TableTB(dut)
    await tb.start()
    tb.send([(ADD, 1, k & 1, 10_000 + 100 * k, 10, 0) for k in range(100)]
            + [(TAKE, 1, k & 1, 10_000 + 100 * k, 10, 1) for k in range(100)])
    await tb.drain(tb.src, tail=40, what="requests")
    acc = tb.src.accepted
    out = [c for c, _ in tb.sink.queue]
    await tb.check("throughput")
    assert all(b - a == 1 for a, b in zip(acc, acc[1:])), "not one request a cycle"
    lat = sorted({c - a for c, a in zip(out, acc)})
    tb.dut._log.info("level table latency (request accepted -> result accepted): %s cycles",
                     lat)
    assert lat == [DUT.latency], f"latency {lat} != LevelTable.latency {DUT.latency}"


def itch_level_requests(ev, slot_of):
    """Level-table requests of ITCH order events (A F E C X D U, ``ORDER_EVENT_DTYPE``), the
    way the book issues them after its order table: A/F add, E/C/X take the executed or
    cancelled shares (the order's level; one order leaves when none remain), D takes the
    rest and the order, U takes the original and adds the new order at its price. Events the
    golden book rejects (unknown reference, bad side, zero shares, a U whose new reference is
    live) are not sent; over-executions take what is left. ``slot_of`` maps a stock locate to
    a slot."""
    orders = {}                     # ref -> [slot, side, price, shares]
    out = []
    for e in ev:
        t, ref, shares = chr(int(e["msg_type"])), int(e["order_ref"]), int(e["shares"])
        if t in "AF":
            side = chr(int(e["side"]))
            if side not in "BS" or shares == 0 or ref in orders:
                continue
            o = orders[ref] = [slot_of(int(e["stock_locate"])), int(side == "S"),
                               int(e["price"]), shares]
            out.append((ADD, o[0], o[1], o[2], shares, 0))
        elif t in "ECXD":
            o = orders.get(ref)
            if o is None:
                continue
            take = o[3] if t == "D" else min(shares, o[3])
            o[3] -= take
            out.append((TAKE, o[0], o[1], o[2], take, int(o[3] == 0)))
            if o[3] == 0:
                del orders[ref]
        elif t == "U":
            o, new = orders.get(ref), int(e["new_order_ref"])
            if o is None or shares == 0 or (new != ref and new in orders):
                continue
            out.append((TAKE, o[0], o[1], o[2], o[3], 1))
            del orders[ref]
            n = orders[new] = [o[0], o[1], int(e["price"]), shares]
            out.append((ADD, n[0], n[1], n[2], shares, 0))
    return out


@cocotb.test()
async def test_real_day(dut):
    """The embedded AMZN 2012-06-21 day (LOBSTER's sample as ITCH 5.0, 86,859 messages): every
    result equals the model's, and at the end every level (price, shares, orders) of both
    sides equals the golden book's; no ``level_full`` (tables of 4,096 levels and more; a
    smaller table overflows rows and is checked against the model only)."""
    from hftaccel.feeds import source
    from hftaccel.golden.book import Book

    ev = source.open_feed(source.embedded_sample(), lenient=True).events
    if not full_run():
        ev = ev[:40_000]
    tb = TableTB(dut)
    await tb.start()
    tb.send(itch_level_requests(ev, lambda loc: loc % (1 << DUT.slot_bits)))
    await tb.check("AMZN day")
    if DUT.rows * DUT.ways < 4096:      # a small table overflows: the model alone is the check
        return
    assert tb.model.level_full == 0, "the AMZN day overflowed a row of the level table"
    book = Book()
    book.apply(ev)
    locs = {int(x) for x in ev["stock_locate"]}
    want = {}
    for loc in locs:
        for side, code in ((0, "B"), (1, "S")):
            for price, shares, orders in book.levels(loc, code):
                want[(loc % (1 << DUT.slot_bits), side, int(price))] = [int(shares), int(orders)]
    assert tb.counter("live") == book.price_levels == len(want), \
        f"levels: DUT {tb.counter('live')}, golden {book.price_levels}"
    assert tb.model.levels == want, "the levels differ from the golden book's"
