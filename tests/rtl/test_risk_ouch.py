"""Risk gate and OUCH serializer gateware cocotb testbenches, run through cocotb's runner.

Each test generates Verilog from the Amaranth component (``hftaccel.rtl.risk.RiskGate``,
``hftaccel.rtl.ouch.OuchTx``), builds it in its own folder under build/sim/ and runs every
cocotb test of hw/sim/test_risk.py / test_ouch.py against the golden model; the slow variants
repeat them with the long inputs (``TB_FULL=1``) and with other parameter sets.
"""

import shutil

import pytest

pytestmark = pytest.mark.sim

amaranth = pytest.importorskip("amaranth", reason="amaranth not installed (pip install .[hw])")
cocotb = pytest.importorskip("cocotb", reason="cocotb not installed (pip install .[hw])")

from hftaccel.sim.common import build_and_run  # noqa: E402

DUTS = ["risk", "ouch"]


def _need(sim):
    exe = {"verilator": "verilator", "icarus": "iverilog"}[sim]
    if shutil.which(exe) is None:
        pytest.skip(f"{exe} not on PATH (Debian: apt-get install {exe})")


def _run(dut, sim, full=False, params=None):
    _need(sim)
    env = {"TB_FULL": "1"} if full else {}
    n, failed, xml = build_and_run(dut, sim=sim, extra_env=env, params=params)
    assert n > 0, f"no cocotb tests ran for {dut} on {sim} ({xml})"
    assert failed == 0, f"{failed} of {n} cocotb tests failed for {dut} on {sim}; see {xml}"


@pytest.mark.parametrize("dut", DUTS)
def test_verilator(dut):
    _run(dut, "verilator")


@pytest.mark.slow
@pytest.mark.parametrize("dut", DUTS)
def test_verilator_full(dut):
    _run(dut, "verilator", full=True)


@pytest.mark.slow
@pytest.mark.parametrize("dut, params", [
    ("risk", {"num_locates": 1024, "max_throttle": 64}),
    ("ouch", {"soup": False}),
], ids=["risk-1024-locates", "ouch-unframed"])
def test_verilator_params(dut, params):
    _run(dut, "verilator", params=params)


@pytest.mark.slow
@pytest.mark.parametrize("dut", DUTS)
def test_icarus(dut):
    _run(dut, "icarus")
