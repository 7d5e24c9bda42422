"""Benchmark: features + scoring throughput of the golden pipeline, with onnxruntime as the peer.

Streams (book records produced by the golden book first, outside the clock):

- ``amzn``: the embedded AMZN 2012-06-21 sample (LOBSTER day converted to ITCH, 86,852 book
  updates);
- ``synthetic``: :func:`hftaccel.feeds.synthetic.generate`, ``--events`` order messages over
  ``--symbols`` stock locates (default 10M over 1000), processed in chunks of ``--chunk`` so
  memory stays bounded.

Stages timed per chunk (wall and process CPU time, Numba compiled before any clock starts):

- ``features``: :class:`hftaccel.golden.features.FeatureEngine` (state carried across chunks);
- ``mlp``: :meth:`hftaccel.golden.mlp.IntegerMLP.run` on those features (the integer engine,
  batched BLAS products);
- ``mlp_reference``: :meth:`hftaccel.golden.mlp.IntegerMLP.run_reference` (the one-sample int64
  program it replaced, kept as its reference), checked equal on every event;
- ``risk``: :func:`hftaccel.golden.risk.run` (decision + pre-trade gate) on the scores;
- peer ``onnxruntime``: the same exported QCDQ model (``--model``) on the same features through
  onnxruntime's CPU execution provider, single thread (``intra_op_num_threads`` =
  ``inter_op_num_threads`` = 1). Its outputs are checked equal to the integer engine's
  (``output * 2**output_exp``) on every event while we are at it.

One core against one core: the script sets ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
``MKL_NUM_THREADS`` to 1 before NumPy loads, so the engine's BLAS runs one thread too.

The MLP alone is also timed at steady state (``mlp_steady``): ``--steady-rows`` AMZN feature rows
scored ``--repeats`` times by the integer engine, the reference program and onnxruntime,
interleaved, best time of each -- the per-chunk figures above include onnxruntime's cost of
a new input shape every chunk, this one does not.

Output: rich tables (events/s per stage, integer engine / onnxruntime ratios) and JSON
(``--out``, default ``build/bench/bench_pipeline.json``).

Usage: ``python scripts/bench_pipeline.py [--events N | --quick] [--symbols S] [--chunk C]``
"""

from __future__ import annotations

import os

# One core against one core: BLAS (the integer engine's batched products) and any OpenMP pool
# get one thread, as onnxruntime does below. Set before NumPy loads its BLAS.
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
for _v in _THREAD_VARS:
    os.environ[_v] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from hftaccel.backends import cpu  # noqa: E402
from hftaccel.feeds import itch, source, synthetic  # noqa: E402
from hftaccel.golden import features as gfeatures  # noqa: E402
from hftaccel.golden import mlp, risk  # noqa: E402
from hftaccel.golden.book import Book  # noqa: E402
from hftaccel.spec.risk import RiskConfig  # noqa: E402


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
    tm, n, mismatches, ref_mismatches = {}, 0, 0, 0
    scale = np.ldexp(1.0, engine.output_exp)
    for rec in chunks:
        c = _clock()
        feats = fe.update(rec)
        _add(tm, "features", c)
        c = _clock()
        logits = engine.run(feats)
        _add(tm, "mlp", c)
        c = _clock()
        ref = engine.run_reference(feats)
        _add(tm, "mlp_reference", c)
        ref_mismatches += int(np.count_nonzero(ref != logits))
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
    tm["mlp_reference_mismatches"] = ref_mismatches
    for key in ("features", "mlp", "mlp_reference", "risk", "onnxruntime"):
        tm[f"{key}_events_per_s"] = n / tm[f"{key}_s"] if tm.get(f"{key}_s") else 0.0
        tm[f"{key}_events_per_cpu_s"] = n / tm[f"{key}_cpu_s"] if tm.get(f"{key}_cpu_s") else 0.0
    fs = tm["features_s"] + tm["mlp_s"]
    tm["features_plus_scoring_events_per_s"] = n / fs if fs else 0.0
    tm["mlp_vs_onnxruntime"] = tm["mlp_events_per_s"] / tm["onnxruntime_events_per_s"] \
        if tm["onnxruntime_events_per_s"] else 0.0
    tm["mlp_reference_vs_onnxruntime"] = tm["mlp_reference_events_per_s"] \
        / tm["onnxruntime_events_per_s"] if tm["onnxruntime_events_per_s"] else 0.0
    return tm


