/* QAttention's algorithm as the portable kernel runs it (shared by every variant as the specification and as
 * the fallback of the optimized kernels): integer attention with an online softmax, a tile of query rows at a
 * time.
 * Reference: mcu_attn/ir/ops/attention.py qattention (the algorithm, step by step); key sets: ma_attention_keys.h.
 *
 * For each head, the query rows are taken query_tile at a time. The tile's keys are the span of its rows' key
 * sets; each key row k_j, v_j is visited once per tile, in ascending j, and every row of the tile that sees j
 * (its pattern, ma_attention_sees, and the mask if there is one) folds it into its own running state: the logit
 * maximum, the running sum of exp-table entries and head_dim int64 accumulators of e v, rescaled whenever
 * the maximum rises; v's zero point is taken out once per row, at the end. A row's state is a few words, so
 * scratch is O(query_tile * head_dim) and nothing is O(seq^2): never a score matrix, not even a score row.
 * Since each row sees its keys one at a time in ascending order, the result is the same for any tile size and
 * for a dense row that skips masked keys. */
#ifndef MA_ATTENTION_S8_ONLINE_H
#define MA_ATTENTION_S8_ONLINE_H

#include "ma_kernels_s8.h"

/* The row state in scratch: acc int64 [tile][head_dim], then per row 2 int32 words: max, sum. */
#define MA_ROW_WORDS 2

static inline int32_t ma_attention_s8_scratch_bytes(const ma_attention_s8_params *p) {
    return p->query_tile * (8 * p->head_dim + 4 * MA_ROW_WORDS);
}

/* t(gap) = min(255, requant(min(gap, INT32_MAX >> left))) of attention._exp_index, for gap >= 0 and a multiplier
 * >= 0 (the op's contract). On non-negative values ma_requantize reduces exactly to unsigned arithmetic: the
 * doubling high multiply is floor((x M + 2^30) / 2^31) and the rounding shift floor((h + 2^(right-1)) / 2^right),
 * with x = gap << left <= INT32_MAX, so x M < 2^62. The parameters are derived once per call. */
typedef struct {
    uint32_t limit;     /* INT32_MAX >> left: larger gaps are clamped to it */
    uint32_t mult;      /* score multiplier, in [0, 2^31) */
    int32_t left, right;
} exp_index_params;

static inline exp_index_params exp_index_setup(const ma_attention_s8_params *p) {
    exp_index_params e;
    e.left = p->score_shift > 0 ? p->score_shift : 0;
    e.right = p->score_shift > 0 ? 0 : -p->score_shift;
    e.limit = (uint32_t)INT32_MAX >> e.left;
    e.mult = (uint32_t)p->score_mult;
    return e;
}

/* gap = s - m as uint32: exact, since both are int32 and s >= m (or m - s with m >= s). */
static inline int32_t exp_index(uint32_t gap, const exp_index_params *e) {
    const uint64_t x = (uint64_t)(gap < e->limit ? gap : e->limit) << e->left;
    uint64_t h = (x * e->mult + ((uint64_t)1 << 30)) >> 31;
    if (e->right > 0) h = (h + ((uint64_t)1 << (e->right - 1))) >> e->right;
    return h > 255u ? 255 : (int32_t)h;
}

/* The end of a row: one reciprocal of the sum, then out = sat8(requant(256 acc / sum) + out_zp) per element. */
typedef struct {
    int32_t shift;
    int64_t inv;
} row_scale;

static inline row_scale row_scale_of(uint32_t sum) {
    row_scale r;
    r.shift = 0;
    while ((sum >> r.shift) >= 65536u) ++r.shift;
    r.inv = (int64_t)(0x80000000u / ((sum >> r.shift) ? (sum >> r.shift) : 1u)); /* sum >= 2^15 once a key was seen */
    return r;
}

/* numerator = acc - v_zp sum (the zero point of v, taken out once). */
static inline int8_t row_output(int64_t numerator, row_scale r, const ma_attention_s8_params *p) {
    const int64_t o = ma_rshift_round64(ma_asr64(numerator, r.shift) * r.inv, 23); /* 256 numerator / sum */
    return ma_sat8((int64_t)ma_requantize(o, p->out_mult, p->out_shift) + p->out_zp);
}

static inline void finish_row(const int64_t *acc, uint32_t sum, const ma_attention_s8_params *p, int8_t *out) {
    const row_scale r = row_scale_of(sum);
    int32_t d;
    for (d = 0; d < p->head_dim; ++d) out[d] = row_output(acc[d] - (int64_t)p->v_zp * sum, r, p);
}

/* Fold one key into a row's running state: its logit s and value row vj update the maximum so far (top), the
 * sum of exp-table entries and the head_dim accumulators of e v (rescaled when the maximum rises). */
static inline void ma_online_fold(int32_t s, const int8_t *vj, int32_t dim, const uint16_t *table,
                                  const exp_index_params *gaps, int32_t *top, uint32_t *sum, int64_t *acc) {
    int32_t e, d;
    if (s > *top) { /* a new maximum: rescale what the row holds by exp(old - new) */
        const int32_t f = table[exp_index((uint32_t)s - (uint32_t)*top, gaps)];
        *sum = (uint32_t)ma_rshift_round64((int64_t)*sum * f, 15);
        for (d = 0; d < dim; ++d) acc[d] = ma_rshift_round64(acc[d] * f, 15);
        *top = s;
        e = table[0];
    } else {
        e = table[exp_index((uint32_t)*top - (uint32_t)s, gaps)];
        if (e == 0) return; /* adds nothing: the reference adds 0 */
    }
    *sum += (uint32_t)e;
    for (d = 0; d < dim; ++d) acc[d] += (int64_t)e * vj[d];
}

