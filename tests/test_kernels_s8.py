"""The integer C kernels against the numpy references of the integer IR ops, bit for bit, in every variant.

docs/integer-kernels.md is the contract. Every test below runs each kernel variant (codegen/kernels.py):
- `ref`: the portable kernels, compiled with the host gcc (`-std=c99 -Wall -Wextra -Werror`) and called
  through ctypes;
- `arm`: the DSP-extension kernels, compiled with arm-none-eabi-gcc for a Cortex-M4 into one small ELF that
  Unicorn loads once; each case writes its arguments into the emulated SRAM and calls the kernel
  (`mcu_attn/sim/kernel_calls.py`). Skipped where arm-none-eabi-gcc is missing.
Every case runs the IR op's reference (`mcu_attn/ir/ops/`) and the kernel on the same integers and
requires identical outputs. Cases come from the seeded generators of `kernel_cases.py` and from hypothesis,
which draws the structure (shapes, windows, causality, global tokens) and a seed for the values. Output and
scratch buffers carry guard bytes, so even a write past the end that crashes nothing fails. One test rebuilds
the portable kernels with AddressSanitizer and UBSan and replays a sweep in a subprocess with the sanitizer
runtime preloaded; `-m slow` runs ten times the seeded cases on both variants.

The last group checks the references themselves against float math on dequantized values, each with a stated
error bound.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel_cases import (GENERATORS, SWEEP, check_case, gen_qadd, gen_qattention, gen_qattention_kv, gen_qlayernorm,
                          gen_qlinear, gen_qlinear_add, patterns, standard_exp_table, sweep)
from mcu_attn.codegen.cformat import pack_int4
from mcu_attn.codegen.host_cc import compile_shared
from mcu_attn.ir.ops.attention import attention
from mcu_attn.ir.ops.registry import spec
from mcu_attn.ir.pattern import AttentionPattern
from mcu_attn.ir.ops.add import add_params
from mcu_attn.reference.qmath import (choose_qparams, quantize, quantize_multiplier, sum_requant_params,
                                      symmetric_scales)
from mcu_attn.sim.kernel_calls import S8_FUNCTIONS, EmulatorBackend, HostBackend, KernelBindings, build_kernel_elf

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "mcu_attn" / "firmware_templates" / "kernels"
SOURCES = sorted((KERNELS / "ref").glob("*_s8.c"))
INCLUDE = [KERNELS / "include"]
FLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared"]
SANITIZE = ["-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
            "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
HYPOTHESIS = settings(max_examples=250, deadline=None, derandomize=True)
VARIANTS = ("ref", "arm")
# emulated calls cost ~100x a host call: the default run takes this share of the host's seeded cases on arm
EMULATED_SHARE = 0.5


def host_kernels(library: Path | None = None) -> KernelBindings:
    return KernelBindings(HostBackend(library or compile_shared(SOURCES, INCLUDE, FLAGS, name="ma_kernels_s8")))


def arm_kernels(core: str = "cortex-m4") -> KernelBindings:
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed: the arm kernels cannot be built")
    return KernelBindings(EmulatorBackend(build_kernel_elf("arm", core, S8_FUNCTIONS), core))


@pytest.fixture(scope="session", params=VARIANTS)
def kernels(request) -> KernelBindings:
    return host_kernels() if request.param == "ref" else arm_kernels()


def _share(kernels: KernelBindings) -> float:
    return 1.0 if isinstance(kernels.backend, HostBackend) else EMULATED_SHARE


# ---- bit-exact tests ------------------------------------------------------------------------------------------
def test_sources_are_all_there() -> None:
    assert {p.name for p in SOURCES} >= {"linear_s8.c", "attention_s8.c", "layernorm_s8.c", "pointwise_s8.c"}


@pytest.mark.parametrize("name", list(GENERATORS))
def test_seeded_sweep(kernels: KernelBindings, name: str) -> None:
    rng = np.random.default_rng(sum(map(ord, name)))
    for _ in range(int(SWEEP[name] * _share(kernels))):
        check_case(kernels, name, *GENERATORS[name](rng))


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_large_sweep(variant: str) -> None:
    """Ten times the default seeded cases, other seeds (`pytest -m slow`)."""
    kernels = host_kernels() if variant == "ref" else arm_kernels()
    assert sweep(kernels, seed=2024, scale=10.0) >= 10 * sum(SWEEP.values())


SEEDS = st.integers(0, 2 ** 32 - 1)


@HYPOTHESIS
@given(seed=SEEDS, rows=st.integers(1, 4), k=st.integers(1, 80), n=st.integers(1, 10), bits=st.sampled_from([8, 4]))
def test_qlinear_hypothesis(kernels: KernelBindings, seed: int, rows: int, k: int, n: int, bits: int) -> None:
    check_case(kernels, "QLinear", *gen_qlinear(np.random.default_rng(seed), rows, k, n, bits))


@HYPOTHESIS
@given(seed=SEEDS, rows=st.integers(1, 5), k=st.integers(1, 80), n=st.integers(1, 10), bits=st.sampled_from([8, 4]))
def test_qlinear_add_hypothesis(kernels: KernelBindings, seed: int, rows: int, k: int, n: int, bits: int) -> None:
    check_case(kernels, "QLinearAdd", *gen_qlinear_add(np.random.default_rng(seed), rows, k, n, bits))


@HYPOTHESIS
@given(seed=SEEDS, seq=st.integers(1, 40), heads=st.integers(1, 4), head_dim=st.sampled_from([1, 3, 8, 8, 12, 16, 16]),
       pattern=patterns())
def test_qattention_hypothesis(kernels: KernelBindings, seed, seq, heads, head_dim, pattern) -> None:
    inputs, attrs = gen_qattention(np.random.default_rng(seed), seq, heads, head_dim, pattern)
    check_case(kernels, "QAttention", inputs, attrs)


@HYPOTHESIS
@given(seed=SEEDS, seq=st.integers(1, 40), keys=st.integers(1, 24), heads=st.integers(1, 4),
       head_dim=st.integers(1, 12))
def test_qattention_projected_keys_hypothesis(kernels: KernelBindings, seed, seq, keys, heads, head_dim) -> None:
    """n queries over k keys of another count (Linformer), ma_attention_kv_s8: the reference's bits for every
    query tile (1, 3, all)."""
    inputs, attrs = gen_qattention_kv(np.random.default_rng(seed), seq, keys, heads, head_dim)
    check_case(kernels, "QAttention", inputs, attrs)


@pytest.mark.parametrize("head_dim", [8, 16])
def test_qattention_projected_keys_wide_heads(kernels: KernelBindings, head_dim: int) -> None:
    """The head sizes of the examples (8) and of the DSP attention kernel (8, 16), up to 64 projected keys and 69
    queries (ma_attention_kv_s8 is the portable kernel on every core)."""
    rng = np.random.default_rng(head_dim)
    for _ in range(int(40 * _share(kernels))):
        check_case(kernels, "QAttention", *gen_qattention_kv(rng, int(rng.integers(1, 70)), int(rng.integers(1, 65)),
                                                             int(rng.integers(1, 3)), head_dim))


def test_qattention_projected_keys_is_dense_attention() -> None:
    """With k and v of the query's own length the projected-keys path is the dense kernel's; another length with
    a pattern or causality is refused (projected keys are no tokens)."""
    rng = np.random.default_rng(11)
    inputs, attrs = gen_qattention(rng, seq=12, pattern=AttentionPattern())
    q, k, v = inputs[:3]
    reference = spec("QAttention").reference
    full = reference(q, k, v, **attrs)
    # a query over 12 keys is the same computation whether the keys are "its own" or "projected"
    np.testing.assert_array_equal(reference(q[:, :5], k, v, **attrs), full[:, :5])
    with pytest.raises(ValueError, match="projected keys"):
        reference(q[:, :5], k, v, **{**attrs, "pattern": AttentionPattern(causal=True)})


@HYPOTHESIS
@given(seed=SEEDS, rows=st.integers(1, 4), c=st.integers(1, 128))
def test_qlayernorm_hypothesis(kernels: KernelBindings, seed: int, rows: int, c: int) -> None:
    check_case(kernels, "QLayerNorm", *gen_qlayernorm(np.random.default_rng(seed), rows, c))


@HYPOTHESIS
@given(seed=SEEDS, seq=st.integers(1, 16), c=st.integers(1, 33), b_form=st.integers(0, 2))
def test_qadd_hypothesis(kernels: KernelBindings, seed: int, seq: int, c: int, b_form: int) -> None:
    check_case(kernels, "QAdd", *gen_qadd(np.random.default_rng(seed), seq, c, b_form))


def test_linear_add_in_place(kernels: KernelBindings) -> None:
    """y written over the residual (the memory planner's in-place choice): each output reads its residual element
    before it writes, so the bits are those of separate buffers."""
    rng = np.random.default_rng(3)
    for rows, k, n, bits in [(5, 37, 6, 8), (4, 16, 7, 4), (17, 32, 32, 8), (1, 9, 3, 8)]:
        inputs, attrs = gen_qlinear_add(rng, rows, k, n, bits)
        kernels.backend.reset()
        got = kernels.QLinearAdd(*inputs, **attrs, in_place=True)
        np.testing.assert_array_equal(got, spec("QLinearAdd").reference(*inputs, **attrs))


KEY_SETS = [(9, "dense"), (9, "dense,causal"), (9, "local:1"), (9, "local:2"), (9, "local:3,causal"),
            (9, "local:4,global:2"), (9, "local:4,global:2,causal"), (9, "local:20"), (9, "local:3,global:20,causal"),
            (1, "local:5,global:1,causal"), (13, "strided:3"), (13, "strided:4,local:2,global:1,causal"),
            (13, "dilated:4,3"), (13, "dilated:3,2,local:2,causal"), (13, "block:3"), (13, "block:3,1,3,global:1"),
            (13, "block:4,0,2,causal"), (16, "strided:5,block:4,1")]


@pytest.mark.parametrize("seq, text", KEY_SETS)
@pytest.mark.parametrize("head_dim", [0, 8, 16])  # 0: one-hot v (head_dim = seq, the portable kernel); 8 and 16:
def test_attention_key_sets(kernels: KernelBindings, seq: int, text: str, head_dim: int) -> None:  # the DSP loop
    """Each key set exactly: with v one-hot per key (the portable kernel, any head size) or one-hot per key within
    the head size (the DSP kernel's assembly, sizes 8 and 16, queries one at a time over the keys of a group of
    head_dim keys) and a flat table, out = 1/|keys| on exactly the allowed keys."""
    causal = text.endswith(",causal")
    terms = text.removesuffix(",causal")
    pattern = AttentionPattern(causal=causal) if terms == "dense" else AttentionPattern.parse(terms, causal)
    allowed = pattern.allowed(seq)
    dim = head_dim or seq
    m, s = quantize_multiplier(1.0)
    attrs = dict(heads=1, head_dim=dim, pattern=pattern, q_zp=0, k_zp=0, v_zp=0, out_zp=0, score_multiplier=m,
                 score_shift=-1, exp_table=(1 << 15,) * 256, out_multiplier=m, out_shift=s - 8)
    q = np.zeros((1, seq, dim), np.int8)
    for group in range(0, seq, dim):  # the keys [group, group + dim) one-hot in v
        v = np.zeros((1, seq, dim), np.int8)
        keys = np.arange(group, min(group + dim, seq))
        v[0, keys, keys - group] = 127
        got = kernels.run("QAttention", (q, q, v), attrs)[0]
        assert np.array_equal(got[:, :len(keys)] != 0, allowed[:, keys]), (seq, text, group)
        check_case(kernels, "QAttention", (q, q, v), attrs)


def test_int4_packing_odd_k(kernels: KernelBindings) -> None:
    """Odd K: the last byte of each row holds one weight in its low nibble; the padding nibble is ignored."""
    w = np.array([[-8], [7], [-1]], np.int8)                        # [K=3, N=1]
    assert pack_int4(w.T.astype(np.int64)).tolist() == [[0x78, 0x0F]]  # k0 = -8 low, k1 = 7 high; k2 = -1 low, zero pad
    x = np.array([[1, 2, 3]], np.int8)
    m, s = quantize_multiplier(0.5)
    inputs, attrs = (x, w, np.zeros(1, np.int32)), dict(multiplier=(m,), shift=(s,), y_zp=0, bits=4)
    assert spec("QLinear").reference(*inputs, **attrs).tolist() == [[2]]  # (-8 + 14 - 3) * 0.5 = 1.5: ties away
    check_case(kernels, "QLinear", inputs, attrs)


def test_sanitizers() -> None:
    """ASan + UBSan build of all kernels, driven through ctypes in a subprocess with the runtime preloaded."""
    runtimes = [subprocess.run(["gcc", f"-print-file-name={lib}"], capture_output=True, text=True).stdout.strip()
                for lib in ("libasan.so", "libubsan.so")]
    if not all(os.path.isabs(r) and os.path.exists(r) for r in runtimes):
        pytest.skip("the gcc sanitizer runtimes are not installed")
    library = compile_shared(SOURCES, INCLUDE, SANITIZE, name="ma_kernels_s8_asan")
    env = {**os.environ, "LD_PRELOAD": ":".join(runtimes), "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_kernels_s8 as t; "
            f"from kernel_cases import sweep; print('cases', sweep(t.host_kernels({str(library)!r}), seed=7))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-6000:]
    assert "cases" in result.stdout and "ERROR" not in result.stderr, result.stderr[-6000:]


# ---- the references against float math on dequantized values -------------------------------------------------
# Each case quantizes float data the way the quantizer does (docs/integer-kernels.md, "Parameter derivation"),
# runs the integer reference, and compares it with the float op on the *dequantized* inputs, quantized to the
# same output grid: only the integer op's own error is measured, in output LSBs. Each bound is derived in its test.
FLOAT_CASES = 60


def _qtensor(x: np.ndarray) -> tuple[np.ndarray, float, int, np.ndarray]:
    scale, zp = choose_qparams(float(x.min()), float(x.max()))
    q = quantize(x, scale, zp).astype(np.int8)
    return q, scale, zp, (q.astype(np.float64) - zp) * scale


def _right(shift) -> np.ndarray:
    return np.maximum(-np.asarray(shift, np.int64), 0)


def test_qlinear_matches_float() -> None:
    """|int - round(float)| <= 1 LSB. Before its final rounding the integer value is z + e, z the exact output in
    LSBs, with |e| <= the bias rounding (0.5 s_x s_w / s_y) + the high multiply's rounding (0.5 / 2^right, none when
    right = 0) + the multiplier's 2^-31 relative error. |round(z + e) - round(z)| <= floor(1 + |e|), which is 1
    while |e| < 1, i.e. while the real multiplier s_x s_w / s_y is below ~1.5: the test asserts that too."""
    rng = np.random.default_rng(11)
    for _ in range(FLOAT_CASES):
        rows, k, n, bits = int(rng.integers(1, 5)), int(rng.integers(2, 96)), int(rng.integers(1, 16)), [8, 4][_ % 2]
        xq, s_x, x_zp, x_hat = _qtensor(rng.normal(rng.normal(), rng.uniform(0.2, 3), (rows, k)))
        w = rng.normal(0, 1 / math.sqrt(k), (k, n))
        s_w = symmetric_scales(w, bits, axis=1)
        wq = quantize(w, s_w, 0, bits).astype(np.int8)
        b = rng.normal(0, 0.2, n)
        y = x_hat @ (wq * s_w) + b
        s_y, y_zp = choose_qparams(float(y.min()), float(y.max()))
        bias = np.round(b / (s_x * s_w)).astype(np.int64) - x_zp * wq.astype(np.int64).sum(axis=0)
        pairs = [quantize_multiplier(s_x * s_w[i] / s_y) for i in range(n)]
        shift = [s for _, s in pairs]
        right = _right(shift)
        budget = 0.5 * s_x * s_w / s_y + np.where(right > 0, 0.5 * 2.0 ** -right, 0) + 1e-6
        assert np.all(budget < 1)
        got = spec("QLinear").reference(xq, wq, bias.astype(np.int32), multiplier=tuple(m for m, _ in pairs),
                                        shift=tuple(shift), y_zp=y_zp, bits=bits)
        assert np.max(np.abs(got.astype(np.int64) - quantize(y, s_y, y_zp))) <= 1


def attention_error_bound(keys: int, rises: int, delta: float, score_shift: int, out_shift: int, v_peak: float,
                          s_out: float) -> float:
    """Worst case |int - round(float)| in output LSBs of QAttention against float softmax attention.

    Every table index t is a logit gap in steps of delta, rounded twice (high multiply, then shift): off by at
    most r = 0.5 + 2^-(right+1) steps. A key's final weight is its own lookup times the rescale factors of the
    `rises` later rises of the running maximum, so its exponent is off by at most (1 + rises) r delta, and each
    normalised probability by a factor within exp(+-2 (1 + rises) r delta). Table entries are rounded to 2^-16
    of the largest weight (keys 2^-16 in total), and each rescale rounds the sum and the accumulators by half a
    unit against sum >= 2^15; the accumulators hold e v with v's zero point taken out at the end, so the sum's
    rounding enters times v_zp, and |v_zp s_v| <= 2 v_peak (the quantized range covers the data and 0): at most
    4 (1 + rises) 2^-15 in all. The probability error times the largest |v| bounds the output error; the final
    256 acc / sum rounding, the output's own double rounding and the float side's rounding add
    1 + 2^-(right_out+1) + 2^-9 v_peak / s_out.
    """
    r = 0.5 + 2.0 ** -(max(-score_shift, 0) + 1)
    prob_error = math.expm1(2 * (1 + rises) * r * delta) + keys * 2 ** -16 + (1 + rises) * 2 ** -13
    return (prob_error + 2 ** -9) * v_peak / s_out + 1 + 2.0 ** -(max(-out_shift, 0) + 1)


def running_max_rises(q, k, q_zp: int, k_zp: int, heads: int, dim: int, allowed: np.ndarray) -> int:
    """The most times any row's running maximum rises after its first key (keys in ascending order)."""
    seq = q.shape[-2]
    qh = (q.astype(np.int64) - q_zp).reshape(seq, heads, dim).transpose(1, 0, 2)
    kh = (k.astype(np.int64) - k_zp).reshape(seq, heads, dim).transpose(1, 0, 2)
    most = 0
    for logits in qh @ kh.transpose(0, 2, 1):
        for row, keep in zip(logits, allowed):
            seen = row[keep]
            most = max(most, int(np.sum(seen[1:] > np.maximum.accumulate(seen)[:-1])))
    return most


