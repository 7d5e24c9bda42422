"""NASDAQ TotalView-ITCH 5.0 message layouts, as data.

Source: NASDAQ TotalView-ITCH 5.0 specification (version 5.0, sections 1.3 and 4.1-4.8).
Every message starts with the same 11-byte header (Message Type, Stock Locate, Tracking Number,
Timestamp); all integers are big-endian unsigned; ``Price(4)`` fields carry 4 implied decimals
(1/10,000 USD), ``Price(8)`` fields 8 implied decimals; alpha fields are left-justified and
padded with spaces on the right. Timestamps are nanoseconds since midnight in 6 bytes.

The tables here are read by the golden decoder (``hftaccel.feeds.itch``), the encoder, the
gateware parser (``hftaccel.rtl.itch``) and the test models; nothing restates them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layout import Field

__all__ = [
    "Field",
    "MessageLayout",
    "HEADER_FIELDS",
    "HEADER_SIZE",
    "LAYOUTS",
    "MESSAGE_LENGTH",
    "BOOK_MESSAGE_TYPES",
    "wire_dtype",
    "decoded_dtype",
    "ORDER_EVENT_DTYPE",
    "PRICE4_SCALE",
    "PRICE8_SCALE",
    "TICK_SIZE",
    "SIDE_BUY",
    "SIDE_SELL",
    "SYSTEM_EVENT_CODES",
]

#: Price(4): integer price with four implied decimals, i.e. 1/10,000 USD (spec section 1.3).
PRICE4_SCALE = 10_000
#: Price(8): integer price with eight implied decimals (MWCB decline levels, spec 1.3).
PRICE8_SCALE = 100_000_000

#: Tick size in Price(4) units: $0.01, the Reg NMS (Rule 612) minimum increment for quotes of
#: NMS stocks priced at $1.00 or more. Features, the risk collar and the generators use it.
TICK_SIZE = 100

#: Buy/Sell Indicator values (ASCII) as stored in decoded ``side`` fields.
SIDE_BUY = ord("B")
SIDE_SELL = ord("S")

#: System Event codes (spec 4.1).
SYSTEM_EVENT_CODES = {
    "O": "start of messages",
    "S": "start of system hours",
    "Q": "start of market hours",
    "M": "end of market hours",
    "E": "end of system hours",
    "C": "end of messages",
}


@dataclass(frozen=True)
class MessageLayout:
    """Layout of one ITCH 5.0 message type.

    Attributes
    ----------
    type : str
        The one-character Message Type.
    name : str
        The spec's name of the message.
    section : str
        Section of the ITCH 5.0 specification that defines it.
    fields : tuple[Field, ...]
        All fields including the common header, in wire order.
    """

    type: str
    name: str
    section: str
    fields: tuple

    @property
    def length(self) -> int:
        """Total message length in bytes (without the 2-byte file/MoldUDP64 length prefix)."""
        last = self.fields[-1]
        return last.offset + last.size

    def field(self, name: str) -> Field:
        """Return the field called ``name``; raise ``KeyError`` naming the message otherwise."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"ITCH {self.type!r} ({self.name}) has no field {name!r}")


# (name, size, kind) after the header; offsets are computed so they cannot drift.
HEADER_FIELDS = (
    ("msg_type", 1, "alpha"),
    ("stock_locate", 2, "u"),
    ("tracking_number", 2, "u"),
    ("timestamp", 6, "u"),
)
HEADER_SIZE = 11

