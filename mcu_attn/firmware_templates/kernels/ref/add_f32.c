/* Float addition with b repeating every b_count elements (b broadcast over leading axes). */
#include "ma_kernels.h"

void ma_add_f32(const float *a, const float *b, int32_t count, int32_t b_count, float *y)
{
    int32_t start, i;
    for (start = 0; start < count; start += b_count) {
        int32_t end = count - start < b_count ? count - start : b_count;
        for (i = 0; i < end; ++i) {
            y[start + i] = a[start + i] + b[i];
        }
    }
}

void ma_mul_f32(const float *a, const float *b, int32_t count, int32_t b_count, float *y)
{
    int32_t start, i;
    for (start = 0; start < count; start += b_count) {
        int32_t end = count - start < b_count ? count - start : b_count;
        for (i = 0; i < end; ++i) {
            y[start + i] = a[start + i] * b[i];
        }
    }
}
