"""Neural-network ops: matrix products, normalisation, softmax, reductions and the fused attention op.

`Linear` and `Attention` are this IR's own ops (the frontend fuses exporter patterns into them); the others
keep ONNX semantics so the ONNX backend node tests can check them.
"""

from __future__ import annotations

import numpy as np

from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops.registry import op

MASKED = -1e4  # an additive mask value at or below this hides the key: exp() underflows to exactly 0 in float32


def _matmul_macs(node: Node, graph: Graph) -> int:
    a, b = graph.shape(node.inputs[0]), graph.shape(node.inputs[1])
    out = graph.shape(node.outputs[0])
    k = a[-1] if len(a) else 1
    return int(np.prod(out, dtype=np.int64)) * int(k) if b else 0


@op("MatMul", macs=_matmul_macs)
def matmul(a, b):
    return np.matmul(a, b)


def gemm_macs(node: Node, graph: Graph) -> int:
    """Output elements times the reduction length K (A's last axis, or its first when transposed)."""
    a = graph.shape(node.inputs[0])
    k = a[0] if node.attr("transA", 0) else a[-1]
    return int(np.prod(graph.shape(node.outputs[0]), dtype=np.int64)) * int(k)


@op("Gemm", macs=gemm_macs)
def gemm(a, b, c=None, *, alpha=1.0, beta=1.0, transA=0, transB=0):
    a = a.T if transA else a
    b = b.T if transB else b
    y = np.asarray(alpha, a.dtype) * (a @ b)
    if c is not None:
        y = y + np.asarray(beta, a.dtype) * c
    return y.astype(a.dtype)


def linear_macs(node: Node, graph: Graph) -> int:
    k, n = graph.shape(node.inputs[1])
    rows = int(np.prod(graph.shape(node.inputs[0])[:-1], dtype=np.int64))
    return rows * int(k) * int(n)


@op("Linear", const_inputs=(1, 2), macs=linear_macs, onnx=())
def linear(x, weight, bias=None):
    """y = x @ weight + bias over the last axis; weight [in, out] is a constant."""
    y = np.matmul(x, weight)
    return (y + bias).astype(x.dtype) if bias is not None else y


@op("Softmax")
def softmax(x, *, axis=-1):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return (e / np.sum(e, axis=axis, keepdims=True)).astype(x.dtype)


@op("LogSoftmax")
def log_softmax(x, *, axis=-1):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return (shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))).astype(x.dtype)


@op("LayerNormalization")
def layer_norm(x, scale, bias=None, *, axis=-1, epsilon=1e-5, stash_type=1):
    """Normalise over axes [axis, rank); outputs Y, Mean and InvStdDev (the last two in float32)."""
    axis = axis % x.ndim
    axes = tuple(range(axis, x.ndim))
    xf = x.astype(np.float32)
    mean = np.mean(xf, axis=axes, keepdims=True)
    var = np.mean(np.square(xf - mean), axis=axes, keepdims=True)
    inv_std = (1.0 / np.sqrt(var + np.float32(epsilon))).astype(np.float32)
    y = (xf - mean) * inv_std * scale
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype), mean.astype(np.float32), inv_std


def _reduce_axes(x, axes, noop_with_empty_axes):
    if axes is None or len(axes) == 0:
        return None if not noop_with_empty_axes else ()
    return tuple(int(a) % x.ndim for a in axes)


@op("ReduceMean")
def reduce_mean(x, *, axes=None, keepdims=1, noop_with_empty_axes=0):
    axes = _reduce_axes(x, axes, noop_with_empty_axes)
    if axes == ():
        return x
    return np.mean(x, axis=axes, keepdims=bool(keepdims)).astype(x.dtype)


@op("ReduceSum")
def reduce_sum(x, *, axes=None, keepdims=1, noop_with_empty_axes=0):
    axes = _reduce_axes(x, axes, noop_with_empty_axes)
    if axes == ():
        return x
    return np.sum(x, axis=axes, keepdims=bool(keepdims)).astype(x.dtype)