_BODIES = {
    "S": ("System Event", "4.1", [("event_code", 1, "alpha")]),
    "R": ("Stock Directory", "4.2.1", [
        ("stock", 8, "alpha"), ("market_category", 1, "alpha"),
        ("financial_status_indicator", 1, "alpha"), ("round_lot_size", 4, "u"),
        ("round_lots_only", 1, "alpha"), ("issue_classification", 1, "alpha"),
        ("issue_sub_type", 2, "alpha"), ("authenticity", 1, "alpha"),
        ("short_sale_threshold_indicator", 1, "alpha"), ("ipo_flag", 1, "alpha"),
        ("luld_reference_price_tier", 1, "alpha"), ("etp_flag", 1, "alpha"),
        ("etp_leverage_factor", 4, "u"), ("inverse_indicator", 1, "alpha")]),
    "H": ("Stock Trading Action", "4.2.2", [
        ("stock", 8, "alpha"), ("trading_state", 1, "alpha"), ("reserved", 1, "alpha"),
        ("reason", 4, "alpha")]),
    "Y": ("Reg SHO Short Sale Price Test Restricted Indicator", "4.2.3", [
        ("stock", 8, "alpha"), ("reg_sho_action", 1, "alpha")]),
    "L": ("Market Participant Position", "4.2.4", [
        ("mpid", 4, "alpha"), ("stock", 8, "alpha"), ("primary_market_maker", 1, "alpha"),
        ("market_maker_mode", 1, "alpha"), ("market_participant_state", 1, "alpha")]),
    "V": ("MWCB Decline Level", "4.2.5.1", [
        ("level_1", 8, "price8"), ("level_2", 8, "price8"), ("level_3", 8, "price8")]),
    "W": ("MWCB Status", "4.2.5.2", [("breached_level", 1, "alpha")]),
    "K": ("Quoting Period Update", "4.2.6", [
        ("stock", 8, "alpha"), ("ipo_quotation_release_time", 4, "u"),
        ("ipo_quotation_release_qualifier", 1, "alpha"), ("ipo_price", 4, "price4")]),
    "J": ("LULD Auction Collar", "4.2.7", [
        ("stock", 8, "alpha"), ("auction_collar_reference_price", 4, "price4"),
        ("upper_auction_collar_price", 4, "price4"), ("lower_auction_collar_price", 4, "price4"),
        ("auction_collar_extension", 4, "u")]),
    "h": ("Operational Halt", "4.2.8", [
        ("stock", 8, "alpha"), ("market_code", 1, "alpha"),
        ("operational_halt_action", 1, "alpha")]),
    "A": ("Add Order - No MPID Attribution", "4.3.1", [
        ("order_ref", 8, "u"), ("side", 1, "alpha"), ("shares", 4, "u"),
        ("stock", 8, "alpha"), ("price", 4, "price4")]),
    "F": ("Add Order with MPID Attribution", "4.3.2", [
        ("order_ref", 8, "u"), ("side", 1, "alpha"), ("shares", 4, "u"),
        ("stock", 8, "alpha"), ("price", 4, "price4"), ("attribution", 4, "alpha")]),
    "E": ("Order Executed", "4.4.1", [
        ("order_ref", 8, "u"), ("executed_shares", 4, "u"), ("match_number", 8, "u")]),
    "C": ("Order Executed With Price", "4.4.2", [
        ("order_ref", 8, "u"), ("executed_shares", 4, "u"), ("match_number", 8, "u"),
        ("printable", 1, "alpha"), ("execution_price", 4, "price4")]),
    "X": ("Order Cancel", "4.4.3", [
        ("order_ref", 8, "u"), ("cancelled_shares", 4, "u")]),
    "D": ("Order Delete", "4.4.4", [("order_ref", 8, "u")]),
    "U": ("Order Replace", "4.4.5", [
        ("original_order_ref", 8, "u"), ("new_order_ref", 8, "u"), ("shares", 4, "u"),
        ("price", 4, "price4")]),
    "P": ("Trade Message (Non-Cross)", "4.5.1", [
        ("order_ref", 8, "u"), ("side", 1, "alpha"), ("shares", 4, "u"),
        ("stock", 8, "alpha"), ("price", 4, "price4"), ("match_number", 8, "u")]),
    "Q": ("Cross Trade", "4.5.2", [
        ("shares", 8, "u"), ("stock", 8, "alpha"), ("cross_price", 4, "price4"),
        ("match_number", 8, "u"), ("cross_type", 1, "alpha")]),
    "B": ("Broken Trade / Order Execution", "4.5.3", [("match_number", 8, "u")]),
    "I": ("Net Order Imbalance Indicator (NOII)", "4.6", [
        ("paired_shares", 8, "u"), ("imbalance_shares", 8, "u"),
        ("imbalance_direction", 1, "alpha"), ("stock", 8, "alpha"), ("far_price", 4, "price4"),
        ("near_price", 4, "price4"), ("current_reference_price", 4, "price4"),
        ("cross_type", 1, "alpha"), ("price_variation_indicator", 1, "alpha")]),
    "N": ("Retail Price Improvement Indicator (RPII)", "4.7", [
        ("stock", 8, "alpha"), ("interest_flag", 1, "alpha")]),
    "O": ("Direct Listing with Capital Raise Price Discovery", "4.8", [
        ("stock", 8, "alpha"), ("open_eligibility_status", 1, "alpha"),
        ("minimum_allowable_price", 4, "price4"), ("maximum_allowable_price", 4, "price4"),
        ("near_execution_price", 4, "price4"), ("near_execution_time", 8, "u"),
        ("lower_price_range_collar", 4, "price4"), ("upper_price_range_collar", 4, "price4")]),
}


