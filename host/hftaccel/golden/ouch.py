"""Golden OUCH 5.0 codec and SoupBinTCP 4.0 framing, table-driven from :mod:`hftaccel.spec.ouch`.

A decoded message is a dict: ``"type"`` (one-character str), one entry per fixed field of the
layout (alpha fields as ``bytes`` with their padding kept, integers and prices as ``int``), and
``"options"``: a dict ``{option name: value}`` of the TagValue appendage in wire order, or
``None`` when an optional Appendage Length is absent. Encoding takes the same dict (alpha values
may be ``str`` or shorter ``bytes``; they are space padded on the right), so
``encode(decode(b)) == b`` byte for byte.

Decoding is tolerant of options the spec does not list for a message (any Appendix A tag is
read); encoding is exact and refuses them. Bad input raises :class:`OuchError` naming the byte
offset. Batches of Enter Orders (the order path of the pipeline) are encoded vectorized from
:data:`hftaccel.spec.ouch.ENTER_ORDER_DTYPE` records.
"""

from __future__ import annotations

import numpy as np

from hftaccel.spec import ouch as spec
from hftaccel.spec.risk import DECISION_DTYPE, VERDICT_APPROVED

__all__ = [
    "OuchError", "encode", "decode", "encode_options", "decode_options",
    "soup_packet", "soup_split", "soup_encode", "soup_decode", "decode_stream",
    "empty_enter_orders", "encode_enter_orders", "frame_enter_orders", "decode_enter_orders",
    "orders_from_decisions",
]


class OuchError(ValueError):
    """Malformed OUCH / SoupBinTCP bytes or values.

    Attributes
    ----------
    offset : int | None
        Byte offset of the offending field / element / packet in ``source``.
    source : str
    """

    def __init__(self, message: str, *, offset: int | None = None, source: str = "<bytes>"):
        where = f"{source}: " if offset is None else f"{source} @ byte {offset}: "
        super().__init__(where + message)
        self.offset = offset
        self.source = source


# --------------------------------------------------------------------------- scalar fields


def _alpha(value, size: int, what: str) -> bytes:
    if isinstance(value, str):
        value = value.encode("ascii")
    if not isinstance(value, (bytes, bytearray, np.bytes_)):
        raise OuchError(f"{what} must be str or bytes, got {value!r}")
    value = bytes(value)
    if len(value) > size:
        raise OuchError(f"{what} {value!r} is longer than its {size} bytes")
    if any(c < 0x20 or c > 0x7E for c in value):
        raise OuchError(f"{what} {value!r} holds non-printable bytes")
    return value.ljust(size, b" ")


def _put(kind: str, size: int, value, what: str) -> bytes:
    if kind == "alpha":
        return _alpha(value, size, what)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise OuchError(f"{what} must be an integer, got {value!r}")
    value = int(value)
    signed = kind == "i"
    lo, hi = (-(1 << (8 * size - 1)), (1 << (8 * size - 1)) - 1) if signed else (0, (1 << (8 * size)) - 1)
    if not lo <= value <= hi:
        raise OuchError(f"{what} = {value} does not fit {size} {'signed' if signed else 'unsigned'} bytes")
    return value.to_bytes(size, "big", signed=signed)


def _get(kind: str, raw: bytes):
    if kind == "alpha":
        return bytes(raw)
    return int.from_bytes(raw, "big", signed=(kind == "i"))


# --------------------------------------------------------------------------- appendage


def encode_options(options: dict, allowed: tuple | None = None, *, what: str = "options") -> bytes:
    """Encode ``{name: value}`` as concatenated TagValue elements (spec 1.2, Appendix A).

    Raises
    ------
    OuchError
        Unknown option name, an option not in ``allowed``, or a value that does not fit.
    """
    out = bytearray()
    for name, value in options.items():
        opt = spec.OPTIONS_BY_NAME.get(name)
        if opt is None:
            raise OuchError(f"{what}: {name!r} is not an OUCH 5.0 Appendix A option")
        if allowed is not None and name not in allowed:
            raise OuchError(f"{what}: option {name!r} is not defined for this message "
                            f"(allowed: {', '.join(allowed) or 'none'})")
        out += bytes((opt.size + 1, opt.tag))
        out += _put(opt.kind, opt.size, value, f"{what}.{name}")
    if len(out) > 0xFFFF:
        raise OuchError(f"{what}: appendage of {len(out)} bytes exceeds the 2-byte length")
    return bytes(out)


