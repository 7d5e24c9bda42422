"""Bodies of ``hftaccel build``, ``hftaccel deploy`` and ``hftaccel status`` (``hftaccel.cli``
parses the arguments and calls these; tests call them too). Each returns the JSON twin of what
it printed."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

__all__ = ["run_build", "run_stage_build", "run_deploy", "run_status"]


def run_build(board: str, *, model=None, seed: int = 1, out=None, config: str = "default",
              core_mhz: float = 156.25, baud: int = 115200, console: Console | None = None,
              progress: bool = True) -> dict:
    """Build and print the report tables (:func:`hftaccel.boards.build.build`)."""
    from . import build as b
    console = console or Console(stderr=True)
    if board not in b.BOARDS or config not in b.CONFIGS:
        raise ValueError(f"unknown board {board!r} or configuration {config!r}; boards "
                         f"{sorted(b.BOARDS)}, configurations {sorted(b.CONFIGS)}")
    if progress:
        console.print(f"[bold]hftaccel build[/bold] {board} ({config}); tool output goes to "
                      f"{Path(out) if out else b.default_out(board, config)}/build.log")
    rep = b.build(board, model=model, seed=seed, out=out, config=config,
                  core_hz=core_mhz * 1e6, baud=baud, progress=progress)
    _print_report(rep, Console())
    return rep


def _stage_row(table: Table, r: dict) -> None:
    if "error" in r:
        table.add_row(f"{r['stage']} ({r['config']})", *["-"] * 7, f"[red]{r['error']}")
        return
    cp = r.get("critical_path") or {}
    fmax = r["fmax_mhz"]
    table.add_row(f"{r['stage']} ({r['config']})", f"{r['lut4_equiv']:,}", f"{r['ff']:,}",
                  str(r["ebr"]), str(r["dsp"]),
                  ("[green]" if r["met"] else "[red]") + (f"{fmax:.1f}" if fmax else "-"),
                  "-" if r["latency_cycles"] is None else str(r["latency_cycles"]),
                  "-" if r["ii_cycles"] is None else str(r["ii_cycles"]),
                  f"{cp.get('delay_ns', '-')} ns, {cp.get('levels', '-')} levels: "
                  f"{cp.get('start', '?')} -> {cp.get('end', '?')}" if cp else "-")


def run_stage_build(stage: str, *, config: str = "default", device: str = "LFE5UM5G-85F",
                    speed: int = 8, freq_mhz: float = 156.25, seed: int = 1, out=None,
                    jobs: int = 2, console: Console | None = None):
    """Out-of-context build of one stage, or of every stage (``stage="all"``), with a table
    (:mod:`hftaccel.boards.stage`). Returns the report (a list of reports for ``all``)."""
    from . import stage as st
    console = console or Console(stderr=True)
    table = Table(title=f"out-of-context stage builds: {device} speed {speed}, "
                        f"{freq_mhz} MHz, seed {seed}")
    for col in ("stage", "LUT4-equiv", "FF", "EBR", "DSP", "fmax MHz", "latency", "II",
                "critical path"):
        table.add_column(col, justify="left" if col in ("stage", "critical path") else "right")
    kw = dict(device=device, speed=speed, freq_mhz=freq_mhz, seed=seed)
    if stage == "all":
        todo = list(st.STAGES)
        with console.status(f"building {len(todo)} stages, {jobs} at a time") as status:
            done = []

            def on_done(r):
                done.append(r)
                status.update(f"built {len(done)}/{len(todo)} stages (last: {r['stage']})")
            reports = st.build_stages(todo, jobs=jobs, out_dir=out, on_done=on_done, **kw)
        for r in reports:
            _stage_row(table, r)
        console.print(table)
        where = Path(out) if out else st.REPO / "build" / "stages"
        console.print(f"wrote {where / 'stages.json'} and {where / 'stages.md'}")
        return reports
    if stage not in st.STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose from {sorted(st.STAGES)} or 'all'")
    with console.status(f"building stage {stage} ({config}): yosys, then nextpnr-ecp5"):
        rep = st.build_stage(stage, config=config, out=out, **kw)
    _stage_row(table, rep)
    console.print(table)
    console.print(f"report {Path(rep['files']['netlist']).with_name('report.json')}")
    return rep


def _print_report(rep: dict, console: Console) -> None:
    from .build import RESOURCES
    t = Table(title=f"{rep['board']} {rep['device']} speed {rep['speed']} — config "
                    f"{rep['config']}")
    for col in ("resource", "used", "available", "%"):
        t.add_column(col, justify="right" if col != "resource" else "left")
    for k, v in rep["utilization"].items():
        if k in RESOURCES:
            t.add_row(RESOURCES[k], str(v["used"]), str(v["available"]), f"{v['pct']:.1f}")
    console.print(t)
    c = Table(title="clocks")
    for col in ("domain", "fmax MHz", "constraint MHz", "timing"):
        c.add_column(col)
    for name, v in rep["clocks"].items():
        c.add_row(name, f"{v['achieved_mhz']:.2f}", f"{v['constraint_mhz']:.2f}",
                  "[green]met" if v["met"] else "[red]FAILED")
    console.print(c)
    for p in rep["critical_paths"]:
        console.print(f"critical path {p['from_clock']} -> {p['to_clock']}: {p['delay_ns']} ns "
                      f"({p['logic_ns']} logic / {p['routing_ns']} routing, {p['levels']} "
                      f"levels)\n  {p['start']}\n  -> {p['end']}")
    t2t = rep["tick_to_trade"]
    if t2t["status"] == "measured" and "ns_at_achieved_fmax" in t2t:
        console.print(f"tick-to-trade (ns at {t2t['achieved_mhz']} MHz): "
                      f"{t2t['ns_at_achieved_fmax']}")
    else:
        console.print(f"tick-to-trade: {t2t['status']}")
    console.print(f"bitstream {rep['files']['bit']}\nreport    "
                  f"{Path(rep['files']['bit']).with_name('report.json')}")


def run_deploy(board: str, *, flash: bool = False, dry_run: bool = False, out=None,
               config: str = "default", model=None, seed: int = 1, core_mhz: float = 156.25,
               cable: str | None = None, console: Console | None = None) -> dict:
    """Plan, rebuild if stale, program (:func:`hftaccel.boards.deploy.deploy`)."""
    from . import deploy as d
    console = console or Console(stderr=True)
    p = d.plan(board, flash=flash, out=out, config=config, model=model, seed=seed,
               core_hz=core_mhz * 1e6, cable=cable)
    console.print(f"bitstream: {p['out']}/hftaccel.bit — {p['reason']}")
    console.print(f"plan: {'build, then ' if p['build'] else ''}program {p['memory']} with\n  "
                  f"{p['command']}")
    if p["loader"] is None:
        console.print("[yellow]openFPGALoader is not on PATH[/yellow]")
    if dry_run:
        console.print("dry run: nothing built or programmed")
        p["programmed"] = False
        return p
    p = d.deploy(board, flash=flash, out=out, config=config, model=model, seed=seed,
                 core_hz=core_mhz * 1e6, cable=cable)
    console.print(f"[green]programmed[/green] {board} ({p['memory']})")
    return p


def run_status(port: str, *, csr_map, baud: int = 115200, names=None, as_json: bool = False,
               console: Console | None = None) -> dict:
    """Read the board's registers over the UART bridge and print them."""
    from . import deploy as d
    values = d.read_status(port, csr_map=csr_map, baud=baud, names=names)
    if as_json:
        print(json.dumps(values, indent=1))
        return values
    entries = {e["name"]: e for e in json.loads(Path(csr_map).read_text())} \
        if not isinstance(csr_map, list) else {e["name"]: e for e in csr_map}
    t = Table(title=f"hftaccel status ({port})")
    for col in ("register", "bank", "value", "doc"):
        t.add_column(col, justify="right" if col == "value" else "left")
    for name, v in values.items():
        e = entries.get(name, {})
        t.add_row(name, e.get("bank", ""), f"{v:,}" if e.get("width", 0) <= 32 else hex(v),
                  e.get("doc", ""))
    Console().print(t)
    return values