def _build_layouts() -> dict:
    layouts = {}
    for mtype, (name, section, body) in _BODIES.items():
        fields = []
        offset = 0
        for fname, size, kind in (*HEADER_FIELDS, *body):
            fields.append(Field(fname, offset, size, kind))
            offset += size
        layouts[mtype] = MessageLayout(mtype, name, section, tuple(fields))
    return layouts


#: Every ITCH 5.0 message type -> its layout.
LAYOUTS: dict = _build_layouts()
#: Message Type -> length in bytes.
MESSAGE_LENGTH: dict = {t: lay.length for t, lay in LAYOUTS.items()}
#: Message types the order book consumes (P does not change the book but is a trade print).
BOOK_MESSAGE_TYPES = "AFECXDUP"


def wire_dtype(mtype: str) -> np.dtype:
    """Packed big-endian NumPy dtype that views raw message bytes of type ``mtype``.

    6-byte integers are viewed as ``(u1, 6)`` and alpha fields as ``S<n>``; use
    :func:`decoded_dtype` for the native-endian decoded form.

    Raises
    ------
    KeyError
        ``mtype`` is not an ITCH 5.0 message type.
    """
    lay = LAYOUTS[mtype]
    names, formats, offsets = [], [], []
    for f in lay.fields:
        names.append(f.name)
        offsets.append(f.offset)
        if f.kind == "alpha":
            formats.append(f"S{f.size}")
        elif f.size == 6:
            formats.append(("u1", 6))
        else:
            formats.append(f">u{f.size}")
    return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                     "itemsize": lay.length})


def decoded_dtype(mtype: str) -> np.dtype:
    """Native-endian record dtype of decoded ``mtype`` messages.

    Fields: ``offset`` (u8, byte offset of the message in its source: the file offset of the
    message's first byte, after its length prefix), ``seq`` (u8, MoldUDP64 sequence number, or
    the 0-based message index for files), then every spec field: integers as ``u1/u2/u4/u8``
    (timestamps and Price(8) as ``u8``), prices as ``u4`` in 1/10,000 USD, one-byte alpha codes
    as ``S1`` and longer alpha fields as ``S<n>`` with the padding kept.
    """
    lay = LAYOUTS[mtype]
    fields = [("offset", "<u8"), ("seq", "<u8")]
    for f in lay.fields:
        if f.kind == "alpha":
            fields.append((f.name, f"S{f.size}"))
        elif f.size == 6:
            fields.append((f.name, "<u8"))
        else:
            fields.append((f.name, f"<u{f.size}"))
    return np.dtype(fields)


#: The unified, time-ordered input record of the order book (one per A F E C X D U P message),
#: 48 bytes. ``msg_type`` and ``side`` hold ASCII codes; ``price`` is the message's price, the
#: execution price for C; ``shares`` is the added, executed, cancelled, replacement or traded
#: share count; ``new_order_ref`` is set for U only; ``printable`` is 1 except for C messages
#: marked non-printable. ``seq`` is the MoldUDP64 sequence number (or message index in a file).
ORDER_EVENT_DTYPE = np.dtype([
    ("timestamp", "<u8"),       # ns since midnight
    ("seq", "<u8"),
    ("order_ref", "<u8"),
    ("new_order_ref", "<u8"),
    ("shares", "<u4"),          # shares
    ("price", "<u4"),           # 1/10,000 USD
    ("stock_locate", "<u2"),
    ("msg_type", "u1"),
    ("side", "u1"),             # ord('B') / ord('S') / 0 when the message carries none
    ("printable", "u1"),
    ("_pad", "V3"),
])
assert ORDER_EVENT_DTYPE.itemsize == 48
