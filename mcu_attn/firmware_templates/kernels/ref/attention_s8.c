/* QAttention: integer softmax attention, one query row at a time over the keys its window allows.
 * Reference: mcu_attn/ir/ops/qops.py qattention; key sets: mcu_attn/ir/ops/nn.py attention_allowed.
 *
 * For each head and query row i the allowed keys are at most two index ranges, [0, prefix) (global tokens
 * left of the window) and [lo, hi] (the window, or everything). Pass 1 computes the integer logits of those
 * keys into scratch and their maximum; pass 2 turns each into an exp-table entry (gap to the maximum in steps
 * of Delta) and sums them; one reciprocal of the sum then makes every entry a probability in 1/256 units,
 * which pass 3 accumulates against v into head_dim int32 accumulators. */
#include "ma_kernels_s8.h"

int32_t ma_attention_s8_scratch(const ma_attention_s8_params *p) {
    return p->seq + p->head_dim;
}

/* The keys of query i: begin[r] <= j < end[r] for r = 0, 1 (disjoint, ascending). */
static void key_ranges(const ma_attention_s8_params *p, int32_t i, int32_t begin[2], int32_t end[2]) {
    const int32_t last = p->causal ? i : p->seq - 1;
    begin[0] = end[0] = 0;
    begin[1] = 0;
    end[1] = last + 1;
    if (p->window <= 0 || i < p->global_tokens) return; /* dense row, or a global token: every key */
    if (p->causal) {
        begin[1] = p->window - 1 >= i ? 0 : i - (p->window - 1); /* i - W < j <= i */
    } else {
        const int32_t half = p->window / 2; /* |i - j| <= W / 2 */
        begin[1] = half >= i ? 0 : i - half;
        end[1] = half >= p->seq - 1 - i ? p->seq : i + half + 1;
    }
    end[0] = p->global_tokens < begin[1] ? p->global_tokens : begin[1]; /* global keys left of the window */
}

void ma_attention_s8(const int8_t *q, const int8_t *k, const int8_t *v, const ma_attention_s8_params *p,
                     int32_t *scratch, int8_t *out) {
    const int32_t seq = p->seq, dim = p->head_dim, stride = p->heads * p->head_dim;
    int32_t *score = scratch;      /* [seq]: the row's logits, then its exp-table entries */
    int32_t *accum = scratch + seq; /* [head_dim] */
    int32_t h, i, r, j, d;
    for (h = 0; h < p->heads; ++h) {
        for (i = 0; i < seq; ++i) {
            const int8_t *qi = q + (int64_t)i * stride + (int64_t)h * dim;
            int32_t begin[2], end[2], count = 0, row_max = INT32_MIN;
            uint32_t total = 0, inv;
            key_ranges(p, i, begin, end);
            for (r = 0; r < 2; ++r) {
                for (j = begin[r]; j < end[r]; ++j) {
                    const int8_t *kj = k + (int64_t)j * stride + (int64_t)h * dim;
                    int32_t acc = 0;
                    for (d = 0; d < dim; ++d) acc += ((int32_t)qi[d] - p->q_zp) * ((int32_t)kj[d] - p->k_zp);
                    score[count++] = acc;
                    if (acc > row_max) row_max = acc;
                }
            }
            for (j = 0; j < count; ++j) {
                /* ma_requantize saturates a gap whose left shift leaves int32, as the reference clamps it */
                int32_t t = ma_requantize((int64_t)row_max - score[j], p->score_mult, p->score_shift);
                if ((uint32_t)t > 255u) t = 255; /* t >= 0 for score_mult >= 0; the cast also guards the index */
                score[j] = p->exp_table[t];
                total += (uint32_t)score[j];
            }
            inv = 0x80000000u / (total ? total : 1u); /* total >= exp_table[0] > 0 */
            for (d = 0; d < dim; ++d) accum[d] = 0;
            count = 0;
            for (r = 0; r < 2; ++r) {
                for (j = begin[r]; j < end[r]; ++j) {
                    const int8_t *vj = v + (int64_t)j * stride + (int64_t)h * dim;
                    const int32_t prob = (int32_t)(((uint32_t)score[count++] * inv + (1u << 22)) >> 23); /* 0..256 */
                    for (d = 0; d < dim; ++d) accum[d] += prob * ((int32_t)vj[d] - p->v_zp);
                }
            }
            for (d = 0; d < dim; ++d) {
                out[(int64_t)i * stride + (int64_t)h * dim + d] =
                    ma_sat8((int64_t)ma_requantize(accum[d], p->out_mult, p->out_shift) + p->out_zp);
            }
        }
    }
}
