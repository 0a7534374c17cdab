/* QIm2Col: every output position's receptive field as one row of taps, in the order of a convolution's weight row
 * (input channel, ky, kx); a tap outside the image reads x_zp. Reference: mcu_attn/ir/ops/im2col.py qim2col.
 * One group (the rows feed QLinear). */
#include "ma_kernels.h"

void ma_im2col_s8(const int8_t *x, const ma_conv_geometry *g, int32_t x_zp, int8_t *rows)
{
    const int8_t pad = (int8_t)x_zp;
    int32_t oy, ox, c, ky, kx;
    for (oy = 0; oy < g->out_h; ++oy) {
        for (ox = 0; ox < g->out_w; ++ox) {
            for (c = 0; c < g->in_c; ++c) {
                const int8_t *plane = x + (int64_t)c * g->in_h * g->in_w;
                for (ky = 0; ky < g->k_h; ++ky) {
                    const int32_t iy = oy * g->stride_h - g->pad_top + ky * g->dil_h;
                    for (kx = 0; kx < g->k_w; ++kx) {
                        const int32_t ix = ox * g->stride_w - g->pad_left + kx * g->dil_w;
                        *rows++ = (iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w)
                                      ? plane[(int64_t)iy * g->in_w + ix] : pad;
                    }
                }
            }
        }
    }
}
