"""OUCH 5.0 / SoupBinTCP 4.0 golden codec against hand-written bytes and struct-packed oracles.

The oracles here are written by hand from the field tables of the OUCH 5.0 Order Entry
Specification (rev. 1.05, sections 2.1-2.8, 3.1-3.17, Appendix A) and SoupBinTCP 4.0 (2.2-2.3),
independently of ``hftaccel.spec.ouch``: a wrong offset or size in the spec module shows up as
a byte mismatch.
"""

import struct

import numpy as np
import pytest

from hftaccel.golden import ouch, risk
from hftaccel.spec import ouch as spec
from hftaccel.spec.risk import SCORED_UPDATE_DTYPE, RiskConfig

# --------------------------------------------------------------------------- Enter Order bytes

# Enter Order (spec 2.1): UserRefNum 42, buy 100 AAPL @ $189.1234, TIF 0 (day), Display Y,
# Capacity P, ISE N, CrossType N, ClOrdID "ORDER42", empty appendage. Hand-written, field by field.
ENTER_ORDER_BYTES = bytes.fromhex(
    "4f"                            # 0   Type 'O'
    "0000002a"                      # 1   UserRefNum 42 (4, numeric)
    "42"                            # 5   Side 'B'
    "00000064"                      # 6   Quantity 100 (4)
    "4141504c20202020"              # 10  Symbol 'AAPL    ' (8, alpha)
    "00000000001cdba2"              # 18  Price 1,891,234 = $189.1234 (8, 4 implied decimals)
    "30"                            # 26  Time In Force '0' (day)
    "59"                            # 27  Display 'Y'
    "50"                            # 28  Capacity 'P'
    "4e"                            # 29  InterMarket Sweep Eligibility 'N'
    "4e"                            # 30  CrossType 'N'
    "4f524445523432" "20202020202020"  # 31  ClOrdID 'ORDER42       ' (14, alpha)
    "0000"                          # 45  Appendage Length 0
)
ENTER_ORDER_FIELDS = [  # (name, offset, size, value) straight from the spec 2.1 table
    ("type", 0, 1, b"O"), ("user_ref_num", 1, 4, 42), ("side", 5, 1, b"B"),
    ("quantity", 6, 4, 100), ("symbol", 10, 8, b"AAPL    "), ("price", 18, 8, 1_891_234),
    ("time_in_force", 26, 1, b"0"), ("display", 27, 1, b"Y"), ("capacity", 28, 1, b"P"),
    ("intermarket_sweep", 29, 1, b"N"), ("cross_type", 30, 1, b"N"),
    ("cl_ord_id", 31, 14, b"ORDER42       "),
]


def _enter_msg():
    return {"type": "O", "user_ref_num": 42, "side": "B", "quantity": 100, "symbol": "AAPL",
            "price": 1_891_234, "time_in_force": "0", "display": "Y", "capacity": "P",
            "intermarket_sweep": "N", "cross_type": "N", "cl_ord_id": "ORDER42"}


def test_enter_order_bytes_field_by_field():
    assert len(ENTER_ORDER_BYTES) == 47
    got = ouch.encode("inbound", _enter_msg())
    assert got == ENTER_ORDER_BYTES
    lay = spec.INBOUND["O"]
    for name, off, size, value in ENTER_ORDER_FIELDS:
        f = lay.field(name)
        assert (f.offset, f.size) == (off, size), name
        raw = got[off:off + size]
        assert raw == (value if isinstance(value, bytes) else value.to_bytes(size, "big")), name
    assert got[45:47] == b"\x00\x00"
    dec = ouch.decode("inbound", ENTER_ORDER_BYTES)
    assert dec["price"] == 1_891_234 and dec["symbol"] == b"AAPL    " and dec["options"] == {}


