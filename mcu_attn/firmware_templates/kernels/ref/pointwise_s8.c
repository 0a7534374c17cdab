/* Pointwise integer ops: QTable, QAdd, QRequant. References: mcu_attn/ir/ops/int8_pointwise.py, add.py. */
#include "ma_kernels_s8.h"

void ma_table_s8(const int8_t *x, int32_t count, const int8_t *table, int8_t *y) {
    int32_t i;
    for (i = 0; i < count; ++i) y[i] = table[(int32_t)x[i] + 128];
}

/* Both operands go to the output scale in one requantization of their sum (qmath.requantize_sum). */
void ma_add_s8(const int8_t *a, const int8_t *b, int32_t count, int32_t b_count, const ma_add_s8_params *p,
               int8_t *y) {
    int32_t i, j = 0;
    for (i = 0; i < count; ++i) {
        y[i] = ma_sat8(ma_requantize_sum2(a[i] - p->a_zp, p->a_left_shift, p->a_mult, b[j] - p->b_zp,
                                          p->b_left_shift, p->b_mult, p->right_shift) + p->out_zp);
        if (++j == b_count) j = 0;
    }
}

void ma_requant_s8(const int8_t *x, int32_t count, int32_t in_zp, int32_t mult, int32_t shift, int32_t out_zp,
                   int8_t *y) {
    int32_t i;
    for (i = 0; i < count; ++i) y[i] = ma_sat8((int64_t)ma_requantize((int64_t)x[i] - in_zp, mult, shift) + out_zp);
}
