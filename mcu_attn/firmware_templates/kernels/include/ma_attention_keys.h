/* The keys a query may see: the attention pattern's C descriptor, shared by the integer and float kernels.
 *
 * ma_attention_pattern mirrors mcu_attn/ir/pattern.py AttentionPattern (its c_fields() are this struct's fields,
 * in order), and ma_attention_keys() is AttentionPattern.allowed() for one query row i of a sequence of seq keys:
 * - no restricting part (window, stride, dilated and block all 0): every key;
 * - otherwise the union of the parts present:
 *   window W         |i - j| <= W / 2 (causal: the last W keys, i - W < j <= i);
 *   stride K         (i - j) % K == 0: every K-th key, the query's own included;
 *   dilated W, D     j = i + D t with |t| <= W / 2 (causal: 0 <= -t < W): a window of keys D apart;
 *   block B, L, S    with query block i / B and key block j / B: |qb - kb| <= L, or (qb - kb) % S == 0 when S > 0;
 *   global tokens G  the first G keys, seen by every query; queries i < G see every key;
 * - causal keeps j <= i throughout.
 * ma_attention_sees() is that rule for one (query, key) pair: the portable kernels' specification. For speed,
 * ma_attention_keys() gives a row's key set as a few contiguous ranges (the global tokens, the window, the local
 * blocks) and at most one progression (the strided keys, the dilated window or the strided blocks: runs of `run`
 * keys every `step` keys), which ma_key_next_run() walks as runs of keys at a constant step, in ascending order
 * overall: the order every attention kernel takes its keys in (docs/integer-kernels.md). The two agree key for
 * key (tests/test_attention_keys.py). */
#ifndef MA_ATTENTION_KEYS_H
#define MA_ATTENTION_KEYS_H

#include <stdint.h>

typedef struct {
    int32_t window, causal, global_tokens, stride, dilated, dilation, block, block_local, block_stride;
} ma_attention_pattern;

#define MA_KEY_RANGES 3

/* One query row's keys: `ranges` disjoint ascending ranges [lo, hi), and the progression: runs of `run` keys
 * starting at first, first + step, ... below end (step 0: none). */
typedef struct {
    int32_t lo[MA_KEY_RANGES], hi[MA_KEY_RANGES], ranges;
    int32_t first, step, run, end;
} ma_key_set;

static inline int32_t ma_min32(int32_t a, int32_t b) {
    return a < b ? a : b;
}

static inline int32_t ma_max32(int32_t a, int32_t b) {
    return a > b ? a : b;
}

/* Add [lo, hi) to the set's ranges, kept sorted and merged (touching or overlapping ranges become one). */
static inline void ma_key_range_add(ma_key_set *s, int32_t lo, int32_t hi) {
    int32_t r, w;
    if (lo >= hi) return;
    for (r = 0; r < s->ranges; ++r) { /* merge with every range it touches */
        if (lo <= s->hi[r] && s->lo[r] <= hi) {
            lo = ma_min32(lo, s->lo[r]);
            hi = ma_max32(hi, s->hi[r]);
            s->lo[r] = s->hi[r] = -1; /* removed below */
        }
    }
    for (r = w = 0; r < s->ranges; ++r) {
        if (s->lo[r] >= 0) {
            s->lo[w] = s->lo[r];
            s->hi[w] = s->hi[r];
            ++w;
        }
    }
    for (r = w; r > 0 && s->lo[r - 1] > lo; --r) { /* insert in order */
        s->lo[r] = s->lo[r - 1];
        s->hi[r] = s->hi[r - 1];
    }
    s->lo[r] = lo;
    s->hi[r] = hi;
    s->ranges = w + 1;
}

static inline int ma_pattern_restricts(const ma_attention_pattern *p) {
    return p->window > 0 || p->stride > 0 || p->dilated > 0 || p->block > 0;
}

/* A pattern of a window and global tokens only (or dense): its rows need no ma_key_set (ma_band_keys). */
static inline int ma_pattern_is_band(const ma_attention_pattern *p) {
    return p->stride == 0 && p->dilated == 0 && p->block == 0;
}

