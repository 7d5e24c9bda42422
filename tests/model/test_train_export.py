"""Tests of hftaccel.model.train / export: QAT training, baselines, ONNX exports, model card, reproducibility."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("brevitas")
ort = pytest.importorskip("onnxruntime")

from hftaccel.golden import mlp as gm  # noqa: E402
from hftaccel.model import export as ex  # noqa: E402
from hftaccel.model import labels as L  # noqa: E402
from hftaccel.model import train as T  # noqa: E402
from hftaccel.spec import quant as qs  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ONNX = ROOT / "models" / "default.onnx"
DEFAULT_QONNX = ROOT / "models" / "default.qonnx.onnx"
DEFAULT_CARD = ROOT / "models" / "default.json"


def synthetic(n=1200, nf=5, seed=0):
    """A mid-price random walk and int32 features, one of them informative about the next moves."""
    rng = np.random.default_rng(seed)
    steps = rng.choice([-50.0, 0.0, 0.0, 50.0], size=n)
    mid = 2_000_000 + np.cumsum(steps)
    ahead = np.convolve(np.append(steps[1:], 0), np.ones(3), "full")[2:n + 2]
    x = rng.normal(0, 1, (n, nf)) * np.array([50, 2e3, 7, 3e5, 1e8])[:nf]
    x[:, 0] += 40 * ahead
    return np.clip(np.rint(x), -2**31, 2**31 - 1).astype(np.int32), mid


SMALL = dict(label=L.LabelConfig(horizon=3, alpha=1e-6), float_epochs=2, qat_epochs=1, batch_size=64)


def ort_out(data, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    s = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    return s.run(None, {qs.INPUT_NAME: x.astype(np.float32)})[0]


@pytest.fixture(scope="module")
def run8(tmp_path_factory):
    x, mid = synthetic()
    out = tmp_path_factory.mktemp("m") / "syn"
    return T.train(x, mid, T.TrainConfig(**SMALL), out=out, data={"source": "synthetic"}), x, mid


def test_card_and_files(run8):
    res, x, _ = run8
    card = json.loads(res.paths["card"].read_text())
    assert card == json.loads(json.dumps(ex._jsonable(res.card)))
    assert ex.read_card(res.paths["card"])["schema_version"] == qs.MODEL_CARD_SCHEMA_VERSION
    assert set(card) == set(qs.MODEL_CARD_FIELDS)
    assert card["architecture"]["layers"] == [5, 32, 16, 3]
    q = card["quantization"]
    assert (q["weight_bits"], q["act_bits"], q["bias_bits"], q["scales"], q["rounding"]) == \
        (8, 8, 32, "power_of_two", "half_to_even")
    assert q["formats"]["qcdq"]["sha256"] == ex.sha256(res.paths["qcdq"].read_bytes())
    assert q["formats"]["qonnx"]["sha256"] == ex.sha256(res.paths["qonnx"].read_bytes())
    for split in ("train", "validation", "test"):
        for model in T.MODEL_NAMES:
            m = card["metrics"][split][model]
            assert 0 <= m["macro_f1"] <= 1 and 0 <= m["accuracy"] <= 1 and -1 <= m["mcc"] <= 1
            assert np.sum(m["confusion"]) == m["n"] == card["splits"][split]["n_labelled"]
        assert card["splits"][split]["class_balance"]["n"] == card["splits"][split]["n_labelled"]
    assert card["checks"]["engine_equals_onnxruntime_opt_all"] == 1.0
    assert all(card["checks"][s]["engine_equals_brevitas"] for s in ("train", "validation", "test"))
    # splits are time ordered with the horizon as gap
    sp = card["splits"]
    assert sp["train"]["last_event"] + 3 < sp["validation"]["first_event"]
    assert sp["validation"]["last_event"] + 3 < sp["test"]["first_event"]
    # the majority baseline predicts the most frequent training class everywhere
    maj = card["metrics"]["test"]["majority"]["confusion"]
    assert sum(1 for col in np.array(maj).T if col.sum() > 0) == 1
    with pytest.raises(ValueError, match="schema_version"):
        ex.write_card(res.paths["card"].with_suffix(".bad"), {"schema_version": 0})


def test_metrics_are_recomputable(run8):
    res, x, mid = run8
    idx = res.split.test
    y = res.labels[idx]
    m = T.classification_metrics(y, gm.load(res.paths["qcdq"]).predict(x[idx]))
    assert m == res.metrics["test"]["qat"]
    from sklearn.metrics import f1_score
    yl = res.logistic.predict(T.scale_inputs(x[idx], res.input_shift))
    assert f1_score(y, yl, average="macro") == pytest.approx(res.metrics["test"]["logistic"]["macro_f1"])


def test_qcdq_graph_is_integer_engine_compatible(run8):
    import onnx

    res, x, _ = run8
    m = onnx.load_from_string(res.onnx)
    ops = {n.op_type for n in m.graph.node}
    assert ops <= {"Mul", "QuantizeLinear", "DequantizeLinear", "Clip", "Gemm", "Relu"}
    assert [i.name for i in m.graph.input] == [qs.INPUT_NAME]
    assert [o.name for o in m.graph.output] == [qs.OUTPUT_NAME]
    eng = gm.load(res.onnx)
    assert eng.layers[0]["shift"].tolist() == (res.input_shift + qs.input_exponent(8)).tolist()
    assert np.array_equal(ort_out(res.onnx, x), eng.float_output(x))


def test_qonnx_export_runs_in_qonnx(run8, monkeypatch):
    """The QONNX file, executed by qonnx's own executor, gives the engine's outputs."""
    qonnx = pytest.importorskip("qonnx")  # noqa: F841
    import qonnx.core.onnx_exec as qx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    make = qx.qonnx_make_model

    def make_ir10(graph, **kw):           # onnx 1.23 writes IR 14; onnxruntime 1.31 reads <= 13
        mdl = make(graph, **kw)
        mdl.ir_version = min(mdl.ir_version, 10)
        return mdl

    monkeypatch.setattr(qx, "qonnx_make_model", make_ir10)
    res, x, _ = run8
    m = ModelWrapper(str(res.paths["qonnx"]))
    assert {n.op_type for n in m.graph.node} >= {"Quant", "Gemm"}
    m.set_tensor_shape(m.graph.input[0].name, [1, x.shape[1]])
    m.set_tensor_shape(m.graph.output[0].name, [1, qs.N_CLASSES])
    m = cleanup_model(m)
    eng = gm.load(res.onnx)
    for row in x[:8]:
        o = qx.execute_onnx(m, {m.graph.input[0].name: row[None].astype(np.float32)})
        np.testing.assert_array_equal(o[m.graph.output[0].name], eng.float_output(row[None]))


def test_same_seed_same_bytes(run8):
    res, x, mid = run8
    again = T.train(x, mid, T.TrainConfig(**SMALL))
    assert again.onnx == res.onnx and again.qonnx == res.qonnx
    assert again.metrics == res.metrics
    other = T.train(x, mid, T.TrainConfig(**SMALL, seed=1))
    assert other.onnx != res.onnx


def test_four_bit_config_trains_and_exports():
    x, mid = synthetic(seed=2)
    res = T.train(x, mid, T.TrainConfig(**SMALL, weight_bits=4, act_bits=4, hidden=(8,)))
    eng = gm.load(res.onnx)
    assert res.card["quantization"]["weight_bits"] == 4
    assert res.card["architecture"]["layers"] == [5, 8, 3]
    dense = [ly for ly in eng.layers if ly["kind"] == "dense"]
    assert all(np.abs(ly["weight"]).max() <= 7 for ly in dense)
    assert (eng.layers[0]["lo"], eng.layers[0]["hi"]) == (-8, 7)
    assert (dense[0]["lo"], dense[0]["hi"]) == (-8, 7) and dense[0]["relu"]
    assert np.array_equal(ort_out(res.onnx, x), eng.float_output(x))
    assert res.qonnx


def test_input_shifts():
    x = np.array([[0, 1000, -3, 1 << 30], [0, -1000, 2, 5], [0, 10, 1, 7]], np.int64)
    k = T.input_shifts(x, quantile=1.0)
    assert k.tolist() == [0, 10, 2, 30]                   # ceil(log2(max |x|))
    s = T.scale_inputs(x, k)
    assert s.max() <= 1.0 and s.min() >= -1.0 and s[0, 1] == pytest.approx(1000 / 1024)


def test_config_validation():
    with pytest.raises(ValueError, match="weight_bits"):
        T.TrainConfig(weight_bits=3)
    with pytest.raises(ValueError, match="act_bits"):
        T.TrainConfig(act_bits=9)
    with pytest.raises(ValueError, match="hidden"):
        T.TrainConfig(hidden=())
    with pytest.raises(ValueError, match="mids"):
        T.train(np.zeros((10, 2), np.int32), np.zeros(9))
    with pytest.raises(ValueError, match="integer"):
        T.train(np.zeros((10, 2), np.float32), np.zeros(10))


def test_default_model_card():
    card = ex.read_card(DEFAULT_CARD)
    test = card["metrics"]["test"]
    for model in ("qat", "float_mlp", "logistic", "majority"):
        assert 0 < test[model]["macro_f1"] < 1
    # acceptance: QAT int8 within 1.0 macro-F1 point of the float MLP
    assert card["quantization"]["weight_bits"] == card["quantization"]["act_bits"] == 8
    assert abs(test["qat"]["macro_f1"] - test["float_mlp"]["macro_f1"]) <= 0.01
    assert test["qat"]["macro_f1"] > test["majority"]["macro_f1"]
    assert card["quantization"]["formats"]["qcdq"]["sha256"] == ex.sha256(DEFAULT_ONNX.read_bytes())
    assert card["quantization"]["formats"]["qonnx"]["sha256"] == ex.sha256(DEFAULT_QONNX.read_bytes())
    assert card["checks"]["engine_equals_onnxruntime_opt_all"] == 1.0
    assert card["data"]["symbol"] == "AMZN"
