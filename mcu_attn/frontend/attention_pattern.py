"""Recognise multi-head self-attention and fuse it into one IR `Attention` op.

Anchor: a Softmax over the last axis. Walking back from it we collect scalar scales (Mul/Div by constants),
additive constant masks (Add), boolean masks (Where with a constant condition) and Reshapes that only regroup
the leading axes (tf2onnx's [H, S, S] <-> [1, H, S, S] around Keras' einsums) down to the scores MatMul Q·Kᵀ; the
Softmax output, through such Reshapes and the NaN guard of SDPA with a boolean mask, must feed exactly one
MatMul P·V. Each of Q, Kᵀ and V is traced through layout
ops to a root tensor of squeezed shape [S, F] (see layout.py), and the index probe must show the canonical
head split: Q[h, s, d] = root[s, off + h*D + d], Kᵀ[h, d, s] likewise, V like Q. The P·V result is traced
forward through layout ops to a [S, H*D] value whose probe must show the inverse merge. Only then is the
subgraph replaced: q/k/v views of the roots (a slice of a packed in-projection becomes its own Linear),
`Attention(heads, head_dim, scale, pattern)` and, if the graph wanted another layout (seq-first), a Reshape
back. Masks that are exactly an `AttentionPattern` (band, strided, dilated, block-sparse, global tokens, causal:
mask_patterns.py) become the op's pattern (the model was trained with that sparse attention, so the sparse
kernel is exact); any other constant mask stays as the op's additive mask input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mcu_attn.frontend.layout import Chain, scalar, squeeze_leading, trace_back, trace_forward
from mcu_attn.frontend.mask_patterns import match_pattern
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops.attention import MASKED
from mcu_attn.ir.pattern import DENSE, AttentionPattern
from mcu_attn.ir.types import QuantParams, TensorType
from mcu_attn.passes.manager import PassResult


@dataclass
class ScorePath:
    matmul: Node
    nodes: list[Node]
    scale: float
    mask: np.ndarray | None  # additive, float


def _score_path(graph: Graph, softmax: Node) -> ScorePath | None:
    """From a Softmax input back to the Q·Kᵀ MatMul through scalar scales and constant masks.

    Walking back, the softmax input is kept as scale * current + mask: a Mul by c makes scale*c, an Add of m
    adds scale*m to the mask, a Where(keep, current, -inf) adds 0/-inf.
    """
    nodes: list[Node] = []
    scale, mask = 1.0, None
    current = softmax.inputs[0]
    while True:
        node = graph.producer(current)
        if node is None or len(graph.consumers(current)) != 1:
            return None
        if node.op == "MatMul" and not any(graph.is_const(v) for v in node.inputs):
            return ScorePath(node, nodes, scale, mask)
        if _regroups_heads(graph, node):
            nodes.append(node)
            current = node.inputs[0]
            continue
        consts = [v for v in node.inputs if graph.is_const(v)]
        others = [v for v in node.inputs if v and not graph.is_const(v)]
        if len(others) != 1:
            return None
        if node.op in ("Mul", "Div") and len(consts) == 1 and (factor := scalar(graph, consts[0])) is not None:
            if node.op == "Div" and node.inputs[0] != others[0]:
                return None
            scale *= factor if node.op == "Mul" else 1.0 / factor
        elif node.op == "Add" and len(consts) == 1:
            term = scale * graph.const(consts[0]).astype(np.float64)
            mask = term if mask is None else mask + term
        elif node.op == "Where" and graph.is_const(node.inputs[0]) and len(consts) == 2:
            fill_name = node.inputs[2] if node.inputs[1] == others[0] else node.inputs[1]
            fill = float(np.max(graph.const(fill_name)))
            if fill > MASKED:
                return None
            keep = graph.const(node.inputs[0]).astype(bool)
            keep = keep if node.inputs[1] == others[0] else ~keep
            term = np.where(keep, 0.0, -np.inf)
            mask = term if mask is None else mask + term
        else:
            return None
        nodes.append(node)
        current = others[0]


def _regroups_heads(graph: Graph, node: Node) -> bool:
    """A Reshape that only regroups the leading (batch, head) axes of [..., S, S] scores or probabilities, as
    tf2onnx writes Keras MultiHeadAttention's einsums ([H, S, S] <-> [1, H, S, S])."""
    return (node.op == "Reshape" and graph.shape(node.inputs[0])[-2:] == graph.shape(node.outputs[0])[-2:]
            and graph.type(node.inputs[0]).size == graph.type(node.outputs[0]).size)


