"""MLP scorer gateware (hftaccel.rtl.mlp) against the integer engine, in cocotb.

Fast: the 16-MACs-a-cycle folded build on Verilator, the fully parallel build on Icarus
(fewer vectors; every cocotb test: AMZN sample, corners, weight reload, latency / II), and the
compiled-weights build on Verilator with the default model and with the directed edge model
(``hftaccel.sim.test_mlp.edge_model``).
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
COMPILED = {"weights": "compiled", "meta_layout": 48}


def _run(params, sim="verilator", full=False, testcase=None):
    run_testbench("mlp", sim, full=full, params=params, testcase=testcase,
                  extra_env={"MLP_PARAMS": json.dumps(params)})


def test_verilator_folded():
    _run(FOLDED)


def test_icarus_parallel():
    _run(PARALLEL, sim="icarus")


# the compiled netlist (about 30k named wires) takes Verilator over half an hour to build on 2
# cores: these run with the slow tests; the compiled arithmetic is checked against the engine
# in Amaranth's simulator below (test_compiled_small_models)
@pytest.mark.slow
def test_verilator_compiled():
    _run(COMPILED)


def _edge_model_path():
    from hftaccel.sim.common import REPO
    from hftaccel.sim.test_mlp import edge_model
    path = REPO / "build" / "sim" / "mlp-edge-model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    edge_model(path)
    return str(path)


@pytest.mark.slow
def test_verilator_compiled_edges():
    _run({"weights": "compiled", "model": _edge_model_path()})


@pytest.mark.slow
def test_verilator_compiled_full_day():
    _run(COMPILED, full=True)


@pytest.mark.slow
def test_icarus_compiled():
    _run(COMPILED, sim="icarus")


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
    with pytest.raises(ValueError, match="'rom'"):
        MLP(weights="rom")
    with pytest.raises(ValueError, match="16"):
        MLP(weights="compiled", macs_per_cycle=16)


def test_csd_digits():
    """Canonical signed digits: exact, no two adjacent non-zero digits, no more digits than
    the binary form, for every int8 and int9 weight."""
    from hftaccel.rtl.mlp import _csd
    for w in range(-256, 256):
        d = _csd(w)
        assert sum(s * (1 << e) for s, e in d) == w
        es = [e for _, e in d]
        assert all(b - a >= 2 for a, b in zip(es, es[1:]))
        assert len(d) <= bin(abs(w)).count("1")
    assert max(len(_csd(w)) for w in range(-128, 128)) == 4


def test_compiled_thresholds():
    """The saturation thresholds of the compiled requantization are those of rne + clip."""
    from hftaccel.rtl.mlp import _rne, _thresholds
    for n in range(-3, 9):
        for lo, hi in ((-128, 127), (0, 127), (-3, 5), (1, 1)):
            xl, xh = _thresholds(n, lo, hi)
            for v in range(xl - 300, xh + 300):
                r = _rne(v, n)
                assert (r < lo) == (v < xl) and (r > hi) == (v > xh), (n, lo, hi, v)


def test_compiled_netlist():
    """Compiled build of the default model: latency <= 8 at II 1, and no multiplier or
    comparator cell (Yosys maps every ``*`` to a MULT18X18D; comparisons are carry chains)."""
    from amaranth.back import rtlil
    from hftaccel.rtl.mlp import MLP
    dut = MLP(weights="compiled", meta_layout=48)
    assert dut.latency <= 8 and dut.ii == 1
    text = rtlil.convert(dut)
    for cell in ("$mul", "$lt", "$le", "$gt", "$ge", "$macc"):
        assert f"cell {cell} " not in text, cell


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


def _small_model(seed: int):
    """A random 5-6-4-3 integer MLP exercising the compiled build's other paths: per-channel
    shifts (negative, zero, positive), a layer without ReLU and with a Clip after its
    Requant, a last layer with a ReLU (one more stage), zero weights and int8 extremes."""
    import numpy as np

    from hftaccel.golden import mlp as gm
    rng = np.random.default_rng(seed)

    def weights(o, n):
        w = rng.integers(-128, 128, (o, n))
        w[rng.random((o, n)) < 0.3] = 0
        w[0] = 0
        w[:, -1] = 0
        w[1, 0], w[1, 1] = -128, 127
        return w.astype(np.int64)

    steps = [gm.Requant("q", rng.integers(-1, 12, 5), -128, 127),
             gm.Dense("d0", weights(6, 5), rng.integers(-3000, 3000, 6)),
             gm.Relu("r0"), gm.Requant("q0", np.array([7, 6, 0, -1, 9, 7]), -128, 127),
             gm.Dense("d1", weights(4, 6), rng.integers(-3000, 3000, 4)),
             gm.Requant("q1", np.array([5, 8, 3, 6]), -128, 127), gm.Clip("c1", -50, 60),
             gm.Dense("d2", weights(3, 4), rng.integers(-3000, 3000, 3)), gm.Relu("r2")]
    return gm.IntegerMLP(steps=steps, n_inputs=5, output_exp=np.zeros(3, np.int64),
                         source=f"small{seed}")


@pytest.mark.parametrize("seed", [1, 2])
def test_compiled_small_models(seed):
    """Amaranth simulation of the compiled build of random small models equals the engine on
    random and near-tie vectors (every stage of the requantization, both signs of every
    weight digit)."""
    import numpy as np
    from amaranth.sim import Simulator

    from hftaccel.rtl.mlp import MLP
    eng = _small_model(seed)
    dut = MLP(model=eng, weights="compiled")
    rng = np.random.default_rng(seed)
    sh = eng.steps[0].shift
    x = np.concatenate([
        rng.integers(-(1 << 31), 1 << 31, (100, 5)),
        (rng.integers(-200, 200, (200, 5)) << np.maximum(sh, 0)) + rng.integers(-2, 3, (200, 5)),
        np.exp2(rng.uniform(0, 20, (100, 5))).astype(np.int64) * rng.choice([-1, 1], (100, 5))])
    x = np.clip(x, -(1 << 31), (1 << 31) - 1)
    want = eng.run(x)
    got = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for k in range(len(x) + dut.latency + 2):
            ctx.set(dut.i.valid, k < len(x))
            for f in range(5):
                ctx.set(dut.i.payload.x[f], int(x[min(k, len(x) - 1), f]))
            await ctx.tick()
            if ctx.get(dut.o.valid):
                got.append([ctx.get(dut.o.payload.scores[j]) for j in range(3)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert dut.latency == 1 + sum(dut.layer_cycles) + 1
    assert np.array_equal(np.array(got), want)
