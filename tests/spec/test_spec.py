"""hftaccel.spec: layouts against the lengths published in the ITCH 5.0 / MoldUDP64 specs."""

import numpy as np
import pytest

from hftaccel import spec
from hftaccel.spec import itch, moldudp64

# Message lengths as printed in the NASDAQ TotalView-ITCH 5.0 specification (section 4),
# typed in independently of the field tables.
PUBLISHED_LENGTHS = {
    "S": 12, "R": 39, "H": 25, "Y": 20, "L": 26, "V": 35, "W": 12, "K": 28, "J": 35, "h": 21,
    "A": 36, "F": 40, "E": 31, "C": 36, "X": 23, "D": 19, "U": 35, "P": 44, "Q": 40, "B": 19,
    "I": 50, "N": 20, "O": 48,
}


def test_every_itch_type_has_the_published_length():
    assert spec.MESSAGE_LENGTH == PUBLISHED_LENGTHS


@pytest.mark.parametrize("mtype", sorted(PUBLISHED_LENGTHS))
def test_fields_are_contiguous_and_dtypes_agree(mtype):
    lay = itch.LAYOUTS[mtype]
    pos = 0
    for f in lay.fields:
        assert f.offset == pos, (mtype, f.name)
        pos += f.size
    assert pos == lay.length
    assert [f.name for f in lay.fields[:4]] == ["msg_type", "stock_locate", "tracking_number",
                                                "timestamp"]
    wire = itch.wire_dtype(mtype)
    assert wire.itemsize == lay.length
    for f in lay.fields:
        assert wire.fields[f.name][1] == f.offset
        assert wire.fields[f.name][0].itemsize == f.size
    dec = itch.decoded_dtype(mtype)
    assert dec.names[:2] == ("offset", "seq")
    assert set(dec.names[2:]) == {f.name for f in lay.fields}


def test_key_offsets_from_the_spec_text():
    # Add Order (4.3.1): Order Reference Number at 11, Buy/Sell at 19, Shares at 20, Stock at 24,
    # Price at 32. Order Replace (4.4.5): original ref 11, new ref 19, shares 27, price 31.
    a = itch.LAYOUTS["A"]
    assert [(f.name, f.offset) for f in a.fields[4:]] == [
        ("order_ref", 11), ("side", 19), ("shares", 20), ("stock", 24), ("price", 32)]
    u = itch.LAYOUTS["U"]
    assert [(f.name, f.offset) for f in u.fields[4:]] == [
        ("original_order_ref", 11), ("new_order_ref", 19), ("shares", 27), ("price", 31)]
    assert itch.LAYOUTS["P"].field("match_number").offset == 36
    assert itch.LAYOUTS["C"].field("execution_price").offset == 32


def test_record_dtypes():
    assert spec.ORDER_EVENT_DTYPE.itemsize == 48
    rec = spec.book_record_dtype(8)
    assert rec.itemsize == 232 and rec == spec.BOOK_RECORD_DTYPE
    assert rec["bid_price"].shape == (8,)
    assert spec.book_record_dtype(3).itemsize == 40 + 24 * 3
    with pytest.raises(ValueError, match="positive integer, got 0"):
        spec.book_record_dtype(0)


def test_moldudp64_header():
    assert moldudp64.HEADER_SIZE == 20 == moldudp64.HEADER_DTYPE.itemsize
    hdr = np.frombuffer(b"SESSION001" + (5).to_bytes(8, "big") + (3).to_bytes(2, "big"),
                        moldudp64.HEADER_DTYPE)[0]
    assert (hdr["session"], hdr["sequence_number"], hdr["message_count"]) == (b"SESSION001", 5, 3)
