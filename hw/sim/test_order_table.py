"""cocotb testbench of ``hftaccel.rtl.order_table.OrderTable``.

Scoreboard: :class:`Model`, the table's contract written plainly (a dict of live orders and a
count per row): every result the DUT delivers must equal the model's, field by field, in
order, and so must ``live``, ``table_full`` and ``ref_range``. Which way an order occupies is
not visible, so the model needs no ways: a row is full when it holds ``ways`` live orders.

Streams are sent back to back (no idle cycles) with and without output back-pressure, so every
read-modify-write hazard of the five-stage pipeline is exercised: one order or one row touched
by operations 1..5 apart.

The DUT's parameters come from ``ORDER_TABLE_PARAMS`` (JSON keyword arguments of
:class:`~hftaccel.rtl.order_table.OrderTable`), set by ``tests/rtl/test_rtl_order_table.py``.
"""

from __future__ import annotations

import json
import os
import random

import cocotb

from hftaccel.rtl.order_table import Op, OrderTable, Status, order_row, request_layout, \
    result_layout
from hftaccel.sim.common import TB, StreamSink, StreamSource, full_run

PARAMS = json.loads(os.environ.get("ORDER_TABLE_PARAMS", "{}"))
DUT = OrderTable(**PARAMS)
REQ = request_layout(DUT.handle_bits)
RES = result_layout(DUT.handle_bits)
INSERT, TAKE, DELETE, FIND = (Op.INSERT.value, Op.TAKE.value, Op.DELETE.value, Op.FIND.value)


def late_handle_of(ref: int) -> int:
    """The handle the testbench drives on ``handle_late`` for the INSERT of ``ref`` in stage 4
    (``late_handle`` builds): a hash of the reference, so a wrong cycle gives a wrong handle."""
    return (ref * 0x9E3779B1 >> 7) & ((1 << DUT.handle_bits) - 1)


class Model:
    """The table's contract: results of each request, counters."""

    def __init__(self, rows, ways, ref_bits):
        self.rows, self.ways, self.ref_bits = rows, ways, ref_bits
        self.orders = {}            # ref -> [shares, handle]
        self.per_row = [0] * rows
        self.table_full = self.ref_range = 0

    def apply(self, op, ref, shares, handle) -> dict:
        res = {"op": op, "ref": ref, "taken": 0, "remaining": 0, "handle": 0, "over": 0}
        if ref >= 1 << self.ref_bits:
            self.ref_range += 1
            return {**res, "status": Status.RANGE.value}
        row = order_row(ref, self.rows, self.ref_bits)
        o = self.orders.get(ref)
        if op == INSERT:
            if shares == 0:
                return {**res, "status": Status.ZERO.value}
            if o is not None:
                return {**res, "status": Status.DUPLICATE.value}
            if self.per_row[row] == self.ways:
                self.table_full += 1
                return {**res, "status": Status.FULL.value}
            if DUT.late_handle:
                handle = late_handle_of(ref)
            self.orders[ref] = [shares, handle]
            self.per_row[row] += 1
            return {**res, "status": Status.OK.value, "remaining": shares, "handle": handle}
        if o is None:
            return {**res, "status": Status.UNKNOWN.value}
        if op == FIND:
            return {**res, "status": Status.OK.value, "remaining": o[0], "handle": o[1]}
        over = int(op == TAKE and shares > o[0])
        taken = o[0] if (op == DELETE or over) else shares
        o[0] -= taken
        out = {**res, "status": Status.OK.value, "taken": taken, "remaining": o[0],
               "handle": o[1], "over": over}
        if o[0] == 0:
            del self.orders[ref]
            self.per_row[row] -= 1
        return out


class TableTB(TB):
    def __init__(self, dut, *, idle=0.0, stall=0.0):
        super().__init__(dut)
        self.src = StreamSource(self, "i", REQ, idle=idle)
        self.sink = StreamSink(self, "o", RES, stall=stall)
        self.model = Model(DUT.rows, DUT.ways, DUT.ref_bits)
        self.expected = []
        if DUT.late_handle:
            cocotb.start_soon(self._drive_late_handle())

    async def _drive_late_handle(self):
        """The level index's part: ``handle_late`` from the request now in stage 4."""
        from cocotb.triggers import FallingEdge
        while True:
            await FallingEdge(self.dut.clk)
            self.dut.handle_late.value = late_handle_of(int(self.dut.s4_ref.value))

    async def start(self):
        await self.reset()
        await self.cycles(DUT.rows + 4)
        assert int(self.dut.clearing.value) == 0

    def send(self, reqs):
        for op, ref, shares, handle in reqs:
            self.src.send_nowait({"op": op, "ref": ref, "shares": shares, "handle": handle})
            self.expected.append(self.model.apply(op, ref, shares, handle))

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
        assert self.counter("live") == len(m.orders), f"{what}: live"
        assert self.counter("table_full") == m.table_full, f"{what}: table_full"
        assert self.counter("ref_range") == m.ref_range, f"{what}: ref_range"


