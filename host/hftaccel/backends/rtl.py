"""RTL backend: the gateware pipeline, cycle-accurate in Verilator, scored against golden.

``hftaccel run --backend rtl`` replays the input through :class:`hftaccel.rtl.top.Top` with the
Verilator C++ harness of :mod:`hftaccel.sim.replay` (Ethernet frames in on feed A, OUCH bytes
out), runs the golden pipeline on the same input, and reports the RTL's outputs, their
event-by-event comparison with golden (mismatches per stream) and the measured latency in
cycles (per stage and tick-to-trade). Input that is not a capture (an ITCH file, LOBSTER files)
is first framed into MoldUDP64 packets with :func:`hftaccel.feeds.moldudp64.write_pcap`.

The book subscribes to the input's first ``book_symbols`` stock locates (the build parameter;
the default replay build holds one symbol, sized for the AMZN day); golden is restricted to the
same locates so the comparison is like for like.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from hftaccel.feeds import source

from . import cpu

__all__ = ["run"]


def _as_capture(path: Path, feed, workdir: Path) -> Path:
    """``path`` itself when it is a pcap/pcapng, else its messages framed into MoldUDP64."""
    if feed.kind == "pcap":
        return path
    from hftaccel.feeds import itch
    from hftaccel.feeds.moldudp64 import write_pcap

    if feed.conversion is not None:                 # LOBSTER: the converter's messages
        messages = feed.conversion.messages
    else:                                           # ITCH file: every message, book ones too
        messages = itch.read_file(path, lenient=True).messages
    out = workdir / (path.stem + ".pcap")
    write_pcap(out, messages)
    return out


def run(path=None, *, lenient: bool = False, model=None, risk_config=None,
        threshold_logit: float = 1.0, kill_switch: bool = False, params: dict | None = None,
        progress=None, **_ignored) -> cpu.RunResult:
    """Replay ``path`` through the RTL pipeline in Verilator and compare it with golden.

    Parameters
    ----------
    path : str or Path, optional
        pcap/pcapng of MoldUDP64, ITCH file or LOBSTER message file (default: the embedded
        AMZN day).
    lenient : bool
        Count and skip malformed input in the golden reader (the gateware always does).
    model : str or Path, optional
        ONNX QCDQ model for the MLP ROM (default ``models/default.onnx``).
    risk_config : hftaccel.spec.risk.RiskConfig, optional
        Loaded into the risk registers (default :func:`cpu.default_risk_config`).
    threshold_logit, kill_switch
        As :func:`hftaccel.backends.cpu.run`, when ``risk_config`` is not given.
    params : dict, optional
        :class:`hftaccel.rtl.top.Top` parameters (default
        :data:`hftaccel.sim.replay.DEFAULT_PARAMS`); each set is built once and cached under
        ``build/sim``. The first build takes minutes.
    progress : callable, optional
        ``progress(stage, done, total)``.

    Returns
    -------
    cpu.RunResult
        ``summary``: the CPU backend's (golden) summary with ``backend`` "rtl" and
        ``book_updates``, ``signals``, ``orders``, ``risk_rejects`` taken from the RTL (its
        counters and decisions), ``subscribed_locates``, and ``rtl`` (``mismatches`` and
        ``counts`` per stream, ``first_mismatches``, ``tick_to_trade_cycles``, ``stages``,
        ``cycles``, ``sim_cycles_per_s``, ``sim_wall_s``, ``registers``, ``params``);
        ``records`` are the RTL's book records; ``extra["scoring"].ouch`` the RTL's OUCH
        bytes, ``extra["replay"]`` the :class:`hftaccel.sim.replay.ReplayResult`.

    Raises
    ------
    RuntimeError
        Verilator is missing or the build / simulation failed.
    hftaccel.feeds.itch.ItchError, ValueError, FileNotFoundError
        As :func:`hftaccel.backends.cpu.run`.
    """
    import dataclasses

    from hftaccel.sim import replay
    from hftaccel.spec.risk import INTENT_BUY, INTENT_SELL, REJECT_REASONS, RiskConfig

    tick = progress or (lambda stage, done, total: None)
    path = Path(path) if path is not None else source.embedded_sample()
    params = dict(replay.DEFAULT_PARAMS if params is None else params)
    if model is not None:
        params["model"] = str(model)
    tick("build", 0, 1)
    h = replay.Harness(params)
    tick("build", 1, 1)
    # the golden run: the CPU backend's full summary (book check, evaluation) as the base
    result = cpu.run(path, lenient=lenient, depth=h.top.book.depth, model=model,
                     risk_config=risk_config, threshold_logit=threshold_logit,
                     kill_switch=kill_switch, progress=progress)
    risk_config = RiskConfig(**result.summary["risk_config"])
    feed = result.feed
    with tempfile.TemporaryDirectory(prefix="hftaccel-rtl-") as tmp:
        capture = _as_capture(path, feed, Path(tmp))
        locs = sorted({int(x) for x in np.unique(feed.events["stock_locate"])})
        locs = locs[:h.top.book_symbols]
        golden = replay.golden_run(capture, h, locates=locs, risk_config=risk_config)
        writes = h.subscribe_writes(locs) + h.risk_writes(risk_config)
        tick("simulate", 0, 1)
        t0 = time.perf_counter()
        res = h.run(replay.frames_of(capture), csr_writes=writes)
        wall = time.perf_counter() - t0
        tick("simulate", 1, 1)
    cmp = replay.compare(res, golden)
    lat = replay.latency_report(res)
    regs = res.registers
    _, dec = res.taps["decision"]
    intent = dec["intent"].astype(np.int64)
    records = golden.records.copy()
    _, hw_rec = res.taps["record"]
    if len(res.taps["record"][0]) == records.shape[0]:
        for name in records.dtype.names:
            if name.startswith("_"):
                continue
            if records[name].ndim == 2:
                for k in range(records[name].shape[1]):
                    records[name][:, k] = hw_rec[f"{name}.{k}"]
            else:
                records[name] = hw_rec[name]
    summary = dict(result.summary)
    summary.update({
        "backend": "rtl",
        "book_updates": int(regs["book_updates"]),
        "subscribed_locates": locs,
        "signals": {"buy": int((intent == INTENT_BUY).sum()),
                    "sell": int((intent == INTENT_SELL).sum()),
                    "total": int((intent != 0).sum())},
        "orders": int(regs["ouch_orders"]),
        "risk_rejects": {r: int(regs[f"risk_rejected_{r}"]) for r in REJECT_REASONS},
        "throughput_msgs_per_s": float(summary["messages"] / wall) if wall else 0.0,
        "rtl": {
            "mismatches": cmp["mismatches"],
            "counts": cmp["counts"],
            "first_mismatches": cmp["first"],
            "tick_to_trade_cycles": lat["tick_to_trade_cycles"],
            "stages": lat["stages"],
            "cycles": int(res.stats["cycles"]),
            "sim_cycles_per_s": res.sim_cycles_per_s,
            "sim_wall_s": float(res.stats["wall_s"]),
            "registers": {k: v for k, v in regs.items() if not k.startswith("risk_")
                          or k.startswith("risk_rejected") or k == "risk_approved"},
            "params": {k: v for k, v in h.params.items()},
        },
    })
    scoring = dataclasses.replace(result.extra["scoring"], ouch=res.ouch_bytes)
    return cpu.RunResult(summary, records, feed, {"scoring": scoring, "replay": res,
                                                  "golden": golden})
