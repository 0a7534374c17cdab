/* QLinear, QLinearTable and QLinearAdd with the DSP extension: the same results as ref/linear_s8.c
 * (docs/integer-kernels.md), faster.
 *
 * Register tiling: two input rows x two output channels at a time. One word load brings four int8 values;
 * SXTB16 sign-extends bytes 0 and 2 into two halfwords and SXTB16 ROR #8 bytes 1 and 3, so SMLAD on the extended
 * words of x and w adds x0 w0 + x2 w2 and x1 w1 + x3 w3: 16 multiply-accumulates from four loads, eight extends
 * and eight SMLADs, with no reordering of x or w (both are extended the same way). The int8 tiles and their
 * epilogues are assembly (ma_linear_tile8.h); the channel pair is the outer loop, so a pair's weights stay in the
 * flash cache while the row pairs stream past them. The dot product stays in int32 (|x w| <= 2^14 per term,
 * k < 2^17); QADD adds the bias with the int32 saturation of the reference.
 *
 * Epilogues: QLinear's requantization is one SMLAL (ma_dsp.h) when every channel allows it; QLinearTable looks the
 * result up in its table; QLinearAdd's requantized sum is two SMLALs into a 64-bit constant that holds the rounding
 * and both zero points, and the high word shifted right when the sum's shift is at least 32.
 *
 * int4 weights: eight of them are one word, byte b = k(2b) | k(2b+1) << 4. Masking keeps one nibble at the top of
 * each byte, where it reads as a signed byte of value 16 k, so SXTB16 gives (16 k0, 16 k4) and (16 k2, 16 k6) from
 * the low nibbles and (16 k1, 16 k5), (16 k3, 16 k7) from the high ones; x is paired to match with PKHBT/PKHTB.
 * The accumulator holds 16 dot exactly (|16 x w| <= 2^14) and an arithmetic shift by 4 removes the factor. */
#include "ma_dsp.h"
#include "ma_linear_tile8.h"

/* ---- int8 weights without the assembly tiles (parameters they do not take) -------------------------------- */

/* Row x0 against channels w0 and w0 + k. */
__attribute__((noinline)) static void dot8_1x2(const int8_t *x0, const int8_t *w0, int32_t k, int32_t *out) {
    int32_t a0 = 0, a1 = 0, i;
    for (i = 0; i + 4 <= k; i += 4) {
        const int32_t xw = ma_word(x0 + i), wa = ma_word(w0 + i), wb = ma_word(w0 + k + i);
        const int32_t xe = __sxtb16(xw), xo = ma_sxtb16_ror8(xw);
        a0 = __smlad(xe, __sxtb16(wa), a0);
        a1 = __smlad(xe, __sxtb16(wb), a1);
        a0 = __smlad(xo, ma_sxtb16_ror8(wa), a0);
        a1 = __smlad(xo, ma_sxtb16_ror8(wb), a1);
    }
    for (; i < k; ++i) {
        a0 += x0[i] * w0[i];
        a1 += x0[i] * w0[k + i];
    }
    out[0] = a0;
    out[1] = a1;
}

__attribute__((noinline)) static int32_t dot8_1x1(const int8_t *x0, const int8_t *w0, int32_t k) {
    int32_t a = 0, i;
    for (i = 0; i + 4 <= k; i += 4) {
        const int32_t xw = ma_word(x0 + i), ww = ma_word(w0 + i);
        a = __smlad(__sxtb16(xw), __sxtb16(ww), a);
        a = __smlad(ma_sxtb16_ror8(xw), ma_sxtb16_ror8(ww), a);
    }
    for (; i < k; ++i) a += x0[i] * w0[i];
    return a;
}

/* ---- int4 weights ---------------------------------------------------------------------------------------- */
typedef struct {
    int32_t p04, p26, p15, p37;
} pairs8;

/* x[0..7] as (x0, x4), (x2, x6), (x1, x5), (x3, x7). */
static inline pairs8 x_pairs(const int8_t *x) {
    const int32_t xa = ma_word(x), xb = ma_word(x + 4);
    const int32_t a02 = __sxtb16(xa), b46 = __sxtb16(xb), a13 = ma_sxtb16_ror8(xa), b57 = ma_sxtb16_ror8(xb);
    pairs8 p;
    p.p04 = ma_pack_bottoms(a02, b46);
    p.p26 = ma_pack_tops(a02, b46);
    p.p15 = ma_pack_bottoms(a13, b57);
    p.p37 = ma_pack_tops(a13, b57);
    return p;
}

