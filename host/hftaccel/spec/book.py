"""Order book contracts: depth, table sizes and the fixed-size book record.

The book record is written by the golden book (``hftaccel.golden.book``) after every
book-affecting message, read by the features stage, and produced bit for bit by the gateware
book (``hftaccel.rtl.book``) and the GPU backend. Levels are sorted best first (highest bid,
lowest ask); unoccupied levels are all zero.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BOOK_DEPTH",
    "book_record_dtype",
    "BOOK_RECORD_DTYPE",
    "BAD_REFERENCE_KINDS",
    "ORDER_TABLE_SIZE",
    "MAX_LOCATES",
]

#: Number of price levels per side carried in every book record (N).
BOOK_DEPTH = 8
#: Default capacity of the golden order table (live orders across all symbols); grows on demand.
ORDER_TABLE_SIZE = 1 << 20
#: Stock locate codes are 2-byte integers (ITCH 5.0 section 1.3): 0..65535.
MAX_LOCATES = 1 << 16

#: Kinds of bad references counted by the book, in the order of the counter array.
#: ``unknown_order``: an E, C, X, D or U message names an order reference number not on the book;
#: ``over_execution``: executed/cancelled shares exceed the order's remaining shares (the order
#: is removed, the excess counted); ``duplicate_order``: A/F/U adds an order reference number
#: already live (the new order is ignored, the live one kept); ``bad_side``: side not B or S;
#: ``zero_shares``: add or replace with 0 shares (ignored).
BAD_REFERENCE_KINDS = ("unknown_order", "over_execution", "duplicate_order", "bad_side",
                       "zero_shares")


def book_record_dtype(depth: int = BOOK_DEPTH) -> np.dtype:
    """Return the book record dtype for ``depth`` levels per side.

    Fields
    ------
    timestamp : u8
        ITCH timestamp of the triggering message, ns since midnight.
    seq : u8
        Sequence number of the triggering message (MoldUDP64 sequence number or file index).
    order_ref : u8
        Order reference number the message acted on (the new one for U; 0 for P).
    stock_locate : u2
    msg_type : u1
        ASCII code of the triggering message (A F E C X D U P).
    side : u1
        ASCII B/S of the order the message acted on (0 when unknown).
    shares : u4
        Shares added, executed, cancelled, removed or traded by the message.
    price : u4
        Price of the order acted on (execution price for C, trade price for P), 1/10,000 USD.
    bid_price, ask_price : (depth,) u4
        Level prices, 1/10,000 USD, best first; 0 where the level is empty.
    bid_shares, ask_shares : (depth,) u4
        Aggregate displayed shares at each level.
    bid_orders, ask_orders : (depth,) u4
        Number of orders at each level.

    Raises
    ------
    ValueError
        ``depth`` is not a positive integer.
    """
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"book depth must be a positive integer, got {depth!r}")
    return np.dtype([
        ("timestamp", "<u8"),
        ("seq", "<u8"),
        ("order_ref", "<u8"),
        ("shares", "<u4"),
        ("price", "<u4"),
        ("stock_locate", "<u2"),
        ("msg_type", "u1"),
        ("side", "u1"),
        ("_pad", "V4"),
        ("bid_price", "<u4", (depth,)),
        ("bid_shares", "<u4", (depth,)),
        ("bid_orders", "<u4", (depth,)),
        ("ask_price", "<u4", (depth,)),
        ("ask_shares", "<u4", (depth,)),
        ("ask_orders", "<u4", (depth,)),
    ])


#: Book record at the default depth: 40 + 24 * 8 = 232 bytes.
BOOK_RECORD_DTYPE = book_record_dtype(BOOK_DEPTH)
assert BOOK_RECORD_DTYPE.itemsize == 40 + 24 * BOOK_DEPTH
