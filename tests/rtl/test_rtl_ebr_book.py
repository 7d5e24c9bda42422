"""Block-RAM order book gateware (hftaccel.rtl.ebr_book) cocotb testbench, run through cocotb's
runner.

The test build uses small tables (depth 4, 8 slots, 256 orders in 4-way rows, 256 levels,
windows of 8) so Verilator builds in minutes; the slow variant repeats the tests with the long
random stream (``TB_FULL=1``).
"""

import json

import pytest

pytestmark = pytest.mark.sim

amaranth = pytest.importorskip("amaranth", reason="amaranth not installed (pip install .[hw])")
cocotb = pytest.importorskip("cocotb", reason="cocotb not installed (pip install .[hw])")

from hftaccel.sim.common import run_testbench  # noqa: E402

TEST_PARAMS = {"depth": 4, "slots": 8, "locates": 64, "order_rows": 64, "order_ways": 4,
               "level_rows": 64, "level_ways": 4, "window": 8}


def _run(sim, params, full=False, testcase=None):
    run_testbench("ebr_book", sim, full=full, params=params, testcase=testcase,
                  extra_env={"EBR_BOOK_PARAMS": json.dumps(params)})


def test_verilator():
    _run("verilator", TEST_PARAMS)


@pytest.mark.slow
def test_verilator_full():
    _run("verilator", TEST_PARAMS, full=True)
