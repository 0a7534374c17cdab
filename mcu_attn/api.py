"""The Python API. The CLI is a thin layer over these functions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.frontend.onnx import load_onnx
from mcu_attn.frontend.onnx import supported_onnx_ops as _supported
from mcu_attn.frontend.tflite import load_tflite
from mcu_attn.frontend.tflite_file import is_tflite
from mcu_attn.ir.graph import Graph
from mcu_attn.options import BuildOptions
from mcu_attn.passes.pipeline import frontend_pipeline
from mcu_attn.passes.manager import run_pipeline
from mcu_attn.reference.interpreter import run, run_stack


def import_model(onnx_path: str | os.PathLike, bind: Mapping[str, np.ndarray] | None = None) -> Graph:
    """Load an ONNX or TFLite model and normalise it: folded, canonical Linear ops, fused LayerNorm, GELU and
    attention. `bind` fixes non-float ONNX inputs to given values."""
    if is_tflite(onnx_path):
        if bind:
            raise UserError(f"{onnx_path}: binding inputs to values is for ONNX models")
        graph = load_tflite(onnx_path)
    else:
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


def supported_tflite_ops() -> list[str]:
    """The TFLite builtin operators the frontend imports."""
    from mcu_attn.frontend.tflite_ops import supported_tflite_ops as supported

    return supported()


def evaluate(onnx_path: str | os.PathLike, data: np.ndarray, labels: np.ndarray | None = None,
             options: BuildOptions = BuildOptions(), calib: np.ndarray | None = None) -> dict:
    """Compile with `options` up to the reference (mcu_attn.compiler) and run it on every sample of a stack: the
    float reference for bits 32, the integer reference for 8/4 (calibrated on `calib`, an array, or on the file
    options.calib names); with --streaming, each sample streamed through ma_step's reference from a reset state;
    accuracy when labels are given, and what the compile steps reported."""
    from mcu_attn.compiler import Compilation, pruning_summary
    from mcu_attn.data import accuracy, check_labels, check_stack

    compilation = Compilation(Path(onnx_path), options, calib).run("import")
    data = check_stack(compilation.imported, data, "data")
    if labels is not None:
        imported = compilation.imported
        check_labels(labels, imported.shape(imported.outputs[0])[-1])
    compilation.run("stream")
    exits = None
    if options.streaming is not None:
        from mcu_attn.reference.stream import stream_float_windows

        outputs = stream_float_windows(compilation, data)
    elif options.early_exit:
        from mcu_attn.reference.dynamic import run_float_exits

        outputs, exits = run_float_exits(compilation.graph, data)
    else:
        outputs = reference_outputs(compilation.graph, data)
    result: dict = {"samples": int(data.shape[0]), "bits": options.bits, **compilation.reports, "outputs": outputs}
    if exits is not None:
        result["early_exit"] = {**result.get("early_exit", {}), "exit_fraction_on_data": float(np.mean(exits > 0))}
    if labels is not None:
        result["accuracy"] = accuracy(outputs, labels)
    if options.prunes:
        unpruned = compilation.without_pruning()
        result["pruning"] = pruning_summary(compilation, unpruned)
        if labels is not None:  # what the refit buys, and what pruning costs, at the same bit width
            unreconstructed = compilation.deployed(compilation.unreconstructed)
            least_squares = compilation.deployed(compilation.least_squares)
            result["pruning"]["accuracy"] = {
                "unpruned": accuracy(reference_outputs(unpruned.graph, data), labels),
                "without_reconstruction": accuracy(reference_outputs(unreconstructed, data), labels),
                "least_squares_only": accuracy(reference_outputs(least_squares, data), labels),
                "with_reconstruction": result["accuracy"]}
    return result


def reference_outputs(graph: Graph, data: np.ndarray) -> np.ndarray:
    """The float reference of a float graph, or the dequantized integer reference of a quantized one."""
    from mcu_attn.passes.quantize import run_quantized

    if graph.type(graph.inputs[0]).quant is None:
        return run_stack(graph, data)
    return run_quantized(graph, data)