def test_enter_order_with_options_tagvalue_bytes():
    # Appendix A: MinQty tag 3 (4-byte integer), PostOnly tag 12 (1 alpha), UserRefIdx tag 28
    # (1 byte). TagValue element = Length(1, counts tag + value) | OptionTag(1) | Value (spec 1.2).
    msg = _enter_msg() | {"options": {"min_qty": 50, "post_only": "P", "user_ref_idx": 5}}
    app = bytes.fromhex("05" "03" "00000032" "02" "0c" "50" "02" "1c" "05")
    got = ouch.encode("inbound", msg)
    assert got == ENTER_ORDER_BYTES[:45] + len(app).to_bytes(2, "big") + app
    assert ouch.decode("inbound", got)["options"] == {"min_qty": 50, "post_only": b"P",
                                                      "user_ref_idx": 5}


# --------------------------------------------------------------------------- struct oracles

TS = 34_200_000_000_456
CL = b"CLORD000000001"
SYM = b"MSFT    "
# (direction, type, struct format from the spec table, [(field, value), ...] in spec order,
#  appendage: None = no Appendage Length written, b"" = written with length 0)
ORACLES = [
    ("inbound", "O", ">cIcI8sQccccc14s", [("user_ref_num", 7), ("side", b"S"), ("quantity", 300),
     ("symbol", SYM), ("price", 4_215_000), ("time_in_force", b"3"), ("display", b"N"),
     ("capacity", b"A"), ("intermarket_sweep", b"Y"), ("cross_type", b"C"), ("cl_ord_id", CL)], b""),
    ("inbound", "U", ">cIIIQccc14s", [("orig_user_ref_num", 7), ("user_ref_num", 8),
     ("quantity", 200), ("price", 4_214_900), ("time_in_force", b"0"), ("display", b"Y"),
     ("intermarket_sweep", b"N"), ("cl_ord_id", CL)], b""),
    ("inbound", "X", ">cII", [("user_ref_num", 8), ("quantity", 0)], None),
    ("inbound", "X", ">cII", [("user_ref_num", 8), ("quantity", 50)], b""),
    ("inbound", "M", ">cIcI", [("user_ref_num", 8), ("side", b"T"), ("quantity", 150)], None),
    ("inbound", "C", ">cI4s8s", [("user_ref_num", 9), ("firm", b"FIRM"), ("symbol", SYM)], b""),
    ("inbound", "D", ">cI4s", [("user_ref_num", 10), ("firm", b"FIRM")], b""),
    ("inbound", "E", ">cI4s", [("user_ref_num", 11), ("firm", b"FIRM")], b""),
    ("inbound", "Q", ">c", [], None),
    ("outbound", "S", ">cQc", [("timestamp", TS), ("event_code", b"S")], None),
    ("outbound", "A", ">cQIcI8sQccQcccc14s", [("timestamp", TS), ("user_ref_num", 7),
     ("side", b"S"), ("quantity", 300), ("symbol", SYM), ("price", 4_215_000),
     ("time_in_force", b"3"), ("display", b"N"), ("order_ref_num", 777_777),
     ("capacity", b"A"), ("intermarket_sweep", b"Y"), ("cross_type", b"C"),
     ("order_state", b"L"), ("cl_ord_id", CL)], b""),
    ("outbound", "U", ">cQIIcI8sQccQcccc14s", [("timestamp", TS), ("orig_user_ref_num", 7),
     ("user_ref_num", 8), ("side", b"S"), ("quantity", 200), ("symbol", SYM),
     ("price", 4_214_900), ("time_in_force", b"0"), ("display", b"Y"),
     ("order_ref_num", 777_778), ("capacity", b"A"), ("intermarket_sweep", b"N"),
     ("cross_type", b"N"), ("order_state", b"L"), ("cl_ord_id", CL)], b""),
    ("outbound", "C", ">cQIIc", [("timestamp", TS), ("user_ref_num", 8), ("quantity", 150),
     ("reason", b"U")], None),
    ("outbound", "D", ">cQIIcIQcc", [("timestamp", TS), ("user_ref_num", 8),
     ("decrement_shares", 10), ("reason", b"Q"), ("quantity_prevented", 10),
     ("execution_price", 4_214_900), ("liquidity_flag", b"R"), ("aiq_strategy", b"D")], b""),
    ("outbound", "E", ">cQIIQcQ", [("timestamp", TS), ("user_ref_num", 8), ("quantity", 40),
     ("price", 4_214_900), ("liquidity_flag", b"A"), ("match_number", 9001)], b""),
    ("outbound", "B", ">cQIQc14s", [("timestamp", TS), ("user_ref_num", 8),
     ("match_number", 9001), ("reason", b"E"), ("cl_ord_id", CL)], None),
    ("outbound", "J", ">cQIH14s", [("timestamp", TS), ("user_ref_num", 12), ("reason", 0x001D),
     ("cl_ord_id", CL)], None),
    ("outbound", "P", ">cQI", [("timestamp", TS), ("user_ref_num", 8)], None),
    ("outbound", "I", ">cQI", [("timestamp", TS), ("user_ref_num", 8)], b""),
    ("outbound", "T", ">cQIQcQ", [("timestamp", TS), ("user_ref_num", 8), ("price", 4_214_900),
     ("display", b"Y"), ("order_ref_num", 777_779)], None),
    ("outbound", "M", ">cQIcI", [("timestamp", TS), ("user_ref_num", 8), ("side", b"E"),
     ("quantity", 100)], None),
    ("outbound", "R", ">cQIc", [("timestamp", TS), ("user_ref_num", 8), ("reason", b"R")], b""),
    ("outbound", "X", ">cQI4s8s", [("timestamp", TS), ("user_ref_num", 9), ("firm", b"FIRM"),
     ("symbol", SYM)], b""),
    ("outbound", "G", ">cQI4s", [("timestamp", TS), ("user_ref_num", 10), ("firm", b"FIRM")], b""),
    ("outbound", "K", ">cQI4s", [("timestamp", TS), ("user_ref_num", 11), ("firm", b"FIRM")], b""),
    ("outbound", "Q", ">cQI", [("timestamp", TS), ("next_user_ref_num", 13)], None),
]