def decode_options(buf, *, offset: int = 0, source: str = "<bytes>") -> dict:
    """Decode a TagValue appendage (without its Appendage Length) into ``{name: value}``.

    Raises
    ------
    OuchError
        Truncated element, zero Length, unknown tag, wrong value size for the tag, or a
        repeated tag; the offset of the element is named.
    """
    buf = bytes(buf)
    opts, pos = {}, 0
    while pos < len(buf):
        if pos + spec.TAGVALUE_HEADER_SIZE > len(buf):
            raise OuchError("truncated TagValue element header", offset=offset + pos, source=source)
        length, tag = buf[pos], buf[pos + 1]
        if length == 0:
            raise OuchError(f"TagValue element with Length 0 (tag {tag})", offset=offset + pos,
                            source=source)
        end = pos + 1 + length
        if end > len(buf):
            raise OuchError(f"TagValue element tag {tag} needs {length} bytes after its Length, "
                            f"appendage has {len(buf) - pos - 1}", offset=offset + pos, source=source)
        opt = spec.OPTIONS_BY_TAG.get(tag)
        if opt is None:
            raise OuchError(f"unknown OptionTag {tag}", offset=offset + pos + 1, source=source)
        if length - 1 != opt.size:
            raise OuchError(f"option {opt.name} (tag {tag}) has {length - 1} value bytes, "
                            f"Appendix A says {opt.size}", offset=offset + pos, source=source)
        if opt.name in opts:
            raise OuchError(f"option {opt.name} (tag {tag}) repeated", offset=offset + pos,
                            source=source)
        opts[opt.name] = _get(opt.kind, buf[pos + 2:end])
        pos = end
    return opts


# --------------------------------------------------------------------------- messages


def encode(direction: str, message: dict) -> bytes:
    """Encode one OUCH 5.0 message.

    Parameters
    ----------
    direction : {"inbound", "outbound"}
        Spec direction: inbound = client -> Nasdaq, outbound = Nasdaq -> client.
    message : dict
        ``"type"``, every fixed field of the layout, and ``"options"`` (dict, or ``None`` to
        leave out an optional Appendage Length; missing means ``{}`` for a required appendage
        and ``None`` otherwise).

    Returns
    -------
    bytes
        The message without SoupBinTCP framing.

    Raises
    ------
    OuchError
        Unknown type, missing or extra fields, values that do not fit, options not allowed.
    """
    mtype = message.get("type")
    if isinstance(mtype, bytes):
        mtype = mtype.decode("ascii", "replace")
    try:
        lay = spec.layout(direction, mtype)
    except KeyError as e:
        raise OuchError(str(e.args[0])) from None
    what = f"OUCH {direction} {mtype!r} ({lay.name})"
    names = {f.name for f in lay.fields}
    extra = set(message) - names - {"options"}
    if extra:
        raise OuchError(f"{what}: unknown fields {sorted(extra)}")
    out = bytearray(mtype.encode("ascii"))
    for f in lay.fields[1:]:
        if f.name not in message:
            raise OuchError(f"{what}: missing field {f.name!r}")
        out += _put(f.kind, f.size, message[f.name], f"{what}.{f.name}")
    options = message.get("options", {} if lay.appendage == spec.APPENDAGE_REQUIRED else None)
    if options is None:
        if lay.appendage == spec.APPENDAGE_REQUIRED:
            raise OuchError(f"{what}: the Appendage Length is required (spec {lay.section})")
        return bytes(out)
    if lay.appendage == spec.APPENDAGE_NONE:
        raise OuchError(f"{what} has no appendage (spec {lay.section})")
    app = encode_options(options, lay.options, what=what)
    out += len(app).to_bytes(spec.APPENDAGE_LENGTH_SIZE, "big") + app
    return bytes(out)


