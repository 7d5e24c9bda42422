"""Benchmark: ITCH 5.0 parse + order-book throughput of hftaccel against itch-book and itchcpp.

Two streams, each written once to ``build/bench`` as a length-framed ITCH 5.0 file and read into
memory before any clock starts:

- ``synthetic``: :func:`hftaccel.feeds.synthetic.write_itch`, ``--messages`` order messages over
  ``--symbols`` stock locates (default 10M over 1000);
- ``amzn``: the vendored LOBSTER AMZN 2012-06-21 day converted by
  :func:`hftaccel.feeds.lobster.to_itch` (level-1 orderbook repairs included).

Systems, all fed the same bytes from memory, single thread:

- ``hftaccel``: :func:`hftaccel.feeds.itch.decode` with ``events=True`` (parse: framing walk
  and the fused extraction of the book messages into order events, the replay path of
  ``hftaccel run``) then :meth:`hftaccel.golden.book.Book.apply` into a reused record buffer
  (book; one depth-8 book record per book-changing event), chunks of ``--chunk`` messages split
  at message boundaries; Numba is compiled before timing;
- ``itch-book``: its C++ session (``itch_book._core.Session``, what ``itch_book.Feed`` drives)
  fed in 8 MiB pieces, once with the ``bbo`` table (top-of-book row on every change: the
  configuration that, like hftaccel, emits book output) and once with no table (parse + book
  apply only);
- ``itchcpp``: ``itchcpp.book.BookManager.process_stream`` (parse + L3 book, no per-event
  output).

Each timing is the best of ``--repeat`` runs by wall time, reported with that run's process CPU
time (on a shared machine the CPU-time rates are the steadier ones). Messages/s counts every
message of the file. The target line compares hftaccel with itch-book's ``bbo`` configuration.

Best-bid/offer equality (synthetic and AMZN): for every stock locate, the sequence of distinct
consecutive top-of-book states ``(bid price, bid shares, ask price, ask shares)`` (prices in
1/10,000 USD, an empty side as price 0 / shares 0, each locate starting from the empty book) from
hftaccel's records (level 0 of each record) must equal the same sequence from itch-book's
``bbo`` table (``price_type="fixed"``). The final top of book of every symbol is also compared
with itchcpp's ``L3Book.bbo()``.

Output: a rich table on stdout and JSON (``--out``, default ``build/bench/bench_book.json``) with
machine, versions, per-system seconds and messages/s, the ratios and the BBO checks.

Usage: ``python scripts/bench_book.py [--messages N | --quick] [--symbols S] [--seed K]
[--repeat R] [--out PATH]``
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import sys
import time
from pathlib import Path

import numba
import numpy as np

from hftaccel.feeds import itch, synthetic
from hftaccel.golden import book as golden_book
from hftaccel.spec import book_record_dtype

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "host" / "hftaccel" / "data"
AMZN_STEM = "AMZN_2012-06-21_34200000_57600000"
FEED_PIECE = 8 << 20          # itch-book's default chunk_bytes


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------

def synthetic_file(workdir: Path, n: int, symbols: int, seed: int) -> tuple[Path, dict]:
    """Write (or reuse) the synthetic stream; return its path and how it was made."""
    path = workdir / f"synthetic_{n}_{symbols}_{seed}.itch"
    info = {"order_messages": n, "symbols": symbols, "seed": seed}
    if not path.exists():
        t0 = time.perf_counter()
        tmp = path.with_suffix(".part")
        synthetic.write_itch(tmp, n, n_symbols=symbols, seed=seed)
        tmp.rename(path)
        dt = time.perf_counter() - t0
        info["generate_and_write_s"] = dt
        info["generate_and_write_msg_per_s"] = n / dt
    return path, info


def amzn_file(workdir: Path) -> tuple[Path | None, dict]:
    """Convert the vendored LOBSTER AMZN day to ITCH; (None, reason) when it cannot be."""
    try:
        from hftaccel.feeds import lobster
    except ImportError as exc:
        return None, {"skipped": f"hftaccel.feeds.lobster unavailable: {exc}"}
    msg_file = DATA / f"{AMZN_STEM}_message_1.csv.gz"
    ob_file = DATA / f"{AMZN_STEM}_orderbook_1.csv.gz"
    if not msg_file.exists() or not ob_file.exists():
        return None, {"skipped": f"LOBSTER files missing under {DATA}"}
    path = workdir / "AMZN_2012-06-21.itch"
    conv = lobster.to_itch(lobster.load_messages(msg_file),
                           lobster.load_orderbook(ob_file, levels=1), stock="AMZN")
    itch.write_file(path, conv.messages)
    return path, {"lobster_rows": int(conv.main_seq.shape[0]),
                  "synthesized": {k: int(v) for k, v in conv.synthesized.items()}}


@numba.njit(cache=True)
def _boundaries(buf, every):  # pragma: no cover - compiled
    """Byte offsets that cut a length-framed stream every ``every`` messages (start and end
    included) and the number of messages."""
    n = buf.shape[0]
    cuts = [0]
    pos = 0
    count = 0
    while pos + 2 <= n:
        pos += 2 + ((np.int64(buf[pos]) << 8) | np.int64(buf[pos + 1]))
        count += 1
        if count % every == 0:
            cuts.append(pos)
    if cuts[-1] != pos:
        cuts.append(pos)
    return np.array(cuts, np.int64), count


# ---------------------------------------------------------------------------------------------
# systems
# ---------------------------------------------------------------------------------------------

def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def run_hftaccel(buf: np.ndarray, chunk: int):
    """Parse and book ``buf`` chunk by chunk.

    Returns
    -------
    timing : dict
        ``total_s``, ``parse_s``, ``book_s`` (wall) and ``total_cpu_s``, ``parse_cpu_s``,
        ``book_cpu_s`` (process CPU time).
    top : np.ndarray[int64], shape (n_records, 5)
        ``(locate, bid price, bid shares, ask price, ask shares)`` of level 0 of every record.
    bad_references : dict
    """
    cuts, _ = _boundaries(buf, chunk)
    book = golden_book.Book(depth=8)
    tm = dict.fromkeys(("parse_s", "book_s", "parse_cpu_s", "book_cpu_s"), 0.0)
    seq = 0
    tops = []
    out = None
    for a, b in zip(cuts[:-1], cuts[1:]):
        c0 = _clock()
        res = itch.decode(buf[a:b], seq_base=seq, events=True)
        ev = res.events
        wall, cpu = _since(c0)
        tm["parse_s"] += wall
        tm["parse_cpu_s"] += cpu
        if out is None or out.shape[0] < ev.shape[0]:
            out = np.empty(ev.shape[0], book_record_dtype(8))
            out[:] = np.zeros(1, out.dtype)  # touch the pages outside the clock
        c0 = _clock()
        rec = book.apply(ev, out=out)
        wall, cpu = _since(c0)
        tm["book_s"] += wall
        tm["book_cpu_s"] += cpu
        seq += res.n_messages
        tops.append(np.stack([rec["stock_locate"].astype(np.int64),
                              rec["bid_price"][:, 0].astype(np.int64),
                              rec["bid_shares"][:, 0].astype(np.int64),
                              rec["ask_price"][:, 0].astype(np.int64),
                              rec["ask_shares"][:, 0].astype(np.int64)], axis=1))
        del rec, ev, res  # rec is a view of ``out``, reused by the next chunk
    tm["total_s"] = tm["parse_s"] + tm["book_s"]
    tm["total_cpu_s"] = tm["parse_cpu_s"] + tm["book_cpu_s"]
    top = np.concatenate(tops) if tops else np.zeros((0, 5), np.int64)
    return tm, top, book.bad_references


def run_itch_book(buf: np.ndarray, tables: list[str]):
    """Feed ``buf`` to itch-book's C++ session (8 MiB pieces).

    Returns
    -------
    (timing {total_s, total_cpu_s}, bbo columns or None, session stats)
    """
    from itch_book._core import Session

    c0 = _clock()
    session = Session(tables=tables, depth=0, symbols=[])
    session.reserve(buf.shape[0] // 21 if tables else FEED_PIECE // 21)
    for a in range(0, buf.shape[0], FEED_PIECE):
        session.feed(buf[a:a + FEED_PIECE])
    bbo = session.take_bbo() if "bbo" in tables else None
    wall, cpu = _since(c0)
    return {"total_s": wall, "total_cpu_s": cpu}, bbo, session.stats()


def run_itchcpp(data: bytes):
    """Run itchcpp's BookManager over ``data``; return (timing {total_s, total_cpu_s}, manager)."""
    from itchcpp.book import BookManager

    c0 = _clock()
    manager = BookManager()
    manager.process_stream(data)
    wall, cpu = _since(c0)
    return {"total_s": wall, "total_cpu_s": cpu}, manager


