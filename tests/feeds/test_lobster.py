"""hftaccel.feeds.lobster: loader (exact times, halts, gzip, malformed rows) and the conversion to
ITCH 5.0, checked by replaying it through the golden book and the third-party itch_book engine
against LOBSTER's own orderbook file, row by row."""

import csv
import datetime as dt
import gzip
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from hftaccel.backends.check import check_level1
from hftaccel.feeds import itch, lobster
from hftaccel.golden import book as golden_book
from hftaccel.spec import itch as spec

DATA = Path(lobster.__file__).resolve().parents[1] / "data"
STEM = "AMZN_2012-06-21_34200000_57600000"
MESSAGE_GZ = DATA / f"{STEM}_message_1.csv.gz"
ORDERBOOK_GZ = DATA / f"{STEM}_orderbook_1.csv.gz"
SAMPLE_PCAP = DATA / "AMZN_2012-06-21.pcap"
SAMPLE_FIRST_SEQ = 1     # scripts/make_sample.py


def _write(path: Path, text: str, gz: bool = False) -> Path:
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _decimal_ns(text: str) -> int:
    return int(Decimal(text) * 1_000_000_000)


# ------------------------------------------------------------------------------------------
# Loader
# ------------------------------------------------------------------------------------------

HAND_MESSAGES = """\
34200.017459617,5,0,1,2238200,-1
34200.18960767,1,11885113,21,2238100,1
34200.190226476,4,11885113,21,2238100,1
34201,2,11534792,26,2237500,1
34201.1,7,0,0,-1,-1
34201.999999999,7,0,0,0,-1
57599.999999999,7,0,0,1,-1
"""


def test_load_messages_exact_times_and_columns(tmp_path):
    m = lobster.load_messages(_write(tmp_path / "m.csv", HAND_MESSAGES))
    assert m.dtype == lobster.MESSAGE_DTYPE
    rows = list(csv.reader(HAND_MESSAGES.splitlines()))
    assert m["time_ns"].tolist() == [_decimal_ns(r[0]) for r in rows]
    assert m["time_ns"][0] == 34_200_017_459_617
    assert m["time_ns"][1] == 34_200_189_607_670          # 8 decimals: trailing zero implied
    assert m["time_ns"][3] == 34_201_000_000_000          # no decimals
    assert m["time_ns"][6] == 57_599_999_999_999          # float64 * 1e9 would not be exact here
    for k, name in enumerate(["type", "order_id", "size", "price", "direction"], start=1):
        assert m[name].tolist() == [int(r[k]) for r in rows]
    assert m["type"][4:].tolist() == [7, 7, 7] and m["price"][4:].tolist() == [-1, 0, 1]


def test_load_messages_gzip_equals_plain(tmp_path):
    plain = lobster.load_messages(_write(tmp_path / "m.csv", HAND_MESSAGES))
    gz = lobster.load_messages(_write(tmp_path / "m.csv.gz", HAND_MESSAGES, gz=True))
    assert np.array_equal(plain, gz)


def test_real_message_file_times_exact():
    """Every time of the vendored AMZN file against Python's Decimal parse of the same text."""
    m = lobster.load_messages(MESSAGE_GZ)
    with gzip.open(MESSAGE_GZ, "rt") as fh:
        rows = list(csv.reader(fh))
    assert len(m) == len(rows) == 57_515
    assert m["time_ns"].tolist() == [_decimal_ns(r[0]) for r in rows]
    assert m["order_id"].tolist() == [int(r[2]) for r in rows]
    assert m["price"].tolist() == [int(r[4]) for r in rows]


