"""Price level table gateware (hftaccel.rtl.level_table) cocotb testbench, run through cocotb's
runner.

The test build uses 64 rows x 4 ways (256 levels) so rows fill and every forwarding path is hit
within a short stream; the board default (2048 x 4, 8,192 levels, 256 slots) replays the AMZN
day against the golden book's levels; the slow variants repeat the tests with the long streams
(``TB_FULL=1``), with 2 ways and 2 slots, and on Icarus.
"""

import json

import pytest

pytestmark = pytest.mark.sim

amaranth = pytest.importorskip("amaranth", reason="amaranth not installed (pip install .[hw])")
cocotb = pytest.importorskip("cocotb", reason="cocotb not installed (pip install .[hw])")

from hftaccel.sim.common import run_testbench  # noqa: E402

TEST_PARAMS = {"rows": 64, "ways": 4, "slot_bits": 3, "ctx_bits": 6}

#: The board default: 8,192 levels of 256 slots (36 EBR), as
#: ``hftaccel build --stage level_table`` builds it.
BOARD_PARAMS = {"rows": 2048, "ways": 4, "slot_bits": 8}


def _run(sim, params, full=False, testcase=None):
    run_testbench("level_table", sim, full=full, params=params, testcase=testcase,
                  extra_env={"LEVEL_TABLE_PARAMS": json.dumps(params)})


def test_verilator():
    _run("verilator", TEST_PARAMS)


def test_verilator_board_default_real_day():
    """The board-default table on the AMZN day (first 40,000 events; the whole day with
    ``TB_FULL=1``): exact against the model and, at the end, every level equals the golden
    book's."""
    _run("verilator", BOARD_PARAMS, testcase="test_real_day")


@pytest.mark.slow
def test_verilator_board_default_full():
    _run("verilator", BOARD_PARAMS, full=True)


@pytest.mark.slow
def test_verilator_full():
    _run("verilator", TEST_PARAMS, full=True)


@pytest.mark.slow
def test_verilator_two_ways_two_slots():
    _run("verilator", {"rows": 32, "ways": 2, "slot_bits": 1, "shares_bits": 40,
                       "orders_bits": 6})


@pytest.mark.slow
def test_icarus():
    _run("icarus", TEST_PARAMS)