def test_qattention_matches_float() -> None:
    rng = np.random.default_rng(12)
    delta = 1 / 16
    worst = 0.0
    for case in range(FLOAT_CASES):
        seq, heads, dim = int(rng.integers(1, 41)), int(rng.integers(1, 4)), int(rng.choice([4, 8, 16]))
        window, causal = int(rng.choice([0, 1, 2, 3, 5, 8, 64])), case % 2
        global_tokens = int(rng.choice([0, 0, 1, 2]))
        spread = rng.uniform(0.5, 2.5)  # logits from about +-1 (flat softmax) to +-15 (nearly one-hot)
        (qq, s_q, q_zp, q_hat), (kq, s_k, k_zp, k_hat), (vq, s_v, v_zp, v_hat) = (
            _qtensor(rng.normal(rng.normal(0, 0.3), spread, (1, seq, heads * dim))) for _ in range(3))
        scale = 1 / math.sqrt(dim)
        pattern = AttentionPattern(window, global_tokens, causal)
        out = attention(q_hat, k_hat, v_hat, heads=heads, head_dim=dim, scale=scale, pattern=pattern)
        s_out, out_zp = choose_qparams(float(out.min()), float(out.max()))
        sm, ss = quantize_multiplier(s_q * s_k * scale / delta)
        om, osh = quantize_multiplier(s_v / (256 * s_out))
        got = spec("QAttention").reference(qq, kq, vq, heads=heads, head_dim=dim, pattern=pattern, q_zp=q_zp,
                                           k_zp=k_zp, v_zp=v_zp, out_zp=out_zp, score_multiplier=sm, score_shift=ss,
                                           exp_table=standard_exp_table(delta), out_multiplier=om, out_shift=osh)
        allowed = pattern.allowed(seq)
        rises = running_max_rises(qq[0], kq[0], q_zp, k_zp, heads, dim, allowed)
        bound = attention_error_bound(int(allowed.sum(axis=1).max()), rises, delta, ss, osh,
                                      float(np.abs(v_hat).max()), s_out)
        error = float(np.max(np.abs(got.astype(np.int64) - quantize(out, s_out, out_zp))))
        assert error <= bound, (case, error, bound)
        worst = max(worst, error / bound)
    assert worst > 0.05  # the bound is not vacuous: some case comes within 20x of it


