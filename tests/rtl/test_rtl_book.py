"""Order book gateware (hftaccel.rtl.book) cocotb testbench, run through cocotb's runner.

The test build uses small capacities (depth 4, 1024 order slots in 8-way rows, 4 symbols,
16 levels per side) so Verilator builds in a couple of minutes; the slow variants repeat the
tests with the long random stream (``TB_FULL=1``) and at the default depth on Icarus.
"""

import json

import pytest

pytestmark = pytest.mark.sim

amaranth = pytest.importorskip("amaranth", reason="amaranth not installed (pip install .[hw])")
cocotb = pytest.importorskip("cocotb", reason="cocotb not installed (pip install .[hw])")

from hftaccel.sim.common import run_testbench  # noqa: E402

TEST_PARAMS = {"depth": 4, "order_slots": 1024, "max_probe": 8, "n_symbols": 4, "levels": 16}


def _run(sim, params, full=False, testcase=None):
    run_testbench("book", sim, full=full, params=params, testcase=testcase,
                  extra_env={"BOOK_PARAMS": json.dumps(params)})


def test_verilator():
    _run("verilator", TEST_PARAMS)


@pytest.mark.slow
def test_verilator_full():
    _run("verilator", TEST_PARAMS, full=True)


@pytest.mark.slow
def test_icarus():
    _run("icarus", TEST_PARAMS)
