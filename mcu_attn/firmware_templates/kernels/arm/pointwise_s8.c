/* QTable, QAdd, QRequant with the DSP extension: the same results as ref/pointwise_s8.c, faster.
 *
 * The table lookup takes four inputs per word load and stores four outputs per word. The add and the requant
 * keep TFLite's arithmetic exactly (every requantization is ma_requantize's), but each is one SMLAL when its
 * parameters allow (ma_dsp.h) instead of the reference's 64-bit rounding steps; `fast` is decided once per call,
 * and the loops are specialised for it. */
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

__attribute__((always_inline)) static inline void add(const int8_t *a, const int8_t *b, int32_t count,
                                                      int32_t b_count, const ma_add_s8_params *p, int8_t *y,
                                                      int fast) {
    const ma_requant_params pa = ma_requant_prepare_small(p->a_mult, p->a_shift);
    const ma_requant_params pb = ma_requant_prepare_small(p->b_mult, p->b_shift);
    const ma_requant_params po = ma_requant_prepare_small(p->out_mult, p->out_shift);
    const ma_requant_params ga = ma_requant_prepare(p->a_mult, p->a_shift);
    const ma_requant_params gb = ma_requant_prepare(p->b_mult, p->b_shift);
    const ma_requant_params go = ma_requant_prepare(p->out_mult, p->out_shift);
    const int32_t a_zp = p->a_zp, b_zp = p->b_zp, out_zp = p->out_zp;
    int32_t i, j = 0;
    for (i = 0; i < count; ++i) {
        const int32_t xa = (a[i] - a_zp) * (1 << 20), xb = (b[j] - b_zp) * (1 << 20); /* |.| < 2^28 */
        int32_t sum;
        if (fast) { /* multipliers of at most 1 keep a' and b' below 2^28 and their sum below 2^29 */
            sum = ma_dsp_requant_small(2 * xa, &pa) + ma_dsp_requant_small(2 * xb, &pb);
            y[i] = ma_dsp_sat8(ma_dsp_requant_small(2 * sum, &po), out_zp);
        } else {
            sum = __qadd(ma_dsp_requant(xa, &ga), ma_dsp_requant(xb, &gb));
            y[i] = ma_dsp_sat8(ma_dsp_requant(sum, &go), out_zp);
        }
        if (++j == b_count) j = 0;
    }
}

void ma_add_s8(const int8_t *a, const int8_t *b, int32_t count, int32_t b_count, const ma_add_s8_params *p,
               int8_t *y) {
    if (ma_requant_fast_small(p->a_mult, p->a_shift) && ma_requant_fast_small(p->b_mult, p->b_shift) &&
        ma_requant_fast_small(p->out_mult, p->out_shift)) {
        add(a, b, count, b_count, p, y, 1);
    } else {
        add(a, b, count, b_count, p, y, 0);
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