@pytest.mark.parametrize("bad_line, needle", [
    ("34200.5,1,7,100,2238100", "5 columns, expected 6"),
    ("34200.5,1,7,abc,2238100,1", "column 4"),
    ("34200.1234567891,1,7,100,2238100,1", "at most 9 decimals"),
    ("34x00.5,1,7,100,2238100,1", "time .34x00.5. is not seconds"),
    (".5,1,7,100,2238100,1", r"time .\.5. is not seconds"),
    ("34200.5,1,7,100,,1", "empty price cell"),
    ("34200.5,6,7,100,2238100,1", "unknown event type 6"),
    ("34200.5,1,7,100,2238100,0", "direction 0"),
    ("34200.5,1,7,-5,2238100,1", "size -5"),
    ("34100.5,1,7,100,2238100,1", "time goes backwards"),
])
def test_load_messages_malformed_names_file_and_line(tmp_path, bad_line, needle):
    text = "34200.017459617,5,0,1,2238200,-1\n" + bad_line + "\n34300,3,7,100,2238100,1\n"
    path = _write(tmp_path / "bad_message_1.csv", text)
    with pytest.raises(lobster.LobsterError, match=needle) as exc:
        lobster.load_messages(path)
    assert exc.value.line == 2
    assert str(path) in str(exc.value) and "line 2" in str(exc.value)


HAND_BOOK = """\
2239500,100,2231800,100,2239600,50,2231700,10
2239500,100,2238100,21,2239600,50,9999999999,0
9999999999,0,-9999999999,0,9999999999,0,-9999999999,0
"""


def test_load_orderbook_levels_gzip_and_empty_markers(tmp_path):
    ob = lobster.load_orderbook(_write(tmp_path / "o.csv", HAND_BOOK))
    assert ob.dtype == lobster.orderbook_dtype(2)
    assert ob["ask_price"].tolist() == [[2239500, 2239600], [2239500, 2239600],
                                        [lobster.EMPTY_ASK_PRICE] * 2]
    assert ob["bid_size"].tolist() == [[100, 10], [21, 0], [0, 0]]
    assert ob["bid_price"][2, 0] == lobster.EMPTY_BID_PRICE
    one = lobster.load_orderbook(_write(tmp_path / "o.csv.gz", HAND_BOOK, gz=True), levels=1)
    assert one.dtype == lobster.orderbook_dtype(1)
    for k in ("ask_price", "ask_size", "bid_price", "bid_size"):
        assert np.array_equal(one[k][:, 0], ob[k][:, 0])
    top = lobster.level1(ob)
    assert top["bid_price"].tolist() == [2231800, 2238100, 0]
    assert top["ask_shares"].tolist() == [100, 100, 0]


@pytest.mark.parametrize("text, needle, line", [
    ("1,2,3\n", "3 columns", 1),
    ("1,2,3,4\n1,2,3\n", "3 columns, expected 4", 2),
    ("1,2,3,4\n1,2,x,4\n", "column 3", 2),
    ("1,2,3,4\n1,-2,3,4\n", "negative size", 2),
])
def test_load_orderbook_malformed(tmp_path, text, needle, line):
    path = _write(tmp_path / "bad_orderbook_1.csv", text)
    with pytest.raises(lobster.LobsterError, match=needle) as exc:
        lobster.load_orderbook(path)
    assert exc.value.line == line and str(path) in str(exc.value)


def test_error_line_counts_blank_lines(tmp_path):
    path = _write(tmp_path / "m.csv", "34200.5,1,7,100,2238100,1\n\n34200.6,1,8,100,2238100,2\n")
    with pytest.raises(lobster.LobsterError, match="line 3: direction 2"):
        lobster.load_messages(path)


def test_empty_files_are_errors(tmp_path):
    with pytest.raises(lobster.LobsterError, match="empty message file"):
        lobster.load_messages(_write(tmp_path / "m.csv", ""))
    with pytest.raises(lobster.LobsterError, match="empty orderbook file"):
        lobster.load_orderbook(_write(tmp_path / "o.csv.gz", "", gz=True))


def test_load_orderbook_too_many_levels(tmp_path):
    with pytest.raises(lobster.LobsterError, match="3 levels requested, the file has 2"):
        lobster.load_orderbook(_write(tmp_path / "o.csv", HAND_BOOK), levels=3)


# ------------------------------------------------------------------------------------------
# Conversion: a hand-made day whose synthesized messages are worked out by hand
# ------------------------------------------------------------------------------------------

