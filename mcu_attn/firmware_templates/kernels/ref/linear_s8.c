/* QLinear: y = sat8(requant(bias + x . w, mult[n], shift[n]) + y_zp), weights [n][k] (one output channel per
 * row, so each output is one contiguous dot product). Reference: mcu_attn/ir/ops/linear.py qlinear. */
#include "ma_kernels_s8.h"

/* The dot product alone stays far inside int32 (|x w| <= 2^14 per term); the bias is added in int64 so that no
 * intermediate sum can overflow whatever the bias. */
static int8_t finish(int32_t dot, int32_t bias, int32_t mult, int32_t shift, int32_t y_zp) {
    return ma_sat8((int64_t)ma_requantize((int64_t)bias + dot, mult, shift) + y_zp);
}

void ma_linear_s8(const int8_t *x, int32_t rows, int32_t k, int32_t n, const int8_t *w,
                  const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t y_zp, int8_t *y) {
    int32_t r, o, i;
    for (r = 0; r < rows; ++r) {
        const int8_t *xr = x + (int64_t)r * k;
        for (o = 0; o < n; ++o) {
            const int8_t *wo = w + (int64_t)o * k;
            int32_t dot = 0;
            for (i = 0; i < k; ++i) dot += (int32_t)xr[i] * wo[i];
            y[(int64_t)r * n + o] = finish(dot, bias[o], mult[o], shift[o], y_zp);
        }
    }
}

/* A nibble 0..15 as a signed int4 value -8..7. */
static int32_t nibble(uint32_t bits) {
    return (int32_t)((bits & 0xFu) ^ 0x8u) - 8;
}

void ma_linear_s4(const int8_t *x, int32_t rows, int32_t k, int32_t n, const uint8_t *w,
                  const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t y_zp, int8_t *y) {
    const int32_t row_bytes = (k + 1) / 2;
    int32_t r, o, i;
    for (r = 0; r < rows; ++r) {
        const int8_t *xr = x + (int64_t)r * k;
        for (o = 0; o < n; ++o) {
            const uint8_t *wo = w + (int64_t)o * row_bytes;
            int32_t dot = 0;
            for (i = 0; i + 1 < k; i += 2) {
                const uint32_t pair = wo[i / 2];
                dot += (int32_t)xr[i] * nibble(pair) + (int32_t)xr[i + 1] * nibble(pair >> 4);
            }
            if (i < k) dot += (int32_t)xr[i] * nibble(wo[i / 2]); /* odd k: the high nibble is padding */
            y[(int64_t)r * n + o] = finish(dot, bias[o], mult[o], shift[o], y_zp);
        }
    }
}
