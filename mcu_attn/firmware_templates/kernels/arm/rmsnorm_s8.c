/* QRMSNorm with the DSP extension: the same results as ref/rmsnorm_s8.c, faster.
 *
 * The sum of squares takes four inputs per word load: SXTB16 to halfword pairs, SSUB16 removes the zero point from
 * both halves (|x - in_zp| <= 255 fits a halfword) and SMLALD adds both squares into a 64-bit sum. The square root
 * and the reciprocal are once per row, as in the reference. Per element, d = C (x - in_zp) is one MUL, the Q15
 * normalised value n one SMULL and a rounding shift, and the requantization one SMLAL: |n| <= sqrt(C) 2^15 < 2^30
 * (|d| <= sqrt(C) sigma), so the small-operand form of ma_dsp.h applies to every channel whose shift is <= 0; a
 * layer with another channel, or with C >= 2^23 (d must fit int32), takes ma_requantize per element. */
#include "ma_dsp.h"

/* Every channel: shift <= 0 and M != INT32_MIN; and C < 2^23. */
static int fast_layer(const ma_rmsnorm_s8_params *p) {
    int32_t i;
    if (p->c >= (1 << 23)) return 0;
    for (i = 0; i < p->c; ++i) {
        if (!ma_requant_fast_small(p->mult[i], p->shift[i])) return 0;
    }
    return 1;
}

/* floor(2^30 / sigma) of a row, sigma = max(1, isqrt(C sum (x - in_zp)^2 + eps)). */
static int32_t row_inverse(const int8_t *xr, int32_t c, int32_t in_zp, int64_t eps) {
    const int32_t zp2 = (int32_t)(((uint32_t)in_zp & 0xFFFFu) | ((uint32_t)in_zp << 16));
    int64_t sum_sq = 0, sigma;
    int32_t i;
    for (i = 0; i + 4 <= c; i += 4) {
        const int32_t v = ma_word(xr + i);
        const int32_t even = __ssub16(__sxtb16(v), zp2), odd = __ssub16(ma_sxtb16_ror8(v), zp2);
        sum_sq = __smlald(even, even, sum_sq);
        sum_sq = __smlald(odd, odd, sum_sq);
    }
    for (; i < c; ++i) {
        const int32_t centred = (int32_t)xr[i] - in_zp;
        sum_sq += (int64_t)centred * centred;
    }
    sigma = (int64_t)ma_isqrt_u64((uint64_t)((int64_t)c * sum_sq + eps));
    if (sigma < 1) sigma = 1;
    return (int32_t)(((uint32_t)1 << 30) / (uint32_t)sigma); /* sigma < 2^32: a 32-bit division */
}

void ma_rmsnorm_s8(const int8_t *x, int32_t rows, const ma_rmsnorm_s8_params *p, int8_t *y) {
    const int32_t c = p->c, in_zp = p->in_zp, out_zp = p->out_zp;
    const int fast = fast_layer(p);
    int32_t r, i;
    for (r = 0; r < rows; ++r) {
        const int8_t *xr = x + (int64_t)r * c;
        int8_t *yr = y + (int64_t)r * c;
        const int32_t inv = row_inverse(xr, c, in_zp, p->eps);
        if (fast) {
            for (i = 0; i < c; ++i) {
                const int32_t d = c * ((int32_t)xr[i] - in_zp);                    /* |d| < 2^31: C < 2^23 */
                const int32_t n = (int32_t)(((int64_t)d * inv + (1 << 14)) >> 15); /* SMULL, rounding shift */
                const ma_requant_params q = ma_requant_prepare_small(p->mult[i], p->shift[i]);
                yr[i] = ma_dsp_sat8(ma_dsp_requant_small(2 * n, &q), out_zp);
            }
        } else {
            for (i = 0; i < c; ++i) {
                const int64_t d = (int64_t)c * ((int32_t)xr[i] - in_zp);
                const int32_t n = (int32_t)((d * inv + (1 << 14)) >> 15); /* the contract keeps n in int32 */
                yr[i] = ma_dsp_sat8(ma_dsp_requant_slow(n, p->mult[i], p->shift[i]), out_zp);
            }
        }
    }
}