# time, type, id, size, price, direction ; book after: ask px, ask sz, bid px, bid sz
SCENARIO = [
    ("34200.000000100", 5, 0, 10, 1000500, -1, 1000500, 100, 1000000, 200),  # pre-open book
    ("34200.5", 1, 10, 50, 1000100, 1, 1000500, 100, 1000100, 50),
    ("34201", 4, 10, 50, 1000100, 1, 1000500, 100, 1000000, 200),
    ("34202", 4, 7, 30, 1000000, 1, 1000500, 100, 1000000, 170),     # unknown order 7
    ("34203", 3, 7, 20, 1000000, 1, 1000500, 100, 1000000, 150),
    ("34204", 4, 8, 150, 1000000, 1, 1000500, 100, 999900, 300),     # depth revealed
    ("34205", 7, 0, 0, -1, -1, 1000500, 100, 999900, 300),           # halt
    ("34206", 7, 0, 0, 0, -1, 1000500, 100, 999900, 300),            # quotation only
    ("34207", 7, 0, 0, 1, -1, 1000500, 100, 999900, 300),            # trading
    ("34208", 1, 11, 100, 1000400, -1, 1000400, 100, 999900, 300),
    ("34209", 2, 11, 40, 1000400, -1, 1000400, 60, 999900, 300),
    ("34210", 1, 12, 10, 1000300, -1, 1000300, 10, 999900, 300),
    ("34211", 4, 12, 10, 1000300, -1, 1000500, 100, 999900, 300),    # 11 left at depth
    ("34212", 3, 13, 100, 1000500, -1, 9999999999, 0, 999900, 300),  # ask side empties
    ("34213", 5, 0, 5, 999950, 1, 9999999999, 0, 999900, 300),
]
SCENARIO_SYNTH = {"add_unknown_order": 3, "add_hidden_depth": 3, "cancel_fill": 1,
                  "delete_fill": 2, "cancel_stale": 0, "delete_stale": 1, "total": 10}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    d = tmp_path_factory.mktemp("lobster")
    m = _write(d / "X_2012-01-02_0_1_message_1.csv", "".join(
        ",".join(str(v) for v in r[:6]) + "\n" for r in SCENARIO))
    o = _write(d / "X_2012-01-02_0_1_orderbook_1.csv", "".join(
        ",".join(str(v) for v in r[6:]) + "\n" for r in SCENARIO))
    msgs, ob = lobster.load_messages(m), lobster.load_orderbook(o)
    return msgs, ob, lobster.to_itch(msgs, ob, stock="XYZ", stock_locate=7, tracking_number=3)


def _stream(messages):
    """(seq, type, record) of every message, in seq order."""
    items = [(int(r["seq"]), t, r) for t, a in messages.items() for r in a]
    return sorted(items, key=lambda x: x[0])


def test_scenario_synthesized_counts(scenario):
    _, _, conv = scenario
    assert conv.synthesized == SCENARIO_SYNTH
    assert conv.unmatched_rows == 0
    assert conv.first_filler_ref == 14


def test_scenario_replays_lobster_book(scenario):
    msgs, ob, conv = scenario
    records, bad = golden_book.replay(itch.order_events(conv.messages))
    assert not any(bad.values()), bad
    mism = check_level1(records, conv.main_seq, ob).mask
    assert not mism.any(), np.flatnonzero(mism)


