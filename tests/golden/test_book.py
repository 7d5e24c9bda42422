"""Tests of hftaccel.golden.book: hand-built books, bad references, growth, chunking, and a
randomized differential test against a small pure-Python dict-based reference book."""

from __future__ import annotations

import numpy as np
import pytest

from hftaccel.golden.book import FIRST_BAD_KEPT, Book, replay
from hftaccel.spec.book import BAD_REFERENCE_KINDS, book_record_dtype
from hftaccel.spec.itch import ORDER_EVENT_DTYPE, SIDE_BUY, SIDE_SELL

# --------------------------------------------------------------------------------------------
# Event construction helpers
# --------------------------------------------------------------------------------------------


def _side(s):
    if isinstance(s, str):
        return ord(s) if s else 0
    return s


def events(*rows, seq0: int = 1):
    """Build ORDER_EVENT_DTYPE records from (type, dict-of-fields) rows; seq and timestamp
    are assigned in order (timestamp = 1000 * seq ns)."""
    ev = np.zeros(len(rows), ORDER_EVENT_DTYPE)
    for i, (t, f) in enumerate(rows):
        ev[i]["msg_type"] = ord(t)
        ev[i]["seq"] = seq0 + i
        ev[i]["timestamp"] = 1000 * (seq0 + i)
        ev[i]["printable"] = 1
        for name, value in f.items():
            ev[i][name] = _side(value) if name == "side" else value
    return ev


def A(ref, side, shares, price, locate=1):
    return ("A", dict(order_ref=ref, side=side, shares=shares, price=price, stock_locate=locate))


def F(ref, side, shares, price, locate=1):
    return ("F", dict(order_ref=ref, side=side, shares=shares, price=price, stock_locate=locate))


def E(ref, shares, locate=1):
    return ("E", dict(order_ref=ref, shares=shares, stock_locate=locate))


def C(ref, shares, price, locate=1, printable=1):
    return ("C", dict(order_ref=ref, shares=shares, price=price, stock_locate=locate,
                      printable=printable))


def X(ref, shares, locate=1):
    return ("X", dict(order_ref=ref, shares=shares, stock_locate=locate))


def D(ref, locate=1):
    return ("D", dict(order_ref=ref, stock_locate=locate))


def U(ref, new_ref, shares, price, locate=1):
    return ("U", dict(order_ref=ref, new_order_ref=new_ref, shares=shares, price=price,
                      stock_locate=locate))


def P(side, shares, price, locate=1, ref=0):
    return ("P", dict(order_ref=ref, side=side, shares=shares, price=price, stock_locate=locate))


def lv(book, locate, side):
    return [tuple(int(x) for x in row) for row in book.levels(locate, side)]


def top(rec, side):
    """Non-empty (price, shares, orders) levels of one side of one record."""
    s = "bid" if side == "B" else "ask"
    return [(int(p), int(q), int(n)) for p, q, n in
            zip(rec[f"{s}_price"], rec[f"{s}_shares"], rec[f"{s}_orders"]) if q or p or n]


# --------------------------------------------------------------------------------------------
# Pure-Python reference book
# --------------------------------------------------------------------------------------------

