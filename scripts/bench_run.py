"""Benchmark: the whole ``hftaccel run`` (streaming CPU backend) on synthetic days, against
itch-book's parse + book on the same file.

For each ``--messages`` count a seeded synthetic ITCH 5.0 stream
(:func:`hftaccel.feeds.synthetic.write_itch`, ``--symbols`` stock locates) is written once to
``build/bench/synthetic_<n>_<symbols>_<seed>.itch`` (the file ``scripts/bench_book.py`` uses).
Then, in the same run of this script:

- ``hftaccel run FILE --json --out DIR`` as a subprocess (decode, book, features, int8 MLP, risk
  gate, OUCH, writing ``book.parquet`` at ``--records`` (default bbo), ``signals.parquet`` and
  ``orders.ouch``): wall time of the process, messages/s over it, the summary's own throughput
  and stage seconds, and the peak RSS of the process (``wait4``'s ``ru_maxrss``);
- itch-book (``itch_book._core.Session`` with no output table: parse + book apply only) fed the
  same file in 8 MiB pieces from a memory map, in this process: wall time and messages/s.

The ratio is hftaccel run's messages/s over itch-book's. Output: a table on stdout and JSON
(``--out``, default ``build/bench/bench_run.json``).

Usage: ``python scripts/bench_run.py [--messages 10000000,100000000] [--symbols 1000]
[--seed 0] [--records bbo] [--keep-out] [--out PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PIECE = 8 << 20


def synthetic_file(workdir: Path, n: int, symbols: int, seed: int) -> Path:
    """Write (or reuse) the synthetic stream of ``n`` order messages."""
    from hftaccel.feeds import synthetic

    path = workdir / f"synthetic_{n}_{symbols}_{seed}.itch"
    if not path.exists():
        tmp = path.with_suffix(".part")
        synthetic.write_itch(tmp, n, n_symbols=symbols, seed=seed)
        tmp.rename(path)
    return path


def run_hftaccel(path: Path, records: str, keep_out: Path | None) -> dict:
    """``hftaccel run`` as a subprocess; wall, peak RSS, summary figures."""
    out = keep_out or Path(tempfile.mkdtemp(prefix="bench-run-"))
    cmd = [sys.executable, "-m", "hftaccel.cli", "run", str(path), "--json", "--out", str(out),
           "--records", records]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}")
    s = json.loads(stdout)
    sizes = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
    if keep_out is None:
        shutil.rmtree(out)
    return {"wall_s": wall, "msgs_per_s": s["messages"] / wall,
            "summary_msgs_per_s": s["throughput_msgs_per_s"],
            "stage_seconds": s["stage_seconds"], "peak_rss_mib": usage.ru_maxrss / 1024,
            "cpu_s": usage.ru_utime + usage.ru_stime, "messages": s["messages"],
            "book_updates": s["book_updates"], "orders": s["orders"],
            "signals": s["signals"]["total"], "complete": s["complete"], "output_bytes": sizes}


def run_itch_book(path: Path) -> dict:
    """itch-book's parse + book apply (no table) over the file, 8 MiB pieces from a map."""
    from itch_book._core import Session

    buf = np.memmap(path, dtype=np.uint8, mode="r")
    t0, c0 = time.perf_counter(), time.process_time()
    session = Session(tables=[], depth=0, symbols=[])
    session.reserve(PIECE // 21)
    for a in range(0, buf.shape[0], PIECE):
        session.feed(np.asarray(buf[a:a + PIECE]))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu, "stats": {k: int(v) if isinstance(v, (int, np.integer))
                                                     else v for k, v in
                                                     dict(session.stats()).items()}}


def _table(rows: list) -> None:
    """The runs as a table on stdout: wall, messages/s, peak RSS, stage seconds, output size
    and itch-book's parse + book on the same file."""
    head = ("messages", "file MB", "wall s", "msg/s", "peak RSS MiB", "decode s", "book s",
            "score s", "output s", "out MB", "itch-book msg/s", "ratio")
    print(" | ".join(head))
    for r in rows:
        h, ib = r["hftaccel_run"], r["itch_book_parse_book"]
        st = h["stage_seconds"]
        cells = (f"{h['messages']:,}", f"{r['file_bytes'] / 1e6:,.0f}", f"{h['wall_s']:.2f}",
                 f"{h['msgs_per_s']:,.0f}", f"{h['peak_rss_mib']:,.0f}",
                 *(f"{st.get(k, 0.0):.2f}" for k in ("decode", "book", "score", "output")),
                 f"{sum(h['output_bytes'].values()) / 1e6:,.0f}", f"{ib['msgs_per_s']:,.0f}",
                 f"{r['ratio_to_itch_book']:.3f}")
        print(" | ".join(cells), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", default="10000000,100000000")
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--records", default="bbo", choices=("none", "bbo", "all"))
    ap.add_argument("--keep-out", action="store_true", help="keep the run folders under "
                    "build/bench/run_<n>")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / "bench_run.json")
    args = ap.parse_args(argv)
    workdir = ROOT / "build" / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in [int(x) for x in args.messages.split(",") if x]:
        path = synthetic_file(workdir, n, args.symbols, args.seed)
        keep = workdir / f"run_{n}" if args.keep_out else None
        h = run_hftaccel(path, args.records, keep)
        ib = run_itch_book(path)
        ib["msgs_per_s"] = h["messages"] / ib["wall_s"]
        rows.append({"order_messages": n, "file": str(path), "file_bytes": path.stat().st_size,
                     "hftaccel_run": h, "itch_book_parse_book": ib,
                     "ratio_to_itch_book": h["msgs_per_s"] / ib["msgs_per_s"]})
        print(f"{n:,} messages: {h['wall_s']:.1f} s, peak RSS {h['peak_rss_mib']:,.0f} MiB",
              file=sys.stderr, flush=True)
    _table(rows)
    report = {"machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                          "cpus": os.cpu_count()},
              "records": args.records, "symbols": args.symbols, "seed": args.seed,
              "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