def test_scenario_stream_layout(scenario):
    msgs, _, conv = scenario
    stream = _stream(conv.messages)
    assert [s for s, _, _ in stream] == list(range(len(stream)))
    codes = [(t, r["event_code"]) for _, t, r in stream if t == "S"]
    assert [c for _, c in codes] == [b"O", b"S", b"Q", b"M", b"E", b"C"]
    types = "".join(t for _, t, _ in stream)
    # O S R, the pre-open book (two fillers), Q, row 0 (P) ...; M E C at the end.
    assert types[:7] == "SSRAASP" and types[-3:] == "SSS"
    ts = [int(r["timestamp"]) for _, _, r in stream]
    assert ts == sorted(ts)
    assert ts[5] == ts[4] == ts[3] == lobster.FRAMING_TIMES_NS["Q"]
    want = {1: "A", 2: "X", 3: "D", 4: "E", 5: "P", 7: "H"}
    by_seq = {s: (t, r) for s, t, r in stream}
    for i, row in enumerate(msgs):
        t, r = by_seq[int(conv.main_seq[i])]
        assert t == want[int(row["type"])] and r["timestamp"] == row["time_ns"]
    h = conv.messages["H"]
    assert h["trading_state"].tolist() == [b"H", b"Q", b"T"]
    assert h["stock"].tolist() == [b"XYZ     "] * 3
    for t, a in conv.messages.items():
        assert (a["tracking_number"] == 3).all()
        assert (a["stock_locate"] == (0 if t == "S" else 7)).all()
    p = conv.messages["P"]
    assert p["order_ref"].tolist() == [0, 0] and p["side"].tolist() == [b"S", b"B"]
    exe = sorted(list(conv.messages["E"]) + list(p), key=lambda r: r["seq"])
    assert [int(r["match_number"]) for r in exe] == list(range(1, len(exe) + 1))


def test_without_orderbook_only_unknown_orders_are_added(scenario):
    msgs, _, _ = scenario
    conv = lobster.to_itch(msgs)
    assert conv.synthesized["add_unknown_order"] == conv.synthesized["total"] == 3
    _, bad = golden_book.replay(itch.order_events(conv.messages))
    assert not any(bad.values()), bad


def test_to_itch_rejects_bad_input(scenario):
    msgs, ob, _ = scenario
    with pytest.raises(ValueError, match="MESSAGE_DTYPE"):
        lobster.to_itch(np.zeros(3))
    with pytest.raises(ValueError, match="orderbook has 14 rows"):
        lobster.to_itch(msgs, ob[1:])
    with pytest.raises(ValueError, match="1 to 8 ASCII"):
        lobster.to_itch(msgs, stock="TOOLONGSYM")
    with pytest.raises(ValueError, match="stock_locate"):
        lobster.to_itch(msgs, stock_locate=70000)
    dup = msgs.copy()
    dup["order_id"][11] = 10                               # id 10 submitted twice
    with pytest.raises(ValueError, match="submitted twice"):
        lobster.to_itch(dup)


# ------------------------------------------------------------------------------------------
# The AMZN day (acceptance): conversion + replay equal to LOBSTER's book on every row
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def amzn():
    msgs = lobster.load_messages(MESSAGE_GZ)
    ob = lobster.load_orderbook(ORDERBOOK_GZ)
    return msgs, ob, lobster.to_itch(msgs, ob)


def test_amzn_golden_book_equals_lobster_on_every_row(amzn):
    msgs, ob, conv = amzn
    records, bad = golden_book.replay(itch.order_events(conv.messages))
    assert bad == dict.fromkeys(bad, 0)
    assert len(conv.main_seq) == len(ob) == 57_515
    mism = check_level1(records, conv.main_seq, ob).mask
    assert int(mism.sum()) == 0, np.flatnonzero(mism)[:10]
    assert conv.unmatched_rows == 0


def test_amzn_itch_book_equals_lobster_on_every_row(amzn, tmp_path):
    """Second, third-party oracle: itch_book's C++ book engine over the written ITCH file."""
    itch_book = pytest.importorskip("itch_book")
    msgs, ob, conv = amzn
    path = tmp_path / "AMZN.itch"
    itch.write_file(path, conv.messages)
    feed = itch_book.Feed(str(path), date=dt.date(2012, 6, 21), price_type="fixed")
    bbo = {k: np.concatenate([b.bbo[k] for b in feed.batches(("bbo",))])
           for k in ("seq", "bid_px", "bid_sz", "ask_px", "ask_sz")}
    assert feed.stats["missing_ref"] == feed.stats["dup_ref"] == feed.stats["crossed_books"] == 0
    # itch_book numbers messages from 1 in file order.
    at = np.searchsorted(bbo["seq"], conv.main_seq + 1, side="right") - 1
    assert (at >= 0).all()
    bp, ap = ob["bid_price"][:, 0], ob["ask_price"][:, 0]
    want_bp = np.where(bp == lobster.EMPTY_BID_PRICE, 0, bp)
    want_ap = np.where(ap == lobster.EMPTY_ASK_PRICE, 0, ap)
    assert np.array_equal(bbo["bid_px"][at], want_bp)
    assert np.array_equal(bbo["bid_sz"][at], ob["bid_size"][:, 0])
    assert np.array_equal(bbo["ask_px"][at], want_ap)
    assert np.array_equal(bbo["ask_sz"][at], ob["ask_size"][:, 0])