def decode(direction: str, buf, *, offset: int = 0, source: str = "<bytes>") -> dict:
    """Decode one complete OUCH 5.0 message.

    Parameters
    ----------
    direction : {"inbound", "outbound"}
    buf : bytes-like
        Exactly one message (e.g. one SoupBinTCP data packet payload).
    offset : int
        Byte offset of ``buf`` in ``source``, added to offsets in errors.
    source : str
        Name used in errors (file, connection).

    Raises
    ------
    OuchError
        Empty or unknown type (offset of the type byte); truncated fixed field (its offset);
        missing / mismatching Appendage Length or trailing bytes; bad TagValue elements.
    """
    buf = bytes(buf)
    if not buf:
        raise OuchError("empty OUCH message", offset=offset, source=source)
    mtype = chr(buf[0])
    table = spec.layouts(direction)
    if mtype not in table:
        raise OuchError(f"unknown OUCH 5.0 {direction} message type {buf[0:1]!r} "
                        f"(known: {''.join(table)})", offset=offset, source=source)
    lay = table[mtype]
    msg = {"type": mtype}
    for f in lay.fields[1:]:
        if f.offset + f.size > len(buf):
            raise OuchError(f"truncated {lay.name!r}: field {f.name!r} at offset {f.offset} needs "
                            f"{f.size} bytes, message has {len(buf)}", offset=offset + f.offset,
                            source=source)
        msg[f.name] = _get(f.kind, buf[f.offset:f.offset + f.size])
    pos = lay.fixed_length
    if lay.appendage == spec.APPENDAGE_NONE or (lay.appendage == spec.APPENDAGE_OPTIONAL
                                                  and len(buf) == pos):
        if len(buf) != pos:
            raise OuchError(f"{lay.name!r} is {pos} bytes, got {len(buf) - pos} trailing bytes",
                            offset=offset + pos, source=source)
        msg["options"] = None
        return msg
    if len(buf) < pos + spec.APPENDAGE_LENGTH_SIZE:
        raise OuchError(f"truncated {lay.name!r}: Appendage Length at offset {pos} needs 2 bytes, "
                        f"message has {len(buf)}", offset=offset + pos, source=source)
    app_len = int.from_bytes(buf[pos:pos + 2], "big")
    start = pos + spec.APPENDAGE_LENGTH_SIZE
    if len(buf) - start != app_len:
        raise OuchError(f"{lay.name!r}: Appendage Length says {app_len} bytes, "
                        f"{len(buf) - start} follow", offset=offset + pos, source=source)
    msg["options"] = decode_options(buf[start:], offset=offset + start, source=source)
    return msg


# --------------------------------------------------------------------------- SoupBinTCP 4.0


def soup_packet(ptype: str, payload=b"") -> bytes:
    """Frame ``payload`` as one SoupBinTCP packet: Packet Length(2, BE) + Packet Type(1)."""
    payload = bytes(payload)
    if len(ptype) != 1:
        raise OuchError(f"SoupBinTCP packet type must be one character, got {ptype!r}")
    if len(payload) + 1 > 0xFFFF:
        raise OuchError(f"SoupBinTCP payload of {len(payload)} bytes exceeds the 2-byte length")
    return (len(payload) + 1).to_bytes(2, "big") + ptype.encode("ascii") + payload


def soup_split(buf, *, source: str = "<bytes>", partial: bool = False):
    """Split a SoupBinTCP byte stream into packets.

    Returns
    -------
    packets : list[tuple[str, bytes, int]]
        ``(packet type, payload, offset of the packet's first byte)``.
    rest : bytes
        Only with ``partial=True``: the bytes of an incomplete trailing packet.

    Raises
    ------
    OuchError
        A Packet Length of 0, or (without ``partial``) a truncated trailing packet.
    """
    buf = bytes(buf)
    out, pos = [], 0
    while pos < len(buf):
        if pos + spec.SOUP_LENGTH_SIZE > len(buf):
            break
        n = int.from_bytes(buf[pos:pos + 2], "big")
        if n == 0:
            raise OuchError("SoupBinTCP Packet Length 0 (no Packet Type)", offset=pos, source=source)
        if pos + 2 + n > len(buf):
            break
        out.append((chr(buf[pos + 2]), buf[pos + 3:pos + 2 + n], pos))
        pos += 2 + n
    if partial:
        return out, buf[pos:]
    if pos != len(buf):
        raise OuchError(f"truncated SoupBinTCP packet: {len(buf) - pos} bytes left, packet needs "
                        f"more", offset=pos, source=source)
    return out


