/* QAttention with the DSP extension: the same results as ref/attention_s8.c (the online softmax of
 * ma_attention_s8_online.h, keys one at a time in ascending order), faster.
 *
 * Each query row keeps its running maximum m, its running sum and head_dim accumulators, and takes its keys in
 * ascending order, so rows may be scheduled in any grouping: here one or two rows at a time (two when the query
 * tile allows two rows of state and both rows see the same keys), which lets the two rows share every key's
 * loads and sign extensions.
 * - q - q_zp is extended once per row to halfword pairs in the order SXTB16 gives k's bytes, and
 *   s = sum (q - q_zp) k - k_zp sum (q - q_zp): SMLAD on SXTB16 of k, from -k_zp sum (q - q_zp).
 * - The table index t(m - s) = min(255, requant(m - s)) is floor((K + (m - s) M) / 2^(31 + right)) with the
 *   rounding of both requantization steps folded into K (ma_dsp.h); K + m M is kept per row and updated when m
 *   rises, so a key costs one SMLAL, a shift and USAT. The clamp of the gap is skipped when t(INT32_MAX) is
 *   already 255 (t is monotone, so a clamped gap and the gap itself both give 255).
 * - The accumulators are int32: |acc| <= keys 255 2^15 < 2^31 while a row sees at most 257 keys (a rescale never
 *   grows them), so P V is SMLABB/SMLATB of e with SXTB16/SSUB16 pairs of v - v_zp. e = 2^15 does not fit a
 *   signed halfword: that key multiplies -2^15 by v_zp - v instead.
 * Anything else (more than 257 keys a row, a left-shifting or non-saturating score multiplier) runs the
 * portable algorithm. */
#include "ma_attention_s8_online.h"
#include "ma_dsp.h"

#define MA_INT32_KEYS 257 /* 257 * 255 * 2^15 = 2^31 - 2^15 */
#define MA_FAST_DIM 64    /* the largest head_dim of the fast path (its per-key buffers are on the stack) */

int32_t ma_attention_s8_scratch(const ma_attention_s8_params *p) {
    return ma_attention_s8_scratch_bytes(p);
}

typedef struct {
    const uint16_t *table;
    int64_t k;              /* 2^30 + 2^(right-1) 2^31 */
    int32_t mult, index_shift; /* score multiplier, right - 1 */
    int32_t q_zp, k_zp, v_zp, vzz; /* vzz: v_zp in both halfwords */
    int32_t dim, d4;           /* head_dim, head_dim rounded down to a multiple of 4 */
} fast_params;

/* One row's state: acc int32 [dim], then q - q_zp as halfword pairs [d4 / 2] (both in scratch). */
typedef struct {
    int32_t *acc, *qp;
    int32_t qk0, m;
    uint32_t sum;
    int64_t base;           /* K + m M */
    const int8_t *q;
} row_state;

static inline int32_t table_index(int64_t t, int32_t index_shift) {
    return __usat((int32_t)(t >> 32) >> index_shift, 8);
}

static void row_start(row_state *r, const int8_t *q, const fast_params *f) {
    const int32_t qzz = (int32_t)(((uint32_t)f->q_zp & 0xFFFFu) | ((uint32_t)f->q_zp << 16));
    int32_t d, qsum = 0;
    for (d = 0; d < f->d4; d += 4) {
        const int32_t w = ma_word(q + d);
        r->qp[d / 2] = __ssub16(__sxtb16(w), qzz);
        r->qp[d / 2 + 1] = __ssub16(ma_sxtb16_ror8(w), qzz);
    }
    for (d = 0; d < f->dim; ++d) {
        qsum += q[d] - f->q_zp;
        r->acc[d] = 0;
    }
    r->qk0 = -f->k_zp * qsum; /* |.| <= 128 255 head_dim < 2^31 */
    r->m = INT32_MIN;
    r->sum = 0;
    r->base = 0;
    r->q = q;
}

/* The maximum rises to s: rescale the sum and the accumulators by exp(m - s) (ma_rshift_round64 of the
 * products, as the reference does); returns the new key's entry, table[0]. */
__attribute__((noinline)) static int32_t rise(row_state *r, int32_t s, const fast_params *f) {
    const uint32_t gap = (uint32_t)s - (uint32_t)r->m;
    const int64_t factor = f->table[table_index(f->k + (int64_t)((uint64_t)gap * (uint32_t)f->mult),
                                                f->index_shift)];
    int32_t d;
    r->sum = (uint32_t)(((uint64_t)r->sum * (uint64_t)factor + (1u << 14)) >> 15);
    for (d = 0; d < f->dim; ++d) r->acc[d] = (int32_t)(((int64_t)r->acc[d] * factor + (1 << 14)) >> 15);
    r->m = s;
    r->base = f->k + (int64_t)s * f->mult;
    return f->table[0];
}

