"""Conv: the C kernels (float, int8, int4 weights) against the references over strides, padding, dilation and
groups (depthwise included), 1-D and 2-D; the integer reference against float math; the patch-embedding rewrite
into Linear."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from mcu_attn.codegen.cformat import pack_int4
from mcu_attn.codegen.host_cc import compile_shared
from mcu_attn.ir.graph import Graph, Node
from mcu_attn.ir.ops import conv as conv_module
from mcu_attn.ir.ops.conv import GEOMETRY_FIELDS, conv, geometry, qconv
from mcu_attn.ir.ops.im2col import qim2col
from mcu_attn.ir.ops.linear import qlinear
from mcu_attn.ir.types import TensorType
from mcu_attn.reference.interpreter import run
from mcu_attn.reference.qmath import choose_qparams, dequantize, quantize, quantize_multiplier, symmetric_scales
from support import ROOT

KERNELS = ROOT / "mcu_attn" / "firmware_templates" / "kernels"
GUARD = 16  # sentinel elements after the output that must survive the call
P = ctypes.c_void_p
I32 = ctypes.c_int32
# (x shape, w shape, attributes): 2-D and 1-D, strides, asymmetric padding, dilation, groups, depthwise
CASES = [
    ((1, 3, 8, 8), (4, 3, 3, 3), {}),
    ((1, 3, 9, 7), (5, 3, 3, 2), {"strides": (2, 1), "pads": (1, 0, 2, 1)}),
    ((1, 4, 8, 8), (4, 1, 3, 3), {"group": 4, "pads": (1, 1, 1, 1)}),            # depthwise
    ((1, 6, 7, 9), (4, 3, 2, 3), {"group": 2, "dilations": (2, 1), "strides": (1, 2)}),
    ((1, 3, 8, 8), (6, 3, 4, 4), {"strides": (4, 4)}),                             # patchify
    ((1, 8, 16), (8, 8, 3), {"pads": (1, 1)}),                                     # Whisper conv1
    ((1, 8, 16), (8, 8, 3), {"pads": (1, 1), "strides": (2,)}),                    # Whisper conv2
    ((1, 5, 11), (5, 1, 5), {"group": 5, "dilations": (2,), "pads": (4, 0)}),      # causal depthwise 1-D
    ((1, 3, 8, 8), (4, 3, 3, 3), {"auto_pad": "SAME_UPPER", "strides": (2, 2)}),
]


class Geometry(ctypes.Structure):
    _fields_ = [(name, I32) for name in GEOMETRY_FIELDS]


@pytest.fixture(scope="module")
def lib():
    sources = [KERNELS / "ref" / "conv_s8.c", KERNELS / "ref" / "conv_f32.c", KERNELS / "ref" / "im2col_s8.c"]
    library = ctypes.CDLL(str(compile_shared(sources, [KERNELS / "include"],
                                             ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"], name="conv")))
    for name in ("ma_conv_s8", "ma_conv_s4"):
        getattr(library, name).argtypes = [P, P, P, P, P, P, I32, I32, P]
    library.ma_conv_f32.argtypes = [P, P, P, P, P]
    library.ma_im2col_s8.argtypes = [P, P, I32, P]
    return library


def _ptr(array: np.ndarray) -> P:
    assert array.flags.c_contiguous
    return array.ctypes.data_as(P)


def _integer_case(rng, x_shape, w_shape, attrs, bits):
    g = geometry(x_shape, w_shape, **attrs)
    qmax = (1 << (bits - 1)) - 1
    x = rng.integers(-128, 128, x_shape).astype(np.int8)
    w = rng.integers(-qmax, qmax + 1, w_shape).astype(np.int8)
    bias = rng.integers(-2 ** 20, 2 ** 20, w_shape[0]).astype(np.int32)
    pairs = [quantize_multiplier(float(s)) for s in np.exp(rng.uniform(np.log(1e-5), np.log(0.5), w_shape[0]))]
    mult = np.array([m for m, _ in pairs], np.int32)
    shift = np.array([s for _, s in pairs], np.int32)
    return g, x, w, bias, mult, shift, int(rng.integers(-128, 128)), int(rng.integers(-128, 128))


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_integer_kernel_is_bit_exact(lib, case, bits) -> None:
    rng = np.random.default_rng(case + 10 * bits)
    x_shape, w_shape, attrs = CASES[case]
    g, x, w, bias, mult, shift, x_zp, y_zp = _integer_case(rng, x_shape, w_shape, attrs, bits)
    expected = qconv(x, w, bias, geometry=tuple(g[f] for f in GEOMETRY_FIELDS), multiplier=tuple(mult),
                     shift=tuple(shift), x_zp=x_zp, y_zp=y_zp, bits=bits)
    rows = w.reshape(w_shape[0], -1)
    packed = np.ascontiguousarray(pack_int4(rows) if bits == 4 else rows)
    out = np.full(expected.size + GUARD, 0x5A, np.int8)
    geom = Geometry(*(g[f] for f in GEOMETRY_FIELDS))
    kernel = lib.ma_conv_s4 if bits == 4 else lib.ma_conv_s8
    kernel(_ptr(x), ctypes.byref(geom), _ptr(packed), _ptr(bias), _ptr(mult), _ptr(shift), x_zp, y_zp, _ptr(out))
    assert np.array_equal(out[:-GUARD].reshape(expected.shape), expected)
    assert np.all(out[-GUARD:] == 0x5A)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_float_kernel_matches_reference(lib, case) -> None:
    rng = np.random.default_rng(case)
    x_shape, w_shape, attrs = CASES[case]
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    expected = conv(x, w, b, **attrs)
    g = geometry(x_shape, w_shape, **attrs)
    out = np.full(expected.size + GUARD, 7.0, np.float32)
    lib.ma_conv_f32(_ptr(x), ctypes.byref(Geometry(*(g[f] for f in GEOMETRY_FIELDS))),
                    _ptr(np.ascontiguousarray(w.reshape(w_shape[0], -1))), _ptr(b), _ptr(out))
    # float32 sums of <= 48 products of O(1) values in another order: a few ulps of results O(10)
    assert np.abs(out[:-GUARD].reshape(expected.shape) - expected).max() < 1e-4
    assert np.all(out[-GUARD:] == 7.0)


def test_integer_reference_follows_float_math() -> None:
    """QConv on quantized x and w, requantized as the quantizer does, against float Conv of the dequantized
    values: within one output step plus the weight rounding (per-channel int8, 27-tap rows)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 3, 9, 9)).astype(np.float32)
    w = (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32)
    attrs = {"strides": (2, 2), "pads": (1, 1, 1, 1)}
    expected = conv(x, w, None, **attrs)
    s_x, x_zp = choose_qparams(float(x.min()), float(x.max()))
    s_y, y_zp = choose_qparams(float(expected.min()), float(expected.max()))
    scales = symmetric_scales(w, 8, axis=0)
    wq = np.rint(w / scales[:, None, None, None]).astype(np.int8)
    bias = (-x_zp * wq.reshape(4, -1).sum(axis=1)).astype(np.int32)
    pairs = [quantize_multiplier(s_x * s / s_y) for s in scales]
    g = geometry(x.shape, w.shape, **attrs)
    y = qconv(quantize(x, s_x, x_zp).astype(np.int8), wq, bias, geometry=tuple(g[f] for f in GEOMETRY_FIELDS),
              multiplier=tuple(m for m, _ in pairs), shift=tuple(s for _, s in pairs), x_zp=x_zp, y_zp=y_zp)
    # one output step of rounding, plus 27 taps each off by at most s_x/2 * |w| and |x| * s_w/2
    bound = s_y + 27 * (s_x * np.abs(w).max() + np.abs(x).max() * scales.max())
    assert np.abs(dequantize(y, s_y, y_zp) - expected).max() <= bound