def bench_mlp_steady(engine, model_path: Path, feats: np.ndarray, repeats: int) -> dict:
    """The MLP alone at steady state: the same feature block scored ``repeats`` times by each
    engine, interleaved, best time kept (onnxruntime's best case: warm arena, one input shape)."""
    sess, in_name = _ort_session(model_path)
    x = feats.astype(np.float32)
    runs = {"mlp": lambda: engine.run(feats), "mlp_reference": lambda: engine.run_reference(feats),
            "onnxruntime": lambda: sess.run(None, {in_name: x})}
    best = {}
    for f in runs.values():
        f()
    for _ in range(repeats):
        for key, f in runs.items():
            c = time.perf_counter()
            f()
            best[key] = min(best.get(key, np.inf), time.perf_counter() - c)
    n = feats.shape[0]
    out = {"rows": n, "repeats": repeats, **{f"{k}_rows_per_s": n / v for k, v in best.items()}}
    out["mlp_vs_onnxruntime"] = out["mlp_rows_per_s"] / out["onnxruntime_rows_per_s"]
    out["mlp_reference_vs_onnxruntime"] = (out["mlp_reference_rows_per_s"]
                                           / out["onnxruntime_rows_per_s"])
    return out


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
    ap.add_argument("--steady-rows", type=int, default=1_000_000,
                    help="rows of the steady-state MLP comparison (AMZN features, repeated)")
    ap.add_argument("--repeats", type=int, default=7, help="repeats of the steady-state runs")
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
              "threads": {**{v: os.environ[v] for v in _THREAD_VARS},
                          "onnxruntime_intra_op": 1, "onnxruntime_inter_op": 1},
              "engine": {"dtype": str(engine.plan().dtype),
                         "worst_accumulator": engine.plan().worst, "chunk_rows": mlp.CHUNK_ROWS},
              "streams": {}}
    report["streams"]["amzn"] = bench_records(amzn_records(), engine, args.model, config)
    report["streams"]["synthetic"] = bench_records(
        synthetic_records(n, args.symbols, args.chunk, args.seed), engine, args.model, config)
    amzn = gfeatures.FeatureEngine().update(next(amzn_records()))
    block = np.ascontiguousarray(np.tile(amzn, (-(-args.steady_rows // amzn.shape[0]), 1))
                                 [:args.steady_rows])
    report["mlp_steady"] = bench_mlp_steady(engine, args.model, block, args.repeats)

    from rich.console import Console
    from rich.table import Table

    t = Table(title="golden features + scoring, single thread (events/s, wall)")
    for col in ("stream", "events", "features", "int MLP", "risk", "features+MLP",
                "onnxruntime", "int MLP / ORT", "ORT mismatches", "reference MLP",
                "reference / ORT", "reference mismatches"):
        t.add_column(col, justify="right")
    for name, r in report["streams"].items():
        t.add_row(name, f"{r['events']:,}", f"{r['features_events_per_s']:,.0f}",
                  f"{r['mlp_events_per_s']:,.0f}", f"{r['risk_events_per_s']:,.0f}",
                  f"{r['features_plus_scoring_events_per_s']:,.0f}",
                  f"{r['onnxruntime_events_per_s']:,.0f}", f"{r['mlp_vs_onnxruntime']:.2f}x",
                  f"{r['onnxruntime_mismatches']:,}", f"{r['mlp_reference_events_per_s']:,.0f}",
                  f"{r['mlp_reference_vs_onnxruntime']:.2f}x",
                  f"{r['mlp_reference_mismatches']:,}")
    con = Console(width=max(160, Console().width))
    con.print(t)
    st = report["mlp_steady"]
    t2 = Table(title=f"MLP alone, steady state: {st['rows']:,} AMZN feature rows, best of "
                     f"{st['repeats']} (rows/s, wall, single thread)")
    for col in ("int MLP", "reference MLP", "onnxruntime", "int MLP / ORT", "reference / ORT"):
        t2.add_column(col, justify="right")
    t2.add_row(f"{st['mlp_rows_per_s']:,.0f}", f"{st['mlp_reference_rows_per_s']:,.0f}",
               f"{st['onnxruntime_rows_per_s']:,.0f}", f"{st['mlp_vs_onnxruntime']:.2f}x",
               f"{st['mlp_reference_vs_onnxruntime']:.2f}x")
    con.print(t2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
