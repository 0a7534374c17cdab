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
