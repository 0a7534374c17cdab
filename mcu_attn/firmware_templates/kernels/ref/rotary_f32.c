/* Rotary position embeddings, "rotate half" form, on [seq][heads*head_dim] rows: per head,
 * y[d] = x[d] cos[s][d] + x[partner(d)] sin[s][d] with partner(d) = d +- head_dim/2 and sin already carrying
 * rotate_half's signs (negative on the first half). Reference: mcu_attn/ir/ops/rotary.py rotary (the integer form is rotary_s8.c).
 * y must not alias x: each output reads two inputs of its head. */
#include "ma_kernels.h"

#include <stddef.h>

void ma_rotary_f32(const float *x, int32_t seq, int32_t heads, int32_t head_dim, const float *cos, const float *sin,
                   float *y)
{
    const int32_t half = head_dim / 2, width = heads * head_dim;
    int32_t s, h, d;
    for (s = 0; s < seq; ++s) {
        const float *c = cos + (size_t)s * (size_t)head_dim, *n = sin + (size_t)s * (size_t)head_dim;
        for (h = 0; h < heads; ++h) {
            const float *xh = x + (size_t)s * (size_t)width + (size_t)h * (size_t)head_dim;
            float *yh = y + (size_t)s * (size_t)width + (size_t)h * (size_t)head_dim;
            for (d = 0; d < head_dim; ++d) {
                yh[d] = xh[d] * c[d] + xh[d < half ? d + half : d - half] * n[d];
            }
        }
    }
}
