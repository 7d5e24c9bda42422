"""Out-of-context stage builds: one pipeline stage alone through Yosys and nextpnr-ecp5.

``hftaccel build --stage NAME`` elaborates one stage of :mod:`hftaccel.rtl` in a named
configuration (:data:`STAGES`), wraps it so that every port is registered once (nextpnr does not
time paths to or from top-level ports in ``--out-of-context`` mode, so without the wrapper an
input-to-output path would not be seen at all), synthesizes it with Yosys ``synth_ecp5`` and
places and routes it with ``nextpnr-ecp5 --out-of-context --freq F`` (no LPF, no pins, no IO
buffers). It writes ``build/stages/<stage>[-<config>]/report.json`` with:

* LUT4-equiv as nextpnr counts it (LUT4 + 2 x CCU2C + 6 x TRELLIS_DPR16X4, from Yosys' ``stat``),
  FF, EBR (DP16KD), DSP (MULT18X18D), and nextpnr's own utilization;
* fmax of the clock against the requested frequency, the critical path (from -> to cell, logic
  levels, logic / routing ns);
* latency and II in cycles from the stage's own ``latency`` / ``ii`` attributes;
* parameters, device, package, speed grade, seed and tool versions.

``--stage all`` builds every stage, two at a time (YoWASP's nextpnr is single-threaded), and
writes ``build/stages/stages.json`` and ``stages.md``.

nextpnr is deterministic for a given seed, tool version and netlist, so the fmax of a fixed
configuration is a regression gate (``tests/boards/test_boards_stage.py``).
"""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .build import (REPO, BuildError, _tool, lut4_equiv, parse_nextpnr_report,
                    parse_yosys_stats, tool_versions)

__all__ = ["STAGES", "StageSpec", "DEVICE_FLAGS", "lut4_equiv", "registered_wrapper",
           "build_stage", "build_stages", "stage_table", "default_out"]

#: nextpnr-ecp5 device flags and the package used for out-of-context builds.
DEVICE_FLAGS = {
    "LFE5UM5G-85F": ("--um5g-85k", "CABGA381"),
    "LFE5UM5G-45F": ("--um5g-45k", "CABGA381"),
    "LFE5UM5G-25F": ("--um5g-25k", "CABGA381"),
    "LFE5UM-85F": ("--um-85k", "CABGA381"),
    "LFE5UM-45F": ("--um-45k", "CABGA381"),
    "LFE5U-85F": ("--85k", "CABGA381"),
    "LFE5U-45F": ("--45k", "CABGA381"),
    "LFE5U-25F": ("--25k", "CABGA256"),
}


def _top_registers():
    """The top's register list (its counters are read from the stages' signatures, so a Top
    is built; its stages are not elaborated here, which Amaranth is told)."""
    from amaranth.hdl import Elaboratable
    from hftaccel.rtl.top import Top
    top = Top(levels=8, order_slots=64, max_probe=2)
    regs = top._registers()
    for obj in [top, *vars(top).values(), *vars(top.mlp).get("_layers", []),
                vars(top.mlp).get("_quant")]:
        if isinstance(obj, Elaboratable):
            obj._MustUse__silence = True
    return regs


def _component(path: str):
    """A constructor ``module:Class`` under hftaccel.rtl, imported when the stage is built."""
    def make(**p):
        import importlib
        mod, cls = path.split(":")
        return getattr(importlib.import_module(f"hftaccel.rtl.{mod}"), cls)(**p)
    make.__qualname__ = path
    return make


def _make_mlp(**p):
    from hftaccel.rtl.mlp import MLP
    from hftaccel.rtl.top import SCORE_META_LAYOUT
    return MLP(meta_layout=SCORE_META_LAYOUT, **p)


def _make_csr(**p):
    from hftaccel.rtl.csr import CsrBank
    return CsrBank(registers=_top_registers(), **p)


@dataclass(frozen=True)
class StageSpec:
    """One buildable stage: a constructor and its named parameter sets.

    ``configs["default"]`` is the stage as the board top (:class:`hftaccel.rtl.top.Top`) builds
    it; ``configs["small"]`` a reduced one for CI where the default is too slow to build."""
    make: object
    configs: dict = field(default_factory=lambda: {"default": {}})
    doc: str = ""


