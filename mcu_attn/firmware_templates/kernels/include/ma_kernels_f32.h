/* Float baseline kernels (--bits 32): the "standard transformer" every report compares against.
 * Same shapes as the integer kernels, fp32 arithmetic, portable C99 with <math.h>.
 */
#ifndef MA_KERNELS_F32_H
#define MA_KERNELS_F32_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* y[r][n] = bias[n] + sum_k x[r][k] * w[n][k]; bias may be NULL. */
void ma_linear_f32(const float *x, int32_t rows, int32_t k, int32_t n, const float *w /* [n][k] */,
                   const float *bias, float *y);

typedef struct {
    int32_t seq, heads, head_dim, window, causal, global_tokens;
    float scale;
} ma_attention_f32_params;
/* Multi-head attention over q, k, v [seq][heads*head_dim], one query row at a time over the keys it may see
 * (the same sets as the IR's attention_allowed), max-subtracted softmax; scratch holds seq floats.
 * out may equal q: row i of head h reads only q's row i of head h before writing the same slice of out. */
void ma_attention_f32(const float *q, const float *k, const float *v, const ma_attention_f32_params *p,
                      float *scratch /* seq floats */, float *out);

/* Normalise each of `rows` rows of c channels; beta may be NULL. */
void ma_layernorm_f32(const float *x, int32_t rows, int32_t c, const float *gamma, const float *beta, float eps,
                      float *y);

/* GELU, exact (erf) or with the tanh approximation (tanh_approx != 0). y may equal x. */
void ma_gelu_f32(const float *x, int32_t count, int32_t tanh_approx, float *y);

/* y[i] = a[i] + b[i % b_count] (b repeats every b_count elements). y may equal a. */
void ma_add_f32(const float *a, const float *b, int32_t count, int32_t b_count, float *y);

#ifdef __cplusplus
}
#endif

#endif /* MA_KERNELS_F32_H */
