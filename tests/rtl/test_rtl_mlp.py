"""MLP scorer gateware (hftaccel.rtl.mlp) against the integer engine, in cocotb.

Fast: the 16-MACs-a-cycle folded build on Verilator and the fully parallel build on Icarus
(fewer vectors; every cocotb test: AMZN sample, corners, weight reload, latency / II).
Slow: the fully parallel build on Verilator with the whole AMZN day (its ~1200 multipliers
take Verilator + GCC tens of minutes on a loaded 2-core machine), the 1-MAC folded build, and
the folded build on Icarus.
"""

import json

import pytest

pytestmark = pytest.mark.sim

amaranth = pytest.importorskip("amaranth", reason="amaranth not installed (pip install .[hw])")
cocotb = pytest.importorskip("cocotb", reason="cocotb not installed (pip install .[hw])")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from hftaccel.sim.common import run_testbench  # noqa: E402

PARALLEL = {"macs_per_cycle": None, "meta_layout": 48}
FOLDED = {"macs_per_cycle": 16, "meta_layout": 48}
FOLDED_1 = {"macs_per_cycle": 1}


def _run(params, sim="verilator", full=False, testcase=None):
    run_testbench("mlp", sim, full=full, params=params, testcase=testcase,
                  extra_env={"MLP_PARAMS": json.dumps(params)})


def test_verilator_folded():
    _run(FOLDED)


def test_icarus_parallel():
    _run(PARALLEL, sim="icarus")


@pytest.mark.slow
def test_verilator_parallel_full_day():
    _run(PARALLEL, full=True)


@pytest.mark.slow
def test_verilator_folded_1():
    _run(FOLDED_1)


@pytest.mark.slow
def test_icarus_folded():
    _run(FOLDED, sim="icarus")


def test_interface_errors():
    from hftaccel.rtl.mlp import MLP
    for bad in (0, 3, -4, 2.0, True):
        with pytest.raises(ValueError, match=repr(bad)):
            MLP(macs_per_cycle=bad)
    with pytest.raises(TypeError):
        MLP(meta_layout="meta")
    with pytest.raises(TypeError):
        MLP(model=42)


def test_interface_figures():
    """Latency / II formulas of the module docstring on the default model (19-32-16-3)."""
    from hftaccel.rtl.mlp import MLP, weight_image, weight_map
    par = MLP()
    assert (par.latency, par.ii, par.n_inputs, par.n_outputs) == (6, 1, 19, 3)
    for m, lat, ii in ((1, 1175, 608), (4, 307, 160), (16, 106, 64)):
        d = MLP(macs_per_cycle=m)
        assert (d.latency, d.ii) == (lat, ii)
    img = weight_image()
    secs = weight_map()
    assert [s["kind"] for s in secs] == ["weight", "bias"] * 3
    assert len(img) <= 1 << par.addr_width
    assert sum(s["rows"] * s["cols"] for s in secs) == 19 * 32 + 32 + 32 * 16 + 16 + 16 * 3 + 3


def test_image_checks_the_model():
    """``MLP.image`` accepts a model that differs only in weights / biases and refuses one
    whose requantization shifts differ (the shifts are built into the gateware)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from hftaccel.golden.mlp import load
    from hftaccel.rtl.mlp import MLP, weight_image
    from hftaccel.sim.common import REPO

    path = REPO / "models" / "default.onnx"
    dut = MLP(macs_per_cycle=4)
    assert np.array_equal(dut.image(), weight_image(path))
    proto = onnx.load(str(path))
    for init in proto.graph.initializer:
        if init.name == "/layers/layers.3/act_quant/export_handler/Constant_output_0":
            init.CopyFrom(numpy_helper.from_array(np.array(0.015625, np.float32), init.name))
    with pytest.raises(ValueError, match="more than weights and biases"):
        dut.image(load(proto, source="rescaled"))
