"""The command-line contract (DESIGN.md section 1) on the bundled example."""

from __future__ import annotations

import json

import numpy as np

from mcu_attn.api import run_reference, supported_onnx_ops
from support import DIGITS, run_cli

DATA = DIGITS / "data"


def test_targets_lists_the_design_table() -> None:
    result = run_cli("targets", "--json")
    assert result.returncode == 0, result.stderr
    targets = {t["name"]: t for t in json.loads(result.stdout)["targets"]}
    assert {"stm32f746", "stm32f407", "stm32h743", "stm32l476", "nrf52840", "host"} <= set(targets)
    assert targets["stm32f746"]["aliases"] == ["stm32"] and targets["stm32f746"]["clock_mhz"] == 216
    assert targets["nrf52840"]["sram_kb"] == 256 and all(t["source"] for t in targets.values())


def test_inspect_json_contract() -> None:
    result = run_cli("inspect", DIGITS / "digits_vit.onnx", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["inputs"] == [{"name": "x", "dtype": "float32", "shape": [1, 8, 8]}]
    assert summary["outputs"][0]["shape"] == [1, 10]
    assert summary["ops"]["Attention"] == 2 and summary["ops"]["Gelu"] == 2
    assert [set(b) >= {"name", "heads", "head_dim", "seq_len", "window"} for b in summary["attention"]] == [True] * 2
    # 2 blocks x (4 projections 32x32 + FFN 32x64 + 64x32) x 17 tokens + embedding 16x4x32 + head 32x10
    # + attention 2 x 4 heads x 17 x 17 x 8 x 2 blocks
    assert summary["macs"] == 2 * 17 * (4 * 32 * 32 + 2 * 32 * 64) + 16 * 4 * 32 + 32 * 10 + 2 * 2 * 4 * 17 * 17 * 8


def test_eval_float_accuracy_and_outputs(tmp_path) -> None:
    out = tmp_path / "logits.npy"
    result = run_cli("eval", DIGITS / "digits_vit.onnx", "--float", "--data", DATA / "test_x.npy",
                     "--labels", DATA / "test_y.npy", "--outputs", out, "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    logits = np.load(out)
    labels = np.load(DATA / "test_y.npy")
    assert payload["samples"] == 450 and logits.shape == (450, 1, 10)
    assert payload["accuracy"] == float(np.mean(logits[:, 0].argmax(-1) == labels))
    assert payload["accuracy"] > 0.93 and payload["outputs_path"] == str(out)


def test_eval_of_a_float_model_without_calibration_says_what_is_missing() -> None:
    """eval, like build, defaults to --bits 8: a float model needs --calib for it, or --bits 32."""
    result = run_cli("eval", DIGITS / "digits_vit.onnx", "--data", DATA / "test_x.npy")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "--calib C.npy" in lines[0] and "--bits 32" in lines[0]


def test_python_api() -> None:
    x = np.load(DATA / "test_x.npy")[:1]
    outputs = run_reference(DIGITS / "digits_vit.onnx", {"x": x})
    assert set(outputs) == {"logits"} and outputs["logits"].shape == (1, 10)
    ops = supported_onnx_ops()
    for name in ("MatMul", "Gemm", "Softmax", "LayerNormalization", "Gelu", "Attention", "QuantizeLinear"):
        assert name in ops
