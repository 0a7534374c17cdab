"""Substitute sparse attention patterns for dense attention (`--attention dense|PATTERN|auto`).

- Without `--attention` every block stays as the model has it: a model trained with a constant mask that is a
  pattern (recognised on import, frontend/mask_patterns.py) runs the sparse kernel, with its results unchanged.
- `dense`: every block visits all keys. A block that carries a pattern becomes the dense kernel with that key
  set as an explicit mask ([S, S], 0 or -inf): the same results as the sparse kernel, bit for bit in the
  integer kernels (which take the keys one at a time in ascending order either way), at O(S^2) work.
- PATTERN (`AttentionPattern`, ir/pattern.py): every block attends to the keys of the pattern: `local:W` (a
  window), `strided:K` (every K-th key), `dilated:W,D` (W keys D apart), `block:B[,L[,S[,G]]]` (block-sparse:
  a query's block sees its L neighbouring blocks on either side and every S-th block), their unions
  (`strided:8,local:8`) and `global:G` global tokens (they see, and are seen by, every token), with the
  block's own causality. The kernels then do O(S·keys per query) work.
- `auto` tries the patterns of `auto_candidates` (local windows, the sparse transformer's strided pattern,
  dilated windows and block-local blocks, sizes 2, 4, 8, ... below the sequence length, each with 0 and 1
  global tokens), cheapest first, and keeps the first whose outputs on the calibration data stay within the
  tolerance of the dense model's. What is compared depends on what the model outputs (`output_metric`): a
  classifier (one row of class scores, [1, C]) is compared by its top-1 class, and the error is the share of
  samples whose prediction changes; any other output (a sequence, a feature map) by all of its values, and the
  error is the relative error ||y - y_dense|| / ||y_dense|| over the calibration stack. (Top-1 at one position
  would be wrong for a causal model, whose first position no window changes, and meaningless for a sequence.)
  `--auto-metric top1` also compares a sequence's top-1 at every position (a tagger, a language model); the
  Python API takes any function (dense outputs, candidate outputs) -> error. The report says what was
  compared. Calibration data has no labels, so closeness to the dense model is the accuracy proxy; `eval
  --labels` then measures the real accuracy of the choice.
For every choice the report gives the attention mass each block keeps: the share of the dense softmax
probability that falls on the keys the pattern allows, averaged over calibration samples, queries and heads.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from mcu_attn.data import check_stack
from mcu_attn.errors import UserError
from mcu_attn.ir.graph import Graph
from mcu_attn.ir.ops.attention import node_allowed, node_pattern
from mcu_attn.ir.pattern import DENSE, AttentionPattern
from mcu_attn.progress import progress
from mcu_attn.reference.interpreter import run, run_stack

DEFAULT_TOLERANCE = 0.01  # one point of top-1 agreement, or 1 % relative error, against dense
METRICS = ("top1", "relative-error")


PATTERNS_HELP = ("a pattern: local:W, strided:K, dilated:W,D or block:B[,L[,S[,G]]], alone or joined by commas, "
                 "each with global:G")


@dataclass(frozen=True)
class AttentionChoice:
    mode: str                         # "dense", "auto", "pattern" or "linformer"
    pattern: AttentionPattern = DENSE  # "pattern": the keys every block keeps (its causality is the block's own)
    rows: int = 0                      # "linformer": the projected keys per block (passes/linformer.py)

    @staticmethod
    def parse(text: str) -> "AttentionChoice":
        if text in ("dense", "auto"):
            return AttentionChoice(text)
        projected = re.fullmatch(r"linformer:(-?\d+)", text)
        if projected:
            if int(projected.group(1)) < 1:
                raise UserError(f"--attention {text}: the number of projected keys must be at least 1")
            return AttentionChoice("linformer", rows=int(projected.group(1)))
        try:
            return AttentionChoice("pattern", AttentionPattern.parse(text))
        except ValueError as err:
            raise UserError(f"--attention {text!r}: {err} (expected dense, auto, linformer:K or {PATTERNS_HELP})"
                            ) from None

    def describe(self) -> str:
        if self.mode == "linformer":
            return f"linformer:{self.rows}"
        return ",".join(self.pattern.terms()) if self.mode == "pattern" else self.mode


def _blocks(graph: Graph):
    return [n for n in graph.nodes if n.op == "Attention"]


def _band_as_mask(graph: Graph, node) -> None:
    """Replace the block's pattern by the same key set as an additive 0/-inf mask (keeping causality)."""
    mask = np.where(node_allowed(graph, node), 0.0, -np.inf).astype(np.float32)
    if len(node.inputs) > 3 and node.inputs[3]:
        mask = (graph.const(node.inputs[3]) + mask).astype(np.float32)
    graph.set_inputs(node, [*node.inputs[:3], graph.add_const(f"{node.name}_band_mask", mask)])
    node.attrs["pattern"] = AttentionPattern(causal=node_pattern(node).causal)