class RefBook:
    """Dict-based reference: orders[ref] = [locate, side_code, price, shares], also indexed
    by locate (by_locate[locate][ref] is the same list)."""

    def __init__(self, depth):
        self.depth = depth
        self.dtype = book_record_dtype(depth)
        self.orders = {}
        self.by_locate = {}
        self.bad = dict.fromkeys(BAD_REFERENCE_KINDS, 0)

    def _add(self, ref, order):
        self.orders[ref] = order
        self.by_locate.setdefault(order[0], {})[ref] = order

    def _remove(self, ref):
        order = self.orders.pop(ref)
        del self.by_locate[order[0]][ref]
        return order

    def side_levels(self, locate, side_code):
        agg = {}
        for _loc, sd, price, shares in self.by_locate.get(locate, {}).values():
            if sd == side_code:
                a = agg.setdefault(price, [0, 0])
                a[0] += shares
                a[1] += 1
        prices = sorted(agg, reverse=(side_code == SIDE_BUY))
        return [(p, agg[p][0], agg[p][1]) for p in prices]

    def _record(self, e, ref, shares, price, locate, side_code):
        r = np.zeros(1, self.dtype)[0]
        r["timestamp"], r["seq"], r["order_ref"] = e["timestamp"], e["seq"], ref
        r["shares"], r["price"], r["stock_locate"] = shares, price, locate
        r["msg_type"], r["side"] = e["msg_type"], side_code
        for code, s in ((SIDE_BUY, "bid"), (SIDE_SELL, "ask")):
            for d, (p, q, n) in enumerate(self.side_levels(locate, code)[: self.depth]):
                r[f"{s}_price"][d], r[f"{s}_shares"][d], r[f"{s}_orders"][d] = p, q, n
        return r

    def apply(self, ev):
        out = []
        for e in ev:
            t = chr(e["msg_type"])
            ref = int(e["order_ref"])
            if t in "AF":
                if e["side"] not in (SIDE_BUY, SIDE_SELL):
                    self.bad["bad_side"] += 1
                elif e["shares"] == 0:
                    self.bad["zero_shares"] += 1
                elif ref in self.orders:
                    self.bad["duplicate_order"] += 1
                else:
                    self._add(ref, [int(e["stock_locate"]), int(e["side"]), int(e["price"]),
                                    int(e["shares"])])
                    out.append(self._record(e, ref, e["shares"], e["price"], e["stock_locate"],
                                            e["side"]))
            elif t in "ECXD":
                if ref not in self.orders:
                    self.bad["unknown_order"] += 1
                    continue
                o = self.orders[ref]
                x = o[3] if t == "D" else int(e["shares"])
                if x > o[3]:
                    self.bad["over_execution"] += 1
                    x = o[3]
                o[3] -= x
                if o[3] == 0:
                    self._remove(ref)
                price = int(e["price"]) if t == "C" else o[2]
                out.append(self._record(e, ref, x, price, o[0], o[1]))
            elif t == "U":
                new = int(e["new_order_ref"])
                if ref not in self.orders:
                    self.bad["unknown_order"] += 1
                elif e["shares"] == 0:
                    self.bad["zero_shares"] += 1
                elif new != ref and new in self.orders:
                    self.bad["duplicate_order"] += 1
                else:
                    loc, sd, _p, _q = self._remove(ref)
                    self._add(new, [loc, sd, int(e["price"]), int(e["shares"])])
                    out.append(self._record(e, new, e["shares"], e["price"], loc, sd))
            elif t == "P":
                out.append(self._record(e, 0, e["shares"], e["price"], e["stock_locate"],
                                        e["side"]))
        return np.array(out, dtype=self.dtype) if out else np.zeros(0, self.dtype)


# --------------------------------------------------------------------------------------------
# Synthetic stream (self-consistent, with a controlled rate of bad references)
# --------------------------------------------------------------------------------------------

