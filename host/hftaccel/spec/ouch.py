"""NASDAQ OUCH 5.0 order entry messages and SoupBinTCP 4.0 packets, as data.

Source: *OUCH 5.0 Order Entry Specification*, Nasdaq (revision 1.05 of October 7, 2025;
``https://www.nasdaqtrader.com/content/technicalsupport/specifications/TradingProducts/Ouch5.0.pdf``).
Section numbers below are that document's: 1.2 data types and TagValue appendages, 2.x inbound
messages (client -> Nasdaq), 3.x outbound messages (Nasdaq -> client), Appendix A optional
fields (TagValue tags). SoupBinTCP: *SoupBinTCP 4.0* specification, Nasdaq (sections 2.1-2.3).

The spec's direction words are kept: **inbound** means client -> Nasdaq (Enter Order, Replace,
Cancel, ...), **outbound** means Nasdaq -> client (System Event, Accepted, Executed, ...). Type
letters overlap between the directions (``U X M Q C D E``), so every lookup names a direction.

Data types (spec 1.2): integers are unsigned big-endian binary ("Numeric": Byte 1, Short 2,
Integer 4, Long 8 bytes); alpha fields are left-justified ASCII padded on the right with spaces;
``Price`` is an 8-byte unsigned integer with 4 implied decimals (1/10,000 USD) -- unsigned
unless designated otherwise; the only signed prices are the ``SignedPrice`` 4-byte offsets of
the PegOffset / DiscretionPegOffset options. Timestamps are 8-byte nanoseconds since midnight.
The largest supported limit price is $199,999.9900 (``0x7735939C``); ``0x7FFFFFFF`` flags a
market order for a cross.

Most messages end with ``Appendage Length`` (2 bytes, the number of bytes that follow) and an
options appendage: a concatenation of TagValue elements ``Length(1) OptionTag(1) Value`` where
Length counts the tag and the value (spec 1.2). Whether the Appendage Length is required,
optional (it may be absent altogether) or not part of the message is recorded per layout.

Every table here is read by the golden codec (``hftaccel.golden.ouch``), the gateware OUCH
encoder (``hftaccel.rtl.ouch``) and the order router; nothing restates them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layout import Field

__all__ = [
    "Field", "MessageLayout", "OptionSpec",
    "INBOUND", "OUTBOUND", "DIRECTIONS", "layouts", "layout",
    "OPTIONS", "OPTIONS_BY_TAG", "OPTIONS_BY_NAME", "TAGVALUE_HEADER_SIZE",
    "APPENDAGE_LENGTH_SIZE", "APPENDAGE_REQUIRED", "APPENDAGE_OPTIONAL", "APPENDAGE_NONE",
    "PRICE_SCALE", "MAX_PRICE", "MARKET_PRICE", "MARKET_PRICE_ALT", "MAX_QUANTITY",
    "SIDES", "TIME_IN_FORCE", "DISPLAY", "CAPACITY", "INTERMARKET_SWEEP", "CROSS_TYPE",
    "ORDER_STATE", "EVENT_CODES", "CANCEL_REASONS", "BROKEN_TRADE_REASONS",
    "RESTATED_REASONS",
    "wire_dtype", "ENTER_ORDER_WIRE_DTYPE", "ENTER_ORDER_DTYPE", "ENTER_ORDER_LENGTH",
    "SoupPacketLayout", "SOUP_LENGTH_SIZE", "SOUP_HEADER_SIZE", "SOUP_FROM_SERVER",
    "SOUP_FROM_CLIENT", "SOUP_LAYOUTS", "SOUP_LOGIN_REJECT_CODES", "soup_layout",
]

# --------------------------------------------------------------------------- data types (1.2)

#: Price: 4 implied decimals, i.e. 1/10,000 USD (spec 1.2), the same unit as ITCH Price(4).
PRICE_SCALE = 10_000
#: Largest supported limit price, $199,999.9900 = 0x7735939C (spec 1.2).
MAX_PRICE = 1_999_999_900
#: Special price that flags a market order for a cross, $214,748.3647 = 0x7FFFFFFF (spec 1.2).
MARKET_PRICE = 0x7FFFFFFF
#: A price of $200,000.0000 is also treated as a market order (spec 1.2).
MARKET_PRICE_ALT = 2_000_000_000
#: Quantity on Enter / Replace must be greater than zero and less than 1,000,000 (spec 2.1).
MAX_QUANTITY = 999_999

#: Appendage Length field size (spec 1.2).
APPENDAGE_LENGTH_SIZE = 2
#: TagValue element header: Length(1) + OptionTag(1) (spec 1.2).
TAGVALUE_HEADER_SIZE = 2
#: Appendage rules of a layout.
APPENDAGE_REQUIRED = "required"   # Appendage Length always present (0 when no options)
APPENDAGE_OPTIONAL = "optional"   # Appendage Length may be absent; the message then ends
APPENDAGE_NONE = "none"           # the message has no appendage

# --------------------------------------------------------------------------- code values

#: Side (spec 2.1): buy, sell, sell short, sell short exempt.
SIDES = {"B": "buy", "S": "sell", "T": "sell short", "E": "sell short exempt"}
#: Time In Force (spec 2.1), one alpha byte.
TIME_IN_FORCE = {"0": "day (market hours)", "3": "immediate or cancel", "5": "GTX (extended hours)",
                 "6": "GTT (needs ExpireTime)", "E": "after hours"}
#: Display (spec 2.1; ``Z`` conformant appears on outbound messages only).
DISPLAY = {"Y": "visible", "N": "hidden", "A": "attributable", "Z": "conformant"}
#: Capacity (spec 2.1).
CAPACITY = {"A": "agency", "P": "principal", "R": "riskless", "O": "other"}
#: InterMarket Sweep Eligibility (spec 2.1).
INTERMARKET_SWEEP = {"Y": "eligible", "N": "not eligible"}
#: CrossType (spec 2.1).
CROSS_TYPE = {"N": "continuous market", "O": "opening cross", "C": "closing cross",
              "H": "halt/IPO", "S": "supplemental", "R": "retail (BX only)",
              "E": "extended life", "A": "after hours close"}
#: Order State on Accepted / Replaced (spec 3.2).
ORDER_STATE = {"L": "live", "D": "dead"}
#: System Event codes (spec 3.1).
EVENT_CODES = {"S": "start of day", "E": "end of day"}
#: Order Canceled reasons (Appendix B).
CANCEL_REASONS = {
    "D": "regulatory restriction", "E": "closed", "F": "post only, NMS price slide",
    "G": "post only, displayed-order price slide", "H": "halted", "I": "immediate or cancel",
    "K": "market collars", "Q": "self match prevention", "S": "supervisory",
    "T": "time in force expired", "U": "user requested", "X": "open protection",
    "Z": "system cancel", "e": "DLCR order exceeds shares offered",
}
#: Broken Trade reasons (spec 3.7).
BROKEN_TRADE_REASONS = {"E": "clearly erroneous", "C": "consent", "S": "supervisory",
                        "X": "external"}
#: Order Restated reasons (spec 3.13).
RESTATED_REASONS = {"R": "refresh of display", "P": "update of displayed price"}


# --------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class MessageLayout:
    """Layout of one OUCH 5.0 message.

    Attributes
    ----------
    type : str
        One-character message type.
    name : str
        The spec's name of the message.
    direction : str
        ``"inbound"`` (client -> Nasdaq) or ``"outbound"`` (Nasdaq -> client).
    section : str
        Section of the OUCH 5.0 specification that defines it.
    fields : tuple[Field, ...]
        Fixed fields in wire order, starting with ``type``; the Appendage Length is not one
        of them.
    appendage : str
        ``APPENDAGE_REQUIRED``, ``APPENDAGE_OPTIONAL`` or ``APPENDAGE_NONE``.
    options : tuple[str, ...]
        Names of the Appendix A options the spec lists for this message.
    """

    type: str
    name: str
    direction: str
    section: str
    fields: tuple
    appendage: str
    options: tuple

    @property
    def fixed_length(self) -> int:
        """Bytes of the fixed fields (Type included, Appendage Length excluded)."""
        last = self.fields[-1]
        return last.offset + last.size

    @property
    def min_length(self) -> int:
        """Shortest valid message: fixed fields plus a required Appendage Length."""
        extra = APPENDAGE_LENGTH_SIZE if self.appendage == APPENDAGE_REQUIRED else 0
        return self.fixed_length + extra

    def field(self, name: str) -> Field:
        """Return the field called ``name``; raise ``KeyError`` naming the message otherwise."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"OUCH {self.direction} {self.type!r} ({self.name}) has no field {name!r}")


