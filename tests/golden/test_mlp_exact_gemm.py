"""The batched integer MLP (BLAS products in float32 / float64, or int64) against the one-sample
int64 program it replaced, onnxruntime, and exact Python-integer arithmetic.

The exactness argument (hftaccel.golden.mlp module docstring) rests on the static accumulator
bound; the adversarial models here put weights and inputs at their extremes so that the
accumulators reach the largest magnitude each arithmetic's bound allows.
"""

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from hftaccel.golden import mlp as gm  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ONNX = ROOT / "models" / "default.onnx"
LEVELS = [ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_DISABLE_ALL]


def ort_run(model: bytes, x, level):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = level
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x.astype(np.float32)})[0]


def _clip(y, lo, hi):
    """The reference's clip (``lo if v < lo else (hi if v > hi else v)``, also for lo > hi)."""
    return np.where(y < lo, lo, np.where(y > hi, hi, y))


def exact_run(engine, x):
    """The steps with the products in Python integers (no wrap-around can hide there) and the
    requantizations by :func:`rne_shift` (tested against float RNE in test_mlp.py)."""
    y = gm.float32_grid(np.asarray(x, np.int64)).astype(object)
    for st in engine.steps:
        if isinstance(st, gm.Requant):
            assert np.all(np.abs(y) < 2 ** 62)
            y = _clip(gm.rne_shift(y.astype(np.int64), st.shift), st.lo, st.hi).astype(object)
        elif isinstance(st, gm.Dense):
            y = y @ np.asarray(st.weight).astype(object).T + np.asarray(st.bias).astype(object)
        elif isinstance(st, gm.Relu):
            y = np.maximum(y, 0)
        else:
            y = _clip(y, st.lo, st.hi)
    return y


def check_all_equal(engine, x, model_bytes=None, *, exact=True):
    """run == run_reference (== exact integers, == onnxruntime at both levels when given)."""
    got = engine.run(x)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, engine.run_reference(x))
    if exact:
        assert np.array_equal(got.astype(object), exact_run(engine, x))
    if model_bytes is not None:
        want = engine.float_output(x)
        for lv in LEVELS:
            np.testing.assert_array_equal(ort_run(model_bytes, x, lv), want)
    return got