def test_qlayernorm_matches_float() -> None:
    """|int - round(float)| <= 1 + e_n LSB: the output is rounded once (the bias and gamma keep 2^-s and 2^-30
    relative precision, 1e-6 here), the float side rounds once, and e_n = |gamma| / s_y times the error of t / 2^P
    as the normalised value: sigma = floor(isqrt(.)) is short by at most 1 (relative 1/sigma), eps is rounded to an
    integer (relative 1/sigma^2), R = floor(2^P / sigma) loses sigma / 2^P."""
    from mcu_attn.ir.ops.layernorm import layernorm_params

    rng = np.random.default_rng(13)
    worst = 0.0
    for _ in range(FLOAT_CASES):
        rows, c, eps = int(rng.integers(1, 5)), int(rng.integers(2, 129)), 1e-5
        xq, s_x, x_zp, x_hat = _qtensor(rng.normal(rng.normal(0, 2), rng.uniform(0.1, 3), (1, rows, c)))
        gamma = rng.uniform(0.3, 2, c) * rng.choice([-1, 1], c)
        beta = rng.normal(0, 0.5, c)
        mean = x_hat.mean(axis=-1, keepdims=True)
        norm = (x_hat - mean) / np.sqrt(x_hat.var(axis=-1, keepdims=True) + eps)
        y = norm * gamma + beta
        s_y, y_zp = choose_qparams(float(y.min()), float(y.max()))
        attrs, bias = layernorm_params(gamma / s_y, beta / s_y, y_zp)
        eps_q = int(round(c * c * eps / s_x ** 2))
        got = spec("QLayerNorm").reference(xq, np.asarray(bias, np.int64), **attrs, eps=eps_q)
        x64 = xq.astype(np.int64)
        sigma = np.maximum(1, np.floor(np.sqrt(c * (x64 ** 2).sum(-1, keepdims=True) - x64.sum(-1, keepdims=True) ** 2
                                               + eps_q)))
        e_n = np.abs(gamma) / s_y * np.abs(norm) * (1 / sigma + 1 / sigma ** 2 + sigma / 2 ** attrs["recip_shift"])
        error = np.abs(got.astype(np.int64) - quantize(y, s_y, y_zp))
        assert np.all(error <= 1 + e_n + 1e-6)
        worst = max(worst, float(np.max(error - e_n)))
    assert worst > 0.5  # the bound is not vacuous: some output is a whole step off


