/* QLinear with the DSP extension: the same results as ref/linear_s8.c (docs/integer-kernels.md), faster.
 *
 * Register tiling: two input rows x two output channels at a time. One word load brings four int8 values;
 * SXTB16 sign-extends bytes 0 and 2 into two halfwords and SXTB16 ROR #8 bytes 1 and 3, so SMLAD on the extended
 * words of x and w adds x0 w0 + x2 w2 and x1 w1 + x3 w3: 16 multiply-accumulates from four loads, eight extends
 * and eight SMLADs, with no reordering of x or w (both are extended the same way). The dot-product loops are
 * functions of their own so that their pointers, accumulators and temporaries fill the core's registers without
 * spilling. The channel pair is the outer loop, so a pair's weights stay in the flash cache while the row pairs
 * stream past them. The dot product stays in int32 (|x w| <= 2^14 per term, k < 2^17); QADD adds the bias with
 * the int32 saturation ma_requantize applies, and one SMLAL requantizes (ma_dsp.h) when every channel allows it.
 *
 * int4 weights: eight of them are one word, byte b = k(2b) | k(2b+1) << 4. Masking keeps one nibble at the top of
 * each byte, where it reads as a signed byte of value 16 k, so SXTB16 gives (16 k0, 16 k4) and (16 k2, 16 k6) from
 * the low nibbles and (16 k1, 16 k5), (16 k3, 16 k7) from the high ones; x is paired to match with PKHBT/PKHTB.
 * The accumulator holds 16 dot exactly (|16 x w| <= 2^14) and an arithmetic shift by 4 removes the factor. */
#include "ma_dsp.h"

/* ---- int8 weights ---------------------------------------------------------------------------------------- */

/* A 2 x 2 tile: rows x0 and x0 + k against channels w0 and w0 + k, requantized and stored. In assembly so that
 * the loop keeps its two pointers, k, the end, four accumulators and six temporaries in the fourteen allocatable
 * registers (compiled C spills one of them every step) and takes eight k per iteration. A step of four k: w1,
 * w0 and x1 loaded back to back (the loads pipeline), w extended to even/odd halfword pairs once, then each x
 * row extended and multiplied into its two accumulators. k & 4 takes one more step, k & 3 the scalar tail.
 * The accumulators start at the channel's bias (the caller checked that bias + dot cannot leave int32, so this is
 * the reference's saturating sum), and the epilogue is ma_dsp_requant_fast: t = K_pos + acc M - s 2^31 with
 * s = [acc and M differ in sign], y = sat8((high word of t >> (right - 1)) + zp). One call runs every row pair
 * of a channel pair (tp->pairs of them from tp->x, tp->y), so the per-tile work is a few loads and stores.
 * AAPCS: r0 = tp. */
typedef struct {
    int64_t k_pos;           /*  0: K for channel 0 */
    int32_t bias, mult, high_shift, pad; /* 8, 12, 16 */
    int64_t k_pos1;          /* 24: channel 1 */
    int32_t bias1, mult1, high_shift1, pad1; /* 32, 36, 40 */
    int32_t zp, n;           /* 48, 52: output zero point, y row stride */
    const int8_t *x;         /* 56: the next row pair */
    const int8_t *w;         /* 60: channel 0's weights (channel 1's follow, k bytes on) */
    int8_t *y;               /* 64: row 0, channel 0 of the next row pair */
    int32_t k, pairs;        /* 68, 72 */
} tile_params;

