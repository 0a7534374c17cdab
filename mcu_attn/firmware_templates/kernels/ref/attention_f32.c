/* Float multi-head attention with an online softmax, a tile of query rows at a time.
 *
 * The same schedule as the integer kernel (attention_s8.c): per head, query_tile rows at a time; each key row of
 * the tile's span (ma_attention_keys.h, the IR's AttentionPattern) is visited once, in ascending j,
 * and every row that sees it updates its running maximum m, running sum and head_dim accumulators:
 * s = scale q.k (+ mask), and when s > m the sum and accumulators are multiplied by expf(m - s) before m = s;
 * then e = expf(s - m), sum += e, acc += e v. The output row is acc / sum. An additive mask of -INFINITY hides
 * a key. Scratch is O(query_tile * head_dim): no score matrix, no score row.
 */
#include "ma_kernels.h"

#include <math.h>
#include <stddef.h>

#define MA_ROW_WORDS 2 /* per row after the accumulators: max, sum */

int32_t ma_attention_f32_scratch(const ma_attention_f32_params *p)
{
    return p->query_tile * (4 * p->head_dim + 4 * MA_ROW_WORDS);
}

void ma_attention_f32(const float *q, const float *k, const float *v, const ma_attention_f32_params *p,
                      float *scratch, float *out)
{
    const int32_t seq = p->seq, dim = p->head_dim, width = p->heads * p->head_dim;
    const int32_t tile = p->query_tile > 0 ? p->query_tile : 1;
    float *acc = scratch;                           /* [tile][dim] */
    float *top = acc + (size_t)tile * (size_t)dim;  /* [tile] */
    float *sum = top + tile;                        /* [tile] */
    int32_t h, i0, r, j, d;
    for (h = 0; h < p->heads; ++h) {
        const int32_t col = h * dim;
        for (i0 = 0; i0 < seq; i0 += tile) {
            const int32_t rows = seq - i0 < tile ? seq - i0 : tile;
            int32_t first, end;
            ma_tile_span(&p->pattern, seq, i0, rows, &first, &end);
            for (r = 0; r < rows; ++r) {
                top[r] = -INFINITY;
                sum[r] = 0.0f;
                for (d = 0; d < dim; ++d) acc[r * dim + d] = 0.0f;
            }
            for (j = first; j < end; ++j) {
                const float *kj = k + (size_t)j * (size_t)width + col;
                const float *vj = v + (size_t)j * (size_t)width + col;
                for (r = 0; r < rows; ++r) {
                    const int32_t i = i0 + r;
                    const float *qi = q + (size_t)i * (size_t)width + col;
                    float *a = acc + r * dim;
                    float s = 0.0f, e;
                    if (!ma_attention_sees(&p->pattern, i, j)) continue;
                    for (d = 0; d < dim; ++d) s += qi[d] * kj[d];
                    s *= p->scale;
                    if (p->mask) s += p->mask[(size_t)i * (size_t)seq + (size_t)j];
                    if (!(s > -INFINITY)) continue; /* a masked key (or NaN) */
                    if (s > top[r]) {
                        const float f = expf(top[r] - s); /* 0 for the first key */
                        sum[r] *= f;
                        for (d = 0; d < dim; ++d) a[d] *= f;
                        top[r] = s;
                    }
                    e = expf(s - top[r]);
                    sum[r] += e;
                    for (d = 0; d < dim; ++d) a[d] += e * vj[d];
                }
            }
            for (r = 0; r < rows; ++r) {
                float *o = out + (size_t)(i0 + r) * (size_t)width + col;
                const float inv = sum[r] > 0.0f ? 1.0f / sum[r] : 0.0f;
                for (d = 0; d < dim; ++d) o[d] = acc[r * dim + d] * inv;
            }
        }
    }
}
