"""NASDAQ TotalView-ITCH 5.0: vectorized decoder and encoder for length-framed files and blocks.

A "messages" value throughout hftaccel is a dict ``{msg_type: array}`` whose arrays have the dtype
:func:`hftaccel.spec.itch.decoded_dtype` of their type. Every array carries ``seq`` (the
MoldUDP64 sequence number, or the 0-based message index in a file) and ``offset`` (the byte
offset of the message's first byte in its source, 0 when synthesized); arrays are sorted by
``seq`` and sequence numbers are unique across the dict. Decoding gathers all messages of a
type with one fancy index and views them through the packed big-endian wire dtype: there is no
per-message Python object on the hot path.

Source: NASDAQ TotalView-ITCH 5.0 specification, sections 1.3 and 4 (layouts in
:mod:`hftaccel.spec.itch`). Files carry each message behind a 2-byte big-endian length, the
same block framing as MoldUDP64 (MoldUDP64 1.00 section 3).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field

import numba
import numpy as np

from hftaccel.spec import itch as spec

__all__ = [
    "ItchError",
    "DecodeResult",
    "empty",
    "decode",
    "decode_blocks",
    "read_file",
    "read_chunks",
    "FileChunk",
    "CHUNK_BYTES",
    "encode",
    "frame",
    "write_file",
    "order_events",
    "concat",
    "counts",
    "n_messages",
    "SKIP_REASONS",
]

#: Reasons a message can be skipped in lenient mode (the keys of ``DecodeResult.skipped``).
SKIP_REASONS = ("unknown_type", "bad_length", "zero_length", "truncated")

_OK, _UNKNOWN, _BADLEN, _ZERO, _TRUNC = 0, 1, 2, 3, 4

# Message Type byte -> expected length (0: not an ITCH 5.0 type).
_EXPECTED = np.zeros(256, dtype=np.int64)
for _t, _n in spec.MESSAGE_LENGTH.items():
    _EXPECTED[ord(_t)] = _n


# Fused book-event extraction: for each Message Type byte, the offsets of the fields that go into
# ORDER_EVENT_DTYPE (-1: the message has no such field). Columns: order_ref, new_order_ref,
# shares, price, side, printable.
_EV_REF, _EV_NEWREF, _EV_SHARES, _EV_PRICE, _EV_SIDE, _EV_PRINTABLE = range(6)
_EVENT_FIELD_NAMES = {
    "A": ("order_ref", None, "shares", "price", "side", None),
    "F": ("order_ref", None, "shares", "price", "side", None),
    "E": ("order_ref", None, "executed_shares", None, None, None),
    "C": ("order_ref", None, "executed_shares", "execution_price", None, "printable"),
    "X": ("order_ref", None, "cancelled_shares", None, None, None),
    "D": ("order_ref", None, None, None, None, None),
    "U": ("original_order_ref", "new_order_ref", "shares", "price", None, None),
    "P": ("order_ref", None, "shares", "price", "side", None),
}
_EVENT_OFFSETS = np.full((256, 6), -1, dtype=np.int64)
for _t, _names in _EVENT_FIELD_NAMES.items():
    for _k, _name in enumerate(_names):
        if _name is not None:
            _EVENT_OFFSETS[ord(_t), _k] = spec.LAYOUTS[_t].field(_name).offset
_LOCATE_OFFSET = spec.LAYOUTS["A"].field("stock_locate").offset
_TIMESTAMP_OFFSET = spec.LAYOUTS["A"].field("timestamp").offset


class ItchError(ValueError):
    """Malformed ITCH input. ``source`` names the file, ``offset`` the byte offset."""

    def __init__(self, message: str, *, source: str, offset: int):
        super().__init__(f"{source}: byte offset {offset}: {message}")
        self.source = source
        self.offset = offset


@dataclass
class DecodeResult:
    """What a decode produced.

    Attributes
    ----------
    messages : dict[str, np.ndarray]
        Decoded messages by type (see the module docstring).
    skipped : dict[str, int]
        Messages skipped in lenient mode, by reason (:data:`SKIP_REASONS`).
    n_messages : int
        Messages decoded (not counting skipped ones).
    first_error : str or None
        The text of the first problem met in lenient mode (names the byte offset).
    events : np.ndarray of ORDER_EVENT_DTYPE or None
        With ``events=True``: the book messages (A F E C X D U P) as order book input, extracted
        in one compiled pass; ``messages`` then holds only the other types.
    type_counts : dict[str, int] or None
        With ``events=True``: messages decoded by type (all types, in spec order).
    """

    messages: dict
    skipped: dict = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    n_messages: int = 0
    first_error: str | None = None
    events: np.ndarray | None = None
    type_counts: dict | None = None


def empty(mtype: str, n: int = 0) -> np.ndarray:
    """Return ``n`` zeroed decoded records of ``mtype`` with alpha fields filled with spaces.

    Raises
    ------
    KeyError
        ``mtype`` is not an ITCH 5.0 message type.
    """
    lay = spec.LAYOUTS[mtype]
    arr = np.zeros(n, dtype=spec.decoded_dtype(mtype))
    for f in lay.fields:
        if f.kind == "alpha":
            arr[f.name] = b" " * f.size
    arr["msg_type"] = mtype.encode()
    return arr


@numba.njit(cache=True)
def _scan(buf, expected):  # pragma: no cover - compiled
    n = buf.shape[0]
    cap = n // 2 + 2           # a zero-length message takes only its 2-byte length
    offsets = np.empty(cap, np.int64)
    lengths = np.empty(cap, np.int64)
    status = np.empty(cap, np.int8)
    count = 0
    pos = 0
    while pos < n:
        if pos + 2 > n:
            offsets[count] = pos
            lengths[count] = n - pos
            status[count] = _TRUNC
            count += 1
            break
        length = (np.int64(buf[pos]) << 8) | np.int64(buf[pos + 1])
        start = pos + 2
        if length == 0:
            offsets[count] = pos
            lengths[count] = 0
            status[count] = _ZERO
            count += 1
            pos = start
            continue
        if start + length > n:
            offsets[count] = pos
            lengths[count] = n - start
            status[count] = _TRUNC
            count += 1
            break
        exp = expected[buf[start]]
        offsets[count] = start
        lengths[count] = length
        if exp == 0:
            status[count] = _UNKNOWN
        elif exp != length:
            status[count] = _BADLEN
        else:
            status[count] = _OK
        count += 1
        pos = start + length
    return offsets[:count], lengths[:count], status[:count]


@numba.njit(cache=True, inline="always")
def _be(buf, p, n):  # pragma: no cover - compiled
    v = np.uint64(0)
    for k in range(n):
        v = (v << np.uint64(8)) | np.uint64(buf[p + k])
    return v


@numba.njit(cache=True)
def _extract_events(buf, offsets, seqs, fields, out):  # pragma: no cover - compiled
    """Fill ``out`` (ORDER_EVENT_DTYPE viewed as bytes-free records) from the book messages at
    ``offsets``; returns how many were written."""
    n = 0
    for i in range(offsets.shape[0]):
        p = offsets[i]
        t = buf[p]
        f = fields[t]
        if f[_EV_REF] < 0:
            continue
        e = out[n]
        e.timestamp = _be(buf, p + _TIMESTAMP_OFFSET, 6)
        e.seq = seqs[i]
        e.order_ref = _be(buf, p + f[_EV_REF], 8)
        # the else values are uint64 too: Numba unifies uint64 with int64 as float64, which
        # would round an 8-byte reference above 2**53
        zero = np.uint64(0)
        e.new_order_ref = _be(buf, p + f[_EV_NEWREF], 8) if f[_EV_NEWREF] >= 0 else zero
        e.shares = _be(buf, p + f[_EV_SHARES], 4) if f[_EV_SHARES] >= 0 else zero
        e.price = _be(buf, p + f[_EV_PRICE], 4) if f[_EV_PRICE] >= 0 else zero
        e.stock_locate = _be(buf, p + _LOCATE_OFFSET, 2)
        e.msg_type = t
        e.side = buf[p + f[_EV_SIDE]] if f[_EV_SIDE] >= 0 else 0
        e.printable = (buf[p + f[_EV_PRINTABLE]] == 89) if f[_EV_PRINTABLE] >= 0 else 1
        n += 1
    return n


# ORDER_EVENT_DTYPE without its void padding (Numba cannot type void fields).
_EVENT_VIEW = np.dtype({
    "names": [n for n in spec.ORDER_EVENT_DTYPE.names if not n.startswith("_")],
    "formats": [spec.ORDER_EVENT_DTYPE.fields[n][0] for n in spec.ORDER_EVENT_DTYPE.names
                if not n.startswith("_")],
    "offsets": [spec.ORDER_EVENT_DTYPE.fields[n][1] for n in spec.ORDER_EVENT_DTYPE.names
                if not n.startswith("_")],
    "itemsize": spec.ORDER_EVENT_DTYPE.itemsize,
})


def _events_at(buf, offsets, seqs) -> np.ndarray:
    """ORDER_EVENT records of the book messages (A F E C X D U P) among well-formed ``offsets``."""
    out = np.zeros(offsets.shape[0], dtype=spec.ORDER_EVENT_DTYPE)
    n = _extract_events(buf, offsets, seqs, _EVENT_OFFSETS, out.view(_EVENT_VIEW))
    return out[:n]


def _describe(code: int, buf: np.ndarray, off: int, length: int) -> str:
    if code == _UNKNOWN:
        t = int(buf[off])
        return f"unknown message type {chr(t)!r} (0x{t:02x}), length {length}"
    if code == _BADLEN:
        t = chr(int(buf[off]))
        return (f"message type {t!r} has length {length}, the ITCH 5.0 specification says "
                f"{spec.MESSAGE_LENGTH[t]}")
    if code == _ZERO:
        return "zero message length"
    return f"truncated message: {length} byte(s) left where a length prefix or body was due"


def _as_u8(buf) -> np.ndarray:
    if isinstance(buf, np.ndarray):
        return np.ascontiguousarray(buf, dtype=np.uint8).reshape(-1)
    return np.frombuffer(memoryview(buf), dtype=np.uint8)


def _check(buf, offsets, lengths, status, seqs, *, lenient, source, base=0):
    """Raise on the first bad message (strict) or count them (lenient); return the OK mask.
    ``base`` is added to the byte offsets that errors name (``buf`` starts there in the file)."""
    ok = status == _OK
    result_skipped = dict.fromkeys(SKIP_REASONS, 0)
    first_error = None
    if not ok.all():
        bad = np.flatnonzero(~ok)
        i = int(bad[0])
        text = _describe(int(status[i]), buf, int(offsets[i]), int(lengths[i]))
        if not lenient:
            raise ItchError(text + f" (message {int(seqs[i])})", source=source,
                            offset=int(offsets[i]) + base)
        first_error = f"{source}: byte offset {int(offsets[i]) + base}: {text}"
        codes = np.bincount(status[bad].astype(np.int64), minlength=5)
        for reason, code in zip(SKIP_REASONS, (_UNKNOWN, _BADLEN, _ZERO, _TRUNC)):
            result_skipped[reason] = int(codes[code])
    return ok, result_skipped, first_error


def _gather(buf, offsets, seqs, src_offsets) -> dict:
    """Decode well-formed messages at ``offsets`` (their lengths already checked)."""
    types = buf[offsets]
    messages = {}
    for code in np.unique(types):
        mtype = chr(int(code))
        lay = spec.LAYOUTS[mtype]
        sel = np.flatnonzero(types == code)
        rows = buf[offsets[sel][:, None] + np.arange(lay.length)]
        wire = rows.view(spec.wire_dtype(mtype)).reshape(-1)
        out = np.empty(sel.shape[0], dtype=spec.decoded_dtype(mtype))
        out["offset"] = src_offsets[sel]
        out["seq"] = seqs[sel]
        for f in lay.fields:
            if f.size == 6 and f.kind == "u":
                b = wire[f.name].astype(np.uint64)
                v = np.zeros(sel.shape[0], np.uint64)
                for k in range(6):
                    v = (v << np.uint64(8)) | b[:, k]
                out[f.name] = v
            else:
                out[f.name] = wire[f.name]
        messages[mtype] = out
    return messages


def decode(buf, *, lenient: bool = False, source: str = "<bytes>", seq_base: int = 0,
           events: bool = False, offset_base: int = 0) -> DecodeResult:
    """Decode a length-framed ITCH 5.0 byte stream (2-byte big-endian length per message).

    Parameters
    ----------
    buf : bytes-like or np.ndarray[uint8]
        The framed stream.
    lenient : bool
        False: the first malformed message raises. True: malformed messages are skipped and
        counted by reason; a truncated tail ends the stream.
    source : str
        Name used in errors (a file path).
    seq_base : int
        ``seq`` of the first message; message k gets ``seq_base + k`` (skipped ones included,
        so ``seq`` is the position in the file).
    events : bool
        Extract the book messages straight into ``DecodeResult.events`` (the fast replay path)
        instead of decoding them into ``messages``.
    offset_base : int
        Byte offset of ``buf[0]`` in its source (a chunk of a file): added to the ``offset``
        fields and to the offsets errors name.

    Returns
    -------
    DecodeResult
        ``offset`` of each message is the byte offset of its Message Type byte in ``buf``
        plus ``offset_base``.

    Raises
    ------
    ItchError
        (strict mode) an unknown message type, a length that disagrees with the type's length
        in the specification, a zero length or a truncated message; the text names the byte
        offset and the message index.
    """
    data = _as_u8(buf)
    offsets, lengths, status = _scan(data, _EXPECTED)
    seqs = np.arange(seq_base, seq_base + offsets.shape[0], dtype=np.uint64)
    ok, skipped, first_error = _check(data, offsets, lengths, status, seqs, lenient=lenient,
                                      source=source, base=int(offset_base))
    offs = offsets[ok]
    return _finish(data, offs, seqs[ok], offs.astype(np.uint64) + np.uint64(offset_base),
                   skipped, first_error, events)


def _finish(data, offs, seqs, src_offsets, skipped, first_error, events) -> DecodeResult:
    if not events:
        messages = _gather(data, offs, seqs, src_offsets)
        return DecodeResult(messages, skipped, int(offs.shape[0]), first_error)
    types = data[offs]
    tally = np.bincount(types, minlength=256)
    type_counts = {t: int(tally[ord(t)]) for t in spec.LAYOUTS if tally[ord(t)]}
    book = _EVENT_OFFSETS[types, _EV_REF] >= 0
    ev = _events_at(data, offs, seqs)
    rest = ~book
    messages = _gather(data, offs[rest], seqs[rest], src_offsets[rest])
    return DecodeResult(messages, skipped, int(offs.shape[0]), first_error, ev, type_counts)


def decode_blocks(payload, offsets, lengths, seqs, *, lenient: bool = False,
                  source: str = "<blocks>", src_offsets=None, events: bool = False
                  ) -> DecodeResult:
    """Decode unframed ITCH messages lying at given offsets of one buffer.

    Used by the MoldUDP64 reader, which has already walked the message blocks of each packet.

    Parameters
    ----------
    payload : np.ndarray[uint8] or bytes-like
        Buffer holding the message bytes.
    offsets, lengths : array-like of int, shape (n,)
        Start (Message Type byte) and length of each message in ``payload``.
    seqs : array-like of uint64, shape (n,)
        Sequence number of each message.
    lenient : bool
        Skip and count malformed messages instead of raising.
    source : str
        Name used in errors.
    src_offsets : array-like of uint64, shape (n,), optional
        Offsets to record in the decoded ``offset`` field (e.g. the offset in the capture file);
        defaults to ``offsets``.
    events : bool
        As in :func:`decode`: book messages go to ``DecodeResult.events``.

    Raises
    ------
    ItchError
        (strict mode) unknown type, wrong length for the type, zero length or a block that
        overruns ``payload``; names the offset and the sequence number.
    """
    data = _as_u8(payload)
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    seqs = np.asarray(seqs, dtype=np.uint64)
    status = np.full(offsets.shape[0], _OK, dtype=np.int8)
    over = offsets + lengths > data.shape[0]
    status[lengths == 0] = _ZERO
    inside = ~over & (lengths > 0)
    exp = np.zeros(offsets.shape[0], np.int64)
    exp[inside] = _EXPECTED[data[offsets[inside]]]
    status[inside & (exp == 0)] = _UNKNOWN
    status[inside & (exp != 0) & (exp != lengths)] = _BADLEN
    status[over] = _TRUNC
    ok, skipped, first_error = _check(data, offsets, lengths, status, seqs, lenient=lenient,
                                      source=source)
    src = offsets.astype(np.uint64) if src_offsets is None else np.asarray(src_offsets,
                                                                          dtype=np.uint64)
    return _finish(data, offsets[ok], seqs[ok], src[ok], skipped, first_error, events)


def read_file(path, *, lenient: bool = False, events: bool = False) -> DecodeResult:
    """Read and decode an ITCH 5.0 file (2-byte length framing; gzip detected by its magic).

    Raises
    ------
    ItchError
        See :func:`decode`; the error names ``path`` and the byte offset (in the decompressed
        stream for gzip files).
    OSError
        The file cannot be read.
    """
    path = os.fspath(path)
    with open(path, "rb") as fh:
        head = fh.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    return decode(data, lenient=lenient, source=path, events=events)


#: Bytes read from a file per :func:`read_chunks` step unless told otherwise (8 MiB).
CHUNK_BYTES = 8 << 20


@numba.njit(cache=True)
def _whole_messages(buf, n):  # pragma: no cover - compiled
    """Length of the longest prefix of ``buf[:n]`` made of whole framed messages, and how
    many messages (zero-length ones included) it holds."""
    pos = 0
    count = 0
    while pos + 2 <= n:
        nxt = pos + 2 + ((np.int64(buf[pos]) << 8) | np.int64(buf[pos + 1]))
        if nxt > n:
            break
        pos = nxt
        count += 1
    return pos, count


@dataclass
class FileChunk:
    """One step of :func:`read_chunks`.

    Attributes
    ----------
    result : DecodeResult
        The chunk's messages; ``seq`` and ``offset`` count from the start of the file.
    framed : int
        Length-framed entries the chunk held (skipped ones included): the next chunk's
        ``seq`` starts this many after this one's.
    start, end : int
        Byte range of the chunk in the (decompressed) stream.
    read : int
        Bytes of the file read so far (compressed bytes for gzip), for progress.
    """

    result: DecodeResult
    framed: int
    start: int
    end: int
    read: int


def read_chunks(path, *, chunk_bytes: int = CHUNK_BYTES, lenient: bool = False,
                events: bool = False):
    """Read and decode an ITCH 5.0 file (2-byte length framing; gzip detected by its magic)
    chunk by chunk, in memory bounded by ``chunk_bytes`` plus one message.

    Every chunk ends on a message boundary; the concatenation of the chunks' messages (and
    events) equals :func:`read_file` on the whole file, sequence numbers, offsets, skip counts
    and errors included.

    Parameters
    ----------
    path : str or os.PathLike
    chunk_bytes : int
        Bytes read per step (>= 1); a chunk holds the whole messages among them and the
        leftover carries to the next step.
    lenient, events : bool
        As in :func:`decode`.

    Yields
    ------
    FileChunk

    Raises
    ------
    ValueError
        ``chunk_bytes < 1``.
    ItchError
        As :func:`read_file` (strict mode), naming the byte offset in the whole stream.
    OSError
        The file cannot be read.
    """
    if not isinstance(chunk_bytes, (int, np.integer)) or chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be a positive integer, got {chunk_bytes!r}")
    path = os.fspath(path)
    raw = open(path, "rb")
    try:
        head = raw.read(2)
        raw.seek(0)
        fh = gzip.GzipFile(fileobj=raw, mode="rb") if head == b"\x1f\x8b" else raw
        if fh is raw:       # no buffer beyond the file
            chunk_bytes = min(int(chunk_bytes), os.fstat(raw.fileno()).st_size + 1)
        buf = np.empty(int(chunk_bytes) + (1 << 17), np.uint8)
        have = 0        # bytes at the front of buf not yet decoded
        start = 0       # stream offset of buf[0]
        seq = 0
        eof = False
        while not eof or have:
            if not eof:
                if buf.shape[0] - have < chunk_bytes:
                    bigger = np.empty(have + int(chunk_bytes) + (1 << 17), np.uint8)
                    bigger[:have] = buf[:have]
                    buf = bigger
                got = fh.readinto(memoryview(buf)[have:have + int(chunk_bytes)])
                eof = got == 0
                have += got
            cut, framed = _whole_messages(buf, have)
            if eof:             # the rest, a truncated tail included, as read_file sees it
                cut = have
                framed += int(cut > 0 and _whole_messages(buf, have)[0] < have)
            if cut == 0:
                if eof:
                    break
                continue        # not one whole message yet: read more
            res = decode(buf[:cut], lenient=lenient, source=path, seq_base=seq,
                         events=events, offset_base=start)
            yield FileChunk(res, int(framed), start, start + int(cut), raw.tell())
            seq += int(framed)
            start += int(cut)
            buf[:have - cut] = buf[cut:have]
            have -= int(cut)
    finally:
        raw.close()


def _order(messages: dict):
    """Types, lengths and per-type positions of all messages laid out in seq order."""
    types = [t for t in messages if len(messages[t])]
    if not types:
        return types, np.zeros(0, np.uint64), np.zeros(0, np.int64), {}
    seqs = np.concatenate([messages[t]["seq"] for t in types])
    lens = np.concatenate([np.full(len(messages[t]), spec.MESSAGE_LENGTH[t], np.int64)
                           for t in types])
    order = np.argsort(seqs, kind="stable")
    sorted_seqs = seqs[order]
    if sorted_seqs.shape[0] > 1 and (np.diff(sorted_seqs) == 0).any():
        dup = int(sorted_seqs[np.flatnonzero(np.diff(sorted_seqs) == 0)[0]])
        raise ValueError(f"messages dict holds sequence number {dup} twice")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    pos, start = {}, 0
    for t in types:
        pos[t] = rank[start:start + len(messages[t])]
        start += len(messages[t])
    return types, sorted_seqs, lens[order], pos


def _to_wire(mtype: str, arr: np.ndarray) -> np.ndarray:
    lay = spec.LAYOUTS[mtype]
    wire = np.zeros(arr.shape[0], dtype=spec.wire_dtype(mtype))
    for f in lay.fields:
        if f.size == 6 and f.kind == "u":
            v = arr[f.name].astype(np.uint64)
            if (v >> np.uint64(48)).any():
                raise ValueError(f"ITCH {mtype!r} field {f.name} does not fit in 6 bytes")
            b = np.empty((arr.shape[0], 6), np.uint8)
            for k in range(6):
                b[:, 5 - k] = (v >> np.uint64(8 * k)) & np.uint64(0xFF)
            wire[f.name] = b
        else:
            wire[f.name] = arr[f.name]
    wire["msg_type"] = mtype.encode()
    return wire.view(np.uint8).reshape(arr.shape[0], lay.length)


def encode(messages: dict):
    """Encode a messages dict into raw ITCH 5.0 bytes, in ``seq`` order, without framing.

    Returns
    -------
    payload : np.ndarray[uint8], shape (total_bytes,)
    offsets : np.ndarray[int64], shape (n,)
        Start of each message in ``payload``, in ``seq`` order.
    lengths : np.ndarray[int64], shape (n,)

    Raises
    ------
    ValueError
        Two messages share a sequence number, or a timestamp does not fit in 6 bytes.
    KeyError
        An unknown message type.
    """
    types, _, lens, pos = _order(messages)
    offsets = np.zeros(lens.shape[0], np.int64)
    if lens.shape[0]:
        offsets[1:] = np.cumsum(lens)[:-1]
    payload = np.empty(int(lens.sum()), np.uint8)
    for t in types:
        rows = _to_wire(t, messages[t])
        idx = offsets[pos[t]][:, None] + np.arange(spec.MESSAGE_LENGTH[t])
        payload[idx] = rows
    return payload, offsets, lens


def frame(payload: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> bytes:
    """Put a 2-byte big-endian length before each message (ITCH file / MoldUDP64 block framing).

    Raises
    ------
    ValueError
        A message longer than 65,535 bytes.
    """
    lengths = np.asarray(lengths, np.int64)
    if (lengths > 0xFFFF).any():
        raise ValueError("an ITCH message longer than 65535 bytes cannot be framed")
    n = lengths.shape[0]
    out = np.empty(int(lengths.sum()) + 2 * n, np.uint8)
    starts = np.asarray(offsets, np.int64) + 2 * np.arange(1, n + 1)
    out[starts - 2] = (lengths >> 8).astype(np.uint8)
    out[starts - 1] = (lengths & 0xFF).astype(np.uint8)
    body = np.ones(out.shape[0], bool)
    body[starts - 2] = False
    body[starts - 1] = False
    out[body] = payload
    return out.tobytes()


def write_file(path, messages: dict) -> int:
    """Write ``messages`` as a length-framed ITCH 5.0 file (gzip if the name ends in .gz).

    Returns
    -------
    int
        Bytes written (uncompressed).
    """
    data = frame(*encode(messages))
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as fh:
        fh.write(data)
    return len(data)


_EVENT_SHARES = {"A": "shares", "F": "shares", "E": "executed_shares", "C": "executed_shares",
                 "X": "cancelled_shares", "U": "shares", "P": "shares"}
_EVENT_PRICE = {"A": "price", "F": "price", "C": "execution_price", "U": "price", "P": "price"}


def order_events(messages: dict) -> np.ndarray:
    """The order book's input: one :data:`hftaccel.spec.ORDER_EVENT_DTYPE` record per
    A F E C X D U P message, sorted by ``seq``.

    For U, ``order_ref`` is the Original Order Reference Number and ``new_order_ref`` the new
    one; for C, ``price`` is the Execution Price and ``printable`` its Printable flag (1 for
    ``Y``); ``side`` is the ASCII Buy/Sell Indicator where the message carries one, else 0.

    Returns
    -------
    np.ndarray of ORDER_EVENT_DTYPE, shape (n,)
    """
    parts = []
    for t in spec.BOOK_MESSAGE_TYPES:
        arr = messages.get(t)
        if arr is None or len(arr) == 0:
            continue
        ev = np.zeros(len(arr), dtype=spec.ORDER_EVENT_DTYPE)
        ev["timestamp"] = arr["timestamp"]
        ev["seq"] = arr["seq"]
        ev["stock_locate"] = arr["stock_locate"]
        ev["msg_type"] = ord(t)
        ev["printable"] = 1
        if t == "U":
            ev["order_ref"] = arr["original_order_ref"]
            ev["new_order_ref"] = arr["new_order_ref"]
        else:
            ev["order_ref"] = arr["order_ref"]
        if t in _EVENT_SHARES:
            ev["shares"] = arr[_EVENT_SHARES[t]]
        if t in _EVENT_PRICE:
            ev["price"] = arr[_EVENT_PRICE[t]]
        if "side" in arr.dtype.names:
            ev["side"] = arr["side"].view(np.uint8)
        if t == "C":
            ev["printable"] = (arr["printable"] == b"Y").astype(np.uint8)
        parts.append(ev)
    if not parts:
        return np.zeros(0, dtype=spec.ORDER_EVENT_DTYPE)
    ev = np.concatenate(parts)
    return ev[np.argsort(ev["seq"], kind="stable")]


def concat(parts) -> dict:
    """Concatenate several messages dicts (their sequence numbers must not overlap)."""
    out = {}
    for part in parts:
        for t, arr in part.items():
            out.setdefault(t, []).append(arr)
    merged = {}
    for t, arrs in out.items():
        a = np.concatenate(arrs)
        merged[t] = a[np.argsort(a["seq"], kind="stable")]
    return merged


def counts(messages: dict) -> dict:
    """Messages by type, ``{msg_type: n}``, types in ITCH-spec order, zero counts left out."""
    return {t: int(len(messages[t])) for t in spec.LAYOUTS if t in messages and len(messages[t])}


def n_messages(messages: dict) -> int:
    """Total number of messages in a messages dict."""
    return int(sum(len(a) for a in messages.values()))
