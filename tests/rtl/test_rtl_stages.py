"""Gateware stages (eth, moldudp64, itch, risk, ouch): cocotb testbenches through cocotb's runner.

Each test generates Verilog from the Amaranth component, builds it in its own folder under
build/sim/ and runs every cocotb test of the matching hw/sim/test_*.py module against the
golden model; the fast variants run the standard inputs, the slow ones repeat them with the
long inputs (``TB_FULL=1``), with other parameter sets and on Icarus. The order book has its
own file (test_rtl_book.py) because its test build uses reduced capacities.
"""

import pytest

pytestmark = pytest.mark.sim

amaranth = pytest.importorskip("amaranth", reason="amaranth not installed (pip install .[hw])")
cocotb = pytest.importorskip("cocotb", reason="cocotb not installed (pip install .[hw])")

from hftaccel.sim.common import run_testbench  # noqa: E402

DUTS = ["eth", "moldudp64", "itch", "risk", "ouch"]


@pytest.mark.parametrize("dut", DUTS)
def test_verilator(dut):
    run_testbench(dut, "verilator")


@pytest.mark.slow
@pytest.mark.parametrize("dut", DUTS)
def test_verilator_full(dut):
    run_testbench(dut, "verilator", full=True)


@pytest.mark.slow
@pytest.mark.parametrize("dut, params", [
    ("risk", {"num_locates": 1024, "max_throttle": 64}),
    ("ouch", {"soup": False}),
], ids=["risk-1024-locates", "ouch-unframed"])
def test_verilator_params(dut, params):
    run_testbench(dut, "verilator", params=params)


@pytest.mark.slow
@pytest.mark.parametrize("dut", DUTS)
def test_icarus(dut):
    run_testbench(dut, "icarus")