@dataclass(frozen=True)
class OptionSpec:
    """One Appendix A optional field (a TagValue element).

    Attributes
    ----------
    tag : int
        OptionTag byte.
    name : str
        snake_case name used by the codec.
    size : int
        Value size in bytes (the element's Length byte is ``size + 1``).
    kind : str
        As :attr:`Field.kind`.
    """

    tag: int
    name: str
    size: int
    kind: str


#: Appendix A: every TagValue option of OUCH 5.0 (tags 8 and 19-21 are not defined).
OPTIONS = (
    OptionSpec(1, "secondary_ord_ref_num", 8, "u"),
    OptionSpec(2, "firm", 4, "alpha"),
    OptionSpec(3, "min_qty", 4, "u"),
    OptionSpec(4, "customer_type", 1, "alpha"),
    OptionSpec(5, "max_floor", 4, "u"),
    OptionSpec(6, "price_type", 1, "alpha"),
    OptionSpec(7, "peg_offset", 4, "i"),
    OptionSpec(9, "discretion_price", 8, "price"),
    OptionSpec(10, "discretion_price_type", 1, "alpha"),
    OptionSpec(11, "discretion_peg_offset", 4, "i"),
    OptionSpec(12, "post_only", 1, "alpha"),
    OptionSpec(13, "random_reserves", 4, "u"),
    OptionSpec(14, "route", 4, "alpha"),
    OptionSpec(15, "expire_time", 4, "u"),
    OptionSpec(16, "trade_now", 1, "alpha"),
    OptionSpec(17, "handle_inst", 1, "alpha"),
    OptionSpec(18, "bbo_weight_indicator", 1, "alpha"),
    OptionSpec(22, "display_quantity", 4, "u"),
    OptionSpec(23, "display_price", 8, "price"),
    OptionSpec(24, "group_id", 2, "u"),
    OptionSpec(25, "shares_located", 1, "alpha"),
    OptionSpec(26, "locate_broker", 4, "alpha"),
    OptionSpec(27, "side", 1, "alpha"),
    OptionSpec(28, "user_ref_idx", 1, "u"),
    OptionSpec(29, "aiq_strategy", 1, "alpha"),
    OptionSpec(30, "aiq_group_id", 2, "alpha"),
)
OPTIONS_BY_TAG = {o.tag: o for o in OPTIONS}
OPTIONS_BY_NAME = {o.name: o for o in OPTIONS}

