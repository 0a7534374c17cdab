/* Float multi-head attention, one query row at a time.
 *
 * For query i the keys it may see are the global tokens [0, G) and a band [lo, hi]: everything (dense, or a
 * global query), i-W < j <= i (causal local window W), |i-j| <= W/2 (local), clipped to j <= i when causal.
 * These are exactly the sets of the IR's attention_allowed. Scores of the visible keys go into scratch[j]
 * (O(seq) memory, never the seq x seq matrix); softmax subtracts the row maximum before expf.
 */
#include "ma_kernels.h"

#include <math.h>
#include <stddef.h>

static void visible_keys(const ma_attention_f32_params *p, int32_t i, int32_t *globals_end, int32_t *lo, int32_t *hi)
{
    int32_t last = p->causal ? i : p->seq - 1;
    if (p->window <= 0 || i < p->global_tokens) {
        *lo = 0;
        *hi = last;
    } else if (p->causal) {
        *lo = i - p->window + 1;
        *hi = i;
    } else {
        *lo = i - p->window / 2;
        *hi = i + p->window / 2;
    }
    if (*lo < 0) {
        *lo = 0;
    }
    if (*hi > last) {
        *hi = last;
    }
    /* global keys before the band (those inside it are visited by the band) */
    *globals_end = p->global_tokens < *lo ? p->global_tokens : *lo;
    if (p->causal && *globals_end > i + 1) {
        *globals_end = i + 1;
    }
}

void ma_attention_f32(const float *q, const float *k, const float *v, const ma_attention_f32_params *p,
                      float *scratch, float *out)
{
    const int32_t width = p->heads * p->head_dim;
    int32_t h, i, j, d;
    for (h = 0; h < p->heads; ++h) {
        const int32_t col = h * p->head_dim;
        for (i = 0; i < p->seq; ++i) {
            const float *qi = q + (size_t)i * (size_t)width + col;
            float *oi = out + (size_t)i * (size_t)width + col;
            int32_t globals_end, lo, hi, pass;
            float top = -INFINITY, sum = 0.0f, inv;
            visible_keys(p, i, &globals_end, &lo, &hi);
            for (pass = 0; pass < 2; ++pass) { /* pass 0: the global keys, pass 1: the band */
                int32_t first = pass == 0 ? 0 : lo, end = pass == 0 ? globals_end : hi + 1;
                for (j = first; j < end; ++j) {
                    const float *kj = k + (size_t)j * (size_t)width + col;
                    float dot = 0.0f;
                    for (d = 0; d < p->head_dim; ++d) {
                        dot += qi[d] * kj[d];
                    }
                    scratch[j] = dot * p->scale;
                    if (scratch[j] > top) {
                        top = scratch[j];
                    }
                }
            }
            for (d = 0; d < p->head_dim; ++d) {
                oi[d] = 0.0f;
            }
            for (pass = 0; pass < 2; ++pass) {
                int32_t first = pass == 0 ? 0 : lo, end = pass == 0 ? globals_end : hi + 1;
                for (j = first; j < end; ++j) {
                    const float *vj = v + (size_t)j * (size_t)width + col;
                    float e = expf(scratch[j] - top);
                    sum += e;
                    for (d = 0; d < p->head_dim; ++d) {
                        oi[d] += e * vj[d];
                    }
                }
            }
            inv = 1.0f / sum;
            for (d = 0; d < p->head_dim; ++d) {
                oi[d] *= inv;
            }
        }
    }
}