def test_qadd_matches_float() -> None:
    """|int - round(float)| <= 1 LSB: one rounding of the exact sum, off only by the multipliers' error, at most
    |a - a_zp| 2^(a_k - s - 1) + |b - b_zp| 2^(b_k - s - 1) <= 2 * 255 2^-21 LSB here (s - k >= 20 for both,
    asserted), far below 1, so floor(1 + |e|) = 1; and the sum itself is exact (no intermediate int8)."""
    rng = np.random.default_rng(14)
    for _ in range(FLOAT_CASES):
        seq, c = int(rng.integers(1, 20)), int(rng.integers(1, 40))
        (aq, s_a, a_zp, a_hat), (bq, s_b, b_zp, b_hat) = (
            _qtensor(rng.normal(rng.normal(), rng.uniform(0.1, 4), (1, seq, c))) for _ in range(2))
        y = a_hat + b_hat
        s_y, y_zp = choose_qparams(float(y.min()), float(y.max()))
        params = add_params(s_a / s_y, s_b / s_y)
        assert params["right_shift"] - max(params["a_left_shift"], params["b_left_shift"]) >= 20
        got = spec("QAdd").reference(aq, bq, a_zp=a_zp, b_zp=b_zp, **params, out_zp=y_zp)
        assert np.max(np.abs(got.astype(np.int64) - quantize(y, s_y, y_zp))) <= 1