def best_of(repeat: int, fn, *args):
    """Run ``fn`` ``repeat`` times; return the result of the run with the least wall time
    (its first item is the timing dict)."""
    best = None
    for _ in range(repeat):
        out = fn(*args)
        if best is None or out[0]["total_s"] < best[0]["total_s"]:
            best = out
        del out
    return best


def rates(tm: dict, n: int) -> dict:
    """Timing dict plus messages/s for each of its entries (``x_s`` -> ``x_msg_per_s``)."""
    out = dict(tm)
    for key, sec in tm.items():
        out[key[:-2] + "_msg_per_s"] = n / sec if sec > 0 else None
    return out


# ---------------------------------------------------------------------------------------------
# BBO comparison
# ---------------------------------------------------------------------------------------------

def bbo_states(top: np.ndarray) -> np.ndarray:
    """Distinct consecutive top-of-book states per locate, in time order.

    Parameters
    ----------
    top : np.ndarray[int64], shape (n, 5)
        Rows ``(locate, bid price, bid shares, ask price, ask shares)`` in stream order.

    Returns
    -------
    np.ndarray[int64], shape (m, 5)
        Rows grouped by locate (ascending), each group in time order, a row kept only when it
        differs from the previous row of its locate (the first row: from the empty book).
    """
    order = np.argsort(top[:, 0], kind="stable")
    t = top[order]
    prev = np.zeros_like(t[:, 1:])           # every locate starts from the empty book
    prev[1:] = t[:-1, 1:]
    new_loc = np.ones(t.shape[0], bool)
    new_loc[1:] = t[1:, 0] != t[:-1, 0]
    prev[new_loc] = 0
    return t[(t[:, 1:] != prev).any(axis=1)]


