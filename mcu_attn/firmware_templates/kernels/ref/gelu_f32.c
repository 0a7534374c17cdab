/* Float GELU: x * Phi(x) with erff, or the tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
#include "ma_kernels.h"

#include <math.h>

#define MA_SQRT1_2 0.70710678118654752440f
#define MA_SQRT_2_OVER_PI 0.79788456080286535588f

void ma_gelu_f32(const float *x, int32_t count, int32_t tanh_approx, float *y)
{
    int32_t i;
    if (tanh_approx) {
        for (i = 0; i < count; ++i) {
            float v = x[i];
            y[i] = 0.5f * v * (1.0f + tanhf(MA_SQRT_2_OVER_PI * (v + 0.044715f * v * v * v)));
        }
    } else {
        for (i = 0; i < count; ++i) {
            float v = x[i];
            y[i] = 0.5f * v * (1.0f + erff(v * MA_SQRT1_2));
        }
    }
}

void ma_silu_f32(const float *x, int32_t count, float *y)
{
    int32_t i;
    for (i = 0; i < count; ++i) {
        y[i] = x[i] / (1.0f + expf(-x[i]));
    }
}
