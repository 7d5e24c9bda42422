"""Benchmark: order-router latency and sustained order rate on loopback.

The venue simulator (:class:`hftaccel.router.Venue`, a market that never moves and shows a
billion shares at the touch, no added latency, no rejects) runs in a child process; the router
(:class:`hftaccel.router.Router`: risk gate, journal, SoupBinTCP / OUCH 5.0) in this one, on
one asyncio loop. Orders are IOC, alternately buying at the ask and selling at the bid (every
order fills in full, the position stays flat), 100 shares each; the risk limits are set so that
nothing is blocked. Each order's latency is taken from just before the risk gate
(``Router.submit``) to the processing of the venue's answer on the router:

- ``ack``: Order Accepted (OUCH 5.0 section 3.2) applied;
- ``done``: the order closed (Order Executed, 3.6, for the full size).

Runs:

- ``closed_loop``: one order in flight at a time (``--orders`` orders): round-trip latency;
- ``open_loop``: orders sent on a fixed schedule at each ``--rates`` orders/s for
  ``--seconds`` each, without waiting for answers: the sustained rate achieved and the latency
  under that load (a rate the router cannot keep shows as achieved < target and growing
  latency).

Every run is done with the journal fsync'd (the default: outbound write-ahead fsync, inbound
group commit) and, with ``--no-fsync-too``, again with fsync off, to show what durability costs
on this disk. Measurements go to JSON (``--out``, default ``build/bench/bench_router.json``):
machine, settings, per run: orders, seconds, achieved rate, latency percentiles in µs (p50, p90,
p99, p99.9, max, mean) and a log-spaced histogram.

Usage: ``python scripts/bench_router.py [--orders N] [--rates R1,R2] [--seconds S] [--quick]
[--out PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from hftaccel.router import Market, Router, Venue, VenueConfig
from hftaccel.spec.risk import RiskConfig

LOC, SYMBOL, BID, ASK = 1, "AMZN", 2_230_000, 2_230_100


def _venue_process(queue) -> None:
    async def main():
        venue = Venue(Market.constant({SYMBOL: (LOC, BID, ASK, 10 ** 9)}), VenueConfig())
        port = await venue.start()
        queue.put(port)
        while True:
            await asyncio.sleep(3600)

    asyncio.run(main())


def _stats(ns: list) -> dict:
    if not ns:
        return {"n": 0}
    a = np.asarray(ns, np.float64) / 1000.0
    edges = np.unique(np.round(np.geomspace(max(a.min(), 1.0), a.max() + 1, 25), 1))
    hist, _ = np.histogram(a, bins=edges)
    return {"n": int(a.size), "mean": float(a.mean()),
            **{k: float(np.percentile(a, q)) for k, q in
               (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9))},
            "max": float(a.max()),
            "histogram_us": {"edges": edges.tolist(), "counts": hist.tolist()}}


def _router(port: int, journal: Path, fsync: bool) -> Router:
    limits = RiskConfig(max_order_size=1000, max_position=10 ** 9, max_gross_notional=2 ** 62,
                        throttle_orders=1024, throttle_window_us=1, collar_ticks=100)
    return Router("127.0.0.1", port, risk_config=limits, journal=journal, fsync=fsync)


def _submit(r: Router, k: int):
    side, price = ("B", ASK) if k % 2 == 0 else ("S", BID)
    return r.submit(SYMBOL, LOC, side, 100, price, best_bid=BID, best_ask=ASK)


async def _closed_loop(port: int, journal: Path, fsync: bool, n: int) -> dict:
    r = _router(port, journal, fsync)
    await r.start()
    await r.wait_settled()
    for k in range(min(200, n)):  # warm-up: risk-gate compile/cache load, socket buffers
        o = _submit(r, k)
        await r.wait_settled([o.user_ref_num])
    r.latency_ack_ns.clear()
    r.latency_done_ns.clear()
    t0 = time.perf_counter()
    for k in range(n):
        o = _submit(r, k)
        await r.wait_settled([o.user_ref_num], timeout=30)
    sec = time.perf_counter() - t0
    out = {"orders": n, "seconds": sec, "orders_per_s": n / sec,
           "latency_us": {"ack": _stats(r.latency_ack_ns), "done": _stats(r.latency_done_ns)},
           "journal_fsyncs": r.journal.syncs, "errors": len(r.errors)}
    await r.close()
    return out


async def _open_loop(port: int, journal: Path, fsync: bool, rate: float, seconds: float) -> dict:
    r = _router(port, journal, fsync)
    await r.start()
    await r.wait_settled()
    n = int(rate * seconds)
    sent, blocked = [], 0
    t0 = time.perf_counter()
    for k in range(n):
        due = t0 + k / rate
        delay = due - time.perf_counter()
        await asyncio.sleep(delay if delay > 0 else 0)
        o = _submit(r, k)
        if o is None:
            blocked += 1
        else:
            sent.append(o.user_ref_num)
    t_sent = time.perf_counter() - t0
    await r.wait_settled(sent, timeout=120)
    sec = time.perf_counter() - t0
    out = {"target_orders_per_s": rate, "orders": len(sent), "blocked": blocked,
           "send_seconds": t_sent, "seconds": sec, "orders_per_s": len(sent) / sec,
           "send_orders_per_s": len(sent) / t_sent if t_sent else 0.0,
           "latency_us": {"ack": _stats(r.latency_ack_ns), "done": _stats(r.latency_done_ns)},
           "journal_fsyncs": r.journal.syncs, "errors": len(r.errors)}
    await r.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=5000, help="closed-loop orders")
    ap.add_argument("--rates", default="1000,2000,5000", help="open-loop target orders/s")
    ap.add_argument("--seconds", type=float, default=3.0, help="open-loop seconds per rate")
    ap.add_argument("--quick", action="store_true", help="1000 orders, rates 1000,2000, 1 s")
    ap.add_argument("--no-fsync-too", action="store_true",
                    help="repeat every run with the journal's fsync off")
    ap.add_argument("--out", type=Path, default=Path("build/bench/bench_router.json"))
    args = ap.parse_args()
    if args.quick:
        args.orders, args.rates, args.seconds = 1000, "1000,2000", 1.0
    rates = [float(x) for x in args.rates.split(",") if x]

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_venue_process, args=(queue,), daemon=True)
    proc.start()
    port = queue.get(timeout=60)
    report = {"benchmark": "router", "machine": {
        "platform": platform.platform(), "python": platform.python_version(),
        "cpus": os.cpu_count(), "loadavg_before": os.getloadavg()},
        "settings": {"orders": args.orders, "rates": rates, "seconds": args.seconds,
                     "order": "IOC 100 shares, alternating buy at ask / sell at bid",
                     "venue": "simulator in a child process, no latency, no rejects"},
        "runs": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for fsync in ([True, False] if args.no_fsync_too else [True]):
                j = Path(tmp) / f"journal-{int(fsync)}"
                closed = asyncio.run(_closed_loop(port, j, fsync, args.orders))
                run = {"fsync": fsync, "closed_loop": closed, "open_loop": []}
                for rate in rates:
                    j.unlink(missing_ok=True)
                    run["open_loop"].append(asyncio.run(_open_loop(port, j, fsync, rate,
                                                                   args.seconds)))
                report["runs"].append(run)
                c = closed["latency_us"]["done"]
                print(f"fsync={fsync}: closed loop {closed['orders_per_s']:,.0f} orders/s, "
                      f"round trip p50 {c['p50']:.0f} us p99 {c['p99']:.0f} us")
                for o in run["open_loop"]:
                    a = o["latency_us"]["ack"]
                    print(f"  open loop target {o['target_orders_per_s']:,.0f}/s: achieved "
                          f"{o['orders_per_s']:,.0f}/s, ack p50 {a['p50']:.0f} us "
                          f"p99 {a['p99']:.0f} us")
    finally:
        proc.terminate()
        proc.join(5)
    report["machine"]["loadavg_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"JSON: {args.out}")


if __name__ == "__main__":
    main()
