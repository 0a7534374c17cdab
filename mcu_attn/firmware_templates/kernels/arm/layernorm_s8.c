/* QLayerNorm with the DSP extension: the same results as ref/layernorm_s8.c, faster.
 *
 * One pass of sums: four inputs per word load, SXTB16 to halfword pairs, SMLAD against (1, 1) adds both values
 * into the sum and SMLAD of a pair with itself both squares into the sum of squares (on 32 bits for C < 2^16).
 * The square root (Newton's iteration on 32 bits whenever the radicand fits) and the reciprocal are once per row,
 * as in the reference. Each element is then t = x (C R) - S R, exact on 32 bits although the products may wrap (t itself
 * fits int32, and the arithmetic is modulo 2^32), one SMLAL into the channel's 64-bit bias and the high word shifted
 * right by right_shift - 32 and saturated; right_shift < 32 (a multiplier too large for the high word) and
 * C >= 2^16 take the reference's arithmetic (and a 64-bit sum of squares). */
#include "ma_dsp.h"

/* floor(sqrt(x)) < 2^32 of a 64-bit x. On 32 bits (whenever x fits): Newton's iteration r <- (r + x / r) / 2 from
 * r = 2^ceil(bits(x) / 2) >= sqrt(x) decreases to floor(sqrt(x)) and stops there (the first r' >= r): a few UDIVs
 * instead of sixteen compare-and-subtract steps. Otherwise ma_kernels_s8.h's bit-by-bit algorithm. */
static uint32_t isqrt(uint64_t x) {
    if (x <= 0xFFFFFFFFu) {
        const uint32_t v = (uint32_t)x;
        uint32_t r, next;
        if (v == 0) return 0;
        r = 1u << ((33 - __builtin_clz(v)) / 2);
        for (;;) {
            next = (r + v / r) >> 1;
            if (next >= r) return r;
            r = next;
        }
    }
    {
        MA_ISQRT_BODY(uint64_t, (uint64_t)1 << 62)
    }
}

/* Row statistics: the sum S and R = floor(2^recip_shift / sigma). The sum of squares is on 32 bits while it fits
 * (C 2^14 < 2^31 for C < 2^16); longer rows sum it on 64 bits. */
static int32_t row_stats(const int8_t *xr, int32_t c, const ma_layernorm_s8_params *p, uint32_t *recip) {
    const int32_t ones = 0x00010001;
    int32_t sum = 0, sum_sq = 0, i;
    int64_t long_sq = 0;
    uint32_t sigma;
    if (c < (1 << 16)) {
        for (i = 0; i + 4 <= c; i += 4) {
            const int32_t v = ma_word(xr + i), even = __sxtb16(v), odd = ma_sxtb16_ror8(v);
            sum = __smlad(even, ones, sum);
            sum = __smlad(odd, ones, sum);
            sum_sq = __smlad(even, even, sum_sq);
            sum_sq = __smlad(odd, odd, sum_sq);
        }
        for (; i < c; ++i) {
            sum += xr[i];
            sum_sq += xr[i] * xr[i];
        }
        long_sq = sum_sq;
    } else {
        for (i = 0; i < c; ++i) {
            sum += xr[i];
            long_sq += xr[i] * xr[i];
        }
    }
    sigma = isqrt((uint64_t)((int64_t)c * long_sq - (int64_t)sum * sum + p->eps));
    *recip = ((uint32_t)1 << p->recip_shift) / (sigma ? sigma : 1u); /* one UDIV: recip_shift <= 30 */
    return sum;
}

/* y_i = SSAT8(high word of (bias_i + t_i mult_i) >> high_shift), t_i = x_i C R - S R = (-S R) - x_i (-C R) (one
 * MLS; the products wrap modulo 2^32 and t_i fits int32): nine instructions an element. In assembly because
 * compiled C loads the 64-bit bias in two halves and copies it. c >= 1. */
static void normalise(const int8_t *x, int32_t c, int32_t neg_scale, int32_t neg_offset, const int32_t *mult,
                      const int64_t *bias, int32_t high_shift, int8_t *y) {
    const int8_t *end = x + c;
    int32_t v, m, lo, hi;
    __asm__ volatile(
        "1:\n"
        "  ldrsb %[v], [%[x]], #1\n"
        "  ldrd %[lo], %[hi], [%[bias]], #8\n"
        "  ldr %[m], [%[mult]], #4\n"
        "  mls %[v], %[v], %[neg_scale], %[neg_offset]\n"
        "  smlal %[lo], %[hi], %[v], %[m]\n"
        "  asr %[hi], %[hi], %[shift]\n"
        "  ssat %[hi], #8, %[hi]\n"
        "  strb %[hi], [%[y]], #1\n"
        "  cmp %[x], %[end]\n"
        "  bne 1b\n"
        : [v] "=&r"(v), [m] "=&r"(m), [lo] "=&r"(lo), [hi] "=&r"(hi), [x] "+r"(x), [bias] "+r"(bias),
          [mult] "+r"(mult), [y] "+r"(y)
        : [neg_scale] "r"(neg_scale), [neg_offset] "r"(neg_offset), [shift] "r"(high_shift), [end] "r"(end)
        : "cc", "memory");
}

void ma_layernorm_s8(const int8_t *x, int32_t rows, const ma_layernorm_s8_params *p, int8_t *y) {
    const int32_t c = p->c, high_shift = p->right_shift - 32;
    const int32_t *mult = p->mult;
    const int64_t *bias = p->bias;
    int32_t r, i;
    uint32_t recip;
    for (r = 0; r < rows; ++r) {
        const int8_t *xr = x + r * c;
        int8_t *yr = y + r * c;
        const int32_t sum = row_stats(xr, c, p, &recip);
        if (high_shift >= 0 && c < (1 << 16) && c > 0) {
            normalise(xr, c, (int32_t)(0u - (uint32_t)c * recip), (int32_t)(0u - (uint32_t)sum * recip), mult, bias,
                      high_shift, yr);
        } else {
            for (i = 0; i < c; ++i) {
                const int64_t t = ((int64_t)c * xr[i] - sum) * recip;
                yr[i] = ma_sat8(ma_asr64(t * mult[i] + bias[i], p->right_shift));
            }
        }
    }
}
