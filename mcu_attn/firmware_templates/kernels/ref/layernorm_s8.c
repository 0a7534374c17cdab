/* QLayerNorm: integer mean, variance and square root, one reciprocal per row, per-channel requantization.
 * Reference: mcu_attn/ir/ops/layernorm.py qlayernorm.
 *
 * With S = sum x and d_i = C x_i - S, V / C = sum d_i^2 / C = C sum x^2 - S^2 exactly, so one pass gives the
 * variance term and a second pass normalizes: sigma = max(1, isqrt(V / C + eps)), inv = 2^30 / sigma,
 * n_i = round(d_i inv / 2^15), y_i = sat8(requant(n_i, mult_i, shift_i) + bias_i + out_zp). */
#include "ma_kernels_s8.h"

void ma_layernorm_s8(const int8_t *x, int32_t rows, const ma_layernorm_s8_params *p, int8_t *y) {
    const int32_t c = p->c;
    int32_t r, i;
    for (r = 0; r < rows; ++r) {
        const int8_t *xr = x + (int64_t)r * c;
        int8_t *yr = y + (int64_t)r * c;
        int32_t sum = 0;
        int64_t sum_sq = 0, sigma, inv;
        for (i = 0; i < c; ++i) {
            sum += xr[i];
            sum_sq += (int32_t)xr[i] * xr[i];
        }
        sigma = (int64_t)ma_isqrt_u64((uint64_t)((int64_t)c * sum_sq - (int64_t)sum * sum + p->eps));
        if (sigma < 1) sigma = 1;
        inv = (int64_t)(((uint32_t)1 << 30) / (uint32_t)sigma); /* sigma < 2^32: a 32-bit division */
        for (i = 0; i < c; ++i) {
            const int64_t d = (int64_t)c * xr[i] - sum;
            const int32_t n = (int32_t)ma_rshift_round64(d * inv, 15);
            yr[i] = ma_sat8((int64_t)ma_requantize(n, p->mult[i], p->shift[i]) + p->bias[i] + p->out_zp);
        }
    }
}
