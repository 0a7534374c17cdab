/* Float baseline kernels (--bits 32): the "standard transformer" every report compares against.
 * Same shapes as the integer kernels, fp32 arithmetic, portable C99 with <math.h>.
 */
#ifndef MA_KERNELS_F32_H
#define MA_KERNELS_F32_H

#include <stdint.h>

#include "ma_attention_keys.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y[r][n] = bias[n] + sum_k x[r][k] * w[n][k]; bias may be NULL. */
void ma_linear_f32(const float *x, int32_t rows, int32_t k, int32_t n, const float *w /* [n][k] */,
                   const float *bias, float *y);

typedef struct {
    int32_t seq, heads, head_dim;
    ma_attention_pattern pattern; /* the keys each query sees (ma_attention_keys.h) */
    int32_t query_tile; /* query rows per tile (>= 1) */
    float scale;
    const float *mask;  /* NULL, or an additive [seq][seq] mask shared by the heads; -INFINITY or -FLT_MAX
                         * hides a key (its exp underflows to 0) */
} ma_attention_f32_params;
/* Multi-head attention over q, k, v [seq][heads*head_dim] with an online softmax, query_tile rows at a time over
 * the keys each row may see (the same sets as the IR's attention_allowed). out may equal q: a tile reads only
 * its own rows of q, and writes them after its last read. */
void ma_attention_f32(const float *q, const float *k, const float *v, const ma_attention_f32_params *p,
                      float *scratch, float *out);

/* Scratch bytes ma_attention_f32 needs: query_tile * (4 * head_dim + 8). */
int32_t ma_attention_f32_scratch(const ma_attention_f32_params *p);

/* Normalise each of `rows` rows of c channels; beta may be NULL. */
void ma_layernorm_f32(const float *x, int32_t rows, int32_t c, const float *gamma, const float *beta, float eps,
                      float *y);

/* RMSNorm of each of `rows` rows of c channels: x / sqrt(mean(x^2) + eps) * gamma. */
void ma_rmsnorm_f32(const float *x, int32_t rows, int32_t c, const float *gamma, float eps, float *y);

/* GELU, exact (erf) or with the tanh approximation (tanh_approx != 0). y may equal x. */
void ma_gelu_f32(const float *x, int32_t count, int32_t tanh_approx, float *y);

/* y[i] = a[i] + b[i % b_count] (b repeats every b_count elements). y may equal a. */
void ma_add_f32(const float *a, const float *b, int32_t count, int32_t b_count, float *y);
/* y[i] = a[i] * b[i % b_count], in add_f32.c. y may equal a. */
void ma_mul_f32(const float *a, const float *b, int32_t count, int32_t b_count, float *y);

/* SiLU: y = x / (1 + exp(-x)), in gelu_f32.c. y may equal x. */
void ma_silu_f32(const float *x, int32_t count, float *y);

#ifdef __cplusplus
}
#endif

#endif /* MA_KERNELS_F32_H */
