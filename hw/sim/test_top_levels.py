"""cocotb testbench of ``hftaccel.rtl.top_levels.TopLevels``.

The testbench is the caller: it keeps the true price levels of a few symbols (every live price
of each side with its aggregate shares and order count), sends each level change, and answers
``refill`` requests with the best level of the bottom (the levels it knows are beyond the
window), right after the request or some changes later. Two scoreboards:

* :class:`Model`, the unit's contract (window, bottom count, evictions) written plainly: every
  output must equal it field by field, in order;
* the truth: whenever an output is not ``short``, its first ``depth`` levels of each side must
  equal the best ``depth`` true levels (what the golden book's record holds).

Changes are sent back to back (and with back-pressure), over few slots, so one slot is
changed on consecutive cycles all the time. Parameters come from ``TOP_LEVELS_PARAMS``.
"""

from __future__ import annotations

import json
import os
import random

import cocotb

from hftaccel.rtl.top_levels import TopLevels, change_layout, levels_layout
from hftaccel.sim.common import TB, StreamSink, StreamSource, full_run

PARAMS = json.loads(os.environ.get("TOP_LEVELS_PARAMS", "{}"))
DUT = TopLevels(**PARAMS)
CHG = change_layout(DUT.slot_bits, DUT.orders_bits)
OUT = levels_layout(DUT.slot_bits, DUT.depth, DUT.orders_bits)


def _better(side, p, q):
    """Price ``p`` is strictly better than ``q`` on ``side`` (0 bid: higher, 1 ask: lower)."""
    return p < q if side else p > q


class Model:
    """The unit's contract: per (slot, side) the window (sorted best first) and the bottom."""

    def __init__(self):
        self.win = {}           # (slot, side) -> [[price, shares, orders], ...]
        self.bottom = {}        # (slot, side) -> {price: (shares, orders)}

    def side(self, slot, side):
        return self.win.setdefault((slot, side), []), self.bottom.setdefault((slot, side), {})

    def best_bottom(self, slot, side):
        _, b = self.side(slot, side)
        if not b:
            return None
        p = (min if side else max)(b)
        return p, b[p]

    def apply(self, ch) -> dict:
        slot, side, p, sh, n = ch["slot"], ch["side"], ch["price"], ch["shares"], ch["orders"]
        w, b = self.side(slot, side)
        res = {"slot": slot, "side": side, "evicted": 0, "to_bottom": 0, "bottom_price": 0,
               "bottom_shares": 0, "bottom_orders": 0, "refill": 0}
        idx = next((k for k, e in enumerate(w) if e[0] == p), None)
        if idx is not None and n:
            w[idx] = [p, sh, n]
        elif idx is not None:
            del w[idx]
            res["refill"] = int(bool(b))
        elif n and (ch["new"] or ch["refill"]):
            inside = any(not _better(side, e[0], p) for e in w)
            full = len(w) == DUT.window
            if ch["refill"] or inside or (not full and not b):
                k = next((k for k, e in enumerate(w) if not _better(side, e[0], p)), len(w))
                w.insert(k, [p, sh, n])
                if ch["refill"]:
                    b.pop(p)
                if len(w) > DUT.window:
                    e = w.pop()
                    b[e[0]] = (e[1], e[2])
                    res.update(evicted=1, bottom_price=e[0], bottom_shares=e[1],
                               bottom_orders=e[2])
            else:
                b[p] = (sh, n)
                res.update(to_bottom=1, bottom_price=p, bottom_shares=sh, bottom_orders=n)
        elif not n:
            b.pop(p, None)
        else:
            b[p] = (sh, n)
        short = 0
        for s, name in ((0, "bid"), (1, "ask")):
            ws, bs = self.side(slot, s)
            top = ws[:DUT.depth] + [[0, 0, 0]] * (DUT.depth - len(ws[:DUT.depth]))
            res[f"{name}_price"] = [e[0] for e in top]
            res[f"{name}_shares"] = [e[1] for e in top]
            res[f"{name}_orders"] = [e[2] for e in top]
            short |= int(len(ws) < DUT.depth and bool(bs))
        res["short"] = short
        return res


