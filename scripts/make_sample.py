"""Build the embedded demo capture: the LOBSTER AMZN 2012-06-21 day as ITCH 5.0 over MoldUDP64.

Reads the vendored LOBSTER message and orderbook files (``host/hftaccel/data``), converts them
with :func:`hftaccel.feeds.lobster.to_itch`, checks the stream (golden book replay equal to
LOBSTER's level 1 on every row, no bad reference; the capture decodes back to the same
messages) and writes ``host/hftaccel/data/AMZN_2012-06-21.pcap`` with
:func:`hftaccel.feeds.moldudp64.write_pcap`. MoldUDP64 sequence number = ITCH ``seq`` +
``FIRST_SEQ``.

No row-to-sequence table is stored: the conversion is deterministic, so whoever needs the
message of LOBSTER row ``i`` re-runs ``to_itch`` on the vendored files (about a second) and
takes ``main_seq[i] + FIRST_SEQ``. A JSON summary goes to stdout (and ``--report``).

Usage: ``python scripts/make_sample.py [--out PATH] [--report PATH] [--check-only]
[--batch-window-ns NS]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from hftaccel.backends.check import check_level1
from hftaccel.feeds import itch, lobster, moldudp64
from hftaccel.golden import book as golden_book

DATA = Path(__file__).resolve().parents[1] / "host" / "hftaccel" / "data"
STEM = "AMZN_2012-06-21_34200000_57600000"
MESSAGE_FILE = DATA / f"{STEM}_message_1.csv.gz"
ORDERBOOK_FILE = DATA / f"{STEM}_orderbook_1.csv.gz"
OUT = DATA / "AMZN_2012-06-21.pcap"
#: MoldUDP64 session and sequence number of the first message of the demo capture.
SESSION = b"AMZN120621"
FIRST_SEQ = 1
DATE = "2012-06-21"


def build(out: Path, *, check_only: bool = False,
          batch_window_ns: int = moldudp64.BATCH_WINDOW_NS) -> dict:
    """Convert, check and (unless ``check_only``) write the capture; return the summary."""
    t0 = time.perf_counter()
    msgs = lobster.load_messages(MESSAGE_FILE)
    ob = lobster.load_orderbook(ORDERBOOK_FILE, levels=1)
    t1 = time.perf_counter()
    conv = lobster.to_itch(msgs, ob, stock="AMZN")
    t2 = time.perf_counter()
    records, bad = golden_book.replay(itch.order_events(conv.messages))
    mism = check_level1(records, conv.main_seq, ob).mask
    if mism.any() or any(bad.values()):
        raise SystemExit(f"conversion check failed: {int(mism.sum())} rows differ from "
                         f"LOBSTER's book, bad references {bad}")
    summary = {
        "source": [MESSAGE_FILE.name, ORDERBOOK_FILE.name],
        "rows": int(len(msgs)),
        "itch_messages": itch.n_messages(conv.messages),
        "itch_counts": itch.counts(conv.messages),
        "synthesized": conv.synthesized,
        "level1_mismatches": int(mism.sum()),
        "bad_references": bad,
        "first_seq": FIRST_SEQ,
        "session": SESSION.decode(),
        "seconds": {"load": round(t1 - t0, 3), "convert": round(t2 - t1, 3)},
    }
    if check_only:
        return summary
    stats = moldudp64.write_pcap(out, conv.messages, session=SESSION, first_seq=FIRST_SEQ,
                                 date=DATE, batch_window_ns=batch_window_ns)
    cap = moldudp64.read_pcap(out)
    back = cap.messages
    for t, arr in conv.messages.items():
        got = back.get(t)
        if got is None or len(got) != len(arr):
            raise SystemExit(f"{out}: {t!r} messages do not read back")
        for name in arr.dtype.names:
            if name == "offset":
                continue
            want = arr[name] + np.uint64(FIRST_SEQ) if name == "seq" else arr[name]
            if not np.array_equal(got[name], want):
                raise SystemExit(f"{out}: field {name} of {t!r} messages does not read back")
    summary.update({"pcap": out.name, "batch_window_ns": batch_window_ns,
                    "packets": stats.packets, "bytes": stats.bytes,
                    "sha256": hashlib.sha256(out.read_bytes()).hexdigest()})
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT, help="capture to write")
    ap.add_argument("--report", type=Path, help="also write the JSON summary here")
    ap.add_argument("--check-only", action="store_true", help="convert and check, write nothing")
    ap.add_argument("--batch-window-ns", type=int, default=moldudp64.BATCH_WINDOW_NS,
                    help="MoldUDP64 batching window (ns); wider windows give fewer, fuller "
                         "packets and a smaller file")
    args = ap.parse_args(argv)
    summary = build(args.out, check_only=args.check_only,
                    batch_window_ns=args.batch_window_ns)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.report:
        args.report.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
