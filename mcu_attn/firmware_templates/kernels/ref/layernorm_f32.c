/* Float LayerNorm over the last axis: mean, then the mean squared deviation, then 1/sqrt(var + eps). */
#include "ma_kernels.h"

#include <math.h>
#include <stddef.h>

void ma_layernorm_f32(const float *x, int32_t rows, int32_t c, const float *gamma, const float *beta, float eps,
                      float *y)
{
    int32_t r, i;
    for (r = 0; r < rows; ++r) {
        const float *xr = x + (size_t)r * (size_t)c;
        float *yr = y + (size_t)r * (size_t)c;
        float mean = 0.0f, var = 0.0f, inv;
        for (i = 0; i < c; ++i) {
            mean += xr[i];
        }
        mean /= (float)c;
        for (i = 0; i < c; ++i) {
            float d = xr[i] - mean;
            var += d * d;
        }
        var /= (float)c;
        inv = 1.0f / sqrtf(var + eps);
        for (i = 0; i < c; ++i) {
            float v = (xr[i] - mean) * inv * gamma[i];
            yr[i] = beta != NULL ? v + beta[i] : v;
        }
    }
}

/* Float RMSNorm over the last axis: 1/sqrt(mean(x^2) + eps), times gamma. */
void ma_rmsnorm_f32(const float *x, int32_t rows, int32_t c, const float *gamma, float eps, float *y)
{
    int32_t r, i;
    for (r = 0; r < rows; ++r) {
        const float *xr = x + (size_t)r * (size_t)c;
        float *yr = y + (size_t)r * (size_t)c;
        float mean_square = 0.0f, inv;
        for (i = 0; i < c; ++i) {
            mean_square += xr[i] * xr[i];
        }
        inv = 1.0f / sqrtf(mean_square / (float)c + eps);
        for (i = 0; i < c; ++i) {
            yr[i] = xr[i] * inv * gamma[i];
        }
    }
}
