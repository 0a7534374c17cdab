"""The float and layout C kernels against the numpy IR references, on random shapes.

Float kernels accumulate in float32 in their own order (numpy's matmul uses other orders and SIMD), and use
the C library's expf/erff/tanhf, so they match within tolerances derived per kernel below. Layout kernels and
the elementwise add move or add single values: they match exactly.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from mcu_attn.codegen.host_cc import compile_shared
from mcu_attn.codegen.kernels import KERNELS
from mcu_attn.ir.ops import spec
from mcu_attn.ir.ops.elementwise import gelu
from mcu_attn.ir.ops.attention import attention
from mcu_attn.ir.ops.layernorm import layer_norm
from mcu_attn.ir.ops.linear import linear
from mcu_attn.ir.pattern import DENSE, AttentionPattern

FLAGS = ("-O2", "-std=c99", "-Wall", "-Wextra", "-Werror")
SOURCES = ("linear_f32.c", "attention_f32.c", "layernorm_f32.c", "gelu_f32.c", "add_f32.c", "layout.c")
EPS32 = float(np.finfo(np.float32).eps)
I32 = ctypes.c_int32
PTR = ctypes.c_void_p


class AttentionParams(ctypes.Structure):
    # the pattern descriptor (ma_attention_pattern) is embedded after head_dim: its int32 fields in order
    _fields_ = [(name, ctypes.c_int32) for name in ("seq", "heads", "head_dim", *(f"pattern_{n}" for n, _ in
                                                                                  DENSE.c_fields()), "query_tile")] + [
        ("scale", ctypes.c_float), ("mask", PTR)]


@pytest.fixture(scope="module")
def lib() -> ctypes.CDLL:
    path = compile_shared([KERNELS / "ref" / s for s in SOURCES], [KERNELS / "include"], FLAGS, name="kernels_f32")
    library = ctypes.CDLL(str(path))
    signatures = {
        "ma_linear_f32": [PTR, I32, I32, I32, PTR, PTR, PTR],
        "ma_attention_f32": [PTR, PTR, PTR, ctypes.POINTER(AttentionParams), PTR, PTR],
        "ma_attention_f32_scratch": [ctypes.POINTER(AttentionParams)],
        "ma_layernorm_f32": [PTR, I32, I32, PTR, PTR, ctypes.c_float, PTR],
        "ma_gelu_f32": [PTR, I32, I32, PTR],
        "ma_add_f32": [PTR, PTR, I32, I32, PTR],
        "ma_permute": [PTR, PTR, I32, I32, PTR, PTR],
        "ma_copy_strided": [PTR, PTR, I32, I32, PTR, PTR, PTR],
        "ma_gather": [PTR, PTR, I32, I32, I32, PTR, I32],
    }
    for name, argtypes in signatures.items():
        getattr(library, name).argtypes = argtypes
        getattr(library, name).restype = None
    library.ma_attention_f32_scratch.restype = I32
    return library


def p(array: np.ndarray | None):
    """A ctypes argument that keeps `array` alive during the call (a bare address would not)."""
    return None if array is None else array.ctypes


def i32(values) -> np.ndarray:
    return np.ascontiguousarray(values, np.int32)


@pytest.mark.parametrize("seed", range(12))
def test_linear(lib, seed):
    rng = np.random.default_rng(seed)
    rows, k, n = (int(v) for v in rng.integers(1, 70, 3))
    x = rng.standard_normal((rows, k)).astype(np.float32)
    w = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32) if seed % 3 else None
    y = np.empty((rows, n), np.float32)
    lib.ma_linear_f32(p(x), rows, k, n, p(np.ascontiguousarray(w.T)), p(bias), p(y))
    # any float32 summation order of k products is within k * eps * sum|x_i w_i| of the exact dot product;
    # the C kernel and numpy may sit on opposite sides, hence twice that.
    bound = 2 * (k + 1) * EPS32 * (np.abs(x) @ np.abs(w) + (0 if bias is None else np.abs(bias)))
    expected = linear(x, w, bias)
    assert np.all(np.abs(y - expected) <= bound + 1e-30)


ATTENTION_CASES = [  # (seq, heads, head_dim, window, causal, global_tokens, masked)
    (1, 1, 1, 0, 0, 0, 0), (17, 4, 8, 0, 0, 0, 0), (17, 4, 8, 0, 1, 0, 0), (23, 2, 5, 5, 0, 0, 0),
    (23, 2, 5, 4, 1, 0, 0), (30, 3, 4, 6, 0, 2, 0), (30, 3, 4, 3, 1, 1, 0), (9, 1, 16, 100, 0, 0, 0),
    (12, 2, 3, 1, 0, 12, 0), (40, 2, 6, 7, 0, 3, 0), (17, 4, 8, 0, 0, 0, 1), (25, 2, 4, 6, 1, 1, 1),
]


def _additive_mask(rng, seq: int, window: int, global_tokens: int, causal: int) -> np.ndarray:
    """Finite biases, with -inf on a third of the keys; each row keeps a key its window allows finite."""
    mask = rng.normal(0, 1, (seq, seq)).astype(np.float32)
    mask[rng.random((seq, seq)) < 0.33] = -np.inf
    allowed = AttentionPattern(window, global_tokens, causal).allowed(seq)
    for row, keep in enumerate(allowed):
        mask[row, rng.choice(np.flatnonzero(keep))] = 0.0
    return mask


@pytest.mark.parametrize("case", ATTENTION_CASES)
def test_attention(lib, case):
    seq, heads, head_dim, window, causal, global_tokens, masked = case
    rng = np.random.default_rng(seq * 31 + window)
    q, k, v = (rng.standard_normal((seq, heads * head_dim)).astype(np.float32) * 2 for _ in range(3))
    mask = _additive_mask(rng, seq, window, global_tokens, causal) if masked else None
    scale = float(1 / np.sqrt(head_dim))
    pattern = AttentionPattern(window, global_tokens, causal)
    expected = attention(q[None], k[None], v[None], mask, heads=heads, head_dim=head_dim, scale=scale,
                         pattern=pattern)[0]
    guard = 5
    for tile in sorted({1, 3, seq}):
        params = AttentionParams(seq, heads, head_dim, *(value for _, value in pattern.c_fields()), tile, scale,
                                 None if mask is None else mask.ctypes.data)
        words = lib.ma_attention_f32_scratch(ctypes.byref(params)) // 4
        assert words == tile * (head_dim + 2)  # O(tile x head_dim): no score matrix, no score row
        scratch = np.full(words + guard, 12345.0, np.float32)
        out = np.empty_like(q)
        lib.ma_attention_f32(p(q), p(k), p(v), ctypes.byref(params), p(scratch), p(out))
        # outputs are convex combinations of v rows: float32 rounding of the dot products, expf, the running
        # rescales and the sums over at most seq terms stays within a few hundred ulps of max|v|
        np.testing.assert_allclose(out, expected, rtol=0, atol=256 * EPS32 * float(np.abs(v).max()))
        assert np.all(scratch[words:] == 12345.0), "the kernel wrote past its scratch"
        in_place = q.copy()  # out may equal q
        lib.ma_attention_f32(p(in_place), p(k), p(v), ctypes.byref(params), p(scratch), p(in_place))
        np.testing.assert_array_equal(in_place, out)


@pytest.mark.parametrize("seed", range(6))
def test_layernorm(lib, seed):
    rng = np.random.default_rng(seed)
    rows, channels = int(rng.integers(1, 20)), int(rng.integers(1, 100))
    x = (rng.standard_normal((rows, channels)) * 3 + rng.standard_normal()).astype(np.float32)
    gamma = rng.standard_normal(channels).astype(np.float32)
    beta = rng.standard_normal(channels).astype(np.float32) if seed % 2 else None
    y = np.empty_like(x)
    lib.ma_layernorm_f32(p(x), rows, channels, p(gamma), p(beta), 1e-5, p(y))
    expected = layer_norm(x, gamma, beta, epsilon=1e-5)[0]
    # mean and variance are float32 sums over `channels` terms in different orders: relative error of the
    # normalised value ~ channels * eps, times |gamma|
    bound = 4 * (channels + 4) * EPS32 * (np.abs(expected) + np.abs(gamma) + 1)
    assert np.all(np.abs(y - expected) <= bound)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(lib, approximate):
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.standard_normal(4000) * 4, np.linspace(-12, 12, 1001)]).astype(np.float32)
    y = np.empty_like(x)
    lib.ma_gelu_f32(p(x), x.size, int(approximate == "tanh"), p(y))
    expected = gelu(x, approximate=approximate)
    # the reference is computed in double and rounded once; the kernel rounds each float32 step (erff/tanhf
    # are within a few ulps), so a few ulps of |x| on top of the result's own ulps
    np.testing.assert_allclose(y, expected, rtol=8 * EPS32, atol=8 * EPS32 * float(np.abs(x).max()) / 12)
    lib.ma_gelu_f32(p(x), x.size, int(approximate == "tanh"), p(x))  # y may equal x
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("shapes", [((1, 17, 32), (1, 17, 32)), ((1, 17, 32), (32,)), ((4, 3, 5), (1, 3, 5)),
                                    ((6, 7), (1,)), ((5,), (5,))])
def test_add_exact(lib, shapes):
    rng = np.random.default_rng(3)
    a = rng.standard_normal(shapes[0]).astype(np.float32)
    b = rng.standard_normal(shapes[1]).astype(np.float32)
    y = np.empty_like(a)
    lib.ma_add_f32(p(a), p(b), a.size, b.size, p(y))
    np.testing.assert_array_equal(y, spec("Add").reference(a, b))  # one correctly rounded add per element


def _bytes(rng, shape, elem):
    return rng.integers(0, 256, tuple(shape) + (elem,), dtype=np.uint8)


@pytest.mark.parametrize("seed", range(20))
def test_permute(lib, seed):
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(1, 7))
    shape = [int(d) for d in rng.integers(1, 5, rank)]
    perm = [int(a) for a in rng.permutation(rank)]
    elem = int(rng.choice([1, 2, 4, 8, 3]))
    x = _bytes(rng, shape, elem)
    y = np.zeros([shape[a] for a in perm] + [elem], np.uint8)
    lib.ma_permute(p(x), p(y), elem, rank, p(i32(shape)), p(i32(perm)))
    np.testing.assert_array_equal(y, np.transpose(x, perm + [rank]))


@pytest.mark.parametrize("seed", range(20))
def test_copy_strided_slices(lib, seed):
    """Slices with any start/stop/step (negative too) are one strided copy from the first element read."""
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(0, 5))
    shape = [int(d) for d in rng.integers(1, 7, rank)]
    elem = int(rng.choice([1, 4, 2]))
    x = _bytes(rng, shape, elem)
    index = []
    for dim in shape:
        step = int(rng.choice([1, 2, -1, -2, 3]))
        start = int(rng.integers(0, dim))
        index.append(slice(start, None, step))
    view = x[tuple(index)]
    y = np.zeros(view.shape, np.uint8)
    offset = int(view.__array_interface__["data"][0] - x.__array_interface__["data"][0])
    lib.ma_copy_strided(x.ctypes.data + offset, p(y), elem, rank, p(i32(view.shape[:rank])),
                        p(i32(view.strides[:rank])), p(i32(y.strides[:rank])))
    np.testing.assert_array_equal(y, view)


def test_copy_strided_into_strided_destination(lib):
    """Concat's pattern: a contiguous source written into every other block of the destination."""
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = np.zeros((3, 10), np.float32)
    lib.ma_copy_strided(p(x), y.ctypes.data + 4 * 6, 16, 1, p(i32([3])), p(i32([16])), p(i32([40])))
    np.testing.assert_array_equal(y[:, 6:], x)
    assert not y[:, :6].any()


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_gather(lib, axis):
    rng = np.random.default_rng(axis)
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    indices = np.array([4, 0, 0, 2, 1, 3], np.int64) % x.shape[axis]
    expected = spec("Gather").reference(x, indices, axis=axis)
    y = np.zeros_like(expected)
    outer = int(np.prod(x.shape[:axis]))
    inner = int(np.prod(x.shape[axis + 1:])) * 4
    lib.ma_gather(p(x), p(y), outer, x.shape[axis], inner, p(i32(indices)), indices.size)
    np.testing.assert_array_equal(y, expected)