/* Eight packed int4 weights as 16 times (k0, k4), (k2, k6), (k1, k5), (k3, k7). */
static inline pairs8 w_pairs(const uint8_t *w) {
    const uint32_t packed = (uint32_t)ma_word(w);
    const int32_t low = (int32_t)((packed << 4) & 0xF0F0F0F0u), high = (int32_t)(packed & 0xF0F0F0F0u);
    pairs8 p;
    p.p04 = __sxtb16(low);
    p.p26 = ma_sxtb16_ror8(low);
    p.p15 = __sxtb16(high);
    p.p37 = ma_sxtb16_ror8(high);
    return p;
}

static inline int32_t dot_pairs(const pairs8 *x, const pairs8 *w, int32_t acc) {
    acc = __smlad(x->p04, w->p04, acc);
    acc = __smlad(x->p26, w->p26, acc);
    acc = __smlad(x->p15, w->p15, acc);
    return __smlad(x->p37, w->p37, acc);
}

static inline int32_t nibble(uint32_t bits) {
    return (int32_t)((bits & 0xFu) ^ 0x8u) - 8;
}

/* x[i] w[i] for k8 <= i < k (k8: k rounded down to a multiple of 8). */
static inline int32_t tail4(const int8_t *x, const uint8_t *w, int32_t k8, int32_t k) {
    int32_t a = 0, i;
    for (i = k8; i < k; ++i) a += x[i] * nibble((uint32_t)w[i >> 1] >> ((i & 1) * 4));
    return a;
}

/* Rows x0 and x0 + k against packed channels w0 and w0 + row_bytes. */
__attribute__((noinline)) static void dot4_2x2(const int8_t *x0, const uint8_t *w0, int32_t k, int32_t *out) {
    const int32_t row_bytes = (k + 1) / 2, k8 = k & ~7;
    const int8_t *x1 = x0 + k;
    const uint8_t *w1 = w0 + row_bytes;
    int32_t a00 = 0, a01 = 0, a10 = 0, a11 = 0, i;
    for (i = 0; i < k8; i += 8) {
        const pairs8 wa = w_pairs(w0 + i / 2), wb = w_pairs(w1 + i / 2);
        pairs8 xp = x_pairs(x0 + i);
        a00 = dot_pairs(&xp, &wa, a00);
        a01 = dot_pairs(&xp, &wb, a01);
        xp = x_pairs(x1 + i);
        a10 = dot_pairs(&xp, &wa, a10);
        a11 = dot_pairs(&xp, &wb, a11);
    }
    out[0] = (a00 >> 4) + tail4(x0, w0, k8, k);
    out[1] = (a01 >> 4) + tail4(x0, w1, k8, k);
    out[2] = (a10 >> 4) + tail4(x1, w0, k8, k);
    out[3] = (a11 >> 4) + tail4(x1, w1, k8, k);
}

__attribute__((noinline)) static void dot4_1x2(const int8_t *x0, const uint8_t *w0, int32_t k, int32_t *out) {
    const int32_t row_bytes = (k + 1) / 2, k8 = k & ~7;
    const uint8_t *w1 = w0 + row_bytes;
    int32_t a0 = 0, a1 = 0, i;
    for (i = 0; i < k8; i += 8) {
        const pairs8 xp = x_pairs(x0 + i), wa = w_pairs(w0 + i / 2), wb = w_pairs(w1 + i / 2);
        a0 = dot_pairs(&xp, &wa, a0);
        a1 = dot_pairs(&xp, &wb, a1);
    }
    out[0] = (a0 >> 4) + tail4(x0, w0, k8, k);
    out[1] = (a1 >> 4) + tail4(x0, w1, k8, k);
}

__attribute__((noinline)) static int32_t dot4_1x1(const int8_t *x0, const uint8_t *w0, int32_t k) {
    const int32_t k8 = k & ~7;
    int32_t a = 0, i;
    for (i = 0; i < k8; i += 8) {
        const pairs8 xp = x_pairs(x0 + i), wa = w_pairs(w0 + i / 2);
        a = dot_pairs(&xp, &wa, a);
    }
    return (a >> 4) + tail4(x0, w0, k8, k);
}

