"""Tests of hftaccel.golden.mlp: the integer engine against onnxruntime (the oracle) and brevitas."""

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from hftaccel.golden import mlp as gm  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ONNX = ROOT / "models" / "default.onnx"
DEFAULT_CARD = ROOT / "models" / "default.json"


def ort_run(model, x, level=None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    if level is not None:
        so.graph_optimization_level = level
    data = model if isinstance(model, bytes) else model.SerializeToString()
    s = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x.astype(np.float32)})[0]


LEVELS = [ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_DISABLE_ALL]


# ----------------------------------------------------------------------------- primitives

def test_rne_shift_matches_float_rint():
    rng = np.random.default_rng(1)
    a = np.concatenate([rng.integers(-(1 << 40), 1 << 40, 20000), np.arange(-300, 300)])
    for n in (-3, 0, 1, 2, 5, 13, 30):
        want = np.rint(np.ldexp(a.astype(np.float64), -n)).astype(np.int64)   # RNE, exact here
        np.testing.assert_array_equal(gm.rne_shift(a, n), want)


def test_rne_shift_ties_go_to_even():
    a = np.array([-7, -5, -3, -1, 1, 3, 5, 7, 6, -6])          # /2 -> x.5 ties (and exact)
    assert gm.rne_shift(a, 1).tolist() == [-4, -2, -2, 0, 0, 2, 2, 4, 3, -3]
    assert gm.rne_shift(np.array([12, 20, -12, -20]), 3).tolist() == [2, 2, -2, -2]   # 1.5, 2.5
    # per-channel shifts
    assert gm.rne_shift(np.array([[3, 3, 3]]), np.array([0, 1, -1])).tolist() == [[3, 2, 6]]


def test_float32_grid_matches_numpy_cast():
    rng = np.random.default_rng(2)
    edges = []
    for p in range(23, 32):
        edges += [(1 << p) + d for d in range(-3, 4)] + [-(1 << p) + d for d in range(-3, 4)]
    x = np.concatenate([rng.integers(-(1 << 31), 1 << 31, 50000), np.array(edges),
                        np.array([-(1 << 31), (1 << 31) - 1, 0, 1, -1, (1 << 24) + 1, (1 << 25) + 2,
                                  (1 << 25) + 6])])
    want = x.astype(np.float32).astype(np.int64)
    np.testing.assert_array_equal(gm.float32_grid(x), want)


# ----------------------------------------------------------------------------- hand graphs