def _soup_field(kind: str, size: int, value, what: str) -> bytes:
    if kind == "numeric":
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise OuchError(f"{what} must be a non-negative integer, got {value!r}")
        text = str(int(value)).encode("ascii")
        if len(text) > size:
            raise OuchError(f"{what} = {value} does not fit {size} ASCII digits")
        return text.rjust(size, b" ")
    raw = _alpha(value, size, what).rstrip(b" ")
    return raw.rjust(size, b" ") if kind == "alpha_left" else raw.ljust(size, b" ")


def soup_encode(sender: str, ptype: str, fields: dict | None = None, payload=b"") -> bytes:
    """Encode one SoupBinTCP 4.0 packet from :data:`hftaccel.spec.ouch.SOUP_LAYOUTS`.

    Fixed-layout packets (Login Request / Accepted / Rejected, heartbeats, logout, end of
    session) take ``fields``; data and debug packets take ``payload``. Numeric fields are
    ASCII digits right-justified with spaces; alpha fields are padded per the layout.
    """
    try:
        lay = spec.soup_layout(sender, ptype)
    except KeyError as e:
        raise OuchError(str(e.args[0])) from None
    if lay.variable:
        return soup_packet(ptype, payload)
    fields = fields or {}
    names = {f[0] for f in lay.fields}
    if set(fields) != names:
        raise OuchError(f"SoupBinTCP {lay.name}: fields {sorted(fields)} != {sorted(names)}")
    body = b"".join(_soup_field(k, s, fields[n], f"SoupBinTCP {lay.name}.{n}")
                    for n, s, k in lay.fields)
    return soup_packet(ptype, body)


def soup_decode(sender: str, packet, *, offset: int = 0, source: str = "<bytes>") -> dict:
    """Decode one framed SoupBinTCP 4.0 packet into ``{"type", fields... | "payload"}``."""
    packets = soup_split(packet, source=source)
    if len(packets) != 1:
        raise OuchError(f"expected one SoupBinTCP packet, got {len(packets)}", offset=offset,
                        source=source)
    ptype, payload, _ = packets[0]
    try:
        lay = spec.soup_layout(sender, ptype)
    except KeyError as e:
        raise OuchError(str(e.args[0]), offset=offset + 2, source=source) from None
    if lay.variable:
        return {"type": ptype, "payload": payload}
    if len(payload) != lay.payload_length:
        raise OuchError(f"SoupBinTCP {lay.name} payload is {len(payload)} bytes, layout says "
                        f"{lay.payload_length}", offset=offset + 3, source=source)
    out, pos = {"type": ptype}, 0
    for name, size, kind in lay.fields:
        raw = payload[pos:pos + size]
        if kind == "numeric":
            text = raw.strip(b" ")
            if not text.isdigit():
                raise OuchError(f"SoupBinTCP {lay.name}.{name} {raw!r} is not ASCII digits",
                                offset=offset + 3 + pos, source=source)
            out[name] = int(text)
        else:
            out[name] = raw.strip(b" ")
        pos += size
    return out


def decode_stream(direction: str, buf, *, source: str = "<bytes>") -> list:
    """Decode the OUCH messages of a SoupBinTCP stream.

    Inbound messages ride Unsequenced Data (``U``) packets from the client, outbound ones
    Sequenced Data (``S``) packets from the server; other packet types are skipped. Each
    message dict gains ``"offset"`` (its first byte in ``buf``).
    """
    data_type = "U" if direction == "inbound" else "S"
    out = []
    for ptype, payload, pos in soup_split(buf, source=source):
        if ptype == data_type:
            msg = decode(direction, payload, offset=pos + spec.SOUP_HEADER_SIZE, source=source)
            msg["offset"] = pos + spec.SOUP_HEADER_SIZE
            out.append(msg)
    return out


# --------------------------------------------------------------------------- Enter Order batches

_ALPHA_DEFAULTS = {"time_in_force": b"0", "display": b"Y", "capacity": b"P",
                   "intermarket_sweep": b"N", "cross_type": b"N", "side": b" ",
                   "symbol": b" " * 8, "cl_ord_id": b" " * 14}