/* ---- epilogues ---------------------------------------------------------------------------------------------- */

enum { PLAIN, TABLE, ADD };

/* What an epilogue needs besides the accumulator: the layer's parameters, prepared once per call. */
typedef struct {
    const int32_t *bias, *mult, *shift;
    int32_t zp;
    int8_t *y;
    const int8_t *table;                /* table + 128 */
    const int8_t *r;                    /* residual [rows][n] */
    const ma_linear_add_params *add;
    int64_t sum_constant;               /* C of ma_linear_tile8.h: rounding and both zero points */
    int fast;                           /* PLAIN/TABLE: every channel one SMLAL; ADD: right_shift >= 32 */
    int tiles;                          /* int8, fast, and bias + dot cannot leave int32: the assembly tiles */
} epilogue;

/* The output of row `row`, channel o from its dot product; `mode` and `fast` are constants at every call. */
static inline int8_t finish(int32_t dot, int32_t row, int32_t o, int32_t n, const epilogue *e,
                            const ma_requant_params *p, int mode) {
    const int32_t acc = __qadd(e->bias[o], dot);
    if (mode == ADD) {
        const ma_linear_add_params *a = e->add;
        const int32_t r = e->r[row * n + o];
        if (e->fast) {
            const int64_t t = e->sum_constant + (int64_t)acc * e->mult[o] +
                              (int64_t)(int32_t)((uint32_t)r << a->r_left_shift) * a->r_mult;
            return (int8_t)__ssat((int32_t)(t >> 32) >> (a->right_shift - 32), 8);
        }
        return ma_sat8(ma_requantize_sum2(acc, 0, e->mult[o], r - a->r_zp, a->r_left_shift, a->r_mult,
                                          a->right_shift) + a->y_zp);
    } else {
        const int8_t y = ma_dsp_sat8(e->fast ? ma_dsp_requant_fast(acc, p) : ma_dsp_requant_slow(acc, p->mult, p->shift),
                                     e->zp);
        return mode == TABLE ? e->table[y] : y;
    }
}

/* ---- both: tiles, then the epilogue --------------------------------------------------------------------------- */

/* The parameters every tile call of a layer shares. */
static void tile_layer_params(ma_tile_params *tp, int32_t k, int32_t n, const epilogue *e, int mode) {
    memset(tp, 0, sizeof *tp);
    tp->n = n;
    tp->k = k;
    tp->table = e->table;
    if (mode == ADD) {
        tp->r_mult = e->add->r_mult;
        tp->r_left_shift = e->add->r_left_shift;
        tp->sum_high_shift = e->add->right_shift - 32;
        tp->sum_constant = e->sum_constant;
    }
}

/* K' = K + zp 2^(32 + h) (ma_linear_tile8.h; h <= 22 by tile_requant_fits), or K itself for QLinearAdd. */
static int64_t tile_k(const ma_requant_params *p, int32_t zp, int mode) {
    return mode == ADD ? p->k_pos : p->k_pos + (int64_t)zp * ((int64_t)1 << (32 + p->high_shift));
}

/* Every row of one channel pair through the assembly tiles: the row pairs, then the odd row. */
static void tile_channel_pair(ma_tile_params *tp, const int8_t *x, int32_t rows, int32_t o, const int8_t *w0,
                              const epilogue *e, const ma_requant_params *p0, const ma_requant_params *p1,
                              int mode) {
    tp->k_pos = tile_k(p0, e->zp, mode);
    tp->bias = e->bias[o];
    tp->mult = p0->mult;
    tp->high_shift = p0->high_shift;
    tp->k_pos1 = tile_k(p1, e->zp, mode);
    tp->bias1 = e->bias[o + 1];
    tp->mult1 = p1->mult;
    tp->high_shift1 = p1->high_shift;
    tp->x = x;
    tp->w = w0;
    tp->y = e->y + o;
    tp->pairs = rows / 2;
    tp->r = mode == ADD ? e->r + o : NULL;
    if (rows >= 2) { /* leaves tp->x, tp->y and tp->r at the odd row */
        if (mode == ADD) {
            ma_tile8_rows_add(tp);
        } else if (mode == TABLE) {
            ma_tile8_rows_table(tp);
        } else {
            ma_tile8_rows(tp);
        }
    }
    if (rows & 1) {
        if (mode == ADD) {
            ma_tile8_row_add(tp);
        } else if (mode == TABLE) {
            ma_tile8_row_table(tp);
        } else {
            ma_tile8_row(tp);
        }
    }
}

