"""Append-only, fsync'd journal of an order-entry session: what left, what came back.

Every OUCH 5.0 message the router sends (Enter / Replace / Cancel / Account Query, spec
sections 2.1-2.3, 2.8) is written and made durable with ``fsync`` *before* it is handed to the
socket (write-ahead). Every Sequenced Data packet the venue delivers (SoupBinTCP 4.0 section
2.2.3) is written before it is applied and made durable by a group commit: at the latest with
the next outbound message or a few milliseconds later (one ``fsync`` for many packets; if the
machine dies before it, the venue re-sends those packets, since the router asks for the first
sequence number it holds durably). After a ``kill -9`` replaying the journal rebuilds the exact
router state (risk gate, order states, position) and the SoupBinTCP sequence number to ask for
on the next Login Request (section 2.3.1): one more than the last journaled sequenced message.
Anything not journaled is either re-delivered by the venue (sequenced data) or was never sent
(orders), so no acknowledged order or fill is lost.

File format (little-endian framing, the OUCH payloads kept as on the wire)::

    magic   b"HFTJRNL1"                                            8 bytes, once
    record  length u32 | crc32 u32 | kind u8 | body               repeated

``length`` counts ``kind + body``; ``crc32`` (zlib) covers the same bytes. Kinds:

``L`` login accepted
    session (10 bytes, ASCII as on the wire) + next sequence number (u64) from Login Accepted.
``O`` outbound message
    has_intent u8 | intent (48 bytes of :data:`hftaccel.spec.risk.INTENT_DTYPE` when
    has_intent) | stock_locate u16 | OUCH inbound message bytes.
``S`` sequenced message
    sequence number u64 | OUCH outbound message bytes (kept even when malformed).
``K`` kill switch
    on u8.
``V`` void
    UserRefNum u32 of an order the venue never received (its risk is released).

A record cut short by a crash (short header, short body or a CRC mismatch in the last
record) is a torn tail: it is reported and truncated away when the journal is reopened for
appending. A bad record followed by good ones is corruption: :class:`JournalError` names its
byte offset.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Journal", "JournalError", "JournalRecord", "MAGIC", "read_journal"]

MAGIC = b"HFTJRNL1"
_HEADER = struct.Struct("<II")
KINDS = frozenset(b"LOSKV")


class JournalError(ValueError):
    """A corrupt journal; the message names the file and the byte offset."""


@dataclass(frozen=True)
class JournalRecord:
    """One journal record: ``kind`` (one-character str), ``body`` bytes, ``offset`` of its
    header in the file."""

    kind: str
    body: bytes
    offset: int


def read_journal(path) -> tuple[list, int, str | None]:
    """Read every complete record of the journal at ``path``.

    Returns
    -------
    records : list[JournalRecord]
    good_end : int
        Byte offset just after the last good record (where appending resumes).
    torn : str | None
        Description of a torn tail that was ignored, or None.

    Raises
    ------
    JournalError
        Wrong magic, or a bad record that is not the last one (offset named).
    """
    data = Path(path).read_bytes()
    if len(data) < len(MAGIC) and MAGIC.startswith(data):
        return [], 0, None  # empty, or a crash while the magic was being written
    if data[:len(MAGIC)] != MAGIC:
        raise JournalError(f"{path} @ byte 0: not an hftaccel journal (magic {data[:8]!r})")
    out, pos = [], len(MAGIC)
    while pos < len(data):
        problem = None
        if pos + _HEADER.size > len(data):
            problem = f"short record header ({len(data) - pos} bytes)"
        else:
            length, crc = _HEADER.unpack_from(data, pos)
            end = pos + _HEADER.size + length
            if length < 1 or end > len(data):
                problem = f"record of {length} bytes runs past the end of the file"
            else:
                payload = data[pos + _HEADER.size:end]
                if zlib.crc32(payload) != crc:
                    problem = "CRC mismatch"
                elif payload[0] not in KINDS:
                    problem = f"unknown record kind {payload[:1]!r}"
        if problem is not None:
            if _is_tail(data, pos):
                return out, pos, f"{path} @ byte {pos}: torn tail ignored: {problem}"
            raise JournalError(f"{path} @ byte {pos}: corrupt record: {problem}")
        out.append(JournalRecord(chr(payload[0]), payload[1:], pos))
        pos = end
    return out, pos, None


def _is_tail(data: bytes, pos: int) -> bool:
    """A bad record is a torn tail when no complete good record follows it anywhere.

    A crash leaves at most one partial record at the end; a CRC-valid record after the bad one
    proves the damage is in the middle."""
    for start in range(pos + 1, len(data) - _HEADER.size):
        length, crc = _HEADER.unpack_from(data, start)
        end = start + _HEADER.size + length
        if 1 <= length and end <= len(data):
            payload = data[start + _HEADER.size:end]
            if payload[0] in KINDS and zlib.crc32(payload) == crc:
                return False
    return True


class Journal:
    """Writer of the journal file (append-only, ``O_APPEND``).

    Parameters
    ----------
    path : str or Path
        Created when missing; an existing journal is read first and a torn tail truncated.
    fsync : bool
        ``sync()`` calls ``os.fsync``. Off only for benchmarks that measure without it.

    Attributes
    ----------
    records : list[JournalRecord]
        Records that were in the file when it was opened (what recovery replays).
    torn : str | None
        The torn tail that was cut off on open, if any.
    """

    def __init__(self, path, *, fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        self.records, good_end, self.torn = ([], 0, None)
        self._pending = []
        self._unsynced = False
        self.bytes_written = 0
        self.syncs = 0
        if self.path.exists():
            self.records, good_end, self.torn = read_journal(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if self.torn is not None or (good_end and os.fstat(self._fd).st_size != good_end):
            os.ftruncate(self._fd, good_end)
        if good_end == 0:
            os.ftruncate(self._fd, 0)
            os.write(self._fd, MAGIC)
            self._sync()

    def append(self, kind: str, body: bytes) -> None:
        """Buffer one record; it is durable after the next :meth:`sync`."""
        payload = kind.encode("ascii") + bytes(body)
        self._pending.append(_HEADER.pack(len(payload), zlib.crc32(payload)) + payload)

    def write(self) -> None:
        """Hand the buffered records to the kernel with one ``write`` (they survive a crash of
        the process, ``kill -9`` included, but not yet of the machine)."""
        if not self._pending:
            return
        blob = b"".join(self._pending)
        self._pending.clear()
        os.write(self._fd, blob)
        self.bytes_written += len(blob)
        self._unsynced = True

    def sync(self) -> None:
        """Write the buffered records and make everything written durable (``fsync``)."""
        self.write()
        if self._unsynced:
            self._sync()
            self._unsynced = False

    def sync_in_background(self):
        """Write the buffered records and return a callable that ``fsync``s them, to be run
        in a worker thread while the owner keeps writing (what was written before it runs
        becomes durable; later writes are covered by the next sync)."""
        self.write()
        self._unsynced = False
        return self._sync

    def _sync(self) -> None:
        if self.fsync:
            os.fsync(self._fd)
            self.syncs += 1

    def close(self) -> None:
        if self._fd is not None:
            self.sync()
            os.close(self._fd)
            self._fd = None

    # record bodies -------------------------------------------------------------------------

    @staticmethod
    def login_body(session: bytes, next_seq: int) -> bytes:
        return bytes(session).ljust(10, b" ")[:10] + struct.pack("<Q", next_seq)

    @staticmethod
    def parse_login(body: bytes) -> tuple[bytes, int]:
        return body[:10], struct.unpack_from("<Q", body, 10)[0]

    @staticmethod
    def outbound_body(message: bytes, stock_locate: int, intent: bytes | None) -> bytes:
        head = b"\x01" + bytes(intent) if intent is not None else b"\x00"
        return head + struct.pack("<H", stock_locate) + bytes(message)

    @staticmethod
    def parse_outbound(body: bytes) -> tuple[bytes, int, bytes | None]:
        pos, intent = 1, None
        if body[0]:
            intent, pos = body[1:49], 49
        (locate,) = struct.unpack_from("<H", body, pos)
        return body[pos + 2:], locate, intent

    @staticmethod
    def sequenced_body(seq: int, message: bytes) -> bytes:
        return struct.pack("<Q", seq) + bytes(message)

    @staticmethod
    def parse_sequenced(body: bytes) -> tuple[int, bytes]:
        return struct.unpack_from("<Q", body)[0], body[8:]