def compare_bbo(ours: np.ndarray, theirs: np.ndarray) -> dict:
    """Compare two :func:`bbo_states` arrays; report equality and the first difference."""
    a, b = bbo_states(ours), bbo_states(theirs)
    out = {"states_hftaccel": int(a.shape[0]), "states_itch_book": int(b.shape[0]),
           "locates": int(np.unique(a[:, 0]).shape[0]) if a.shape[0] else 0}
    if a.shape == b.shape and (a == b).all():
        out["equal"] = True
        return out
    out["equal"] = False
    n = min(a.shape[0], b.shape[0])
    diff = np.flatnonzero((a[:n] != b[:n]).any(axis=1))
    i = int(diff[0]) if diff.size else n
    out["first_difference_index"] = i
    out["hftaccel_row"] = a[i].tolist() if i < a.shape[0] else None
    out["itch_book_row"] = b[i].tolist() if i < b.shape[0] else None
    return out


def itch_book_top(bbo: dict) -> np.ndarray:
    return np.stack([bbo["locate"].astype(np.int64), bbo["bid_px"].astype(np.int64),
                     bbo["bid_sz"].astype(np.int64), bbo["ask_px"].astype(np.int64),
                     bbo["ask_sz"].astype(np.int64)], axis=1)


def compare_final_itchcpp(top: np.ndarray, manager, names: dict) -> dict:
    """Final top of book per symbol: hftaccel's last record vs itchcpp's ``L3Book.bbo()``."""
    order = np.argsort(top[:, 0], kind="stable")
    t = top[order]
    last = np.ones(t.shape[0], bool)
    last[:-1] = t[1:, 0] != t[:-1, 0]
    final = {int(r[0]): tuple(int(x) for x in r[1:]) for r in t[last]}
    agree = 0
    first = None
    for loc, name in names.items():
        ours = final.get(loc, (0, 0, 0, 0))
        book = manager.book_for_symbol(name)
        if book is None:
            theirs = (0, 0, 0, 0)
        else:
            q = book.bbo()
            theirs = (round(q.bid_price * 10_000) if q.has_bid else 0,
                      q.bid_shares if q.has_bid else 0,
                      round(q.ask_price * 10_000) if q.has_ask else 0,
                      q.ask_shares if q.has_ask else 0)
        if ours == theirs:
            agree += 1
        elif first is None:
            first = {"symbol": name, "hftaccel": list(ours), "itchcpp": list(theirs)}
    return {"symbols": len(names), "agree": agree, "first_difference": first}


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------