/* The whole layer for int8 (bits 8) or packed int4 (bits 4) weights; `bits` and `mode` are constants. */
__attribute__((always_inline)) static inline void linear(const int8_t *x, int32_t rows, int32_t k, int32_t n,
                                                        const void *weights, const epilogue *e, int bits,
                                                        int mode) {
    const int32_t row_bytes = bits == 4 ? (k + 1) / 2 : k;
    const uint8_t *w = (const uint8_t *)weights;
    int32_t o = 0, r, acc[4];
    ma_tile_params tp;
    if (bits == 8 && e->tiles) tile_layer_params(&tp, k, n, e, mode);
    for (; o + 2 <= n; o += 2) {
        const uint8_t *w0 = w + o * row_bytes;
        const ma_requant_params p0 = ma_requant_prepare(e->mult[o], mode == ADD ? -1 : e->shift[o]);
        const ma_requant_params p1 = ma_requant_prepare(e->mult[o + 1], mode == ADD ? -1 : e->shift[o + 1]);
        if (bits == 8 && e->tiles) { /* the assembly tiles: dot products from the bias, the epilogue */
            tile_channel_pair(&tp, x, rows, o, (const int8_t *)w0, e, &p0, &p1, mode);
            continue;
        }
        for (r = 0; bits == 4 && r + 2 <= rows; r += 2) {
            int8_t *y0 = e->y + r * n + o;
            dot4_2x2(x + r * k, w0, k, acc);
            y0[0] = finish(acc[0], r, o, n, e, &p0, mode);
            y0[n] = finish(acc[2], r + 1, o, n, e, &p0, mode);
            y0[1] = finish(acc[1], r, o + 1, n, e, &p1, mode);
            y0[n + 1] = finish(acc[3], r + 1, o + 1, n, e, &p1, mode);
        }
        for (; r < rows; ++r) { /* int4: the last odd row; int8 without the tiles: every row */
            int8_t *y0 = e->y + r * n + o;
            if (bits == 4) {
                dot4_1x2(x + r * k, w0, k, acc);
            } else {
                dot8_1x2(x + r * k, (const int8_t *)w0, k, acc);
            }
            y0[0] = finish(acc[0], r, o, n, e, &p0, mode);
            y0[1] = finish(acc[1], r, o + 1, n, e, &p1, mode);
        }
    }
    if (o < n) {
        const uint8_t *w0 = w + o * row_bytes;
        const ma_requant_params p0 = ma_requant_prepare(e->mult[o], mode == ADD ? -1 : e->shift[o]);
        for (r = 0; r < rows; ++r) {
            const int32_t dot = bits == 4 ? dot4_1x1(x + r * k, w0, k) : dot8_1x1(x + r * k, (const int8_t *)w0, k);
            e->y[r * n + o] = finish(dot, r, o, n, e, &p0, mode);
        }
    }
}

/* Whether every channel takes the single-SMLAL requantization. */
static int all_fast(const int32_t *mult, const int32_t *shift, int32_t n) {
    int32_t o;
    for (o = 0; o < n; ++o) {
        if (!ma_requant_fast(mult[o], shift[o])) return 0;
    }
    return 1;
}

/* Whether bias + dot stays inside int32 for every channel (|x w| <= 2^14 per term): then the assembly tile may
 * start its accumulators at the bias without the saturation the reference applies. */
static int bias_fits(const int32_t *bias, int32_t n, int32_t k) {
    const int32_t room = INT32_MAX - k * (1 << 14); /* k < 2^17 */
    int32_t o;
    for (o = 0; o < n; ++o) {
        if (bias[o] > room || bias[o] < -room) return 0;
    }
    return 1;
}

