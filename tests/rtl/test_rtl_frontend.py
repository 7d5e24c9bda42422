"""Front-end gateware (eth, moldudp64, itch) cocotb testbenches, run through cocotb's runner.

Each test generates Verilog from the Amaranth component, builds it in its own folder under
build/sim/ and runs every cocotb test of the matching hw/sim/test_*.py module; the fast
variants run the standard inputs, the slow ones repeat them with the long inputs
(``TB_FULL=1``) and on Icarus.
"""

import pytest

pytestmark = pytest.mark.sim

amaranth = pytest.importorskip("amaranth", reason="amaranth not installed (pip install .[hw])")
cocotb = pytest.importorskip("cocotb", reason="cocotb not installed (pip install .[hw])")

from hftaccel.sim.common import run_testbench  # noqa: E402

DUTS = ["eth", "moldudp64", "itch"]


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
@pytest.mark.parametrize("dut", DUTS)
def test_icarus(dut):
    _run(dut, "icarus")
