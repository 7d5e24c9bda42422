"""Order table gateware (hftaccel.rtl.order_table) cocotb testbench, run through cocotb's runner.

The test build uses 64 rows x 4 ways (256 orders) so rows fill and every forwarding path is hit
within a short stream; the board default (4096 x 4, 16,384 orders) replays the AMZN day; the
slow variants repeat the tests with the long streams (``TB_FULL=1``),
with 2 ways and 20-bit references, and on Icarus.
"""

import json

import pytest

pytestmark = pytest.mark.sim

amaranth = pytest.importorskip("amaranth", reason="amaranth not installed (pip install .[hw])")
cocotb = pytest.importorskip("cocotb", reason="cocotb not installed (pip install .[hw])")

from hftaccel.sim.common import run_testbench  # noqa: E402

TEST_PARAMS = {"rows": 64, "ways": 4, "ref_bits": 39, "handle_bits": 13}


#: The board default: 16,384 orders (64 EBR), as ``hftaccel build --stage order_table`` builds it.
BOARD_PARAMS = {"rows": 4096, "ways": 4, "ref_bits": 39, "handle_bits": 13}


def _run(sim, params, full=False, testcase=None):
    run_testbench("order_table", sim, full=full, params=params, testcase=testcase,
                  extra_env={"ORDER_TABLE_PARAMS": json.dumps(params)})


def test_verilator():
    _run("verilator", TEST_PARAMS)


def test_verilator_board_default_real_day():
    """The board-default table on the AMZN day (first 40,000 events; the whole day with
    ``TB_FULL=1``): exact against the model and, at the end, the golden book's live orders."""
    _run("verilator", BOARD_PARAMS, testcase="test_real_day")


def test_verilator_late_handle():
    """INSERT handles taken in stage 4 from ``handle_late``, as the book's level index gives
    them (random hazards)."""
    _run("verilator", {**TEST_PARAMS, "late_handle": True}, testcase="test_random_hazards")


@pytest.mark.slow
def test_verilator_board_default_full():
    _run("verilator", BOARD_PARAMS, full=True)


@pytest.mark.slow
def test_verilator_full():
    _run("verilator", TEST_PARAMS, full=True)


@pytest.mark.slow
def test_verilator_two_ways_short_refs():
    _run("verilator", {"rows": 32, "ways": 2, "ref_bits": 20, "handle_bits": 4})


@pytest.mark.slow
def test_icarus():
    _run("icarus", TEST_PARAMS)