def synthetic_stream(n, *, seed=0, locates=(1, 2, 3, 7), bad_rate=0.02, levels_span=12,
                     tick=100, target_live=400):
    """Seeded random A F E C X D U P stream over ``locates``; about ``bad_rate`` of the events
    are bad references of every kind. Prices: bids below and asks above a per-locate mid,
    ``levels_span`` ticks deep, so levels are shared, emptied and re-created often."""
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, ORDER_EVENT_DTYPE)
    live = {}  # ref -> [locate, side, price, shares]
    keys = []  # live refs, for O(1) random choice
    pos = {}
    next_ref = 1000

    def add_live(ref, o):
        live[ref] = o
        pos[ref] = len(keys)
        keys.append(ref)

    def drop_live(ref):
        del live[ref]
        j = pos.pop(ref)
        last = keys.pop()
        if last != ref:
            keys[j] = last
            pos[last] = j

    locs = np.asarray(locates)
    mids = {int(loc): 100_000 + 50_000 * k for k, loc in enumerate(locs)}
    u = rng.random(n)
    v = rng.random(n)
    ts = np.cumsum(rng.integers(1, 5000, n)) + 34_200_000_000_000
    for i in range(n):
        e = ev[i]
        e["seq"] = i + 1
        e["timestamp"] = ts[i]
        e["printable"] = 1
        r = u[i]
        if v[i] < bad_rate:
            kind = int(rng.integers(0, 7))
            if kind == 0 or not keys:       # unknown reference for E/C/X/D/U
                t = "ECXDU"[int(rng.integers(0, 5))]
                e["msg_type"] = ord(t)
                e["order_ref"] = 10**12 + int(rng.integers(0, 10**6))
                e["shares"] = 100
                e["new_order_ref"] = next_ref
                e["price"] = 100_000
            elif kind == 1:                 # over-execution / over-cancel
                ref = keys[int(rng.integers(0, len(keys)))]
                o = live[ref]
                e["msg_type"] = ord("EXC"[int(rng.integers(0, 3))])
                e["order_ref"] = ref
                e["shares"] = o[3] + int(rng.integers(1, 500))
                e["price"] = o[2]
                e["stock_locate"] = o[0]
                drop_live(ref)
            elif kind == 2:                 # duplicate add
                ref = keys[int(rng.integers(0, len(keys)))]
                e["msg_type"] = ord("A")
                e["order_ref"] = ref
                e["side"] = SIDE_BUY
                e["shares"] = 100
                e["price"] = 99_000
                e["stock_locate"] = int(locs[0])
            elif kind == 3:                 # replace onto a live reference
                a, b = (keys[int(rng.integers(0, len(keys)))] for _ in range(2))
                if a == b:
                    e["msg_type"] = ord("P")
                    e["side"] = SIDE_BUY
                    e["shares"] = 10
                    e["price"] = 100_000
                else:
                    e["msg_type"] = ord("U")
                    e["order_ref"], e["new_order_ref"] = a, b
                    e["shares"], e["price"] = 100, live[a][2]
            elif kind == 4:                 # bad side
                e["msg_type"] = ord("F")
                e["order_ref"] = next_ref
                next_ref += 1
                e["side"] = ord(" ") if rng.random() < 0.5 else 0
                e["shares"] = 100
                e["price"] = 100_000
            elif kind == 5:                 # zero-share add
                e["msg_type"] = ord("A")
                e["order_ref"] = next_ref
                next_ref += 1
                e["side"] = SIDE_SELL
                e["price"] = 100_000
            else:                           # zero-share replace
                ref = keys[int(rng.integers(0, len(keys)))]
                e["msg_type"] = ord("U")
                e["order_ref"] = ref
                e["new_order_ref"] = next_ref
                next_ref += 1
                e["price"] = live[ref][2]
            continue
        p_add = 0.45 if len(keys) < target_live else 0.25
        if r < p_add or not keys:
            loc = int(locs[int(rng.integers(0, len(locs)))])
            sd = SIDE_BUY if rng.random() < 0.5 else SIDE_SELL
            off = int(rng.geometric(0.25)) - 1
            off = min(off, levels_span) if rng.random() < 0.97 else int(rng.integers(0, 2000))
            price = max(tick, mids[loc] - tick * (off + 1)) if sd == SIDE_BUY else \
                mids[loc] + tick * off
            shares = int(rng.integers(1, 20)) * 100
            e["msg_type"] = ord("A" if rng.random() < 0.8 else "F")
            e["order_ref"], e["side"], e["shares"] = next_ref, sd, shares
            e["price"], e["stock_locate"] = price, loc
            add_live(next_ref, [loc, sd, price, shares])
            next_ref += 1
            continue
        if r > 0.97:                        # trade print
            loc = int(locs[int(rng.integers(0, len(locs)))])
            e["msg_type"] = ord("P")
            e["side"] = SIDE_BUY
            e["shares"] = int(rng.integers(1, 1000))
            e["price"] = mids[loc]
            e["stock_locate"] = loc
            e["order_ref"] = 0
            continue
        ref = keys[int(rng.integers(0, len(keys)))]
        o = live[ref]
        e["order_ref"] = ref
        e["stock_locate"] = o[0] if rng.random() < 0.9 else int(locs[-1])  # header may differ
        t = "EEECXXDDDDUU"[int(rng.integers(0, 12))]
        e["msg_type"] = ord(t)
        if t == "D":
            drop_live(ref)
        elif t == "U":
            new_price = o[2] + tick * int(rng.integers(-2, 3))
            new_shares = int(rng.integers(1, 20)) * 100
            e["new_order_ref"] = next_ref
            e["shares"], e["price"] = new_shares, max(tick, new_price)
            drop_live(ref)
            add_live(next_ref, [o[0], o[1], max(tick, new_price), new_shares])
            next_ref += 1
        else:
            x = int(rng.integers(1, o[3] + 1)) if rng.random() < 0.7 else o[3]
            e["shares"] = x
            e["price"] = o[2] + (tick if t == "C" else 0)
            o[3] -= x
            if o[3] == 0:
                drop_live(ref)
    return ev