void ma_tile8_rows(tile_params *tp);
__asm__(
    "  .section .text.ma_tile8_rows,\"ax\",%progbits\n"
    "  .syntax unified\n"
    "  .thumb\n"
    "  .p2align 2\n"
    "  .thumb_func\n"
    "  .type ma_tile8_rows, %function\n"
    "ma_tile8_rows:\n"
    "  push {r4-r11, lr}\n"
    "  push {r0}\n"                 /* tp */
    "0:\n"
    "  ldr r3, [sp]\n"
    "  ldr r0, [r3, #56]\n"         /* x, row 0 */
    "  ldr r1, [r3, #60]\n"         /* w, channel 0 */
    "  ldr r2, [r3, #68]\n"         /* k */
    "  ldr r4, [r3, #8]\n"          /* a00 = a10 = bias0, a01 = a11 = bias1 */
    "  ldr r5, [r3, #32]\n"
    "  mov r6, r4\n"
    "  mov r7, r5\n"
    "  bic r3, r2, #7\n"
    "  add r3, r0, r3\n"            /* end of the 8-k steps in x0 */
    "  cmp r0, r3\n"
    "  beq 2f\n"
    "1:\n"
#define MA_DOT8_STEP                                                                                               \
    "  ldr r8, [r1, r2]\n"          /* w1 */                                                                   \
    "  ldr r9, [r1], #4\n"          /* w0 */                                                                   \
    "  ldr r12, [r0, r2]\n"         /* x1 */                                                                   \
    "  sxtb16 r10, r8\n"            /* w1 k0 k2 */                                                             \
    "  sxtb16 r8, r8, ror #8\n"     /* w1 k1 k3 */                                                             \
    "  sxtb16 r11, r9\n"            /* w0 k0 k2 */                                                             \
    "  sxtb16 r9, r9, ror #8\n"     /* w0 k1 k3 */                                                             \
    "  sxtb16 lr, r12\n"                                                                                       \
    "  smlad r6, lr, r11, r6\n"                                                                                \
    "  smlad r7, lr, r10, r7\n"                                                                                \
    "  sxtb16 lr, r12, ror #8\n"                                                                               \
    "  smlad r6, lr, r9, r6\n"                                                                                 \
    "  smlad r7, lr, r8, r7\n"                                                                                 \
    "  ldr r12, [r0], #4\n"         /* x0 */                                                                   \
    "  sxtb16 lr, r12\n"                                                                                       \
    "  smlad r4, lr, r11, r4\n"                                                                                \
    "  smlad r5, lr, r10, r5\n"                                                                                \
    "  sxtb16 lr, r12, ror #8\n"                                                                               \
    "  smlad r4, lr, r9, r4\n"                                                                                 \
    "  smlad r5, lr, r8, r5\n"
    MA_DOT8_STEP
    MA_DOT8_STEP
    "  cmp r0, r3\n"
    "  bne 1b\n"
    "2:\n"
    "  tst r2, #4\n"
    "  beq 3f\n"
    MA_DOT8_STEP
    "3:\n"
    "  ands r3, r2, #3\n"
    "  beq 5f\n"
    "4:\n"
    "  ldrsb r8, [r0, r2]\n"        /* x1 */
    "  ldrsb r9, [r1, r2]\n"        /* w1 */
    "  ldrsb r10, [r0], #1\n"       /* x0 */
    "  ldrsb r11, [r1], #1\n"       /* w0 */
    "  mla r4, r10, r11, r4\n"
    "  mla r5, r10, r9, r5\n"
    "  mla r6, r8, r11, r6\n"
    "  mla r7, r8, r9, r7\n"
    "  subs r3, r3, #1\n"
    "  bne 4b\n"
    "5:\n"
    "  ldr r3, [sp]\n"              /* tp */
    "  ldr r2, [r3, #64]\n"         /* y, row 0 */
    "  ldr r1, [r3, #52]\n"
    "  add r1, r1, r2\n"            /* y, row 1 */
    "  ldr r0, [r3, #48]\n"         /* zp */
#define MA_OUT8(ACC, KOFF, STORE)                                                                                \
    "  eor r10, " ACC ", r9\n"                                                                                 \
    "  lsr r10, r10, #31\n"                                                                                    \
    "  ldrd r11, lr, [r3, #" KOFF "]\n"                                                                       \
    "  smlal r11, lr, " ACC ", r9\n"                                                                           \
    "  subs r11, r11, r10, lsl #31\n"                                                                          \
    "  sbc lr, lr, #0\n"                                                                                       \
    "  asr lr, lr, r12\n"                                                                                      \
    "  qadd lr, lr, r0\n"                                                                                      \
    "  ssat lr, #8, lr\n"                                                                                      \
    "  " STORE "\n"
    "  ldr r9, [r3, #12]\n"
    "  ldr r12, [r3, #16]\n"
    MA_OUT8("r4", "0", "strb lr, [r2]")
    MA_OUT8("r6", "0", "strb lr, [r1]")
    "  ldr r9, [r3, #36]\n"
    "  ldr r12, [r3, #40]\n"
    MA_OUT8("r5", "24", "strb lr, [r2, #1]")
    MA_OUT8("r7", "24", "strb lr, [r1, #1]")
    "  ldr r9, [r3, #68]\n"         /* next row pair: x += 2 k, y += 2 n */
    "  ldr r8, [r3, #56]\n"
    "  add r8, r8, r9, lsl #1\n"
    "  str r8, [r3, #56]\n"
    "  ldr r9, [r3, #52]\n"
    "  add r8, r2, r9, lsl #1\n"
    "  str r8, [r3, #64]\n"
    "  ldr r8, [r3, #72]\n"
    "  subs r8, r8, #1\n"
    "  str r8, [r3, #72]\n"
    "  bne 0b\n"
    "  add sp, sp, #4\n"
    "  pop {r4-r11, pc}\n"
    "  .size ma_tile8_rows, . - ma_tile8_rows\n"
    "  .text\n");
#undef MA_DOT8_STEP
#undef MA_OUT8

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

/* ---- both: tiles, then the requantizing epilogue ----------------------------------------------------------- */