_ENTER_OPTIONS = ("firm", "min_qty", "customer_type", "max_floor", "price_type", "peg_offset",
                  "discretion_price", "discretion_price_type", "discretion_peg_offset",
                  "post_only", "random_reserves", "route", "expire_time", "trade_now",
                  "handle_inst", "group_id", "shares_located", "locate_broker", "user_ref_idx",
                  "aiq_strategy", "aiq_group_id")
_REPLACE_OPTIONS = tuple(o for o in _ENTER_OPTIONS if o not in ("firm", "group_id")) + ("side",)
_ACCEPTED_OPTIONS = _ENTER_OPTIONS + ("bbo_weight_indicator", "secondary_ord_ref_num")
_URI = ("user_ref_idx",)

_TS = ("timestamp", 8, "u")
_URN = ("user_ref_num", 4, "u")
_CLORD = ("cl_ord_id", 14, "alpha")
_R, _O, _N = APPENDAGE_REQUIRED, APPENDAGE_OPTIONAL, APPENDAGE_NONE

# type -> (name, section, body fields after Type as (name, size, kind), appendage, options)
_INBOUND_BODIES = {
    "O": ("Enter Order", "2.1", [
        _URN, ("side", 1, "alpha"), ("quantity", 4, "u"), ("symbol", 8, "alpha"),
        ("price", 8, "price"), ("time_in_force", 1, "alpha"), ("display", 1, "alpha"),
        ("capacity", 1, "alpha"), ("intermarket_sweep", 1, "alpha"),
        ("cross_type", 1, "alpha"), _CLORD], _R, _ENTER_OPTIONS),
    "U": ("Replace Order Request", "2.2", [
        ("orig_user_ref_num", 4, "u"), _URN, ("quantity", 4, "u"), ("price", 8, "price"),
        ("time_in_force", 1, "alpha"), ("display", 1, "alpha"),
        ("intermarket_sweep", 1, "alpha"), _CLORD], _R, _REPLACE_OPTIONS),
    "X": ("Cancel Order Request", "2.3", [_URN, ("quantity", 4, "u")], _O, _URI),
    "M": ("Modify Order Request", "2.4", [_URN, ("side", 1, "alpha"), ("quantity", 4, "u")],
          _O, ("user_ref_idx", "shares_located", "locate_broker")),
    "C": ("Mass Cancel Request", "2.5", [_URN, ("firm", 4, "alpha"), ("symbol", 8, "alpha")],
          _R, ("side", "group_id", "user_ref_idx")),
    "D": ("Disable Order Entry Request", "2.6", [_URN, ("firm", 4, "alpha")], _R, _URI),
    "E": ("Enable Order Entry Request", "2.7", [_URN, ("firm", 4, "alpha")], _R, _URI),
    "Q": ("Account Query Request", "2.8", [], _O, _URI),
}

