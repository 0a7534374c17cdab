"""Llama's ops: RMSNorm, rotary position embeddings, SiLU and the product of two activations. The C kernels
against their references (integer ones bit for bit), the integer references against float math, and a Llama
export built as float and int8 C on the host."""

from __future__ import annotations

import ctypes
import json

import numpy as np
import pytest

from mcu_attn.codegen.host_cc import compile_shared
from mcu_attn.ir.ops.elementwise import silu
from mcu_attn.ir.ops.mul import qmul
from mcu_attn.ir.ops.rmsnorm import qrmsnorm, rms_norm
from mcu_attn.ir.ops.rotary import Q14, qrotary, rotary, signed_sin
from mcu_attn.reference.qmath import choose_qparams, dequantize, quantize, quantize_multiplier
from support import FIXTURES, ROOT, run_cli

KERNELS = ROOT / "mcu_attn" / "firmware_templates" / "kernels"
GUARD = 16  # sentinel elements after every output that must survive the call
P = ctypes.c_void_p
I32 = ctypes.c_int32
F32 = ctypes.c_float


class RMSParams(ctypes.Structure):
    _fields_ = [("c", I32), ("in_zp", I32), ("out_zp", I32), ("eps", ctypes.c_int64), ("mult", P), ("shift", P)]