def test_qlinear_add_matches_float() -> None:
    """|int - round(float)| <= 1 LSB against x_hat @ w_hat + b + r_hat, quantized once: before its one rounding the
    integer value is off by the bias rounding (0.5 s_x s_w / s_y) and the multipliers' error (|acc| 2^-(s+1) +
    255 2^(r_k - s - 1)), which stay below 1 while s_x s_w / s_y < 1.5 (asserted), so floor(1 + |e|) = 1."""
    from mcu_attn.ir.ops.linear_epilogue import qlinear_add

    rng = np.random.default_rng(15)
    for case in range(FLOAT_CASES):
        rows, k, n, bits = int(rng.integers(1, 5)), int(rng.integers(2, 96)), int(rng.integers(1, 16)), [8, 4][case % 2]
        xq, s_x, x_zp, x_hat = _qtensor(rng.normal(rng.normal(), rng.uniform(0.2, 3), (rows, k)))
        rq, s_r, r_zp, r_hat = _qtensor(rng.normal(rng.normal(), rng.uniform(0.2, 3), (rows, n)))
        w = rng.normal(0, 1 / math.sqrt(k), (k, n))
        s_w = symmetric_scales(w, bits, axis=1)
        wq = quantize(w, s_w, 0, bits).astype(np.int8)
        b = rng.normal(0, 0.2, n)
        y = x_hat @ (wq * s_w) + b + r_hat
        s_y, y_zp = choose_qparams(float(y.min()), float(y.max()))
        assert np.all(s_x * s_w / s_y < 1.5)
        bias = np.round(b / (s_x * s_w)).astype(np.int64) - x_zp * wq.astype(np.int64).sum(axis=0)
        shift, ((_, mults), (r_k, (r_m,))) = sum_requant_params([(list(s_x * s_w / s_y), 31), ([s_r / s_y], 8)])
        got = qlinear_add(xq, wq, bias.astype(np.int32), rq, multiplier=tuple(mults), right_shift=shift,
                          r_multiplier=r_m, r_left_shift=r_k, r_zp=r_zp, y_zp=y_zp, bits=bits)
        assert np.max(np.abs(got.astype(np.int64) - quantize(y, s_y, y_zp))) <= 1