def _chosen_pattern(choice: AttentionChoice, node) -> AttentionPattern:
    """The pattern `choice` gives a block (with the block's own causality)."""
    return replace(choice.pattern, causal=node_pattern(node).causal)


def apply(graph: Graph, choice: AttentionChoice) -> Graph:
    """A copy of `graph` with every attention block set to `choice`."""
    result = graph.copy()
    if choice.mode == "dense":
        for node in _blocks(result):
            if not node_pattern(node).dense:
                _band_as_mask(result, node)
        return result
    for node in _blocks(result):
        problem = choice.pattern.problem(result.shape(node.inputs[0])[-2])
        if problem:
            raise UserError(f"--attention {choice.describe()}: {problem} of block {node.name!r}")
        if len(node.inputs) > 3:
            raise UserError(f"block {node.name!r} has a learned additive mask; a sparse pattern cannot replace it")
        node.attrs["pattern"] = _chosen_pattern(choice, node)
    return result


def auto_candidates(graph: Graph) -> list[AttentionChoice]:
    """The patterns `auto` tries, cheapest first (by the attention MACs they leave in the model's blocks):
    local windows W, the strided pattern of sparse transformers (a window of K and every K-th key), dilated
    windows (W keys 2 or 4 apart) and block-local blocks (a block and its neighbours), for W, K and block sizes
    2, 4, 8, ... below the shortest sequence, each with 0 and 1 global tokens. Patterns with the same key sets
    are tried once."""
    blocks = _blocks(graph)
    seq = min(graph.shape(n.inputs[0])[-2] for n in blocks)
    sizes = [2 ** p for p in range(1, seq.bit_length()) if 2 ** p < seq]
    shapes = ([AttentionPattern(window=w) for w in sizes] + [AttentionPattern(window=k, stride=k) for k in sizes]
              + [AttentionPattern(dilated=w, dilation=d) for d in (2, 4) for w in sizes]
              + [AttentionPattern(block=b, block_local=1) for b in sizes])
    found: dict[tuple, tuple[int, AttentionChoice]] = {}
    for shape in shapes:
        for global_tokens in (0, 1):
            choice = AttentionChoice("pattern", replace(shape, global_tokens=global_tokens))
            if any(choice.pattern.problem(graph.shape(n.inputs[0])[-2]) for n in blocks):
                continue
            keys = [_chosen_pattern(choice, n).allowed(graph.shape(n.inputs[0])[-2]) for n in blocks]
            cost = sum(int(k.sum()) * int(n.attrs["heads"]) * int(n.attrs["head_dim"]) for k, n in zip(keys, blocks))
            found.setdefault(tuple(np.packbits(k).tobytes() for k in keys), (cost, choice))
    return [choice for _, choice in sorted(found.values(), key=lambda item: item[0])]


def attention_mass(graph: Graph, samples: np.ndarray, choice: AttentionChoice) -> dict[str, float]:
    """Per block: the share of the dense attention probability on the keys `choice` keeps (1.0 = all)."""
    samples = check_stack(graph, samples, "calibration data")
    blocks = _blocks(graph)
    wanted = [v for n in blocks for v in n.inputs[:3]]
    totals = {n.name: 0.0 for n in blocks}
    layouts = []  # per block: (heads, head_dim, seq, scale, keys the block visits, keys `choice` keeps)
    for node in blocks:
        seq = graph.shape(node.inputs[0])[-2]
        kept = (_chosen_pattern(choice, node) if choice.mode == "pattern" else node_pattern(node)).allowed(seq)
        layouts.append((int(node.attrs["heads"]), int(node.attrs["head_dim"]), seq, float(node.attrs["scale"]),
                        node_allowed(graph, node), kept))
    with progress("attention mass", total=len(samples), unit="samples") as advance:
        for sample in samples:
            _block_masses(blocks, layouts, run(graph, {graph.inputs[0]: sample}, keep=wanted), totals)
            advance()
    return {name: total / len(samples) for name, total in totals.items()}


def _block_masses(blocks: list, layouts: list, values: dict, totals: dict[str, float]) -> None:
    """Add one sample's kept attention mass per block to `totals`."""
    for node, (heads, dim, seq, scale, own, kept) in zip(blocks, layouts):
        q, k = values[node.inputs[0]], values[node.inputs[1]]
        qh = q.reshape(seq, heads, dim).transpose(1, 0, 2).astype(np.float64)
        kh = k.reshape(seq, heads, dim).transpose(1, 0, 2).astype(np.float64)
        scores = np.where(own, qh @ kh.transpose(0, 2, 1) * scale, -np.inf)
        probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        totals[node.name] += float((probs * kept).sum(axis=-1).mean())