@pytest.fixture(scope="module")
def lib():
    sources = [KERNELS / "ref" / f for f in ("rmsnorm_s8.c", "layernorm_f32.c", "rotary_f32.c", "rotary_s8.c",
                                             "mul_s8.c", "add_f32.c", "gelu_f32.c")]
    library = ctypes.CDLL(str(compile_shared(sources, [KERNELS / "include"],
                                             ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"], name="llama_ops")))
    library.ma_rmsnorm_s8.argtypes = [P, I32, P, P]
    library.ma_rmsnorm_f32.argtypes = [P, I32, I32, P, F32, P]
    library.ma_rotary_s8.argtypes = [P, I32, I32, I32, P, P, I32, I32, I32, I32, P]
    library.ma_rotary_f32.argtypes = [P, I32, I32, I32, P, P, P]
    library.ma_mul_s8.argtypes = [P, P, I32, I32, I32, I32, I32, I32, I32, P]
    library.ma_mul_f32.argtypes = [P, P, I32, I32, P]
    library.ma_silu_f32.argtypes = [P, I32, P]
    return library


def _ptr(array: np.ndarray) -> P:
    assert array.flags.c_contiguous
    return array.ctypes.data_as(P)


def _out(count: int, dtype) -> np.ndarray:
    return np.full(count + GUARD, 0x5A if dtype == np.int8 else 7, dtype)


def _checked(out: np.ndarray, shape) -> np.ndarray:
    assert np.all(out[-GUARD:] == out[-1]) and out[-1] in (0x5A, 7)
    return out[:-GUARD].reshape(shape)


def _multipliers(rng, count: int, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    pairs = [quantize_multiplier(float(v)) for v in np.exp(rng.uniform(np.log(low), np.log(high), count))]
    return np.array([m for m, _ in pairs], np.int32), np.array([s for _, s in pairs], np.int32)


@pytest.mark.parametrize("seed", range(6))
def test_rmsnorm_kernels(lib, seed) -> None:
    rng = np.random.default_rng(seed)
    rows, c = int(rng.integers(1, 9)), int(rng.choice([1, 7, 32, 96]))
    x = rng.integers(-128, 128, (rows, c)).astype(np.int8)
    mult, shift = _multipliers(rng, c, 1e-6, 1e-3)
    in_zp, out_zp, eps = int(rng.integers(-128, 128)), int(rng.integers(-128, 128)), int(rng.integers(0, 5000))
    expected = qrmsnorm(x, multiplier=tuple(mult), shift=tuple(shift), eps=eps, in_zp=in_zp, out_zp=out_zp)
    out = _out(x.size, np.int8)
    params = RMSParams(c, in_zp, out_zp, eps, _ptr(mult), _ptr(shift))
    lib.ma_rmsnorm_s8(_ptr(x), rows, ctypes.byref(params), _ptr(out))
    assert np.array_equal(_checked(out, x.shape), expected)
    xf = rng.standard_normal((rows, c)).astype(np.float32)
    gamma = rng.standard_normal(c).astype(np.float32)
    outf = _out(xf.size, np.float32)
    lib.ma_rmsnorm_f32(_ptr(xf), rows, c, _ptr(gamma), 1e-5, _ptr(outf))
    # float32 sums of <= 96 squares in the same order; sqrtf vs numpy's sqrt differ by an ulp
    assert np.abs(_checked(outf, xf.shape) - rms_norm(xf, gamma, epsilon=1e-5)).max() < 1e-5


def test_integer_rmsnorm_follows_float_math() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 32)).astype(np.float32) * 2 + 0.5
    gamma = rng.uniform(0.5, 1.5, 32).astype(np.float32)
    expected = rms_norm(x, gamma, epsilon=1e-6)
    s_x, x_zp = choose_qparams(float(x.min()), float(x.max()))
    s_y, y_zp = choose_qparams(float(expected.min()), float(expected.max()))
    pairs = [quantize_multiplier(g / (s_y * 2 ** 15)) for g in gamma]
    y = qrmsnorm(quantize(x, s_x, x_zp).astype(np.int8), multiplier=tuple(m for m, _ in pairs),
                 shift=tuple(s for _, s in pairs), eps=int(round(32 * 32 * 1e-6 / s_x ** 2)), in_zp=x_zp, out_zp=y_zp)
    # the input's rounding (s_x/2 of values whose rms is ~2: ~1.5% relative) plus one output step
    assert np.abs(dequantize(y, s_y, y_zp) - expected).max() <= 0.03 * np.abs(expected).max() + s_y


def _rope_tables(seq: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    inv = 1.0 / (10000 ** (np.arange(0, dim, 2) / dim))
    angles = np.arange(seq)[:, None] * np.concatenate([inv, inv])[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
def test_rotary_kernels(lib, seed) -> None:
    rng = np.random.default_rng(seed)
    seq, heads, dim = int(rng.integers(1, 33)), int(rng.integers(1, 5)), int(rng.choice([2, 8, 16]))
    cos, sin = _rope_tables(seq, dim)
    x = rng.integers(-128, 128, (1, seq, heads * dim)).astype(np.int8)
    cos_q = np.ascontiguousarray(np.rint(cos * Q14).astype(np.int16))
    sin_q = np.ascontiguousarray(np.rint(signed_sin(sin) * Q14).astype(np.int16))
    mult, shift = quantize_multiplier(float(rng.uniform(0.2, 3.0)) / Q14)
    x_zp, y_zp = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
    expected = qrotary(x, cos_q, sin_q, heads=heads, x_zp=x_zp, multiplier=mult, shift=shift, y_zp=y_zp)
    out = _out(x.size, np.int8)
    lib.ma_rotary_s8(_ptr(x), seq, heads, dim, _ptr(cos_q), _ptr(sin_q), x_zp, mult, shift, y_zp, _ptr(out))
    assert np.array_equal(_checked(out, x.shape), expected)
    xf = rng.standard_normal((1, seq, heads * dim)).astype(np.float32)
    outf = _out(xf.size, np.float32)
    lib.ma_rotary_f32(_ptr(xf), seq, heads, dim, _ptr(cos), _ptr(np.ascontiguousarray(signed_sin(sin))), _ptr(outf))
    # two float32 products and a sum per element, the same operations as the reference
    assert np.abs(_checked(outf, xf.shape) - rotary(xf, cos, sin, heads=heads)).max() < 1e-6


def test_rotary_is_rotate_half() -> None:
    """Against the formula as transformers writes it: x cos + concat(-x2, x1) sin, per head."""
    rng = np.random.default_rng(0)
    cos, sin = _rope_tables(5, 4)
    x = rng.standard_normal((1, 5, 8)).astype(np.float32)
    heads = x.reshape(1, 5, 2, 4)
    half = np.concatenate([-heads[..., 2:], heads[..., :2]], axis=-1)
    expected = heads * cos[:, None, :] + half * sin[:, None, :]
    assert np.abs(rotary(x, cos, sin, heads=2) - expected.reshape(1, 5, 8)).max() < 1e-6


@pytest.mark.parametrize("b_count", [1, 8, 40])
def test_mul_and_silu_kernels(lib, b_count) -> None:
    rng = np.random.default_rng(b_count)
    a = rng.integers(-128, 128, 40).astype(np.int8)
    b = rng.integers(-128, 128, b_count).astype(np.int8)
    mult, shift = quantize_multiplier(float(rng.uniform(1e-4, 1e-2)))
    expected = qmul(a.reshape(-1, b_count) if b_count < 40 else a, b, a_zp=3, b_zp=-7, multiplier=mult, shift=shift,
                    y_zp=5).reshape(-1)
    out = _out(a.size, np.int8)
    lib.ma_mul_s8(_ptr(a), _ptr(b), a.size, b_count, 3, -7, mult, shift, 5, _ptr(out))
    assert np.array_equal(_checked(out, a.shape), expected)
    af, bf = rng.standard_normal(40).astype(np.float32), rng.standard_normal(b_count).astype(np.float32)
    outf = _out(40, np.float32)
    lib.ma_mul_f32(_ptr(af), _ptr(bf), 40, b_count, _ptr(outf))
    assert np.array_equal(_checked(outf, af.shape), af * np.resize(bf, 40))  # one float32 product: exact
    lib.ma_silu_f32(_ptr(af), 40, _ptr(outf))
    # expf against numpy's double-precision exp, one float32 rounding: a few ulps of values O(1)
    assert np.abs(_checked(outf, af.shape) - silu(af)).max() < 1e-6


@pytest.mark.parametrize("bits", ["32", "8"])
def test_llama_builds_on_the_host(tmp_path, bits) -> None:
    path = FIXTURES / "hf" / "hf_llama_legacy17_sdpa.onnx"
    np.save(tmp_path / "ids.npy", np.random.default_rng(0).integers(0, 96, (8, 1, 32)).astype(np.int64))
    result = run_cli("build", path, "--target", "host", "-o", tmp_path / "b", "--bits", bits, "--calib",
                     tmp_path / "ids.npy")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    # int8: SiLU is a table read in the gate linear's epilogue (passes/fuse.py FuseLinearTable)
    assert {"ma_rotary_f32", "ma_rmsnorm_f32", "ma_silu_f32", "ma_mul_f32"} <= set(report["kernels"]) if bits == "32" \
        else {"ma_rotary_s8", "ma_rmsnorm_s8", "ma_mul_s8", "ma_linear_table_s8"} <= set(report["kernels"])
    check = report["host_check"]
    # float: C float32 kernels (expf, sqrtf, other summation orders) against numpy, outputs O(1)
    assert check["bit_exact"] if bits == "8" else check["max_abs_error"] < 1e-4
