"""Fuzz harnesses, one per decoder: the property each checks on any input bytes.

Every harness takes one input (``bytes``) and returns normally when the decoder either decoded
it or raised its own error class with a message that names where (byte offset, frame, line or
sequence number). Anything else propagates: another exception type, an error that names no
place, a decoded result that breaks an invariant (sequence numbers, A/B arbitration, no frame
lost without being counted), or an encoder round trip / split that disagrees. The same
functions run under atheris (``scripts/fuzz.py``) and replay the committed corpus under pytest
(``tests/fuzz/test_corpus.py``).

Harnesses (:data:`HARNESSES`):

``itch``
    ITCH 5.0 length framing and every message type (:func:`hftaccel.feeds.itch.decode`):
    strict and lenient; decode(encode(x)) == x; decoding split at a message boundary equals
    decoding the whole; the fused book-event path equals :func:`~hftaccel.feeds.itch.order_events`.
``pcap``
    pcap / pcapng containers (:func:`hftaccel.feeds.moldudp64.read_frames`), input = a file.
``eth``
    Ethernet / 802.1Q / IPv4 / UDP / MoldUDP64 framing (:func:`~hftaccel.feeds.moldudp64.iter_packets`),
    input = frames (2-byte big-endian length each) wrapped in a valid pcap; every frame is
    yielded or counted in ``skipped``.
``mold``
    MoldUDP64 sequencing and A/B arbitration (:func:`~hftaccel.feeds.moldudp64.read_pcap`),
    input = MoldUDP64 payloads (2-byte length each) wrapped in valid UDP frames; the same
    packets on two feeds (A then B) deliver what one feed does; write_pcap / read_pcap round
    trip.
``lobster``
    LOBSTER message and orderbook files (:mod:`hftaccel.feeds.lobster`), input = message file,
    ``\\x00``, orderbook file; then :func:`~hftaccel.feeds.lobster.to_itch`.
``ouch``
    SoupBinTCP 4.0 framing and OUCH 5.0 messages both ways (:mod:`hftaccel.golden.ouch`, what
    the router's session decodes): decode(encode(x)) == x, a stream split anywhere yields the
    same packets as the whole.
"""

from __future__ import annotations

import os
import struct
import tempfile

import numpy as np

from hftaccel.feeds import itch, lobster, moldudp64
from hftaccel.golden import ouch

__all__ = ["HARNESSES", "PropertyFailure", "scratch_file"]

#: Inputs longer than this are cut (keeps one execution well under the per-input time limit).
MAX_INPUT = 1 << 16


class PropertyFailure(AssertionError):
    """A decoder broke a property (not a crash of the harness itself)."""


def _require(cond, what: str):
    if not cond:
        raise PropertyFailure(what)


_SCRATCH: dict = {}


def scratch_file(name: str, data: bytes) -> str:
    """Write ``data`` to a per-process scratch file (in /dev/shm when there is one); its path."""
    d = _SCRATCH.get("dir")
    if d is None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        d = _SCRATCH["dir"] = tempfile.mkdtemp(prefix="hftaccel-fuzz-", dir=base)
    path = os.path.join(d, name)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def _names_place(text: str, *words) -> bool:
    return any(w in text for w in words)


def _same_messages(a: dict, b: dict, *, ignore=("seq", "offset")) -> bool:
    if sorted(k for k in a if len(a[k])) != sorted(k for k in b if len(b[k])):
        return False
    for t in a:
        if not len(a[t]):
            continue
        x, y = a[t], b[t]
        if x.shape != y.shape:
            return False
        for name in x.dtype.names:
            if name not in ignore and not np.array_equal(x[name], y[name]):
                return False
    return True


# ------------------------------------------------------------------------------------ ITCH

def _itch_error_ok(e: itch.ItchError, n: int):
    _require(0 <= e.offset <= n, f"ItchError offset {e.offset} outside the {n}-byte input")
    _require("byte offset" in str(e), f"ItchError names no offset: {e}")


