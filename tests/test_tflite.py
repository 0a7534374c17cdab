""".tflite models in: the committed int8 Keras ViT (pre-quantized, its scales kept), a float transformer block
written with the flatbuffer builder (calibrated like ONNX), and files the frontend must refuse in one line."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from tflite_micro.python.tflite_micro import runtime  # the test extra installs tflite-micro

from mcu_attn.api import import_model, run_reference
from mcu_attn.errors import UserError
from mcu_attn.frontend.tflite_file import read_tflite
from mcu_attn.passes.quantize import quantize_graph
from mcu_attn.reference.interpreter import run
from mcu_attn.summary import summarize
from support import ROOT, run_cli
from tflite_writer import TfliteWriter

KERAS = ROOT / "examples" / "digits_vit_keras"
TFLM_INT8 = KERAS / "digits_vit_keras_tflm_int8.tflite"  # tanh GELU: every op registered in TFLM
GELU_INT8 = KERAS / "digits_vit_keras_int8.tflite"       # exact GELU as TFLite's GELU op
FUSED = ("Attention", "LayerNormalization", "Gelu", "Linear")


@pytest.mark.parametrize("path", [TFLM_INT8, GELU_INT8])
def test_the_keras_vit_fuses_like_its_onnx_export(path) -> None:
    ours, onnx = summarize(import_model(path)), summarize(import_model(KERAS / "digits_vit_keras_tflm.onnx"))
    assert {op: ours["ops"].get(op) for op in FUSED} == {op: onnx["ops"].get(op) for op in FUSED} \
        == {"Attention": 2, "LayerNormalization": 5, "Gelu": 2, "Linear": 14}
    assert [(b["heads"], b["head_dim"], b["seq_len"]) for b in ours["attention"]] == [(4, 8, 17)] * 2
    assert ours["params"] == onnx["params"] and ours["macs"] == onnx["macs"]


def test_the_files_int8_weights_biases_and_scales_are_kept_without_calibration() -> None:
    """Quantized with no calibration data at all: every QLinear (fused or not) holds one FULLY_CONNECTED's int8
    weights and int32 bias exactly (its bias shifted by the input zero point folded in), and every activation scale,
    input and output included, is the file's."""
    quantized = quantize_graph(import_model(TFLM_INT8), None)
    model = read_tflite(TFLM_INT8)
    fully_connected = [op for op in model.operators if op.name == "FULLY_CONNECTED"]
    remaining = list(fully_connected)
    for node in [n for n in quantized.nodes if n.op in ("QLinear", "QLinearTable", "QLinearAdd")]:
        weight = quantized.const(node.inputs[1])
        match = [op for op in remaining if np.array_equal(model.tensors[op.inputs[1]].data.T, weight)]
        assert len(match) >= 1, node.name
        op = match[0]
        remaining.remove(op)
        x_zp = model.tensors[op.inputs[0]].quant.zero_point[0]
        file_bias = model.tensors[op.inputs[2]].data.astype(np.int64)
        np.testing.assert_array_equal(quantized.const(node.inputs[2]), file_bias - x_zp * weight.sum(axis=0))
    assert not remaining
    for ours, tensor in ((quantized.inputs[0], model.inputs[0]), (quantized.outputs[0], model.outputs[0])):
        quant = quantized.type(ours).quant
        assert quant.scale[0] == pytest.approx(model.tensors[tensor].quant.scale[0], rel=1e-7)
        assert quant.zero_point[0] == model.tensors[tensor].quant.zero_point[0]
    assert set(quantized.meta["quantization"].observers.values()) <= {"model"}


def test_int8_accuracy_is_within_half_a_point_of_tflm_on_the_same_file(digits_test) -> None:
    """Our integer reference (OUR kernels' arithmetic with the file's scales; the firmware matches it bit for
    bit, tests/test_tflite_firmware.py) against TFLM's interpreter on the 450 test images."""
    x, y = digits_test
    quantized = quantize_graph(import_model(TFLM_INT8), None)
    from mcu_attn.passes.quantize import run_quantized

    ours = float(np.mean(run_quantized(quantized, x).reshape(len(x), -1).argmax(axis=1) == y))
    interpreter = runtime.Interpreter.from_file(str(TFLM_INT8), arena_size=1 << 20)
    scale, zero = quantized.type(quantized.inputs[0]).quant.scale[0], quantized.type(quantized.inputs[0]).quant.zero_point[0]
    predictions = []
    for sample in x:
        interpreter.set_input(np.clip(np.round(sample / scale) + zero, -128, 127).astype(np.int8)[None], 0)
        interpreter.invoke()
        predictions.append(int(np.argmax(interpreter.get_output(0))))
    tflm = float(np.mean(np.array(predictions) == y))
    assert ours >= tflm - 0.005, (ours, tflm)