def qcdq_mlp(weights, biases, *, in_exp=0, act_exps=(), w_exp=0):
    """features -> Q/DQ (2**in_exp, int8) -> [Gemm -> Relu -> Q/DQ (2**act_exp)]* -> Gemm -> logits.

    ``weights``: int8 arrays (out, in); ``biases``: int32 (out,) in units of the layer's input
    scale times ``2**w_exp``.
    """
    f32 = lambda v: np.array(v, np.float32)  # noqa: E731
    nf = weights[0].shape[1]
    inits = [numpy_helper.from_array(f32(2.0 ** in_exp), "s_in"),
             numpy_helper.from_array(np.array(0, np.int8), "zp8"),
             numpy_helper.from_array(np.array(0, np.int32), "zp32"),
             numpy_helper.from_array(f32(2.0 ** w_exp), "s_w")]
    N = helper.make_node
    nodes = [N("QuantizeLinear", ["features", "s_in", "zp8"], ["q0"], name="in_q"),
             N("DequantizeLinear", ["q0", "s_in", "zp8"], ["d0"], name="in_dq")]
    cur, cur_exp = "d0", in_exp
    for i, (w, b) in enumerate(zip(weights, biases)):
        inits += [numpy_helper.from_array(np.asarray(w, np.int8), f"w{i}"),
                  numpy_helper.from_array(np.asarray(b, np.int32), f"b{i}"),
                  numpy_helper.from_array(f32(2.0 ** (cur_exp + w_exp)), f"s_b{i}")]
        last = i == len(weights) - 1
        nodes += [N("DequantizeLinear", [f"w{i}", "s_w", "zp8"], [f"w{i}f"], name=f"w{i}_dq"),
                  N("DequantizeLinear", [f"b{i}", f"s_b{i}", "zp32"], [f"b{i}f"], name=f"b{i}_dq"),
                  N("Gemm", [cur, f"w{i}f", f"b{i}f"], ["logits" if last else f"g{i}"],
                    name=f"gemm{i}", transB=1)]
        if not last:
            inits.append(numpy_helper.from_array(f32(2.0 ** act_exps[i]), f"s_a{i}"))
            nodes += [N("Relu", [f"g{i}"], [f"r{i}"], name=f"relu{i}"),
                      N("QuantizeLinear", [f"r{i}", f"s_a{i}", "zp8"], [f"q{i + 1}"],
                        name=f"q{i + 1}"),
                      N("DequantizeLinear", [f"q{i + 1}", f"s_a{i}", "zp8"], [f"d{i + 1}"],
                        name=f"dq{i + 1}")]
            cur, cur_exp = f"d{i + 1}", act_exps[i]
    n_out = weights[-1].shape[0]
    io = helper.make_tensor_value_info
    g = helper.make_graph(nodes, "adversarial", [io("features", TensorProto.FLOAT, ["n", nf])],
                          [io("logits", TensorProto.FLOAT, ["n", n_out])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


def extreme_rows(rng, n, nf, lo, hi):
    """Rows at the extremes: all lo, all hi, alternating, random lo/hi, plus a few small rows."""
    alt = np.where(np.arange(nf) % 2 == 0, lo, hi)
    rows = [np.full(nf, lo), np.full(nf, hi), alt, alt[::-1]]
    rows += list(rng.choice([lo, hi], size=(n, nf)))
    rows += list(rng.integers(-3, 4, size=(16, nf)))
    return np.array(rows, dtype=np.int64)


# ----------------------------------------------------------------------------- default model

@pytest.fixture(scope="module")
def amzn_features():
    from hftaccel.model import dataset
    return dataset.amzn_day()[0]


def test_default_model_runs_float32_within_the_spec_bound():
    eng = gm.load(DEFAULT_ONNX)
    plan = eng.plan()
    assert plan.dtype == np.float32
    assert 0 < plan.worst <= 2 ** gm.FLOAT32_EXACT_BITS


def test_default_model_on_real_features(amzn_features, monkeypatch):
    eng = gm.load(DEFAULT_ONNX)
    x = amzn_features
    got = check_all_equal(eng, x, DEFAULT_ONNX.read_bytes(), exact=False)
    # the same through small blocks with a remainder, and through other integer dtypes/layouts
    monkeypatch.setattr(gm, "CHUNK_ROWS", 1000)
    np.testing.assert_array_equal(eng.run(x), got)
    np.testing.assert_array_equal(eng.run(x.astype(np.int64)), got)
    xf = np.asfortranarray(x)
    np.testing.assert_array_equal(eng.run(xf), got)
    np.testing.assert_array_equal(eng.run(x[::-1])[::-1], got)
    for n in (gm.SMALL_BATCH - 1, gm.SMALL_BATCH, 1000, 1001, 2999):
        np.testing.assert_array_equal(eng.run(x[:n]), got[:n])


def test_default_model_on_extreme_features():
    """The input quantizer saturates, and float32 rounds large features, on every row."""
    eng = gm.load(DEFAULT_ONNX)
    rng = np.random.default_rng(7)
    x = extreme_rows(rng, 3000, eng.n_inputs, -(1 << 31), (1 << 31) - 1)
    x = np.concatenate([x, rng.integers(-(1 << 31), 1 << 31, (3000, eng.n_inputs))])
    x = x.astype(np.int32)
    check_all_equal(eng, x, DEFAULT_ONNX.read_bytes(), exact=False)


# ----------------------------------------------------------------------------- float32 at the bound

def test_float32_accumulators_at_two_to_the_24():
    """1024 int8 inputs times weights of -128 / 127: the first layer's accumulators reach 2**24
    exactly (-128 * -128 * 1024), the largest magnitude load() accepts, and so does the output
    accumulator (32 saturated activations of 127 times 127, plus its bias); every other row of
    weights and inputs is at the int8 extremes too."""
    rng = np.random.default_rng(11)
    nf, hidden = 1024, 64
    w1 = rng.choice(np.array([-128, 127], np.int8), size=(hidden, nf))
    w1[:32] = -128
    b1 = np.zeros(hidden, np.int32)
    w2 = rng.choice(np.array([-128, 127], np.int8), size=(3, hidden))
    w2[0, :32], w2[0, 32:], w2[2] = 127, 0, -128
    b2 = np.array([2 ** 24 - 32 * 127 * 127, 0, -(2 ** 24 - hidden * 128 * 127)], np.int32)
    model = qcdq_mlp([w1, w2], [b1, b2], in_exp=0, act_exps=[13])
    eng = gm.load(model)
    assert eng.plan().dtype == np.float32 and eng.plan().worst == 2 ** 24
    x = extreme_rows(rng, 1500, nf, -128, 127)
    x = np.concatenate([x, extreme_rows(rng, 200, nf, -(1 << 31), (1 << 31) - 1)]).astype(np.int32)
    got = check_all_equal(eng, x, model, exact=False)
    # the bound is reached by the all -128 row, in both layers (the output is the accumulator)
    acc1 = x[:1].astype(np.int64) @ eng.steps[1].weight.T + eng.steps[1].bias
    assert acc1.max() == 2 ** 24 and got[0, 0] == 2 ** 24
    assert np.abs(got).max() == 2 ** 24


def test_load_rejects_one_past_the_float32_bound():
    w1 = np.full((2, 1024), -128, np.int8)
    model = qcdq_mlp([w1, np.full((3, 2), 1, np.int8)], [np.array([1, 0], np.int32),
                                                          np.zeros(3, np.int32)], act_exps=[13])
    with pytest.raises(gm.UnsupportedGraphError, match="gemm0.*2\\*\\*24"):
        gm.load(model)


# ----------------------------------------------------------------------------- float64 and int64

def hand_mlp(w1, b1, shift1, w2, b2, *, in_shift=None, in_lo=-128, in_hi=127, relu=True):
    """An IntegerMLP built from steps (no ONNX graph: load() would reject these bounds)."""
    nf = w1.shape[1]
    steps = []
    if in_shift is not None:
        steps.append(gm.Requant("in", np.full(nf, in_shift, np.int64), in_lo, in_hi))
    steps.append(gm.Dense("d1", np.asarray(w1, np.int64), np.asarray(b1, np.int64)))
    if relu:
        steps.append(gm.Relu("r1"))
    steps += [gm.Requant("q1", np.asarray(shift1, np.int64), -128, 127),
              gm.Dense("d2", np.asarray(w2, np.int64), np.asarray(b2, np.int64))]
    return gm.IntegerMLP(steps=steps, n_inputs=nf, output_exp=np.zeros(w2.shape[0], np.int64),
                         source="<hand>")


def test_float64_path_at_two_to_the_53():
    """int16 activations times odd weights of +-(2**29 - 1) over 256 inputs plus a bias: the
    accumulator reaches 2**53, beyond float32 (which the test shows would round) and at the
    float64 bound."""
    rng = np.random.default_rng(13)
    nf, hidden = 256, 8
    wmax = (1 << 29) - 1
    w1 = rng.choice([-wmax, wmax], size=(hidden, nf))
    w1[0] = -wmax
    b1 = np.full(hidden, 2 ** 53 - nf * (1 << 15) * wmax)
    b1[1::2] *= -1
    w2 = rng.integers(-127, 128, (3, hidden))
    eng = hand_mlp(w1, b1, 46, w2, np.zeros(3), in_shift=0, in_lo=-(1 << 15), in_hi=(1 << 15) - 1)
    plan = eng.plan()
    assert plan.dtype == np.float64 and plan.worst == 2 ** 53
    x = extreme_rows(rng, 1000, nf, -(1 << 15), (1 << 15) - 1)
    x = np.concatenate([x[:600], rng.integers(-(1 << 15), 1 << 15, (300, nf)),
                        rng.integers(-40, 40, (300, nf))])          # small: rounding ties
    x = x.astype(np.int32)
    check_all_equal(eng, x)
    # the accumulators themselves as the output (every low bit shows): 2**53 is reached, and
    # float32 arithmetic would round them
    acc_only = gm.IntegerMLP(steps=eng.steps[:2], n_inputs=nf,
                             output_exp=np.zeros(hidden, np.int64))
    assert acc_only.plan().dtype == np.float64
    acc = check_all_equal(acc_only, x)
    assert acc[0, 0] == 2 ** 53 and np.abs(acc).max() == 2 ** 53
    a32 = x.astype(np.float32) @ w1.T.astype(np.float32) + b1.astype(np.float32)
    assert np.any(a32.astype(np.float64) != acc)


def test_int64_path_beyond_two_to_the_53():
    """A Dense straight on the raw features (|float32(x)| <= 2**31) with odd weights of
    +-(2**26 - 1) over 16 inputs: accumulators up to about 2**61, beyond float64 (which the test
    shows would round); the engine runs int64."""
    rng = np.random.default_rng(17)
    nf, hidden = 16, 8
    wmax = (1 << 26) - 1
    w1 = rng.choice([-wmax, wmax], size=(hidden, nf))
    w1[0] = wmax
    w2 = rng.integers(-127, 128, (3, hidden))
    eng = hand_mlp(w1, np.zeros(hidden), 54, w2, rng.integers(-1000, 1000, 3))
    plan = eng.plan()
    assert plan.dtype == np.int64 and plan.worst == nf * (1 << 31) * wmax > 2 ** 60
    x = extreme_rows(rng, 1000, nf, -(1 << 31), (1 << 31) - 1)
    mixed = rng.integers(-(1 << 31), 1 << 31, (1000, nf)) >> rng.integers(0, 31, (1000, nf))
    x = np.concatenate([x, mixed]).astype(np.int32)     # large and small features in one row
    check_all_equal(eng, x)
    # the accumulators as the output: the bound is reached (all -2**31 row), and float64
    # arithmetic would round them
    acc_only = gm.IntegerMLP(steps=eng.steps[:1], n_inputs=nf,
                             output_exp=np.zeros(hidden, np.int64))
    assert acc_only.plan().dtype == np.int64
    acc = check_all_equal(acc_only, x)
    assert np.abs(acc).max() == plan.worst
    a64 = gm.float32_grid(x).astype(np.float64) @ w1.T.astype(np.float64)
    assert np.any(a64 != acc.astype(np.float64))


@pytest.mark.parametrize("case", ["degenerate_clip", "wide_shift", "inexact_weight", "lone_steps",
                                  "float32_input"])
def test_other_int64_and_fused_step_cases(case, monkeypatch):
    """Models the float blocks must not take (reference semantics only), element-wise steps
    that follow no Dense, and the float32 rounding of large inputs, all equal to the reference
    and through several blocks."""
    rng = np.random.default_rng(19)
    nf, hidden = 6, 5
    w1 = rng.integers(-127, 128, (hidden, nf))
    w2 = rng.integers(-127, 128, (3, hidden))
    eng = hand_mlp(w1, rng.integers(-3000, 3000, hidden), 6, w2, np.zeros(3), in_shift=8)
    steps = list(eng.steps)
    x = np.concatenate([extreme_rows(rng, 500, nf, -(1 << 31), (1 << 31) - 1),
                        rng.integers(-(1 << 16), 1 << 16, (2000, nf))])
    if case == "degenerate_clip":
        steps.insert(3, gm.Clip("c", 2000, -2000))                 # lo > hi: lo below, else hi
        want = np.int64
    elif case == "wide_shift":
        steps[0] = gm.Requant("in", np.full(nf, 63, np.int64), -128, 127)
        want = np.int64
    elif case == "inexact_weight":
        # input channel 0 is always 0 (shift 62), so its weights do not count in the bound,
        # but 2**24 + 1 is not a float32: the model must run in float64
        steps[0] = gm.Requant("in", np.array([62] + [8] * (nf - 1), np.int64), -128, 127)
        w = steps[1].weight.copy()
        w[:, 0] = (1 << 24) + 1
        steps[1] = gm.Dense("d1", w, steps[1].bias)
        want = np.float64
    elif case == "lone_steps":
        steps[4:4] = [gm.Clip("c", -100, 100), gm.Relu("r"), gm.Requant("q", np.int64(1), -50, 50)]
        want = np.float32
    else:
        # features of 2**24 .. 2**25 that float32 rounds, onto or off a .5 tie of the shift by 23
        steps[0] = gm.Requant("in", np.full(nf, 23, np.int64), -128, 127)
        m = rng.integers(-60, 60, (400, nf))
        x = np.concatenate([x] + [(2 * m + 1) * (1 << 22) + d for d in (-1, 1, -33, 33, 0)])
        assert np.any(gm.rne_shift(x, 23) != gm.rne_shift(gm.float32_grid(x), 23))
        want = np.float32
    eng = gm.IntegerMLP(steps=steps, n_inputs=nf, output_exp=np.zeros(3, np.int64), source="<hand>")
    assert eng.plan().dtype == want
    monkeypatch.setattr(gm, "CHUNK_ROWS", 700)
    check_all_equal(eng, x.astype(np.int32), exact=case != "wide_shift")