@dataclass(frozen=True)
class OutputMetric:
    """How `auto` compares a candidate's outputs with the dense model's: an error, 0 when they are the same."""
    name: str
    description: str  # for the report: what was compared
    error: Callable[[np.ndarray, np.ndarray], float]  # (dense outputs, candidate outputs) over the stack


def top1_change(dense: np.ndarray, trial: np.ndarray) -> float:
    """The share of predictions (the argmax of the last axis, at every position) that differ from dense."""
    return float(np.mean(dense.argmax(axis=-1) != trial.argmax(axis=-1)))


def relative_error(dense: np.ndarray, trial: np.ndarray) -> float:
    """||trial - dense|| / ||dense|| over every value of every sample (Frobenius norms, in float64)."""
    reference = np.asarray(dense, np.float64)
    difference = float(np.linalg.norm(np.asarray(trial, np.float64) - reference))
    scale = float(np.linalg.norm(reference))
    return difference / scale if scale else (0.0 if difference == 0 else math.inf)


def output_metric(graph: Graph, metric: str | Callable[[np.ndarray, np.ndarray], float] | None = None
                  ) -> OutputMetric:
    """What `auto` compares: `metric` ("top1", "relative-error" or a function), or by default the top-1 class
    of a classifier's [1, C] scores and the relative error of any other output."""
    output = graph.outputs[0]
    shape = graph.shape(output)
    positions = math.prod(shape[:-1])
    if metric is None:
        metric = "top1" if positions == 1 and shape[-1] > 1 else "relative-error"
    if callable(metric):
        return OutputMetric("custom", f"{getattr(metric, '__name__', 'a given metric')} of output {output!r} "
                                      f"{list(shape)}", metric)
    if metric == "top1":
        where = "" if positions == 1 else f" at each of its {positions} positions"
        return OutputMetric("top1", f"top-1 class of output {output!r} {list(shape)}{where}: the share of "
                                    f"predictions that differ from dense", top1_change)
    if metric == "relative-error":
        return OutputMetric("relative-error", f"all values of output {output!r} {list(shape)}: relative error "
                                              f"||y - y_dense|| / ||y_dense||", relative_error)
    raise UserError(f"--auto-metric {metric}: choose {' or '.join(METRICS)}")


def choose(graph: Graph, samples: np.ndarray, choice: AttentionChoice, tolerance: float = DEFAULT_TOLERANCE,
           metric: str | Callable[[np.ndarray, np.ndarray], float] | None = None) -> tuple[Graph, dict]:
    """Apply `choice` (resolving `auto` on the calibration samples, comparing outputs by `metric`: see
    `output_metric`); returns the graph and a report."""
    if not _blocks(graph) and choice.mode != "dense":
        raise UserError("the model has no attention block to make sparse")
    report: dict = {"requested": choice.describe()}
    applied = None  # the graph set to `choice`, when auto has already built it
    if samples is not None:
        samples = check_stack(graph, samples, "calibration data")
    if choice.mode == "linformer":
        from mcu_attn.passes import linformer

        measure = output_metric(graph, metric)
        projected, blocks = linformer.choose(graph, samples, choice.rows, tolerance, measure.error)
        report.update(metric=measure.name, compared=measure.description, samples=int(len(samples)),
                      tolerance=tolerance, blocks=blocks, chosen=choice.describe())
        return projected, report
    if choice.mode == "auto":
        if samples is None:
            raise UserError("--attention auto needs calibration data (--calib C.npy)")
        measure = output_metric(graph, metric)
        dense = run_stack(graph, samples)
        candidates = auto_candidates(graph)  # cheapest first
        tried = []
        with progress("--attention auto", total=len(candidates), unit="candidates") as advance:
            for candidate in candidates:
                trial = apply(graph, candidate)
                error = measure.error(dense, run_stack(trial, samples))
                tried.append({"attention": candidate.describe(), "error": error})
                advance(note=f"{candidate.describe()}: error {error:.3g}")
                if error <= tolerance:
                    choice, applied = candidate, trial
                    break
            else:
                choice = AttentionChoice("dense")
        report.update(metric=measure.name, compared=measure.description, samples=int(len(samples)), tried=tried,
                      tolerance=tolerance)
    report["chosen"] = choice.describe()
    if samples is not None:
        report["attention_mass"] = attention_mass(graph, samples, choice)
    return (applied if applied is not None else apply(graph, choice)), report