static inline void ma_attention_s8_online(const int8_t *q, const int8_t *k, const int8_t *v,
                                   const ma_attention_s8_params *p, int64_t *scratch, int8_t *out) {
    const int32_t seq = p->seq, dim = p->head_dim, stride = p->heads * p->head_dim;
    const int32_t tile = p->query_tile > 0 ? p->query_tile : 1;
    const int32_t q_zp = p->q_zp, k_zp = p->k_zp;
    const uint16_t *table = p->exp_table;
    const uint8_t *mask = p->mask;
    const exp_index_params gaps = exp_index_setup(p);
    int64_t *acc = scratch;                                    /* [tile][dim] */
    int32_t *top = (int32_t *)(scratch + (int64_t)tile * dim); /* [tile] running maximum */
    uint32_t *sum = (uint32_t *)(top + tile);                  /* [tile] running sum */
    int32_t h, i0, r, j, d;
    for (h = 0; h < p->heads; ++h) {
        for (i0 = 0; i0 < seq; i0 += tile) {
            const int32_t rows = seq - i0 < tile ? seq - i0 : tile;
            int32_t first, end;
            ma_tile_span(&p->pattern, seq, i0, rows, &first, &end);
            for (r = 0; r < rows; ++r) {
                top[r] = INT32_MIN;
                sum[r] = 0;
                for (d = 0; d < dim; ++d) acc[r * dim + d] = 0;
            }
            for (j = first; j < end; ++j) {
                const int8_t *kj = k + (int64_t)j * stride + (int64_t)h * dim;
                const int8_t *vj = v + (int64_t)j * stride + (int64_t)h * dim;
                for (r = 0; r < rows; ++r) {
                    const int32_t i = i0 + r;
                    const int8_t *qi = q + (int64_t)i * stride + (int64_t)h * dim;
                    int32_t s = 0;
                    if (!ma_attention_sees(&p->pattern, i, j) || (mask && !mask[(int64_t)i * seq + j])) continue;
                    for (d = 0; d < dim; ++d) s += ((int32_t)qi[d] - q_zp) * ((int32_t)kj[d] - k_zp);
                    ma_online_fold(s, vj, dim, table, &gaps, &top[r], &sum[r], acc + r * dim);
                }
            }
            for (r = 0; r < rows; ++r) {
                finish_row(acc + r * dim, sum[r], p, out + (int64_t)(i0 + r) * stride + (int64_t)h * dim);
            }
        }
    }
}

/* QAttention with p->seq queries over kv_seq keys of another count (Linformer's keys projected along the
 * sequence): every query sees every key, in ascending order, with the online softmax above (no pattern, no mask:
 * p's are not read). Query rows query_tile at a time, each key row read once per tile; scratch as
 * ma_attention_s8_scratch_bytes. The specification of ma_attention_kv_s8 and the fallback of its fast variants. */
static inline void ma_attention_kv_s8_online(const int8_t *q, const int8_t *k, const int8_t *v,
                                             const ma_attention_s8_params *p, int32_t kv_seq, int64_t *scratch,
                                             int8_t *out) {
    const int32_t seq = p->seq, dim = p->head_dim, stride = p->heads * p->head_dim;
    const int32_t tile = p->query_tile > 0 ? p->query_tile : 1;
    const exp_index_params gaps = exp_index_setup(p);
    int64_t *acc = scratch;                                    /* [tile][dim] */
    int32_t *top = (int32_t *)(scratch + (int64_t)tile * dim); /* [tile] running maximum */
    uint32_t *sum = (uint32_t *)(top + tile);                  /* [tile] running sum */
    int32_t h, i0, r, j, d;
    for (h = 0; h < p->heads; ++h) {
        for (i0 = 0; i0 < seq; i0 += tile) {
            const int32_t rows = seq - i0 < tile ? seq - i0 : tile;
            for (r = 0; r < rows; ++r) {
                top[r] = INT32_MIN;
                sum[r] = 0;
                for (d = 0; d < dim; ++d) acc[r * dim + d] = 0;
            }
            for (j = 0; j < kv_seq; ++j) {
                const int8_t *kj = k + (int64_t)j * stride + (int64_t)h * dim;
                const int8_t *vj = v + (int64_t)j * stride + (int64_t)h * dim;
                for (r = 0; r < rows; ++r) {
                    const int8_t *qi = q + (int64_t)(i0 + r) * stride + (int64_t)h * dim;
                    int32_t s = 0;
                    for (d = 0; d < dim; ++d) s += ((int32_t)qi[d] - p->q_zp) * ((int32_t)kj[d] - p->k_zp);
                    ma_online_fold(s, vj, dim, p->exp_table, &gaps, &top[r], &sum[r], acc + r * dim);
                }
            }
            for (r = 0; r < rows; ++r) {
                finish_row(acc + r * dim, sum[r], p, out + (int64_t)(i0 + r) * stride + (int64_t)h * dim);
            }
        }
    }
}

#endif
