"""CPU backend: the golden pipeline on the host (decode -> book -> ...), the reference replay.

This is what ``hftaccel run --backend cpu`` executes. Every stage is a library call over NumPy
record arrays (Numba inside); this module only sequences them, times them and builds the
summary that the CLI prints and writes as JSON.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hftaccel.feeds import itch, source
from hftaccel.golden.book import Book
from hftaccel.spec import BOOK_DEPTH, book_record_dtype

from .check import BookCheck, check_level1

__all__ = ["RunResult", "run", "lobster_mapping", "records_table"]


@dataclass
class RunResult:
    """What a replay produced.

    Attributes
    ----------
    summary : dict
        The JSON summary (see :func:`run`).
    records : np.ndarray of BOOK_RECORD_DTYPE
        One book record per book update, in sequence order.
    feed : hftaccel.feeds.source.Feed
    """

    summary: dict
    records: np.ndarray
    feed: object = None
    extra: dict = field(default_factory=dict)


def lobster_mapping(feed) -> tuple | None:
    """Map the LOBSTER rows of the day ``feed`` describes to the feed's sequence numbers.

    Returns ``(main_seq, orderbook, stock_locate)`` or None when no LOBSTER files lie beside the
    input, or when the input is not the ITCH stream the converter makes from them (checked by
    comparing every book-relevant message).
    """
    from hftaccel.feeds import lobster

    if feed.lobster is None:
        return None
    orderbook = lobster.load_orderbook(feed.lobster.orderbook_path)
    conv = feed.conversion
    if conv is None:
        conv = lobster.to_itch(lobster.load_messages(feed.lobster.message_path), orderbook,
                               stock=feed.lobster.message_path.name.split("_")[0])
        ours = itch.order_events(conv.messages)
        theirs = itch.order_events(feed.messages)
        fields = [n for n in ours.dtype.names if n not in ("seq", "_pad")]
        if ours.shape != theirs.shape or any(
                not np.array_equal(ours[n], theirs[n]) for n in fields) or not np.array_equal(
                ours["seq"] + np.uint64(feed.seq_base), theirs["seq"]):
            return None
    locate = int(conv.messages["R"]["stock_locate"][0])
    return conv.main_seq + np.uint64(feed.seq_base), orderbook, locate


def run(path=None, *, lenient: bool = False, depth: int = BOOK_DEPTH,
        chunk_events: int = 200_000, progress=None) -> RunResult:
    """Replay ``path`` (or the embedded sample) through the CPU golden pipeline.

    Parameters
    ----------
    path : str or Path, optional
        ITCH file, pcap/pcapng or LOBSTER message file; None replays the embedded sample (the
        LOBSTER AMZN 2012-06-21 day as ITCH 5.0 over MoldUDP64 in a pcap).
    lenient : bool
        Count and skip malformed input instead of stopping at the first error.
    depth : int
        Levels per side in the book records.
    chunk_events : int
        Events handed to the book per call (progress granularity).
    progress : callable, optional
        ``progress(done_events, total_events)`` after every chunk.

    Returns
    -------
    RunResult
        ``summary`` keys: ``input``, ``kind``, ``backend``, ``messages``, ``messages_by_type``,
        ``book_updates``, ``bad_references`` (by kind), ``first_bad_references``, ``gaps``
        (list of {session, first_missing, count}), ``duplicates``, ``packets``, ``skipped`` (by
        reason), ``throughput_msgs_per_s`` (messages / (decode + book) wall seconds),
        ``stage_seconds``, ``book_check`` (``{rows, mismatches, first_mismatch}`` or None when
        no LOBSTER orderbook describes the input), ``synthesized`` (LOBSTER input).

    Raises
    ------
    hftaccel.feeds.itch.ItchError, ValueError, FileNotFoundError
        Malformed input in strict mode, or a missing file.
    """
    path = Path(path) if path is not None else source.embedded_sample()
    Book(depth=depth).apply(np.zeros(0, dtype=itch.spec.ORDER_EVENT_DTYPE))  # JIT outside timing

    t0 = time.perf_counter()
    feed = source.open_feed(path, lenient=lenient)
    events = itch.order_events(feed.messages)
    t1 = time.perf_counter()

    book = Book(depth=depth)
    parts = []
    total = events.shape[0]
    for start in range(0, max(total, 1), chunk_events):
        parts.append(book.apply(events[start:start + chunk_events]))
        if progress is not None:
            progress(min(start + chunk_events, total), total)
    records = np.concatenate(parts) if parts else np.zeros(0, book_record_dtype(depth))
    t2 = time.perf_counter()

    check = None
    mapping = lobster_mapping(feed)
    if mapping is not None:
        main_seq, orderbook, locate = mapping
        check = check_level1(records, main_seq, orderbook, stock_locate=locate)
    elif feed.lobster is not None:
        check = BookCheck(0, 0, {"error": "input is not the ITCH conversion of the LOBSTER "
                                          f"files beside it ({feed.lobster.message_path.name})"})

    n_msgs = itch.n_messages(feed.messages)
    elapsed = t2 - t0
    summary = {
        "input": str(path),
        "kind": feed.kind,
        "backend": "cpu",
        "messages": n_msgs,
        "messages_by_type": itch.counts(feed.messages),
        "book_updates": int(records.shape[0]),
        "live_orders": int(book.live_orders),
        "bad_references": dict(book.bad_references),
        "first_bad_references": [{"kind": k, "seq": int(s)} for k, s in book.first_bad],
        "gaps": [{"session": _text(s), "first_missing": int(f), "count": int(c)}
                 for s, f, c in feed.gaps],
        "duplicates": int(feed.duplicates),
        "packets": int(feed.packets),
        "skipped": {k: int(v) for k, v in feed.skipped.items()},
        "throughput_msgs_per_s": float(n_msgs / elapsed) if elapsed > 0 else 0.0,
        "stage_seconds": {"decode": t1 - t0, "book": t2 - t1},
        "book_check": check.as_dict() if check is not None else None,
    }
    if feed.conversion is not None:
        summary["synthesized"] = dict(feed.conversion.synthesized)
    return RunResult(summary, records, feed)


def _text(session) -> str:
    if isinstance(session, (bytes, bytearray)):
        return session.decode("ascii", "replace").strip()
    return str(session)


def records_table(records: np.ndarray):
    """Book records as a :class:`pyarrow.Table`, one column per field and level
    (``bid_price_1`` ... ``ask_orders_N``, level 1 = best)."""
    import pyarrow as pa

    cols = {}
    for name in records.dtype.names:
        if name.startswith("_"):
            continue
        col = records[name]
        if col.ndim == 2:
            for k in range(col.shape[1]):
                cols[f"{name}_{k + 1}"] = pa.array(np.ascontiguousarray(col[:, k]))
        elif name in ("msg_type", "side"):
            cols[name] = pa.array(col.view("S1").astype(str))
        else:
            cols[name] = pa.array(np.ascontiguousarray(col))
    return pa.table(cols)
