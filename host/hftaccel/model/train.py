"""Quantization-aware training of the mid-price direction MLP, baselines, metrics and model card.

``train(features, mids, config)`` labels the events (:mod:`hftaccel.model.labels`), splits them
by time, fits four models on the same split -- the QAT MLP (torch + brevitas, power-of-two
scales, :mod:`hftaccel.spec.quant`), the same MLP in float, a logistic regression
(scikit-learn) and the majority class -- and reports macro-F1, accuracy, MCC and the confusion
matrix per split. The QAT model's figures are those of the exported QCDQ ONNX graph run by the
integer engine (:mod:`hftaccel.golden.mlp`), i.e. of the model that is deployed.

Input scaling: feature ``f`` (an int32 fixed-point integer, :mod:`hftaccel.spec.features`) is
multiplied by ``2**-k_f`` (exact) and quantized with scale ``2**-(act_bits-1)``, i.e.
``q = clip(rne(x / 2**(k_f - act_bits + 1)))``: a per-feature arithmetic shift with saturation.
``k_f = ceil(log2(quantile(|x_f|, input_quantile)))`` on the training block, so that the bulk of
the feature spans [-1, 1).

Reproducible: one thread, seeded torch / NumPy / scikit-learn; the same inputs and seed give the
same ONNX bytes.
"""

from __future__ import annotations

import copy
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hftaccel.model import labels as lab
from hftaccel.spec import quant as qs

__all__ = ["TrainConfig", "TrainResult", "build_quant_mlp", "build_float_mlp", "input_shifts", "scale_inputs",
           "classification_metrics", "train"]

MODEL_NAMES = ("qat", "float_mlp", "logistic", "majority")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (recorded in the model card).

    Attributes
    ----------
    label : LabelConfig
        Horizon k (events), threshold alpha, method.
    fractions : tuple of 3 floats
        Train / validation / test shares of the events, in time order.
    hidden : tuple of int
        Hidden layer widths.
    weight_bits, act_bits : int
        Bit widths (:data:`~hftaccel.spec.quant.MIN_BITS` .. :data:`~hftaccel.spec.quant.MAX_BITS`).
    float_epochs, qat_epochs : int
        Epochs of the float MLP and of QAT fine-tuning (QAT starts from the float weights).
    batch_size : int
    lr, qat_lr : float
        Adam learning rates.
    weight_decay : float
    class_weight : str
        ``"balanced"`` (inverse train frequency in the loss and the logistic regression) or ``"none"``.
    input_quantile : float
        Quantile of ``|x_f|`` on the train block mapped to 1.0 by the input shift.
    seed : int
    """

    label: lab.LabelConfig = lab.LabelConfig()
    fractions: tuple = (0.6, 0.2, 0.2)
    hidden: tuple = qs.DEFAULT_HIDDEN
    weight_bits: int = qs.DEFAULT_WEIGHT_BITS
    act_bits: int = qs.DEFAULT_ACT_BITS
    float_epochs: int = 12
    qat_epochs: int = 6
    batch_size: int = 256
    lr: float = 3e-3
    qat_lr: float = 1e-3
    weight_decay: float = 1e-5
    class_weight: str = "balanced"
    input_quantile: float = 0.999
    seed: int = 0

    def __post_init__(self):
        qs.check_bits(self.weight_bits, "weight_bits")
        qs.check_bits(self.act_bits, "act_bits")
        if not self.hidden or any((not isinstance(h, int)) or h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty tuple of positive ints, got {self.hidden!r}")
        if self.class_weight not in ("balanced", "none"):
            raise ValueError(f"class_weight must be 'balanced' or 'none', got {self.class_weight!r}")
        if not 0 < self.input_quantile <= 1:
            raise ValueError(f"input_quantile must be in (0, 1], got {self.input_quantile!r}")
        if self.float_epochs < 1 or self.qat_epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["fractions"] = list(self.fractions)
        return d


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    qat_model : torch.nn.Module
        From :func:`build_quant_mlp`.
    float_model : torch.nn.Module
        From :func:`build_float_mlp`.
    logistic : sklearn.pipeline.Pipeline
    engine : hftaccel.golden.mlp.IntegerMLP
        The integer engine compiled from ``onnx``.
    onnx, qonnx : bytes
        QCDQ and QONNX exports.
    card : dict
        The model card.
    metrics : dict
        ``metrics[split][model]`` = :func:`classification_metrics` output.
    input_shift : np.ndarray, int64 (n_features,)
    labels : np.ndarray, int8 (n,)
    split : hftaccel.model.labels.Split
        Event indices of each block (labelled events only).
    paths : dict
        Written files (``qcdq``, ``qonnx``, ``card``), empty when ``out`` was not given.
    """

    qat_model: object
    float_model: object
    logistic: object
    engine: object
    onnx: bytes
    qonnx: bytes
    card: dict
    metrics: dict
    input_shift: np.ndarray
    labels: np.ndarray
    split: lab.Split
    paths: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- models

