"""hftaccel.models: trained, quantized models (ONNX QCDQ + QONNX) with their model cards."""
