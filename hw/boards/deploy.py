"""Program a board: rebuild when the bitstream is stale, then openFPGALoader; read its status.

A bitstream is *stale* when its folder has no ``stamp.json`` / ``hftaccel.bit`` or the stamp's
hash differs from :func:`hftaccel.boards.build.source_stamp` now (a gateware or spec source,
the model, a tool version or an option changed). :func:`plan` says what :func:`deploy` would
do; ``dry_run`` stops there. Without openFPGALoader, or without a cable and board attached,
:class:`DeployError` says so and gives the exact command that would program the board.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

from . import build as build_mod

__all__ = ["LOADER_ARGS", "DeployError", "is_stale", "loader_command", "plan", "deploy",
           "read_status"]

#: openFPGALoader target per board: the Versa's FT2232H JTAG (channel A), the ULX3S by name.
LOADER_ARGS = {"versa": ["-c", "ft2232"], "ulx3s": ["-b", "ulx3s"]}


class DeployError(RuntimeError):
    """Programming is impossible here; the message has the reason and the command to run."""


def is_stale(board: str, *, out=None, config: str = "default", model=None, seed: int = 1,
             core_hz: float = 156.25e6):
    """``(stale, reason)`` of the bitstream in ``out``."""
    out = Path(out) if out is not None else build_mod.default_out(board, config)
    bit, stamp_file = out / "hftaccel.bit", out / "stamp.json"
    if not bit.exists() or not stamp_file.exists():
        return True, f"no bitstream in {out}"
    old = json.loads(stamp_file.read_text())
    new = build_mod.source_stamp(board, config=config, model=model, seed=seed, core_hz=core_hz)
    if old.get("hash") == new["hash"]:
        return False, "bitstream up to date"
    changed = [k for k in ("config", "seed", "core_hz", "model", "model_sha256", "tools")
               if old.get(k) != new.get(k)]
    return True, "changed: " + (", ".join(changed) if changed else "gateware or spec sources")


def loader_command(board: str, bit, *, flash: bool = False, cable: str | None = None) -> list:
    """The openFPGALoader command line that programs ``bit``."""
    target = ["-c", cable] if cable else LOADER_ARGS[board]
    return ["openFPGALoader", *target, *(["-f"] if flash else ["-m"]), str(bit)]


def plan(board: str, *, flash: bool = False, out=None, config: str = "default", model=None,
         seed: int = 1, core_hz: float = 156.25e6, cable: str | None = None) -> dict:
    """What :func:`deploy` would do: ``{stale, reason, build, command, loader}``."""
    if board not in build_mod.BOARDS:
        raise ValueError(f"unknown board {board!r}; choose from {sorted(build_mod.BOARDS)}")
    out = Path(out) if out is not None else build_mod.default_out(board, config)
    stale, reason = is_stale(board, out=out, config=config, model=model, seed=seed,
                             core_hz=core_hz)
    cmd = loader_command(board, out / "hftaccel.bit", flash=flash, cable=cable)
    return {"board": board, "out": str(out), "stale": stale, "reason": reason,
            "build": stale, "memory": "flash" if flash else "sram",
            "command": shlex.join(cmd), "argv": cmd,
            "loader": shutil.which("openFPGALoader")}


def deploy(board: str, *, flash: bool = False, dry_run: bool = False, out=None,
           config: str = "default", model=None, seed: int = 1, core_hz: float = 156.25e6,
           cable: str | None = None, progress: bool = True) -> dict:
    """Build if stale, then program. Returns the plan with ``programmed`` set.

    Raises
    ------
    DeployError
        openFPGALoader missing, or it found no cable / board (the message has the command).
    hftaccel.boards.build.BuildError
        The rebuild failed.
    """
    p = plan(board, flash=flash, out=out, config=config, model=model, seed=seed,
             core_hz=core_hz, cable=cable)
    p["programmed"] = False
    if dry_run:
        return p
    if p["stale"]:
        build_mod.build(board, model=model, seed=seed, out=p["out"], config=config,
                        core_hz=core_hz, progress=progress)
        p["built"] = True
    if p["loader"] is None:
        raise DeployError("openFPGALoader is not installed (Debian: apt-get install "
                          "openfpgaloader). With it and the board attached, run:\n  "
                          + p["command"])
    argv = [p["loader"], *p["argv"][1:]]
    res = subprocess.run(argv, capture_output=True, text=True)
    p["loader_output"] = (res.stdout + res.stderr)[-4000:]
    if res.returncode != 0:
        text = p["loader_output"].lower()
        why = ("no cable or board found" if any(s in text for s in (
            "no device found", "unable to open", "cable not found", "no cable",
            "fails to open", "jtag init failed", "usb_open")) else
            f"openFPGALoader exited with {res.returncode}")
        raise DeployError(f"{why}: attach the {board} board's USB/JTAG cable, then run:\n  "
                          f"{p['command']}\nopenFPGALoader said:\n{p['loader_output'][-800:]}")
    p["programmed"] = True
    return p


def read_status(port: str, *, csr_map, baud: int = 115200, names=None) -> dict:
    """Every readable register (or ``names``) of a programmed board through the UART bridge.

    Parameters
    ----------
    port : str
        Serial device (``/dev/ttyUSB1`` ...).
    csr_map : list or path
        The build's ``csr_map.json``.
    """
    from .uart import BridgeClient, open_serial
    if not isinstance(csr_map, list):
        csr_map = json.loads(Path(csr_map).read_text())
    ser = open_serial(port, baud)
    try:
        client = BridgeClient(ser, csr_map)
        if names:
            return {n: client.read_reg(n) for n in names}
        return client.read_all()
    finally:
        ser.close()
