/* QLayerNorm: one pass of integer sums, an integer square root and one reciprocal per row, then one multiply and
 * one shift per element. Reference: mcu_attn/ir/ops/layernorm.py qlayernorm.
 *
 * S = sum x and V = C sum x^2 - S^2 (= sum (C x_i - S)^2 / C exactly), sigma = max(1, isqrt(V + eps)),
 * R = floor(2^recip_shift / sigma), t_i = (C x_i - S) R (inside int32 by the choice of recip_shift),
 * y_i = sat8((t_i mult_i + bias_i) >> right_shift) on int64 (bias_i holds beta, the zero point and the rounding). */
#include "ma_kernels_s8.h"

void ma_layernorm_s8(const int8_t *x, int32_t rows, const ma_layernorm_s8_params *p, int8_t *y) {
    const int32_t c = p->c;
    int32_t r, i;
    for (r = 0; r < rows; ++r) {
        const int8_t *xr = x + (int64_t)r * c;
        int8_t *yr = y + (int64_t)r * c;
        int64_t sum = 0, sum_sq = 0, sigma, recip;
        for (i = 0; i < c; ++i) {
            sum += xr[i];
            sum_sq += (int32_t)xr[i] * xr[i];
        }
        sigma = (int64_t)ma_isqrt_u64((uint64_t)(c * sum_sq - sum * sum + p->eps));
        if (sigma < 1) sigma = 1;
        recip = ((int64_t)1 << p->recip_shift) / sigma;
        for (i = 0; i < c; ++i) {
            const int64_t t = (c * (int64_t)xr[i] - sum) * recip;
            yr[i] = ma_sat8(ma_asr64(t * p->mult[i] + p->bias[i], p->right_shift));
        }
    }
}
