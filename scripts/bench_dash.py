"""Benchmark: server time to draw one window of the dashboard on a large synthetic run.

The run: :func:`hftaccel.feeds.synthetic.write_itch`, ``--messages`` order messages over
``--symbols`` stock locates (default 10M over 1000, seed 0), replayed by ``hftaccel run --out``
on the cpu backend (``plain``: one ``book.parquet`` / ``signals.parquet`` with pyarrow's default
row groups of 1,048,576 rows) and by ``hftaccel run --out --live`` (``live``: part files of
65,536 rows). Both are made once and reused from ``--workdir``.

What is timed, for the most active symbol and windows of 100 %, 10 %, 1 % and 0.1 % of the
run's span (centred):

- ``windowed`` (what the dashboard does): :func:`hftaccel.dash.figures.render` — the symbol's
  rows found in the in-memory index, only their row groups and only the drawn columns read
  (pyarrow), downsampled, every panel built — plus the figures' JSON (what goes to the browser).
  ``cold``: the column-chunk cache emptied first (median of ``--repeat``); ``warm``: again with
  the cache filled (play mode, a redraw).
- peer ``full read`` (what a dashboard without windowing does): both Parquet files read whole
  with pyarrow, the symbol and window cut out in memory, then the same downsampling, panels and
  JSON. Its figures are checked equal to the windowed ones.

Opening the run (the index: timestamp, sequence number, locate, decisions of every row) is
timed apart; it happens once per server start.

Output: a table and JSON (``--out``, default ``build/bench/bench_dash.json``).

Usage: ``python scripts/bench_dash.py [--messages N | --quick] [--symbols S] [--repeat R]
[--layouts plain,live]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import plotly.io as pio
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from hftaccel.dash import figures
from hftaccel.dash.data import FLOW_FEATURES, Run, WindowData
from hftaccel.feeds import synthetic

FRACTIONS = (1.0, 0.1, 0.01, 0.001)


def make_run(workdir: Path, n: int, symbols: int, seed: int, live: bool) -> tuple[Path, dict]:
    """The synthetic ITCH file and its run folder (made once, reused)."""
    itch = workdir / f"synthetic_{n}_{symbols}_{seed}.itch"
    info = {}
    if not itch.is_file():
        t = time.perf_counter()
        tmp = itch.with_suffix(".tmp")
        synthetic.write_itch(tmp, n, n_symbols=symbols, seed=seed)
        tmp.rename(itch)
        info["generate_s"] = time.perf_counter() - t
    out = workdir / f"run_{n}_{symbols}_{seed}{'_live' if live else ''}"
    if not (out / "summary.json").is_file():
        t = time.perf_counter()
        cmd = [sys.executable, "-m", "hftaccel.cli", "run", str(itch), "--out", str(out)]
        subprocess.run(cmd + (["--live"] if live else []), check=True,
                       stdout=subprocess.DEVNULL)
        info["replay_and_write_s"] = time.perf_counter() - t
    sizes = [p.stat().st_size for p in out.rglob("*.parquet")]
    info.update({"itch": str(itch), "run": str(out), "parquet_bytes": int(sum(sizes)),
                 "parquet_files": len(sizes)})
    return out, info


def full_read(run_dir: Path, run: Run, locate: int, t0: int, t1: int) -> WindowData:
    """The peer: both Parquet files read whole, then the window cut out in memory."""
    book = pq.read_table(run_dir / ("book.parquet" if (run_dir / "book.parquet").is_file()
                                    else "book"))
    sig = pq.read_table(run_dir / ("signals.parquet" if (run_dir / "signals.parquet").is_file()
                                   else "signals"))
    ts = book.column("timestamp").to_numpy().astype(np.int64)
    loc = book.column("stock_locate").to_numpy()
    mine = np.flatnonzero(loc == locate)
    sel = mine[(ts[mine] >= t0) & (ts[mine] < t1)]
    before = mine[ts[mine] < t0]
    prices, shares = run.level_columns()
    cols = ["timestamp", "seq", *prices, *shares]
    whole = {c: book.column(c).to_numpy() for c in cols}
    b = {c: v[sel] for c, v in whole.items()}
    prev = {c: v[before[-1:]] for c, v in whole.items()} if before.size else None
    s = {c: sig.column(c).to_numpy()[sel] for c in (*FLOW_FEATURES, "price", "intent",
                                                      "verdict", "reason")}
    return WindowData(t0, t1, locate, sel.astype(np.int64), b, prev, s)


def _json(figs: dict) -> int:
    return sum(len(pio.to_json(f, validate=False)) for f in figs.values())


def bench_layout(run_dir: Path, repeat: int, peer: bool) -> dict:
    t = time.perf_counter()
    run = Run(run_dir)
    open_s = time.perf_counter() - t
    if run.problems:
        raise SystemExit(f"{run_dir}: {[str(p) for p in run.problems]}")
    locate, name, n_rows = run.symbols()[0]
    a, b = run.span()
    res = figures.Resolution()
    out = {"open_s": open_s, "rows": int(run.timestamp.size), "symbol": name,
           "symbol_rows": n_rows, "windows": []}
    for frac in FRACTIONS:
        w = max(int((b - a) * frac), 1)
        t0 = a + (b - a - w) // 2
        t1 = t0 + w
        cold = []
        for _ in range(repeat):
            run.clear_cache()
            s = time.perf_counter()
            figs, info = figures.render(run, locate, t0, t1, name=name, res=res)
            size = _json(figs)
            cold.append((time.perf_counter() - s, info))
        s = time.perf_counter()
        figures.render(run, locate, t0, t1, name=name, res=res)
        _json(figs)
        warm = time.perf_counter() - s
        cold.sort(key=lambda c: c[0])
        tot, med = cold[(len(cold) - 1) // 2]           # the median run (lower middle)
        row = {"fraction": frac, "t0": t0, "t1": t1, "rows": med["rows"],
               "windowed_cold_s": tot, "windowed_read_s": med["read_s"],
               "windowed_draw_s": med["draw_s"],
               "windowed_json_s": tot - med["read_s"] - med["draw_s"],
               "windowed_warm_s": warm, "json_bytes": size}
        if peer:
            s = time.perf_counter()
            wd = full_read(run_dir, run, locate, t0, t1)
            r = time.perf_counter()
            peer_figs = figures.build(run, wd, name, res)
            _json(peer_figs)
            row["full_read_s"] = time.perf_counter() - s
            row["full_read_read_s"] = r - s
            same = all(pio.to_json(peer_figs[k], validate=False) ==
                       pio.to_json(figs[k], validate=False) for k in figs)
            row["peer_figures_equal"] = same
            if not same:
                raise SystemExit(f"window {frac}: the full-read figures differ from the "
                                 "windowed ones")
            row["speedup"] = row["full_read_s"] / tot
        out["windows"].append(row)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=10_000_000)
    ap.add_argument("--quick", action="store_true", help="1M synthetic messages")
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--layouts", default="plain,live")
    ap.add_argument("--workdir", type=Path, default=Path("build/bench/dash"))
    ap.add_argument("--out", type=Path, default=Path("build/bench/bench_dash.json"))
    args = ap.parse_args(argv)
    n = 1_000_000 if args.quick else args.messages
    args.workdir.mkdir(parents=True, exist_ok=True)
    report = {"benchmark": "hftaccel dash: server time per window",
              "params": {"messages": n, "symbols": args.symbols, "seed": args.seed,
                         "repeat": args.repeat, "resolution": vars(figures.Resolution())},
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "platform": platform.platform()},
              "layouts": {}}
    con = Console(width=120)
    for layout in [x.strip() for x in args.layouts.split(",") if x.strip()]:
        with con.status(f"{layout}: making the {n:,}-message run"):
            run_dir, info = make_run(args.workdir, n, args.symbols, args.seed, layout == "live")
        with con.status(f"{layout}: timing windows"):
            res = bench_layout(run_dir, args.repeat, peer=layout == "plain")
        res["run"] = info
        report["layouts"][layout] = res
    table = Table(title=f"hftaccel dash: server seconds for one window of the {n:,}-message "
                        f"synthetic run ({args.symbols} symbols), busiest symbol; cold = read + "
                        "draw + json")
    for col in ("layout", "window", "rows", "cold", "read", "draw", "json", "warm",
                "full read", "speedup"):
        table.add_column(col, justify="right")
    for layout, res in report["layouts"].items():
        for w in res["windows"]:
            table.add_row(layout, f"{w['fraction']:.1%}", f"{w['rows']:,}",
                          f"{w['windowed_cold_s']:.3f}", f"{w['windowed_read_s']:.3f}",
                          f"{w['windowed_draw_s']:.3f}", f"{w['windowed_json_s']:.3f}",
                          f"{w['windowed_warm_s']:.3f}",
                          f"{w['full_read_s']:.2f}" if "full_read_s" in w else "-",
                          f"{w['speedup']:.0f}x" if "speedup" in w else "-")
    con.print(table)
    for layout, res in report["layouts"].items():
        con.print(f"{layout}: open (index of {res['rows']:,} rows) {res['open_s']:.2f} s; "
                  f"{res['run']['parquet_files']} Parquet files, "
                  f"{res['run']['parquet_bytes'] / 2**20:,.0f} MiB; busiest symbol "
                  f"{res['symbol']} ({res['symbol_rows']:,} rows)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    con.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
