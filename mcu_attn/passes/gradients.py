"""Reverse-mode gradients of a float IR graph with respect to chosen Linear weights, in numpy.

Used by `passes/finetune.py` to fine-tune a pruned model towards the original one: the forward pass is the
interpreter's (each op's numpy reference, float32), the backward pass applies one vector-Jacobian product
(VJP) per node in reverse order, in float64, over the nodes that the trainable weights reach. Rules:
- Linear y = x·W + b: gx = gy·Wᵀ, gW = Σ x ⊗ gy, gb = Σ gy;
- Add, Sub, Mul with numpy broadcasting (gradients summed back over the broadcast axes);
- LayerNormalization over its trailing axes: gx = inv·(ĝ − mean ĝ − x̂·mean(ĝ·x̂)) with ĝ = gy·γ,
  gγ = Σ gy·x̂, gβ = Σ gy;
- Attention: the softmax probabilities P of every head are recomputed (the pattern and any constant mask
  applied), dP = gy_h·V_hᵀ, gV_h = Pᵀ·gy_h, dS = P ⊙ (dP − Σ_j dP ⊙ P) · scale, gQ_h = dS·K_h, gK_h = dSᵀ·Q_h;
- elementwise ops of one computed input (GELU, ReLU, tanh, …; other inputs scalar constants): the derivative
  by a central difference of the op's own reference, step 1e-3·max(1, |x|);
- layout and concat ops (every output element is an input element): the op is run on the indices of its
  input elements, and each output gradient is added to the element it came from.
A node the weights reach whose op has no rule stops the gradient with `NoGradient` (fine-tuning is then
skipped and the report says which op).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops import is_kind, spec
from mcu_attn.ir.ops.attention import node_allowed
from mcu_attn.reference.interpreter import run

Vjp = Callable[[Graph, Node, list, np.ndarray], list]
Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


class NoGradient(Exception):
    """A node on the path from the trainable weights to the output has no gradient rule."""


def _unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


def _linear(graph: Graph, node: Node, args: list, gy: np.ndarray) -> list:
    x, weight = args[0].astype(np.float64), args[1].astype(np.float64)
    flat_x, flat_g = x.reshape(-1, weight.shape[0]), gy.reshape(-1, weight.shape[1])
    grads = [gy @ weight.T, flat_x.T @ flat_g]
    if len(args) > 2 and args[2] is not None:
        grads.append(flat_g.sum(axis=0).reshape(np.shape(args[2])))
    return grads


def _add(graph: Graph, node: Node, args: list, gy: np.ndarray) -> list:
    return [_unbroadcast(gy, np.shape(args[0])), _unbroadcast(gy, np.shape(args[1]))]


def _sub(graph: Graph, node: Node, args: list, gy: np.ndarray) -> list:
    return [_unbroadcast(gy, np.shape(args[0])), _unbroadcast(-gy, np.shape(args[1]))]


def _mul(graph: Graph, node: Node, args: list, gy: np.ndarray) -> list:
    a, b = (np.asarray(v, np.float64) for v in args[:2])
    return [_unbroadcast(gy * b, a.shape), _unbroadcast(gy * a, b.shape)]


def _layer_norm(graph: Graph, node: Node, args: list, gy: np.ndarray) -> list:
    x = args[0].astype(np.float64)
    axes = tuple(range(int(node.attr("axis", -1)) % x.ndim, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt(np.square(x - mean).mean(axis=axes, keepdims=True) + float(node.attr("epsilon", 1e-5)))
    normal = (x - mean) * inv
    g = gy * args[1].astype(np.float64)
    gx = inv * (g - g.mean(axis=axes, keepdims=True) - normal * (g * normal).mean(axis=axes, keepdims=True))
    return [gx, _unbroadcast(gy * normal, np.shape(args[1]))] + (
        [_unbroadcast(gy, np.shape(args[2]))] if len(args) > 2 and args[2] is not None else [])


def _heads(t: np.ndarray, heads: int, dim: int) -> np.ndarray:
    """[..., S, H·D] → [..., H, S, D]"""
    return t.reshape(*t.shape[:-1], heads, dim).swapaxes(-2, -3)


def _attention(graph: Graph, node: Node, args: list, gy: np.ndarray) -> list:
    heads, dim, scale = int(node.attrs["heads"]), int(node.attrs["head_dim"]), float(node.attrs["scale"])
    q, k, v = (_heads(a.astype(np.float64), heads, dim) for a in args[:3])
    scores = scale * (q @ k.swapaxes(-1, -2))
    if len(args) > 3 and args[3] is not None:
        scores = scores + args[3]
    scores = np.where(node_allowed(graph, node), scores, -np.inf)
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    g = _heads(gy, heads, dim)
    dp = g @ v.swapaxes(-1, -2)
    ds = probs * (dp - np.sum(dp * probs, axis=-1, keepdims=True)) * scale
    merge = lambda t: t.swapaxes(-2, -3).reshape(args[0].shape)  # noqa: E731
    return [merge(ds @ k), merge(ds.swapaxes(-1, -2) @ q), merge(probs.swapaxes(-1, -2) @ g)]


def _pointwise(graph: Graph, node: Node, args: list, gy: np.ndarray) -> list:
    x = args[0].astype(np.float64)
    step = 1e-3 * np.maximum(1.0, np.abs(x))
    op = spec(node.op)
    up = op.run(node, [x + step] + args[1:])[0].astype(np.float64)
    down = op.run(node, [x - step] + args[1:])[0].astype(np.float64)
    return [gy * (up - down) / (2 * step)]


def _moves(graph: Graph, node: Node, args: list, gy: np.ndarray) -> list:
    """Layout and concat ops: route each output gradient back to the input element it was copied from."""
    moved = [i for i, a in enumerate(args) if a is not None and (i == 0 or is_kind(node.op, "concat"))]
    starts = np.cumsum([0] + [args[i].size for i in moved])
    traced = list(args)
    for start, i in zip(starts, moved):
        traced[i] = np.arange(start, start + args[i].size, dtype=np.float64).reshape(args[i].shape)
    index = spec(node.op).run(node, traced)[0].astype(np.int64).ravel()
    total = np.bincount(index, weights=gy.ravel(), minlength=int(starts[-1]))
    grads: list = [None] * len(args)
    for start, i in zip(starts, moved):
        grads[i] = total[start:start + args[i].size].reshape(args[i].shape)
    return grads


RULES: dict[str, Vjp] = {"Linear": _linear, "Add": _add, "Sub": _sub, "Mul": _mul,
                         "LayerNormalization": _layer_norm, "Attention": _attention}


def _rule(graph: Graph, node: Node) -> Vjp:
    if node.op in RULES:
        return RULES[node.op]
    if is_kind(node.op, "layout", "concat"):
        return _moves
    computed = [v for v in node.inputs if v and not graph.is_const(v)]
    if (is_kind(node.op, "elementwise") and len(computed) == 1 and node.inputs[0] == computed[0]
            and all(graph.const(v).size == 1 for v in node.inputs[1:] if v)):
        return _pointwise
    raise NoGradient(node.op)


def reached(graph: Graph, weights: set[str]) -> list[Node]:
    """The nodes whose output depends on any of the constants `weights`, in graph order."""
    live, nodes = set(weights), []
    for node in graph.nodes:
        if any(v in live for v in node.inputs):
            nodes.append(node)
            live.update(node.outputs)
    return nodes


class Gradients:
    """The backward pass of `graph` for the constants `weights`: the nodes they reach and each one's rule, found
    once (NoGradient, naming the op, when one has no rule), then applied to sample after sample."""

    def __init__(self, graph: Graph, weights: set[str]) -> None:
        self.graph, self.weights = graph, set(weights)
        self.steps = [(node, _rule(graph, node)) for node in reversed(reached(graph, self.weights))]

    def __call__(self, sample: np.ndarray, objective: Objective) -> tuple[float, dict[str, np.ndarray]]:
        """`objective` of the graph's first output y for one sample (a function giving the loss and dloss/dy), and
        the gradient of the loss for each weight."""
        graph = self.graph
        values = run(graph, {graph.inputs[0]: sample}, keep=True)
        output = graph.outputs[0]
        loss, gradient = objective(values[output].astype(np.float64))
        grads: dict[str, np.ndarray] = {output: gradient}
        for node, rule in self.steps:
            gy = grads.pop(node.outputs[0], None)
            if gy is None:
                continue
            args = [values[v] if v else None for v in node.inputs]
            for value, grad in zip(node.inputs, rule(graph, node, args, gy)):
                if grad is not None and value and (value in self.weights or not graph.is_const(value)):
                    grads[value] = grads[value] + grad if value in grads else grad
        return loss, {w: grads.get(w, 0.0) for w in self.weights}
