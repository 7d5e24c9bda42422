"""Benchmark: features + scoring throughput of the golden pipeline, with onnxruntime as the peer.

Streams (book records produced by the golden book first, outside the clock):

- ``amzn``: the embedded AMZN 2012-06-21 sample (LOBSTER day converted to ITCH, 86,852 book
  updates);
- ``synthetic``: :func:`hftaccel.feeds.synthetic.generate`, ``--events`` order messages over
  ``--symbols`` stock locates (default 10M over 1000), processed in chunks of ``--chunk`` so
  memory stays bounded.

Stages timed per chunk (wall and process CPU time, Numba compiled before any clock starts):

- ``features``: :class:`hftaccel.golden.features.FeatureEngine` (state carried across chunks);
- ``mlp``: :meth:`hftaccel.golden.mlp.IntegerMLP.run` on those features (the integer engine);
- ``risk``: :func:`hftaccel.golden.risk.run` (decision + pre-trade gate) on the scores;
- peer ``onnxruntime``: the same exported QCDQ model (``--model``) on the same features through
  onnxruntime's CPU execution provider, single thread. Its outputs are checked equal to the
  integer engine's (``output * 2**output_exp``) on every event while we are at it.

Output: a rich table (events/s per stage, integer engine / onnxruntime ratio) and JSON
(``--out``, default ``build/bench/bench_pipeline.json``).

Usage: ``python scripts/bench_pipeline.py [--events N | --quick] [--symbols S] [--chunk C]``
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

from hftaccel.backends import cpu
from hftaccel.feeds import itch, source, synthetic
from hftaccel.golden import features as gfeatures
from hftaccel.golden import mlp, risk
from hftaccel.golden.book import Book
from hftaccel.spec.risk import RiskConfig


def _clock():
    return time.perf_counter(), time.process_time()


def _add(tm: dict, key: str, start) -> None:
    wall, cpu_t = _clock()
    tm[f"{key}_s"] = tm.get(f"{key}_s", 0.0) + wall - start[0]
    tm[f"{key}_cpu_s"] = tm.get(f"{key}_cpu_s", 0.0) + cpu_t - start[1]


def _ort_session(model_path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    return sess, sess.get_inputs()[0].name


def bench_records(chunks, engine, model_path: Path, config: RiskConfig) -> dict:
    """Time features, integer MLP, risk and onnxruntime over an iterator of record chunks."""
    sess, in_name = _ort_session(model_path)
    fe = gfeatures.FeatureEngine()
    state = None
    tm, n, mismatches = {}, 0, 0
    scale = np.ldexp(1.0, engine.output_exp)
    for rec in chunks:
        c = _clock()
        feats = fe.update(rec)
        _add(tm, "features", c)
        c = _clock()
        logits = engine.run(feats)
        _add(tm, "mlp", c)
        upd = cpu.scored_updates(rec, logits)
        c = _clock()
        _, state = risk.run(upd, config, state)
        _add(tm, "risk", c)
        x = feats.astype(np.float32)
        c = _clock()
        ort_out = sess.run(None, {in_name: x})[0]
        _add(tm, "onnxruntime", c)
        mismatches += int(np.count_nonzero(ort_out != (logits * scale).astype(np.float32)))
        n += rec.shape[0]
    tm["events"] = n
    tm["onnxruntime_mismatches"] = mismatches
    for key in ("features", "mlp", "risk", "onnxruntime"):
        tm[f"{key}_events_per_s"] = n / tm[f"{key}_s"] if tm.get(f"{key}_s") else 0.0
        tm[f"{key}_events_per_cpu_s"] = n / tm[f"{key}_cpu_s"] if tm.get(f"{key}_cpu_s") else 0.0
    fs = tm["features_s"] + tm["mlp_s"]
    tm["features_plus_scoring_events_per_s"] = n / fs if fs else 0.0
    tm["mlp_vs_onnxruntime"] = tm["mlp_events_per_s"] / tm["onnxruntime_events_per_s"] \
        if tm["onnxruntime_events_per_s"] else 0.0
    return tm


def amzn_records():
    feed = source.open_feed(source.embedded_sample())
    yield Book().apply(feed.events)


def synthetic_records(n: int, symbols: int, chunk: int, seed: int):
    book = Book()
    for msgs in synthetic.generate(n, n_symbols=symbols, seed=seed, chunk_size=chunk):
        yield book.apply(itch.order_events(msgs))


def warm_up(engine, model_path, config) -> None:
    bench_records(amzn_records(), engine, model_path, config)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--quick", action="store_true", help="1M synthetic events")
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--chunk", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", type=Path, default=cpu.default_model())
    ap.add_argument("--out", type=Path, default=Path("build/bench/bench_pipeline.json"))
    args = ap.parse_args(argv)
    n = 1_000_000 if args.quick else args.events

    engine = mlp.load(args.model)
    thr = int(2.0 ** -int(engine.output_exp.max()))
    config = RiskConfig(buy_threshold=thr, sell_threshold=thr,
                        max_gross_notional=cpu.DEFAULT_SESSION_NOTIONAL)
    warm_up(engine, args.model, config)

    report = {"model": str(args.model), "machine": {"platform": platform.platform(),
                                                    "cpus": os.cpu_count(),
                                                    "python": sys.version.split()[0]},
              "streams": {}}
    report["streams"]["amzn"] = bench_records(amzn_records(), engine, args.model, config)
    report["streams"]["synthetic"] = bench_records(
        synthetic_records(n, args.symbols, args.chunk, args.seed), engine, args.model, config)

    from rich.console import Console
    from rich.table import Table

    t = Table(title="golden features + scoring, single thread (events/s, wall)")
    for col in ("stream", "events", "features", "int MLP", "risk", "features+MLP",
                "onnxruntime", "int MLP / ORT", "ORT mismatches"):
        t.add_column(col, justify="right")
    for name, r in report["streams"].items():
        t.add_row(name, f"{r['events']:,}", f"{r['features_events_per_s']:,.0f}",
                  f"{r['mlp_events_per_s']:,.0f}", f"{r['risk_events_per_s']:,.0f}",
                  f"{r['features_plus_scoring_events_per_s']:,.0f}",
                  f"{r['onnxruntime_events_per_s']:,.0f}", f"{r['mlp_vs_onnxruntime']:.2f}x",
                  f"{r['onnxruntime_mismatches']:,}")
    Console(width=max(160, Console().width)).print(t)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