/* A key's logit for one row: `kw` holds the key's SXTB16 pairs (dim4 / 2 words), then the scalar tail. */
__attribute__((always_inline)) static inline int32_t logit(const row_state *r, const int32_t *kw,
                                                           const int8_t *kj, const fast_params *f, int dim) {
    const int32_t dim4 = dim & ~3;
    int32_t s = r->qk0, d;
    for (d = 0; d < dim4 / 2; ++d) s = __smlad(r->qp[d], kw[d], s);
    for (d = dim4; d < dim; ++d) s += (r->q[d] - f->q_zp) * kj[d];
    return s;
}

/* The key's table entry for one row (0: it adds nothing), after any rise. */
__attribute__((always_inline)) static inline int32_t entry(row_state *r, int32_t s, const fast_params *f) {
    if (s > r->m) return rise(r, s, f);
    return f->table[table_index(r->base - (int64_t)s * f->mult, f->index_shift)];
}

/* acc += e (v - v_zp) with `vw` the key's (v - v_zp) halfword pairs; e < 2^15 fits SMLABB's signed halfword,
 * e = 2^15 is added as two halves. */
__attribute__((always_inline)) static inline void accumulate(row_state *r, const int32_t *vw, const int8_t *vj,
                                                             int32_t e, const fast_params *f, int dim) {
    const int32_t dim4 = dim & ~3, half = e == 32768, step = half ? 16384 : e;
    int32_t *acc = r->acc, d, pass;
    r->sum += (uint32_t)e;
    for (pass = 0; pass <= half; ++pass) {
        for (d = 0; d < dim4; d += 4) {
            acc[d] = __smlabb(vw[d / 2], step, acc[d]);
            acc[d + 2] = __smlatb(vw[d / 2], step, acc[d + 2]);
            acc[d + 1] = __smlabb(vw[d / 2 + 1], step, acc[d + 1]);
            acc[d + 3] = __smlatb(vw[d / 2 + 1], step, acc[d + 3]);
        }
    }
    for (d = dim4; d < dim; ++d) acc[d] += e * (vj[d] - f->v_zp);
}

/* Bytes 0 and 2, then 1 and 3, of each word of x[0, dim4) sign-extended, minus zz from both halfwords. */
__attribute__((always_inline)) static inline void extend(int32_t *out, const int8_t *x, int32_t zz, int dim) {
    int32_t d;
    for (d = 0; d < (dim & ~3); d += 4) {
        const int32_t w = ma_word(x + d);
        out[d / 2] = zz ? __ssub16(__sxtb16(w), zz) : __sxtb16(w);
        out[d / 2 + 1] = zz ? __ssub16(ma_sxtb16_ror8(w), zz) : ma_sxtb16_ror8(w);
    }
}

/* Keys [from, to) into `rows` rows (1 or 2; two rows see every key, and then there is no mask). `dim` is a
 * constant for the common head sizes, so the loops over the head unroll; k and v are extended once per key
 * for both rows. */
__attribute__((always_inline)) static inline void keys(row_state *a, row_state *b, const int8_t *k,
                                                       const int8_t *v, int32_t stride, int32_t from, int32_t to,
                                                       const uint8_t *mask, const fast_params *f, int dim,
                                                       int rows) {
    int32_t kw[MA_FAST_DIM / 2], vw[MA_FAST_DIM / 2], j;
    for (j = from; j < to; ++j) {
        const int8_t *kj = k + j * stride, *vj = v + j * stride;
        int32_t ea, eb = 0;
        if (rows == 1 && mask && !mask[j]) continue;
        extend(kw, kj, 0, dim);
        ea = entry(a, logit(a, kw, kj, f, dim), f);
        if (rows == 2) eb = entry(b, logit(b, kw, kj, f, dim), f);
        if (ea == 0 && eb == 0) continue;
        extend(vw, vj, f->vzz, dim);
        if (ea) accumulate(a, vw, vj, ea, f, dim);
        if (eb) accumulate(b, vw, vj, eb, f, dim);
    }
}

/* The key loop for one row or two, specialised for head_dim 8 and 16 (any other size up to MA_FAST_DIM runs
 * the same code with a run-time size). */
static void keys_any(row_state *a, row_state *b, const int8_t *k, const int8_t *v, int32_t stride, int32_t from,
                     int32_t to, const uint8_t *mask, const fast_params *f, int rows) {
    if (rows == 2) {
        if (f->dim == 8) {
            keys(a, b, k, v, stride, from, to, NULL, f, 8, 2);
        } else if (f->dim == 16) {
            keys(a, b, k, v, stride, from, to, NULL, f, 16, 2);
        } else {
            keys(a, b, k, v, stride, from, to, NULL, f, f->dim, 2);
        }
    } else if (f->dim == 8) {
        keys(a, b, k, v, stride, from, to, mask, f, 8, 1);
    } else if (f->dim == 16) {
        keys(a, b, k, v, stride, from, to, mask, f, 16, 1);
    } else {
        keys(a, b, k, v, stride, from, to, mask, f, f->dim, 1);
    }
}