def assert_records_equal(got, want):
    assert got.dtype == want.dtype
    assert len(got) == len(want), f"{len(got)} records, want {len(want)}"
    for name in want.dtype.names:
        if name.startswith("_"):
            continue
        bad = np.flatnonzero(np.any((got[name] != want[name]).reshape(len(want), -1), axis=1))
        assert bad.size == 0, (f"field {name} differs first at record {bad[0]} (seq "
                               f"{want['seq'][bad[0]]}): {got[name][bad[0]]} != "
                               f"{want[name][bad[0]]}")


# --------------------------------------------------------------------------------------------
# Hand-built books
# --------------------------------------------------------------------------------------------

def test_adds_both_sides_sorted_best_first_and_truncated_to_depth():
    book = Book(depth=3)
    rec = book.apply(events(
        A(1, "B", 100, 10_000), A(2, "B", 200, 10_100), A(3, "B", 300, 9_900),
        A(4, "B", 50, 10_100), F(5, "B", 10, 9_800), A(6, "S", 70, 10_300),
        A(7, "S", 80, 10_200), F(8, "S", 90, 10_200), A(9, "S", 60, 10_500)))
    assert len(rec) == 9 and book.book_updates == 9 and book.live_orders == 9
    assert lv(book, 1, "B") == [(10_100, 250, 2), (10_000, 100, 1), (9_900, 300, 1),
                                (9_800, 10, 1)]
    assert lv(book, 1, "S") == [(10_200, 170, 2), (10_300, 70, 1), (10_500, 60, 1)]
    last = rec[-1]
    assert top(last, "B") == [(10_100, 250, 2), (10_000, 100, 1), (9_900, 300, 1)]
    assert top(last, "S") == [(10_200, 170, 2), (10_300, 70, 1), (10_500, 60, 1)]
    r0 = rec[0]
    assert (chr(r0["msg_type"]), chr(r0["side"]), r0["order_ref"], r0["shares"], r0["price"],
            r0["stock_locate"], r0["seq"], r0["timestamp"]) == ("A", "B", 1, 100, 10_000, 1, 1,
                                                                1000)
    assert top(r0, "B") == [(10_000, 100, 1)] and top(r0, "S") == []
    assert list(r0["bid_price"]) == [10_000, 0, 0] and list(r0["ask_orders"]) == [0, 0, 0]
    assert top(rec[5], "S") == [(10_300, 70, 1)]
    assert rec.dtype == book_record_dtype(3)