def write_float_block(path, seq: int = 5, width: int = 8, heads: int = 2, seed: int = 0):
    """A pre-norm attention block in float, spelled the way the TFLite converter spells Keras: LayerNorm as
    MEAN / SQUARED_DIFFERENCE / RSQRT arithmetic, attention as BATCH_MATMUL / MUL / SOFTMAX / BATCH_MATMUL."""
    rng = np.random.default_rng(seed)
    w = TfliteWriter()
    f = np.float32
    dim = width // heads

    def t(name, shape):
        return w.tensor(name, f, shape)

    def c(name, array):
        return w.const(name, np.asarray(array, f))

    x = t("x", (1, seq, width))
    axis = w.const("axis", np.array([-1], np.int32))
    mean, sq, var, var_eps, inv, scaled, xs, ms, shift, normed = (
        t(n, s) for n, s in (("mean", (1, seq, 1)), ("sq", (1, seq, width)), ("var", (1, seq, 1)),
                             ("var_eps", (1, seq, 1)), ("inv", (1, seq, 1)), ("scaled", (1, seq, width)),
                             ("xs", (1, seq, width)), ("ms", (1, seq, width)), ("shift", (1, seq, width)),
                             ("normed", (1, seq, width))))
    w.op("MEAN", [x, axis], [mean], {"KeepDims": True})
    w.op("SQUARED_DIFFERENCE", [x, mean], [sq])
    w.op("MEAN", [sq, axis], [var], {"KeepDims": True})
    w.op("ADD", [var, c("eps", 1e-5)], [var_eps])
    w.op("RSQRT", [var_eps], [inv])
    w.op("MUL", [inv, c("gamma", rng.uniform(0.5, 1.5, (1, 1, width)))], [scaled])
    w.op("MUL", [x, scaled], [xs])
    w.op("MUL", [mean, scaled], [ms])
    w.op("SUB", [c("beta", rng.normal(0, 0.1, (1, 1, width))), ms], [shift])
    w.op("ADD", [xs, shift], [normed])
    heads_of = {}
    for name in ("q", "k", "v"):
        projected, split, moved = t(name, (1, seq, width)), t(f"{name}_split", (1, seq, heads, dim)), \
            t(f"{name}_heads", (1, heads, seq, dim))
        w.op("FULLY_CONNECTED", [normed, c(f"{name}_w", rng.normal(0, 0.4, (width, width))),
                                 c(f"{name}_b", rng.normal(0, 0.1, width))], [projected], {"KeepNumDims": True})
        w.op("RESHAPE", [projected, w.const(f"{name}_shape", np.array([1, seq, heads, dim], np.int32))], [split])
        w.op("TRANSPOSE", [split, w.const(f"{name}_perm", np.array([0, 2, 1, 3], np.int32))], [moved])
        heads_of[name] = moved
    scores, scaled_scores, probs, mixed, merged, flat, out, y = (
        t("scores", (1, heads, seq, seq)), t("scaled_scores", (1, heads, seq, seq)), t("probs", (1, heads, seq, seq)),
        t("mixed", (1, heads, seq, dim)), t("merged", (1, seq, heads, dim)), t("flat", (1, seq, width)),
        t("out", (1, seq, width)), t("y", (1, seq, width)))
    w.op("BATCH_MATMUL", [heads_of["q"], heads_of["k"]], [scores], {"AdjY": True})
    w.op("MUL", [scores, c("scale", dim ** -0.5)], [scaled_scores])
    w.op("SOFTMAX", [scaled_scores], [probs], {"Beta": 1.0})
    w.op("BATCH_MATMUL", [probs, heads_of["v"]], [mixed])
    w.op("TRANSPOSE", [mixed, w.const("back", np.array([0, 2, 1, 3], np.int32))], [merged])
    w.op("RESHAPE", [merged, w.const("flat_shape", np.array([1, seq, width], np.int32))], [flat])
    w.op("FULLY_CONNECTED", [flat, c("o_w", rng.normal(0, 0.4, (width, width))), c("o_b", np.zeros(width))], [out],
         {"KeepNumDims": True})
    w.op("ADD", [x, out], [y])
    return w.save(path, [x], [y])


def test_a_float_block_fuses_matches_tflm_and_is_calibrated_like_onnx(tmp_path) -> None:
    path = write_float_block(tmp_path / "block.tflite")
    graph = import_model(path)
    ops = summarize(graph)["ops"]
    assert ops.get("Attention") == 1 and ops.get("LayerNormalization") == 1 and "Softmax" not in ops
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 5, 8)).astype(np.float32)
    interpreter = runtime.Interpreter.from_file(str(path), arena_size=1 << 20)
    interpreter.set_input(x, 0)
    interpreter.invoke()
    # the fused LayerNorm/attention and TFLM's op-by-op float32 kernels round differently: a few ulps of O(1)
    np.testing.assert_allclose(run_reference(path, {"x": x})["y"], interpreter.get_output(0), rtol=1e-4, atol=1e-4)
    calib = rng.standard_normal((32, 1, 5, 8)).astype(np.float32)
    quantized = quantize_graph(graph, calib)
    assert {n.op for n in quantized.nodes} >= {"QAttention", "QLayerNorm", "QLinear"}
    assert "model" not in quantized.meta["quantization"].observers.values()


