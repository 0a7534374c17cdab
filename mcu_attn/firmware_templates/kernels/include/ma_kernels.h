/* mcu-attn kernels: the one header generated models include.
 *
 * Integer kernels (ma_kernels_s8.h) and the float baseline (ma_kernels_f32.h) follow docs/integer-kernels.md.
 * The layout kernels below move elements of any size; generated code passes strides it computed offline.
 */
#ifndef MA_KERNELS_H
#define MA_KERNELS_H

#include <stdint.h>

#include "ma_kernels_s8.h"
#include "ma_kernels_f32.h"
#include "ma_kernels_dynamic.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Alignment of arena and weight arrays. */
#if defined(__GNUC__) || defined(__clang__)
#define MA_ALIGN(n) __attribute__((aligned(n)))
#else
#define MA_ALIGN(n)
#endif

/* A 1-D or 2-D convolution over one [in_c][in_h][in_w] sample (1-D: in_h = out_h = k_h = 1), producing
 * [out_c][out_h][out_w]; output channel o reads the in_c/groups input channels of group o / (out_c/groups).
 * Weights are one row of in_c/groups * k_h * k_w taps per output channel (mcu_attn/ir/ops/conv.py). */
typedef struct {
    int32_t in_c, in_h, in_w, out_c, out_h, out_w, k_h, k_w, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w;
    int32_t groups;
} ma_conv_geometry;

/* QConv (conv_s8.c): y = sat8(requant(bias[o] + taps . w[o], mult[o], shift[o]) + y_zp), padding read as x_zp. */
void ma_conv_s8(const int8_t *x, const ma_conv_geometry *g, const int8_t *w, const int32_t *bias,
                const int32_t *mult, const int32_t *shift, int32_t x_zp, int32_t y_zp, int8_t *y);
/* The same with int4 weights, two per byte along each row (low nibble first, an odd row padded). */
void ma_conv_s4(const int8_t *x, const ma_conv_geometry *g, const uint8_t *w, const int32_t *bias,
                const int32_t *mult, const int32_t *shift, int32_t x_zp, int32_t y_zp, int8_t *y);
/* QIm2Col (im2col_s8.c): rows[p][k] = tap k of output position p (one group), x_zp outside the image. */
void ma_im2col_s8(const int8_t *x, const ma_conv_geometry *g, int32_t x_zp, int8_t *rows);
/* Float Conv (conv_f32.c): y = taps . w[o] + bias[o] (bias may be NULL), padding read as 0. */
void ma_conv_f32(const float *x, const ma_conv_geometry *g, const float *w, const float *bias, float *y);

/* Rotary position embeddings on [seq][heads*head_dim] (rotary.c); sin carries rotate_half's signs. y != x. */
void ma_rotary_f32(const float *x, int32_t seq, int32_t heads, int32_t head_dim, const float *cos, const float *sin,
                   float *y);
void ma_rotary_s8(const int8_t *x, int32_t seq, int32_t heads, int32_t head_dim, const int16_t *cos,
                  const int16_t *sin, int32_t x_zp, int32_t mult, int32_t shift, int32_t y_zp, int8_t *y);

/* The highest rank the layout kernels accept (generated code merges adjacent axes before calling). */
#define MA_MAX_RANK 6

/* y[i0..] = x[i0..] for every index of `shape`; strides are in bytes, x strides may be negative (x points at
 * the first element read). Element size is any number of bytes. Ranks above MA_MAX_RANK do nothing. */
void ma_copy_strided(const void *x, void *y, int32_t elem_size, int32_t rank, const int32_t *shape,
                     const int32_t *x_strides, const int32_t *y_strides);
/* y = transpose(x, perm) for a contiguous x of `shape`: y's axis d is x's axis perm[d]. */
void ma_permute(const void *x, void *y, int32_t elem_size, int32_t rank, const int32_t *shape, const int32_t *perm);
/* y[o][c] = x[o][indices[c]] over blocks of inner_bytes: take along one axis (indices in [0, axis_dim)). */
void ma_gather(const void *x, void *y, int32_t outer, int32_t axis_dim, int32_t inner_bytes,
               const int32_t *indices, int32_t count);
/* y[i] = table row of ids[i] (rows of row_bytes bytes) for count ids; an id below 0 counts from the end, and ids
 * outside the table are clamped to its first or last row (embedding.c). */
void ma_embedding(const int32_t *ids, int32_t count, const void *table, int32_t vocab, int32_t row_bytes, void *y);
/* The same over an int4 table [vocab][(dim+1)/2] (two codes a byte, low nibble first): y = lut[code & 0xF]. */
void ma_embedding_s4(const int32_t *ids, int32_t count, const uint8_t *table, int32_t vocab, int32_t dim,
                     const int8_t *lut, int8_t *y);

#ifdef __cplusplus
}
#endif

#endif /* MA_KERNELS_H */
