"""Linformer: attention over keys and values projected along the sequence (`--attention linformer:K`).

A block's n keys and values are replaced by K rows each, K' = E k and V' = F v (E, F constant [K, n]), and its
n queries attend to those K rows: softmax(q K'^T) V' costs O(n K d) instead of O(n^2 d), and nothing of size
n x n exists. In the graph the projections are a transpose, a `Linear` along the sequence (weight E^T) and a
transpose back, so the integer build runs them on the ordinary QLinear kernel (int8 weights, one scale per
projected row), and the attention is `Attention`/`QAttention` with n queries over K keys (`key_sets`,
C: ma_attention_kv_s8, the same online softmax and exp table as every attention kernel).

The projections are fitted on the calibration data, block by block, in the graph as it stands (the blocks
before have their projections already):
1. E pools the keys: row r is the mean of the tokens in the r-th of K equal contiguous segments, so every
   projected key is a summary of one stretch of the sequence (and E quantizes exactly: one value per row).
2. F by least squares, so that the block's output matches dense attention's: with P' = softmax(scale q (E k)^T)
   [n, K] fixed by E, each calibration sample and head gives the value rows T = argmin ||P' T - o|| (o the
   dense output, numpy's lstsq), and F_lam = argmin sum ||F v - T||^2 + lam ||F - E||^2 over every sample and
   head, a ridge pulling F towards the pooling E (lam in `RIDGES` times the mean squared value). The fit to T
   alone overfits long sequences (n unknowns per row), so the block keeps whichever of E and the F_lam gives
   the smallest sum ||P' F v - o||^2, the block's own output error on the calibration data.
A block is replaced only where the model's outputs on the calibration data stay within the tolerance of the
dense model's (the metric of `--attention auto`, sparsify.output_metric); blocks are tried in order and each
kept replacement stays for the next. The report gives every block's error and whether it was replaced.
Only blocks that see every token can be projected: a causal block's projection would mix future tokens into
the past, a sparse pattern or a mask is already sparse, and a block of at most K tokens gains nothing.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops.attention import node_pattern
from mcu_attn.ir.types import TensorType
from mcu_attn.progress import progress
from mcu_attn.reference.interpreter import run, run_stack

# F's pull towards E, in units of the mean squared value: the candidates between E itself and least squares
RIDGES = (10.0, 1.0, 0.1, 0.01, 0.001)


def pooling(rows: int, seq: int) -> np.ndarray:
    """E [rows, seq]: row r averages the tokens of the r-th of `rows` equal contiguous segments."""
    bounds = (np.arange(rows + 1) * seq) // rows
    matrix = np.zeros((rows, seq))
    for r in range(rows):
        matrix[r, bounds[r]:bounds[r + 1]] = 1.0 / (bounds[r + 1] - bounds[r])
    return matrix


def _split(x: np.ndarray, heads: int, dim: int) -> np.ndarray:
    """[n, heads*dim] -> [heads, n, dim] in float64."""
    return np.asarray(x, np.float64).reshape(x.shape[-2], heads, dim).transpose(1, 0, 2)


def fit_values(activations: list[tuple[np.ndarray, ...]], e: np.ndarray, heads: int, dim: int,
               scale: float) -> np.ndarray:
    """F [rows, n] (module docstring, step 2) from (q, k, v, dense output) per calibration sample."""
    rows, seq = e.shape
    gram = np.zeros((seq, seq))
    cross = np.zeros((rows, seq))
    cases = []  # (P' [heads, n, rows], v [heads, n, dim], dense output [heads, n, dim]) per sample
    for q, k, v, out in activations:
        qh, kh, vh, oh = (_split(t, heads, dim) for t in (q, k, v, out))
        logits = scale * qh @ (e @ kh).transpose(0, 2, 1)
        probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        for h in range(heads):
            target = np.linalg.lstsq(probs[h], oh[h], rcond=None)[0]                    # [rows, dim]
            gram += vh[h] @ vh[h].T
            cross += target @ vh[h].T
        cases.append((probs, vh, oh))
    level = max(float(np.trace(gram)) / seq, 1e-12)

    def output_error(f: np.ndarray) -> float:
        return sum(float(np.sum((probs @ (f @ vh) - oh) ** 2)) for probs, vh, oh in cases)

    candidates = [e] + [np.linalg.solve(gram + lam * level * np.eye(seq), (cross + lam * level * e).T).T
                        for lam in RIDGES]
    return min(candidates, key=output_error)


def _project(graph: Graph, node: Node, index: int, matrix: np.ndarray, tag: str) -> None:
    """Input `index` of attention `node` ([..., n, W]) becomes matrix @ it ([..., rows, W]): transpose, Linear
    along the sequence (weight matrix^T), transpose back."""
    value = node.inputs[index]
    shape = graph.shape(value)
    dtype = graph.type(value).dtype
    rows = matrix.shape[0]
    perm = tuple(range(len(shape) - 2)) + (len(shape) - 1, len(shape) - 2)
    columns = graph.fresh(f"{node.name}_{tag}_t")
    graph.types[columns] = TensorType(dtype, shape[:-2] + (shape[-1], shape[-2]))
    projected_t = graph.fresh(f"{node.name}_{tag}_proj_t")
    graph.types[projected_t] = TensorType(dtype, shape[:-2] + (shape[-1], rows))
    projected = graph.fresh(f"{node.name}_{tag}_proj")
    graph.types[projected] = TensorType(dtype, shape[:-2] + (rows, shape[-1]))
    weight = graph.add_const(f"{node.name}_{tag}_projection", np.ascontiguousarray(matrix.T.astype(np.float32)))
    graph.insert_before(node, [
        Node("Transpose", [value], [columns], {"perm": perm}, f"{node.name}_{tag}_t"),
        Node("Linear", [columns, weight], [projected_t], {}, f"{node.name}_{tag}_projection"),
        Node("Transpose", [projected_t], [projected], {"perm": perm}, f"{node.name}_{tag}_proj")])
    inputs = list(node.inputs)
    inputs[index] = projected
    graph.set_inputs(node, inputs)


def project_block(graph: Graph, node: Node, e: np.ndarray, f: np.ndarray) -> None:
    """Make attention `node` attend to E k and F v (in place)."""
    _project(graph, node, 1, e, "k")
    _project(graph, node, 2, f, "v")


def obstacle(graph: Graph, node: Node, rows: int) -> str | None:
    """Why block `node` cannot be projected to `rows` keys, or None."""
    seq = graph.shape(node.inputs[0])[-2]
    pattern = node_pattern(node)
    if pattern.causal:
        return "causal (a projection would mix future tokens into the past)"
    if not pattern.dense or (len(node.inputs) > 3 and node.inputs[3]):
        return f"already sparse ({pattern.describe() if not pattern.dense else 'a mask'})"
    if graph.shape(node.inputs[1])[-2] != seq:
        return "already projected"
    if rows >= seq:
        return f"{seq} tokens: {rows} projected keys save nothing"
    return None


def _activations(graph: Graph, node: Node, samples: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    wanted = list(node.inputs[:3]) + [node.outputs[0]]
    return [tuple(values[v] for v in wanted)
            for values in (run(graph, {graph.inputs[0]: s}, keep=wanted) for s in samples)]


def choose(graph: Graph, samples: np.ndarray | None, rows: int, tolerance: float,
           error: Callable[[np.ndarray, np.ndarray], float]) -> tuple[Graph, list[dict]]:
    """Project each block that allows it to `rows` keys where the outputs stay within `tolerance` of `graph`'s
    (by `error`, sparsify's output metric); returns the graph and one report entry per block."""
    if samples is None:
        raise UserError(f"--attention linformer:{rows} needs calibration data (--calib C.npy): the projections "
                        f"are fitted on it")
    if rows < 1:
        raise UserError(f"--attention linformer:{rows}: the number of projected keys must be at least 1")
    result = graph.copy()
    dense = run_stack(graph, samples)
    blocks = [n.name for n in result.nodes if n.op == "Attention"]
    report = []
    with progress(f"linformer:{rows}", total=len(blocks), unit="blocks") as advance:
        for name in blocks:
            node = next(n for n in result.nodes if n.name == name)
            why = obstacle(result, node, rows)
            if why:
                report.append({"block": name, "replaced": False, "why": why})
                advance()
                continue
            heads, dim = int(node.attrs["heads"]), int(node.attrs["head_dim"])
            e = pooling(rows, result.shape(node.inputs[0])[-2])
            f = fit_values(_activations(result, node, samples), e, heads, dim, float(node.attrs["scale"]))
            trial = result.copy()
            project_block(trial, next(n for n in trial.nodes if n.name == name), e, f)
            err = float(error(dense, run_stack(trial, samples)))
            replaced = err <= tolerance
            report.append({"block": name, "replaced": replaced, "error": err})
            if replaced:
                result = trial
            advance(note=f"{name}: error {err:.3g}")
    return result, report
