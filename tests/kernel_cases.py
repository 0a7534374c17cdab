"""Seeded case generators for the integer kernels, shared by the host and emulator tests and the benchmark.

Each generator draws (inputs, attrs) for one integer IR op from a numpy Generator, in the calling convention of
its numpy reference (`mcu_attn/ir/ops/`): extreme zero points, multipliers from `quantize_multiplier`
over a wide range of real scales, saturation, narrow bands with many ties, attention patterns of every kind.
hypothesis may fix the structure (shapes, attention patterns: `patterns`) and leave the values to the seed. `check_case` runs the reference
and a kernel (`mcu_attn.sim.kernel_calls.KernelBindings` over any backend) on one case and requires identical
bits.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from mcu_attn.ir.ops.layernorm import layernorm_params
from mcu_attn.ir.ops.registry import spec
from mcu_attn.ir.ops.add import add_params
from mcu_attn.reference.qmath import quantize_multiplier, sum_requant_params
from mcu_attn.ir.pattern import AttentionPattern


def check_case(kernels, name: str, inputs: tuple, attrs: dict) -> None:
    with np.errstate(all="raise"):
        expected = spec(name).reference(*inputs, **attrs)
    got = kernels.run(name, inputs, attrs)
    assert expected.dtype == np.int8 and got.shape == expected.shape
    if not np.array_equal(got, expected):
        bad = np.argwhere(got != expected)[:5].tolist()
        raise AssertionError(f"{name} C != reference at {bad} ({int((got != expected).sum())} of {got.size}); "
                             f"shapes {[np.shape(i) for i in inputs]}, attrs "
                             f"{ {k: v for k, v in attrs.items() if k not in ('exp_table', 'table')} }")


def _zp(rng) -> int:
    return int(rng.choice([-128, 127, 0])) if rng.random() < 0.35 else int(rng.integers(-128, 128))


def _mult(rng, low: float, high: float, negative: float = 0.0) -> tuple[int, int]:
    """quantize_multiplier of a real scale log-uniform in [2^low, 2^high] (negative with that probability)."""
    real = 2.0 ** rng.uniform(low, high)
    return quantize_multiplier(-real if rng.random() < negative else real)


def _int8(rng, shape, low: int = -128, high: int = 127) -> np.ndarray:
    mode = rng.random()
    if mode < 0.1:  # only the extremes: saturation of every product
        return rng.choice([low, high], size=shape).astype(np.int8)
    if mode < 0.25:  # a narrow band around some centre: small variance, many ties
        centre = int(rng.integers(low, high + 1))
        return np.clip(centre + rng.integers(-3, 4, size=shape), low, high).astype(np.int8)
    return rng.integers(low, high + 1, size=shape).astype(np.int8)


def _mixed_mult(rng, typical: tuple[float, float], wide: tuple[float, float], negative: float = 0.0):
    """Mostly real scales that keep outputs in range; a quarter from a wide range (saturation, underflow to 0)."""
    return _mult(rng, *(wide if rng.random() < 0.25 else typical), negative)


def _per_channel(rng, n: int, typical, wide, negative: float = 0.0) -> tuple[tuple, tuple]:
    wide_case = rng.random() < 0.25
    pairs = [_mult(rng, *(wide if wide_case else typical), negative) for _ in range(n)]
    return tuple(m for m, _ in pairs), tuple(s for _, s in pairs)


def _bias(rng, n: int, typical_bits: float, wide_bits: float) -> np.ndarray:
    bits = wide_bits if rng.random() < 0.2 else typical_bits
    return (rng.integers(-1, 2, n) * (2 ** rng.uniform(0, bits, n)).astype(np.int64)).astype(np.int32)


def gen_qlinear(rng, rows=None, k=None, n=None, bits=None):
    rows = rows or int(rng.integers(1, 5))
    k = k or int(rng.integers(1, 70))
    n = n or int(rng.integers(1, 12))
    bits = bits or int(rng.choice([8, 4]))
    x = _int8(rng, (1, rows, k) if rng.random() < 0.5 else (rows, k))
    w = _int8(rng, (k, n), *((-8, 7) if bits == 4 else (-128, 127)))
    # 2^-34 underflows to (0, 0); 2^1 is a left shift of 2
    multiplier, shift = _per_channel(rng, n, (-20, -6), (-34, 1))
    return (x, w, _bias(rng, n, 16, 24)), dict(multiplier=multiplier, shift=shift, y_zp=_zp(rng), bits=bits)


def gen_qlinear_table(rng, rows=None, k=None, n=None, bits=None):
    inputs, attrs = gen_qlinear(rng, rows, k, n, bits)
    return inputs, {**attrs, "table": tuple(int(t) for t in rng.integers(-128, 128, 256))}


def gen_qlinear_add(rng, rows=None, k=None, n=None, bits=None):
    """Accumulator scales from 2^-30 (the residual dominates) to 2^-1 in output units, residual scales 2^-6..2^4."""
    (x, w, bias), attrs = gen_qlinear(rng, rows, k, n, bits)
    n = w.shape[1]
    low, high = (-30, -1) if rng.random() < 0.25 else (-14, -5)
    reals = [float(2.0 ** rng.uniform(low, high)) for _ in range(n)]
    shift, ((_, multipliers), (r_k, (r_m,))) = sum_requant_params([(reals, 31),
                                                                  ([float(2.0 ** rng.uniform(-6, 4))], 8)])
    r = _int8(rng, x.shape[:-1] + (n,))
    return (x, w, bias, r), dict(multiplier=tuple(multipliers), right_shift=shift, r_multiplier=r_m,
                                 r_left_shift=r_k, r_zp=_zp(rng), y_zp=_zp(rng), bits=attrs["bits"])


def standard_exp_table(delta: float = 1 / 16) -> tuple[int, ...]:
    return tuple(int(round(2 ** 15 * math.exp(-delta * t))) for t in range(256))


def random_pattern(rng, seq: int) -> AttentionPattern:
    """A window (or none), causality and global tokens, and in three cases of five a strided, dilated or
    block-sparse part as well (edge sizes included: windows and strides beyond the sequence, single blocks)."""
    window = int(rng.choice([0, 1, 2, 3, 2 * int(rng.integers(0, 10)) + 1, int(rng.integers(1, seq + 1)),
                             seq + int(rng.integers(0, 5))]))
    causal = bool(rng.integers(0, 2))
    global_tokens = int(rng.choice([0, 0, 1, 2, int(rng.integers(0, seq + 1)), seq + 1]))
    kind, fields = int(rng.integers(0, 5)), {}
    if kind == 2:
        fields["stride"] = int(rng.integers(2, seq + 3))
    elif kind == 3:
        fields.update(dilated=int(rng.integers(1, 10)), dilation=int(rng.integers(2, 7)))
    elif kind == 4:
        fields.update(block=int(rng.integers(1, 10)), block_local=int(rng.integers(0, 3)),
                      block_stride=int(rng.choice([0, 2, 3, 5])))
    return AttentionPattern(window, global_tokens, causal, **fields)


@st.composite
def patterns(draw) -> AttentionPattern:
    """hypothesis: any pattern the kernels take (a window, global tokens, causality, one progression, blocks)."""
    fields = dict(window=draw(st.sampled_from([0, 0, 1, 2, 3, 8, 33])), global_tokens=draw(st.integers(0, 5)),
                  causal=draw(st.booleans()))
    progression = draw(st.sampled_from(["none", "stride", "dilated", "blocks"]))
    if progression == "stride":
        fields["stride"] = draw(st.integers(2, 12))
    elif progression == "dilated":
        fields.update(dilated=draw(st.integers(1, 9)), dilation=draw(st.integers(2, 6)))
    if progression == "blocks" or draw(st.booleans()):
        fields.update(block=draw(st.integers(1, 9)), block_local=draw(st.integers(0, 3)))
        if progression == "blocks":
            fields["block_stride"] = draw(st.integers(2, 6))
    return AttentionPattern(**fields)


def gen_qattention(rng, seq=None, heads=None, head_dim=None, pattern=None):
    seq = seq or int(rng.integers(1, 41))
    heads = heads or int(rng.integers(1, 5))
    head_dim = head_dim or int(rng.choice([1, 2, 3, 4, 8, 16]))
    pattern = random_pattern(rng, seq) if pattern is None else pattern
    q, k, v = (_int8(rng, (1, seq, heads * head_dim)) for _ in range(3))
    mode = rng.random()
    if mode < 0.5:
        table = standard_exp_table()
    elif mode < 0.75:
        table = standard_exp_table(2.0 ** rng.uniform(-6, 0))
    else:  # any Q15 table: exp(0) = 2^15, then anything in [0, 2^15]
        table = (1 << 15,) + tuple(int(t) for t in rng.integers(0, (1 << 15) + 1, 255))
    # wide: from underflow to (0, 0) (uniform attention) to left shifts of 30 (clamped gaps)
    score_multiplier, score_shift = _mixed_mult(rng, (-14, 2), (-34, 29))
    out_multiplier, out_shift = _mixed_mult(rng, (-16, -6), (-34, 2))
    inputs = (q, k, v)
    if rng.random() < 0.2:  # an explicit 0/1 mask on top, each row keeping at least one key its window allows
        allowed = pattern.allowed(seq)
        keep = np.array([rng.choice(np.flatnonzero(row)) for row in allowed])
        mask = rng.random((seq, seq)) < rng.uniform(0.1, 0.9)
        mask[np.arange(seq), keep] = True
        inputs = (q, k, v, mask.astype(np.uint8))
    return inputs, dict(heads=heads, head_dim=head_dim, pattern=pattern, q_zp=_zp(rng), k_zp=_zp(rng),
                        v_zp=_zp(rng), out_zp=_zp(rng), score_multiplier=score_multiplier, score_shift=score_shift,
                        exp_table=table, out_multiplier=out_multiplier, out_shift=out_shift)


def gen_qattention_kv(rng, seq=None, keys=None, heads=None, head_dim=None):
    """QAttention over keys and values of another length than the queries (Linformer's projected keys): no
    pattern, no mask; the values from `gen_qattention`'s ranges. Kept out of GENERATORS so the benchmark's
    random stream stays the one its figures were generated with."""
    seq = seq or int(rng.integers(1, 41))
    keys = keys or int(rng.integers(1, 20))
    inputs, attrs = gen_qattention(rng, seq=max(seq, keys), heads=heads, head_dim=head_dim, pattern=AttentionPattern())
    q, k, v = inputs[:3]
    return (q[:, :seq], k[:, :keys], v[:, :keys]), attrs


def gen_qlayernorm(rng, rows=None, c=None):
    rows = rows or int(rng.integers(1, 5))
    c = c or int(rng.integers(1, 97))
    x = _int8(rng, (1, rows, c))
    if rng.random() < 0.1:
        x[..., :] = x[..., :1]  # constant rows: zero variance, sigma from eps (or the floor of 1)
    eps = int(rng.choice([0, int(2 ** rng.uniform(0, 30)), int(round(c * c * 1e-5 / 0.05 ** 2))]))
    # gamma / s_y: 2^3..2^7 output steps per standard deviation, a quarter from 2^-20 to 2^12; gamma can be negative
    low, high = (-20, 12) if rng.random() < 0.25 else (3, 7)
    gamma = 2.0 ** rng.uniform(low, high, c) * np.where(rng.random(c) < 0.2, -1, 1)
    beta = rng.normal(0, 2 ** rng.uniform(0, 7), c)
    attrs, bias = layernorm_params(gamma, beta, _zp(rng))
    return (x, np.asarray(bias, np.int64)), dict(attrs, eps=eps)


def gen_qtable(rng):
    x = _int8(rng, tuple(int(d) for d in rng.integers(1, 9, int(rng.integers(1, 4)))))
    return (x,), dict(table=tuple(int(t) for t in rng.integers(-128, 128, 256)))


def gen_qadd(rng, seq=None, c=None, b_form=None):
    seq, c = seq or int(rng.integers(1, 20)), c or int(rng.integers(1, 40))
    b_shape = [(c,), (1, seq, c), (1, 1, c)][int(rng.integers(0, 3)) if b_form is None else b_form]
    a, b = _int8(rng, (1, seq, c)), _int8(rng, b_shape)
    s_a, s_b = 2.0 ** rng.uniform(-10, 0, 2)
    if rng.random() < 0.1:  # one operand far below the other: its multiplier loses bits, its term stays exact
        s_b = s_a * 2.0 ** -rng.uniform(20, 40)
    s_y = max(s_a, s_b) * 2.0 ** rng.uniform(-2, 4)  # from saturating most sums to using a sixteenth of the range
    return (a, b), dict(a_zp=_zp(rng), b_zp=_zp(rng), **add_params(s_a / s_y, s_b / s_y), out_zp=_zp(rng))


def gen_qrequant(rng):
    x = _int8(rng, (int(rng.integers(1, 6)), int(rng.integers(1, 50))))
    multiplier, shift = _mixed_mult(rng, (-3, 2), (-34, 7), negative=0.2)
    return (x,), dict(in_zp=_zp(rng), multiplier=multiplier, shift=shift, out_zp=_zp(rng))


def gen_qearly_exit(rng):
    """Heads of 2 to 40 classes, confident or not (thresholds from 1/classes, always, to 1, almost never), ties."""
    from mcu_attn.ir.ops.early_exit import exit_bound, gap_table

    count = int(rng.integers(2, 41))
    full, early = _int8(rng, (1, count)), _int8(rng, (1, count))
    threshold = float(rng.choice([rng.uniform(0.05, 1.0), 1.0, 1.0 / count]))
    multiplier, shift = _mixed_mult(rng, (-4, 4), (-34, 7))
    return (full, early), dict(gap_table=gap_table(2.0 ** rng.uniform(-6, 1)), bound=exit_bound(threshold),
                               early_zp=_zp(rng), multiplier=multiplier, shift=shift, out_zp=_zp(rng))


def gen_qtoken_select(rng):
    """Any class-token position, K from 0 to seq - 2, narrow value bands (tied scores), wide score scales."""
    heads, head_dim = int(rng.integers(1, 5)), int(rng.choice([1, 4, 8]))
    seq, width = int(rng.integers(2, 40)), int(rng.integers(1, 24))
    keep, cls = int(rng.integers(0, seq - 1)), int(rng.integers(0, seq))
    x, q, k = _int8(rng, (1, seq, width)), _int8(rng, (1, seq, heads * head_dim)), _int8(rng, (1, seq, heads * head_dim))
    score_multiplier, score_shift = _mixed_mult(rng, (-14, 2), (-34, 29))
    return (x, q, k), dict(heads=heads, head_dim=head_dim, keep=keep, cls=cls, q_zp=_zp(rng), k_zp=_zp(rng),
                           score_multiplier=score_multiplier, score_shift=score_shift, exp_table=standard_exp_table())


def gen_qattention_step(rng):
    """Rings of 1 to 12 slots, empty to full, with QAttention's parameter ranges."""
    inputs, attrs = gen_qattention(rng, seq=1, pattern=AttentionPattern(causal=True))
    q, k, v = inputs[:3]
    window, width = int(rng.integers(1, 13)), q.shape[-1]
    attrs = {key: value for key, value in attrs.items() if key != "pattern"}
    attrs["window"] = window
    keys, values = _int8(rng, (window - 1, width)), _int8(rng, (window - 1, width))
    return (q, k, v, keys, values, np.array(int(rng.integers(0, window)), np.int64)), attrs


def gen_qrmsnorm(rng, rows=None, c=None):
    rows = rows or int(rng.integers(1, 5))
    c = c or int(rng.integers(1, 97))
    x = _int8(rng, (1, rows, c))
    in_zp = _zp(rng)
    if rng.random() < 0.1:
        x[...] = np.int8(in_zp)  # rows at the zero point: sigma from eps (or the floor of 1)
    eps = int(rng.choice([0, int(2 ** rng.uniform(0, 30)), int(round(c * c * 1e-6 / 0.05 ** 2))]))
    multiplier, shift = _per_channel(rng, c, (-16, -7), (-34, 0), negative=0.2)  # gamma can be negative
    return (x,), dict(multiplier=multiplier, shift=shift, eps=eps, in_zp=in_zp, out_zp=_zp(rng))


def gen_qrotary(rng, seq=None, heads=None, head_dim=None):
    seq, heads = seq or int(rng.integers(1, 9)), heads or int(rng.integers(1, 4))
    head_dim = head_dim or 2 * int(rng.integers(1, 9))
    angles = np.arange(seq)[:, None] * 10000.0 ** (-np.arange(head_dim // 2) * 2 / head_dim)[None, :]
    angles = np.concatenate([angles, angles], axis=1)
    cos_q = np.rint(np.cos(angles) * 2 ** 14).astype(np.int16)
    sin_q = np.rint(np.sin(angles) * np.where(np.arange(head_dim) < head_dim // 2, -1, 1) * 2 ** 14).astype(np.int16)
    multiplier, shift = _mixed_mult(rng, (-16, -13), (-40, 2), negative=0.1)
    return (_int8(rng, (1, seq, heads * head_dim)), cos_q, sin_q), dict(
        heads=heads, x_zp=_zp(rng), multiplier=multiplier, shift=shift, y_zp=_zp(rng))


def gen_qmul(rng, seq=None, c=None):
    seq, c = seq or int(rng.integers(1, 12)), c or int(rng.integers(1, 40))
    b_shape = [(1, seq, c), (c,), (1, 1, c)][int(rng.integers(0, 3))]
    multiplier, shift = _mixed_mult(rng, (-10, -4), (-34, 7), negative=0.1)
    return (_int8(rng, (1, seq, c)), _int8(rng, b_shape)), dict(a_zp=_zp(rng), b_zp=_zp(rng), multiplier=multiplier,
                                                              shift=shift, y_zp=_zp(rng))


GENERATORS = {"QLinear": gen_qlinear, "QLinearTable": gen_qlinear_table, "QLinearAdd": gen_qlinear_add,
              "QAttention": gen_qattention, "QLayerNorm": gen_qlayernorm, "QTable": gen_qtable, "QAdd": gen_qadd,
              "QRequant": gen_qrequant, "QEarlyExit": gen_qearly_exit, "QTokenSelect": gen_qtoken_select,
              "QAttentionStep": gen_qattention_step, "QRMSNorm": gen_qrmsnorm, "QRotary": gen_qrotary,
              "QMul": gen_qmul}
SWEEP = {"QLinear": 600, "QLinearTable": 200, "QLinearAdd": 600, "QAttention": 600, "QLayerNorm": 600,
         "QTable": 100, "QAdd": 400, "QRequant": 400, "QEarlyExit": 300, "QTokenSelect": 200, "QAttentionStep": 300,
         "QRMSNorm": 400, "QRotary": 300, "QMul": 400}


def sweep(kernels, seed: int, scale: float = 1.0) -> int:
    """Every generator's seeded sweep against `kernels`; the number of cases (raises on a mismatch)."""
    cases = 0
    for index, (name, generate) in enumerate(GENERATORS.items()):
        rng = np.random.default_rng([seed, index])
        for _ in range(max(1, int(SWEEP[name] * scale))):
            check_case(kernels, name, *generate(rng))
            cases += 1
    return cases
