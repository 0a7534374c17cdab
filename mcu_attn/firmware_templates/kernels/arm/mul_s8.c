/* QMul with the DSP extension: the same results as ref/mul_s8.c, faster. The product of two centred int8 values
 * is one MUL (|product| <= 2^16); the requantization, prepared once for the tensor, is one SMLAL when the shift
 * is negative (ma_dsp.h) and the reference's ma_requantize otherwise; SSAT clamps. */
#include "ma_dsp.h"

void ma_mul_s8(const int8_t *a, const int8_t *b, int32_t count, int32_t b_count, int32_t a_zp, int32_t b_zp,
               int32_t mult, int32_t shift, int32_t y_zp, int8_t *y) {
    const ma_requant_params p = ma_requant_prepare(mult, shift);
    int32_t i = 0, j;
    while (i < count) {
        for (j = 0; j < b_count && i < count; ++j, ++i) {
            const int32_t product = ((int32_t)a[i] - a_zp) * ((int32_t)b[j] - b_zp);
            y[i] = ma_dsp_sat8(ma_dsp_requant(product, &p), y_zp);
        }
    }
}
