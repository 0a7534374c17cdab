"""The Python API. The CLI is a thin layer over these functions."""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from mcu_attn.frontend.onnx import load_onnx
from mcu_attn.frontend.onnx import supported_onnx_ops as _supported
from mcu_attn.ir.graph import Graph
from mcu_attn.passes.pipeline import frontend_pipeline
from mcu_attn.passes.manager import run_pipeline
from mcu_attn.reference.interpreter import run, run_stack


def import_model(onnx_path: str | os.PathLike, bind: Mapping[str, np.ndarray] | None = None) -> Graph:
    """Load an ONNX model and normalise it: folded, canonical Linear ops, fused LayerNorm, GELU and attention."""
    graph = load_onnx(onnx_path, bind)
    run_pipeline(graph, frontend_pipeline())
    return graph


def run_reference(onnx_path: str | os.PathLike, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float reference outputs of an ONNX model for one set of inputs (integer inputs are bound as constants)."""
    bind = {k: np.asarray(v) for k, v in inputs.items() if not np.issubdtype(np.asarray(v).dtype, np.floating)}
    graph = import_model(onnx_path, bind)
    feeds = {k: np.asarray(v) for k, v in inputs.items() if k in graph.inputs}
    return run(graph, feeds)


def supported_onnx_ops() -> list[str]:
    """The ONNX op types (domain-qualified outside the default domain) the frontend imports."""
    return _supported()


def evaluate(onnx_path: str | os.PathLike, data: np.ndarray, labels: np.ndarray | None = None, bits: int = 32,
             calib: np.ndarray | None = None, attention: str | None = None, tolerance: float | None = None) -> dict:
    """Run the float reference (bits 32) or the integer reference (bits 8/4, calibrated on `calib`) on every
    sample of a stack, with the attention blocks as `attention` says (dense, local:W[,global:G] or auto; None:
    as the model has them); accuracy when labels are given, and the quantization and attention reports."""
    from mcu_attn.data import accuracy, check_stack
    from mcu_attn.errors import UserError
    from mcu_attn.passes.quantize import quantize_graph, run_quantized
    from mcu_attn.passes.sparsify import DEFAULT_TOLERANCE, AttentionChoice, choose

    graph = import_model(onnx_path)
    data = check_stack(graph, data, "data")
    result: dict = {"samples": int(data.shape[0]), "bits": bits}
    if attention is not None:
        graph, result["attention"] = choose(graph, calib, AttentionChoice.parse(attention),
                                            DEFAULT_TOLERANCE if tolerance is None else tolerance)
    if bits == 32:
        outputs = run_stack(graph, data)
    else:
        if calib is None:
            raise UserError(f"--bits {bits} needs calibration data (--calib C.npy)")
        quantized = quantize_graph(graph, calib, bits)
        outputs = run_quantized(quantized, data)
        result["quantization"] = quantized.meta["quantization"].as_dict()
    result["outputs"] = outputs
    if labels is not None:
        result["accuracy"] = accuracy(outputs, labels)
    return result
