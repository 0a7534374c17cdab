/* The keys a query may see: the attention pattern's C descriptor, shared by the integer and float kernels.
 * Mirrors mcu_attn/ir/pattern.py AttentionPattern (its c_fields() are this struct's fields, in order): window 0
 * sees every key; a local window sees |i - j| <= W/2 (causal: i - W < j <= i); the first global_tokens tokens see
 * every key and every query sees them; causal keeps j <= i throughout. The set is at most two ascending index
 * ranges: the global keys left of the band, [0, globals_end), and the band [lo, hi). */
#ifndef MA_ATTENTION_KEYS_H
#define MA_ATTENTION_KEYS_H

#include <stdint.h>

typedef struct {
    int32_t window, causal, global_tokens;
} ma_attention_pattern;

typedef struct {
    int32_t globals_end, lo, hi;
} ma_key_ranges;

static inline ma_key_ranges ma_attention_keys(const ma_attention_pattern *p, int32_t seq, int32_t i) {
    ma_key_ranges r;
    const int32_t window = p->window, global_tokens = p->global_tokens;
    const int32_t last = p->causal ? i : seq - 1;
    r.lo = 0;
    r.hi = last + 1;
    r.globals_end = 0;
    if (window <= 0 || i < global_tokens) return r; /* dense row, or a global token: every key */
    if (p->causal) {
        r.lo = window - 1 >= i ? 0 : i - (window - 1); /* i - W < j <= i */
    } else {
        const int32_t half = window / 2; /* |i - j| <= W / 2 */
        r.lo = half >= i ? 0 : i - half;
        r.hi = half >= seq - 1 - i ? seq : i + half + 1;
    }
    r.globals_end = global_tokens < r.lo ? global_tokens : r.lo; /* global keys left of the band */
    return r;
}

/* At least as many keys as any query of a sequence of seq tokens sees (a bound for fast paths). */
static inline int32_t ma_attention_max_keys(const ma_attention_pattern *p, int32_t seq) {
    if (p->window <= 0 || p->global_tokens > 0) return seq;
    return p->window + 1 < seq ? p->window + 1 : seq;
}

/* Whether key j is in the ranges. */
static inline int ma_key_visible(const ma_key_ranges *r, int32_t j) {
    return j < r->globals_end || (j >= r->lo && j < r->hi);
}

/* The ranges of query rows [i0, i0 + rows) into keys[], and the span [*first, *end) of keys any of them sees. */
static inline void ma_tile_keys(const ma_attention_pattern *p, int32_t seq, int32_t i0, int32_t rows,
                                ma_key_ranges *keys, int32_t *first, int32_t *end) {
    int32_t r;
    *first = seq;
    *end = 0;
    for (r = 0; r < rows; ++r) {
        keys[r] = ma_attention_keys(p, seq, i0 + r);
        if (keys[r].globals_end > 0) *first = 0;
        if (keys[r].lo < *first) *first = keys[r].lo;
        if (keys[r].hi > *end) *end = keys[r].hi;
    }
}

#endif