def test_every_message_type_has_an_oracle():
    covered = {(d, t) for d, t, *_ in ORACLES}
    assert covered == {(d, t) for d in spec.DIRECTIONS for t in spec.layouts(d)}
    assert len(spec.INBOUND) == 8 and len(spec.OUTBOUND) == 17


@pytest.mark.parametrize("direction,mtype,fmt,fields,app", ORACLES,
                         ids=[f"{d}-{t}-{'app' if a is not None else 'noapp'}"
                              for d, t, _, _, a in ORACLES])
def test_message_matches_struct_oracle_and_round_trips(direction, mtype, fmt, fields, app):
    expected = struct.pack(fmt, mtype.encode(), *[v for _, v in fields])
    if app is not None:
        expected += struct.pack(">H", len(app)) + app
    msg = {"type": mtype, **dict(fields)}
    if spec.layout(direction, mtype).appendage != spec.APPENDAGE_NONE:
        msg["options"] = None if app is None else {}
    got = ouch.encode(direction, msg)
    assert got == expected
    dec = ouch.decode(direction, got)
    assert dec == {**msg, "options": msg.get("options")}
    assert ouch.encode(direction, dec) == got


_SAMPLE = {"u": 7, "i": -1234, "price": 1_234_500}
_ALPHA_SAMPLE = {"side": "S", "customer_type": "R", "price_type": "L",
                 "discretion_price_type": "M", "post_only": "P", "trade_now": "Y",
                 "handle_inst": "I", "bbo_weight_indicator": "S", "shares_located": "Y",
                 "aiq_strategy": "O", "aiq_group_id": "G1", "firm": "ABCD", "route": "RT01",
                 "locate_broker": "BRKR"}


@pytest.mark.parametrize("direction,mtype", [(d, t) for d in spec.DIRECTIONS
                                             for t in spec.layouts(d)])