/* y = sat8(requant(bias + dot) + zp); `fast` is a constant at every call, so each body is specialised. */
static inline int8_t finish(int32_t dot, int32_t bias, const ma_requant_params *p, int32_t zp, int fast) {
    const int32_t acc = __qadd(bias, dot);
    return ma_dsp_sat8(fast ? ma_dsp_requant_fast(acc, p) : ma_dsp_requant_slow(acc, p->mult, p->shift), zp);
}

/* The whole layer for int8 (bits 8) or packed int4 (bits 4) weights; `bits` and `fast` are constants. */
__attribute__((always_inline)) static inline void linear(const int8_t *x, int32_t rows, int32_t k, int32_t n,
                                                        const void *weights, const int32_t *bias,
                                                        const int32_t *mult, const int32_t *shift, int32_t y_zp,
                                                        int8_t *y, int bits, int fast) {
    const int32_t row_bytes = bits == 4 ? (k + 1) / 2 : k;
    const uint8_t *w = (const uint8_t *)weights;
    int32_t o = 0, r, acc[4];
    for (; o + 2 <= n; o += 2) {
        const uint8_t *w0 = w + o * row_bytes;
        const ma_requant_params p0 = ma_requant_prepare(mult[o], shift[o]);
        const ma_requant_params p1 = ma_requant_prepare(mult[o + 1], shift[o + 1]);
        const int32_t b0 = bias[o], b1 = bias[o + 1];
        int8_t *y0 = y + o;
        if (bits == 8 && fast) { /* the assembly tile: dot products from the bias, requantized */
            tile_params tp;
            tp.k_pos = p0.k_pos;
            tp.bias = b0;
            tp.mult = p0.mult;
            tp.high_shift = p0.high_shift;
            tp.k_pos1 = p1.k_pos;
            tp.bias1 = b1;
            tp.mult1 = p1.mult;
            tp.high_shift1 = p1.high_shift;
            tp.zp = y_zp;
            tp.n = n;
            tp.x = x;
            tp.w = (const int8_t *)w0;
            tp.y = y0;
            tp.k = k;
            tp.pairs = rows / 2;
            if (tp.pairs > 0) ma_tile8_rows(&tp);
            r = rows & ~1;
            y0 += r * n;
        } else {
            for (r = 0; bits == 4 && r + 2 <= rows; r += 2, y0 += 2 * n) {
                dot4_2x2(x + r * k, w0, k, acc);
                y0[0] = finish(acc[0], b0, &p0, y_zp, fast);
                y0[n] = finish(acc[2], b0, &p0, y_zp, fast);
                y0[1] = finish(acc[1], b1, &p1, y_zp, fast);
                y0[n + 1] = finish(acc[3], b1, &p1, y_zp, fast);
            }
        }
        for (; r < rows; ++r, y0 += n) { /* the last odd row, or every row of the int8 slow path */
            if (bits == 4) {
                dot4_1x2(x + r * k, w0, k, acc);
            } else {
                dot8_1x2(x + r * k, (const int8_t *)w0, k, acc);
            }
            y0[0] = finish(acc[0], b0, &p0, y_zp, fast);
            y0[1] = finish(acc[1], b1, &p1, y_zp, fast);
        }
    }
    if (o < n) {
        const uint8_t *w0 = w + o * row_bytes;
        const ma_requant_params p0 = ma_requant_prepare(mult[o], shift[o]);
        for (r = 0; r < rows; ++r) {
            const int32_t dot = bits == 4 ? dot4_1x1(x + r * k, w0, k) : dot8_1x1(x + r * k, (const int8_t *)w0, k);
            y[r * n + o] = finish(dot, bias[o], &p0, y_zp, fast);
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
 * start its accumulators at the bias without the saturation ma_requantize would apply. */
static int bias_fits(const int32_t *bias, int32_t n, int32_t k) {
    const int32_t room = INT32_MAX - k * (1 << 14); /* k < 2^17 */
    int32_t o;
    for (o = 0; o < n; ++o) {
        if (bias[o] > room || bias[o] < -room) return 0;
    }
    return 1;
}

void ma_linear_s8(const int8_t *x, int32_t rows, int32_t k, int32_t n, const int8_t *w,
                  const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t y_zp, int8_t *y) {
    if (all_fast(mult, shift, n) && bias_fits(bias, n, k)) {
        linear(x, rows, k, n, w, bias, mult, shift, y_zp, y, 8, 1);
    } else {
        linear(x, rows, k, n, w, bias, mult, shift, y_zp, y, 8, 0);
    }
}

void ma_linear_s4(const int8_t *x, int32_t rows, int32_t k, int32_t n, const uint8_t *w,
                  const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t y_zp, int8_t *y) {
    if (all_fast(mult, shift, n)) {
        linear(x, rows, k, n, w, bias, mult, shift, y_zp, y, 4, 1);
    } else {
        linear(x, rows, k, n, w, bias, mult, shift, y_zp, y, 4, 0);
    }
}
