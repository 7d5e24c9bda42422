"""Open any supported input (ITCH file, pcap/pcapng, LOBSTER message file) as one feed.

Detection is by content, not by name: pcap and pcapng by their magic numbers, gzip by its
magic (then the same tests on the decompressed head), LOBSTER by a first line of six numeric
CSV fields; anything else is taken as a length-framed ITCH 5.0 file. A LOBSTER orderbook file
lying beside the input (``<TICKER>_<DATE>_..._orderbook_<L>.csv[.gz]``) is found and returned
so the replay can be checked against LOBSTER's own book.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from . import itch

__all__ = [
    "Feed",
    "LobsterRef",
    "detect",
    "open_feed",
    "Chunk",
    "FeedStream",
    "open_stream",
    "embedded_sample",
    "find_lobster_beside",
]

_PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_LOBSTER_LINE = re.compile(rb"^\s*\d+(\.\d+)?,-?\d+,-?\d+,-?\d+,-?\d+,-?\d+\s*$")
_LOBSTER_NAME = re.compile(r"^(?P<stem>.+)_message_(?P<levels>\d+)\.csv(\.gz)?$")

#: Name of the embedded demo capture in the package data.
SAMPLE_PCAP = "AMZN_2012-06-21.pcap"


@dataclass
class LobsterRef:
    """A LOBSTER message/orderbook pair that describes the same day as a feed."""

    message_path: Path
    orderbook_path: Path
    levels: int


@dataclass
class Feed:
    """A decoded input.

    Attributes
    ----------
    path : Path
    kind : str
        ``"itch"``, ``"pcap"`` or ``"lobster"``.
    messages : dict[str, np.ndarray]
        Decoded ITCH messages (see :mod:`hftaccel.feeds.itch`); without the book messages
        when those were extracted straight into ``events``.
    events : np.ndarray of ORDER_EVENT_DTYPE
        The order book's input: one record per A F E C X D U P message, by sequence number.
    type_counts : dict[str, int]
        Messages by type (all types).
    skipped : dict[str, int]
        Malformed messages or frames skipped (lenient mode), by reason.
    gaps : list[tuple]
        MoldUDP64 gaps ``(session, first_missing_sequence_number, count)`` (pcap only).
    duplicates : int
        MoldUDP64 messages dropped as duplicates or stale (pcap only).
    packets : int
        MoldUDP64 packets read (pcap only).
    seq_base : int
        Sequence number of the first message of the stream (1 for a MoldUDP64 session that
        starts at 1, 0 for files).
    lobster : LobsterRef or None
        LOBSTER files describing the same day, when found.
    conversion : object or None
        For LOBSTER input, the :class:`hftaccel.feeds.lobster.Conversion` (it maps rows to
        sequence numbers and counts synthesized messages).
    """

    path: Path
    kind: str
    messages: dict
    events: np.ndarray
    type_counts: dict
    skipped: dict = field(default_factory=dict)
    gaps: list = field(default_factory=list)
    duplicates: int = 0
    packets: int = 0
    seq_base: int = 0
    lobster: LobsterRef | None = None
    conversion: object = None


def _head(path: Path, n: int = 256) -> bytes:
    with open(path, "rb") as fh:
        head = fh.read(n)
    if head[:2] == b"\x1f\x8b":
        with gzip.open(path, "rb") as fh:
            head = fh.read(n)
    return head


def detect(path) -> str:
    """Return ``"pcap"``, ``"lobster"`` or ``"itch"`` for the file at ``path`` (by content).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such input file: {path}")
    head = _head(path)
    if head[:4] in _PCAP_MAGICS or head[:4] == _PCAPNG_MAGIC:
        return "pcap"
    first_line = head.split(b"\n", 1)[0]
    if _LOBSTER_LINE.match(first_line):
        return "lobster"
    return "itch"