_OUTBOUND_BODIES = {
    "S": ("System Event", "3.1", [_TS, ("event_code", 1, "alpha")], _N, ()),
    "A": ("Order Accepted", "3.2", [
        _TS, _URN, ("side", 1, "alpha"), ("quantity", 4, "u"), ("symbol", 8, "alpha"),
        ("price", 8, "price"), ("time_in_force", 1, "alpha"), ("display", 1, "alpha"),
        ("order_ref_num", 8, "u"), ("capacity", 1, "alpha"), ("intermarket_sweep", 1, "alpha"),
        ("cross_type", 1, "alpha"), ("order_state", 1, "alpha"), _CLORD],
        _R, _ACCEPTED_OPTIONS),
    "U": ("Order Replaced", "3.3", [
        _TS, ("orig_user_ref_num", 4, "u"), _URN, ("side", 1, "alpha"), ("quantity", 4, "u"),
        ("symbol", 8, "alpha"), ("price", 8, "price"), ("time_in_force", 1, "alpha"),
        ("display", 1, "alpha"), ("order_ref_num", 8, "u"), ("capacity", 1, "alpha"),
        ("intermarket_sweep", 1, "alpha"), ("cross_type", 1, "alpha"),
        ("order_state", 1, "alpha"), _CLORD], _R, _ACCEPTED_OPTIONS),
    "C": ("Order Canceled", "3.4", [_TS, _URN, ("quantity", 4, "u"), ("reason", 1, "alpha")],
          _O, _URI),
    "D": ("AIQ Canceled", "3.5", [
        _TS, _URN, ("decrement_shares", 4, "u"), ("reason", 1, "alpha"),
        ("quantity_prevented", 4, "u"), ("execution_price", 8, "price"),
        ("liquidity_flag", 1, "alpha"), ("aiq_strategy", 1, "alpha")], _O, _URI),
    "E": ("Order Executed", "3.6", [
        _TS, _URN, ("quantity", 4, "u"), ("price", 8, "price"), ("liquidity_flag", 1, "alpha"),
        ("match_number", 8, "u")], _R, _URI),
    "B": ("Broken Trade", "3.7", [
        _TS, _URN, ("match_number", 8, "u"), ("reason", 1, "alpha"), _CLORD], _O, _URI),
    "J": ("Rejected", "3.8", [_TS, _URN, ("reason", 2, "u"), _CLORD], _O, _URI),
    "P": ("Cancel Pending", "3.9", [_TS, _URN], _O, _URI),
    "I": ("Cancel Reject", "3.10", [_TS, _URN], _O, _URI),
    "T": ("Order Priority Update", "3.11", [
        _TS, _URN, ("price", 8, "price"), ("display", 1, "alpha"), ("order_ref_num", 8, "u")],
        _O, _URI),
    "M": ("Order Modified", "3.12", [_TS, _URN, ("side", 1, "alpha"), ("quantity", 4, "u")],
          _O, ("user_ref_idx", "shares_located", "locate_broker")),
    "R": ("Order Restated", "3.13", [_TS, _URN, ("reason", 1, "alpha")], _R,
          ("display_quantity", "display_price", "secondary_ord_ref_num", "user_ref_idx")),
    "X": ("Mass Cancel Response", "3.14", [
        _TS, _URN, ("firm", 4, "alpha"), ("symbol", 8, "alpha")], _R,
        ("side", "group_id", "user_ref_idx")),
    "G": ("Disable Order Entry Response", "3.15", [_TS, _URN, ("firm", 4, "alpha")], _R, _URI),
    "K": ("Enable Order Entry Response", "3.16", [_TS, _URN, ("firm", 4, "alpha")], _R, _URI),
    "Q": ("Account Query Response", "3.17", [_TS, ("next_user_ref_num", 4, "u")], _O, _URI),
}


