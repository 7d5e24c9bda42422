"""Benchmark: features and int8 MLP scoring, CPU backend (golden model) vs GPU backend, one run.

Streams (book records produced by the golden book outside the clock):

- ``amzn``: the embedded AMZN 2012-06-21 sample (86,852 book updates, one symbol);
- ``synthetic``: :func:`hftaccel.feeds.synthetic.generate`, ``--events`` order messages over
  ``--symbols`` stock locates in chunks of ``--chunk`` (the same chunks for both sides).

Timed per side (wall clock, compile / kernel build and a warm-up pass before any clock starts):

- ``cpu``: :class:`hftaccel.golden.features.FeatureEngine` (``features``), then
  :meth:`hftaccel.golden.mlp.IntegerMLP.run` (``scoring``);
- ``gpu``: :class:`hftaccel.backends.gpu.GpuPipeline` on the CUDA device through CuPy,
  features only (``features``) and the fused features -> scores path (``features_scores``;
  ``scoring`` = the difference). Times include the host's per-chunk preparation and the
  host <-> device copies: what the backend delivers, not kernel time alone. Every GPU output is
  compared with the CPU's (``mismatches``).

Without CuPy or a CUDA device the GPU side is not measured and the JSON says why
(``gpu.measured: false``). ``--emulated`` additionally runs the kernels through the CPU
emulation (g++, ``hft_emu.cuh``) as a bit-exactness check; its speed means nothing.

Output: a short table and JSON (``--out``, default ``build/bench/bench_gpu.json``).

Usage: ``python scripts/bench_gpu.py [--events N | --quick] [--symbols S] [--chunk C]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from hftaccel.backends import cpu, gpu
from hftaccel.feeds import itch, source, synthetic
from hftaccel.golden import features as gfeatures
from hftaccel.golden import mlp
from hftaccel.golden.book import Book


def amzn_chunks(chunk: int):
    rec = Book().apply(source.open_feed(source.embedded_sample()).events)
    for start in range(0, rec.shape[0], chunk):
        yield rec[start:start + chunk]


def synthetic_chunks(n: int, symbols: int, chunk: int, seed: int):
    book = Book()
    for msgs in synthetic.generate(n, n_symbols=symbols, seed=seed, chunk_size=chunk):
        yield book.apply(itch.order_events(msgs))


def bench_cpu(chunks, engine) -> tuple[dict, list]:
    fe = gfeatures.FeatureEngine()
    tf = ts = 0.0
    n = 0
    outs = []
    for rec in chunks:
        t = time.perf_counter()
        feats = fe.update(rec)
        t1 = time.perf_counter()
        logits = engine.run(feats)
        t2 = time.perf_counter()
        tf += t1 - t
        ts += t2 - t1
        n += rec.shape[0]
        outs.append((feats, logits))
    return _rates(n, tf, ts), outs


def bench_device(chunks, engine, device, chunk: int, reference: list) -> dict:
    feat_pipe = gpu.GpuPipeline(device, chunk_records=chunk)
    fused_pipe = gpu.GpuPipeline(device, chunk_records=chunk)
    tf = tfs = 0.0
    n = mismatches = 0
    for k, rec in enumerate(chunks):
        t = time.perf_counter()
        feat_pipe.run(rec)
        t1 = time.perf_counter()
        feats, logits = fused_pipe.run(rec, engine)
        t2 = time.perf_counter()
        tf += t1 - t
        tfs += t2 - t1
        n += rec.shape[0]
        want_f, want_l = reference[k]
        mismatches += int(np.count_nonzero(feats != want_f))
        mismatches += int(np.count_nonzero(logits != want_l))
    out = _rates(n, tf, max(tfs - tf, 0.0))
    out["features_scores_s"] = tfs
    out["features_scores_events_per_s"] = n / tfs if tfs else 0.0
    out["mismatches"] = mismatches
    return out


def _rates(n: int, tf: float, ts: float) -> dict:
    return {"events": n, "features_s": tf, "scoring_s": ts,
            "features_events_per_s": n / tf if tf else 0.0,
            "scoring_events_per_s": n / ts if ts else 0.0,
            "features_plus_scoring_events_per_s": n / (tf + ts) if tf + ts else 0.0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--quick", action="store_true", help="200k synthetic events")
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--chunk", type=int, default=500_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--emulated", action="store_true",
                    help="also run the kernels through the CPU emulation (bit-exactness only)")
    ap.add_argument("--out", type=Path, default=Path("build/bench/bench_gpu.json"))
    args = ap.parse_args(argv)
    n_events = 200_000 if args.quick else args.events
    model_path = args.model or cpu.default_model()
    engine = mlp.load(model_path)

    streams = {
        "amzn": lambda: amzn_chunks(args.chunk),
        "synthetic": lambda: synthetic_chunks(n_events, args.symbols, args.chunk, args.seed),
    }
    try:
        device = gpu.open_device("cuda")
        gpu_info = {"measured": True, **device.describe()}
    except gpu.GpuUnavailableError as exc:
        device = None
        gpu_info = {"measured": False,
                    "reason": f"GPU side not measured on this machine: {exc}"}
        print(gpu_info["reason"], file=sys.stderr)

    # warm-up: Numba compile, kernel build, first launches
    warm = next(amzn_chunks(5_000))
    gfeatures.FeatureEngine().update(warm)
    engine.run(gfeatures.compute_features(warm))
    if device is not None:
        gpu.GpuPipeline(device).run(warm, engine)

    result = {
        "benchmark": "bench_gpu",
        "host": {"machine": platform.machine(), "processor": platform.processor(),
                 "python": platform.python_version(), "cpus": os.cpu_count()},
        "model": str(model_path),
        "chunk": args.chunk,
        "gpu": gpu_info,
        "streams": {},
    }
    for name, chunks in streams.items():
        cpu_res, ref = bench_cpu(chunks(), engine)
        entry = {"cpu": cpu_res}
        if device is not None:
            entry["gpu"] = bench_device(chunks(), engine, device, args.chunk, ref)
            entry["gpu_vs_cpu_features_plus_scoring"] = (
                entry["gpu"]["features_scores_events_per_s"]
                / cpu_res["features_plus_scoring_events_per_s"])
        else:
            entry["gpu"] = None
        if args.emulated:
            emu = bench_device(chunks(), engine, gpu.open_device("emulated"), args.chunk, ref)
            entry["emulated"] = {"events": emu["events"], "mismatches": emu["mismatches"],
                                 "note": "CPU emulation of the kernels: a bit-exactness check, "
                                         "not a performance number"}
        result["streams"][name] = entry

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, entry in result["streams"].items():
        c = entry["cpu"]
        line = (f"{name:10s} {c['events']:>10,} events  cpu: features "
                f"{c['features_events_per_s']:>12,.0f}/s  scoring "
                f"{c['scoring_events_per_s']:>12,.0f}/s")
        g = entry["gpu"]
        line += (f"  gpu: features {g['features_events_per_s']:>12,.0f}/s  fused "
                 f"{g['features_scores_events_per_s']:>12,.0f}/s  mismatches {g['mismatches']}"
                 if g else "  gpu: not measured")
        if "emulated" in entry:
            line += f"  emulated mismatches {entry['emulated']['mismatches']}"
        print(line)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