def hand_graph(*, nf=4, in_scale=2.0 ** -7, w_scale=2.0 ** -6, a_scale=2.0 ** -4, shift=None,
               extra=None, in_zp=0, w1=None, act_clip=None):
    """features -> Mul(2**-k) -> Q/DQ -> Gemm -> Relu -> Q -> [Clip] -> DQ -> Gemm -> [extra] -> logits."""
    rng = np.random.default_rng(3)
    k = np.array(shift if shift is not None else [8, 4, 0, 12][:nf], np.float32)
    w1 = (w1 if w1 is not None else rng.integers(-127, 128, (6, nf))).astype(np.int8)
    b1 = rng.integers(-3000, 3000, 6).astype(np.int32)
    w2 = rng.integers(-127, 128, (3, 6)).astype(np.int8)
    b2 = rng.integers(-3000, 3000, 3).astype(np.int32)
    f32 = lambda v: np.array(v, np.float32)  # noqa: E731
    inits = [
        numpy_helper.from_array(np.ldexp(np.ones(nf, np.float32), -k.astype(int)), "inv"),
        numpy_helper.from_array(f32(in_scale), "s_in"), numpy_helper.from_array(np.array(in_zp, np.int8), "zp8"),
        numpy_helper.from_array(np.array(0, np.int8), "zp0"),
        numpy_helper.from_array(f32(w_scale), "s_w"), numpy_helper.from_array(f32(a_scale), "s_a"),
        numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(b2, "b2"),
        numpy_helper.from_array(f32(in_scale * w_scale), "s_b1"),
        numpy_helper.from_array(f32(a_scale * w_scale), "s_b2"),
        numpy_helper.from_array(np.array(0, np.int32), "zp32"),
        numpy_helper.from_array(np.array(-8, np.int8), "clo"), numpy_helper.from_array(np.array(7, np.int8), "chi"),
    ]
    N = helper.make_node
    nodes = [
        N("Mul", ["features", "inv"], ["m"], name="in_mul"),
        N("QuantizeLinear", ["m", "s_in", "zp8"], ["q0"], name="in_q"),
        N("DequantizeLinear", ["q0", "s_in", "zp8"], ["d0"], name="in_dq"),
        N("DequantizeLinear", ["w1", "s_w", "zp0"], ["w1f"], name="w1_dq"),
        N("DequantizeLinear", ["b1", "s_b1", "zp32"], ["b1f"], name="b1_dq"),
        N("Gemm", ["d0", "w1f", "b1f"], ["g1"], name="gemm1", transB=1),
        N("Relu", ["g1"], ["r1"], name="relu1"),
        N("QuantizeLinear", ["r1", "s_a", "zp0"], ["q1"], name="act_q"),
    ]
    last = "q1"
    if act_clip:
        nodes.append(N("Clip", ["q1", "clo", "chi"], ["q1c"], name="act_clip"))
        last = "q1c"
    nodes += [
        N("DequantizeLinear", [last, "s_a", "zp0"], ["d1"], name="act_dq"),
        N("DequantizeLinear", ["w2", "s_w", "zp0"], ["w2f"], name="w2_dq"),
        N("DequantizeLinear", ["b2", "s_b2", "zp32"], ["b2f"], name="b2_dq"),
        N("Gemm", ["d1", "w2f", "b2f"], ["g2" if extra else "logits"], name="gemm2", transB=1),
    ]
    if extra:
        nodes.append(N(extra, ["g2"], ["logits"], name="odd_op"))
    g = helper.make_graph(nodes, "hand", [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", nf])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def hard_inputs(nf, n=4000, seed=4):
    """Random int32 features over many magnitudes, plus exact rounding ties and saturation."""
    rng = np.random.default_rng(seed)
    mag = rng.integers(0, 31, (n, nf))
    x = rng.integers(-(1 << 30), 1 << 30, (n, nf)) >> mag
    ties = (rng.integers(-200, 200, (200, nf)) * 2 + 1) << 7          # odd * 2**7: .5 after >> 8
    ext = np.array([[-(1 << 31)] * nf, [(1 << 31) - 1] * nf, [0] * nf, [(1 << 24) + 1] * nf])
    return np.concatenate([x, ties, ext]).astype(np.int32)


@pytest.mark.parametrize("act_clip", [False, True])
def test_hand_graph_equals_onnxruntime(act_clip):
    m = hand_graph(act_clip=act_clip)
    eng = gm.load(m)
    x = hard_inputs(4)
    got = eng.float_output(x)
    for lv in LEVELS:
        np.testing.assert_array_equal(ort_run(m, x, lv), got)
    assert eng.layers[0]["kind"] == "input"
    assert eng.layers[0]["shift"].tolist() == [1, -3, -7, 5]                      # k - 7
    assert [ly["kind"] for ly in eng.layers] == ["input", "dense", "dense"]
    assert eng.layers[1]["relu"] and int(eng.layers[1]["shift"][0]) == 13 - 4     # 2**-13 -> 2**-4
    if act_clip:
        assert (eng.layers[1]["lo"], eng.layers[1]["hi"]) == (-8, 7)
    np.testing.assert_array_equal(eng.output_exp, [-10, -10, -10])


def test_hand_graph_float32_input_rounding():
    # shifts of 30 and 26 put |x| >= 2**24 mid-range: float32(x) rounding matters, including
    # values that float32 rounds onto an exact .5 tie of the input quantizer
    m = hand_graph(shift=[30, 26, 0, 12])
    eng = gm.load(m)
    rng = np.random.default_rng(5)
    mm = rng.integers(-60, 60, (500, 1))
    near_tie = np.concatenate([(2 * mm + 1) * (1 << 22) + d for d in (-1, 1, -33, 33, 0)])
    x = np.concatenate([hard_inputs(4, 2000, seed=6), np.repeat(near_tie, 4, axis=1)]).astype(np.int64)
    x = np.clip(x, -(1 << 31), (1 << 31) - 1).astype(np.int32)
    got = eng.float_output(x)
    for lv in LEVELS:
        np.testing.assert_array_equal(ort_run(m, x, lv), got)
    # the float32 grid is needed: quantizing the raw integers would differ on some rows
    q_exact = np.clip(gm.rne_shift(x[:, 0].astype(np.int64), 30 - 7), -128, 127)
    q_f32 = np.clip(gm.rne_shift(gm.float32_grid(x[:, 0]), 30 - 7), -128, 127)
    assert np.any(q_exact != q_f32)


def test_rejects_non_power_of_two_scale():
    with pytest.raises(gm.UnsupportedGraphError, match="act_q") as e:
        gm.load(hand_graph(a_scale=0.1))
    assert e.value.node == "act_q" and "power of two" in str(e.value)
    with pytest.raises(gm.UnsupportedGraphError, match="in_mul"):
        gm.load(onnx.load_from_string(
            _replace_init(hand_graph(), "inv", np.array([0.5, 0.3, 1, 1], np.float32))))
    with pytest.raises(gm.UnsupportedGraphError, match="w1_dq"):
        gm.load(hand_graph(w_scale=3 * 2.0 ** -8))


def _replace_init(m, name, value):
    for i in m.graph.initializer:
        if i.name == name:
            i.CopyFrom(numpy_helper.from_array(value, name))
    return m.SerializeToString()


def test_rejects_unknown_op():
    with pytest.raises(gm.UnsupportedGraphError, match="odd_op") as e:
        gm.load(hand_graph(extra="Sigmoid"))
    assert "Sigmoid" in str(e.value)


def test_rejects_nonzero_zero_point():
    with pytest.raises(gm.UnsupportedGraphError, match="in_q.*zero point"):
        gm.load(hand_graph(in_zp=3))


def test_rejects_float32_inexact_accumulator():
    gm.load(hand_graph(w1=np.full((6, 4), 127)))    # 4 * 128 * 127 + bias: inside 2**24
    big = onnx.load_from_string(_replace_init(hand_graph(), "b1", np.full(6, 1 << 25, np.int32)))
    with pytest.raises(gm.UnsupportedGraphError, match="gemm1.*2\\*\\*24"):
        gm.load(big)


def test_run_checks_input():
    eng = gm.load(hand_graph())
    with pytest.raises(ValueError, match="shape"):
        eng.run(np.zeros((3, 5), np.int32))
    with pytest.raises(ValueError, match="integers"):
        eng.run(np.zeros((3, 4), np.float32))


# ----------------------------------------------------------------------------- trained models

@pytest.fixture(scope="module")
def trained():
    from hftaccel.model import labels as L
    from hftaccel.model import train as T

    rng = np.random.default_rng(0)
    n, nf = 1500, 6
    mid = 2_000_000 + np.cumsum(rng.choice([-50.0, 0, 0, 50.0], size=n))
    x = rng.normal(0, 1, (n, nf)) * np.array([100, 1e4, 3, 1e6, 40, 5e8])
    x[:, 0] += 300 * np.sign(np.convolve(np.diff(mid, append=mid[-1]), np.ones(3), "same"))
    cfg = T.TrainConfig(label=L.LabelConfig(horizon=3, alpha=1e-6), float_epochs=2, qat_epochs=1,
                        batch_size=64)
    return T.train(np.clip(x, -2**31, 2**31 - 1).astype(np.int32), mid, cfg), x.astype(np.int32)


def test_trained_model_equals_onnxruntime_on_every_sample(trained):
    res, x = trained
    eng = gm.load(res.onnx)
    xs = np.concatenate([x, hard_inputs(x.shape[1], 1000)])
    got = eng.float_output(xs)
    for lv in LEVELS:
        out = ort_run(res.onnx, xs, lv)
        assert np.all(out == got), f"{np.mean(np.all(out == got, axis=1)):.4%} of samples equal"
    np.testing.assert_array_equal(eng.run(xs).astype(np.float64) * 2.0 ** eng.output_exp, got)


def test_trained_model_equals_brevitas(trained):
    import torch

    res, x = trained
    eng = gm.load(res.onnx)
    with torch.no_grad():
        ref = res.qat_model(torch.from_numpy(x.astype(np.float32))).numpy()
    np.testing.assert_array_equal(eng.float_output(x), ref)
    # integer weights are those of brevitas's quantized tensors
    dense = [ly for ly in eng.layers if ly["kind"] == "dense"]
    import brevitas.nn as qnn
    qls = [m for m in res.qat_model.modules() if isinstance(m, qnn.QuantLinear)]
    for ly, ql in zip(dense, qls):
        qw = ql.quant_weight()
        np.testing.assert_array_equal(ly["weight"], qw.int().numpy())
        assert ly["weight"].min() >= -127 and ly["weight"].max() <= 127


def test_default_model_equals_onnxruntime_on_test_split():
    import json

    from hftaccel.model import dataset
    from hftaccel.model import labels as L
    from hftaccel.model import train as T

    card = json.loads(DEFAULT_CARD.read_text())
    feats, mids, _ = dataset.amzn_day()
    sp = card["splits"]["test"]
    idx = np.arange(sp["first_event"], sp["last_event"] + 1)
    eng = gm.load(DEFAULT_ONNX)
    x = feats[idx]
    for lv in LEVELS:
        assert np.all(ort_run(DEFAULT_ONNX.read_bytes(), x, lv) == eng.float_output(x))
    # the card's QAT test figure is the engine's on the committed file
    cfg = card["labels"]
    y = L.direction_labels(mids, L.LabelConfig(cfg["horizon"], cfg["alpha"], cfg["method"]))[idx]
    ok = y != L.NO_LABEL
    m = T.classification_metrics(y[ok], eng.predict(x[ok]))
    assert m["macro_f1"] == pytest.approx(card["metrics"]["test"]["qat"]["macro_f1"], abs=1e-12)
    assert m["confusion"] == card["metrics"]["test"]["qat"]["confusion"]


def _reference_run(engine, x):
    """The integer steps executed with the NumPy reference functions (rne_shift, float32_grid,
    int64 matmul): the semantics IntegerMLP.run's compiled pass must reproduce."""
    y = gm.float32_grid(np.asarray(x, np.int64))
    for st in engine.steps:
        if isinstance(st, gm.Requant):
            y = np.clip(gm.rne_shift(y, st.shift), st.lo, st.hi)
        elif isinstance(st, gm.Dense):
            y = y @ st.weight.T.astype(np.int64) + st.bias.astype(np.int64)
        elif isinstance(st, gm.Relu):
            y = np.maximum(y, 0)
        else:
            y = np.clip(y, st.lo, st.hi)
    return y


def test_compiled_pass_equals_numpy_reference():
    """IntegerMLP.run (batched BLAS products) and run_reference (one compiled pass per sample)
    must both equal the step-by-step NumPy semantics, including float32 rounding of large inputs
    and rounding ties in every requantization (tests/golden/test_mlp_exact_gemm.py holds the
    batched engine to the reference on adversarial models)."""
    engine = gm.load(DEFAULT_ONNX)
    rng = np.random.default_rng(0)
    n = engine.n_inputs
    x = rng.integers(-(1 << 31), 1 << 31, size=(4000, n))
    x[:1000] = rng.integers(-300, 300, size=(1000, n))  # in range of the int8 input grid
    x[1000:1100] = ((1 << 24) + 1) * rng.choice([-1, 1], size=(100, n))  # float32 ties
    x[1100:1200] = rng.integers(-8, 8, size=(100, n)) * 2 + 1
    want = _reference_run(engine, x)
    assert np.array_equal(engine.run(x), want)
    assert np.array_equal(engine.run_reference(x), want)
