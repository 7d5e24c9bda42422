"""Tests of hftaccel.feeds.synthetic: determinism, self-consistency, mix, symbols, chunking,
bounded memory, clustered arrivals, and the ITCH encode/decode round trip."""

from __future__ import annotations

import datetime as dt
import gzip
import tracemalloc

import numpy as np
import pytest

from hftaccel.feeds import itch, synthetic
from hftaccel.spec import itch as spec


def _stream(n, **kw):
    return itch.concat(list(synthetic.generate(n, **kw)))


def _bytes(n, **kw):
    return b"".join(itch.frame(*itch.encode(c)) for c in synthetic.generate(n, **kw))


def _in_seq_order(messages):
    """(seq, msg_type) of every message, in seq order."""
    seqs = np.concatenate([a["seq"] for a in messages.values()])
    types = np.concatenate([np.full(len(a), t) for t, a in messages.items()])
    order = np.argsort(seqs, kind="stable")
    return seqs[order], types[order]


class BookChecker:
    """A plain dict-based book, independent of the generator, that asserts the feed's
    self-consistency message by message."""

    def __init__(self):
        self.orders = {}            # ref -> [locate, side, price, shares]
        self.levels = {}            # (locate, side) -> {price: shares}
        self.max_ref = 0
        self.max_match = 0

    def _level(self, loc, side):
        return self.levels.setdefault((loc, side), {})

    def _best(self, loc, side):
        lv = self.levels.get((loc, side))
        if not lv:
            return None
        return max(lv) if side == "B" else min(lv)

    def _add(self, ref, loc, side, price, shares, what):
        assert ref > self.max_ref, f"{what}: order reference {ref} not increasing"
        assert ref not in self.orders
        assert shares > 0 and price > 0 and price % synthetic.TICK == 0, what
        self.max_ref = ref
        other = self._best(loc, "S" if side == "B" else "B")
        if other is not None:
            assert (price < other) if side == "B" else (price > other), \
                f"{what}: {side} at {price} locks/crosses opposite best {other}"
        self.orders[ref] = [loc, side, price, shares]
        lv = self._level(loc, side)
        lv[price] = lv.get(price, 0) + shares

    def _reduce(self, ref, loc, shares, what):
        assert ref in self.orders, f"{what}: unknown order reference {ref}"
        o = self.orders[ref]
        assert o[0] == loc, f"{what}: order {ref} belongs to locate {o[0]}, not {loc}"
        assert 0 < shares <= o[3], f"{what}: {shares} shares of an order with {o[3]} left"
        lv = self._level(loc, o[1])
        lv[o[2]] -= shares
        if lv[o[2]] == 0:
            del lv[o[2]]
        o[3] -= shares
        if o[3] == 0:
            del self.orders[ref]
        return o

    def _match(self, m, what):
        assert m > self.max_match, f"{what}: match number {m} not increasing"
        self.max_match = m

    def apply(self, ev):
        t = chr(ev["msg_type"])
        loc, ref = int(ev["stock_locate"]), int(ev["order_ref"])
        what = f"seq {int(ev['seq'])} {t}"
        if t in "AF":
            self._add(ref, loc, chr(ev["side"]), int(ev["price"]), int(ev["shares"]), what)
        elif t in "EC":
            assert ref in self.orders, f"{what}: unknown order reference {ref}"
            o = self.orders[ref]
            assert o[2] == self._best(loc, o[1]), f"{what}: execution away from the touch"
            if t == "C":
                assert int(ev["price"]) == o[2]
            self._reduce(ref, loc, int(ev["shares"]), what)
        elif t == "X":
            o = self._reduce(ref, loc, int(ev["shares"]), what)
            assert o[3] > 0, f"{what}: a cancel that removes the whole order should be a D"
        elif t == "D":
            assert ref in self.orders, f"{what}: unknown order reference {ref}"
            self._reduce(ref, loc, self.orders[ref][3], what)
        elif t == "U":
            assert ref in self.orders, f"{what}: unknown order reference {ref}"
            side = self.orders[ref][1]
            self._reduce(ref, loc, self.orders[ref][3], what)
            self._add(int(ev["new_order_ref"]), loc, side, int(ev["price"]), int(ev["shares"]),
                      what)
        elif t == "P":
            assert ref == 0 and int(ev["shares"]) > 0
        else:
            raise AssertionError(f"{what}: unexpected message type")
        bid, ask = self._best(loc, "B"), self._best(loc, "S")
        assert bid is None or ask is None or bid < ask, f"{what}: crossed book {bid} >= {ask}"