def _build(direction: str, bodies: dict) -> dict:
    out = {}
    for mtype, (name, section, body, appendage, options) in bodies.items():
        fields, offset = [], 0
        for fname, size, kind in (("type", 1, "alpha"), *body):
            fields.append(Field(fname, offset, size, kind))
            offset += size
        out[mtype] = MessageLayout(mtype, name, direction, section, tuple(fields), appendage,
                                   tuple(options))
    return out


#: Inbound (client -> Nasdaq) message type -> layout (spec section 2).
INBOUND: dict = _build("inbound", _INBOUND_BODIES)
#: Outbound (Nasdaq -> client) message type -> layout (spec section 3).
OUTBOUND: dict = _build("outbound", _OUTBOUND_BODIES)
DIRECTIONS = ("inbound", "outbound")


def layouts(direction: str) -> dict:
    """Return the type -> layout table of ``direction`` (``"inbound"`` or ``"outbound"``).

    Raises
    ------
    ValueError
        ``direction`` is neither.
    """
    if direction == "inbound":
        return INBOUND
    if direction == "outbound":
        return OUTBOUND
    raise ValueError(f"OUCH direction must be 'inbound' or 'outbound', got {direction!r}")


def layout(direction: str, mtype: str) -> MessageLayout:
    """Return the layout of ``mtype`` in ``direction``; ``KeyError`` names both if unknown."""
    table = layouts(direction)
    if mtype not in table:
        raise KeyError(f"no OUCH 5.0 {direction} message of type {mtype!r}")
    return table[mtype]


def wire_dtype(direction: str, mtype: str) -> np.dtype:
    """Packed big-endian dtype viewing the fixed part of ``mtype``.

    Includes ``appendage_length`` (``>u2``) when the layout requires it, so a message with an
    empty appendage is exactly one record. Alpha fields are ``S<n>``; prices ``>u8``; signed
    fields ``>i<n>``.
    """
    lay = layout(direction, mtype)
    names, formats, offsets = [], [], []
    for f in lay.fields:
        names.append(f.name)
        offsets.append(f.offset)
        if f.kind == "alpha":
            formats.append(f"S{f.size}")
        elif f.kind == "i":
            formats.append(f">i{f.size}")
        else:
            formats.append(f">u{f.size}")
    if lay.appendage == APPENDAGE_REQUIRED:
        names.append("appendage_length")
        formats.append(">u2")
        offsets.append(lay.fixed_length)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                     "itemsize": lay.min_length})


#: Enter Order with an empty appendage: 47 bytes (spec 2.1).
ENTER_ORDER_WIRE_DTYPE = wire_dtype("inbound", "O")
ENTER_ORDER_LENGTH = ENTER_ORDER_WIRE_DTYPE.itemsize
assert ENTER_ORDER_LENGTH == 47

#: Native record of one Enter Order for batch encoding (no appendage): the fields of spec 2.1
#: without Type. ``price`` in 1/10,000 USD; alpha fields space padded.
ENTER_ORDER_DTYPE = np.dtype([
    ("price", "<u8"),
    ("user_ref_num", "<u4"),
    ("quantity", "<u4"),
    ("symbol", "S8"),
    ("cl_ord_id", "S14"),
    ("side", "S1"),
    ("time_in_force", "S1"),
    ("display", "S1"),
    ("capacity", "S1"),
    ("intermarket_sweep", "S1"),
    ("cross_type", "S1"),
])

