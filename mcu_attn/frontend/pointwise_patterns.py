"""Fuse decomposed LayerNorm, RMSNorm and GELU, however the exporter spelled them, by checking what they compute.

A candidate is a small single-input region of pointwise ops (and, for LayerNorm, last-axis means) grown
forward from a value x. Every value y of the region whose sub-region (its ancestors inside the region) is
private (read by nobody outside) is evaluated on random probes:
- GELU: y(x) must equal the exact (erf) or tanh-approximated GELU of x;
- LayerNorm: y(x) must equal gamma * (x - mean) / sqrt(var + eps) + beta over the last axis for a
  per-channel gamma and beta, which are fitted by least squares on three probes and then checked on a fourth,
  with eps taken from the scalar constants the region adds;
- RMSNorm (Llama): failing that, y(x) must equal gamma * x / sqrt(mean(x^2) + eps), gamma fitted the same way.
SiLU is x * sigmoid(x): a Mul of a value by its own Sigmoid (`FuseSilu`).
This recognises PyTorch's Pow/Sqrt/Div spelling, TF's x*(gamma*rsqrt(var+eps)) + (beta - mean*...) spelling
and any other, and never fuses something that merely looks alike. The largest matching y wins.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from mcu_attn.frontend.layout import scalar
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops import is_kind, spec
from mcu_attn.ir.ops.elementwise import gelu
from mcu_attn.passes.manager import PassResult

MAX_REGION = 24
# float32 evaluation of the original and the fused formula differ by rounding only: a few ulps of values O(1)
TOLERANCE = 1e-4


def _pointwise(op: str) -> bool:
    return is_kind(op, "elementwise")


def _normalising(op: str) -> bool:
    """Ops a decomposed LayerNorm uses: float arithmetic, means, and the Transpose with which TensorFlow takes a
    last-axis mean through GlobalAveragePool."""
    return is_kind(op, "elementwise", "reduce") or op == "Transpose"


def _region(graph: Graph, x: str, accept: Callable[[str], bool]) -> list[Node]:
    """Nodes (in order) whose non-constant inputs are x or values computed inside the region."""
    values, nodes = {x}, []
    for node in graph.nodes:
        if not accept(node.op) or len(nodes) >= MAX_REGION:
            continue
        live = [v for v in node.inputs if v and not graph.is_const(v)]
        if live and all(v in values for v in live):
            nodes.append(node)
            values.update(node.outputs)
    return nodes


def _ancestors(graph: Graph, region: list[Node], y: str) -> list[Node] | None:
    """The region nodes y depends on, if none of their other outputs is read outside them."""
    by_output = {o: n for n in region for o in n.outputs}
    needed, stack = set(), [y]
    while stack:
        node = by_output.get(stack.pop())
        if node is not None and id(node) not in needed:
            needed.add(id(node))
            stack.extend(node.inputs)
    sub = [n for n in region if id(n) in needed]
    return sub if graph.is_private(sub, y) else None


class _Probe:
    """The region's values for one probe input x: each node runs at most once, however many candidate
    sub-regions read it."""

    def __init__(self, graph: Graph, x: str, probe: np.ndarray) -> None:
        self.graph = graph
        self.input = probe
        self.values = {x: probe}
        self.done: set[int] = set()

    def evaluate(self, sub: list[Node], y: str) -> np.ndarray:
        """y computed from the probe by the (ancestor-closed) sub-region `sub`."""
        for node in sub:
            if id(node) in self.done:
                continue
            args = [self.values[v] if v in self.values else self.graph.const(v) if v else None for v in node.inputs]
            for name, result in zip(node.outputs, spec(node.op).run(node, args)):
                self.values[name] = result
            self.done.add(id(node))
        return self.values[y]


def _replace(graph: Graph, sub: list[Node], y: str, op: str, inputs: list[str], attrs: dict) -> None:
    """Put one `op` node where the region computing y was."""
    out = graph.fresh(op.lower())
    graph.types[out] = graph.type(y)
    node = Node(op, inputs, [out], attrs, sub[-1].name)
    graph.insert_before(sub[-1], [node])
    graph.remove(sub)
    graph.replace_uses(y, out)


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= TOLERANCE * (1.0 + np.abs(b))))


class FuseGelu:
    name = "fuse-gelu"
    why = "GELU decomposed into Erf/Tanh arithmetic is one table lookup on an MCU"

    def run(self, graph: Graph, ctx) -> PassResult:
        fused = 0
        for anchor in graph.nodes:
            if anchor.op in ("Erf", "Tanh") and graph.producer(anchor.outputs[0]) is anchor:
                fused += self._try(graph, anchor)
        return PassResult(fused > 0, {"gelu": fused})

    def _try(self, graph: Graph, anchor: Node) -> int:
        return int(any(self._try_source(graph, anchor, x) for x in _sources(graph, anchor.inputs[0])))

    def _try_source(self, graph: Graph, anchor: Node, x: str) -> int:
        if graph.type(x).dtype != "float32":
            return 0
        region = _region(graph, x, _pointwise)
        probe = _Probe(graph, x, np.resize(np.linspace(-6.0, 6.0, 97, dtype=np.float32), graph.shape(x)))
        approximate = "none" if anchor.op == "Erf" else "tanh"
        expected = gelu(probe.input, approximate=approximate)
        for candidate in reversed(region):
            y = candidate.outputs[0]
            sub = _ancestors(graph, region, y)
            if not sub or anchor not in sub or graph.shape(y) != graph.shape(x):
                continue
            if _close(probe.evaluate(sub, y), expected):
                _replace(graph, sub, y, "Gelu", [x], {"approximate": approximate})
                return 1
        return 0


def _sources(graph: Graph, value: str) -> list[str]:
    """Candidate inputs of a pointwise expression, nearest first: the values up the chain of single-input
    pointwise nodes (x/sqrt(2) -> x -> ...), then the one source a multi-input expression (x + c*x^3) has."""
    candidates = [value]
    node = graph.producer(value)
    while node is not None and _pointwise(node.op):
        live = [v for v in node.inputs if v and not graph.is_const(v)]
        if len(live) != 1:
            break
        candidates.append(live[0])
        node = graph.producer(live[0])
    source = _single_source(graph, value)
    return candidates + ([source] if source and source not in candidates else [])


def _single_source(graph: Graph, value: str, depth: int = 8) -> str | None:
    """The one non-constant value a pointwise expression is computed from, if there is exactly one."""
    sources: set[str] = set()
    stack = [(value, 0)]
    while stack:
        current, level = stack.pop()
        node = graph.producer(current)
        if node is None or not _pointwise(node.op) or level >= depth:
            sources.add(current)
            continue
        stack.extend((v, level + 1) for v in node.inputs if v and not graph.is_const(v))
    return sources.pop() if len(sources) == 1 else None


class FuseLayerNorm:
    name = "fuse-layernorm"
    why = "LayerNorm decomposed into mean/variance arithmetic is one integer kernel with a fused requant"

    def run(self, graph: Graph, ctx) -> PassResult:
        fused = 0
        for anchor in graph.nodes:
            if graph.producer(anchor.outputs[0]) is anchor and anchor.op in ("ReduceMean", "GlobalAveragePool"):
                fused += self._try(graph, anchor)
        return PassResult(fused > 0, {"layernorm": fused})

    def _try(self, graph: Graph, anchor: Node) -> int:
        candidates = _sources(graph, anchor.inputs[0])[:2]  # RMSNorm's mean reads x^2: try x too
        return int(any(self._try_source(graph, anchor, x) for x in candidates))

    def _try_source(self, graph: Graph, anchor: Node, x: str) -> int:
        if graph.is_const(x) or graph.type(x).dtype != "float32" or not graph.shape(x):
            return 0
        region = _region(graph, x, _normalising)
        rng = np.random.default_rng(0)
        probes = [_Probe(graph, x, (rng.standard_normal(graph.shape(x)) * (1 + k) + k).astype(np.float32))
                  for k in range(4)]
        for candidate in reversed(region):
            y = candidate.outputs[0]
            sub = _ancestors(graph, region, y)
            if not sub or anchor not in sub or graph.shape(y) != graph.shape(x):
                continue
            for eps in _epsilons(graph, sub):
                fit = _fit_affine(graph.shape(x)[-1], sub, y, probes, eps)
                if fit is not None:
                    gamma, beta = fit
                    _replace(graph, sub, y, "LayerNormalization",
                             [x, graph.add_const("ln_gamma", gamma), graph.add_const("ln_beta", beta)],
                             {"axis": -1, "epsilon": eps})
                    return 1
                fit = _fit_affine(graph.shape(x)[-1], sub, y, probes, eps, rms=True)
                if fit is not None:
                    _replace(graph, sub, y, "RMSNormalization", [x, graph.add_const("rms_gamma", fit[0])],
                             {"axis": -1, "epsilon": eps})
                    return 1
        return 0


def _epsilons(graph: Graph, sub: list[Node]) -> list[float]:
    found = []
    for node in sub:
        if node.op == "Add":
            for v in node.inputs:
                value = scalar(graph, v)
                if value is not None and 0 < value < 1e-2:
                    found.append(value)
    return found


def _normalise(x: np.ndarray, eps: float, rms: bool = False) -> np.ndarray:
    """(x - mean) / sqrt(var + eps) over the last axis, or x / sqrt(mean(x^2) + eps) when `rms`."""
    x64 = x.astype(np.float64)
    centred = x64 if rms else x64 - x64.mean(axis=-1, keepdims=True)
    return centred / np.sqrt(np.square(centred).mean(axis=-1, keepdims=True) + eps)


def _fit_affine(channels: int, sub: list[Node], y: str, probes: list[_Probe], eps: float,
                rms: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel gamma, beta with y = gamma * normalise(x) + beta on three probes, checked on a fourth (RMS:
    beta = 0, gamma alone fitted)."""
    normal = np.concatenate([_normalise(p.input, eps, rms).reshape(-1, channels) for p in probes[:3]])
    target = np.concatenate([p.evaluate(sub, y).reshape(-1, channels) for p in probes[:3]])
    gamma = np.empty(channels)
    beta = np.zeros(channels)
    for c in range(channels):
        columns = [normal[:, c]] if rms else [normal[:, c], np.ones(len(normal))]
        solution, *_ = np.linalg.lstsq(np.stack(columns, axis=1), target[:, c].astype(np.float64), rcond=None)
        gamma[c] = solution[0]
        beta[c] = 0.0 if rms else solution[1]
    check = probes[3].evaluate(sub, y)
    predicted = (_normalise(probes[3].input, eps, rms) * gamma + beta).astype(np.float32)
    if not np.all(np.isfinite(check)) or not _close(check, predicted):
        return None
    return gamma.astype(np.float32), beta.astype(np.float32)


class FuseSilu:
    name = "fuse-silu"
    why = "x * sigmoid(x) (SiLU, Llama's gate) is one table lookup on an MCU"

    def run(self, graph: Graph, ctx) -> PassResult:
        fused = 0
        for node in graph.nodes:
            if node.op != "Mul" or len(node.inputs) != 2 or graph.producer(node.outputs[0]) is not node:
                continue
            for x, gate in (node.inputs, node.inputs[::-1]):
                sigmoid = graph.producer(gate)
                if (sigmoid is not None and sigmoid.op == "Sigmoid" and sigmoid.inputs[0] == x
                        and graph.shape(x) == graph.shape(node.outputs[0]) and graph.is_private([sigmoid, node],
                                                                                               node.outputs[0])):
                    graph.insert_before(node, [Node("Silu", [x], list(node.outputs), {}, node.name)])
                    graph.remove([sigmoid, node])
                    fused += 1
                    break
        return PassResult(fused > 0, {"silu": fused})