def _same_row_refs(row, n, start=1):
    """``n`` references of one row."""
    out, r = [], start
    while len(out) < n:
        if order_row(r, DUT.rows, DUT.ref_bits) == row:
            out.append(r)
        r += 1
    return out


@cocotb.test()
async def test_directed_hazards(dut):
    """Back-to-back pairs on consecutive cycles: E then D of one order, A then D, A then E
    then E then FIND, D then A of the freed reference, a row filled then FULL, a delete then
    an insert into the freed way, references out of range."""
    tb = TableTB(dut)
    await tb.start()
    a, b, c = 101, 202, 303
    tb.send([(INSERT, a, 500, 7), (TAKE, a, 100, 0), (DELETE, a, 0, 0), (FIND, a, 0, 0)])
    tb.send([(INSERT, b, 300, 9), (DELETE, b, 0, 0), (INSERT, b, 50, 3), (TAKE, b, 60, 0),
             (FIND, b, 0, 0), (TAKE, c, 1, 0), (INSERT, c, 10, 1), (INSERT, c, 10, 2),
             (TAKE, c, 4, 0), (TAKE, c, 0, 0), (TAKE, c, 6, 0), (FIND, c, 0, 0)])
    row = _same_row_refs(5, DUT.ways + 2)
    tb.send([(INSERT, r, 10 + k, k) for k, r in enumerate(row)])             # last 2: FULL
    tb.send([(DELETE, row[1], 0, 0), (INSERT, row[-1], 99, 5), (INSERT, row[-2], 98, 4),
             (FIND, row[-1], 0, 0), (DELETE, row[0], 0, 0), (INSERT, row[-2], 97, 6)])
    tb.send([(FIND, r, 0, 0) for r in row])
    big = 1 << DUT.ref_bits
    tb.send([(INSERT, big, 5, 1), (FIND, big, 0, 0), (DELETE, big + 1, 0, 0),
             (INSERT, (1 << 64) - 1, 5, 1)])
    await tb.check("directed")


def _hazard_stream(rng, n, ref_space):
    """Random operations over a few references (so most operations hit an order or a row
    touched 1..5 operations earlier)."""
    out = []
    for _ in range(n):
        ref = rng.randrange(1, ref_space)
        u = rng.random()
        if u < 0.4:
            out.append((INSERT, ref, rng.choice([1, 2, 100, rng.randrange(1, 1 << 32)]),
                        rng.randrange(1 << DUT.handle_bits)))
        elif u < 0.65:
            out.append((TAKE, ref, rng.choice([0, 1, 50, rng.randrange(1 << 32)]), 0))
        elif u < 0.9:
            out.append((DELETE, ref, 0, 0))
        else:
            out.append((FIND, ref, 0, 0))
    return out


