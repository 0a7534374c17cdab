/* Float fully-connected layer: one output channel per weight row, so each output is a contiguous dot product. */
#include "ma_kernels.h"

#include <stddef.h>

void ma_linear_f32(const float *x, int32_t rows, int32_t k, int32_t n, const float *w, const float *bias, float *y)
{
    int32_t r, o, i;
    for (r = 0; r < rows; ++r) {
        const float *xr = x + (size_t)r * (size_t)k;
        float *yr = y + (size_t)r * (size_t)n;
        for (o = 0; o < n; ++o) {
            const float *wo = w + (size_t)o * (size_t)k;
            float acc = 0.0f;
            for (i = 0; i < k; ++i) {
                acc += xr[i] * wo[i];
            }
            yr[o] = bias != NULL ? acc + bias[o] : acc;
        }
    }
}
