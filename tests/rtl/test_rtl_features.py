"""Features gateware (hftaccel.rtl.features) cocotb testbench, run through cocotb's runner.

The fast test builds the default depth with a 32-bit meta pass-through and 16 symbols and runs
the first AMZN records, a synthetic multi-symbol stream, random extreme records and the
latency / initiation-interval check; the slow ones run the whole AMZN day and longer streams,
the shortest latency setting with one symbol, and Icarus.
"""

import json

import pytest

pytestmark = pytest.mark.sim

amaranth = pytest.importorskip("amaranth", reason="amaranth not installed (pip install .[hw])")
cocotb = pytest.importorskip("cocotb", reason="cocotb not installed (pip install .[hw])")

from hftaccel.sim.common import run_testbench  # noqa: E402

TEST_PARAMS = {"meta_layout": 32, "depth": 5}


def _run(sim, params, full=False, testcase=None):
    run_testbench("features", sim, full=full, params=params, testcase=testcase,
                  extra_env={"FEATURES_PARAMS": json.dumps(params)})


def test_verilator():
    _run("verilator", TEST_PARAMS)


@pytest.mark.slow
def test_verilator_full():
    _run("verilator", TEST_PARAMS, full=True)


@pytest.mark.slow
def test_verilator_min_latency():
    from hftaccel.rtl.features import MIN_LATENCY
    _run("verilator", {"n_symbols": 1, "depth": 5, "latency": MIN_LATENCY})


@pytest.mark.slow
def test_icarus():
    _run("icarus", TEST_PARAMS)