def _through_regrouping(graph: Graph, value: str) -> tuple[str, list[Node]]:
    """(the value after Reshapes that only regroup leading axes, those Reshapes), following single readers."""
    nodes = []
    while len(graph.consumers(value)) == 1 and _regroups_heads(graph, graph.consumers(value)[0]):
        nodes.append(graph.consumers(value)[0])
        value = nodes[-1].outputs[0]
    return value, nodes


def _nan_guard(graph: Graph, probs: str) -> tuple[str, list[Node]]:
    """(the value P·V reads, the guard's nodes) for softmax probabilities p: `Where(IsNaN(p), 0, p)` (what
    scaled_dot_product_attention with a boolean mask exports) is p itself when every query sees a key, which the
    caller checks; anything else is p unguarded."""
    readers = graph.consumers(probs)
    if len(readers) != 2 or {r.op for r in readers} != {"IsNaN", "Where"}:
        return probs, []
    isnan = next(r for r in readers if r.op == "IsNaN")
    where = next(r for r in readers if r.op == "Where")
    zero = where.inputs[1]
    if (where.inputs[0] != isnan.outputs[0] or where.inputs[2] != probs or graph.consumers(isnan.outputs[0]) != [where]
            or not graph.is_const(zero) or np.any(graph.const(zero) != 0)
            or graph.shape(where.outputs[0]) != graph.shape(probs)):
        return probs, []
    return where.outputs[0], [isnan, where]


def _head_offset(index: np.ndarray, heads: int, seq: int, dim: int, width: int) -> int | None:
    """Offset `off` if index[h, s, d] == s*width + off + h*dim + d everywhere, else None."""
    if index.size != heads * seq * dim:
        return None
    index = index.reshape(heads, seq, dim)
    off = int(index[0, 0, 0])
    h, s, d = np.meshgrid(np.arange(heads), np.arange(seq), np.arange(dim), indexing="ij")
    expected = s * width + off + h * dim + d
    if off < 0 or off + heads * dim > width or not np.array_equal(index, expected):
        return None
    return off


def _root_width(graph: Graph, chain: Chain, seq: int) -> int | None:
    shape = squeeze_leading(graph.shape(chain.root))
    if len(shape) == 1 and seq == 1:
        return shape[0]
    if len(shape) != 2 or shape[0] != seq:
        return None
    return shape[1]


def analyse_mask(mask: np.ndarray | None, heads: int, seq: int) -> tuple[AttentionPattern, np.ndarray | None]:
    """(pattern, leftover additive mask): a pure 0/-inf mask that is exactly a pattern becomes the pattern."""
    if mask is None:
        return DENSE, None
    full = np.broadcast_to(mask, mask.shape[:-2] + (seq, seq)).reshape(-1, seq, seq)
    if full.shape[0] not in (1, heads):
        raise ValueError("mask does not broadcast over heads")
    if np.all(full == full[:1]):
        full = full[:1]
    allowed = full[0] > MASKED
    structural = full.shape[0] == 1 and np.all(full[0][allowed] == 0)
    if structural:
        pattern = match_pattern(allowed)
        if pattern is not None:
            return pattern, None
    leftover = np.where(full > MASKED, full, -np.inf).astype(np.float32)
    return DENSE, leftover[0] if leftover.shape[0] == 1 else leftover