def empty_enter_orders(n: int) -> np.ndarray:
    """Return ``n`` Enter Order records: numbers 0, alpha fields at their defaults (TIF day,
    visible, principal, not ISO, continuous market) or spaces."""
    out = np.zeros(n, spec.ENTER_ORDER_DTYPE)
    for name, value in _ALPHA_DEFAULTS.items():
        out[name] = value
    return out


def _pad(values: np.ndarray, size: int) -> np.ndarray:
    """Right-pad NumPy S fields with spaces (NumPy strips trailing NULs, not spaces)."""
    if values.size == 0:  # np.char.ljust reduces over its input and fails on empty arrays
        return values.astype(f"S{size}")
    return np.char.ljust(values.astype(f"S{size}"), size, b" ")


def _validate_orders(orders: np.ndarray) -> None:
    if not isinstance(orders, np.ndarray) or orders.dtype != spec.ENTER_ORDER_DTYPE:
        raise TypeError("Enter Order batches must be arrays of spec.ouch.ENTER_ORDER_DTYPE, got "
                        f"{getattr(orders, 'dtype', type(orders))}")
    checks = (
        ("quantity must be 1..999,999 (spec 2.1)",
         (orders["quantity"] < 1) | (orders["quantity"] > spec.MAX_QUANTITY)),
        ("price must be 1..1,999,999,900 or a market price (spec 1.2)",
         ((orders["price"] < 1) | (orders["price"] > spec.MAX_PRICE))
         & (orders["price"] != spec.MARKET_PRICE) & (orders["price"] != spec.MARKET_PRICE_ALT)),
        ("side must be B, S, T or E (spec 2.1)",
         ~np.isin(orders["side"], [s.encode() for s in spec.SIDES])),
        ("time_in_force is not a spec 2.1 value",
         ~np.isin(orders["time_in_force"], [s.encode() for s in spec.TIME_IN_FORCE])),
    )
    for text, bad in checks:
        idx = np.flatnonzero(bad)
        if idx.size:
            raise OuchError(f"Enter Order record {idx[0]}: {text}; got {orders[idx[0]]}")


def encode_enter_orders(orders: np.ndarray) -> np.ndarray:
    """Encode a batch of Enter Orders with empty appendages, vectorized.

    Parameters
    ----------
    orders : (n,) ENTER_ORDER_DTYPE

    Returns
    -------
    (n * 47,) uint8
        The messages back to back (no framing), message ``i`` at ``47 * i``.

    Raises
    ------
    OuchError
        A record violates spec 2.1 / 1.2 ranges (its index is named).
    """
    _validate_orders(orders)
    wire = np.zeros(orders.shape[0], spec.ENTER_ORDER_WIRE_DTYPE)
    wire["type"] = b"O"
    for f in spec.INBOUND["O"].fields[1:]:
        col = orders[f.name]
        wire[f.name] = _pad(col, f.size) if f.kind == "alpha" else col
    wire["appendage_length"] = 0
    return wire.view(np.uint8).reshape(-1).copy()


def frame_enter_orders(orders: np.ndarray) -> np.ndarray:
    """Encode a batch of Enter Orders, each in its own SoupBinTCP Unsequenced Data packet.

    Returns
    -------
    (n * 50,) uint8
        Packet Length (48, BE) + ``U`` + 47-byte message, per order.
    """
    body = encode_enter_orders(orders).reshape(-1, spec.ENTER_ORDER_LENGTH)
    n = body.shape[0]
    out = np.empty((n, spec.SOUP_HEADER_SIZE + spec.ENTER_ORDER_LENGTH), np.uint8)
    length = spec.ENTER_ORDER_LENGTH + 1
    out[:, 0] = length >> 8
    out[:, 1] = length & 0xFF
    out[:, 2] = ord("U")
    out[:, 3:] = body
    return out.reshape(-1)