def test_executions_cancels_deletes():
    book = Book(depth=4)
    book.apply(events(A(1, "B", 100, 10_000), A(2, "B", 200, 10_000), A(3, "S", 300, 10_100),
                      A(4, "S", 50, 10_200)))
    rec = book.apply(events(E(1, 30), C(3, 100, 10_150), X(2, 50), D(4), E(1, 70),
                            C(3, 200, 10_090, printable=0), seq0=10))
    assert [chr(c) for c in rec["msg_type"]] == list("ECXDEC")
    # E: resting price, 30 executed
    assert (rec[0]["price"], rec[0]["shares"], chr(rec[0]["side"])) == (10_000, 30, "B")
    assert top(rec[0], "B") == [(10_000, 270, 2)]
    # C: record price is the execution price, level reduced at the resting price
    assert (rec[1]["price"], rec[1]["shares"], chr(rec[1]["side"])) == (10_150, 100, "S")
    assert top(rec[1], "S") == [(10_100, 200, 1), (10_200, 50, 1)]
    assert top(rec[2], "B") == [(10_000, 220, 2)] and rec[2]["shares"] == 50
    # D: shares = remaining removed, the level emptied
    assert (rec[3]["order_ref"], rec[3]["shares"], rec[3]["price"]) == (4, 50, 10_200)
    assert top(rec[3], "S") == [(10_100, 200, 1)]
    # E completing order 1 removes it from the level's count
    assert top(rec[4], "B") == [(10_000, 150, 1)]
    # non-printable C still changes the book
    assert top(rec[5], "S") == [] and rec[5]["price"] == 10_090
    assert book.live_orders == 1 and lv(book, 1, "S") == []
    assert book.bad_references == dict.fromkeys(BAD_REFERENCE_KINDS, 0)
    # the removed orders are gone: further references are unknown
    assert len(book.apply(events(E(1, 1), D(3), X(4, 1), seq0=20))) == 0
    assert book.bad_references["unknown_order"] == 3


def test_replace_moves_price_keeps_side_and_locate():
    book = Book(depth=4)
    book.apply(events(A(1, "S", 100, 10_100, locate=9), A(2, "S", 200, 10_100, locate=9),
                      A(3, "S", 300, 10_300, locate=9)))
    # the header locate of U is wrong on purpose: the order's stored locate wins
    rec = book.apply(events(U(1, 11, 150, 10_300, locate=4), seq0=10))
    assert (chr(rec[0]["msg_type"]), rec[0]["order_ref"], rec[0]["shares"], rec[0]["price"],
            chr(rec[0]["side"]), rec[0]["stock_locate"]) == ("U", 11, 150, 10_300, "S", 9)
    assert lv(book, 9, "S") == [(10_100, 200, 1), (10_300, 450, 2)]
    assert lv(book, 4, "S") == [] and lv(book, 4, "B") == []
    # replace at the same price: it loses priority but the aggregate keeps one order
    rec = book.apply(events(U(2, 12, 50, 10_100), U(12, 12, 60, 10_100), seq0=20))
    assert top(rec[0], "S")[0] == (10_100, 50, 1) and top(rec[1], "S")[0] == (10_100, 60, 1)
    assert book.live_orders == 3
    rec = book.apply(events(E(1, 1), E(11, 150), seq0=30))
    assert book.bad_references["unknown_order"] == 1 and len(rec) == 1
    assert lv(book, 9, "S") == [(10_100, 60, 1), (10_300, 300, 1)]