def _column_slice(ttype: TensorType, off: int, width: int) -> TensorType:
    """Type of weight[:, off:off+width], keeping per-output-channel scales of a pre-quantized model."""
    quant = ttype.quant
    if quant is not None and quant.axis == 1:
        quant = QuantParams(quant.scale[off:off + width], quant.zero_point[off:off + width], 1, quant.bits)
    return TensorType(ttype.dtype, ttype.shape[:-1] + (width,), quant)


def _block_name(softmax: Node) -> str:
    """The exporter's scope of the block ("/blocks/blocks.0/attn/Softmax" -> "/blocks/blocks.0/attn")."""
    name = softmax.name or ""
    return name.rsplit("/", 1)[0] if "/" in name.strip("/") else name


class FuseAttention:
    name = "fuse-attention"
    why = "attention spelled as MatMul/Softmax/MatMul is one op with typed heads and key pattern"

    def run(self, graph: Graph, ctx) -> PassResult:
        fused = 0
        for softmax in graph.nodes:
            if softmax.op == "Softmax" and softmax.attr("axis", -1) % len(graph.shape(softmax.inputs[0])) == \
                    len(graph.shape(softmax.inputs[0])) - 1:
                fused += self._try(graph, softmax)
        return PassResult(fused > 0, {"attention_blocks": fused})

    def _try(self, graph: Graph, softmax: Node) -> int:
        path = _score_path(graph, softmax)
        probs, guard = _nan_guard(graph, softmax.outputs[0])
        probs, regrouped = _through_regrouping(graph, probs)
        readers = graph.consumers(probs)
        if path is None or len(readers) != 1 or readers[0].op != "MatMul" or readers[0].inputs[0] != probs:
            return 0
        pv = readers[0]
        q_chain = trace_back(graph, path.matmul.inputs[0])
        k_chain = trace_back(graph, path.matmul.inputs[1])
        v_chain = trace_back(graph, pv.inputs[1])
        out_chain = trace_forward(graph, pv.outputs[0])
        q_shape = graph.shape(path.matmul.inputs[0])
        if len(q_shape) < 2 or v_chain.scale != 1.0:
            return 0
        seq, dim = q_shape[-2], q_shape[-1]
        heads = int(np.prod(q_shape[:-2], dtype=np.int64))
        if graph.shape(pv.inputs[1])[-2:] != (seq, dim) or graph.shape(path.matmul.inputs[1])[-2:] != (dim, seq):
            return 0
        widths = [_root_width(graph, c, seq) for c in (q_chain, k_chain, v_chain)]
        if None in widths:
            return 0
        k_index = k_chain.probe(graph).reshape(heads, dim, seq).swapaxes(1, 2)
        offsets = [_head_offset(q_chain.probe(graph), heads, seq, dim, widths[0]),
                   _head_offset(k_index, heads, seq, dim, widths[1]),
                   _head_offset(v_chain.probe(graph), heads, seq, dim, widths[2])]
        if None in offsets or not self._merges_heads(graph, out_chain, heads, seq, dim):
            return 0
        chains = [q_chain, k_chain, v_chain, out_chain]
        pattern = [n for c in chains for n in c.nodes] + path.nodes + [path.matmul, softmax, *guard, *regrouped, pv]
        if not graph.is_private(pattern, out_chain.value):  # only the final output may be read from outside
            return 0
        try:
            pattern, mask = analyse_mask(path.mask, heads, seq)
        except ValueError:
            return 0
        if guard and path.mask is not None and not np.all(np.any(path.mask > MASKED, axis=-1)):
            return 0  # a query that sees no key: the guard's zeros are not what Attention computes
        # insert before P·V: it depends on every root, so q, k and v are all defined by then
        views = [self._view(graph, c, off, heads * dim, seq, pv) for c, off in zip(chains[:3], offsets)]
        scale = path.scale * q_chain.scale * k_chain.scale
        self._emit(graph, out_chain, views, mask, pv, _block_name(softmax), heads=heads, head_dim=dim,
                   scale=float(scale), pattern=pattern)
        return 1

    @staticmethod
    def _merges_heads(graph: Graph, chain: Chain, heads: int, seq: int, dim: int) -> bool:
        shape = squeeze_leading(graph.shape(chain.value))
        if shape != (seq, heads * dim) and not (seq == 1 and shape == (heads * dim,)):
            return False
        index = chain.probe(graph).reshape(seq, heads, dim)
        h, s, d = np.meshgrid(np.arange(heads), np.arange(seq), np.arange(dim), indexing="ij")
        return np.array_equal(index.transpose(1, 0, 2), h * seq * dim + s * dim + d)

    @staticmethod
    def _view(graph: Graph, chain: Chain, off: int, width: int, seq: int, anchor: Node) -> str:
        """[1, S, width] view of a root starting at column `off`: a new Linear for a packed projection."""
        root = chain.root
        producer = graph.producer(root)
        full = graph.type(root).size // seq
        if off == 0 and width == full and graph.shape(root) == (1, seq, width):
            return root
        if producer is not None and producer.op == "Linear" and graph.shape(root)[-1] == full:
            weight = np.ascontiguousarray(graph.const(producer.inputs[1])[:, off:off + width])
            inputs = [producer.inputs[0], graph.add_const(f"{root}_w", weight,
                                                          _column_slice(graph.type(producer.inputs[1]), off, width))]
            if len(producer.inputs) > 2:
                inputs.append(graph.add_const(f"{root}_b", graph.const(producer.inputs[2])[off:off + width].copy()))
            x_shape = graph.shape(producer.inputs[0])
            out = graph.fresh(f"{root}_slice")
            graph.types[out] = TensorType(graph.type(root).dtype, x_shape[:-1] + (width,))
            graph.insert_before(anchor, [Node("Linear", inputs, [out], {}, out)])
            root = out
            off, full = 0, width
        nodes = []
        if graph.shape(root) != (1, seq, full):
            shaped = graph.fresh(f"{root}_view")
            graph.types[shaped] = TensorType(graph.type(root).dtype, (1, seq, full))
            nodes.append(Node("Reshape", [root, graph.add_const("shape", np.array([1, seq, full], np.int64))],
                              [shaped], {}, shaped))
            root = shaped
        if off != 0 or width != full:
            sliced = graph.fresh(f"{root}_cols")
            graph.types[sliced] = TensorType(graph.type(root).dtype, (1, seq, width))
            nodes.append(Node("Slice", [root], [sliced], {"starts": (off,), "ends": (off + width,), "axes": (2,)},
                              sliced))
            root = sliced
        graph.insert_before(anchor, nodes)
        return root

    @staticmethod
    def _emit(graph: Graph, out_chain: Chain, views: list[str], mask: np.ndarray | None, anchor: Node,
              name: str, **attrs) -> None:
        final = out_chain.value
        dtype = graph.type(final).dtype
        seq, width = graph.type(views[0]).shape[-2:]
        inputs = list(views)
        if mask is not None:
            inputs.append(graph.add_const("attn_mask", mask))
        out = graph.fresh("attention")
        graph.types[out] = TensorType(dtype, (1, seq, width), graph.type(final).quant)  # a view: same scale
        nodes = [Node("Attention", inputs, [out], attrs, name or out)]
        if graph.shape(final) != (1, seq, width):
            shaped = graph.fresh("attention_view")
            graph.types[shaped] = graph.type(final)
            nodes.append(Node("Reshape", [out, graph.add_const("shape", np.array(graph.shape(final), np.int64))],
                              [shaped], {}, shaped))
            out = shaped
        graph.insert_before(anchor, nodes)
        graph.replace_uses(final, out)
