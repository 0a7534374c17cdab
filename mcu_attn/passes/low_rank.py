"""Low-rank linear layers (`--low-rank auto|R`): one Linear replaced by two thinner ones where that saves work.

A Linear y = x W + b with W [K, N] of rank r < K N / (K + N) costs fewer MACs and fewer weights as two
products, y = (x A) B + b, with A [K, r] and B [r, N]: r (K + N) instead of K N per row. A and B come from the
truncated SVD W ≈ U_r S_r V_rᵀ, the singular values split evenly between them (A = U_r S_r^½, B = S_r^½ V_rᵀ)
so both factors have the same range and quantize alike (the quantizer then treats them as any Linear: int8 or
int4 weights, the intermediate x A calibrated on the calibration data like every other activation).

- `--low-rank R`: every Linear that rank R makes cheaper (R < K N / (K + N)) is factored at rank R.
- `--low-rank auto`: rank per layer within an accuracy budget on the calibration data. The candidate ranks of a
  layer are the powers of two below its break-even rank. Layers are taken in order of the MACs their smallest
  candidate would save (largest first); each gets the smallest candidate rank whose factoring keeps the
  model's outputs on the calibration data within `--tolerance` of the unfactored model's, with every layer
  factored so far (the same comparison as `--attention auto`, `sparsify.output_metric`: top-1 changes for a
  classifier, else the relative error). A layer no candidate keeps within the budget stays whole.
The report lists each factored layer (K, N, rank, MACs and weights before and after) and the error measured.
"""

from __future__ import annotations

import math

import numpy as np

from mcu_attn.data import check_stack
from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops.lowering import rows
from mcu_attn.ir.types import TensorType
from mcu_attn.progress import progress
from mcu_attn.reference.interpreter import run_stack


def parse(text: str) -> int | None:
    """`auto` -> None, `R` -> R (a positive rank); anything else is a one-line error."""
    if text == "auto":
        return None
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"--low-rank {text}: give auto or a rank of at least 1")
    return int(text)


def break_even(k: int, n: int) -> float:
    """Ranks below this save MACs and weights: r (K + N) < K N."""
    return k * n / (k + n)


def factors(weight: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """(A [K, rank], B [rank, N]) with A B the best rank-`rank` approximation of weight (Eckart-Young)."""
    u, s, vt = np.linalg.svd(np.asarray(weight, np.float64), full_matrices=False)
    root = np.sqrt(s[:rank])
    return ((u[:, :rank] * root).astype(np.float32), (root[:, None] * vt[:rank]).astype(np.float32))


def factor(graph: Graph, name: str, rank: int) -> Graph:
    """A copy of graph with Linear `name` as two Linears of inner size `rank` (the bias on the second)."""
    result = graph.copy()
    node = next(n for n in result.nodes if n.name == name)
    a, b = factors(result.const(node.inputs[1]), rank)
    x, out = node.inputs[0], node.outputs[0]
    inner = result.fresh(f"{name}_low_rank")
    result.types[inner] = TensorType(result.type(out).dtype, (*result.shape(x)[:-1], rank))
    first = Node("Linear", [x, result.add_const(f"{name}_a", a)], [inner], {}, f"{name}.a")
    second = Node("Linear", [inner, result.add_const(f"{name}_b", b), *node.inputs[2:]], [out], {}, f"{name}.b")
    result.insert_before(node, [first, second])
    result.remove([node])
    result.prune_unused()
    return result


def _linears(graph: Graph) -> list[tuple[Node, int, int, int]]:
    """(node, K, N, rows) of every Linear."""
    found = []
    for node in graph.nodes:
        if node.op == "Linear":
            k, n = graph.shape(node.inputs[1])
            found.append((node, int(k), int(n), rows(graph.shape(node.inputs[0]))))
    return found


def _entry(name: str, k: int, n: int, count: int, rank: int) -> dict:
    return {"layer": name, "k": k, "n": n, "rank": rank, "macs_before": count * k * n,
            "macs_after": count * rank * (k + n), "weights_before": k * n, "weights_after": rank * (k + n)}


def apply_rank(graph: Graph, rank: int) -> tuple[Graph, list[dict]]:
    """Every Linear that `rank` makes cheaper, factored at `rank`."""
    layers = []
    for node, k, n, count in _linears(graph):
        if rank < break_even(k, n):
            graph = factor(graph, node.name, rank)
            layers.append(_entry(node.name, k, n, count, rank))
    return graph, layers


def choose_ranks(graph: Graph, samples: np.ndarray, tolerance: float, metric=None) -> tuple[Graph, dict]:
    """`--low-rank auto` (see the module docstring): the factored graph and its report."""
    from mcu_attn.passes.sparsify import output_metric

    samples = check_stack(graph, samples, "calibration data")
    measure = output_metric(graph, metric)
    reference = run_stack(graph, samples)
    plans = []  # (MACs the smallest candidate saves, node name, K, N, rows, candidate ranks smallest first)
    for node, k, n, count in _linears(graph):
        ranks = [2 ** p for p in range(int(math.log2(max(break_even(k, n), 1))) + 1) if 2 ** p < break_even(k, n)]
        if ranks:
            plans.append((count * (k * n - ranks[0] * (k + n)), node.name, k, n, count, ranks))
    plans.sort(key=lambda plan: -plan[0])
    layers, error = [], 0.0
    with progress("--low-rank auto", total=sum(len(plan[-1]) for plan in plans), unit="trials") as advance:
        for _, name, k, n, count, ranks in plans:
            for index, rank in enumerate(ranks):
                trial = factor(graph, name, rank)
                trial_error = measure.error(reference, run_stack(trial, samples))
                if trial_error <= tolerance:
                    graph, error = trial, trial_error
                    layers.append(_entry(name, k, n, count, rank))
                    advance(len(ranks) - index)
                    break
                advance(1)
    return graph, {"layers": layers, "error": error, "tolerance": tolerance, "compared": measure.description,
                   "samples": int(samples.shape[0])}


def low_rank(graph: Graph, samples: np.ndarray | None, text: str, tolerance: float, metric=None
             ) -> tuple[Graph, dict]:
    """Apply `--low-rank TEXT`; returns the graph and the report."""
    rank = parse(text)
    if not any(node.op == "Linear" for node in graph.nodes):
        raise UserError("--low-rank: the model has no linear layer to factor")
    if rank is not None:
        graph, layers = apply_rank(graph, rank)
        report = {"layers": layers}
    else:
        if samples is None:
            raise UserError("--low-rank auto chooses ranks on calibration data: pass --calib C.npy")
        graph, report = choose_ranks(graph, samples, tolerance, metric)
    report["requested"] = text
    report["macs_saved"] = sum(layer["macs_before"] - layer["macs_after"] for layer in report["layers"])
    report["weights_saved"] = sum(layer["weights_before"] - layer["weights_after"] for layer in report["layers"])
    return graph, report