def test_same_seed_same_bytes_other_seed_differs():
    a = _bytes(30_000, n_symbols=100, seed=7)
    b = _bytes(30_000, n_symbols=100, seed=7)
    c = _bytes(30_000, n_symbols=100, seed=8)
    assert a == b
    assert a != c and len(a) > 30_000 * 19


@pytest.mark.parametrize("hawkes", [False, True])
def test_self_consistent_book(hawkes):
    n = 120_000 if not hawkes else 40_000
    messages = _stream(n, n_symbols=150, seed=11, hawkes=hawkes)
    events = itch.order_events(messages)
    assert events.shape[0] == n
    checker = BookChecker()
    for ev in events:
        checker.apply(ev)
    # E/C/P match numbers are unique and increasing
    seqs = np.concatenate([messages[t]["seq"] for t in "ECP"])
    matches = np.concatenate([messages[t]["match_number"] for t in "ECP"])[np.argsort(seqs)]
    assert (np.diff(matches.astype(np.int64)) > 0).all()
    # the book stayed populated: a realistic feed, not one that drains
    assert len(checker.orders) > 150 * 4


def test_external_oracle_itch_book_sees_a_clean_feed(tmp_path):
    ib = pytest.importorskip("itch_book")
    path = tmp_path / "syn.itch"
    synthetic.write_itch(path, 60_000, n_symbols=200, seed=5)
    feed = ib.open(str(path), date=dt.date(2024, 1, 2), price_type="fixed")
    rows = sum(len(b.bbo["seq"]) for b in feed.batches(tables=("bbo",)))
    st = feed.stats
    assert rows > 0
    assert st["messages"] == 60_000 + 200 + 6
    for key in ("unknown", "malformed", "missing_ref", "dup_ref", "rejected", "clamped",
                "crossed_books"):
        assert st[key] == 0, (key, st)
    assert st["last_event"] == "C"


def test_message_mix():
    n = 200_000
    c = itch.counts(_stream(n, n_symbols=500, seed=2, framing=False))
    share = {k: v / n for k, v in c.items()}
    assert set(share) == set("AFECXDUP")
    adds = share["A"] + share["F"]
    assert 0.40 <= adds <= 0.50
    assert 0.35 <= share["X"] + share["D"] <= 0.45
    assert 0.05 <= share["E"] + share["C"] <= 0.08
    assert 0.04 <= share["U"] <= 0.06
    assert 0.01 <= share["P"] <= 0.04
    assert 0.03 <= share["F"] / adds <= 0.2


def test_many_symbols_with_zipf_activity():
    messages = _stream(500_000, n_symbols=3000, seed=4, chunk_size=250_000)
    ev = itch.order_events(messages)
    per_locate = np.bincount(ev["stock_locate"], minlength=3001)
    assert per_locate[0] == 0
    assert (per_locate > 0).sum() >= 2000
    top = np.sort(per_locate)[::-1]
    assert top[0] > 20 * np.median(per_locate[1:])          # heavy head
    names = messages["R"]["stock"]
    assert len(set(names.tolist())) == 3000 and names[0] == b"SYM00001"
    assert (messages["R"]["stock_locate"] == np.arange(1, 3001)).all()
    # A, F and P carry the symbol of their locate
    for t in "AFP":
        assert (messages[t]["stock"] == names[messages[t]["stock_locate"] - 1]).all()


def test_symbol_activity_follows_zipf_weights():
    n, k = 200_000, 40
    ev = itch.order_events(_stream(n, n_symbols=k, seed=13, framing=False))
    share = np.sort(np.bincount(ev["stock_locate"], minlength=k + 1)[1:])[::-1] / n
    zipf = 1.0 / np.arange(1, k + 1)
    assert np.abs(share - zipf / zipf.sum()).max() < 0.005
    flat = itch.order_events(_stream(n, n_symbols=k, seed=13, framing=False, zipf_exponent=0))
    share = np.bincount(flat["stock_locate"], minlength=k + 1)[1:] / n
    assert np.abs(share - 1 / k).max() < 0.003


