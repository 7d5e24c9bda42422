"""ONNX export of the quantized MLP (QCDQ for onnxruntime / the integer engine, QONNX for FINN / hls4ml) and its model card.

QCDQ: brevitas ``export_onnx_qcdq`` (TorchScript exporter, opset
:data:`hftaccel.spec.quant.ONNX_OPSET`): ``Mul(2**-k) -> QuantizeLinear -> DequantizeLinear ->
Gemm -> Relu -> QuantizeLinear -> [Clip] -> DequantizeLinear -> ... -> Gemm``, int8 weight
constants behind ``Clip -> DequantizeLinear``, int32 bias constants behind ``DequantizeLinear``.
QONNX: brevitas ``export_qonnx`` (``Quant`` nodes of the ``qonnx.custom_op.general`` domain).
Both take a float32 ``(batch, n_features)`` input named :data:`~hftaccel.spec.quant.INPUT_NAME`
holding the int32 feature integers, and give float32 logits named
:data:`~hftaccel.spec.quant.OUTPUT_NAME`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from hftaccel.spec.quant import INPUT_NAME, MODEL_CARD_SCHEMA_VERSION, ONNX_OPSET, OUTPUT_NAME

__all__ = ["export_qcdq", "export_qonnx", "write_card", "read_card", "sha256"]


def _clean(model_bytes: bytes, *, check: bool) -> bytes:
    """Drop initializers listed as graph inputs and fix the producer fields (reproducible bytes)."""
    import onnx

    m = onnx.load_from_string(model_bytes)
    inits = {i.name for i in m.graph.initializer}
    keep = [i for i in m.graph.input if i.name not in inits]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    m.producer_name = "hftaccel"
    m.producer_version = ""
    m.doc_string = "hftaccel mid-price direction MLP (see the model card JSON beside this file)"
    if check:
        onnx.checker.check_model(m)
    return m.SerializeToString()


def _export(fn, module, n_features: int, **kw) -> bytes:
    import torch

    module = module.eval()
    x = torch.zeros(1, n_features, dtype=torch.float32)
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "m.onnx")
        fn(module, args=x, export_path=p, dynamo=False, input_names=[INPUT_NAME],
           output_names=[OUTPUT_NAME],
           dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, **kw)
        return Path(p).read_bytes()


def export_qcdq(module, n_features: int, path: str | os.PathLike | None = None) -> bytes:
    """Export a trained QAT model (``hftaccel.model.train.build_quant_mlp``) as an ONNX QCDQ graph.

    Parameters
    ----------
    module : torch.nn.Module
        The QAT model (put in eval mode).
    n_features : int
        Input width.
    path : path-like, optional
        Where to write the file.

    Returns
    -------
    bytes
        The serialized ONNX model (same weights -> same bytes).
    """
    from brevitas.export import export_onnx_qcdq

    data = _clean(_export(export_onnx_qcdq, module, n_features, opset_version=ONNX_OPSET),
                  check=True)
    if path is not None:
        Path(path).write_bytes(data)
    return data


def export_qonnx(module, n_features: int, path: str | os.PathLike | None = None) -> bytes:
    """Export a trained QAT model as QONNX (``Quant`` nodes), for FINN / hls4ml users.

    Returns
    -------
    bytes
        The serialized model; written to ``path`` too when given.
    """
    from brevitas.export import export_qonnx as _qonnx

    data = _clean(_export(_qonnx, module, n_features), check=False)   # custom Quant op domain
    if path is not None:
        Path(path).write_bytes(data)
    return data


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def write_card(path: str | os.PathLike, card: dict) -> str:
    """Write a model card as JSON (sorted keys, 2-space indent, trailing newline).

    Raises
    ------
    ValueError
        ``card["schema_version"]`` is not :data:`MODEL_CARD_SCHEMA_VERSION`.
    """
    if card.get("schema_version") != MODEL_CARD_SCHEMA_VERSION:
        raise ValueError(f"model card schema_version must be {MODEL_CARD_SCHEMA_VERSION}, "
                         f"got {card.get('schema_version')!r}")
    text = json.dumps(_jsonable(card), indent=2, sort_keys=True) + "\n"
    Path(path).write_text(text)
    return text


def read_card(path: str | os.PathLike) -> dict:
    """Read a model card JSON and check its schema version.

    Raises
    ------
    ValueError
        Unknown schema version (the message names the file).
    """
    card = json.loads(Path(path).read_text())
    if card.get("schema_version") != MODEL_CARD_SCHEMA_VERSION:
        raise ValueError(f"{path}: model card schema_version {card.get('schema_version')!r} "
                         f"is not {MODEL_CARD_SCHEMA_VERSION}")
    return card

