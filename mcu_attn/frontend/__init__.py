"""Model import: ONNX files into the IR, and the pattern rules that recognise attention, LayerNorm and GELU."""
