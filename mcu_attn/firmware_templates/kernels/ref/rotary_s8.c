/* Rotary position embeddings, "rotate half" form, on [seq][heads*head_dim] rows: per head,
 * y[d] = x[d] cos[s][d] + x[partner(d)] sin[s][d] with partner(d) = d +- head_dim/2 and sin already carrying
 * rotate_half's signs (negative on the first half). Reference: mcu_attn/ir/ops/rotary.py qrotary (the float form is rotary_f32.c).
 * y must not alias x: each output reads two inputs of its head. */
#include "ma_kernels.h"

#include <stddef.h>

/* QRotary: acc = (x[d] - x_zp) cos_q + (x[partner] - x_zp) sin_q in int32 (Q14 tables, |acc| < 2^23),
 * y = sat8(requant(acc, mult, shift) + y_zp). */
void ma_rotary_s8(const int8_t *x, int32_t seq, int32_t heads, int32_t head_dim, const int16_t *cos,
                  const int16_t *sin, int32_t x_zp, int32_t mult, int32_t shift, int32_t y_zp, int8_t *y)
{
    const int32_t half = head_dim / 2, width = heads * head_dim;
    int32_t s, h, d;
    for (s = 0; s < seq; ++s) {
        const int16_t *c = cos + (size_t)s * (size_t)head_dim, *n = sin + (size_t)s * (size_t)head_dim;
        for (h = 0; h < heads; ++h) {
            const int8_t *xh = x + (size_t)s * (size_t)width + (size_t)h * (size_t)head_dim;
            int8_t *yh = y + (size_t)s * (size_t)width + (size_t)h * (size_t)head_dim;
            for (d = 0; d < head_dim; ++d) {
                const int32_t acc = ((int32_t)xh[d] - x_zp) * c[d]
                                    + ((int32_t)xh[d < half ? d + half : d - half] - x_zp) * n[d];
                yh[d] = ma_sat8((int64_t)ma_requantize(acc, mult, shift) + y_zp);
            }
        }
    }
}
