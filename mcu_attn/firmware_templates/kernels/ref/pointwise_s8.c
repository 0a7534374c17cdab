/* Pointwise integer ops: QTable, QAdd, QRequant. References: mcu_attn/ir/ops/int8_pointwise.py, add.py. */
#include "ma_kernels_s8.h"

void ma_table_s8(const int8_t *x, int32_t count, const int8_t *table, int8_t *y) {
    int32_t i;
    for (i = 0; i < count; ++i) y[i] = table[(int32_t)x[i] + 128];
}

/* TFLite's add: both inputs move to a common scale 2^20 times finer than twice the larger input scale, are
 * added exactly, and the sum is requantized to the output. */
void ma_add_s8(const int8_t *a, const int8_t *b, int32_t count, int32_t b_count, const ma_add_s8_params *p,
               int8_t *y) {
    int32_t i, j = 0;
    for (i = 0; i < count; ++i) {
        const int32_t a1 = ma_requantize(((int64_t)a[i] - p->a_zp) * ((int64_t)1 << 20), p->a_mult, p->a_shift);
        const int32_t b1 = ma_requantize(((int64_t)b[j] - p->b_zp) * ((int64_t)1 << 20), p->b_mult, p->b_shift);
        y[i] = ma_sat8((int64_t)ma_requantize((int64_t)a1 + b1, p->out_mult, p->out_shift) + p->out_zp);
        if (++j == b_count) j = 0;
    }
}

void ma_requant_s8(const int8_t *x, int32_t count, int32_t in_zp, int32_t mult, int32_t shift, int32_t out_zp,
                   int8_t *y) {
    int32_t i;
    for (i = 0; i < count; ++i) y[i] = ma_sat8((int64_t)ma_requantize((int64_t)x[i] - in_zp, mult, shift) + out_zp);
}