def test_an_unsupported_operator_is_named_in_one_line(tmp_path) -> None:
    w = TfliteWriter()
    x, a, b, y = (w.tensor(n, np.float32, (1, 4)) for n in ("x", "a", "b", "y"))
    w.op("CUMSUM", [x, w.const("axis", np.array(1, np.int32))], [a])
    w.op("FLOOR", [a], [b])
    w.op("FLOOR", [b], [y])
    path = w.save(tmp_path / "cumsum.tflite", [x], [y])
    for command in ("inspect", "eval"):
        extra = ["--data", str(tmp_path / "x.npy"), "--float"] if command == "eval" else []
        np.save(tmp_path / "x.npy", np.zeros((2, 1, 4), np.float32))
        done = run_cli(command, path, *extra)
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.strip().splitlines() == [
            f"mcu-attn: error: {path}: unsupported TFLite operators: CUMSUM, FLOOR (x2)"]


@pytest.mark.parametrize("damage", ["truncate", "identifier", "empty"])
def test_a_damaged_file_is_one_line(tmp_path, damage) -> None:
    data = TFLM_INT8.read_bytes()
    damaged = {"truncate": data[:len(data) // 3], "identifier": data[:4] + b"XXXX" + data[8:], "empty": b""}[damage]
    path = tmp_path / "model.tflite"
    path.write_bytes(damaged)
    done = run_cli("inspect", path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "TFLite model" in done.stderr and "Traceback" not in done.stderr


def test_corrupted_files_import_or_fail_in_one_line() -> None:
    """Seeded byte corruptions of the example: each either imports or is a UserError, never another exception."""
    data = TFLM_INT8.read_bytes()
    rng = np.random.default_rng(15)
    refused = 0
    for case in range(60):
        damaged = bytearray(data)
        for position in rng.integers(8, len(data), size=1 + case % 4):
            damaged[position] = int(rng.integers(0, 256))
        path = Path(tempfile.mkdtemp()) / "damaged.tflite"
        path.write_bytes(bytes(damaged))
        try:
            import_model(path)
        except UserError as error:
            assert "\n" not in str(error)
            refused += 1
    assert refused > 0  # some corruptions must hit the structure, not only weight bytes


@pytest.mark.parametrize("name, weight_shape, axis, options, out", [
    ("CONV_2D", (4, 3, 3, 3), 0, {"Padding": 0, "StrideH": 1, "StrideW": 2, "FusedActivationFunction": 1},
     (1, 7, 3, 4)),
    ("DEPTHWISE_CONV_2D", (1, 3, 3, 6), 3, {"Padding": 0, "StrideH": 1, "StrideW": 1, "DepthMultiplier": 2},
     (1, 7, 6, 6)),
    ("FULLY_CONNECTED", (5, 126), 0, {"KeepNumDims": False}, (1, 5)),
])
def test_int8_layers_alone_are_bit_exact_with_tflm(tmp_path, name, weight_shape, axis, options, out) -> None:
    """Where nothing fuses, our integer arithmetic is TFLite's (gemmlowp requantization with the file's
    scales): one int8 layer with per-channel weights gives TFLM's outputs bit for bit."""
    rng = np.random.default_rng(3)
    w = TfliteWriter()
    x = w.tensor("x", np.int8, (1, 7, 6, 3), quant=([0.05], [-3], None))
    real = rng.standard_normal(weight_shape)
    channels = weight_shape[axis]
    scales = np.abs(real).max(axis=tuple(a for a in range(real.ndim) if a != axis)) / 127
    shape = [1] * real.ndim
    shape[axis] = channels
    weight = w.const("w", np.clip(np.round(real / scales.reshape(shape)), -127, 127).astype(np.int8),
                     quant=(scales, [0] * channels, axis))
    bias = w.const("b", rng.integers(-500, 500, channels).astype(np.int32), quant=(0.05 * scales, [0] * channels, 0))
    y = w.tensor("y", np.int8, out, quant=([0.08], [5], None))
    w.op(name, [x, weight, bias], [y], options)
    path = w.save(tmp_path / "layer.tflite", [x], [y])
    quantized = quantize_graph(import_model(path), None)
    interpreter = runtime.Interpreter.from_file(str(path), arena_size=1 << 20)
    for _ in range(10):
        sample = rng.integers(-128, 128, (1, 7, 6, 3)).astype(np.int8)
        interpreter.set_input(sample, 0)
        interpreter.invoke()
        ours = run(quantized, {quantized.inputs[0]: sample})[quantized.outputs[0]]
        np.testing.assert_array_equal(ours.reshape(out), interpreter.get_output(0))
