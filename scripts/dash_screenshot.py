"""Screenshot of the dashboard on the AMZN day for the README (``docs/dash.png``).

Makes the run once (``hftaccel run --venue-sim --out build/dash/amzn``: the embedded AMZN
2012-06-21 day, cpu backend, routed through the venue simulator so that fills, position and
P&L are drawn), serves ``hftaccel dash`` on it on a free loopback port, opens the page in
Debian's headless chromium (Playwright, ``/usr/bin/chromium``), waits for every panel and saves
a full-page PNG. The tick-to-trade panel shows the newest of ``build/profile/report.json`` and
``build/sim/latency.json`` (``make sim`` writes the latter), or says that there is none.

Usage: ``python scripts/dash_screenshot.py [RUN_DIR] [--out docs/dash.png] [--width 1400]
[--latency FILE]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from hftaccel.dash.app import create_app
from hftaccel.dash.browser import background, chromium_missing, screenshot
from hftaccel.dash.data import Run

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", nargs="?", type=Path, default=None,
                    help="run folder (default: build/dash/amzn, made if missing)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "dash.png")
    ap.add_argument("--width", type=int, default=1400, help="viewport width, px")
    ap.add_argument("--latency", type=Path, default=None, help="tick-to-trade report")
    args = ap.parse_args(argv)
    why = chromium_missing()
    if why:
        print(f"cannot take the screenshot: {why}", file=sys.stderr)
        return 2
    run_dir = args.run_dir
    if run_dir is None:
        run_dir = REPO / "build" / "dash" / "amzn"
        if not (run_dir / "summary.json").is_file():
            subprocess.run([sys.executable, "-m", "hftaccel.cli", "run", "--venue-sim",
                            "--out", str(run_dir)], check=True, stdout=subprocess.DEVNULL)
    run = Run(run_dir, latency=args.latency)
    for p in run.problems:
        print(f"problem: {p}", file=sys.stderr)
    app = create_app(run, title="hftaccel dash: AMZN 2012-06-21 (LOBSTER sample as ITCH 5.0)",
                     log=lambda m: print(m, file=sys.stderr))
    with background(app) as url:
        path = screenshot(url, args.out, width=args.width)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
