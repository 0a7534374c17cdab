/* QLayerNorm with the DSP extension: the same results as ref/layernorm_s8.c, faster.
 *
 * One pass of sums: four inputs per word load, SXTB16 to halfword pairs, SMLALD adds both squares into a 64-bit
 * sum of squares and SMLAD against (1, 1) both values into the sum. The square root (bit by bit, on 32 bits
 * whenever the radicand fits) and the reciprocal are once per row, as in the reference. The second pass computes
 * d = C x - S with one MLA, the Q15 normalised value n with one SMULL and a rounding shift, and requantizes with
 * one SMLAL: |n| <= sqrt(C) 2^16 < 2^30, so the small-operand form of ma_dsp.h applies to every channel whose
 * shift is <= 0 (a channel with a larger multiplier sends the row through ma_requantize). The bias and the zero
 * point are added with QADD, whose int32 saturation gives the same int8 as the reference's int64 sum. */
#include "ma_dsp.h"

/* floor(sqrt(x)) on 32 bits whenever x fits (ma_kernels_s8.h's algorithm). */
static uint32_t isqrt32(uint32_t x) {
    MA_ISQRT_BODY(uint32_t, 1u << 30)
}

static uint64_t isqrt(uint64_t x) {
    if (x <= 0xFFFFFFFFu) return isqrt32((uint32_t)x);
    {
        MA_ISQRT_BODY(uint64_t, (uint64_t)1 << 62)
    }
}

/* Row statistics: the sum S and floor(2^30 / sigma). */
static int32_t row_stats(const int8_t *xr, int32_t c, int64_t eps, int32_t *inv) {
    const int32_t ones = 0x00010001;
    int32_t sum = 0, i;
    int64_t sum_sq = 0, sigma;
    for (i = 0; i + 4 <= c; i += 4) {
        const int32_t v = ma_word(xr + i), even = __sxtb16(v), odd = ma_sxtb16_ror8(v);
        sum = __smlad(even, ones, sum);
        sum = __smlad(odd, ones, sum);
        sum_sq = __smlald(even, even, sum_sq);
        sum_sq = __smlald(odd, odd, sum_sq);
    }
    for (; i < c; ++i) {
        sum += xr[i];
        sum_sq += xr[i] * xr[i];
    }
    sigma = (int64_t)isqrt((uint64_t)((int64_t)c * sum_sq - (int64_t)sum * sum + eps));
    if (sigma < 1) sigma = 1;
    *inv = (int32_t)(((uint32_t)1 << 30) / (uint32_t)sigma);
    return sum;
}

/* Every channel: shift <= 0 and M != INT32_MIN; and C < 2^23, so |d| <= 255 C fits int32. */
static int fast_layer(const ma_layernorm_s8_params *p) {
    int32_t i;
    if (p->c >= (1 << 23)) return 0;
    for (i = 0; i < p->c; ++i) {
        if (!ma_requant_fast_small(p->mult[i], p->shift[i])) return 0;
    }
    return 1;
}

void ma_layernorm_s8(const int8_t *x, int32_t rows, const ma_layernorm_s8_params *p, int8_t *y) {
    const int32_t c = p->c, out_zp = p->out_zp;
    const int32_t *mult = p->mult, *shift = p->shift, *bias = p->bias;
    const int fast = fast_layer(p);
    int32_t r, i, inv;
    for (r = 0; r < rows; ++r) {
        const int8_t *xr = x + r * c;
        int8_t *yr = y + r * c;
        const int32_t sum = row_stats(xr, c, p->eps, &inv);
        if (fast) {
            for (i = 0; i < c; ++i) {
                const int32_t d = c * xr[i] - sum, m = mult[i], right = -shift[i];
                const int32_t n = (int32_t)(((int64_t)d * inv + (1 << 14)) >> 15); /* SMULL, rounding shift */
                /* 2 K of ma_dsp.h: 2^31 + (2^(right-1) - [n M < 0]) 2^32, the last term only when right > 0 */
                const uint32_t high = right > 0 ? (1u << (right - 1)) - (uint32_t)((n ^ m) < 0) : 0u;
                const int64_t t = (int64_t)(((uint64_t)high << 32) | 0x80000000u) + (int64_t)(2 * n) * m;
                yr[i] = ma_dsp_sat8(__qadd((int32_t)(t >> 32) >> right, bias[i]), out_zp);
            }
        } else {
            for (i = 0; i < c; ++i) {
                const int64_t d = (int64_t)c * xr[i] - sum;
                const int32_t n = (int32_t)((d * inv + (1 << 14)) >> 15); /* the contract keeps n in int32 */
                yr[i] = ma_dsp_sat8(__qadd(ma_dsp_requant_slow(n, mult[i], shift[i]), bias[i]), out_zp);
            }
        }
    }
}