@cocotb.test()
async def test_random_hazards(dut):
    """Random operations on few references, back to back, no back-pressure."""
    tb = TableTB(dut)
    await tb.start()
    rng = random.Random(tb.seed)
    n = 200_000 if full_run() else 20_000
    for space in (8, 2 * DUT.rows, 4 * DUT.rows * DUT.ways):
        tb.send(_hazard_stream(rng, n // 3, space))
        await tb.check(f"random hazards over {space} references")


@cocotb.test()
async def test_backpressure(dut):
    """The same with random back-pressure on the output (skid buffer, stalled pipeline)."""
    tb = TableTB(dut, stall=0.4, idle=0.1)
    await tb.start()
    rng = random.Random(tb.seed + 1)
    tb.send(_hazard_stream(rng, 10_000, 3 * DUT.rows))
    await tb.check("back-pressure")


@cocotb.test()
async def test_itch_like(dut):
    """An ITCH-like day: increasing references, live orders near capacity, executions and
    cancels of random live orders, replaces (delete + insert of a new reference); table_full
    counted when a row overflows."""
    tb = TableTB(dut)
    await tb.start()
    rng = random.Random(tb.seed + 2)
    cap = DUT.rows * DUT.ways
    live, nxt, reqs = [], 1, []
    n = 300_000 if full_run() else 30_000
    for _ in range(n):
        if len(live) < 0.7 * cap or rng.random() < 0.45:
            reqs.append((INSERT, nxt, rng.randrange(1, 5000), rng.randrange(1 << DUT.handle_bits)))
            live.append(nxt)
            nxt += rng.choice([1, 1, 1, 2, 7])
        else:
            k = rng.randrange(len(live))
            ref = live[k]
            u = rng.random()
            if u < 0.3:
                reqs.append((TAKE, ref, rng.randrange(1, 3000), 0))
            elif u < 0.8:
                reqs.append((DELETE, ref, 0, 0))
                live[k] = live[-1]
                live.pop()
            else:           # replace: the original goes, a new reference comes
                reqs.append((DELETE, ref, 0, 0))
                reqs.append((INSERT, nxt, rng.randrange(1, 5000), 1))
                live[k] = nxt
                nxt += 1
    tb.send(reqs)
    await tb.check("ITCH-like stream")
    assert tb.model.table_full > 0 or cap > 4096, "the stream never filled a row"


@cocotb.test()
async def test_throughput(dut):
    """II 1: ``n`` requests back to back are accepted on ``n`` consecutive cycles and the
    first result is valid :attr:`OrderTable.latency` cycles after the first acceptance."""
    tb = TableTB(dut)
    await tb.start()
    tb.send([(INSERT, 1000 + k, 10, 0) for k in range(100)]
            + [(DELETE, 1000 + k, 0, 0) for k in range(100)])
    await tb.drain(tb.src, tail=40, what="requests")
    acc = tb.src.accepted
    out = [c for c, _ in tb.sink.queue]
    await tb.check("throughput")
    assert all(b - a == 1 for a, b in zip(acc, acc[1:])), "not one request a cycle"
    lat = sorted({c - a for c, a in zip(out, acc)})
    tb.dut._log.info("order table latency (request accepted -> result accepted): %s cycles",
                     lat)
    assert lat == [DUT.latency], f"latency {lat} != OrderTable.latency {DUT.latency}"


def _itch_requests(ev, model: Model):
    """Order-table requests of ITCH order events (A F E C X D U, ``ORDER_EVENT_DTYPE``), the
    way the book issues them: A/F insert, E/C/X take, D delete, U delete + insert; events the
    golden book rejects before the table (bad side, zero shares, a U whose new reference is
    live) are not sent. ``model`` is a scratch model used to decide U's validity."""
    out = []
    for e in ev:
        t, ref, shares = chr(int(e["msg_type"])), int(e["order_ref"]), int(e["shares"])
        if t in "AF":
            if chr(int(e["side"])) not in "BS" or shares == 0:
                continue
            req = [(INSERT, ref, shares, int(e["price"]) & ((1 << DUT.handle_bits) - 1))]
        elif t in "ECX":
            req = [(TAKE, ref, shares, 0)]
        elif t == "D":
            req = [(DELETE, ref, 0, 0)]
        elif t == "U":
            new = int(e["new_order_ref"])
            if ref not in model.orders or shares == 0 or (new != ref and new in model.orders):
                req = [(FIND, ref, 0, 0)]          # rejected by the book: nothing changes
            else:
                req = [(DELETE, ref, 0, 0), (INSERT, new, shares, 0)]
        else:
            continue
        for r in req:
            model.apply(*r)
        out += req
    return out


@cocotb.test()
async def test_real_day(dut):
    """The embedded AMZN 2012-06-21 day (LOBSTER's sample as ITCH 5.0, 86,859 messages): every
    result equals the model's; with room for the day (no ``table_full``) the live orders at the
    end equal the golden book's."""
    from hftaccel.feeds import source
    from hftaccel.golden.book import Book

    ev = source.open_feed(source.embedded_sample(), lenient=True).events
    if not full_run():      # the board default gets the first 40,000 events, a small table 10,000
        ev = ev[:40_000 if DUT.rows * DUT.ways >= 4096 else 10_000]
    tb = TableTB(dut)
    await tb.start()
    tb.send(_itch_requests(ev, Model(DUT.rows, DUT.ways, DUT.ref_bits)))
    await tb.check("AMZN day")
    if DUT.rows * DUT.ways >= 4096:
        assert tb.model.table_full == 0, "the AMZN day overflowed a row of the table"
    if tb.model.table_full == 0 and tb.model.ref_range == 0:
        book = Book()
        book.apply(ev)
        assert tb.counter("live") == book.live_orders == len(tb.model.orders), \
            f"live orders: DUT {tb.counter('live')}, golden book {book.live_orders}"
