"""Clock and wire arithmetic of the latency report: fmax lookup, cycles -> ns, Ethernet wire time.

The gateware is measured in clock cycles (cycle-accurate simulation); nanoseconds need a clock.
:func:`board_clock` takes it from the latest board build report (``hftaccel build``), tolerant
of where the report lies and how it names its fmax, and otherwise returns a stated nominal clock
(:data:`NOMINAL_MHZ`: 156.25 MHz, the clock at which the 64-bit datapath carries 10 Gb/s).

Wire time of a frame at a line rate counts every byte the frame occupies on the medium:
preamble + SFD (8), the frame padded to the 60-byte minimum, FCS (4) and the inter-frame gap
(12), times 8 bits, over the rate (IEEE 802.3).
"""

from __future__ import annotations

import json
from pathlib import Path

from hftaccel.spec import ouch as ouch_spec

__all__ = ["NOMINAL_MHZ", "RATES_GBPS", "PREAMBLE_SFD", "FCS", "IFG", "MIN_FRAME",
           "ORDER_FRAME_BYTES", "board_clock", "find_fmax", "wire_bytes", "wire_time_ns",
           "wire_to_wire"]

#: Core clock assumed when no board build report gives an fmax, MHz.
NOMINAL_MHZ = 156.25
#: Line rates of the wire-to-wire estimates, Gb/s.
RATES_GBPS = (1, 10, 25)
PREAMBLE_SFD = 8
FCS = 4
IFG = 12
#: Minimum Ethernet frame without FCS, bytes.
MIN_FRAME = 60
#: An OUCH 5.0 Enter Order leaving over TCP: Ethernet (14) + IPv4 (20) + TCP (20) headers and
#: the SoupBinTCP Unsequenced Data packet (3 + 47), without FCS.
ORDER_FRAME_BYTES = 14 + 20 + 20 + ouch_spec.SOUP_HEADER_SIZE + ouch_spec.ENTER_ORDER_LENGTH

#: Clock domain names taken as the pipeline's core clock, in order of preference.
_CORE_DOMAINS = ("sync", "core", "pipeline", "sys")


def _repo() -> Path:
    """The source checkout this package runs from (editable install), else the current folder."""
    up = Path(__file__).resolve().parents[3]
    return up if (up / "pyproject.toml").is_file() else Path.cwd()


def wire_bytes(frame_len: int) -> int:
    """Bytes a frame of ``frame_len`` bytes (without FCS) occupies on the wire, IFG included."""
    if frame_len < 0:
        raise ValueError(f"frame length must be >= 0, got {frame_len}")
    return PREAMBLE_SFD + max(int(frame_len), MIN_FRAME) + FCS + IFG


def wire_time_ns(frame_len: int, rate_gbps: float) -> float:
    """Serialization time of a frame (without FCS, ``frame_len`` bytes) at ``rate_gbps``, ns."""
    if rate_gbps <= 0:
        raise ValueError(f"rate must be > 0 Gb/s, got {rate_gbps}")
    return wire_bytes(frame_len) * 8 / rate_gbps


def wire_to_wire(t2t_ns: float, in_frame: int, *, out_frame: int = ORDER_FRAME_BYTES,
                 rates=RATES_GBPS) -> list:
    """Wire-to-wire estimates: inbound frame on the wire + core tick-to-trade + order frame.

    Parameters
    ----------
    t2t_ns : float
        Core tick-to-trade (last byte of the triggering message in -> first order byte out), ns.
    in_frame : int
        Inbound market data frame, bytes without FCS (its whole serialization is counted: an
        upper bound, the triggering message may end before the frame does).
    out_frame : int
        Order frame, bytes without FCS.

    Returns
    -------
    list of dict
        One per rate: ``rate_gbps``, ``in_wire_ns``, ``core_ns``, ``out_wire_ns``, ``total_ns``.
        MAC, PCS and SERDES latencies are not included.
    """
    out = []
    for r in rates:
        a, c = wire_time_ns(in_frame, r), wire_time_ns(out_frame, r)
        out.append({"rate_gbps": r, "in_wire_ns": a, "core_ns": float(t2t_ns),
                    "out_wire_ns": c, "total_ns": a + float(t2t_ns) + c})
    return out


def find_fmax(report: dict) -> tuple | None:
    """The core clock's fmax in a build report of unknown shape: ``(MHz, key path)`` or None.

    Every number under a key containing ``fmax`` (or a ``{domain: number}`` dict under such a
    key, or ``{"clocks": {domain: {"fmax_mhz": ...}}}``) is a candidate; a domain named
    ``sync`` / ``core`` / ``pipeline`` / ``sys`` wins, else the slowest domain. Values above
    100,000 are taken as Hz.
    """
    found = []

    def walk(node, path, under_fmax):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, path + (str(k),), under_fmax or "fmax" in str(k).lower())
        elif isinstance(node, list):
            for i, v in enumerate(node):
                name = v.get("domain") or v.get("name") if isinstance(v, dict) else None
                walk(v, path + ((str(name) if name else str(i)),), under_fmax)
        elif under_fmax and isinstance(node, (int, float)) and not isinstance(node, bool) \
                and node > 0:
            mhz = float(node) / 1e6 if node > 1e5 else float(node)
            found.append((mhz, path))

    walk(report, (), False)
    if not found:
        return None
    for dom in _CORE_DOMAINS:
        hits = [f for f in found if any(p.lower() == dom for p in f[1])]
        if hits:
            return min(hits)[0], "/".join(min(hits)[1])
    best = min(found)
    return best[0], "/".join(best[1])


def board_clock(board: str | None = None, *, build_root: Path | None = None) -> dict:
    """The clock that converts cycles to ns.

    Looks for ``build/boards/<board>/report.json``, ``build/<board>/report.json``, then the
    newest ``report.json`` anywhere under those folders, and takes its fmax (:func:`find_fmax`).

    Returns
    -------
    dict
        ``mhz``, ``period_ns``, ``nominal`` (True when no report gave an fmax), ``source``
        (report path or None), ``key`` (where in the report), ``note`` (a sentence for the
        report).
    """
    root = Path(build_root) if build_root else _repo() / "build"
    tried = []
    if board:
        dirs = [root / "boards" / board, root / board]
        cands = [d / "report.json" for d in dirs]
        for d in dirs:
            if d.is_dir():
                cands += sorted(d.rglob("report.json"), key=lambda p: p.stat().st_mtime,
                                reverse=True)
        for path in dict.fromkeys(cands):
            if not path.is_file():
                continue
            tried.append(str(path))
            try:
                hit = find_fmax(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
            if hit:
                mhz, key = hit
                return {"mhz": mhz, "period_ns": 1e3 / mhz, "nominal": False,
                        "source": str(path), "key": key, "board": board,
                        "note": f"fmax {mhz:.2f} MHz from the build report {path} ({key})"}
    why = (f"no build report with an fmax for board {board!r}"
           + (f" (read {', '.join(tried)})" if tried else
              f" (looked in {root / 'boards' / board} and {root / board})")) if board \
        else "no --board given"
    return {"mhz": NOMINAL_MHZ, "period_ns": 1e3 / NOMINAL_MHZ, "nominal": True, "source": None,
            "key": None, "board": board,
            "note": f"nominal clock {NOMINAL_MHZ} MHz ({why}): the 64-bit datapath at this "
                    "clock carries 10 Gb/s; not a timing-closed figure"}