@op("ReduceMax")
def reduce_max(x, *, axes=None, keepdims=1, noop_with_empty_axes=0):
    """The maximum over `axes`; over an empty set it is the lowest value of the dtype (-inf for floats)."""
    axes = _reduce_axes(x, axes, noop_with_empty_axes)
    if axes == ():
        return x
    if np.issubdtype(x.dtype, np.floating):
        lowest = -np.inf
    else:
        lowest = False if x.dtype == np.bool_ else np.iinfo(x.dtype).min
    return np.max(x, axis=axes, keepdims=bool(keepdims), initial=lowest)


def attention_allowed(seq_len: int, window: int, global_tokens: int, causal: int) -> np.ndarray:
    """bool[S,S]: may query i attend to key j?

    Dense (window 0): every j (j <= i when causal). Local window W: |i-j| <= W//2, or the last W keys
    (i-W < j <= i) when causal. The first `global_tokens` tokens attend to and are attended by every token.
    """
    i = np.arange(seq_len)[:, None]
    j = np.arange(seq_len)[None, :]
    if window <= 0:
        allowed = np.ones((seq_len, seq_len), bool)
    elif causal:
        allowed = (i - j) < window
    else:
        allowed = np.abs(i - j) <= window // 2
    if global_tokens:
        allowed = allowed | (i < global_tokens) | (j < global_tokens)
    if causal:
        allowed = allowed & (j <= i)
    return allowed


def shared_mask(mask: np.ndarray, seq_len: int) -> np.ndarray | None:
    """The [S, S] mask every head shares, from a constant mask broadcastable to [..., S, S]; None when it does
    not broadcast or differs between heads (the kernels take one mask for all heads)."""
    try:
        square = np.broadcast_to(mask, np.broadcast_shapes(np.shape(mask), (seq_len, seq_len)))
    except ValueError:
        return None
    square = square.reshape(-1, seq_len, seq_len)
    return None if (square != square[:1]).any() else square[0]


def node_allowed(graph: Graph, node: Node) -> np.ndarray:
    """`attention_allowed` of an attention node: its window, global_tokens and causal attributes over the
    sequence length of its q input."""
    return attention_allowed(graph.shape(node.inputs[0])[-2], int(node.attr("window", 0)),
                             int(node.attr("global_tokens", 0)), int(node.attr("causal", 0)))


def _attention_macs(node: Node, graph: Graph) -> int:
    return 2 * int(node_allowed(graph, node).sum()) * int(node.attrs["heads"]) * int(node.attrs["head_dim"])


@op("Attention", const_inputs=(3,), macs=_attention_macs, onnx=())
def attention(q, k, v, mask=None, *, heads=1, head_dim=1, scale=1.0, causal=0, window=0, global_tokens=0):
    """Multi-head scaled dot-product attention over projected q, k, v of shape [..., S, heads*head_dim].

    out[s, h*D:(h+1)*D] = softmax_j(scale * q_h[s] . k_h[j] + mask[s, j]) v_h[j], over the keys j that
    `attention_allowed` permits (window, global tokens, causality); `mask` is an optional constant additive
    mask broadcastable to [heads, S, S] for masks that are not a plain band.
    """
    lead, seq = q.shape[:-2], q.shape[-2]
    qh = q.reshape(*lead, seq, heads, head_dim).swapaxes(-2, -3)
    kh = k.reshape(*lead, seq, heads, head_dim).swapaxes(-2, -3)
    vh = v.reshape(*lead, seq, heads, head_dim).swapaxes(-2, -3)
    scores = np.matmul(qh, kh.swapaxes(-1, -2)) * np.asarray(scale, q.dtype)
    if mask is not None:
        scores = scores + mask
    allowed = attention_allowed(seq, window, global_tokens, causal)
    scores = np.where(allowed, scores, -np.inf)
    probs = np.exp(scores - np.max(scores, axis=-1, keepdims=True))
    probs = probs / np.sum(probs, axis=-1, keepdims=True)
    out = np.matmul(probs.astype(q.dtype), vh)
    return out.swapaxes(-2, -3).reshape(q.shape).astype(q.dtype)


@op("GlobalAveragePool")
def global_average_pool(x):
    """Mean over every axis after the first two (tf2onnx spells a last-axis mean this way)."""
    return np.mean(x, axis=tuple(range(2, x.ndim)), keepdims=True).astype(x.dtype)
