"""The transformers / timm / torch.nn fixtures of tests/fixtures/hf (generate_hf_fixtures.py, and Keras'
MultiHeadAttention through tf2onnx from generate_keras_mha_fixture.py): each imports with
its attention blocks found, its float reference reproduces onnxruntime, and its int8 build is bit-exact with
the integer reference on the host. A few are built for the STM32F746 and emulated here; `pytest -m slow` builds
and emulates every one. Every torch fixture was trained on scikit-learn's digits (fixtures/digits_tasks.py): the
float reference keeps torch's held-out accuracy and the int8 integer reference loses at most a point of it."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from fixtures.digits_tasks import held_out, predictions
from mcu_attn.api import import_model
from mcu_attn.data import random_samples
from mcu_attn.frontend.onnx import load_onnx
from mcu_attn.passes.quantize import quantize_graph, run_quantized
from mcu_attn.reference.interpreter import run_stack
from mcu_attn.summary import attention_blocks
from support import FIXTURES, run_cli, without_activation_qdq

ENTRIES = json.loads((FIXTURES / "hf_manifest.json").read_text())
# the default run's emulated builds, one per kind of stem (ids, patches, Conv1d), a causal model and Llama;
# -m slow emulates every fixture
EMULATED = {"torch_encoder_legacy17_sdpa", "hf_vit_legacy17_sdpa", "hf_whisper_encoder_legacy17_sdpa",
            "hf_gpt2_legacy17_eager", "hf_llama_legacy17_sdpa"}
# float32 reference vs onnxruntime: both sum <= 64-term products in float32 in different orders; outputs are
# O(1) (tiny random models), so agreement is ~1e-6 and 1e-4 leaves room while catching any real error
FLOAT_TOLERANCE = 1e-4
# the default run's digits-accuracy checks (one image, one token-id and one feature model); -m slow checks every
# trained fixture
ACCURACY = {"hf_vit_legacy17_sdpa", "torch_encoder_legacy17_sdpa", "hf_whisper_encoder_legacy17_sdpa"}
TRAINED = [e for e in ENTRIES if "input_kind" in e and e["quantization"] is None]


def onnx_numpy(path, name: str) -> np.ndarray:
    """The initializer `name` of an ONNX file."""
    import onnx
    from onnx import numpy_helper

    return next(numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer if i.name == name)


def _path(entry: dict):
    return FIXTURES / entry["file"]


def _samples(entry: dict, count: int) -> np.ndarray:
    return random_samples(import_model(_path(entry)), count)


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_import_finds_attention_and_matches_onnxruntime(entry: dict) -> None:
    graph = import_model(_path(entry))
    blocks = attention_blocks(graph)
    assert len(blocks) == entry["blocks"]
    assert all((b["heads"], b["head_dim"], b["causal"]) == (entry["heads"], entry["head_dim"], entry["causal"])
               for b in blocks)
    samples = random_samples(graph, 4)
    if entry["quantization"] == "qoperator":
        # the float reference is the model without its activation quantization (QOperator ops lowered and their
        # Q/DQ pairs absorbed); onnxruntime's integer arithmetic is what the model as imported computes
        graph = load_onnx(_path(entry))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the model as written
    # a QDQ model's activation pairs are recorded parameters in our float reference: onnxruntime runs without them
    model = without_activation_qdq(_path(entry)) if entry["quantization"] == "qdq" else str(_path(entry))
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    theirs = np.stack([session.run(None, {entry["input"]: x.astype(entry["dtype"])})[0] for x in samples])
    tolerance = FLOAT_TOLERANCE
    if entry["quantization"] == "qoperator":
        # one output step: float32 LayerNorm/Erf in another order may cross a rounding boundary (measured: none)
        tolerance = 1.01 * float(onnx_numpy(_path(entry), "logits_scale"))
    assert np.abs(run_stack(graph, samples) - theirs).max() <= tolerance


def _build(entry: dict, target: str, out, calib) -> dict:
    result = run_cli("build", _path(entry), "--target", target, "-o", out, "--bits", "8", "--calib", calib)
    assert result.returncode == 0, result.stderr
    return json.loads((out / "report.json").read_text())


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_int8_host_build_is_bit_exact(entry: dict, tmp_path) -> None:
    np.save(tmp_path / "calib.npy", _samples(entry, 16))
    report = _build(entry, "host", tmp_path / "b", tmp_path / "calib.npy")
    assert report["bits"] == 8 and report["host_check"]["bit_exact"]


def _emulate(entry: dict, tmp_path) -> None:
    np.save(tmp_path / "calib.npy", _samples(entry, 16))
    report = _build(entry, "stm32", tmp_path / "fw", tmp_path / "calib.npy")
    assert report["compiled"] and report["flash_bytes"] < 1 << 20
    result = run_cli("simulate", tmp_path / "fw", "--limit", "2", "--json")
    assert result.returncode == 0, result.stderr
    simulated = json.loads(result.stdout)
    assert simulated["bit_exact"] and simulated["instructions"] > 0


@pytest.mark.parametrize("name", sorted(EMULATED))
def test_stm32_firmware_is_bit_exact_in_the_emulator(name: str, tmp_path) -> None:
    _emulate(next(e for e in ENTRIES if e["name"] == name), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("entry", [e for e in ENTRIES if e["name"] not in EMULATED],
                         ids=[e["name"] for e in ENTRIES if e["name"] not in EMULATED])
def test_every_fixture_emulates_bit_exact(entry: dict, tmp_path) -> None:
    _emulate(entry, tmp_path)




def _check_digits_accuracy(entry: dict) -> None:
    graph = import_model(_path(entry))
    calib, inputs, labels = held_out(entry["input_kind"])
    calib, inputs = calib.astype(entry["dtype"]), inputs.astype(entry["dtype"])
    float_accuracy = np.mean(predictions(entry["readout"], run_stack(graph, inputs)) == labels)
    # torch and our float32 reference sum in different orders: a held-out image whose two best logits are within
    # ~1e-6 could change class; one such image is 1/360 (measured: none, every fixture has torch's accuracy)
    assert abs(float_accuracy - entry["torch_accuracy"]) <= 1.5 / len(labels)
    int8 = run_quantized(quantize_graph(graph, calib, 8), inputs)
    # int8 loses at most a point of held-out accuracy (measured: at most 2 of 360 images, 0.56 points, on the timm
    # ViT; benchmarks/hf_models.py)
    assert np.mean(predictions(entry["readout"], int8) == labels) >= float_accuracy - 0.01


@pytest.mark.parametrize("name", sorted(ACCURACY))
def test_trained_fixture_keeps_its_digits_accuracy_in_int8(name: str) -> None:
    _check_digits_accuracy(next(e for e in ENTRIES if e["name"] == name))


@pytest.mark.slow
@pytest.mark.parametrize("entry", [e for e in TRAINED if e["name"] not in ACCURACY],
                         ids=[e["name"] for e in TRAINED if e["name"] not in ACCURACY])
def test_every_trained_fixture_keeps_its_digits_accuracy_in_int8(entry: dict) -> None:
    _check_digits_accuracy(entry)