def find_lobster_beside(path) -> LobsterRef | None:
    """Find a LOBSTER message + orderbook pair in the folder of ``path`` for the same day.

    The day is read from the input's name (``TICKER_YYYY-MM-DD``); for a LOBSTER message file
    its own orderbook twin is returned. None when there is no such pair.
    """
    path = Path(path)
    m = _LOBSTER_NAME.match(path.name)
    if m:
        candidates = [path]
    else:
        day = re.match(r"^([A-Za-z0-9.]+_\d{4}-\d{2}-\d{2})", path.name)
        if not day:
            return None
        candidates = sorted(path.parent.glob(day.group(1) + "_*_message_*.csv*"))
    for msg in candidates:
        mm = _LOBSTER_NAME.match(msg.name)
        if not mm:
            continue
        for ext in (".csv", ".csv.gz"):
            book = msg.parent / f"{mm.group('stem')}_orderbook_{mm.group('levels')}{ext}"
            if book.is_file():
                return LobsterRef(msg, book, int(mm.group("levels")))
    return None


def embedded_sample() -> Path:
    """Path of the embedded demo capture: the LOBSTER AMZN 2012-06-21 day converted to ITCH 5.0
    over MoldUDP64 in a nanosecond pcap (package data, with the LOBSTER files beside it).

    Raises
    ------
    FileNotFoundError
        The package was installed without its data.
    """
    path = Path(str(resources.files("hftaccel.data") / SAMPLE_PCAP))
    if not path.is_file():
        raise FileNotFoundError(f"embedded sample missing: {path} (reinstall hftaccel)")
    return path


def open_feed(path, *, lenient: bool = False, udp_port: int | None = None) -> Feed:
    """Decode ``path`` (kind detected by content) into a :class:`Feed`.

    Parameters
    ----------
    path : str or Path
    lenient : bool
        Count and skip malformed messages/frames instead of raising.
    udp_port : int, optional
        Only MoldUDP64 datagrams to this UDP destination port (pcap input).

    Raises
    ------
    hftaccel.feeds.itch.ItchError
        Malformed ITCH data (strict mode); names the file and byte offset.
    ValueError
        Malformed pcap, MoldUDP64 or LOBSTER data (strict mode); names the file and the frame
        or line.
    FileNotFoundError
        ``path`` does not exist.
    """
    path = Path(path)
    kind = detect(path)
    lob = find_lobster_beside(path)
    if kind == "pcap":
        from . import moldudp64

        cap = moldudp64.read_pcap(path, lenient=lenient, udp_port=udp_port, events=True)
        return Feed(path, kind, cap.messages, cap.events, cap.type_counts, dict(cap.skipped),
                    list(cap.gaps), int(cap.duplicates), int(cap.packets),
                    int(cap.seq[0]) if cap.seq.shape[0] else 0, lob)
    if kind == "lobster":
        from . import lobster

        book = lobster.load_orderbook(lob.orderbook_path) if lob else None
        conv = lobster.to_itch(lobster.load_messages(path), book, stock=_ticker(path))
        return Feed(path, kind, conv.messages, itch.order_events(conv.messages),
                    itch.counts(conv.messages), {}, [], 0, 0, 0, lob, conv)
    res = itch.read_file(path, lenient=lenient, events=True)
    return Feed(path, kind, res.messages, res.events, res.type_counts, dict(res.skipped), [], 0,
                0, 0, lob)


def _ticker(path: Path) -> str:
    m = re.match(r"^([A-Za-z.]+)_\d{4}-\d{2}-\d{2}", path.name)
    return m.group(1).upper() if m else "LOBSTER"


@dataclass
class Chunk:
    """One step of a :class:`FeedStream`.

    Attributes
    ----------
    events : np.ndarray of ORDER_EVENT_DTYPE
        The book messages of the chunk, by sequence number.
    messages : dict[str, np.ndarray]
        The chunk's other messages (Stock Directory ones among them), by type.
    read : int
        Input bytes consumed so far (compressed bytes for gzip), for progress.
    """

    events: np.ndarray
    messages: dict
    read: int