def decode_enter_orders(buf, *, source: str = "<bytes>") -> np.ndarray:
    """Decode back-to-back 47-byte Enter Orders (empty appendages) into ENTER_ORDER_DTYPE.

    Raises
    ------
    OuchError
        Length not a multiple of 47, or a record whose type is not ``O`` or whose Appendage
        Length is not 0 (the record's byte offset is named).
    """
    raw = np.frombuffer(bytes(buf), np.uint8)
    if raw.size % spec.ENTER_ORDER_LENGTH:
        raise OuchError(f"{raw.size} bytes is not a whole number of 47-byte Enter Orders",
                        offset=raw.size - raw.size % spec.ENTER_ORDER_LENGTH, source=source)
    wire = raw.view(spec.ENTER_ORDER_WIRE_DTYPE)
    bad = np.flatnonzero((wire["type"] != b"O") | (wire["appendage_length"] != 0))
    if bad.size:
        k = int(bad[0])
        raise OuchError(f"record {k} is not an Enter Order with an empty appendage "
                        f"(type {wire['type'][k]!r}, appendage length {wire['appendage_length'][k]})",
                        offset=k * spec.ENTER_ORDER_LENGTH, source=source)
    out = np.zeros(wire.shape[0], spec.ENTER_ORDER_DTYPE)
    for name in spec.ENTER_ORDER_DTYPE.names:
        out[name] = wire[name]
    for name in ("symbol", "cl_ord_id"):
        out[name] = _pad(out[name], spec.ENTER_ORDER_DTYPE[name].itemsize)
    return out


def orders_from_decisions(decisions: np.ndarray, symbols, *, time_in_force: str = "3",
                          display: str = "Y", capacity: str = "P", intermarket_sweep: str = "N",
                          cross_type: str = "N", cl_ord_id_prefix: str = "") -> np.ndarray:
    """Turn the approved records of a risk-gate run into Enter Order records.

    Parameters
    ----------
    decisions : (n,) spec.risk.DECISION_DTYPE
    symbols : mapping or (65536,) S8 array
        Stock locate -> 8-byte symbol (from the ITCH Stock Directory).
    time_in_force, display, capacity, intermarket_sweep, cross_type : str
        One-character OUCH codes applied to every order (defaults: IOC, visible, principal,
        not ISO, continuous market).
    cl_ord_id_prefix : str
        ClOrdID = prefix + UserRefNum in decimal, zero padded to 14 characters.

    Returns
    -------
    (k,) ENTER_ORDER_DTYPE
        One per approved decision, in input order; UserRefNum, side, quantity and price from
        the decision.

    Raises
    ------
    OuchError
        A locate has no symbol, or the prefix leaves no room for the UserRefNum.
    """
    if not isinstance(decisions, np.ndarray) or decisions.dtype != DECISION_DTYPE:
        raise TypeError("orders_from_decisions() needs spec.risk.DECISION_DTYPE records")
    ok = decisions[decisions["verdict"] == VERDICT_APPROVED]
    out = empty_enter_orders(ok.shape[0])
    if ok.shape[0] == 0:
        return out
    out["user_ref_num"] = ok["user_ref_num"]
    out["quantity"] = ok["shares"]
    out["price"] = ok["price"]
    out["side"] = ok["side"].view("S1")
    locs = ok["stock_locate"]
    if isinstance(symbols, np.ndarray):
        sym = symbols[locs].astype("S8")
    else:
        missing = [int(x) for x in np.unique(locs) if int(x) not in symbols]
        if missing:
            raise OuchError(f"no symbol for stock locate(s) {missing[:10]}")
        sym = np.array([_alpha(symbols[int(x)], 8, "symbol") for x in locs], "S8")
    if np.any(np.char.strip(sym) == b""):
        raise OuchError("an approved order's stock locate maps to a blank symbol")
    out["symbol"] = _pad(sym, 8)
    width = 14 - len(cl_ord_id_prefix)
    if width < 10:
        raise OuchError(f"cl_ord_id_prefix {cl_ord_id_prefix!r} leaves {width} digits; "
                        "a UserRefNum needs 10")
    digits = np.char.zfill(ok["user_ref_num"].astype("U10"), width)
    out["cl_ord_id"] = np.char.add(cl_ord_id_prefix, digits).astype("S14")
    for name, value in (("time_in_force", time_in_force), ("display", display),
                        ("capacity", capacity), ("intermarket_sweep", intermarket_sweep),
                        ("cross_type", cross_type)):
        out[name] = _alpha(value, 1, name)
    return out