def _torch():
    import torch
    return torch


def input_shifts(x_train: np.ndarray, quantile: float = 0.999) -> np.ndarray:
    """Per-feature shift ``k_f = ceil(log2(quantile(|x_f|)))`` (0 for all-zero features).

    Parameters
    ----------
    x_train : np.ndarray, integer, shape (n, F)

    Returns
    -------
    np.ndarray, int64, shape (F,)
        Clipped to [INPUT_SHIFT_MIN, INPUT_SHIFT_MAX] of :mod:`hftaccel.spec.quant`.
    """
    a = np.abs(np.asarray(x_train, dtype=np.float64))
    q = np.quantile(a, quantile, axis=0, method="higher") if a.shape[0] else np.zeros(a.shape[1])
    q = np.where(q > 0, q, np.max(a, axis=0, initial=0.0))
    k = np.where(q > 0, np.ceil(np.log2(np.maximum(q, 1e-300))), 0)
    return np.clip(k, qs.INPUT_SHIFT_MIN, qs.INPUT_SHIFT_MAX).astype(np.int64)


def scale_inputs(x: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Float view of the features the MLPs see: ``clip(float32(x) * 2**-shift, -1, 1)``, float32."""
    return np.clip(np.ldexp(np.asarray(x, dtype=np.float32), -shift.astype(np.int32)), -1.0, 1.0
                   ).astype(np.float32)


def _quantizers(act_bits: int):
    from brevitas.inject.enum import ScalingImplType
    from brevitas.quant import Int8ActPerTensorFixedPoint

    class InputQuant(Int8ActPerTensorFixedPoint):
        """Fixed input scale 2**-(bits-1): [-1, 1) in ``act_bits`` bits."""

        scaling_impl_type = ScalingImplType.CONST
        scaling_init = 1.0
        bit_width = act_bits

    return InputQuant


def build_quant_mlp(n_features: int, hidden, weight_bits: int, act_bits: int, input_shift: np.ndarray):
    """Build the brevitas QAT MLP: ``Mul(2**-k) -> QuantIdentity -> [QuantLinear -> QuantReLU]* -> QuantLinear``.

    Weights: ``Int8WeightPerTensorFixedPoint`` at ``weight_bits`` (narrow range), activations
    ``Int8ActPerTensorFixedPoint`` at ``act_bits``, biases ``Int32Bias`` (scale = input scale *
    weight scale), all scales powers of two. Input float32 ``(n, n_features)`` = feature
    integers; output float32 logits ``(n, N_CLASSES)``.
    """
    torch = _torch()
    import brevitas.nn as qnn
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Int32Bias

    in_q = _quantizers(act_bits)

    class _QuantMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("input_scale", torch.from_numpy(
                np.ldexp(np.ones(n_features, np.float32), -input_shift.astype(np.int32))))
            self.input_quant = qnn.QuantIdentity(act_quant=in_q, return_quant_tensor=True)
            layers = []
            prev = n_features
            for h in hidden:
                layers.append(qnn.QuantLinear(prev, h, bias=True, weight_quant=Int8WeightPerTensorFixedPoint,
                                              weight_bit_width=weight_bits, bias_quant=Int32Bias,
                                              return_quant_tensor=True))
                layers.append(qnn.QuantReLU(act_quant=Int8ActPerTensorFixedPoint, bit_width=act_bits,
                                            return_quant_tensor=True))
                prev = h
            layers.append(qnn.QuantLinear(prev, qs.N_CLASSES, bias=True,
                                          weight_quant=Int8WeightPerTensorFixedPoint,
                                          weight_bit_width=weight_bits, bias_quant=Int32Bias,
                                          return_quant_tensor=False))
            self.layers = torch.nn.Sequential(*layers)

        def forward(self, x):
            return self.layers(self.input_quant(x * self.input_scale))

    return _QuantMLP()


def build_float_mlp(n_features: int, hidden):
    """The same MLP in float (torch ``Linear``/``ReLU``); input = :func:`scale_inputs` output."""
    torch = _torch()
    layers, prev = [], n_features
    for h in hidden:
        layers += [torch.nn.Linear(prev, h), torch.nn.ReLU()]
        prev = h
    layers.append(torch.nn.Linear(prev, qs.N_CLASSES))
    return torch.nn.Sequential(*layers)


def _linears(model):
    torch = _torch()
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


# ----------------------------------------------------------------------------- metrics

def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Macro-F1, accuracy, MCC and confusion matrix (rows = true class, columns = predicted).

    Returns
    -------
    dict
        ``{"n", "macro_f1", "accuracy", "mcc", "confusion": [[int]*3]*3}`` (scores in [0, 1],
        MCC in [-1, 1]; classes in :data:`~hftaccel.spec.quant.CLASS_NAMES` order).
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, matthews_corrcoef

    cls = list(range(qs.N_CLASSES))
    return {
        "n": int(len(y_true)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=cls, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
        "confusion": confusion_matrix(y_true, y_pred, labels=cls).tolist(),
    }


def _macro_f1(y, p):
    from sklearn.metrics import f1_score
    return float(f1_score(y, p, labels=list(range(qs.N_CLASSES)), average="macro", zero_division=0))


# ----------------------------------------------------------------------------- training

def _fit(model, xtr, ytr, xva, yva, *, epochs, lr, cfg, class_w, seed):
    """Adam + (weighted) cross-entropy; keeps the epoch with the best validation macro-F1."""
    torch = _torch()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_w)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr.astype(np.int64))
    xv = torch.from_numpy(xva)
    best, best_state, n = -1.0, None, xt.shape[0]
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            f1 = _macro_f1(yva, model(xv).argmax(1).numpy())
        if f1 > best:
            best, best_state = f1, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return model


def _versions() -> dict:
    import brevitas
    import onnx
    import onnxruntime
    import sklearn
    torch = _torch()
    return {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "brevitas": brevitas.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "scikit-learn": sklearn.__version__}


def _feature_spec(n_features: int, feature_spec: dict | None) -> dict:
    if feature_spec is not None:
        return dict(feature_spec)
    try:
        from hftaccel.spec import features as fs
    except ImportError:                                    # pragma: no cover
        fs = None
    if fs is not None and fs.N_FEATURES == n_features:
        return {"version": fs.FEATURE_SPEC_VERSION, "names": list(fs.FEATURE_NAMES),
                "q_formats": {k: list(v) for k, v in fs.FEATURE_Q.items()}}
    return {"version": None, "names": [f"f{i}" for i in range(n_features)]}


def train(features: np.ndarray, mids: np.ndarray, config: TrainConfig = TrainConfig(), *,
          out: str | Path | None = None, data: dict | None = None,
          feature_spec: dict | None = None) -> TrainResult:
    """Label, split, train QAT MLP + baselines, export ONNX (QCDQ and QONNX), build the model card.

    Parameters
    ----------
    features : np.ndarray, int32, shape (n, F)
        Feature integers of one symbol's events in time order (``hftaccel.golden.features``).
    mids : np.ndarray, float, shape (n,)
        Mid price after each event, 1/10,000 USD (NaN where a side is empty).
    config : TrainConfig
    out : path-like, optional
        Path prefix: writes ``<out>.onnx`` (QCDQ), ``<out>.qonnx.onnx`` and ``<out>.json`` (card).
    data : dict, optional
        Description of the data for the card (source, symbol, date, ...).
    feature_spec : dict, optional
        ``{"version", "names", ...}`` for the card; by default :mod:`hftaccel.spec.features`
        when its ``N_FEATURES`` equals F.

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        Shapes disagree, features are not integers, or a split block has no labelled event.
    """
    torch = _torch()
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from hftaccel.golden import mlp as gmlp
    from hftaccel.model import export as ex

    x = np.asarray(features)
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"features must be an integer (n, F) matrix, got {x.dtype} {x.shape}")
    mids = np.asarray(mids, dtype=np.float64)
    if mids.shape != (x.shape[0],):
        raise ValueError(f"mids must have shape ({x.shape[0]},), got {mids.shape}")
    if x.size and (x.min() < -(1 << 31) or x.max() >= (1 << 31)):
        raise ValueError("feature values must fit int32")
    n, nf = x.shape
    torch.set_num_threads(1)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)

    y_all = lab.direction_labels(mids, config.label)
    blocks = lab.chronological_split(n, config.fractions, gap=config.label.horizon)
    sel = {}
    for name, idx in blocks.items():
        idx = idx[y_all[idx] != lab.NO_LABEL]
        if idx.size == 0:
            raise ValueError(f"split block {name!r} has no labelled event")
        sel[name] = idx
    split = lab.Split(sel["train"], sel["validation"], sel["test"])
    ys = {k: y_all[v].astype(np.int64) for k, v in sel.items()}

    shift = input_shifts(x[split.train], config.input_quantile)
    xs = {k: scale_inputs(x[v], shift) for k, v in sel.items()}
    xraw = {k: x[v].astype(np.float32) for k, v in sel.items()}

    counts = np.bincount(ys["train"], minlength=qs.N_CLASSES).astype(np.float64)
    if config.class_weight == "balanced":
        w = np.where(counts > 0, counts.sum() / (qs.N_CLASSES * np.maximum(counts, 1)), 0.0)
    else:
        w = np.ones(qs.N_CLASSES)
    class_w = torch.tensor(w, dtype=torch.float32)

    # float MLP
    torch.manual_seed(config.seed)
    fmodel = build_float_mlp(nf, config.hidden)
    _fit(fmodel, xs["train"], ys["train"], xs["validation"], ys["validation"],
         epochs=config.float_epochs, lr=config.lr, cfg=config, class_w=class_w, seed=config.seed)

    # QAT MLP, initialised from the float weights
    torch.manual_seed(config.seed)
    qmodel = build_quant_mlp(nf, config.hidden, config.weight_bits, config.act_bits, shift)
    with torch.no_grad():
        for src, dst in zip(_linears(fmodel), _linears(qmodel)):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
    _fit(qmodel, xraw["train"], ys["train"], xraw["validation"], ys["validation"],
         epochs=config.qat_epochs, lr=config.qat_lr, cfg=config, class_w=class_w,
         seed=config.seed + 1)

    onnx_bytes = ex.export_qcdq(qmodel, nf)
    qonnx_bytes = ex.export_qonnx(qmodel, nf)
    engine = gmlp.load(onnx_bytes, source="<qcdq export>")

    # logistic regression and majority class
    logistic = make_pipeline(StandardScaler(), LogisticRegression(
        max_iter=500, class_weight=None if config.class_weight == "none" else "balanced",
        random_state=config.seed))
    logistic.fit(xs["train"], ys["train"])
    majority = int(np.argmax(counts))

    metrics, checks = {}, {}
    with torch.no_grad():
        for name, idx in sel.items():
            yq = engine.predict(x[idx])
            yf = fmodel(torch.from_numpy(xs[name])).argmax(1).numpy()
            metrics[name] = {
                "qat": classification_metrics(ys[name], yq),
                "float_mlp": classification_metrics(ys[name], yf),
                "logistic": classification_metrics(ys[name], logistic.predict(xs[name])),
                "majority": classification_metrics(ys[name], np.full(idx.size, majority)),
            }
            bq = qmodel(torch.from_numpy(xraw[name])).numpy()
            checks[name] = {"engine_equals_brevitas": bool(np.array_equal(engine.float_output(x[idx]), bq))}
    checks.update(_ort_check(onnx_bytes, engine, x[np.concatenate(list(sel.values()))]))

    card = {
        "schema_version": qs.MODEL_CARD_SCHEMA_VERSION,
        "task": "mid-price direction (down / flat / up)",
        "classes": list(qs.CLASS_NAMES),
        "feature_spec": _feature_spec(nf, feature_spec),
        "architecture": {"layers": [nf, *config.hidden, qs.N_CLASSES], "activation": "relu"},
        "quantization": {
            "spec_version": qs.QUANT_SPEC_VERSION,
            "weight_bits": config.weight_bits, "act_bits": config.act_bits,
            "bias_bits": qs.BIAS_BITS, "accumulator_bits": qs.ACCUMULATOR_BITS,
            "scales": "power_of_two", "rounding": qs.ROUNDING,
            "input_shift": shift.tolist(),
            "input_scale_exp": qs.input_exponent(config.act_bits),
            "output_scale_exp": engine.output_exp.tolist(),
            "layers": [_layer_card(layer) for layer in engine.layers],
            "formats": {"qcdq": {"opset": qs.ONNX_OPSET, "sha256": ex.sha256(onnx_bytes)},
                        "qonnx": {"sha256": ex.sha256(qonnx_bytes)}},
        },
        "labels": {"method": config.label.method, "horizon": config.label.horizon,
                   "alpha": config.label.alpha},
        "data": dict(data or {}, n_events=int(n)),
        "splits": {name: {"first_event": int(blocks_idx[0]), "last_event": int(blocks_idx[-1]),
                          "n_labelled": int(sel[name].size),
                          "class_balance": lab.class_balance(ys[name])}
                   for name, blocks_idx in blocks.items()},
        "metrics": metrics,
        "checks": checks,
        "seed": config.seed,
        "config": config.to_dict(),
        "libraries": _versions(),
    }
    paths = {}
    if out is not None:
        out = Path(out)
        paths = {"qcdq": out.with_name(out.name + ".onnx"),
                 "qonnx": out.with_name(out.name + ".qonnx.onnx"),
                 "card": out.with_name(out.name + ".json")}
        paths["qcdq"].write_bytes(onnx_bytes)
        paths["qonnx"].write_bytes(qonnx_bytes)
        card["quantization"]["formats"]["qcdq"]["file"] = paths["qcdq"].name
        card["quantization"]["formats"]["qonnx"]["file"] = paths["qonnx"].name
        ex.write_card(paths["card"], card)
    return TrainResult(qmodel, fmodel, logistic, engine, onnx_bytes, qonnx_bytes, card, metrics,
                       shift, y_all, split, paths)


def _layer_card(layer: dict) -> dict:
    d = {"kind": layer["kind"]}
    if layer["kind"] == "dense":
        d.update(shape=list(layer["weight"].shape), relu=layer["relu"],
                 weight_range=[int(layer["weight"].min()), int(layer["weight"].max())],
                 bias_range=[int(layer["bias"].min()), int(layer["bias"].max())])
    if layer.get("shift") is not None:
        s = np.asarray(layer["shift"])
        d["shift"] = s.tolist() if layer["kind"] == "input" else int(s.ravel()[0])
        d["clip"] = [int(layer["lo"]), int(layer["hi"])]
    return d


def _ort_check(onnx_bytes: bytes, engine, x: np.ndarray) -> dict:
    """Engine vs onnxruntime (default and disabled graph optimizations) on every given sample."""
    import onnxruntime as ort

    ref = engine.float_output(x)
    res = {}
    for tag, level in (("all", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
                       ("none", ort.GraphOptimizationLevel.ORT_DISABLE_ALL)):
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        s = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])
        o = s.run(None, {engine.input_name: x.astype(np.float32)})[0]
        res[f"engine_equals_onnxruntime_opt_{tag}"] = float(np.mean(np.all(o == ref, axis=1)))
    res["n_samples_checked"] = int(x.shape[0])
    return res