def test_locates_are_isolated_and_use_the_stored_locate():
    book = Book(depth=2)
    book.apply(events(A(1, "B", 100, 5_000, locate=1), A(2, "B", 100, 5_000, locate=2),
                      A(3, "S", 100, 5_100, locate=2), A(4, "B", 70, 5_000, locate=65535)))
    rec = book.apply(events(E(2, 40, locate=1), P("B", 10, 5_050, locate=1), seq0=10))
    assert rec[0]["stock_locate"] == 2 and top(rec[0], "B") == [(5_000, 60, 1)]
    assert top(rec[0], "S") == [(5_100, 100, 1)]
    assert lv(book, 1, "B") == [(5_000, 100, 1)] and lv(book, 65535, "B") == [(5_000, 70, 1)]
    # P: book unchanged, trade fields recorded, top of the P's own locate
    p = rec[1]
    assert (chr(p["msg_type"]), p["order_ref"], p["shares"], p["price"], chr(p["side"]),
            p["stock_locate"]) == ("P", 0, 10, 5_050, "B", 1)
    assert top(p, "B") == [(5_000, 100, 1)] and top(p, "S") == []
    assert book.live_orders == 4


# --------------------------------------------------------------------------------------------
# Bad references
# --------------------------------------------------------------------------------------------

def test_bad_references_counted_and_harmless():
    book = Book(depth=2)
    book.apply(events(A(1, "B", 100, 10_000), A(2, "S", 100, 10_100)))
    rec = book.apply(events(
        E(99, 10),                   # 10 unknown
        A(1, "S", 500, 10_050),      # 11 duplicate
        A(3, " ", 100, 10_000),      # 12 bad side
        A(4, "B", 0, 10_000),        # 13 zero shares
        U(1, 2, 100, 10_000),        # 14 duplicate (new ref live): original kept
        U(1, 5, 0, 10_000),          # 15 zero shares: original kept
        U(98, 6, 100, 10_000),       # 16 unknown
        X(2, 150),                   # 17 over-execution: order removed, 100 taken off
        D(2),                        # 18 unknown (removed above)
        seq0=10))
    assert book.bad_references == {"unknown_order": 3, "over_execution": 1,
                                   "duplicate_order": 2, "bad_side": 1, "zero_shares": 2}
    assert book.first_bad == [("unknown_order", 10), ("duplicate_order", 11), ("bad_side", 12),
                              ("zero_shares", 13), ("duplicate_order", 14), ("zero_shares", 15),
                              ("unknown_order", 16), ("over_execution", 17),
                              ("unknown_order", 18)]
    assert len(rec) == 1 and rec[0]["seq"] == 17 and rec[0]["shares"] == 100
    assert top(rec[0], "S") == [] and top(rec[0], "B") == [(10_000, 100, 1)]
    assert book.live_orders == 1 and lv(book, 1, "B") == [(10_000, 100, 1)]
    # the surviving order still behaves
    rec = book.apply(events(E(1, 100), seq0=30))
    assert len(rec) == 1 and book.live_orders == 0 and lv(book, 1, "B") == []


def test_first_bad_keeps_the_first_few_per_kind():
    book = Book()
    book.apply(events(*[D(10_000 + i) for i in range(3 * FIRST_BAD_KEPT)], seq0=100))
    assert book.bad_references["unknown_order"] == 3 * FIRST_BAD_KEPT
    assert book.first_bad == [("unknown_order", 100 + i) for i in range(FIRST_BAD_KEPT)]


def test_input_errors_name_the_sequence_number():
    book = Book()
    with pytest.raises(TypeError):
        book.apply(np.zeros(3, np.uint64))
    bad = events(A(1, "B", 1, 1), ("Q", {}), A(2, "B", 1, 1), seq0=41)
    with pytest.raises(ValueError, match="seq 42"):
        book.apply(bad)
    assert book.live_orders == 1  # the events before the bad one were applied
    with pytest.raises(ValueError, match="seq 40"):
        book.apply(events(A(3, "B", 1, 1), seq0=40))
    ev = events(A(3, "B", 1, 1), A(4, "B", 1, 1), seq0=50)
    ev["seq"][1] = 50
    with pytest.raises(ValueError, match="seq 50 follows seq 50"):
        Book().apply(ev)
    with pytest.raises(ValueError):
        Book(depth=0)
    with pytest.raises(ValueError):
        book.levels(1, "X")