def test_round_trip_with_every_allowed_option(direction, mtype):
    lay = spec.layout(direction, mtype)
    fields = dict(next(f for d, t, _, f, _ in ORACLES if (d, t) == (direction, mtype)))
    msg = {"type": mtype, **fields}
    if lay.appendage == spec.APPENDAGE_NONE:
        with pytest.raises(ouch.OuchError, match="no appendage"):
            ouch.encode(direction, msg | {"options": {"user_ref_idx": 1}})
        return
    opts = {}
    for name in lay.options:
        o = spec.OPTIONS_BY_NAME[name]
        opts[name] = _ALPHA_SAMPLE[name] if o.kind == "alpha" else _SAMPLE[o.kind]
    raw = ouch.encode(direction, msg | {"options": opts})
    app_len = sum(spec.OPTIONS_BY_NAME[n].size + 2 for n in opts)
    assert len(raw) == lay.fixed_length + 2 + app_len
    assert int.from_bytes(raw[lay.fixed_length:lay.fixed_length + 2], "big") == app_len
    dec = ouch.decode(direction, raw)
    assert list(dec["options"]) == list(opts)
    assert ouch.encode(direction, dec) == raw


# --------------------------------------------------------------------------- malformed input


def test_unknown_type_names_offset():
    with pytest.raises(ouch.OuchError, match=r"@ byte 100: unknown OUCH 5.0 inbound message type b'Z'") as e:
        ouch.decode("inbound", b"Z\x00\x00", offset=100, source="conn")
    assert e.value.offset == 100
    with pytest.raises(ouch.OuchError, match="unknown OUCH 5.0 outbound message type b'O'"):
        ouch.decode("outbound", ENTER_ORDER_BYTES)   # 'O' exists inbound only
    with pytest.raises(ouch.OuchError, match="empty"):
        ouch.decode("inbound", b"")


@pytest.mark.parametrize("cut", range(1, 47))
def test_truncated_enter_order_names_field_offset(cut):
    with pytest.raises(ouch.OuchError, match="truncated") as e:
        ouch.decode("inbound", ENTER_ORDER_BYTES[:cut], offset=1000)
    sizes = [(off, size) for _, off, size, _ in ENTER_ORDER_FIELDS] + [(45, 2)]
    first_bad = min(off for off, size in sizes if off + size > cut)
    assert e.value.offset == 1000 + first_bad


def test_appendage_errors():
    body = ENTER_ORDER_BYTES[:45]
    with pytest.raises(ouch.OuchError, match="Appendage Length says 3 bytes, 0 follow") as e:
        ouch.decode("inbound", body + b"\x00\x03")
    assert e.value.offset == 45
    with pytest.raises(ouch.OuchError, match="unknown OptionTag 8") as e:
        ouch.decode("inbound", body + b"\x00\x03" + bytes([2, 8, 0]))
    assert e.value.offset == 48
    with pytest.raises(ouch.OuchError, match="Appendix A says 4"):
        ouch.decode("inbound", body + b"\x00\x03" + bytes([2, 3, 0]))
    with pytest.raises(ouch.OuchError, match="repeated"):
        ouch.decode("inbound", body + b"\x00\x06" + bytes([2, 28, 1, 2, 28, 2]))
    with pytest.raises(ouch.OuchError, match="Length 0"):
        ouch.decode("inbound", body + b"\x00\x02" + bytes([0, 28]))
    with pytest.raises(ouch.OuchError, match="needs 5 bytes"):
        ouch.decode("inbound", body + b"\x00\x03" + bytes([5, 3, 0]))
    with pytest.raises(ouch.OuchError, match="trailing"):
        ouch.decode("outbound", b"S" + TS.to_bytes(8, "big") + b"SX")
    with pytest.raises(ouch.OuchError, match="Appendage Length at offset 45 needs 2 bytes"):
        ouch.decode("inbound", body + b"\x00")


