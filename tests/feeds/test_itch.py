"""hftaccel.feeds.itch: the real 2019 ITCH file, round trips of every type, malformed input."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from hftaccel.feeds import itch
from hftaccel.spec import itch as spec

DATA = Path(__file__).resolve().parents[1] / "data"
REAL = DATA / "itch" / "nasdaq_itch50_2019_first1000msgs.itch"


@pytest.fixture(scope="module")
def real():
    return itch.read_file(REAL)


def _raw_messages(path):
    """Independent framing walk with struct: list of (file offset of body, body bytes)."""
    data = Path(path).read_bytes()
    out, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack_from(">H", data, pos)
        out.append((pos + 2, data[pos + 2:pos + 2 + n]))
        pos += 2 + n
    return out


def test_real_file_counts(real):
    assert itch.counts(real.messages) == {"S": 1, "R": 993, "H": 3, "Y": 3}
    assert real.n_messages == 1000
    assert sum(real.skipped.values()) == 0
    seqs = np.sort(np.concatenate([a["seq"] for a in real.messages.values()]))
    assert np.array_equal(seqs, np.arange(1000))


def test_real_file_fields_against_spec_offsets(real):
    """Field values checked against byte offsets written out from the ITCH 5.0 spec text."""
    raw = _raw_messages(REAL)
    m = real.messages
    # 4.1 System Event: type(0) locate(1,2) tracking(3,2) timestamp(5,6) event code(11).
    off, body = raw[0]
    assert body[0:1] == b"S" and len(body) == 12
    ts = int.from_bytes(body[5:11], "big")
    s = m["S"][0]
    assert (s["offset"], s["seq"], s["timestamp"], s["event_code"]) == (off, 0, ts, b"O")
    assert s["timestamp"] == 11072057543747  # 03:04:32.057543747, start of messages
    # 4.2.1 Stock Directory, message 1: stock(11,8) market category(19) FSI(20) round lot(21,4)
    # round lots only(25) classification(26) sub-type(27,2) authenticity(29) SSTI(30) IPO(31)
    # LULD tier(32) ETP flag(33) ETP leverage(34,4) inverse(38).
    off, body = raw[1]
    r = m["R"][0]
    assert len(body) == 39 and r["offset"] == off
    assert struct.unpack_from(">HH", body, 1) == (r["stock_locate"], r["tracking_number"])
    assert r["stock"] == body[11:19] == b"A       "
    assert r["market_category"] == body[19:20] == b"N"
    assert r["round_lot_size"] == struct.unpack_from(">I", body, 21)[0] == 100
    assert r["issue_classification"] == body[26:27] == b"C"
    assert r["issue_sub_type"] == body[27:29] == b"Z "
    assert r["luld_reference_price_tier"] == body[32:33] == b"1"
    assert r["etp_leverage_factor"] == struct.unpack_from(">I", body, 34)[0]
    assert r["inverse_indicator"] == body[38:39]
    # every R: stock locates 1..993 in file order, each one's stock field equal to the bytes
    rs = m["R"]
    assert np.array_equal(rs["stock_locate"], np.arange(1, 994))
    by_seq = {int(s): raw[int(s)][1] for s in rs["seq"]}
    for rec in rs[::97]:
        body = by_seq[int(rec["seq"])]
        assert rec["stock"] == body[11:19]
        assert rec["timestamp"] == int.from_bytes(body[5:11], "big")
    # 4.2.2 Stock Trading Action: stock(11,8) trading state(19) reserved(20) reason(21,4).
    h = m["H"]
    assert list(h["stock"]) == [b"A       ", b"AA      ", b"AAAU    "]
    assert set(h["trading_state"]) == {b"T"}
    for rec in h:
        body = raw[int(rec["seq"])][1]
        assert body[0:1] == b"H" and body[19:20] == rec["trading_state"]
        assert body[21:25] == rec["reason"]
    # 4.2.3 Reg SHO: stock(11,8) action(19).
    y = m["Y"]
    assert list(y["reg_sho_action"]) == [b"0", b"0", b"0"]
    assert list(y["stock_locate"]) == [1, 2, 3]


def test_real_file_reencodes_byte_exact(real):
    assert itch.frame(*itch.encode(real.messages)) == REAL.read_bytes()


def test_gzip_file(tmp_path, real):
    gz = tmp_path / "x.itch.gz"
    gz.write_bytes(gzip.compress(REAL.read_bytes()))
    r = itch.read_file(gz)
    for t in real.messages:
        assert np.array_equal(r.messages[t], real.messages[t])


def _random_messages(rng, n_per_type=40):
    """Every ITCH 5.0 message type with random field values, interleaved by seq."""
    types = list(spec.LAYOUTS)
    seqs = rng.permutation(n_per_type * len(types)).astype(np.uint64)
    out = {}
    for i, t in enumerate(types):
        arr = itch.empty(t, n_per_type)
        arr["seq"] = np.sort(seqs[i * n_per_type:(i + 1) * n_per_type])
        for f in spec.LAYOUTS[t].fields:
            if f.name == "msg_type":
                continue
            if f.kind == "alpha":
                letters = rng.integers(32, 127, size=(n_per_type, f.size), dtype=np.uint8)
                arr[f.name] = letters.view(f"S{f.size}").reshape(-1)
            else:
                hi = 1 << (8 * f.size)
                arr[f.name] = rng.integers(0, hi, size=n_per_type, dtype=np.uint64,
                                           endpoint=False) if f.size < 8 else \
                    rng.integers(0, 2**63, size=n_per_type, dtype=np.uint64) * 2 + 1
        out[t] = arr
    return out


def test_encode_decode_round_trip_every_type(tmp_path):
    rng = np.random.default_rng(7)
    msgs = _random_messages(rng)
    path = tmp_path / "all.itch"
    nbytes = itch.write_file(path, msgs)
    assert nbytes == sum(len(a) * (spec.MESSAGE_LENGTH[t] + 2) for t, a in msgs.items())
    back = itch.read_file(path).messages
    assert set(back) == set(spec.LAYOUTS)
    for t, arr in msgs.items():
        got = back[t]
        for name in arr.dtype.names:
            if name == "offset":
                continue
            assert np.array_equal(got[name], arr[name]), (t, name)
        assert itch.n_messages(back) == itch.n_messages(msgs)


def test_alpha_fields_keep_trailing_spaces():
    # numpy S-fields strip trailing NULs only; spaces (ITCH padding) survive a round trip.
    a = itch.empty("R", 1)
    a["stock"] = b"AMZN    "
    back = itch.decode(itch.frame(*itch.encode({"R": a}))).messages["R"]
    assert back["stock"][0] == b"AMZN    "


def test_encode_rejects_duplicate_seq():
    a = itch.empty("D", 2)
    with pytest.raises(ValueError, match="sequence number 0 twice"):
        itch.encode({"D": a})


def test_order_events():
    rng = np.random.default_rng(1)
    msgs = _random_messages(rng, 5)
    ev = itch.order_events(msgs)
    assert len(ev) == 5 * len(spec.BOOK_MESSAGE_TYPES)
    assert np.all(np.diff(ev["seq"].astype(np.int64)) > 0)
    u = msgs["U"][0]
    e = ev[ev["seq"] == u["seq"]][0]
    assert (e["msg_type"], e["order_ref"], e["new_order_ref"], e["shares"], e["price"]) == \
        (ord("U"), u["original_order_ref"], u["new_order_ref"], u["shares"], u["price"])
    c = msgs["C"][0]
    e = ev[ev["seq"] == c["seq"]][0]
    assert e["price"] == c["execution_price"] and e["shares"] == c["executed_shares"]
    assert e["printable"] == (c["printable"] == b"Y")
    a = msgs["A"][0]
    e = ev[ev["seq"] == a["seq"]][0]
    assert e["side"] == a["side"][0] and e["stock_locate"] == a["stock_locate"]


# ---------------------------------------------------------------------------- malformed input

def _sample_bytes():
    a = itch.empty("A", 1)
    a["order_ref"], a["side"], a["shares"], a["price"] = 7, b"B", 100, 1_000_000
    a["seq"] = 1
    s = itch.empty("S", 1)
    s["event_code"] = b"O"
    d = itch.empty("D", 1)
    d["order_ref"], d["seq"] = 7, 2
    return itch.frame(*itch.encode({"S": s, "A": a, "D": d}))


def test_truncation_at_every_byte_position():
    data = _sample_bytes()
    boundaries = {0, 14, 14 + 38, len(data)}
    for cut in range(len(data) + 1):
        chunk = data[:cut]
        if cut in boundaries:
            r = itch.decode(chunk)
            assert sum(r.skipped.values()) == 0
            continue
        with pytest.raises(itch.ItchError, match="truncated") as exc:
            itch.decode(chunk, source="cut.itch")
        assert "cut.itch" in str(exc.value)
        last_start = max(b for b in boundaries if b < cut)
        assert exc.value.offset == last_start
        lenient = itch.decode(chunk, lenient=True)
        assert lenient.skipped["truncated"] == 1
        assert lenient.n_messages == sum(1 for b in boundaries if 0 < b <= cut)


def test_unknown_type_strict_and_lenient():
    data = bytearray(_sample_bytes())
    data[14 + 2] = ord("Z")  # the A message (after S: 2+12 bytes) becomes type 'Z'
    with pytest.raises(itch.ItchError, match=r"unknown message type 'Z'") as exc:
        itch.decode(bytes(data), source="f.itch")
    assert exc.value.offset == 16 and "byte offset 16" in str(exc.value)
    r = itch.decode(bytes(data), lenient=True)
    assert r.skipped["unknown_type"] == 1
    assert itch.counts(r.messages) == {"S": 1, "D": 1}
    assert r.messages["D"]["seq"][0] == 2  # positions keep counting skipped messages
    assert "byte offset 16" in r.first_error


def test_bad_length_strict_and_lenient():
    data = bytearray(_sample_bytes())
    # declare the S message 13 bytes long and add a padding byte: type S must be 12
    bad = bytes([0, 13]) + bytes(data[2:14]) + b"\x00" + bytes(data[14:])
    with pytest.raises(itch.ItchError, match="length 13, the ITCH 5.0 specification says 12"):
        itch.decode(bad)
    r = itch.decode(bad, lenient=True)
    assert r.skipped["bad_length"] == 1 and itch.counts(r.messages) == {"A": 1, "D": 1}


def test_zero_length_block():
    data = b"\x00\x00" + _sample_bytes()
    with pytest.raises(itch.ItchError, match="zero message length"):
        itch.decode(data)
    r = itch.decode(data, lenient=True)
    assert r.skipped["zero_length"] == 1 and r.n_messages == 3


def test_decode_blocks_validates():
    data = np.frombuffer(_sample_bytes(), np.uint8)
    offsets = np.array([2, 16, 54])
    lengths = np.array([12, 36, 19])
    r = itch.decode_blocks(data, offsets, lengths, np.array([10, 11, 12]))
    assert itch.counts(r.messages) == {"S": 1, "A": 1, "D": 1}
    assert r.messages["A"]["seq"][0] == 11
    with pytest.raises(itch.ItchError, match="truncated"):
        itch.decode_blocks(data, [54], [40], [12], source="cap.pcap")
    r = itch.decode_blocks(data, [2, 54], [12, 40], [1, 2], lenient=True)
    assert r.skipped["truncated"] == 1 and r.n_messages == 1
