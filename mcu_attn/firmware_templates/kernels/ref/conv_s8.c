/* QConv: one dot product per output element over its receptive field, then QLinear's requantization.
 * Reference: mcu_attn/ir/ops/conv.py qconv. Taps run over (input channel of the group, ky, kx) in the order of
 * the weight row; a tap outside the image reads x_zp (the real value 0). The dot product stays far inside int32
 * (|x w| <= 2^14 per term, rows below 2^17 taps); the bias is added in int64. */
#include "ma_kernels.h"

/* A nibble 0..15 as a signed int4 value -8..7. */
static int32_t ma_conv_nibble(uint32_t bits)
{
    return (int32_t)((bits & 0xFu) ^ 0x8u) - 8;
}

/* Tap i of a weight row: an int8 value, or a packed int4 one (int4 != 0). */
static int32_t ma_conv_tap(const uint8_t *row, int32_t i, int32_t int4)
{
    return int4 ? ma_conv_nibble((uint32_t)row[i >> 1] >> ((i & 1) * 4)) : (int32_t)(int8_t)row[i];
}

static void ma_conv_any(const int8_t *x, const ma_conv_geometry *g, const uint8_t *w, int32_t row_bytes,
                        int32_t int4, const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t x_zp,
                        int32_t y_zp, int8_t *y)
{
    const int32_t group_in = g->in_c / g->groups, group_out = g->out_c / g->groups;
    int32_t o, oy, ox, c, ky, kx;
    for (o = 0; o < g->out_c; ++o) {
        const uint8_t *row = w + (int64_t)o * row_bytes;
        const int32_t first = (o / group_out) * group_in;
        for (oy = 0; oy < g->out_h; ++oy) {
            for (ox = 0; ox < g->out_w; ++ox) {
                int32_t dot = 0, i = 0;
                for (c = 0; c < group_in; ++c) {
                    const int8_t *plane = x + (int64_t)(first + c) * g->in_h * g->in_w;
                    for (ky = 0; ky < g->k_h; ++ky) {
                        const int32_t iy = oy * g->stride_h - g->pad_top + ky * g->dil_h;
                        for (kx = 0; kx < g->k_w; ++kx, ++i) {
                            const int32_t ix = ox * g->stride_w - g->pad_left + kx * g->dil_w;
                            const int32_t value = (iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w)
                                                      ? plane[(int64_t)iy * g->in_w + ix] : x_zp;
                            dot += value * ma_conv_tap(row, i, int4);
                        }
                    }
                }
                y[((int64_t)o * g->out_h + oy) * g->out_w + ox] =
                    ma_sat8((int64_t)ma_requantize((int64_t)bias[o] + dot, mult[o], shift[o]) + y_zp);
            }
        }
    }
}

void ma_conv_s8(const int8_t *x, const ma_conv_geometry *g, const int8_t *w, const int32_t *bias,
                const int32_t *mult, const int32_t *shift, int32_t x_zp, int32_t y_zp, int8_t *y)
{
    ma_conv_any(x, g, (const uint8_t *)w, g->in_c / g->groups * g->k_h * g->k_w, 0, bias, mult, shift, x_zp,
                y_zp, y);
}

void ma_conv_s4(const int8_t *x, const ma_conv_geometry *g, const uint8_t *w, const int32_t *bias,
                const int32_t *mult, const int32_t *shift, int32_t x_zp, int32_t y_zp, int8_t *y)
{
    ma_conv_any(x, g, w, (g->in_c / g->groups * g->k_h * g->k_w + 1) / 2, 1, bias, mult, shift, x_zp, y_zp, y);
}