/* The window's keys [*lo, *hi) of query row i (window > 0). */
static inline void ma_window_range(const ma_attention_pattern *p, int32_t seq, int32_t i, int32_t *lo,
                                   int32_t *hi) {
    if (p->causal) { /* i - W < j <= i */
        *lo = i - ma_min32(p->window - 1, i);
        *hi = i + 1;
    } else { /* |i - j| <= W / 2 */
        const int32_t half = ma_min32(p->window / 2, seq);
        *lo = i - ma_min32(half, i);
        *hi = ma_min32(seq, i + half + 1);
    }
}

/* The keys of query row i of a band pattern (ma_pattern_is_band): the global keys [0, *globals_end) left of
 * the window [*lo, *hi), or every key as [*lo, *hi). */
static inline void ma_band_keys(const ma_attention_pattern *p, int32_t seq, int32_t i, int32_t *globals_end,
                                int32_t *lo, int32_t *hi) {
    *globals_end = 0;
    if (p->window <= 0 || i < p->global_tokens) { /* dense row, or a global token: every key */
        *lo = 0;
        *hi = p->causal ? i + 1 : seq;
        return;
    }
    ma_window_range(p, seq, i, lo, hi);
    *globals_end = ma_min32(p->global_tokens, *lo);
}

/* The keys of query row i. */
static inline ma_key_set ma_attention_keys(const ma_attention_pattern *p, int32_t seq, int32_t i) {
    ma_key_set s;
    const int32_t end = p->causal ? i + 1 : seq; /* no key at or beyond end */
    s.ranges = 0;
    s.first = 0;
    s.step = 0;
    s.run = 1;
    s.end = 0;
    if (!ma_pattern_restricts(p) || i < p->global_tokens) { /* every key */
        ma_key_range_add(&s, 0, end);
        return s;
    }
    ma_key_range_add(&s, 0, ma_min32(p->global_tokens, end));
    if (p->window > 0) {
        int32_t lo, hi;
        ma_window_range(p, seq, i, &lo, &hi);
        ma_key_range_add(&s, lo, hi);
    }
    if (p->block > 0) { /* the local blocks, |qb - kb| <= L */
        const int32_t qb = i / p->block, reach = ma_min32(p->block_local, seq);
        const int64_t hi = ((int64_t)qb + reach + 1) * p->block;
        ma_key_range_add(&s, ma_max32(qb - reach, 0) * p->block, hi < end ? (int32_t)hi : end);
    }
    if (p->stride > 0) { /* (i - j) % K == 0 */
        s.first = i % p->stride;
        s.step = p->stride;
        s.end = end;
    } else if (p->dilated > 0) { /* j = i + D t, |t| <= W / 2 (causal: 0 <= -t < W) */
        const int32_t back = ma_min32(p->causal ? p->dilated - 1 : p->dilated / 2, seq);
        const int64_t last = p->causal ? i : (int64_t)i + (int64_t)back * p->dilation;
        s.first = i - ma_min32(back, i / p->dilation) * p->dilation;
        s.step = p->dilation;
        s.end = last + 1 < end ? (int32_t)(last + 1) : end;
    } else if (p->block > 0 && p->block_stride > 0) { /* key blocks kb with (qb - kb) % S == 0 */
        s.first = (i / p->block) % p->block_stride * p->block;
        s.step = p->block_stride * p->block;
        s.run = p->block;
        s.end = end;
    }
    return s;
}

/* Where a walk over a set's runs is: every key below pos is done, range is the next range to emit. */
typedef struct {
    int32_t pos, range;
} ma_key_cursor;

/* The next run of the set's keys after the cursor, in ascending order: keys start, start + step, ...,
 * count of them (count >= 1). Returns 0 when the set is exhausted. Progression keys inside a range are the
 * range's, so every key comes exactly once. */
