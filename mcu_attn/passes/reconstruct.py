"""Least-squares reconstruction after structured pruning (passes/prune.py).

After heads or FFN channels are removed, the projection that reads them (the attention output projection, the
second FFN `Linear`) is refit so that the layer's output changes as little as possible on the calibration data:

    min over W', b'  Σ_tokens ‖ x·W' + b' − y ‖²

where x are the pruned model's features (the kept heads' or channels' activations, computed with every earlier
layer already pruned and refit) and y is the original model's output of the same projection on the same
samples. The error a pruned layer leaves travels down the residual stream, so every `Linear` after the first
refit projection is refit the same way, one after the other in graph order (the q, k, v and FFN projections of
later blocks, the classifier): each sees the features the pruned model really gives it and is fit to what the
original model computed there (the kept columns only, where pruning narrowed its output). The solution comes from the normal equations
G·[W'; b'] = C with G = Σ x̃ᵀx̃ and C = Σ x̃ᵀy (x̃ = [x, 1]), accumulated sample by sample, so nothing grows
with the calibration set. When G is ill-conditioned (condition number above `COND_LIMIT`: features that are
almost constant or almost collinear, as dead GELU channels are) the solution would take large weights that
quantize badly; a ridge term λ·I on the weight rows, λ = `RIDGE` × the mean diagonal of G, keeps them small.

Each refit layer is reported with the relative error Σ‖ŷ − y‖² / Σ‖y‖² before the refit (the pruned weights
as they are) and after it, the ridge λ used (0 when none) and the condition number. A refit that would not
lower the error (possible only with the ridge term) is not applied.
"""

from __future__ import annotations

import numpy as np

from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.types import TensorType
from mcu_attn.progress import progress
from mcu_attn.reference.interpreter import run

COND_LIMIT = 1e6   # above this condition number of x̃ᵀx̃ the refit is ridge-regularised
RIDGE = 1e-3       # λ as a fraction of the mean diagonal of x̃ᵀx̃ (the mean squared feature)


def _weights(graph: Graph, node: Node) -> np.ndarray:
    """[W; b] of a Linear as one (in + 1) × out matrix."""
    weight = graph.const(node.inputs[1]).astype(np.float64)
    bias = (graph.const(node.inputs[2]).astype(np.float64).reshape(-1) if len(node.inputs) > 2 and node.inputs[2]
            else np.zeros(weight.shape[1]))
    return np.vstack([weight, np.broadcast_to(bias, (weight.shape[1],))[None, :]])


def _relative_error(stacked: np.ndarray, gram: np.ndarray, cross: np.ndarray, energy: float) -> float:
    residual = float(np.einsum("ij,ik,kj->", stacked, gram, stacked) - 2.0 * np.sum(stacked * cross) + energy)
    return max(residual, 0.0) / energy if energy > 0 else 0.0


def _solve(gram: np.ndarray, cross: np.ndarray) -> tuple[np.ndarray, float, float]:
    condition = float(np.linalg.cond(gram))
    ridge = 0.0
    system = gram.copy()
    if not np.isfinite(condition) or condition > COND_LIMIT:
        ridge = RIDGE * float(np.mean(np.diag(gram)[:-1]))
        system[np.arange(len(system) - 1), np.arange(len(system) - 1)] += ridge
    return np.linalg.solve(system, cross), ridge, condition


def _set_weights(graph: Graph, node: Node, stacked: np.ndarray) -> None:
    """Write [W; b] back as float32 constants; the layer is requantized later with its own new scales."""
    weight = stacked[:-1].astype(np.float32)
    bias = stacked[-1].astype(np.float32)
    w_name = graph.add_const(node.inputs[1], weight, TensorType("float32", weight.shape))
    b_name = graph.add_const(f"{node.name}_refit_b", bias, TensorType("float32", bias.shape))
    graph.set_inputs(node, [node.inputs[0], w_name, b_name])
    graph.prune_unused()


def _residual(graph: Graph, value: str) -> tuple[str, str] | None:
    """(sum, skip) when `value`'s only reader adds it to another computed value: a residual connection."""
    readers = graph.consumers(value)
    if len(readers) != 1 or readers[0].op != "Add" or value in graph.outputs:
        return None
    add = readers[0]
    skip = add.inputs[1] if add.inputs[0] == value else add.inputs[0]
    return None if graph.is_const(skip) or skip == value else (add.outputs[0], skip)


def refit(original: Graph, pruned: Graph, layers: list[str], samples: np.ndarray,
          columns: dict[str, np.ndarray]) -> list[dict]:
    """Refit, in place and in the order given (graph order), the Linears of `pruned` computing the values
    `layers`. Targets: the same values of `original` (only the kept `columns` of a value whose last axis pruning
    narrowed); for a Linear that adds into a residual stream, the original sum minus the pruned model's skip
    input, so the refit also takes back the error the residual stream carries. One report row per layer."""
    residuals = {value: _residual(original, value) for value in layers}
    wanted = [residuals[v][0] if residuals[v] else v for v in layers]
    reference = [run(original, {original.inputs[0]: s}, keep=wanted) for s in samples]
    rows = []
    with progress("pruning: refitting", total=len(layers), unit="layers") as advance:
        for target, goal in zip(layers, wanted):
            rows.append(_refit_layer(pruned, target, goal, residuals[target], samples, reference, columns))
            advance()
    return rows


def _refit_layer(pruned: Graph, target: str, goal: str, residual: tuple[str, str] | None, samples: np.ndarray,
                 reference: list[dict], columns: dict[str, np.ndarray]) -> dict:
    """Refit the Linear computing `target` on the samples, in place; its report row."""
    node = pruned.producer(target)
    skip = residual[1] if residual else None
    width = pruned.shape(node.inputs[0])[-1]
    outputs = pruned.shape(target)[-1]
    gram = np.zeros((width + 1, width + 1))
    cross = np.zeros((width + 1, outputs))
    energy = 0.0
    for sample, expected in zip(samples, reference):
        values = run(pruned, {pruned.inputs[0]: sample}, keep=[node.inputs[0]] + ([skip] if skip else []))
        features = values[node.inputs[0]]
        x = np.hstack([features.astype(np.float64).reshape(-1, width), np.ones((features.size // width, 1))])
        y = expected[goal].astype(np.float64)
        if skip:
            y = y - values[skip].astype(np.float64)
        if target in columns:
            y = y[..., columns[target]]
        y = y.reshape(x.shape[0], outputs)
        gram += x.T @ x
        cross += x.T @ y
        energy += float(np.square(y).sum())
    current = _weights(pruned, node)
    solved, ridge, condition = _solve(gram, cross)
    before = _relative_error(current, gram, cross, energy)
    after = _relative_error(solved, gram, cross, energy)
    if after < before:
        _set_weights(pruned, node, solved)
    return {"layer": node.name or target, "error_before": before, "error_after": min(after, before),
            "ridge": ridge, "condition": condition, "refit": after < before,
            "target": "residual sum" if skip else "output"}
