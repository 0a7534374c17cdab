/* QLinear, QLinearTable and QLinearAdd: acc = bias[n] + x . w (weights [n][k], one output channel per row, so each
 * output is one contiguous dot product), then the epilogue: QLinear's y = sat8(requant(acc, mult[n], shift[n]) +
 * y_zp), QLinearTable's table[y + 128], or QLinearAdd's one requantization of acc plus the residual.
 * References: mcu_attn/ir/ops/linear.py qlinear, linear_epilogue.py qlinear_table and qlinear_add. */
#include <stddef.h>

#include "ma_kernels_s8.h"

/* A nibble 0..15 as a signed int4 value -8..7. */
static int32_t nibble(uint32_t bits) {
    return (int32_t)((bits & 0xFu) ^ 0x8u) - 8;
}

/* bias + x . w of one row and one channel, saturated to int32 (the references raise where it leaves int32; the
 * dot product alone stays far inside, |x w| <= 2^14 per term). bits 4: w holds the channel's packed nibbles. */
static int32_t accumulate(const int8_t *x, const void *weights, int32_t k, int32_t bits, int32_t bias) {
    int64_t acc = bias;
    int32_t dot = 0, i;
    if (bits == 4) {
        const uint8_t *w = (const uint8_t *)weights;
        for (i = 0; i + 1 < k; i += 2) {
            const uint32_t pair = w[i / 2];
            dot += (int32_t)x[i] * nibble(pair) + (int32_t)x[i + 1] * nibble(pair >> 4);
        }
        if (i < k) dot += (int32_t)x[i] * nibble(w[i / 2]); /* odd k: the high nibble is padding */
    } else {
        const int8_t *w = (const int8_t *)weights;
        for (i = 0; i < k; ++i) dot += (int32_t)x[i] * w[i];
    }
    acc += dot;
    return (int32_t)(acc > INT32_MAX ? INT32_MAX : (acc < INT32_MIN ? INT32_MIN : acc));
}

/* Channel o's weights: row o of [n][k] int8, or of [n][(k + 1) / 2] packed bytes. */
static const void *channel(const void *w, int32_t o, int32_t k, int32_t bits) {
    return bits == 4 ? (const void *)((const uint8_t *)w + (int64_t)o * ((k + 1) / 2))
                     : (const void *)((const int8_t *)w + (int64_t)o * k);
}

/* QLinear, then table[y + 128] when a table is given. */
static void linear(const int8_t *x, int32_t rows, int32_t k, int32_t n, const void *w, int32_t bits,
                   const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t y_zp,
                   const int8_t *table, int8_t *y) {
    int32_t r, o;
    for (r = 0; r < rows; ++r) {
        for (o = 0; o < n; ++o) {
            const int32_t acc = accumulate(x + (int64_t)r * k, channel(w, o, k, bits), k, bits, bias[o]);
            const int8_t out = ma_sat8((int64_t)ma_requantize(acc, mult[o], shift[o]) + y_zp);
            y[(int64_t)r * n + o] = table ? table[out + 128] : out;
        }
    }
}

/* QLinearAdd: each output reads its residual element before writing, so y may be r. */
static void linear_add(const int8_t *x, int32_t rows, int32_t k, int32_t n, const void *w, int32_t bits,
                       const int32_t *bias, const int32_t *mult, const ma_linear_add_params *p, const int8_t *r,
                       int8_t *y) {
    int32_t row, o;
    for (row = 0; row < rows; ++row) {
        for (o = 0; o < n; ++o) {
            const int64_t at = (int64_t)row * n + o;
            const int32_t acc = accumulate(x + (int64_t)row * k, channel(w, o, k, bits), k, bits, bias[o]);
            y[at] = ma_sat8(ma_requantize_sum2(acc, 0, mult[o], r[at] - p->r_zp, p->r_left_shift, p->r_mult,
                                               p->right_shift) + p->y_zp);
        }
    }
}

void ma_linear_s8(const int8_t *x, int32_t rows, int32_t k, int32_t n, const int8_t *w,
                  const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t y_zp, int8_t *y) {
    linear(x, rows, k, n, w, 8, bias, mult, shift, y_zp, NULL, y);
}

void ma_linear_s4(const int8_t *x, int32_t rows, int32_t k, int32_t n, const uint8_t *w,
                  const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t y_zp, int8_t *y) {
    linear(x, rows, k, n, w, 4, bias, mult, shift, y_zp, NULL, y);
}

void ma_linear_table_s8(const int8_t *x, int32_t rows, int32_t k, int32_t n, const int8_t *w,
                        const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t y_zp,
                        const int8_t *table, int8_t *y) {
    linear(x, rows, k, n, w, 8, bias, mult, shift, y_zp, table, y);
}

void ma_linear_table_s4(const int8_t *x, int32_t rows, int32_t k, int32_t n, const uint8_t *w,
                        const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t y_zp,
                        const int8_t *table, int8_t *y) {
    linear(x, rows, k, n, w, 4, bias, mult, shift, y_zp, table, y);
}

void ma_linear_add_s8(const int8_t *x, int32_t rows, int32_t k, int32_t n, const int8_t *w, const int32_t *bias,
                      const int32_t *mult, const ma_linear_add_params *p, const int8_t *r, int8_t *y) {
    linear_add(x, rows, k, n, w, 8, bias, mult, p, r, y);
}

void ma_linear_add_s4(const int8_t *x, int32_t rows, int32_t k, int32_t n, const uint8_t *w, const int32_t *bias,
                      const int32_t *mult, const ma_linear_add_params *p, const int8_t *r, int8_t *y) {
    linear_add(x, rows, k, n, w, 4, bias, mult, p, r, y);
}