def test_framing_order_and_timestamps():
    messages = _stream(20_000, n_symbols=50, seed=1, start_ns=36_000_000_000_000)
    seqs, types = _in_seq_order(messages)
    assert (seqs == np.arange(seqs.shape[0])).all()
    assert types[0] == "S" and (types[1:51] == "R").all() and (types[51:53] == "S").all()
    assert (types[-3:] == "S").all()
    assert messages["S"]["event_code"].tolist() == [b"O", b"S", b"Q", b"M", b"E", b"C"]
    ts = np.concatenate([a["timestamp"] for a in messages.values()])
    allseq = np.concatenate([a["seq"] for a in messages.values()])
    ts = ts[np.argsort(allseq)]
    assert ts[0] == 36_000_000_000_000 and (np.diff(ts.astype(np.int64)) >= 0).all()
    for t in "AFUP":
        assert (messages[t]["price"] % synthetic.TICK == 0).all()
    assert (messages["C"]["execution_price"] % synthetic.TICK == 0).all()
    assert set(messages["F"]["attribution"].tolist()) <= set(synthetic.MPIDS)
    assert set(messages["C"]["printable"].tolist()) == {b"Y", b"N"}


def test_chunked_equals_one_shot():
    kw = dict(n_symbols=80, seed=9, hawkes=True)
    one = _bytes(60_000, chunk_size=60_000, **kw)
    chunks = list(synthetic.generate(60_000, chunk_size=7_777, **kw))
    assert len(chunks) == 8
    assert b"".join(itch.frame(*itch.encode(c)) for c in chunks) == one


def test_decode_encode_round_trip():
    for chunk in synthetic.generate(40_000, n_symbols=120, seed=3, chunk_size=15_000):
        res = itch.decode(itch.frame(*itch.encode(chunk)), seq_base=int(min(
            a["seq"].min() for a in chunk.values())))
        assert res.n_messages == itch.n_messages(chunk)
        assert res.messages.keys() == chunk.keys()
        for t, arr in chunk.items():
            got = res.messages[t]
            for name in spec.decoded_dtype(t).names:
                if name != "offset":
                    assert (got[name] == arr[name]).all(), (t, name)


def test_write_itch_gzip_reads_back(tmp_path):
    path = tmp_path / "syn.itch.gz"
    n_bytes = synthetic.write_itch(path, 25_000, n_symbols=40, seed=6, chunk_size=10_000)
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    assert len(raw) == n_bytes
    assert raw == _bytes(25_000, n_symbols=40, seed=6)
    assert itch.read_file(path).n_messages == 25_000 + 40 + 6


def _peak_bytes(n):
    tracemalloc.start()
    try:
        for chunk in synthetic.generate(n, n_symbols=1000, seed=0, chunk_size=250_000):
            del chunk
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_bounded_by_chunk_not_by_length():
    list(synthetic.generate(10, n_symbols=1000))      # compile outside the measurement
    small = _peak_bytes(500_000)
    large = _peak_bytes(2_000_000)
    assert large < 1.2 * small
    # one chunk of columns + its messages dict + generator state: ~ 150 bytes a message
    assert large < 250_000 * 200 + 30_000_000


def _vmr(hawkes):
    messages = _stream(100_000, n_symbols=20, seed=12, hawkes=hawkes, framing=False,
                       rate_hz=100_000.0, hawkes_decay_ns=200_000.0)
    ts = np.concatenate([a["timestamp"] for a in messages.values()]).astype(np.int64)
    counts = np.bincount((ts - ts.min()) // 1_000_000)     # 1 ms bins
    return counts.var() / counts.mean()


def test_hawkes_arrivals_cluster():
    poisson, hawkes = _vmr(False), _vmr(True)
    assert 0.7 < poisson < 1.4            # Poisson: variance equals the mean
    assert hawkes > 4 * poisson


@pytest.mark.parametrize("kw", [dict(n_symbols=0), dict(n_symbols=70_000), dict(chunk_size=0),
                                dict(hawkes_branching=1.0), dict(mix={"Z": 1.0}),
                                dict(mix={"D": 1.0}), dict(start_ns=-1), dict(rate_hz=0)])
def test_bad_arguments_raise(kw):
    with pytest.raises(ValueError, match="synthetic ITCH"):
        synthetic.generate(10, **kw)


def test_bad_n_messages_raises():
    with pytest.raises(ValueError, match="n_messages"):
        synthetic.generate(-1)