def test_ops_in_the_ir() -> None:
    """Shape inference runs the references on zeros; MAC counts follow Linear's and Attention's rules."""
    from mcu_attn.ir.graph import Graph, Node
    from mcu_attn.ir.ops.registry import infer_types, node_macs
    from mcu_attn.ir.types import TensorType

    graph = Graph()
    graph.add_input("x", TensorType("int8", (1, 10, 8)))
    w = graph.add_const("w", np.ones((8, 6), np.int8))
    bias = graph.add_const("b", np.zeros(6, np.int32))
    m, s = quantize_multiplier(0.01)
    linear = graph.append(Node("QLinear", ["x", w, bias], ["y"], dict(multiplier=(m,) * 6, shift=(s,) * 6, bits=4)))
    graph.types["y"] = infer_types(graph, linear)[0]
    assert graph.types["y"] == TensorType("int8", (1, 10, 6)) and node_macs(graph, linear) == 10 * 8 * 6
    causal3 = AttentionPattern(3, causal=True)
    attn = graph.append(Node("QAttention", ["y", "y", "y"], ["z"], dict(heads=2, head_dim=3, pattern=causal3)))
    assert infer_types(graph, attn)[0] == TensorType("int8", (1, 10, 6))
    assert node_macs(graph, attn) == 2 * int(causal3.allowed(10).sum()) * 2 * 3
