"""Latency measurements of the three backends on one input.

``cpu``
    The golden pipeline event by event: for each order event (batches of ``batch`` events,
    default 1) the book, features, MLP, decision + risk gate and OUCH encoding stages are timed
    with :func:`time.perf_counter_ns` around each library call, so each number includes the
    Python dispatch into the Numba kernels (what a host process running the golden model one
    event at a time pays). Decoding is done once for the whole capture, as the feeds do, and is
    reported as throughput only. The batch replay (:func:`hftaccel.backends.cpu.run`) gives the
    throughput of the whole pipeline; the event-by-event decisions are checked equal to it.
``gpu``
    Per-batch latency of features + int8 MLP on the device
    (:class:`hftaccel.backends.gpu.GpuPipeline`: host preparation, copies both ways and kernels)
    for several batch sizes, and throughput. Without CuPy or a CUDA device it is not measured
    and says why. The CPU emulation of the kernels is a bit-exactness check, never a timing.
``rtl``
    Cycle-accurate Verilator replay (:func:`hftaccel.sim.replay.replay_file`): per-stage and
    tick-to-trade cycles of every event, compared with the golden model on the way; its
    ``latency.json`` is written beside the report.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

__all__ = ["QUANTILES", "distribution", "timer_overhead_ns", "cpu_profile", "gpu_profile",
           "rtl_profile", "capture_frames", "GPU_BATCHES"]

#: Quantiles every distribution reports, (key, percent).
QUANTILES = (("median", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99_9", 99.9))
#: Batch sizes (book records) of the GPU per-batch latency.
GPU_BATCHES = (1, 64, 1024, 16384)
CPU_STAGES = ("book", "features", "mlp", "risk", "ouch")


def distribution(values) -> dict:
    """``n``, ``min``, ``median``, ``p90``, ``p99``, ``p99_9``, ``max``, ``mean``, ``std`` of
    ``values`` (NumPy's default linear percentiles, as ``latency.json``); ``{"n": 0}`` when
    empty."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return {"n": 0}
    out = {"n": int(v.size), "min": _num(v.min())}
    for key, q in QUANTILES:
        out[key] = float(np.percentile(v, q))
    out.update({"max": _num(v.max()), "mean": float(v.mean()), "std": float(v.std())})
    return out


def _num(x):
    x = float(x)
    return int(x) if x.is_integer() else x


def timer_overhead_ns(n: int = 10_000) -> int:
    """Median cost of one back-to-back ``perf_counter_ns`` pair, ns (the timer's floor)."""
    pc = time.perf_counter_ns
    d = np.empty(n, np.int64)
    for i in range(n):
        a = pc()
        d[i] = pc() - a
    return int(np.median(d))


# --------------------------------------------------------------------------------------- CPU
def cpu_profile(path, *, model=None, risk_config=None, threshold_logit: float = 1.0,
                max_events: int | None = 100_000, batch: int = 1) -> dict:
    """Event-by-event latency of the golden pipeline, and the batch replay's throughput.

    Parameters
    ----------
    path : Path
        Any input :func:`hftaccel.feeds.source.open_feed` reads.
    model : Path, optional
        ONNX model (default ``models/default.onnx``).
    risk_config : hftaccel.spec.risk.RiskConfig, optional
        Default: :func:`hftaccel.backends.cpu.default_risk_config` at ``threshold_logit``.
    max_events : int, optional
        Order events timed one by one (the first ones of the input); None: all.
    batch : int
        Events per timed step (1: per-event latency).

    Returns
    -------
    dict
        ``per_event_ns`` (stage -> distribution, plus ``event_to_decision`` over every step
        and ``event_to_order`` over the steps that sent an order), ``samples_ns`` (raw lists,
        for plots; left out of the JSON), ``throughput`` (batch replay: messages/s, stage
        seconds), ``agrees_with_batch``, ``summary`` (the batch replay's), ``timer_overhead_ns``.
    """
    from hftaccel.backends import cpu
    from hftaccel.golden import features as gfeatures
    from hftaccel.golden import mlp, ouch, risk
    from hftaccel.golden.book import Book

    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    model_path = Path(model) if model is not None else cpu.default_model()
    engine = mlp.load(model_path)
    cfg = risk_config or cpu.default_risk_config(engine, threshold_logit)

    # the batch replay (warms every compiled stage, gives throughput and the reference)
    res = cpu.run(path, model=model_path, risk_config=cfg, lenient=True)
    feed = res.feed
    events = feed.events
    n = events.shape[0] if max_events is None else min(events.shape[0], int(max_events))
    symbols = cpu.symbol_table(feed.messages)

    def loop(count):
        """Time ``count`` events through fresh pipeline state, ``batch`` at a time."""
        pc = time.perf_counter_ns
        steps = -(-count // batch)
        t = np.zeros((steps, len(CPU_STAGES)), np.int64)
        ran = np.zeros(steps, bool)
        sent = np.zeros(steps, bool)
        book, fe, state = Book(), gfeatures.FeatureEngine(), risk.RiskState(cfg)
        decisions = []
        for k in range(steps):
            ev = events[k * batch:min((k + 1) * batch, count)]
            c0 = pc()
            rec = book.apply(ev)
            c1 = pc()
            t[k, 0] = c1 - c0
            if rec.shape[0]:
                f = fe.update(rec)
                c2 = pc()
                lg = engine.run(f)
                c3 = pc()
                dec, state = risk.run(cpu.scored_updates(rec, lg), cfg, state)
                c4 = pc()
                orders = ouch.orders_from_decisions(dec, symbols)
                if orders.shape[0]:
                    ouch.frame_enter_orders(orders)
                    sent[k] = True
                c5 = pc()
                t[k, 1:] = (c2 - c1, c3 - c2, c4 - c3, c5 - c4)
                ran[k] = True
                decisions.append(dec)
        return t, ran, sent, decisions

    loop(min(n, 512))            # warm the one-event call paths on throw-away state
    t, ran, sent, decisions = loop(n)
    steps = t.shape[0]
    total = t.sum(axis=1)
    samples = {name: t[ran, j] if j else t[:, 0] for j, name in enumerate(CPU_STAGES)}
    samples["event_to_decision"] = total
    samples["event_to_order"] = total[sent]

    ref = res.extra["scoring"].decisions
    got = np.concatenate(decisions) if decisions else ref[:0]
    agrees = bool(got.shape[0] <= ref.shape[0] and np.array_equal(got, ref[:got.shape[0]]))
    s = res.summary
    return {
        "measured": True,
        "method": (f"time.perf_counter_ns around each stage call, {batch} event(s) per step, "
                   f"first {n:,} of {events.shape[0]:,} order events; decode is whole-capture "
                   "(throughput only); includes Python dispatch into the Numba kernels"),
        "batch": batch,
        "events_timed": int(n),
        "steps": int(steps),
        "orders": int(sent.sum()),
        "per_event_ns": {k: distribution(v) for k, v in samples.items()},
        "samples_ns": {k: np.asarray(v) for k, v in samples.items()},
        "timer_overhead_ns": timer_overhead_ns(),
        "agrees_with_batch": agrees,
        "throughput": {
            "messages": s["messages"],
            "book_updates": s["book_updates"],
            "messages_per_s": s["throughput_msgs_per_s"],
            "stage_seconds": s["stage_seconds"],
            "per_event_loop_events_per_s": float(n / (total.sum() * 1e-9)) if total.sum() else 0.0,
        },
        "summary": {k: s[k] for k in ("input", "kind", "messages", "book_updates", "signals",
                                      "orders", "risk_rejects", "model", "risk_config")},
        "records": res.records,
        "scoring": res.extra["scoring"],
    }


# --------------------------------------------------------------------------------------- GPU
def gpu_profile(records: np.ndarray, engine, reference=None, *, device: str = "cuda",
                batches=GPU_BATCHES, max_batches: int = 2000) -> dict:
    """Per-batch latency and throughput of features + MLP on a GPU.

    Parameters
    ----------
    records : np.ndarray of book records
    engine : hftaccel.golden.mlp.IntegerMLP
    reference : (features, logits), optional
        The golden outputs for ``records``; mismatches are counted.
    device : str
        ``"cuda"``; ``"emulated"`` runs the kernels' CPU emulation (bit-exactness only: the
        result says ``measured: False``).
    batches : sequence of int
        Records per batch.
    max_batches : int
        Batches timed per size (the first ones of the stream).

    Returns
    -------
    dict
        ``measured``, ``reason`` (when not measured), ``device``, ``per_batch_ns``
        (size -> distribution), ``throughput_records_per_s`` (size -> rate), ``mismatches``.
    """
    from hftaccel.backends import gpu

    try:
        dev = gpu.open_device(device)
        gpu.mlp_program(engine)
    except gpu.GpuUnavailableError as exc:
        return {"measured": False, "device": device,
                "reason": f"not measured: no usable CUDA device ({exc})"}
    emulated = device != "cuda"
    n = records.shape[0]
    out = {"measured": not emulated, "device": dev.describe(), "per_batch_ns": {},
           "throughput_records_per_s": {}, "samples_ns": {}, "mismatches": 0,
           "method": ("time.perf_counter_ns around GpuPipeline.run (host preparation, pinned "
                      "copies both ways, feature and MLP kernels, synchronisation) per batch")}
    if emulated:
        out["reason"] = ("kernels run through the CPU emulation (bit-exactness check): these "
                         "timings are not GPU measurements")
    if n == 0:
        return out
    gpu.GpuPipeline(dev, chunk_records=min(n, 4096)).run(records[:min(n, 4096)], engine)  # warm
    pc = time.perf_counter_ns
    for size in batches:
        size = int(min(size, n))
        pipe = gpu.GpuPipeline(dev, chunk_records=max(size, 1))
        lat = []
        feats, logits = [], []
        for start in range(0, min(n, size * max_batches), size):
            chunk = records[start:start + size]
            a = pc()
            f, lg = pipe.run(chunk, engine)
            lat.append(pc() - a)
            feats.append(f)
            logits.append(lg)
        done = sum(len(f) for f in feats)
        if reference is not None:
            rf, rl = reference
            out["mismatches"] += int(np.count_nonzero(np.concatenate(feats) != rf[:done]))
            out["mismatches"] += int(np.count_nonzero(np.concatenate(logits) != rl[:done]))
        out["per_batch_ns"][str(size)] = distribution(lat)
        out["samples_ns"][str(size)] = np.asarray(lat, np.int64)
        out["throughput_records_per_s"][str(size)] = float(done / (sum(lat) * 1e-9)) if lat else 0.0
    return out


# --------------------------------------------------------------------------------------- RTL
def capture_frames(path) -> list:
    """Ethernet frames of a pcap/pcapng capture (bytes, without FCS)."""
    from hftaccel.feeds.moldudp64 import read_frames

    fr = read_frames(path)
    return [fr.frame(i) for i in range(len(fr))]


def _as_pcap(path: Path, work: Path) -> Path:
    """``path`` itself when it is a capture, else its messages re-framed into MoldUDP64."""
    from hftaccel.feeds import itch, moldudp64, source

    kind = source.detect(path)
    if kind == "pcap":
        return path
    if kind == "itch":
        messages = itch.read_file(path, lenient=True).messages
    else:
        messages = source.open_feed(path, lenient=True).conversion.messages
    out = work / f"{path.stem}.moldudp64.pcap"
    work.mkdir(parents=True, exist_ok=True)
    moldudp64.write_pcap(out, messages)
    return out


def rtl_profile(path, *, out_dir: Path, params: dict | None = None, risk_config=None,
                latency_json: Path | None = None, progress=None) -> dict:
    """Cycle distributions of the gateware from a Verilator replay of ``path``.

    Parameters
    ----------
    path : Path
        Input; a capture is replayed as it is, an ITCH or LOBSTER file is first re-framed into
        MoldUDP64 packets (``out_dir/<name>.moldudp64.pcap``).
    out_dir : Path
        Where the replay's ``latency.json`` is written.
    params : dict, optional
        :class:`hftaccel.rtl.top.Top` parameters (default the replay build's).
    risk_config : hftaccel.spec.risk.RiskConfig, optional
        Loaded into the risk registers (the same as the CPU backend's).
    latency_json : Path, optional
        Use this existing ``latency.json`` instead of simulating (summary statistics only: no
        histograms, no p90 / p99.9).

    Returns
    -------
    dict
        ``measured``, ``reason`` (when not), ``tick_to_trade_cycles`` and ``stages``
        (distributions), ``samples`` (raw cycles, left out of the JSON), ``latency_json``,
        ``mismatches``, ``frame_bytes`` (inbound frame size distribution), and the replay's
        ``events``, ``cycles``, ``sim_cycles_per_s``, ``params``.
    """
    if latency_json is not None:
        rep = json.loads(Path(latency_json).read_text())
        return {"measured": True, "source": "given latency.json (no raw samples)",
                "latency_json": str(latency_json),
                "tick_to_trade_cycles": rep["tick_to_trade_cycles"], "stages": rep["stages"],
                "samples": None, **{k: rep.get(k) for k in (
                    "input", "events", "mismatches", "counts", "cycles", "sim_cycles_per_s",
                    "params", "hw_latency_cycles")},
                "frame_bytes": _frame_sizes(rep.get("input"))}
    if shutil.which("verilator") is None:
        return {"measured": False,
                "reason": "not measured: verilator not on PATH (Debian: apt-get install verilator)"}
    try:
        from hftaccel.sim import replay
    except ImportError as exc:
        return {"measured": False, "reason": f"not measured: gateware not importable ({exc})"}
    out_dir = Path(out_dir)
    pcap = _as_pcap(Path(path), out_dir)
    try:
        rep = replay.replay_file(pcap, params=params, out=out_dir / "latency.json",
                                 risk_config=risk_config, samples=True, progress=progress)
    except RuntimeError as exc:                 # Verilator build or simulator failure
        return {"measured": False, "reason": f"not measured: {exc}"}
    smp = rep["samples"]
    result = {
        "measured": True,
        "source": "Verilator replay (cycle-accurate)",
        "latency_json": rep["path"],
        "replayed": str(pcap),
        "tick_to_trade_cycles": distribution(smp["tick_to_trade"]),
        "stages": {k: distribution(v) for k, v in smp["stages"].items()},
        "samples": {"tick_to_trade": np.asarray(smp["tick_to_trade"], np.int64),
                    **{k: np.asarray(v, np.int64) for k, v in smp["stages"].items()}},
        "frame_bytes": _frame_sizes(pcap),
        **{k: rep[k] for k in ("events", "book_updates", "mismatches", "counts", "cycles",
                               "sim_cycles_per_s", "hw_latency_cycles", "params")},
    }
    return result


def _frame_sizes(pcap) -> dict:
    try:
        sizes = [len(f) for f in capture_frames(pcap)] if pcap else []
    except (OSError, ValueError):
        sizes = []
    return distribution(sizes)
