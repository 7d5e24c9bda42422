"""Quantization contract of the scoring MLP: bit widths, power-of-two scales, requantization, card schema.

The trained model is exported as an ONNX QCDQ graph (QuantizeLinear / Clip / DequantizeLinear
around float Gemm nodes, ONNX opset 13). Its integer semantics are those of that graph:
onnxruntime on the exported file is the external oracle; the integer engine
(``hftaccel.golden.mlp``), the gateware (``hftaccel.rtl.mlp``) and the GPU kernels reproduce it
bit for bit. Every scale is a power of two, so every rescaling is an arithmetic shift.

Integer pipeline (one sample; ``x`` is the int32 feature vector of ``hftaccel.spec.features``)::

    x_f32  = float32(x)                                  # graph input is float32: RNE at 24 bits
    q0[f]  = clip(rne(x_f32[f] * 2**-(INPUT_SHIFT[f] + in_exp)), act range)     # in_exp < 0
    acc1   = W1 @ q0 + b1                                # int8 x int8 -> int32, bias int32
    q1     = clip(rne(relu(acc1) * 2**(acc1_exp - a1_exp)), act range)
    ...
    logits = W3 @ q2 + b3                                # int32; float logits = logits * 2**acc3_exp

``rne`` is round half to even (ONNX QuantizeLinear, IEEE 754 default rounding). Shapes follow
torch / ONNX ``Gemm(transB=1)``: weight ``(out_features, in_features)``, ``y = x @ W.T + b``.

Sources: ONNX operator specification (QuantizeLinear-13, DequantizeLinear-13, Gemm-13, Clip-13);
brevitas 0.13 fixed-point quantizers (``Int8WeightPerTensorFixedPoint``,
``Int8ActPerTensorFixedPoint``, ``Int32Bias``).
"""

from __future__ import annotations

__all__ = [
    "QUANT_SPEC_VERSION",
    "MODEL_CARD_SCHEMA_VERSION",
    "MODEL_CARD_FIELDS",
    "CLASS_NAMES",
    "N_CLASSES",
    "DEFAULT_HIDDEN",
    "DEFAULT_WEIGHT_BITS",
    "DEFAULT_ACT_BITS",
    "MIN_BITS",
    "MAX_BITS",
    "BIAS_BITS",
    "ACCUMULATOR_BITS",
    "FLOAT32_EXACT_BITS",
    "ROUNDING",
    "ONNX_OPSET",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "INPUT_SHIFT_MIN",
    "INPUT_SHIFT_MAX",
    "WEIGHT_NARROW_RANGE",
    "int_range",
    "input_exponent",
    "check_bits",
]

#: Version of this contract; bumped when any constant or rule below changes meaning.
QUANT_SPEC_VERSION = 1
#: Version of the model card JSON written beside every model (``hftaccel.model.export``).
MODEL_CARD_SCHEMA_VERSION = 1

#: Top-level keys of a model card (schema version 1) and what each holds.
MODEL_CARD_FIELDS = {
    "schema_version": "MODEL_CARD_SCHEMA_VERSION",
    "task": "what the model predicts",
    "classes": "CLASS_NAMES, in logit order",
    "feature_spec": "version (hftaccel.spec.features.FEATURE_SPEC_VERSION), names, q_formats",
    "architecture": "layers: [n_features, *hidden, N_CLASSES]; activation",
    "quantization": "spec_version, weight_bits, act_bits, bias_bits, accumulator_bits, scales, "
                    "rounding, input_shift (k_f per feature), input_scale_exp, output_scale_exp, "
                    "layers (integer view: input requant shift per feature = k_f + "
                    "input_scale_exp, then per dense layer shape, relu, weight/bias ranges, "
                    "requant right shift and clip), formats (qcdq / qonnx: file, sha256, opset)",
    "labels": "method, horizon (events), alpha (relative mid change)",
    "data": "source description, symbol, date, n_events, ...",
    "splits": "train / validation / test: first_event, last_event, n_labelled, class_balance",
    "metrics": "metrics[split][model] with model in qat, float_mlp, logistic, majority: n, "
               "macro_f1, accuracy, mcc, confusion (rows true, columns predicted)",
    "checks": "engine_equals_brevitas per split, engine_equals_onnxruntime_opt_all / _none "
              "(fraction of samples), n_samples_checked",
    "seed": "random seed",
    "config": "hftaccel.model.train.TrainConfig as a dict",
    "libraries": "versions of python, numpy, torch, brevitas, onnx, onnxruntime, scikit-learn",
}

#: Output classes of the mid-price direction classifier, in logit order.
CLASS_NAMES = ("down", "flat", "up")
N_CLASSES = len(CLASS_NAMES)

#: Hidden layer widths of the default MLP (features -> 32 -> 16 -> 3).
DEFAULT_HIDDEN = (32, 16)
#: Default bit widths of weights and activations (signed two's complement).
DEFAULT_WEIGHT_BITS = 8
DEFAULT_ACT_BITS = 8
#: Supported range of weight / activation bit widths.
MIN_BITS = 4
MAX_BITS = 8
#: Biases are signed 32-bit integers with scale = input scale * weight scale.
BIAS_BITS = 32
#: Accumulators (int8 x int8 products summed with the bias) are signed 32-bit.
ACCUMULATOR_BITS = 32
#: The QCDQ graph computes Gemm in float32; it is exact only while every partial sum, in units
#: of the accumulator scale, stays within 2**24 (float32 significand). The integer engine
#: rejects graphs whose static worst case exceeds it.
FLOAT32_EXACT_BITS = 24
#: Rounding of every requantization (ONNX QuantizeLinear): round half to even.
ROUNDING = "half_to_even"
#: ONNX opset of the exported QCDQ graph.
ONNX_OPSET = 13
#: Names of the graph input (float32 values of the int32 features, shape (batch, n_features))
#: and output (float32 logits, shape (batch, N_CLASSES)).
INPUT_NAME = "features"
OUTPUT_NAME = "logits"
#: Range of the per-feature input shift k_f: the feature integer is scaled by 2**-k_f into
#: [-1, 1) before the input quantizer (negative k_f is a left shift).
INPUT_SHIFT_MIN = -16
INPUT_SHIFT_MAX = 31
#: Weights use the narrow (symmetric) range [-(2**(b-1) - 1), 2**(b-1) - 1] (brevitas default);
#: activations the full signed range [-2**(b-1), 2**(b-1) - 1].
WEIGHT_NARROW_RANGE = True


def check_bits(bits: int, what: str = "bit width") -> int:
    """Validate a weight / activation bit width.

    Raises
    ------
    ValueError
        ``bits`` is not an integer in [MIN_BITS, MAX_BITS].
    """
    if not isinstance(bits, int) or isinstance(bits, bool) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"{what} must be an integer in [{MIN_BITS}, {MAX_BITS}], got {bits!r}")
    return bits


def int_range(bits: int, *, narrow: bool = False) -> tuple[int, int]:
    """Return ``(lo, hi)`` of a signed ``bits``-bit integer (narrow: symmetric, no -2**(b-1))."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return (lo + 1 if narrow else lo), hi


def input_exponent(act_bits: int) -> int:
    """Exponent of the input quantizer scale: 2**-(act_bits-1), i.e. the range [-1, 1)."""
    return -(check_bits(act_bits, "act_bits") - 1)
