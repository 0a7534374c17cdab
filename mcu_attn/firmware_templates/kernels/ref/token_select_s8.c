/* QTokenSelect: keep the class token and the tokens its attention weights most.
 * Reference: mcu_attn/ir/ops/token_select.py qtoken_select. Per head: the class token's integer logits against
 * every key, the attention's exp table over the gaps to their maximum, one reciprocal of the sum (Q15
 * probabilities); the scores are the probabilities summed over heads. Then keep passes pick the best remaining
 * token each (ties: the lower index) and the rows are copied in ascending order after the class token's. */
#include <string.h>

#include "ma_kernels_dynamic.h"
#include "ma_kernels_s8.h"

int32_t ma_token_select_s8_scratch(const ma_token_select_s8_params *p) {
    return (9 * p->seq + 7) / 8 * 8;
}

/* t(gap) = min(255, requant(min(gap, INT32_MAX >> left), mult, shift)) for gap >= 0 (attention._exp_index). */
static int32_t gap_index(int64_t gap, const ma_token_select_s8_params *p) {
    const int64_t limit = (int64_t)(INT32_MAX >> (p->score_shift > 0 ? p->score_shift : 0));
    const int32_t t = ma_requantize(gap < limit ? gap : limit, p->score_mult, p->score_shift);
    return t > 255 ? 255 : t;
}

void ma_token_select_s8(const int8_t *x, const int8_t *q, const int8_t *k, const ma_token_select_s8_params *p,
                        uint32_t *scratch, int8_t *out) {
    const int32_t seq = p->seq, dim = p->head_dim, stride = p->heads * p->head_dim;
    int32_t *logits = (int32_t *)scratch;     /* [seq] */
    uint32_t *score = scratch + seq;          /* [seq] */
    uint8_t *taken = (uint8_t *)(score + seq); /* [seq] */
    int32_t h, j, d, n, row = 0;
    for (j = 0; j < seq; ++j) {
        score[j] = 0;
        taken[j] = 0;
    }
    for (h = 0; h < p->heads; ++h) {
        const int8_t *qc = q + (int64_t)p->cls * stride + (int64_t)h * dim;
        int32_t top = INT32_MIN;
        uint64_t sum = 0, inv;
        for (j = 0; j < seq; ++j) {
            const int8_t *kj = k + (int64_t)j * stride + (int64_t)h * dim;
            int32_t s = 0;
            for (d = 0; d < dim; ++d) s += ((int32_t)qc[d] - p->q_zp) * ((int32_t)kj[d] - p->k_zp);
            logits[j] = s;
            if (s > top) top = s;
        }
        for (j = 0; j < seq; ++j) sum += p->exp_table[gap_index((int64_t)top - logits[j], p)];
        inv = ((uint64_t)1 << 47) / sum; /* sum >= 2^15: the maximum's own entry */
        for (j = 0; j < seq; ++j) {
            score[j] += (uint32_t)(((uint64_t)p->exp_table[gap_index((int64_t)top - logits[j], p)] * inv) >> 32);
        }
    }
    taken[p->cls] = 1;
    for (n = 0; n < p->keep; ++n) {
        int32_t best = -1;
        for (j = 0; j < seq; ++j) {
            if (!taken[j] && (best < 0 || score[j] > score[best])) best = j;
        }
        taken[best] = 1;
    }
    memcpy(out, x + (int64_t)p->cls * p->width, (size_t)p->width);
    for (j = 0; j < seq; ++j) {
        if (taken[j] && j != p->cls) memcpy(out + (int64_t)(++row) * p->width, x + (int64_t)j * p->width,
                                            (size_t)p->width);
    }
}