ONE_GROUP = [i for i, (_, w_shape, attrs) in enumerate(CASES) if attrs.get("group", 1) == 1]


@pytest.mark.parametrize("case", ONE_GROUP)
def test_im2col_kernel_and_linear_are_qconv(lib, case) -> None:
    """QIm2Col's C kernel matches its reference, and QLinear over its rows is QConv transposed, bit for bit."""
    rng = np.random.default_rng(case + 100)
    x_shape, w_shape, attrs = CASES[case]
    g, x, w, bias, mult, shift, x_zp, y_zp = _integer_case(rng, x_shape, w_shape, attrs, 8)
    geometry_fields = tuple(g[f] for f in GEOMETRY_FIELDS)
    rows = qim2col(x, geometry=geometry_fields, x_zp=x_zp)
    out = np.full(rows.size + GUARD, 0x5A, np.int8)
    lib.ma_im2col_s8(_ptr(x), ctypes.byref(Geometry(*geometry_fields)), x_zp, _ptr(out))
    assert np.array_equal(out[:-GUARD].reshape(rows.shape), rows) and np.all(out[-GUARD:] == 0x5A)
    expected = qconv(x, w, bias, geometry=geometry_fields, multiplier=tuple(mult), shift=tuple(shift), x_zp=x_zp,
                     y_zp=y_zp)
    product = qlinear(rows, w.reshape(w_shape[0], -1).T, bias, multiplier=tuple(mult), shift=tuple(shift),
                      y_zp=y_zp)
    assert np.array_equal(product[0].T.reshape(expected.shape), expected)


def test_quantizer_lowers_conv_to_im2col_and_linear(monkeypatch) -> None:
    """The quantizer's im2col form of a one-group convolution gives the integers QConv gives (int8 and int4)."""
    from mcu_attn.passes.quantize import quantize_graph, run_quantized

    rng = np.random.default_rng(9)
    graph = Graph("conv")
    graph.add_input("x", TensorType("float32", (1, 8, 16)))
    graph.add_const("w", (rng.standard_normal((8, 8, 3)) * 0.3).astype(np.float32), exact=True)
    graph.add_const("b", rng.standard_normal(8).astype(np.float32), exact=True)
    graph.types["y"] = TensorType("float32", (1, 8, 8))
    graph.append(Node("Conv", ["x", "w", "b"], ["y"], {"pads": (1, 1), "strides": (2,)}, "conv"))
    graph.outputs = ["y"]
    calib = rng.standard_normal((16, 1, 8, 16)).astype(np.float32)
    results = {}
    for expansion in (conv_module.EXPANSION, 0):
        monkeypatch.setattr(conv_module, "EXPANSION", expansion)
        for bits in (8, 4):
            quantized = quantize_graph(graph, calib, bits)
            assert ("QIm2Col" in {n.op for n in quantized.nodes}) == (expansion > 0)
            results[expansion, bits] = run_quantized(quantized, calib[:4])
    for bits in (8, 4):
        assert np.array_equal(results[conv_module.EXPANSION, bits], results[0, bits])
