"""Front-end gateware (eth, moldudp64, itch) cocotb testbenches, run through cocotb's runner.

Each test generates Verilog from the Amaranth component, builds it in its own folder under
build/sim/ and runs every cocotb test of the matching hw/sim/test_*.py module; the fast
variants run the standard inputs, the slow ones repeat them with the long inputs
(``TB_FULL=1``) and on Icarus.
"""

import shutil

import pytest

pytestmark = pytest.mark.sim

amaranth = pytest.importorskip("amaranth", reason="amaranth not installed (pip install .[hw])")
cocotb = pytest.importorskip("cocotb", reason="cocotb not installed (pip install .[hw])")

from hftaccel.sim.common import build_and_run  # noqa: E402

DUTS = ["eth", "moldudp64", "itch"]


def _need(sim):
    exe = {"verilator": "verilator", "icarus": "iverilog"}[sim]
    if shutil.which(exe) is None:
        pytest.skip(f"{exe} not on PATH (Debian: apt-get install {exe})")


def _run(dut, sim, full=False):
    _need(sim)
    env = {"TB_FULL": "1"} if full else {}
    n, failed, xml = build_and_run(dut, sim=sim, extra_env=env)
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
@pytest.mark.parametrize("dut", DUTS)
def test_icarus(dut):
    _run(dut, "icarus")