def test_encode_refuses_bad_values():
    with pytest.raises(ouch.OuchError, match="longer than its 8 bytes"):
        ouch.encode("inbound", _enter_msg() | {"symbol": "TOOLONGSYM"})
    with pytest.raises(ouch.OuchError, match="does not fit 4 unsigned bytes"):
        ouch.encode("inbound", _enter_msg() | {"quantity": -1})
    with pytest.raises(ouch.OuchError, match="missing field 'price'"):
        ouch.encode("inbound", {k: v for k, v in _enter_msg().items() if k != "price"})
    with pytest.raises(ouch.OuchError, match="not defined for this message"):
        ouch.encode("inbound", _enter_msg() | {"options": {"display_price": 1}})
    with pytest.raises(ouch.OuchError, match="required"):
        ouch.encode("inbound", _enter_msg() | {"options": None})
    with pytest.raises(ouch.OuchError, match="unknown fields"):
        ouch.encode("inbound", _enter_msg() | {"bogus": 1})


# --------------------------------------------------------------------------- batches


def _orders(n, rng):
    o = ouch.empty_enter_orders(n)
    o["user_ref_num"] = np.arange(1, n + 1)
    o["quantity"] = rng.integers(1, spec.MAX_QUANTITY + 1, n)
    o["price"] = rng.integers(1, spec.MAX_PRICE + 1, n)
    o["side"] = rng.choice([b"B", b"S", b"T", b"E"], n)
    o["symbol"] = rng.choice([b"AAPL", b"MSFT", b"ZVZZT"], n)
    o["cl_ord_id"] = [f"C{i}".encode() for i in range(n)]
    o["time_in_force"] = rng.choice([b"0", b"3"], n)
    return o


def test_batch_encoder_matches_scalar_encoder_and_decodes_back():
    rng = np.random.default_rng(5)
    orders = _orders(64, rng)
    flat = ouch.encode_enter_orders(orders)
    assert flat.dtype == np.uint8 and flat.size == 64 * 47
    for i, rec in enumerate(orders):
        msg = {"type": "O", **{n: rec[n].item() for n in spec.ENTER_ORDER_DTYPE.names}}
        assert ouch.encode("inbound", msg) == flat[47 * i:47 * (i + 1)].tobytes()
    back = ouch.decode_enter_orders(flat)
    for name in ("user_ref_num", "quantity", "price", "side", "time_in_force"):
        np.testing.assert_array_equal(back[name], orders[name])
    np.testing.assert_array_equal(back["symbol"], np.char.ljust(orders["symbol"], 8, b" "))
    np.testing.assert_array_equal(back["cl_ord_id"], np.char.ljust(orders["cl_ord_id"], 14, b" "))
    framed = ouch.frame_enter_orders(orders)
    msgs = ouch.decode_stream("inbound", framed.tobytes())
    assert [m["user_ref_num"] for m in msgs] == list(range(1, 65))
    assert msgs[3]["offset"] == 3 * 50 + 3


def test_batch_encoder_validates_records():
    orders = _orders(3, np.random.default_rng(1))
    orders["quantity"][2] = 1_000_000
    with pytest.raises(ouch.OuchError, match="record 2: quantity"):
        ouch.encode_enter_orders(orders)
    orders = _orders(3, np.random.default_rng(1))
    orders["side"][1] = b"X"
    with pytest.raises(ouch.OuchError, match="record 1: side"):
        ouch.encode_enter_orders(orders)
    bad = bytearray(ouch.encode_enter_orders(_orders(3, np.random.default_rng(1))).tobytes())
    bad[47] = ord("X")
    with pytest.raises(ouch.OuchError, match="record 1") as e:
        ouch.decode_enter_orders(bytes(bad))
    assert e.value.offset == 47
    with pytest.raises(ouch.OuchError, match="whole number"):
        ouch.decode_enter_orders(bytes(bad[:50]))