#: Stage name -> :class:`StageSpec`.
STAGES = {
    "eth": StageSpec(_component("eth:EthRx"), {"default": {}, "small": {"max_tags": 1}},
                     "Ethernet II / 802.1Q / IPv4 / UDP receive (hftaccel.rtl.eth.EthRx)"),
    "moldudp64": StageSpec(_component("moldudp64:MoldRx"), {"default": {}},
                           "MoldUDP64 de-framer, A/B arbitration (hftaccel.rtl.moldudp64.MoldRx)"),
    "itch": StageSpec(_component("itch:ItchParser"), {"default": {}},
                      "ITCH 5.0 parser (hftaccel.rtl.itch.ItchParser)"),
    "risk": StageSpec(_component("risk:RiskGate"),
                      {"default": {"num_locates": 256, "max_throttle": 16},
                       "small": {"num_locates": 16, "max_throttle": 4}},
                      "decision + pre-trade risk gate (hftaccel.rtl.risk.RiskGate)"),
    "ouch": StageSpec(_component("ouch:OuchTx"), {"default": {}},
                      "OUCH 5.0 Enter Order serializer (hftaccel.rtl.ouch.OuchTx)"),
    "csr": StageSpec(_make_csr, {"default": {}}, "the top's register bank (hftaccel.rtl.csr)"),
    "lookup": StageSpec(_component("top:OrderLookup"),
                        {"default": {"num_locates": 256, "stamp_bits": 10}},
                        "the top's order lookup: symbol table and latency stamps in EBR "
                        "(hftaccel.rtl.top.OrderLookup)"),
    "meter": StageSpec(_component("top:LatencyMeter"), {"default": {}},
                       "the top's message-to-order latency statistics "
                       "(hftaccel.rtl.top.LatencyMeter)"),
    "book": StageSpec(_component("book:OrderBook"),
                      {"default": {"order_slots": 4096, "max_probe": 8, "n_symbols": 1,
                                   "levels": 16},
                       "small": {"order_slots": 256, "max_probe": 2, "n_symbols": 1,
                                 "levels": 8}},
                      "order book (hftaccel.rtl.book.OrderBook)"),
    "order_table": StageSpec(_component("order_table:OrderTable"),
                             {"default": {"rows": 4096, "ways": 4},
                              "lean": {"rows": 1024, "ways": 4},
                              "small": {"rows": 256, "ways": 4}},
                             "order table of the EBR book: 16,384 orders in DP16KD "
                             "(hftaccel.rtl.order_table.OrderTable)"),
    "level_table": StageSpec(_component("level_table:LevelTable"),
                             {"default": {"rows": 2048, "ways": 4, "slot_bits": 8},
                              "lean": {"rows": 512, "ways": 4, "slot_bits": 6},
                              "small": {"rows": 64, "ways": 4, "slot_bits": 4}},
                             "price level table of the EBR book: 8,192 levels in DP16KD "
                             "(hftaccel.rtl.level_table.LevelTable)"),
    "top_levels": StageSpec(_component("top_levels:TopLevels"),
                            {"default": {"slots": 256, "depth": 8, "window": 12},
                             "small": {"slots": 16, "depth": 8, "window": 12}},
                            "best-level windows of the EBR book "
                            "(hftaccel.rtl.top_levels.TopLevels)"),
    "ebr_book": StageSpec(_component("ebr_book:EbrBook"),
                          {"default": {"slots": 256, "locates": 16384, "order_rows": 4096,
                                       "order_ways": 4, "level_rows": 2048, "level_ways": 4,
                                       "window": 12},
                           "lean": {"slots": 64, "locates": 16384, "order_rows": 1024,
                                    "order_ways": 4, "level_rows": 512, "level_ways": 4,
                                    "window": 12},
                           "small": {"slots": 16, "locates": 1024, "order_rows": 256,
                                     "order_ways": 4, "level_rows": 64, "level_ways": 4,
                                     "window": 12}},
                          "order book in block RAM: locate table, order table, level table, "
                          "best-level windows (hftaccel.rtl.ebr_book.EbrBook)"),
    "features": StageSpec(_component("features:FeatureEngine"),
                          {"default": {"depth": 8, "n_symbols": 1, "latency": 5}},
                          "microstructure features (hftaccel.rtl.features.FeatureEngine)"),
    "mlp": StageSpec(_make_mlp, {"default": {}, "folded": {"macs_per_cycle": 16},
                                 "compiled": {"weights": "compiled"}},
                     "int8 MLP (hftaccel.rtl.mlp.MLP)"),
}