def fuzz_itch(data: bytes) -> None:
    data = data[:MAX_INPUT]
    n = len(data)
    lenient = itch.decode(data, lenient=True)       # never raises
    total = lenient.n_messages + sum(lenient.skipped.values())
    _require(total <= n // 2 + 1, f"{total} messages from {n} bytes")
    try:
        res = itch.decode(data)
    except itch.ItchError as e:
        _itch_error_ok(e, n)
        _require(sum(lenient.skipped.values()) > 0, "strict raised, lenient skipped nothing")
        _require(lenient.first_error is not None and "byte offset" in lenient.first_error,
                 f"lenient first_error names no offset: {lenient.first_error!r}")
        return
    _require(not any(lenient.skipped.values()), "lenient skipped what strict decoded")
    _require(_same_messages(res.messages, lenient.messages, ignore=()), "strict != lenient")
    # decode(encode(x)) == x, byte for byte
    _require(itch.frame(*itch.encode(res.messages)) == data, "frame(encode(decode(x))) != x")
    # events=True: the fused extraction equals order_events() of the full decode
    ev = itch.decode(data, events=True)
    _require(np.array_equal(ev.events, itch.order_events(res.messages)),
             "decode(events=True).events != order_events(decode())")
    _check_chunks(data)
    # split at a message boundary (chosen from the input): the parts decode to the whole
    k = res.n_messages
    if k >= 2:
        seqs = np.concatenate([a["seq"] for a in res.messages.values()])
        offs = np.concatenate([a["offset"] for a in res.messages.values()])
        cut_msg = 1 + data[-1] % (k - 1)
        cut = int(offs[np.argsort(seqs)][cut_msg]) - 2
        a = itch.decode(data[:cut])
        b = itch.decode(data[cut:], seq_base=cut_msg)
        for t, arr in b.messages.items():
            arr["offset"] += cut
        _require(_same_messages(itch.concat([a.messages, b.messages]), res.messages,
                                ignore=()), f"decode split at byte {cut} != decode whole")


def _check_chunks(data: bytes) -> None:
    """A file read in chunks (of a size chosen from the input) decodes as read whole: same
    messages, skip counts and first error offset."""
    if not hasattr(itch, "read_chunks") or not data:
        return
    path = scratch_file("in.itch", data)
    size = 1 + (data[0] * 31 + data[-1]) % len(data)
    for lenient in (False, True):
        try:
            whole = itch.read_file(path, lenient=lenient)
        except itch.ItchError as e:
            whole = e
        try:
            parts = list(itch.read_chunks(path, chunk_bytes=size, lenient=lenient))
        except itch.ItchError as e:
            _require(isinstance(whole, itch.ItchError) and e.offset == whole.offset,
                     f"read_chunks({size}) raised at byte {e.offset}, read_file: {whole}")
            continue
        _require(not isinstance(whole, Exception), f"read_chunks({size}) decoded, read_file "
                                                   f"raised {whole}")
        merged = itch.concat([c.result.messages for c in parts])
        _require(_same_messages(merged, whole.messages, ignore=()),
                 f"read_chunks({size}) messages != read_file")
        got = {k: sum(c.result.skipped[k] for c in parts) for k in itch.SKIP_REASONS}
        _require(got == whole.skipped, f"read_chunks({size}) skipped {got} != {whole.skipped}")


# ------------------------------------------------------------------------------------ pcap

def _mold_error_ok(e: moldudp64.MoldError, size: int):
    _require(0 <= e.offset <= size, f"MoldError offset {e.offset} outside the {size}-byte file")
    _require(_names_place(str(e), "byte"), f"MoldError names no byte offset: {e}")


def fuzz_pcap(data: bytes) -> None:
    data = data[:MAX_INPUT]
    path = scratch_file("in.pcap", data)
    for lenient in (False, True):
        try:
            fr = moldudp64.read_frames(path, lenient=lenient)
        except moldudp64.MoldError as e:
            _mold_error_ok(e, len(data))
            continue
        n = len(fr)
        _require(all(len(a) == n for a in (fr.caplen, fr.wirelen, fr.time_ns, fr.linktype)),
                 "CaptureFrames arrays of different lengths")
        if n:
            _require(int(fr.offset.min()) >= 0 and
                     int((fr.offset + fr.caplen).max()) <= len(data),
                     "a frame lies outside the file")
        # the frame layer on top must behave too
        try:
            moldudp64.read_pcap(path, lenient=lenient)
        except moldudp64.MoldError as e:
            _mold_error_ok(e, len(data))
        except itch.ItchError as e:
            _itch_error_ok(e, len(data))


# ------------------------------------------------------------------------------------ frames

_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)