static void row_finish(const row_state *r, const ma_attention_s8_params *p, int8_t *out) {
    const row_scale scale = row_scale_of(r->sum);
    const int32_t fast = ma_requant_fast_small(p->out_mult, p->out_shift);
    const ma_requant_params q = ma_requant_prepare_small(p->out_mult, p->out_shift);
    int32_t d;
    for (d = 0; d < p->head_dim; ++d) {
        /* |acc >> shift| < 2^31 and inv <= 2^16: one SMULL; |o| <= 256 * 255 < 2^30 (the small form) */
        const int32_t o = (int32_t)(((int64_t)(r->acc[d] >> scale.shift) * scale.inv + (1 << 22)) >> 23);
        out[d] = ma_dsp_sat8(fast ? ma_dsp_requant_small(2 * o, &q) : ma_dsp_requant_slow(o, p->out_mult,
                                                                                            p->out_shift),
                             p->out_zp);
    }
}

/* The fast path's conditions: t(gap) is one SMLAL (score shift < 0, and no clamp needed) and every row sees at
 * most MA_INT32_KEYS keys. */
static int fast_setup(const ma_attention_s8_params *p, fast_params *f) {
    const exp_index_params e = exp_index_setup(p);
    const int32_t longest = (p->window <= 0 || p->global_tokens > 0) ? p->seq
                            : (p->window + 1 < p->seq ? p->window + 1 : p->seq);
    if (p->score_shift >= 0 || exp_index((uint32_t)INT32_MAX, &e) < 255 || longest > MA_INT32_KEYS ||
        p->head_dim > MA_FAST_DIM) {
        return 0;
    }
    f->table = p->exp_table;
    f->mult = p->score_mult;
    f->index_shift = -p->score_shift - 1;
    f->k = ((int64_t)1 << 30) + ((int64_t)1 << (30 - p->score_shift));
    f->q_zp = p->q_zp;
    f->k_zp = p->k_zp;
    f->v_zp = p->v_zp;
    f->vzz = (int32_t)(((uint32_t)p->v_zp & 0xFFFFu) | ((uint32_t)p->v_zp << 16));
    f->dim = p->head_dim;
    f->d4 = p->head_dim & ~3;
    return 1;
}

static int same_keys(const ma_key_ranges *a, const ma_key_ranges *b) {
    return a->globals_end == b->globals_end && a->lo == b->lo && a->hi == b->hi;
}

void ma_attention_s8(const int8_t *q, const int8_t *k, const int8_t *v, const ma_attention_s8_params *p,
                     int64_t *scratch, int8_t *out) {
    const int32_t seq = p->seq, dim = p->head_dim, stride = p->heads * p->head_dim;
    /* two rows of state: 2 (4 dim + 2 d4) bytes <= 12 dim fit the scratch of a tile of two rows */
    const int32_t pairs = p->query_tile >= 2 && p->mask == NULL;
    fast_params f;
    row_state a, b;
    int32_t h, i;
    if (!fast_setup(p, &f)) {
        ma_attention_s8_online(q, k, v, p, scratch, out);
        return;
    }
    a.acc = (int32_t *)scratch;
    a.qp = a.acc + dim;
    b.acc = a.qp + f.d4 / 2;
    b.qp = b.acc + dim;
    for (h = 0; h < p->heads; ++h) {
        const int8_t *kh = k + h * dim, *vh = v + h * dim;
        for (i = 0; i < seq;) {
            const ma_key_ranges ka = ma_attention_keys(seq, p->window, p->causal, p->global_tokens, i);
            const ma_key_ranges kb = ma_attention_keys(seq, p->window, p->causal, p->global_tokens, i + 1);
            row_start(&a, q + i * stride + h * dim, &f);
            if (pairs && i + 1 < seq && same_keys(&ka, &kb)) {
                row_start(&b, q + (i + 1) * stride + h * dim, &f);
                keys_any(&a, &b, kh, vh, stride, 0, ka.globals_end, NULL, &f, 2);
                keys_any(&a, &b, kh, vh, stride, ka.lo, ka.hi, NULL, &f, 2);
                row_finish(&a, p, out + i * stride + h * dim);
                row_finish(&b, p, out + (i + 1) * stride + h * dim);
                i += 2;
            } else {
                const uint8_t *mask = p->mask ? p->mask + i * seq : NULL;
                keys_any(&a, &b, kh, vh, stride, 0, ka.globals_end, mask, &f, 1);
                keys_any(&a, &b, kh, vh, stride, ka.lo, ka.hi, mask, &f, 1);
                row_finish(&a, p, out + i * stride + h * dim);
                i += 1;
            }
        }
    }
}
