"""Block-RAM order book gateware (hftaccel.rtl.ebr_book) cocotb testbench, run through cocotb's
runner.

The test build uses small tables (depth 4, 8 slots, 1,024 orders in 8-way rows, 1,024 levels
in 8-way rows, windows of 8) so Verilator builds in minutes; the slow variant repeats the tests with the long
random stream (``TB_FULL=1``).
"""

import json

import pytest

pytestmark = pytest.mark.sim

amaranth = pytest.importorskip("amaranth", reason="amaranth not installed (pip install .[hw])")
cocotb = pytest.importorskip("cocotb", reason="cocotb not installed (pip install .[hw])")

from hftaccel.sim.common import run_testbench  # noqa: E402

TEST_PARAMS = {"depth": 4, "slots": 8, "locates": 64, "order_rows": 128, "order_ways": 8,
               "level_rows": 128, "level_ways": 8, "window": 8}


#: the real day's build: depth 8, windows of 12, tables that hold the AMZN day (8,192 orders,
#: 2,048 levels; 4-way order rows refuse adds at a third full), as the board default's per-symbol structure
REAL_PARAMS = {"depth": 8, "slots": 2, "locates": 64, "order_rows": 2048, "order_ways": 4,
               "level_rows": 512, "level_ways": 4, "window": 12}


def _run(sim, params, full=False, testcase=None):
    run_testbench("ebr_book", sim, full=full, params=params, testcase=testcase,
                  extra_env={"EBR_BOOK_PARAMS": json.dumps(params)})


def test_verilator():
    _run("verilator", TEST_PARAMS)


@pytest.mark.slow
def test_verilator_full():
    _run("verilator", TEST_PARAMS, full=True)


def test_real_day_verilator():
    _run("verilator", REAL_PARAMS, testcase="test_real_day")


@pytest.mark.slow
def test_real_day_verilator_full():
    _run("verilator", REAL_PARAMS, full=True, testcase="test_real_day")