def bench_file(label: str, path: Path, *, repeat: int, chunk: int) -> dict:
    data = path.read_bytes()
    buf = np.frombuffer(data, np.uint8)
    _, n_msgs = _boundaries(buf, chunk)
    res = {"file": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
           "bytes": len(data), "messages": int(n_msgs), "systems": {}}

    tm, top, bad = best_of(repeat, run_hftaccel, buf, chunk)
    res["systems"]["hftaccel"] = rates(tm, n_msgs) | {"book_records": int(top.shape[0]),
                                                      "bad_references": bad}
    tm, bbo, stats = best_of(repeat, run_itch_book, buf, ["bbo"])
    res["systems"]["itch-book (bbo table)"] = rates(tm, n_msgs) | {
        "bbo_rows": int(bbo["seq"].shape[0]),
        "stats": {k: v for k, v in stats.items() if isinstance(v, (int, str))}}
    tm, _, _ = best_of(repeat, run_itch_book, buf, [])
    res["systems"]["itch-book (no table)"] = rates(tm, n_msgs)
    tm, manager = best_of(repeat, run_itchcpp, data)
    res["systems"]["itchcpp"] = rates(tm, n_msgs) | {"books": int(manager.book_count())}

    sy = res["systems"]
    res["ratios"] = {}
    for clock, key in (("wall", "total_msg_per_s"), ("cpu", "total_cpu_msg_per_s")):
        ours = sy["hftaccel"][key]
        res["ratios"][clock] = {
            "hftaccel_vs_itch_book_bbo": ours / sy["itch-book (bbo table)"][key],
            "hftaccel_vs_itch_book_no_table": ours / sy["itch-book (no table)"][key],
            "hftaccel_vs_itchcpp": ours / sy["itchcpp"][key],
        }
    res["bbo_vs_itch_book"] = compare_bbo(top, itch_book_top(bbo))
    names = directory_names(buf)
    res["final_bbo_vs_itchcpp"] = compare_final_itchcpp(top, manager, names)
    print(f"[{label}] done: {n_msgs:,} messages", file=sys.stderr)
    return res


def directory_names(buf: np.ndarray) -> dict:
    """Stock locate -> symbol from the file's Stock Directory messages."""
    r = itch.decode(buf, lenient=True).messages.get("R")
    if r is None:
        return {}
    return {int(l): s.decode().rstrip() for l, s in zip(r["stock_locate"], r["stock"])}


def warm_up(buf: np.ndarray, chunk: int) -> None:
    """Compile the Numba kernels on a small prefix (not timed)."""
    cuts, _ = _boundaries(buf[: 4 << 20], 50_000)
    run_hftaccel(buf[: int(cuts[min(2, cuts.shape[0] - 1)])], chunk)


def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"platform": platform.platform(), "cpu": cpu, "logical_cpus": os.cpu_count(),
            "python": platform.python_version(), "load_avg_at_start": load}