static inline int ma_key_next_run(const ma_key_set *s, ma_key_cursor *c, int32_t *start, int32_t *count,
                                  int32_t *step) {
    for (;;) {
        const int32_t gap_end = c->range < s->ranges ? s->lo[c->range] : s->end;
        const int32_t limit = ma_min32(gap_end, s->end);
        if (s->step > 0 && c->pos < limit) { /* progression keys before the next range */
            const int32_t behind = c->pos - s->first - s->run + 1;
            const int32_t element = s->first + (behind > 0 ? (behind + s->step - 1) / s->step * s->step : 0);
            const int32_t from = ma_max32(element, c->pos);
            if (from < limit) {
                if (s->run == 1) {
                    *start = from;
                    *step = s->step;
                    *count = (limit - 1 - from) / s->step + 1;
                    c->pos = limit;
                } else {
                    *start = from;
                    *step = 1;
                    *count = ma_min32(element + s->run, limit) - from;
                    c->pos = from + *count;
                }
                return 1;
            }
            c->pos = limit;
        }
        if (c->range >= s->ranges) return 0;
        *start = s->lo[c->range];
        *count = s->hi[c->range] - s->lo[c->range];
        *step = 1;
        c->pos = s->hi[c->range];
        ++c->range;
        return 1;
    }
}

/* At least as many keys as any query of a sequence of seq tokens sees (a bound for fast paths). */
static inline int32_t ma_attention_max_keys(const ma_attention_pattern *p, int32_t seq) {
    int64_t keys = 0;
    if (!ma_pattern_restricts(p) || p->global_tokens > 0) return seq;
    if (p->window > 0) keys += (int64_t)p->window + 1;
    if (p->stride > 0) keys += seq / p->stride + 1;
    if (p->dilated > 0) keys += (int64_t)p->dilated + 1;
    if (p->block > 0) {
        keys += (2 * (int64_t)ma_min32(p->block_local, seq) + 1) * p->block;
        if (p->block_stride > 0) keys += ((int64_t)seq / ((int64_t)p->block * p->block_stride) + 1) * p->block;
    }
    return keys < seq ? (int32_t)keys : seq;
}

/* The span [*first, *end) of the keys any query row of [i0, i0 + rows) sees. */
static inline void ma_tile_span(const ma_attention_pattern *p, int32_t seq, int32_t i0, int32_t rows, int32_t *first,
                                int32_t *end) {
    int32_t r;
    *first = seq;
    *end = 0;
    for (r = 0; r < rows; ++r) {
        const ma_key_set s = ma_attention_keys(p, seq, i0 + r);
        if (s.ranges > 0) {
            *first = ma_min32(*first, s.lo[0]);
            *end = ma_max32(*end, s.hi[s.ranges - 1]);
        }
        if (s.step > 0 && s.first < s.end) {
            *first = ma_min32(*first, s.first);
            *end = ma_max32(*end, s.end);
        }
    }
}

/* Whether query i sees key j: the rule itself (AttentionPattern.allowed), which the portable kernels apply to
 * every key of their tile's span. */
static inline int ma_attention_sees(const ma_attention_pattern *p, int32_t i, int32_t j) {
    const int32_t d = i - j, distance = d < 0 ? -d : d;
    if (p->causal && d < 0) return 0;
    if (!ma_pattern_restricts(p) || i < p->global_tokens || j < p->global_tokens) return 1;
    if (p->window > 0 && (p->causal ? d < p->window : distance <= p->window / 2)) return 1;
    if (p->stride > 0 && distance % p->stride == 0) return 1;
    if (p->dilated > 0 && distance % p->dilation == 0 &&
        distance / p->dilation <= (p->causal ? p->dilated - 1 : p->dilated / 2)) {
        return 1;
    }
    if (p->block > 0) {
        const int32_t blocks = i / p->block - j / p->block, apart = blocks < 0 ? -blocks : blocks;
        if (apart <= p->block_local || (p->block_stride > 0 && apart % p->block_stride == 0)) return 1;
    }
    return 0;
}

#endif