class FeedStream:
    """An input read and decoded chunk by chunk: iterate it for :class:`Chunk`\\ s.

    The counters (``type_counts``, ``skipped``, ``gaps``, ``duplicates``, ``packets``) grow as
    chunks are read and equal :func:`open_feed`'s once the stream is exhausted; the chunks'
    events and messages concatenated equal its ``events`` and ``messages``, whatever
    ``chunk_bytes`` is. ITCH files (plain or gzip) are read ``chunk_bytes`` at a time; pcap,
    pcapng and LOBSTER input is decoded whole (as :func:`open_feed` does) and handed out in
    chunks of about ``chunk_bytes / 32`` events.

    Attributes
    ----------
    path : Path
    kind : str
        ``"itch"``, ``"pcap"`` or ``"lobster"``.
    total_bytes : int
        Size of the input file, bytes.
    streamed : bool
        True when the input is read incrementally (memory bounded by the chunk size).
    type_counts, skipped, gaps, duplicates, packets, seq_base, lobster, conversion
        As :class:`Feed`.
    """

    def __init__(self, path: Path, kind: str, lobster: LobsterRef | None, *,
                 chunk_bytes: int, lenient: bool, udp_port: int | None):
        self.path = path
        self.kind = kind
        self.lobster = lobster
        self.total_bytes = path.stat().st_size
        self.chunk_bytes = int(chunk_bytes)
        self.lenient = lenient
        self.udp_port = udp_port
        self.streamed = kind == "itch"
        self.type_counts: dict = {}
        self.skipped: dict = {}
        self.gaps: list = []
        self.duplicates = 0
        self.packets = 0
        self.seq_base = 0
        self.conversion = None

    def _add(self, counts: dict, skipped: dict) -> None:
        for k, v in counts.items():
            self.type_counts[k] = self.type_counts.get(k, 0) + int(v)
        order = {t: i for i, t in enumerate(itch.spec.LAYOUTS)}
        self.type_counts = dict(sorted(self.type_counts.items(), key=lambda kv: order[kv[0]]))
        for k, v in skipped.items():
            self.skipped[k] = self.skipped.get(k, 0) + int(v)

    def __iter__(self):
        if self.kind == "itch":
            for part in itch.read_chunks(self.path, chunk_bytes=self.chunk_bytes,
                                         lenient=self.lenient, events=True):
                r = part.result
                self._add(r.type_counts, r.skipped)
                yield Chunk(r.events, r.messages, part.read)
            return
        feed = open_feed(self.path, lenient=self.lenient, udp_port=self.udp_port)
        self._add(feed.type_counts, feed.skipped)
        self.gaps, self.duplicates, self.packets = list(feed.gaps), feed.duplicates, feed.packets
        self.seq_base, self.conversion = feed.seq_base, feed.conversion
        step = max(1, self.chunk_bytes // 32)
        n = feed.events.shape[0]
        for a in range(0, max(n, 1), step):
            last = a + step >= n
            yield Chunk(feed.events[a:a + step], feed.messages if a == 0 else {},
                        self.total_bytes if last else int(self.total_bytes * (a + step) / n))


def open_stream(path, *, lenient: bool = False, udp_port: int | None = None,
                chunk_bytes: int = itch.CHUNK_BYTES) -> FeedStream:
    """Open ``path`` (kind detected by content) as a :class:`FeedStream`.

    Parameters
    ----------
    path : str or Path
    lenient : bool
        Count and skip malformed messages/frames instead of raising.
    udp_port : int, optional
        Only MoldUDP64 datagrams to this UDP destination port (pcap input).
    chunk_bytes : int
        Input bytes per chunk (>= 1).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        ``chunk_bytes < 1``.
    hftaccel.feeds.itch.ItchError, ValueError
        While iterating: as :func:`open_feed`.
    """
    path = Path(path)
    if not isinstance(chunk_bytes, (int, np.integer)) or chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be a positive integer, got {chunk_bytes!r}")
    kind = detect(path)
    return FeedStream(path, kind, find_lobster_beside(path), chunk_bytes=chunk_bytes,
                      lenient=lenient, udp_port=udp_port)