# --------------------------------------------------------------------------- SoupBinTCP 4.0

#: Packet Length: 2-byte big-endian count of the bytes that follow it (type + payload).
SOUP_LENGTH_SIZE = 2
#: Packet Length + Packet Type.
SOUP_HEADER_SIZE = 3

#: Packet types sent by the server (SoupBinTCP 2.1-2.2).
SOUP_FROM_SERVER = {"+": "Debug", "A": "Login Accepted", "J": "Login Rejected",
                    "S": "Sequenced Data", "H": "Server Heartbeat", "Z": "End of Session"}
#: Packet types sent by the client (SoupBinTCP 2.1, 2.3).
SOUP_FROM_CLIENT = {"+": "Debug", "L": "Login Request", "U": "Unsequenced Data",
                    "R": "Client Heartbeat", "O": "Logout Request"}
#: Login Rejected reject reason codes (SoupBinTCP 2.2.2).
SOUP_LOGIN_REJECT_CODES = {"A": "not authorized", "S": "session not available"}


@dataclass(frozen=True)
class SoupPacketLayout:
    """Payload layout of one SoupBinTCP packet type.

    Attributes
    ----------
    type : str
        Packet Type character.
    name : str
    sender : str
        ``"server"``, ``"client"`` or ``"both"``.
    section : str
        SoupBinTCP 4.0 section.
    fields : tuple[tuple[str, int, str], ...]
        ``(name, size, kind)`` in wire order after the Packet Type; kind ``"alpha"`` is
        left-justified and right-padded with spaces, ``"alpha_left"`` right-justified and
        left-padded with spaces, ``"numeric"`` ASCII decimal digits right-justified and
        left-padded with spaces. Empty with ``variable=True`` for data packets.
    variable : bool
        The payload is an opaque, variable-length message (data and debug packets).
    """

    type: str
    name: str
    sender: str
    section: str
    fields: tuple
    variable: bool = False

    @property
    def payload_length(self) -> int:
        """Fixed payload size (0 for variable packets)."""
        return sum(f[1] for f in self.fields)


#: (sender, type) -> layout.
SOUP_LAYOUTS = {
    ("both", "+"): SoupPacketLayout("+", "Debug", "both", "2.1", (), True),
    ("server", "A"): SoupPacketLayout("A", "Login Accepted", "server", "2.2.1", (
        ("session", 10, "alpha_left"), ("sequence_number", 20, "numeric"))),
    ("server", "J"): SoupPacketLayout("J", "Login Rejected", "server", "2.2.2", (
        ("reject_reason_code", 1, "alpha"),)),
    ("server", "S"): SoupPacketLayout("S", "Sequenced Data", "server", "2.2.3", (), True),
    ("server", "H"): SoupPacketLayout("H", "Server Heartbeat", "server", "2.2.4", ()),
    ("server", "Z"): SoupPacketLayout("Z", "End of Session", "server", "2.2.5", ()),
    ("client", "L"): SoupPacketLayout("L", "Login Request", "client", "2.3.1", (
        ("username", 6, "alpha"), ("password", 10, "alpha"),
        ("requested_session", 10, "alpha_left"), ("requested_sequence_number", 20, "numeric"))),
    ("client", "U"): SoupPacketLayout("U", "Unsequenced Data", "client", "2.3.2", (), True),
    ("client", "R"): SoupPacketLayout("R", "Client Heartbeat", "client", "2.3.3", ()),
    ("client", "O"): SoupPacketLayout("O", "Logout Request", "client", "2.3.4", ()),
}


def soup_layout(sender: str, ptype: str) -> SoupPacketLayout:
    """Return the layout of packet ``ptype`` sent by ``sender`` (``"server"``/``"client"``).

    Raises
    ------
    KeyError
        ``ptype`` is not a SoupBinTCP 4.0 packet of that sender.
    """
    if (sender, ptype) in SOUP_LAYOUTS:
        return SOUP_LAYOUTS[(sender, ptype)]
    if ptype == "+" and sender in ("server", "client"):
        return SOUP_LAYOUTS[("both", "+")]
    raise KeyError(f"no SoupBinTCP 4.0 packet {ptype!r} sent by {sender!r}")