/* Whether the tiles' requantization applies to every channel: M >= 0 (the rounding's sign is acc's) and
 * h = right - 1 at most 22 (the zero point folds into K). */
static int tile_requant_fits(const int32_t *mult, const int32_t *shift, int32_t n) {
    int32_t o;
    for (o = 0; o < n; ++o) {
        if (mult[o] < 0 || -shift[o] - 1 > 22) return 0;
    }
    return 1;
}

/* The fields every epilogue has; the rest zero. */
static epilogue epilogue_of(const int32_t *bias, const int32_t *mult, int8_t *y) {
    epilogue e;
    memset(&e, 0, sizeof e);
    e.bias = bias;
    e.mult = mult;
    e.y = y;
    return e;
}

static epilogue requant_epilogue(const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t n,
                                 int32_t k, int32_t y_zp, const int8_t *table, int8_t *y) {
    epilogue e = epilogue_of(bias, mult, y);
    e.shift = shift;
    e.zp = y_zp;
    e.table = table ? table + 128 : NULL;
    e.fast = all_fast(mult, shift, n);
    e.tiles = e.fast && bias_fits(bias, n, k) && tile_requant_fits(mult, shift, n);
    return e;
}

/* C = 2^(s-1) - r_zp 2^r_k r_M + y_zp 2^s: the rounding and both zero points in the 64-bit start of the sum. */
static epilogue add_epilogue(const int32_t *bias, const int32_t *mult, const ma_linear_add_params *p, int32_t n,
                             int32_t k, const int8_t *r, int8_t *y) {
    epilogue e = epilogue_of(bias, mult, y);
    e.add = p;
    e.r = r;
    e.fast = p->right_shift >= 32;
    e.sum_constant = ((int64_t)1 << (p->right_shift - 1)) -
                     (int64_t)p->r_zp * ((int64_t)1 << p->r_left_shift) * p->r_mult +
                     (e.fast ? (int64_t)p->y_zp * ((int64_t)1 << p->right_shift) : 0);
    e.tiles = e.fast && bias_fits(bias, n, k);
    return e;
}

void ma_linear_s8(const int8_t *x, int32_t rows, int32_t k, int32_t n, const int8_t *w,
                  const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t y_zp, int8_t *y) {
    const epilogue e = requant_epilogue(bias, mult, shift, n, k, y_zp, NULL, y);
    linear(x, rows, k, n, w, &e, 8, PLAIN);
}

void ma_linear_s4(const int8_t *x, int32_t rows, int32_t k, int32_t n, const uint8_t *w,
                  const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t y_zp, int8_t *y) {
    const epilogue e = requant_epilogue(bias, mult, shift, n, k, y_zp, NULL, y);
    linear(x, rows, k, n, w, &e, 4, PLAIN);
}

void ma_linear_table_s8(const int8_t *x, int32_t rows, int32_t k, int32_t n, const int8_t *w,
                        const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t y_zp,
                        const int8_t *table, int8_t *y) {
    const epilogue e = requant_epilogue(bias, mult, shift, n, k, y_zp, table, y);
    linear(x, rows, k, n, w, &e, 8, TABLE);
}

void ma_linear_table_s4(const int8_t *x, int32_t rows, int32_t k, int32_t n, const uint8_t *w,
                        const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t y_zp,
                        const int8_t *table, int8_t *y) {
    const epilogue e = requant_epilogue(bias, mult, shift, n, k, y_zp, table, y);
    linear(x, rows, k, n, w, &e, 4, TABLE);
}

void ma_linear_add_s8(const int8_t *x, int32_t rows, int32_t k, int32_t n, const int8_t *w, const int32_t *bias,
                      const int32_t *mult, const ma_linear_add_params *p, const int8_t *r, int8_t *y) {
    const epilogue e = add_epilogue(bias, mult, p, n, k, r, y);
    linear(x, rows, k, n, w, &e, 8, ADD);
}

void ma_linear_add_s4(const int8_t *x, int32_t rows, int32_t k, int32_t n, const uint8_t *w, const int32_t *bias,
                      const int32_t *mult, const ma_linear_add_params *p, const int8_t *r, int8_t *y) {
    const epilogue e = add_epilogue(bias, mult, p, n, k, r, y);
    linear(x, rows, k, n, w, &e, 4, ADD);
}