def _pcap(frames) -> bytes:
    out = [_PCAP_HEADER]
    for k, f in enumerate(frames):
        out.append(struct.pack("<IIII", 1_560_000_000 + k // 8, (k % 8) * 1000, len(f), len(f)))
        out.append(f)
    return b"".join(out)


def _split_prefixed(data: bytes, limit: int = 64):
    """Chunks of ``data`` each behind a 2-byte big-endian length (the last one takes what is
    left when its length runs past the end)."""
    out, pos = [], 0
    while pos + 2 <= len(data) and len(out) < limit:
        n = int.from_bytes(data[pos:pos + 2], "big")
        out.append(data[pos + 2:pos + 2 + n])
        pos += 2 + n
    return out


def fuzz_eth(data: bytes) -> None:
    frames = _split_prefixed(data[:MAX_INPUT])
    blob = _pcap(frames)
    path = scratch_file("eth.pcap", blob)
    try:
        strict = list(moldudp64.iter_packets(path))
    except moldudp64.MoldError as e:
        _mold_error_ok(e, len(blob))
        _require(e.frame_index is not None and f"frame {e.frame_index} " in str(e),
                 f"a frame error names no frame: {e}")
        strict = None
    skipped: dict = {}
    lenient = list(moldudp64.iter_packets(path, lenient=True, skipped=skipped))
    _require(len(lenient) + sum(skipped.values()) == len(frames),
             f"{len(frames)} frames: {len(lenient)} packets + {skipped} skipped")
    if strict is not None:
        _require([p.frame_index for p in strict] == [p.frame_index for p in lenient],
                 "strict and lenient yield different packets")
    for p in lenient:
        _require(p.message_count in (0, 0xFFFF) or len(p.messages) == p.message_count,
                 f"frame {p.frame_index}: {len(p.messages)} messages, count {p.message_count}")
        _require(len(p.session) == 10, "session is not 10 bytes")


# ------------------------------------------------------------------------------------ MoldUDP64

def _udp_frame(payload: bytes, vlan: bool) -> bytes:
    udp = struct.pack(">HHHH", 49152, 26477, 8 + len(payload), 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                     bytes([192, 0, 2, 1]), bytes([233, 252, 0, 1])) + udp
    tag = struct.pack(">HH", 0x8100, 7) if vlan else b""
    return b"\x01\x00\x5e\x7c\x00\x01\x02\x00\x00\x00\x00\x01" + tag + b"\x08\x00" + ip


def _read_pcap_checked(path, size, **kw):
    try:
        return moldudp64.read_pcap(path, **kw)
    except moldudp64.MoldError as e:
        if "sessions" in str(e) and "session=" in str(e):
            return "sessions"
        _mold_error_ok(e, size)
    except itch.ItchError as e:
        _itch_error_ok(e, size)
        _require("message " in str(e), f"ItchError names no sequence number: {e}")
    return None


def _check_capture(cap: moldudp64.MoldCapture):
    seq = cap.seq
    _require(bool(np.all(seq[1:] > seq[:-1])),
             "delivered sequence numbers are not strictly ascending")
    _require(cap.capture_time_ns.shape == seq.shape, "capture times not aligned with seq")
    for first, count in [(g[1], g[2]) for g in cap.gaps]:
        _require(count > 0, f"gap of {count} at {first}")


def fuzz_mold(data: bytes) -> None:
    payloads = _split_prefixed(data[:MAX_INPUT])
    if not payloads:
        return
    vlan = bool(data[-1] & 1)
    frames = [_udp_frame(p, vlan) for p in payloads]
    one = _pcap(frames)
    p1 = scratch_file("a.pcap", one)
    first_session = None
    for lenient in (False, True):
        cap = _read_pcap_checked(p1, len(one), lenient=lenient)
        if cap == "sessions":
            first_session = next(p[:10] for p in payloads if len(p) >= 20)
            cap = _read_pcap_checked(p1, len(one), lenient=lenient, session=first_session)
        if cap is None:
            continue
        _check_capture(cap)
        if lenient or data[0] % 4:
            break               # the A/B and round-trip checks: one input in four (slow)
        # A/B: every packet again right after itself (the B feed) delivers the same
        two = _pcap([f for f in frames for _ in (0, 1)])
        p2 = scratch_file("ab.pcap", two)
        cap2 = _read_pcap_checked(p2, len(two), lenient=lenient, session=first_session)
        _require(isinstance(cap2, moldudp64.MoldCapture), "A/B capture failed where A did not")
        _require(np.array_equal(cap2.seq, cap.seq), "A/B delivered other sequence numbers")
        _require(_same_messages(cap.messages, cap2.messages, ignore=("offset",)),
                 "A/B delivered other messages")
        _require(cap2.gaps == cap.gaps, f"A/B gaps {cap2.gaps} != A gaps {cap.gaps}")
        _require(cap2.duplicates >= cap.duplicates + cap.n_messages,
                 "A/B duplicates not counted")
        # write_pcap(read_pcap(x)) reads back the same messages
        if cap.n_messages and not cap.skipped and int(cap.seq[0]) + cap.n_messages < 1 << 62:
            out = scratch_file("rt.pcap", b"")
            moldudp64.write_pcap(out, cap.messages, first_seq=int(cap.seq[0]))
            back = moldudp64.read_pcap(out)
            _require(_same_messages(back.messages, cap.messages), "write/read round trip")
        break


# ------------------------------------------------------------------------------------ LOBSTER

def fuzz_lobster(data: bytes) -> None:
    data = data[:MAX_INPUT]
    msg_part, _, book_part = data.partition(b"\x00")
    pm = scratch_file("message.csv", msg_part)
    try:
        msgs = lobster.load_messages(pm)
    except lobster.LobsterError as e:
        _require(e.line > 0 or _names_place(str(e), "empty", "gzip", "unreadable CSV"),
                 f"LobsterError names no line: {e}")
        return
    book = None
    if book_part:
        pb = scratch_file("orderbook.csv", book_part)
        try:
            book = lobster.load_orderbook(pb)
        except lobster.LobsterError as e:
            _require(e.line > 0 or _names_place(str(e), "empty", "levels requested", "gzip",
                                                "unreadable CSV"),
                     f"LobsterError names no line: {e}")
            book = None
        if book is not None and len(book) != len(msgs):
            book = None
    try:
        conv = lobster.to_itch(msgs, book)
    except ValueError as e:
        _require(_names_place(str(e), "row ", "line "), f"to_itch error names no row: {e}")
        return
    # the stream it writes decodes back to itself
    framed = itch.frame(*itch.encode(conv.messages))
    _require(_same_messages(itch.decode(framed).messages, conv.messages, ignore=("offset",)),
             "to_itch messages do not survive encode/decode")


# ------------------------------------------------------------------------------------ OUCH

def _ouch_error_ok(e: ouch.OuchError, n: int):
    _require(e.offset is not None and 0 <= e.offset <= n,
             f"OuchError offset {e.offset} outside the {n}-byte input: {e}")


def fuzz_ouch(data: bytes) -> None:
    data = data[:MAX_INPUT]
    n = len(data)
    try:
        packets = ouch.soup_split(data)
    except ouch.OuchError as e:
        _ouch_error_ok(e, n)
        packets = None
    # the router reads a stream in chunks: split anywhere, the packets are those of the whole
    cut = (data[0] * 257 + data[-1]) % (n + 1) if n else 0
    got, rest = ouch.soup_split(data[:cut], partial=True) if _soup_ok(data[:cut]) else (None, b"")
    if packets is not None and got is not None:
        more, rest = ouch.soup_split(rest + data[cut:], partial=True)
        whole = [(t, p) for t, p, _ in packets]
        _require([(t, p) for t, p, _ in got + more] == whole and rest == b"",
                 f"soup_split at byte {cut} != whole")
    for direction, sender in (("inbound", "client"), ("outbound", "server")):
        try:
            msgs = ouch.decode_stream(direction, data)
        except ouch.OuchError as e:
            _ouch_error_ok(e, n)
            msgs = []
        for m in msgs:
            off = m.pop("offset")
            size = int.from_bytes(data[off - 3:off - 1], "big") - 1   # less the type byte
            raw = data[off:off + size]
            try:
                again = ouch.encode(direction, m)
            except ouch.OuchError:
                continue            # a decoded alpha field the encoder refuses (not printable)
            _require(again == raw,
                     f"OUCH {direction} {m['type']!r} at byte {off}: encode(decode(x)) != x")
        for ptype, payload, pos in packets or []:
            pkt = data[pos:pos + 3 + len(payload)]
            try:
                dec = ouch.soup_decode(sender, pkt, offset=pos)
            except ouch.OuchError as e:
                _ouch_error_ok(e, n)
                continue
            if "payload" not in dec:
                fields = {k: v for k, v in dec.items() if k != "type"}
                try:
                    again = ouch.soup_encode(sender, ptype, fields)
                except ouch.OuchError:
                    continue        # e.g. a numeric field with leading spaces inside
                _require(ouch.soup_decode(sender, again) == dec,
                         f"SoupBinTCP {ptype!r} at byte {pos}: decode(encode(x)) != x")


def _soup_ok(buf: bytes) -> bool:
    try:
        ouch.soup_split(buf, partial=True)
        return True
    except ouch.OuchError:
        return False


#: name -> harness.
HARNESSES = {
    "itch": fuzz_itch,
    "pcap": fuzz_pcap,
    "eth": fuzz_eth,
    "mold": fuzz_mold,
    "lobster": fuzz_lobster,
    "ouch": fuzz_ouch,
}

#: name -> modules whose plain Python functions atheris instruments for coverage (Numba
#: kernels stay as they are: they are compiled, not traced).
MODULES = {
    "itch": (itch,),
    "pcap": (moldudp64,),
    "eth": (moldudp64,),
    "mold": (moldudp64, itch),
    "lobster": (lobster, itch),
    "ouch": (ouch,),
}
