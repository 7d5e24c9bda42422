"""Best-level windows of the block-RAM book (hftaccel.rtl.top_levels) cocotb testbench, run
through cocotb's runner: 4 slots, depth 4, window 6 in the fast build (so windows overflow and
refills are needed within a short stream); the slow variants repeat the tests with the long
streams (``TB_FULL=1``), at the board's depth 8 / window 12, and on Icarus.
"""

import json

import pytest

pytestmark = pytest.mark.sim

amaranth = pytest.importorskip("amaranth", reason="amaranth not installed (pip install .[hw])")
cocotb = pytest.importorskip("cocotb", reason="cocotb not installed (pip install .[hw])")

from hftaccel.sim.common import run_testbench  # noqa: E402

TEST_PARAMS = {"slots": 4, "depth": 4, "window": 6}


def _run(sim, params, full=False):
    run_testbench("top_levels", sim, full=full, params=params,
                  extra_env={"TOP_LEVELS_PARAMS": json.dumps(params)})


def test_verilator():
    _run("verilator", TEST_PARAMS)


@pytest.mark.slow
def test_verilator_full():
    _run("verilator", TEST_PARAMS, full=True)


@pytest.mark.slow
def test_verilator_board_depth():
    _run("verilator", {"slots": 8, "depth": 8, "window": 12})


@pytest.mark.slow
def test_icarus():
    _run("icarus", TEST_PARAMS)