def versions() -> dict:
    out = {}
    for pkg in ("hftaccel", "numpy", "numba", "itch-book", "itchcpp"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ITCH 5.0 parse + book, single thread, best of "
                        f"{report['params']['repeat']} (wall) with that run's CPU time")
    cols = ("stream", "system", "messages", "parse s", "book s", "wall s", "M msg/s", "CPU s",
            "M msg/s CPU", "hftaccel × (wall)", "hftaccel × (CPU)")
    for col in cols:
        table.add_column(col, justify="left" if col in ("stream", "system") else "right")
    for label, res in report["streams"].items():
        if "skipped" in res:
            table.add_row(label, res["skipped"], *[""] * (len(cols) - 2))
            continue
        ours = res["systems"]["hftaccel"]
        for system, r in res["systems"].items():
            other = system != "hftaccel"
            table.add_row(
                label, system, f"{res['messages']:,}",
                f"{r['parse_s']:.3f}" if "parse_s" in r else "",
                f"{r['book_s']:.3f}" if "book_s" in r else "",
                f"{r['total_s']:.3f}", f"{r['total_msg_per_s'] / 1e6:.2f}",
                f"{r['total_cpu_s']:.3f}", f"{r['total_cpu_msg_per_s'] / 1e6:.2f}",
                f"{ours['total_msg_per_s'] / r['total_msg_per_s']:.2f}" if other else "",
                f"{ours['total_cpu_msg_per_s'] / r['total_cpu_msg_per_s']:.2f}" if other else "")
            label = ""
    console = Console(width=max(Console().width, 160))
    console.print(table)
    for label, res in report["streams"].items():
        if "skipped" in res:
            continue
        b = res["bbo_vs_itch_book"]
        f = res["final_bbo_vs_itchcpp"]
        console.print(f"{label}: BBO sequence vs itch-book: "
                      f"{'EQUAL' if b['equal'] else 'DIFFERENT'} "
                      f"({b['states_hftaccel']:,} vs {b['states_itch_book']:,} states over "
                      f"{b['locates']:,} locates); final BBO vs itchcpp: "
                      f"{f['agree']}/{f['symbols']} symbols agree")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=10_000_000,
                    help="synthetic order messages (default 10M)")
    ap.add_argument("--quick", action="store_true", help="1M synthetic messages")
    ap.add_argument("--symbols", type=int, default=1000, help="synthetic stock locates")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="runs per timing; best is kept")
    ap.add_argument("--chunk", type=int, default=1_000_000,
                    help="hftaccel decode/book chunk, messages")
    ap.add_argument("--workdir", type=Path, default=ROOT / "build" / "bench")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / "bench_book.json")
    args = ap.parse_args(argv)
    n = 1_000_000 if args.quick else args.messages
    args.workdir.mkdir(parents=True, exist_ok=True)

    report = {"benchmark": "bench_book", "machine": machine(), "versions": versions(),
              "params": {"synthetic_messages": n, "symbols": args.symbols, "seed": args.seed,
                         "repeat": args.repeat, "chunk": args.chunk},
              "streams": {}}
    syn_path, syn_info = synthetic_file(args.workdir, n, args.symbols, args.seed)
    amzn_path, amzn_info = amzn_file(args.workdir)
    warm_up(np.frombuffer(syn_path.read_bytes(), np.uint8), args.chunk)

    report["streams"]["synthetic"] = bench_file("synthetic", syn_path, repeat=args.repeat,
                                                chunk=args.chunk) | {"source": syn_info}
    if amzn_path is None:
        report["streams"]["amzn"] = amzn_info
    else:
        report["streams"]["amzn"] = bench_file("amzn", amzn_path, repeat=max(args.repeat, 5),
                                               chunk=args.chunk) | {"source": amzn_info}
    syn = report["streams"]["synthetic"]
    ratio = syn["ratios"]["wall"]["hftaccel_vs_itch_book_bbo"]
    report["target"] = {
        "goal": "hftaccel messages/s >= 1.0 x itch-book (bbo table) on the synthetic stream; "
                "best bid/offer sequence equal to itch-book's",
        "ratio_wall": ratio,
        "ratio_cpu": syn["ratios"]["cpu"]["hftaccel_vs_itch_book_bbo"],
        "meets_1x": ratio >= 1.0,
        "bbo_equal_on_synthetic": syn["bbo_vs_itch_book"]["equal"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    t = report["target"]
    print(f"target: hftaccel / itch-book (bbo) = {t['ratio_wall']:.2f}x wall, "
          f"{t['ratio_cpu']:.2f}x CPU (goal >= 1.0x: {'met' if t['meets_1x'] else 'not met'}); "
          f"BBO equal on synthetic: {t['bbo_equal_on_synthetic']}")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
