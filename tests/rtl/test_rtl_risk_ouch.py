"""Risk gate and OUCH serializer gateware cocotb testbenches, run through cocotb's runner.

Each test generates Verilog from the Amaranth component (``hftaccel.rtl.risk.RiskGate``,
``hftaccel.rtl.ouch.OuchTx``), builds it in its own folder under build/sim/ and runs every
cocotb test of hw/sim/test_risk.py / test_ouch.py against the golden model; the slow variants
repeat them with the long inputs (``TB_FULL=1``) and with other parameter sets.
"""

import pytest

pytestmark = pytest.mark.sim

amaranth = pytest.importorskip("amaranth", reason="amaranth not installed (pip install .[hw])")
cocotb = pytest.importorskip("cocotb", reason="cocotb not installed (pip install .[hw])")

from hftaccel.sim.common import run_testbench  # noqa: E402

DUTS = ["risk", "ouch"]


def _run(dut, sim, full=False, params=None):
    run_testbench(dut, sim, full=full, params=params)


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
