"""Post-training quantization: accuracy against float, pre-quantized models keep their scales, mixed
precision, observers, and bad calibration input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mcu_attn.api import evaluate, import_model
from mcu_attn.ir.verify import verify
from mcu_attn.options import BuildOptions
from mcu_attn.passes import quantize as quantize_module
from mcu_attn.passes.quantize import quantize_graph
from support import DIGITS, FIXTURES, run_cli

DATA = DIGITS / "data"
# The bounds: int8 within 1 accuracy point of float, int4 within 2.5 points, on the 450 test images.
INT8_POINTS, INT4_POINTS = 0.01, 0.025
MODELS = {
    "example (legacy exporter)": DIGITS / "digits_vit.onnx",
    "dynamo exporter, dynamic batch": FIXTURES / "models" / "dynamo_op20_sdpa.onnx",
    "tf2onnx (Keras)": FIXTURES / "models" / "keras_tf2onnx.onnx",
    "band-mask local attention": FIXTURES / "models" / "legacy_op18_band.onnx",
}


@pytest.fixture(scope="module")
def calib() -> np.ndarray:
    return np.load(DATA / "calib.npy")


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("bits, points", [(8, INT8_POINTS), (4, INT4_POINTS)])
def test_integer_accuracy_close_to_float(name, bits, points, calib, digits_test) -> None:
    images, labels = digits_test
    floating = evaluate(MODELS[name], images, labels, BuildOptions(bits=32))["accuracy"]
    integer = evaluate(MODELS[name], images, labels, BuildOptions(bits=bits), calib)
    assert integer["accuracy"] >= floating - points, (floating, integer["accuracy"])
    assert integer["quantization"]["weight_bits"] == bits


def test_quantized_graph_is_integer_only(calib) -> None:
    quantized = quantize_graph(import_model(DIGITS / "digits_vit.onnx"), calib, 8)
    verify(quantized)
    ops = {n.op for n in quantized.nodes}
    assert ops <= {"QLinear", "QLinearTable", "QLinearAdd", "QAttention", "QLayerNorm", "QTable", "QAdd",
                   "QRequant", "Reshape", "Concat", "Gather"}, ops
    for value, ttype in quantized.types.items():
        assert ttype.dtype in ("int8", "int4", "int32", "int64"), (value, ttype)
        if ttype.dtype == "int8" and value not in quantized.constants:
            assert ttype.quant is not None and len(ttype.quant.scale) == 1


def test_int4_weights_and_sensitivity_report(calib) -> None:
    quantized = quantize_graph(import_model(DIGITS / "digits_vit.onnx"), calib, 4)
    report = quantized.meta["quantization"].as_dict()
    linears = [n for n in quantized.nodes if n.op in ("QLinear", "QLinearTable", "QLinearAdd")]
    assert len(report["int4_sensitivity"]) == len(linears) == 14
    for node in linears:
        bits = report["layer_bits"][node.name]
        weight = quantized.const(node.inputs[1])
        assert node.attrs["bits"] == bits and quantized.type(node.inputs[1]).dtype == ("int4" if bits == 4 else "int8")
        assert np.abs(weight).max() <= (7 if bits == 4 else 127)
    assert all(report["layer_bits"][name] == 8 for name in report["kept_8bit"])


def test_sensitive_layers_stay_at_8_bits(calib, monkeypatch) -> None:
    monkeypatch.setattr(quantize_module, "SENSITIVE_FACTOR", 1.5)  # flag more layers as outliers
    report = quantize_graph(import_model(DIGITS / "digits_vit.onnx"), calib, 4).meta["quantization"].as_dict()
    median = float(np.median(list(report["int4_sensitivity"].values())))
    expected = sorted(n for n, s in report["int4_sensitivity"].items() if s > 1.5 * median)
    assert report["kept_8bit"] == expected and expected
    assert {report["layer_bits"][n] for n in expected} == {8}


def test_prequantized_models_keep_their_scales(calib) -> None:
    quantized = quantize_graph(import_model(FIXTURES / "models" / "quant_qdq.onnx"), calib, 8)
    report = quantized.meta["quantization"].as_dict()
    assert len(report["prequantized_weights"]) == 14
    assert report["observer_counts"].get("model", 0) >= 20  # activations the model itself quantized
    source = import_model(FIXTURES / "models" / "quant_qdq.onnx")
    given = {n.name: source.type(n.inputs[1]).quant.scale for n in source.nodes if n.op == "Linear"}
    for node in quantized.nodes:
        if node.op == "QLinear" and node.name in given:
            assert quantized.type(node.inputs[1]).quant.scale == given[node.name]


def test_eval_cli_integer_and_bad_calibration(tmp_path) -> None:
    result = run_cli("eval", DIGITS / "digits_vit.onnx", "--bits", "8", "--calib", DATA / "calib.npy",
                     "--data", DATA / "test_x.npy", "--labels", DATA / "test_y.npy", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["mode"] == "int8" and payload["accuracy"] > 0.93
    assert set(payload["quantization"]["observer_counts"]) <= {"minmax", "mse", "model"}
    np.save(tmp_path / "bad.npy", np.zeros((10, 8, 7), np.float32))
    bad = run_cli("eval", DIGITS / "digits_vit.onnx", "--bits", "8", "--calib", tmp_path / "bad.npy",
                  "--data", DATA / "test_x.npy")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "calibration data" in bad.stderr and "[1, 8, 8]" in bad.stderr
    missing = run_cli("eval", DIGITS / "digits_vit.onnx", "--bits", "4", "--data", DATA / "test_x.npy")
    assert missing.returncode == 2 and "--calib" in missing.stderr