def default_out(stage: str, config: str = "default") -> Path:
    return REPO / "build" / "stages" / (stage if config == "default" else f"{stage}-{config}")


def registered_wrapper(dut):
    """An Elaboratable that registers every port of the component ``dut`` once.

    Returns ``(wrapper, ports)``: each port of ``dut`` becomes a top-level signal named after
    its path (``i__payload``, ``o__ready`` ...) with one ``sync`` register between it and the
    stage, so that every path of the stage starts and ends at a flip-flop nextpnr times."""
    from amaranth.hdl import Elaboratable, Module, Signal, Value
    from amaranth.lib.wiring import In

    pins = []
    for path, member, value in dut.signature.flatten(dut):
        name = "__".join(str(p) for p in path)
        v = Value.cast(value)
        pins.append((name, member.flow, v, Signal(len(v), name=f"pin_{name}")))

    class Wrapper(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            m.submodules.dut = dut
            for name, flow, v, pin in pins:
                reg = Signal(len(v), name=f"reg_{name}")
                if flow == In:
                    m.d.sync += reg.eq(pin)
                    m.d.comb += v.eq(reg)
                else:
                    m.d.sync += reg.eq(v)
                    m.d.comb += pin.eq(reg)
            return m

    return Wrapper(), [pin for *_, pin in pins]


def _cycles(dut, attr):
    v = getattr(dut, attr, None)
    return v if isinstance(v, int) else None


def build_stage(stage: str, *, config: str = "default", device: str = "LFE5UM5G-85F",
                speed: int = 8, freq_mhz: float = 156.25, seed: int = 1, out=None,
                params: dict | None = None) -> dict:
    """Build one stage out of context and write its report.

    Parameters
    ----------
    stage : str
        A key of :data:`STAGES`.
    config : str
        A key of the stage's ``configs``; ``params`` (keyword arguments of the constructor)
        override it.
    device : str
        A key of :data:`DEVICE_FLAGS`.
    speed : int
        ECP5 speed grade (6, 7 or 8).
    freq_mhz : float
        Clock constraint, MHz (156.25: the core clock).
    seed : int
        nextpnr placement seed.
    out : Path, optional
        Output folder (default ``build/stages/<stage>[-<config>]``).

    Returns
    -------
    dict
        The report, as written to ``report.json``: ``lut4_equiv``, ``ff``, ``ebr``, ``dsp``,
        ``fmax_mhz``, ``met``, ``critical_path``, ``latency_cycles``, ``ii_cycles`` ...

    Raises
    ------
    ValueError
        Unknown stage, configuration, device or speed grade.
    BuildError
        A tool is missing or failed (the message names its log).
    """
    from amaranth.back import rtlil

    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose from {sorted(STAGES)}")
    spec = STAGES[stage]
    if config not in spec.configs:
        raise ValueError(f"stage {stage!r} has no configuration {config!r}; choose from "
                         f"{sorted(spec.configs)}")
    if device not in DEVICE_FLAGS:
        raise ValueError(f"unknown device {device!r}; choose from {sorted(DEVICE_FLAGS)}")
    if speed not in (6, 7, 8):
        raise ValueError(f"ECP5 speed grade must be 6, 7 or 8, not {speed!r}")
    p = {**spec.configs[config], **(params or {})}
    out = Path(out) if out is not None else default_out(stage, config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").unlink(missing_ok=True)
    seconds = {}

    t0 = time.monotonic()
    dut = spec.make(**p)
    wrapper, ports = registered_wrapper(dut)
    (out / "stage.il").write_text(rtlil.convert(wrapper, name="top", ports=ports))
    seconds["elaborate"] = round(time.monotonic() - t0, 1)

    def run(cmd, what, logname):
        with open(out / logname, "w") as log:
            rc = subprocess.run(cmd, cwd=out, stdout=log, stderr=subprocess.STDOUT).returncode
        if rc != 0:
            raise BuildError(f"{what} failed for stage {stage!r} (exit {rc}); see "
                             f"{out / logname}")

    t0 = time.monotonic()
    (out / "stage.ys").write_text("read_rtlil stage.il\nsynth_ecp5 -top top -json stage.json\n")
    run(_tool("yosys") + ["-q", "-l", "yosys.rpt", "stage.ys"], "yosys", "yosys.log")
    seconds["synthesis"] = round(time.monotonic() - t0, 1)
    cells = parse_yosys_stats(out / "yosys.rpt")

    flag, package = DEVICE_FLAGS[device]
    t0 = time.monotonic()
    run(_tool("nextpnr") + [flag, "--package", package, "--speed", str(speed),
                            "--json", "stage.json", "--out-of-context",
                            "--freq", f"{freq_mhz}", "--seed", str(seed),
                            "--report", "nextpnr-report.json", "--timing-allow-fail"],
        "nextpnr-ecp5", "nextpnr.log")
    seconds["place_and_route"] = round(time.monotonic() - t0, 1)
    timing = parse_nextpnr_report(out / "nextpnr-report.json")
    clocks = timing["clocks"]
    clock = next(iter(clocks.values()), None)
    fmax = clock["achieved_mhz"] if clock else None
    paths = [cp for cp in timing["critical_paths"]
             if cp["from_clock"] == cp["to_clock"]] or timing["critical_paths"]
    crit = max(paths, key=lambda cp: cp["delay_ns"]) if paths else None
    rep = {
        "stage": stage, "config": config, "params": {k: v for k, v in p.items()},
        "doc": spec.doc, "device": device, "package": package, "speed": speed, "seed": seed,
        "freq_mhz": freq_mhz,
        "lut4_equiv": lut4_equiv(cells), "ff": cells.get("TRELLIS_FF", 0),
        "ebr": cells.get("DP16KD", 0), "dsp": cells.get("MULT18X18D", 0),
        "cells": cells,
        "fmax_mhz": fmax, "met": bool(fmax is not None and fmax >= freq_mhz),
        "critical_path": crit,
        "latency_cycles": _cycles(dut, "latency"), "ii_cycles": _cycles(dut, "ii"),
        "utilization": timing["utilization"],
        "ports_registered": len(ports),
        "tools": tool_versions(), "seconds": seconds,
        "files": {"netlist": str(out / "stage.json"), "yosys_log": str(out / "yosys.rpt"),
                  "nextpnr_log": str(out / "nextpnr.log")},
    }
    (out / "report.json").write_text(json.dumps(rep, indent=1))
    return rep


def _build_one(args):
    stage, kw = args
    try:
        return build_stage(stage, **kw)
    except (BuildError, ValueError) as exc:
        return {"stage": stage, "config": kw.get("config", "default"), "error": str(exc)}


def build_stages(stages, *, jobs: int = 2, out_dir=None, on_done=None, **kw) -> list:
    """Build several stages, ``jobs`` at a time, and write ``stages.json`` / ``stages.md``.

    ``stages`` is a list of names or ``(name, config)`` pairs. A stage whose build fails
    appears with an ``error`` key. ``on_done(report)`` is called as each finishes."""
    todo = [(s, "default") if isinstance(s, str) else tuple(s) for s in stages]
    out_dir = Path(out_dir) if out_dir is not None else REPO / "build" / "stages"
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [(s, {**kw, "config": c, "out": out_dir / (s if c == "default" else f"{s}-{c}")})
            for s, c in todo]
    reports = []
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        for rep in pool.map(_build_one, args):
            reports.append(rep)
            if on_done:
                on_done(rep)
    (out_dir / "stages.json").write_text(json.dumps(reports, indent=1))
    (out_dir / "stages.md").write_text(stage_table(reports))
    return reports


def _fmt(v, spec="{:,}"):
    return "-" if v is None else spec.format(v)


def stage_table(reports) -> str:
    """Markdown table of stage reports (one row each)."""
    lines = ["| stage (config) | LUT4-equiv | FF | EBR | DSP | fmax, MHz | latency | II | "
             "critical path |", "|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        if "error" in r:
            lines.append(f"| {r['stage']} ({r['config']}) | build failed: {r['error']} "
                         "| | | | | | | |")
            continue
        cp = r.get("critical_path") or {}
        path = (f"{cp.get('start', '?')} -> {cp.get('end', '?')}, {cp.get('levels')} levels, "
                f"{cp.get('delay_ns')} ns") if cp else "-"
        lines.append(f"| {r['stage']} ({r['config']}) | {_fmt(r['lut4_equiv'])} | "
                     f"{_fmt(r['ff'])} | {r['ebr']} | {r['dsp']} | "
                     f"{_fmt(r['fmax_mhz'], '{:.1f}')} | {_fmt(r['latency_cycles'])} | "
                     f"{_fmt(r['ii_cycles'])} | {path} |")
    return "\n".join(lines) + "\n"
