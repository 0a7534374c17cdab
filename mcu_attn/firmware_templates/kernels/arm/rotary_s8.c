/* QRotary with the DSP extension: the same results as ref/rotary_s8.c, faster. Each output is one SMUAD of the
 * halfword pairs (x[d] - x_zp, x[partner] - x_zp) and (cos, sin') (|acc| < 2^23), and the requantization,
 * prepared once for the tensor, one SMLAL when the shift is negative (ma_dsp.h); SSAT clamps. y must not alias
 * x: each output reads two inputs of its head. */
#include "ma_dsp.h"

#include <stddef.h>

void ma_rotary_s8(const int8_t *x, int32_t seq, int32_t heads, int32_t head_dim, const int16_t *cos,
                  const int16_t *sin, int32_t x_zp, int32_t mult, int32_t shift, int32_t y_zp, int8_t *y)
{
    const ma_requant_params p = ma_requant_prepare(mult, shift);
    const int32_t half = head_dim / 2, width = heads * head_dim;
    int32_t s, h, d;
    for (s = 0; s < seq; ++s) {
        const int16_t *c = cos + (size_t)s * (size_t)head_dim, *n = sin + (size_t)s * (size_t)head_dim;
        for (h = 0; h < heads; ++h) {
            const int8_t *xh = x + (size_t)s * (size_t)width + (size_t)h * (size_t)head_dim;
            int8_t *yh = y + (size_t)s * (size_t)width + (size_t)h * (size_t)head_dim;
            for (d = 0; d < head_dim; ++d) {
                const int32_t pair = ma_pack_bottoms((int32_t)xh[d] - x_zp,
                                                     (int32_t)xh[d < half ? d + half : d - half] - x_zp);
                const int32_t acc = __smuad(pair, ma_pack_bottoms(c[d], n[d]));
                yh[d] = ma_dsp_sat8(ma_dsp_requant(acc, &p), y_zp);
            }
        }
    }
}