class Caller:
    """True levels of a few symbols and the change stream a book sends for them."""

    def __init__(self, rng, n_slots, mids):
        self.rng, self.model = rng, Model()
        self.levels = {(s, side): {} for s in range(n_slots) for side in (0, 1)}
        self.mids = mids
        self.pending = []       # (slot, side) refills asked for, not sent yet
        self.changes, self.expected, self.truth = [], [], []

    def _send(self, ch):
        ch = {"new": 0, "refill": 0, **ch}
        self.changes.append(ch)
        res = self.model.apply(ch)
        self.expected.append(res)
        # the truth: best depth levels of each side of the slot
        truth = {}
        for s, name in ((0, "bid"), (1, "ask")):
            lv = sorted(self.levels[(ch["slot"], s)].items(), reverse=not s)[:DUT.depth]
            truth[name] = [[pr, sh, n] for pr, (sh, n) in lv]
        self.truth.append(truth)
        if res["refill"]:
            self.pending.append((ch["slot"], ch["side"]))

    def _maybe_refill(self, now=False):
        keep = []
        for key in self.pending:
            if now or self.rng.random() < 0.5:
                w, _ = self.model.side(*key)
                best = self.model.best_bottom(*key)
                if best is not None and len(w) < DUT.window:
                    p, (sh, n) = best
                    self._send({"slot": key[0], "side": key[1], "price": p, "shares": sh,
                                "orders": n, "refill": 1})
            else:
                keep.append(key)
        self.pending = keep

    def step(self):
        rng = self.rng
        slot, side = rng.randrange(len(self.mids)), rng.randrange(2)
        lv = self.levels[(slot, side)]
        u = rng.random()
        if not lv or u < 0.4:
            mid = self.mids[slot]
            off = int(rng.expovariate(1 / DUT.window)) + 1      # levels spill past the window
            p = (mid + off if side else mid - off) * 100
            if p in lv:
                sh, n = lv[p]
                lv[p] = (sh + 100, n + 1)
                self._send({"slot": slot, "side": side, "price": p, "shares": sh + 100,
                            "orders": n + 1})
            else:
                lv[p] = (rng.randrange(1, 5000), 1)
                self._send({"slot": slot, "side": side, "price": p, "shares": lv[p][0],
                            "orders": 1, "new": 1})
        else:
            p = rng.choice(list(lv))
            sh, n = lv[p]
            if u < 0.7:
                nsh = max(1, sh - rng.randrange(1, 200))
                lv[p] = (nsh, n)
                self._send({"slot": slot, "side": side, "price": p, "shares": nsh,
                            "orders": n})
            else:
                del lv[p]
                self._send({"slot": slot, "side": side, "price": p, "shares": 0,
                            "orders": 0})
        self._maybe_refill()


class LevelsTB(TB):
    def __init__(self, dut, *, idle=0.0, stall=0.0):
        super().__init__(dut)
        self.src = StreamSource(self, "i", CHG, idle=idle)
        self.sink = StreamSink(self, "o", OUT, stall=stall)

    async def start(self):
        await self.reset()
        await self.cycles(DUT.slots + 4)

    async def run(self, caller: Caller, what: str):
        for ch in caller.changes:
            self.src.send_nowait(ch)
        await self.drain(self.src, timeout=50 * len(caller.changes) + 10_000, tail=40,
                         what="changes")
        got = [b for _, b in self.sink.queue]
        self.sink.queue.clear()
        assert len(got) == len(caller.expected), \
            f"{what}: {len(got)} outputs for {len(caller.expected)} changes"
        exact = 0
        for k, (g, e, t) in enumerate(zip(got, caller.expected, caller.truth)):
            g = {n: g[n] for n in e}
            assert g == e, f"{what}: change {k} {caller.changes[k]}: DUT {g} != model {e}"
            if not g["short"]:
                exact += 1
                for name in ("bid", "ask"):
                    tr = t[name] + [[0, 0, 0]] * (DUT.depth - len(t[name]))
                    lv = [list(x) for x in zip(g[f"{name}_price"], g[f"{name}_shares"],
                                               g[f"{name}_orders"])]
                    assert lv == tr, f"{what}: change {k}: {name} {lv} != true levels {tr}"
        self.dut._log.info("%s: %d changes, %d outputs exact against the true levels, "
                           "%d short", what, len(got), exact, len(got) - exact)
        return exact


def _stream(seed, n, n_slots=3):
    rng = random.Random(seed)
    caller = Caller(rng, min(n_slots, DUT.slots), [1000 + 37 * k for k in range(n_slots)])
    for _ in range(n):
        caller.step()
    caller._maybe_refill(now=True)
    return caller


@cocotb.test()
async def test_random_changes(dut):
    """Random level changes over 3 slots, back to back: every output equals the model, every
    non-short output equals the true best levels; evictions, bottom inserts and refills
    (answered at once or some changes later) all happen."""
    tb = LevelsTB(dut)
    await tb.start()
    caller = _stream(tb.seed, 60_000 if full_run() else 8_000)
    exact = await tb.run(caller, "random changes")
    ex = caller.expected
    assert sum(e["evicted"] for e in ex) and sum(e["to_bottom"] for e in ex) \
        and sum(e["refill"] for e in ex) and sum(c["refill"] for c in caller.changes), \
        "the stream did not exercise evictions, bottom inserts and refills"
    assert exact > 0.9 * len(ex)


@cocotb.test()
async def test_backpressure(dut):
    """The same with idle input cycles and output back-pressure (skid buffer, stalls)."""
    tb = LevelsTB(dut, idle=0.2, stall=0.4)
    await tb.start()
    await tb.run(_stream(tb.seed + 1, 4_000), "back-pressure")


@cocotb.test()
async def test_one_slot_hammered(dut):
    """Every change on one slot and side: the rows of the changes 1..4 ahead are forwarded
    on every cycle."""
    tb = LevelsTB(dut)
    await tb.start()
    await tb.run(_stream(tb.seed + 2, 6_000, n_slots=1), "one slot")


@cocotb.test()
async def test_throughput(dut):
    """II 1 and the latency: ``n`` changes accepted on consecutive cycles, each output
    :attr:`TopLevels.latency` cycles after its change."""
    tb = LevelsTB(dut)
    await tb.start()
    caller = _stream(tb.seed + 3, 300)
    for ch in caller.changes:
        tb.src.send_nowait(ch)
    await tb.drain(tb.src, tail=40, what="changes")
    acc = tb.src.accepted
    out = [cyc for cyc, _ in tb.sink.queue]
    assert all(b - a == 1 for a, b in zip(acc, acc[1:])), "not one change a cycle"
    lat = sorted({o - a for o, a in zip(out, acc)})
    assert lat == [DUT.latency], f"latency {lat} != TopLevels.latency {DUT.latency}"
