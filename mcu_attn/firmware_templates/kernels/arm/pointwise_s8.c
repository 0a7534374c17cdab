/* QTable, QAdd, QRequant with the DSP extension: the same results as ref/pointwise_s8.c, faster.
 *
 * The table lookup takes four inputs per word load and stores four outputs per word. The add's one requantization
 * is two SMLALs from a constant that holds its rounding and zero points; the requant is one SMLAL when its
 * parameters allow (ma_dsp.h) instead of the reference's 64-bit rounding steps. */
#include "ma_dsp.h"

void ma_table_s8(const int8_t *x, int32_t count, const int8_t *table, int8_t *y) {
    const int8_t *lut = table + 128;
    int32_t i = 0;
    for (; i + 4 <= count; i += 4) {
        const uint32_t v = (uint32_t)ma_word(x + i);
        const uint32_t out = (uint32_t)(uint8_t)lut[(int8_t)v] | (uint32_t)(uint8_t)lut[(int8_t)(v >> 8)] << 8 |
                             (uint32_t)(uint8_t)lut[(int8_t)(v >> 16)] << 16 |
                             (uint32_t)(uint8_t)lut[(int8_t)(v >> 24)] << 24;
        ma_put_word(y + i, (int32_t)out);
    }
    for (; i < count; ++i) y[i] = lut[x[i]];
}

/* C + (a << a_k) a_M + (b << b_k) b_M with C = 2^(s-1) - a_zp 2^a_k a_M - b_zp 2^b_k b_M + out_zp 2^s (two SMLALs),
 * then the high word shifted right by s - 32 and saturated; s >= 32 (the quantizer's usual choice), else the
 * reference arithmetic. */
void ma_add_s8(const int8_t *a, const int8_t *b, int32_t count, int32_t b_count, const ma_add_s8_params *p,
               int8_t *y) {
    const int32_t ak = p->a_left_shift, bk = p->b_left_shift, am = p->a_mult, bm = p->b_mult;
    int32_t i, j = 0;
    if (p->right_shift >= 32) {
        const int64_t constant = ((int64_t)1 << (p->right_shift - 1)) -
                                 (int64_t)p->a_zp * ((int64_t)1 << ak) * am -
                                 (int64_t)p->b_zp * ((int64_t)1 << bk) * bm +
                                 (int64_t)p->out_zp * ((int64_t)1 << p->right_shift);
        const int32_t high_shift = p->right_shift - 32;
        for (i = 0; i < count; ++i) {
            const int64_t t = constant + (int64_t)(int32_t)((uint32_t)a[i] << ak) * am +
                              (int64_t)(int32_t)((uint32_t)b[j] << bk) * bm;
            y[i] = (int8_t)__ssat((int32_t)(t >> 32) >> high_shift, 8);
            if (++j == b_count) j = 0;
        }
    } else {
        for (i = 0; i < count; ++i) {
            y[i] = ma_sat8(ma_requantize_sum2(a[i] - p->a_zp, ak, am, b[j] - p->b_zp, bk, bm, p->right_shift) +
                           p->out_zp);
            if (++j == b_count) j = 0;
        }
    }
}

void ma_requant_s8(const int8_t *x, int32_t count, int32_t in_zp, int32_t mult, int32_t shift, int32_t out_zp,
                   int8_t *y) {
    const ma_requant_params p = ma_requant_prepare(mult, shift), small = ma_requant_prepare_small(mult, shift);
    int32_t i;
    if (ma_requant_fast_small(mult, shift)) { /* |x - in_zp| <= 255 */
        for (i = 0; i < count; ++i) y[i] = ma_dsp_sat8(ma_dsp_requant_small(2 * (x[i] - in_zp), &small), out_zp);
    } else {
        for (i = 0; i < count; ++i) y[i] = ma_dsp_sat8(ma_dsp_requant(x[i] - in_zp, &p), out_zp);
    }
}
