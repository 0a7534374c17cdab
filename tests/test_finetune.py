"""Fine-tuning after pruning (passes/finetune.py) and the gradients it runs on (passes/gradients.py)."""

from __future__ import annotations

import numpy as np
import pytest

from mcu_attn.api import import_model
from mcu_attn.data import check_stack
from mcu_attn.passes.finetune import finetune, parameters
from mcu_attn.passes.gradients import Gradients, NoGradient
from mcu_attn.passes.prune import prune_graph
from mcu_attn.reference.interpreter import run
from support import DIGITS, FIXTURES, ROOT

CALIB = DIGITS / "data" / "calib.npy"
TRAIN = DIGITS / "data" / "train_x.npy"  # every training image: enough for fine-tuning to generalise
MODELS = {
    "torch": DIGITS / "digits_vit.onnx",                                  # Gather, Concat, Reshape, GELU
    "tf2onnx": ROOT / "examples" / "digits_vit_keras" / "digits_vit_keras.onnx",  # Slice, Squeeze
    "causal": FIXTURES / "models" / "dynamo_op17_causal.onnx",            # a causal attention pattern
}


def _squared_error(target: np.ndarray):
    def objective(y: np.ndarray) -> tuple[float, np.ndarray]:
        return float(np.sum(np.square(y - target))), 2.0 * (y - target)
    return objective


@pytest.mark.parametrize("name", MODELS)
def test_gradients_match_central_differences(name) -> None:
    """For every learned parameter (weights, biases, LayerNorm scales and offsets, class token, position
    embedding), the derivative along a random direction against a central difference."""
    graph = import_model(MODELS[name])
    sample = check_stack(graph, np.load(CALIB)[:1], "calib")[0]
    target = run(graph, {graph.inputs[0]: sample})[graph.outputs[0]].astype(np.float64) + 0.5
    weights = set(parameters(graph))
    assert len(weights) > 30  # 14 Linears with biases, 5 LayerNorms, the class token and position embedding
    _, grads = Gradients(graph, weights)(sample, _squared_error(target))
    rng = np.random.default_rng(0)
    for weight in sorted(weights):
        original = graph.const(weight)
        direction = rng.standard_normal(original.shape) * float(np.sqrt(np.mean(np.square(original))))

        def loss(step: float) -> float:
            trial = graph.copy()
            trial.constants[weight] = (original + step * direction).astype(np.float32)
            y = run(trial, {trial.inputs[0]: sample})[trial.outputs[0]].astype(np.float64)
            return float(np.sum(np.square(y - target)))

        numeric = (loss(2e-3) - loss(-2e-3)) / 4e-3
        analytic = float(np.sum(grads[weight] * direction))
        # 3 %: the central difference's own error (the loss's curvature over a step of 0.2 % of the weights' RMS)
        # and the float32 forward pass; a wrong rule is off by far more (a sign, a missing term)
        assert analytic == pytest.approx(numeric, rel=0.03, abs=1e-3 * abs(loss(0.0))), weight


def test_an_op_without_a_rule_stops_fine_tuning() -> None:
    graph = import_model(MODELS["torch"])
    gelu = next(n for n in graph.nodes if n.op == "Gelu")
    gelu.op = "Softmax"  # a reduction: no gradient rule
    with pytest.raises(NoGradient, match="Softmax"):
        Gradients(graph, {n.inputs[1] for n in graph.nodes if n.op == "Linear"})


@pytest.fixture(scope="module")
def pruned():
    graph = import_model(MODELS["torch"])
    calib = check_stack(graph, np.load(TRAIN)[:640], "calib").astype(np.float32)
    return graph, calib, prune_graph(graph, calib, 0.5, 0.5)


def test_fine_tuning_lowers_the_held_out_loss_and_is_deterministic(pruned) -> None:
    graph, calib, result = pruned
    tuned = [result.graph.copy(), result.graph.copy()]
    reports = [finetune(graph, g, calib, 10) for g in tuned]
    assert reports[0] == reports[1]
    assert all(np.array_equal(tuned[0].const(v), tuned[1].const(v)) for v in tuned[0].constants)
    report = reports[0]
    assert report["applied"] and report["objective"] == "distillation"
    assert report["held_out_loss_after"] < report["held_out_loss_before"]
    assert report["held_out_samples"] == len(calib) // 5


def test_nothing_changes_when_no_step_beats_the_refit(pruned, monkeypatch) -> None:
    import mcu_attn.passes.finetune as module

    graph, calib, result = pruned
    monkeypatch.setattr(module, "LEARNING_RATE", 10.0)  # steps far too large: every one makes the loss worse
    trial = result.graph.copy()
    report = finetune(graph, trial, calib[:40], 30)
    assert not report["applied"] and report["step_kept"] == 0
    assert report["steps_run"] == module.CHECK_EVERY * module.PATIENCE  # stopped early, patience spent
    assert all(np.array_equal(trial.const(v), result.graph.const(v)) for v in trial.constants)