def test_orders_from_risk_decisions_end_to_end():
    cfg = RiskConfig(buy_threshold=1, sell_threshold=1, throttle_orders=100)
    u = np.zeros(4, SCORED_UPDATE_DTYPE)
    u["timestamp"] = [1, 2, 3, 4]
    u["stock_locate"] = [5, 5, 9, 9]
    u["best_bid"], u["best_ask"] = 1_000_000, 1_000_100
    u["scores"] = [[0, 0, 9], [0, 9, 0], [9, 0, 0], [0, 0, 9]]
    dec, _ = risk.run(u, cfg)
    symbols = {5: "AAPL", 9: b"MSFT"}
    orders = ouch.orders_from_decisions(dec, symbols, cl_ord_id_prefix="HA")
    assert list(orders["user_ref_num"]) == [1, 2, 3]
    assert list(orders["side"]) == [b"B", b"S", b"B"]
    assert list(orders["price"]) == [1_000_100, 1_000_000, 1_000_100]
    msgs = ouch.decode_stream("inbound", ouch.frame_enter_orders(orders).tobytes())
    assert [m["symbol"] for m in msgs] == [b"AAPL    ", b"MSFT    ", b"MSFT    "]
    assert msgs[1]["cl_ord_id"] == b"HA000000000002"
    assert msgs[0]["time_in_force"] == b"3" and msgs[0]["quantity"] == cfg.lot_size
    with pytest.raises(ouch.OuchError, match="no symbol for stock locate"):
        ouch.orders_from_decisions(dec, {5: "AAPL"})


# --------------------------------------------------------------------------- SoupBinTCP 4.0


def test_soupbintcp_login_packets_hand_written():
    # Login Request (2.3.1): Packet Length 47 = 1 + 6 + 10 + 10 + 20; Username/Password padded
    # on the right, Requested Session padded on the left, Requested Sequence Number ASCII digits
    # right-justified with spaces.
    want = (b"\x00\x2f" b"L" b"USER01" b"secret    " b"          " + b" " * 19 + b"1")
    got = ouch.soup_encode("client", "L", {"username": "USER01", "password": "secret",
                                           "requested_session": "", "requested_sequence_number": 1})
    assert got == want
    assert ouch.soup_decode("client", got) == {"type": "L", "username": b"USER01",
                                               "password": b"secret", "requested_session": b"",
                                               "requested_sequence_number": 1}
    acc = ouch.soup_encode("server", "A", {"session": "SESS01", "sequence_number": 42})
    assert acc == b"\x00\x1f" b"A" b"    SESS01" + b" " * 18 + b"42"
    assert ouch.soup_encode("server", "J", {"reject_reason_code": "A"}) == b"\x00\x02JA"
    assert ouch.soup_encode("server", "H") == b"\x00\x01H"
    assert ouch.soup_encode("client", "O") == b"\x00\x01O"
    assert set(spec.SOUP_FROM_SERVER) == {"+", "A", "J", "S", "H", "Z"}
    assert set(spec.SOUP_FROM_CLIENT) == {"+", "L", "U", "R", "O"}


def test_soupbintcp_stream_split_and_errors():
    stream = (ouch.soup_packet("S", ouch.encode("outbound", {"type": "S", "timestamp": TS,
                                                               "event_code": "S"}))
              + ouch.soup_encode("server", "H")
              + ouch.soup_packet("S", b"Z"))
    with pytest.raises(ouch.OuchError, match=r"@ byte 19: unknown OUCH 5.0 outbound"):
        ouch.decode_stream("outbound", stream)
    packets = ouch.soup_split(stream)
    assert [(t, o) for t, _, o in packets] == [("S", 0), ("H", 13), ("S", 16)]
    with pytest.raises(ouch.OuchError, match="truncated SoupBinTCP packet") as e:
        ouch.soup_split(stream[:-1])
    assert e.value.offset == 16
    done, rest = ouch.soup_split(stream[:-1], partial=True)
    assert len(done) == 2 and rest == stream[16:-1]
    with pytest.raises(ouch.OuchError, match="Packet Length 0"):
        ouch.soup_split(b"\x00\x00")
    with pytest.raises(ouch.OuchError, match="not ASCII digits"):
        ouch.soup_decode("server", b"\x00\x1fA" + b"    SESS01" + b"x" * 20)
