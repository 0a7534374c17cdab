/* Float Conv: one float32 dot product per output element over its receptive field (taps in weight-row order),
 * plus the bias. Reference: mcu_attn/ir/ops/conv.py conv. */
#include "ma_kernels.h"

#include <stddef.h>

void ma_conv_f32(const float *x, const ma_conv_geometry *g, const float *w, const float *bias, float *y)
{
    const int32_t group_in = g->in_c / g->groups, group_out = g->out_c / g->groups;
    const int32_t row = group_in * g->k_h * g->k_w;
    int32_t o, oy, ox, c, ky, kx;
    for (o = 0; o < g->out_c; ++o) {
        const float *wo = w + (size_t)o * (size_t)row;
        const int32_t first = (o / group_out) * group_in;
        for (oy = 0; oy < g->out_h; ++oy) {
            for (ox = 0; ox < g->out_w; ++ox) {
                float acc = 0.0f;
                int32_t i = 0;
                for (c = 0; c < group_in; ++c) {
                    const float *plane = x + (size_t)(first + c) * (size_t)(g->in_h * g->in_w);
                    for (ky = 0; ky < g->k_h; ++ky) {
                        const int32_t iy = oy * g->stride_h - g->pad_top + ky * g->dil_h;
                        for (kx = 0; kx < g->k_w; ++kx, ++i) {
                            const int32_t ix = ox * g->stride_w - g->pad_left + kx * g->dil_w;
                            if (iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w) {
                                acc += plane[(size_t)iy * (size_t)g->in_w + (size_t)ix] * wo[i];
                            }
                        }
                    }
                }
                y[((size_t)o * (size_t)g->out_h + (size_t)oy) * (size_t)g->out_w + (size_t)ox] =
                    bias != NULL ? acc + bias[o] : acc;
            }
        }
    }
}