def test_amzn_encode_decode_round_trip(amzn):
    _, _, conv = amzn
    back = itch.decode(itch.frame(*itch.encode(conv.messages))).messages
    assert itch.counts(back) == itch.counts(conv.messages)
    for t, a in conv.messages.items():
        b = back[t]
        for name in a.dtype.names:
            if name != "offset":
                assert np.array_equal(a[name], b[name]), (t, name)


def test_amzn_stream_structure(amzn):
    msgs, _, conv = amzn
    m = conv.messages
    seqs = np.sort(np.concatenate([a["seq"] for a in m.values()]))
    n = seqs.shape[0]
    assert np.array_equal(seqs, np.arange(n))
    ts = np.concatenate([a["timestamp"] for a in m.values()])[
        np.argsort(np.concatenate([a["seq"] for a in m.values()]))]
    assert (np.diff(ts.astype(np.int64)) >= 0).all()
    assert (np.diff(conv.main_seq.astype(np.int64)) > 0).all()
    assert n == len(msgs) + conv.synthesized["total"] + 7    # 6 System Events + 1 directory
    # Unknown orders, counted independently: rows of types 2-4 naming an id never submitted.
    submitted = msgs["order_id"][msgs["type"] == 1]
    refs = np.isin(msgs["type"], (2, 3, 4))
    unknown_rows = refs & ~np.isin(msgs["order_id"], submitted)
    assert int(unknown_rows.sum()) == 7_467
    unknown_ids = np.unique(msgs["order_id"][unknown_rows])
    assert conv.synthesized["add_unknown_order"] == unknown_ids.shape[0]
    adds = m["A"]
    main = np.isin(adds["seq"], conv.main_seq)
    syn = adds[~main]
    assert syn.shape[0] == (conv.synthesized["add_unknown_order"]
                            + conv.synthesized["add_hidden_depth"])
    fillers = syn["order_ref"] > msgs["order_id"].max()
    assert int(fillers.sum()) == conv.synthesized["add_hidden_depth"]
    assert np.array_equal(np.sort(syn["order_ref"][~fillers]), unknown_ids)
    # Each unknown order is added with all the shares its rows take.
    tot = {int(k): 0 for k in unknown_ids}
    for k, s in zip(msgs["order_id"][unknown_rows].tolist(), msgs["size"][unknown_rows].tolist()):
        tot[k] += s
    assert {int(r): int(s) for r, s in zip(syn["order_ref"][~fillers],
                                           syn["shares"][~fillers])} == tot
    assert sum(v for k, v in conv.synthesized.items() if k != "total") == \
        conv.synthesized["total"]
    assert set(np.unique(adds["side"]).tolist()) == {b"B", b"S"}
    assert (adds["stock"] == b"AMZN    ").all()


def test_embedded_sample_is_this_conversion(amzn):
    """The shipped capture carries exactly what to_itch produces today (seq + first_seq), so
    the demo may recompute main_seq from the vendored CSVs instead of storing it."""
    from hftaccel.feeds import moldudp64

    _, _, conv = amzn
    cap = moldudp64.read_pcap(SAMPLE_PCAP)
    assert not cap.gaps and cap.duplicates == 0
    assert itch.counts(cap.messages) == itch.counts(conv.messages)
    for t, a in conv.messages.items():
        b = cap.messages[t]
        assert np.array_equal(b["seq"], a["seq"] + SAMPLE_FIRST_SEQ)
        for name in a.dtype.names:
            if name not in ("offset", "seq"):
                assert np.array_equal(a[name], b[name]), (t, name)