# --------------------------------------------------------------------------------------------
# Growth, chunking, differential
# --------------------------------------------------------------------------------------------

def test_order_table_and_level_pool_grow():
    rng = np.random.default_rng(5)
    n = 6000
    rows = [A(i + 1, "BS"[i % 2], int(rng.integers(2, 100)), 10_000 + int(rng.integers(0, 3000)),
              locate=int(rng.integers(0, 40))) for i in range(n)]
    rows += [D(i + 1) for i in range(0, n, 3)]
    rows += [X(i + 1, 1) for i in range(1, n, 3)]
    ev = events(*rows)
    book = Book(depth=4, order_capacity=16)
    got = book.apply(ev)
    assert book.order_capacity >= n / 0.6 and book.live_orders == n - n // 3
    ref = RefBook(4)
    assert_records_equal(got, ref.apply(ev))
    for loc in range(40):
        for code, s in ((SIDE_BUY, "B"), (SIDE_SELL, "S")):
            assert lv(book, loc, s) == ref.side_levels(loc, code)
    assert book.price_levels == sum(len(ref.side_levels(loc, c)) for loc in range(40)
                                    for c in (SIDE_BUY, SIDE_SELL))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_stream_matches_reference_book(seed):
    ev = synthetic_stream(4000, seed=seed, bad_rate=0.03)
    depth = (3, 8, 5)[seed - 1]
    ref = RefBook(depth)
    want = ref.apply(ev)
    book = Book(depth=depth, order_capacity=64)
    got = book.apply(ev)
    assert_records_equal(got, want)
    assert book.bad_references == ref.bad
    assert all(book.bad_references[k] > 0 for k in BAD_REFERENCE_KINDS)
    assert book.live_orders == len(ref.orders)
    assert book.book_updates == len(want)
    for loc in (1, 2, 3, 7):
        for code, s in ((SIDE_BUY, "B"), (SIDE_SELL, "S")):
            assert lv(book, loc, s) == ref.side_levels(loc, code)


def test_chunked_apply_equals_one_shot():
    ev = synthetic_stream(5000, seed=11, bad_rate=0.02)
    whole, bad = replay(ev, depth=6)
    book = Book(depth=6, order_capacity=16)
    cuts = np.sort(np.random.default_rng(0).choice(np.arange(1, len(ev)), 12, replace=False))
    parts = [book.apply(chunk) for chunk in np.split(ev, cuts)]
    parts.append(book.apply(ev[:0]))
    assert_records_equal(np.concatenate(parts), whole)
    assert book.bad_references == bad and book.book_updates == len(whole)
    assert bytes(np.concatenate(parts)) == bytes(whole)  # padding zeroed too: bit-exact


def test_top_levels_refill_from_deeper_levels_and_out_buffer():
    book = Book(depth=2)
    buf = np.zeros(16, book_record_dtype(2))
    rec = book.apply(events(A(1, "B", 10, 100), A(2, "B", 20, 99), A(3, "B", 30, 98),
                            A(4, "B", 40, 97), D(1), E(3, 30), X(2, 5), A(5, "B", 1, 101)),
                     out=buf)
    assert rec.base is buf.base or np.shares_memory(rec, buf)
    assert top(rec[3], "B") == [(100, 10, 1), (99, 20, 1)]
    assert top(rec[4], "B") == [(99, 20, 1), (98, 30, 1)]     # 98 pulled in from below
    assert top(rec[5], "B") == [(99, 20, 1), (97, 40, 1)]     # 97 pulled in from below
    assert top(rec[6], "B") == [(99, 15, 1), (97, 40, 1)]
    assert top(rec[7], "B") == [(101, 1, 1), (99, 15, 1)]     # new best pushes 97 out
    assert lv(book, 1, "B") == [(101, 1, 1), (99, 15, 1), (97, 40, 1)]
    with pytest.raises(TypeError):
        book.apply(events(D(5), seq0=20), out=np.zeros(1, book_record_dtype(3)))


