"""Fine-tuning after structured pruning: the pruned model trained end to end towards the unpruned one.

The least-squares refit (`passes/reconstruct.py`) makes each layer match the unpruned one on its own; the errors
it cannot take back still add up through the softmaxes and normalisations that follow. This step then trains
every learned parameter of the pruned model together (the float constants its ops declare as parameters:
weights, biases, LayerNorm scales and offsets, class tokens and position embeddings), by gradient descent
(gradients from `passes/gradients.py`) on
how far the pruned model's first output y is from the unpruned model's t on the calibration samples. The
unpruned model is the teacher, so no labels are needed:
- a classifier ([1, C] scores, as `--attention auto` tells them) is distilled: L = T² KL(softmax(t/T) ‖
  softmax(y/T)) with temperature T = `TEMPERATURE`, whose gradient is dL/dy = T (softmax(y/T) − softmax(t/T));
- any other output: L = ‖y − t‖² / ‖t‖² (mean over the samples of the relative squared error).
The optimiser is Adam on batches of `BATCH` training samples taken in turn, with a step size per tensor of
`LEARNING_RATE` × the tensor's RMS (so that layers of different scales move alike), raised linearly over the
first `WARMUP` steps (Adam's first steps are full-sized whatever the gradient) and decayed along a half cosine to
0 at the last step. Every `HOLD_OUT`-th calibration sample is held out: the weights kept are those with the
lowest held-out loss, checked every `CHECK_EVERY` steps; training stops after `PATIENCE` checks without a new
best, and keeps the refit as it was when no step beats it (with few calibration samples the held-out loss can
rise from the first steps). Deterministic: the batches follow the calibration order, nothing is random.
"""

from __future__ import annotations

import math

import numpy as np

from mcu_attn.ir.graph import Graph
from mcu_attn.ir.ops import spec
from mcu_attn.ir.types import TensorType
from mcu_attn.passes.gradients import Gradients, NoGradient, Objective
from mcu_attn.progress import progress
from mcu_attn.reference.interpreter import run_stack

BATCH = 128            # training samples per step, taken in turn
CHECK_EVERY = 5        # held-out loss checked this often (and after the last step)
PATIENCE = 6           # checks without a new best held-out loss before training stops
LEARNING_RATE = 0.005  # Adam's step per element at the start, as a fraction of the tensor's RMS
HOLD_OUT = 5          # every HOLD_OUT-th calibration sample judges the steps instead of training
TEMPERATURE = 2.0     # distillation temperature for classifiers
WARMUP = 10           # steps over which the step size rises to LEARNING_RATE


def _softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _objective(graph: Graph, target: np.ndarray) -> Objective:
    """The loss of one sample's output against the teacher's `target` (module docstring)."""
    shape = graph.shape(graph.outputs[0])
    if math.prod(shape[:-1]) == 1 and shape[-1] > 1:
        teacher = _softmax(target / TEMPERATURE)

        def distillation(y: np.ndarray) -> tuple[float, np.ndarray]:
            student = _softmax(y / TEMPERATURE)
            loss = TEMPERATURE ** 2 * float(np.sum(teacher * (np.log(teacher + 1e-30) - np.log(student + 1e-30))))
            return loss, TEMPERATURE * (student - teacher)
        return distillation
    energy = max(float(np.sum(np.square(target))), 1e-30)

    def squared_error(y: np.ndarray) -> tuple[float, np.ndarray]:
        return float(np.sum(np.square(y - target))) / energy, 2.0 * (y - target) / energy
    return squared_error


def parameters(graph: Graph) -> list[str]:
    """The float constants the graph's ops take as learned parameters (`OpSpec.is_param`)."""
    return sorted({v for node in graph.nodes for position, v in enumerate(node.inputs)
                   if v and graph.is_const(v) and spec(node.op).is_param(position)
                   and graph.const(v).dtype.kind == "f"})


def _loss(graph: Graph, samples: np.ndarray, targets: np.ndarray) -> float:
    outputs = run_stack(graph, samples).astype(np.float64)
    return float(np.mean([_objective(graph, t)(y)[0] for y, t in zip(outputs, targets)]))


def _set(graph: Graph, values: dict[str, np.ndarray]) -> None:
    for name, value in values.items():
        graph.constants[name] = value.astype(np.float32)
        graph.types[name] = TensorType("float32", value.shape)


def finetune(original: Graph, pruned: Graph, samples: np.ndarray, steps: int) -> dict:
    """Train the parameters of `pruned` towards `original` on `samples`, in place; the report: the held-out loss
    before and after, the step kept, or why nothing was done."""
    names = parameters(pruned)
    try:
        backward = Gradients(pruned, set(names))
    except NoGradient as missing:
        return {"applied": False, "reason": f"no gradient rule for the {missing} op"}
    held = np.arange(len(samples)) % HOLD_OUT == HOLD_OUT - 1
    if held.sum() == 0:
        return {"applied": False, "reason": f"too few calibration samples ({len(samples)}) to hold some out"}
    targets = run_stack(original, samples).astype(np.float64)
    train, train_targets = samples[~held], targets[~held]
    params = {n: pruned.const(n).astype(np.float64) for n in names}
    rates = {n: LEARNING_RATE * max(float(np.sqrt(np.mean(np.square(p)))), 1e-3) for n, p in params.items()}
    moment = {n: np.zeros_like(p) for n, p in params.items()}
    power = {n: np.zeros_like(p) for n, p in params.items()}
    start = best = _loss(pruned, samples[held], targets[held])
    kept, best_step, stale, step = {n: p.copy() for n, p in params.items()}, 0, 0, 0
    size = min(BATCH, len(train))
    with progress("pruning: fine-tuning", total=steps, unit="steps") as advance:
        for step in range(1, steps + 1):
            total = {n: np.zeros_like(p) for n, p in params.items()}
            for index in np.arange((step - 1) * size, step * size) % len(train):
                _, grads = backward(train[index], _objective(pruned, train_targets[index]))
                for n in names:
                    total[n] += grads[n] / size
            decay = min(1.0, step / WARMUP) * 0.5 * (1.0 + math.cos(math.pi * (step - 1) / steps))
            for n, p in params.items():
                moment[n] = 0.9 * moment[n] + 0.1 * total[n]
                power[n] = 0.999 * power[n] + 0.001 * np.square(total[n])
                p -= decay * rates[n] * (moment[n] / (1 - 0.9 ** step)) / (
                    np.sqrt(power[n] / (1 - 0.999 ** step)) + 1e-12)
            _set(pruned, params)
            advance()
            if step % CHECK_EVERY == 0 or step == steps:
                loss = _loss(pruned, samples[held], targets[held])
                if loss < best:
                    best, kept, best_step, stale = loss, {n: p.copy() for n, p in params.items()}, step, 0
                else:
                    stale += 1
                if stale >= PATIENCE:
                    break
    _set(pruned, kept)
    return {"applied": best_step > 0, "objective": _objective(pruned, targets[0]).__name__, "parameters": len(names),
            "held_out_samples": int(held.sum()), "steps_run": step, "step_kept": best_step,
            "held_out_loss_before": start, "held_out_loss_after": best}
