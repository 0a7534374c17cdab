/* QMul, portable. Reference: mcu_attn/ir/ops/mul.py qmul. */
#include "ma_kernels_s8.h"

/* y = sat8(requant((a - a_zp)(b - b_zp), mult, shift) + y_zp),
 * b[i % b_count]; |product| <= 2^16. */
void ma_mul_s8(const int8_t *a, const int8_t *b, int32_t count, int32_t b_count, int32_t a_zp, int32_t b_zp,
               int32_t mult, int32_t shift, int32_t y_zp, int8_t *y) {
    int32_t i, j = 0;
    for (i = 0; i < count; ++i) {
        const int32_t product = ((int32_t)a[i] - a_zp) * ((int32_t)b[j] - b_zp);
        y[i] = ma_sat8((int64_t)ma_requantize(product, mult, shift) + y_zp);
        if (++j == b_count) j = 0;
    }
}