# --------------------------------------------------------------------------------------------
# Order table: window ring and overflow table
# --------------------------------------------------------------------------------------------

def _check_against_reference(ev, depth, *, order_capacity, chunks=1, locates=(1, 2, 3, 7)):
    ref = RefBook(depth)
    want = ref.apply(ev)
    book = Book(depth=depth, order_capacity=order_capacity)
    cuts = np.linspace(0, len(ev), chunks + 1).astype(int)
    got = np.concatenate([book.apply(ev[a:b]) for a, b in zip(cuts[:-1], cuts[1:])])
    assert_records_equal(got, want)
    assert bytes(got) == bytes(replay(ev, depth=depth)[0])
    assert book.bad_references == ref.bad
    assert book.live_orders == len(ref.orders)
    for loc in locates:
        for code, s in ((SIDE_BUY, "B"), (SIDE_SELL, "S")):
            assert lv(book, loc, s) == ref.side_levels(loc, code)
    return book


def test_old_orders_overtaken_by_the_window_stay_live():
    # Few live orders keep the ring at 16 slots while the references run far past it: the
    # long-lived orders 1 and 2 move to the overflow table and stay fully usable there.
    rows = [A(1, "B", 500, 10_000), A(2, "S", 300, 10_200)]
    for r in range(3, 400):
        rows += [A(r, "BS"[r % 2], 100, 10_000 - 100 * (r % 3) if r % 2 == 0 else 10_300),
                 D(r)]
    rows += [E(1, 200), X(2, 100), U(1, 1, 50, 9_900), A(1, "B", 1, 1), U(2, 400, 70, 10_100),
             A(401, "B", 10, 9_800), U(400, 2, 10, 10_100), C(2, 10, 10_150), D(1), D(401)]
    ev = events(*rows)
    book = _check_against_reference(ev, 3, order_capacity=16, chunks=5, locates=(1,))
    assert book.order_capacity == 16 and book.live_orders == 0


@pytest.mark.parametrize("seed", [4, 5])
def test_out_of_order_references_match_reference_book(seed):
    # References permuted: adds arrive below, inside and far above the ring window.
    ev = synthetic_stream(3000, seed=seed, bad_rate=0.03)
    refs = np.unique(np.concatenate([ev["order_ref"], ev["new_order_ref"]]))
    perm = dict(zip(refs.tolist(), np.random.default_rng(seed).permutation(refs).tolist()))
    for name in ("order_ref", "new_order_ref"):
        ev[name] = [perm[int(x)] for x in ev[name]]
    _check_against_reference(ev, 4, order_capacity=16, chunks=7)


def test_references_near_the_top_of_the_u64_range():
    # The last order added gets reference 2**64 - 1: the window cannot leave R/4 above it.
    ev = synthetic_stream(2000, seed=6, bad_rate=0.03)
    top_ref = max(int(ev["order_ref"][ev["order_ref"] < 10**12].max()),
                  int(ev["new_order_ref"].max()))
    for name in ("order_ref", "new_order_ref"):
        ev[name] += np.uint64(2**64 - 1 - top_ref)
    _check_against_reference(ev, 2, order_capacity=16, chunks=3)
    _check_against_reference(ev, 3, order_capacity=4096, chunks=2)
    # A small reference right after the top one must not be taken for part of the window.
    top_ref = 2**64 - 1
    ev = events(A(top_ref, "B", 100, 10_000), A(3, "S", 50, 10_100), E(3, 10),
                U(3, 4, 20, 10_200), A(top_ref - 1, "B", 7, 9_900), X(4, 5), D(top_ref),
                E(4, 15), D(top_ref - 1))
    book = _check_against_reference(ev, 2, order_capacity=16, locates=(1,))
    assert book.live_orders == 0 and book.bad_references == dict.fromkeys(BAD_REFERENCE_KINDS, 0)
