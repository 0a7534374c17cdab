/* QAttention with the DSP extension: the same results as ref/attention_s8.c (the online softmax of
 * ma_attention_s8_online.h: keys one at a time in ascending order), faster.
 *
 * Each query row keeps its running maximum, its running sum and head_dim accumulators and takes its keys in
 * ascending order, so rows may be scheduled in any grouping; here they go one at a time. For head sizes 8 and
 * 16 the loop over a row's keys is assembly (`ma_attn_keys8/16`), with the row's state in registers and in one
 * context block (`key_ctx`):
 * - q - q_zp is extended once per row to halfword pairs in the order SXTB16 gives k's bytes, so
 *   s' = sum (q - q_zp) k is SMUAD/SMLAD on SXTB16 of k. The true logit is s = s' - k_zp sum (q - q_zp); the
 *   loop works with s' and m' = m + k_zp sum (q - q_zp) throughout, since only differences of logits matter.
 * - The table index t(m - s) = min(255, requant(m - s)) is floor((K + (m' - s') M) / 2^(31 + right)) with the
 *   rounding of both requantization steps folded into K (ma_dsp.h); base = K + m' M is kept and renewed when the
 *   maximum rises, so a key costs one SMLAL, a shift, USAT and the table load. The clamp of the gap is skipped
 *   because t(INT32_MAX) is already 255 (t is monotone: the clamped gap and the gap itself both give 255).
 * - SMLABB/SMLATB multiply the entry with SXTB16 pairs of the raw v into int32 accumulators: -128 sum <= acc <=
 *   127 sum and sum <= keys 2^15, so acc stays int32 while a row sees at most MA_INT32_KEYS keys (a rescale never
 *   grows it). LDM/STM move the four accumulators of a word of v at once.
 * - An entry of 2^15 (a logit within half a table step of the maximum) does not fit SMLABB's signed halfword:
 *   it is added as two halves of 2^14, out of the loop's straight path.
 * - A key that raises the maximum (rare after the first few) leaves the loop; C rescales by exp(m - s) exactly
 *   as the reference does, adds that key and re-enters the loop.
 * Anything else (other head sizes, more keys a row, a left-shifting or non-saturating score multiplier) runs the
 * portable algorithm. */
#include <stddef.h>

#include "ma_attention_s8_online.h"
#include "ma_dsp.h"

#define MA_INT32_KEYS 512 /* acc in [-128 * 512 * 2^15, 127 * 512 * 2^15] = [-2^31, 2^31): int32 */

int32_t ma_attention_s8_scratch(const ma_attention_s8_params *p) {
    return ma_attention_s8_scratch_bytes(p);
}

/* The assembly loop's context; r0 points at accs + 12, the offsets below are the assembly's. The head's
 * accumulators end there: head size 8 uses accs[8..15], 16 uses accs[0..15] (acc_of). */
typedef struct {
    int32_t accs[16];      /*                                 r0 - 48 ... r0 + 12 */
    int32_t qp[8];         /* q - q_zp pairs                  r0 + 16 */
    int64_t base;          /* K + m' M                        r0 + 48 */
    int32_t neg_mult;      /* -M                              r0 + 56 */
    int32_t index_shift;   /* right - 1                       r0 + 60 */
    int32_t v_off;         /* v - k, bytes                    r0 + 64 */
    int32_t stride;        /* bytes from one key to the next  r0 + 68 */
    const int8_t *k;       /* the next key                    r0 + 72 */
    int32_t count;         /* keys left                       r0 + 76 */
    int32_t m;             /* m'                              r0 + 80 */
    uint32_t sum;          /*                                 r0 + 84 */
    int32_t mult;          /* M                               r0 + 88 */
    const uint16_t *table; /*                                 r0 + 92 */
    int64_t k_index;       /* K, the index's folded rounding  r0 + 96 */
    int32_t key_bytes;     /* bytes from one key row to the next (C only, below) */
    int32_t dim;           /* the head size, 8 or 16 (C only) */
} key_ctx;

#define MA_CTX_OFFSET(field, value) \
    typedef char ma_check_##field[(offsetof(key_ctx, field) - 12 * sizeof(int32_t) == (value)) ? 1 : -1]
MA_CTX_OFFSET(qp, 16);
MA_CTX_OFFSET(base, 48);
MA_CTX_OFFSET(neg_mult, 56);
MA_CTX_OFFSET(index_shift, 60);
MA_CTX_OFFSET(v_off, 64);
MA_CTX_OFFSET(stride, 68);
MA_CTX_OFFSET(k, 72);
MA_CTX_OFFSET(count, 76);
MA_CTX_OFFSET(m, 80);
MA_CTX_OFFSET(sum, 84);
MA_CTX_OFFSET(mult, 88);
MA_CTX_OFFSET(k_index, 96);
MA_CTX_OFFSET(table, 92);

/* Run the keys from ctx->k while ctx->count > 0 (at least one), then store m' and the sum. A key that raises the
 * maximum rescales the sum and the accumulators in place (label 8) and is added like any other. r0 = ctx->accs
 * + 12. Registers: r1 key, r2 count, r3 m', r4 sum, r6 table, r7 the key's entry e, lr s'; r5 and r8-r12 are
 * scratch. */
void ma_attn_keys8(int32_t *acc);
void ma_attn_keys16(int32_t *acc);

#define MA_KEYS_ENTRY(name)                                                                                    \
    MA_ASM_FUNCTION_BEGIN(name)                                                                              \
    "  push {r4-r11, lr}\n"                                                                                  \
    "  ldr r1, [r0, #72]\n"                                                                                  \
    "  ldr r2, [r0, #76]\n"                                                                                  \
    "  ldr r3, [r0, #80]\n"                                                                                  \
    "  ldr r4, [r0, #84]\n"                                                                                  \
    "  ldr r6, [r0, #92]\n"                                                                                  \
    "  cmp r2, #0\n"                                                                                         \
    "  ble 9f\n"                                                                                             \
    "1:\n"
/* s' += the products of k word W (k at r1) with qp pairs 2W, 2W + 1; FIRST: s' starts at 0 (SMUAD) */
#define MA_QK_WORD(W, OP, ACC)                                                                                 \
    "  ldr r8, [r1, #" #W "*4]\n"                                                                            \
    "  ldrd r10, r11, [r0, #16+" #W "*8]\n"                                                                  \
    "  sxtb16 r12, r8\n"                                                                                     \
    "  " OP " lr, r10, r12" ACC "\n"                                                                         \
    "  sxtb16 r8, r8, ror #8\n"                                                                              \
    "  smlad lr, r11, r8, lr\n"
/* t = USAT8(high(base + s' (-M)) >> (right - 1)), e = table[t]; e = 0 adds nothing (SKIP: CBZ where the end
 * of the loop is near enough, CMP and BEQ otherwise) */
#define MA_ENTRY(SKIP)                                                                                         \
    "  cmp lr, r3\n"                                                                                         \
    "  bgt 8f\n"                                                                                             \
    "  ldrd r8, r9, [r0, #48]\n"                                                                             \
    "  ldr r5, [r0, #56]\n"                                                                                  \
    "  smlal r8, r9, lr, r5\n"                                                                               \
    "  ldr r5, [r0, #60]\n"                                                                                  \
    "  asr r9, r9, r5\n"                                                                                     \
    "  usat r9, #8, r9\n"                                                                                    \
    "  ldrh r7, [r6, r9, lsl #1]\n"                                                                          \
    SKIP                                                                                                     \
    "  add r4, r4, r7\n"                                                                                     \
    "  cmp r7, #32768\n"                                                                                     \
    "  beq 6f\n"
/* the four accumulators (a0..a3 in r9..r12) of a word of v (register VW), moved by LDM/STM at r0 (FORM ia) or
 * just below it (db), or by LDRD/STRD at a negative offset; SXTB16 pairs (v0, v2) and (v1, v3) */
#define MA_PV_MAC4(VW)                                                                                        \
    "  sxtb16 lr, " VW "\n"                                                                                   \
    "  smlabb r9, lr, r7, r9\n"                                                                               \
    "  smlatb r11, lr, r7, r11\n"                                                                             \
    "  sxtb16 lr, " VW ", ror #8\n"                                                                           \
    "  smlabb r10, lr, r7, r10\n"                                                                             \
    "  smlatb r12, lr, r7, r12\n"
#define MA_PV_WORD_LDM(FORM, VW)                                                                              \
    "  ldm" FORM " r0, {r9, r10, r11, r12}\n" MA_PV_MAC4(VW) "  stm" FORM " r0, {r9, r10, r11, r12}\n"
#define MA_PV_WORD_LDRD(OFFSET, VW)                                                                           \
    "  ldrd r9, r10, [r0, #" OFFSET "]\n"                                                                     \
    "  ldrd r11, r12, [r0, #" OFFSET "+8]\n"                                                                  \
    MA_PV_MAC4(VW)                                                                                            \
    "  strd r9, r10, [r0, #" OFFSET "]\n"                                                                     \
    "  strd r11, r12, [r0, #" OFFSET "+8]\n"
/* next key; at the end store m' and sum and return 0; a rise stores the position and s' and returns 1; an entry
 * of 2^15 runs PV (the accumulation of one key) twice with 2^14 */
#define MA_KEYS_EXIT(name, PV, RESCALE)                                                                       \
    "7:\n"                                                                                                    \
    "  ldr r5, [r0, #68]\n"                                                                                   \
    "  add r1, r1, r5\n"                                                                                      \
    "  subs r2, r2, #1\n"                                                                                     \
    "  bne 1b\n"                                                                                              \
    "9:\n"                                                                                                    \
    "  str r3, [r0, #80]\n"                                                                                   \
    "  str r4, [r0, #84]\n"                                                                                   \
    "  pop {r4-r11, pc}\n"                                                                                    \
    "8:\n"                                                                                                    \
    "  ldr r5, [r0, #88]\n"                                                                                   \
    "  sub r7, lr, r3\n"                                                                                      \
    "  ldrd r8, r9, [r0, #96]\n"                                                                              \
    "  umlal r8, r9, r7, r5\n"                                                                                \
    "  ldr r10, [r0, #60]\n"                                                                                  \
    "  asr r9, r9, r10\n"                                                                                     \
    "  usat r9, #8, r9\n"                                                                                     \
    "  ldrh r9, [r6, r9, lsl #1]\n"                                                                           \
    "  mov r3, lr\n"                                                                                          \
    "  ldrd r10, r11, [r0, #96]\n"                                                                            \
    "  smlal r10, r11, r3, r5\n"                                                                              \
    "  strd r10, r11, [r0, #48]\n"                                                                            \
    "  cmp r4, #0\n"                                                                                          \
    "  beq 11f\n"                                                                                             \
    "  cmp r9, #32768\n"                                                                                      \
    "  beq 11f\n"                                                                                             \
    "  umull r10, r11, r4, r9\n"                                                                              \
    "  adds r10, r10, #16384\n"                                                                               \
    "  adc r11, r11, #0\n"                                                                                    \
    "  lsr r10, r10, #15\n"                                                                                   \
    "  orr r4, r10, r11, lsl #17\n"                                                                           \
    RESCALE                                                                                                   \
    "11:\n"                                                                                                   \
    "  ldrh r7, [r6]\n"                                                                                       \
    "  add r4, r4, r7\n"                                                                                      \
    "  cmp r7, #32768\n"                                                                                      \
    "  beq 6f\n"                                                                                              \
    "  b 5b\n"                                                                                                \
    "6:\n"                                                                                                    \
    "  lsr r7, r7, #1\n"                                                                                      \
    PV                                                                                                        \
    PV                                                                                                        \
    "  b 7b\n"                                                                                                \
    MA_ASM_FUNCTION_END(name)

/* acc = (acc f + 2^14) >> 15 (the reference's ma_rshift_round64) for the four accumulators r10, r11, r12, lr of
 * one word, f in r9, moved by LDM/STM (FORM ia at r0, db below it) or LDRD/STRD at a negative offset */
#define MA_RESCALE_ACC(A)                                                                                     \
    "  smull r7, r8, " A ", r9\n"                                                                            \
    "  adds r7, r7, #16384\n"                                                                                \
    "  adc r8, r8, #0\n"                                                                                     \
    "  lsr r7, r7, #15\n"                                                                                    \
    "  orr " A ", r7, r8, lsl #17\n"
#define MA_RESCALE_4 MA_RESCALE_ACC("r10") MA_RESCALE_ACC("r11") MA_RESCALE_ACC("r12") MA_RESCALE_ACC("lr")
#define MA_RESCALE_LDM(FORM)                                                                                  \
    "  ldm" FORM " r0, {r10, r11, r12, lr}\n" MA_RESCALE_4 "  stm" FORM " r0, {r10, r11, r12, lr}\n"
#define MA_RESCALE_LDRD(OFFSET)                                                                               \
    "  ldrd r10, r11, [r0, #" OFFSET "]\n"                                                                   \
    "  ldrd r12, lr, [r0, #" OFFSET "+8]\n"                                                                  \
    MA_RESCALE_4                                                                                             \
    "  strd r10, r11, [r0, #" OFFSET "]\n"                                                                   \
    "  strd r12, lr, [r0, #" OFFSET "+8]\n"

#define MA_PV8                                                                                                 \
    "  ldr r5, [r0, #64]\n"                                                                                  \
    "  add r5, r5, r1\n"                                                                                     \
    "  ldr r8, [r5]\n"                                                                                       \
    "  ldr r5, [r5, #4]\n"                                                                                   \
    MA_PV_WORD_LDM("db", "r8")                                                                               \
    MA_PV_WORD_LDM("ia", "r5")
#define MA_PV16                                                                                                \
    "  ldr r8, [r0, #64]\n"                                                                                  \
    "  add r8, r8, r1\n"                                                                                     \
    "  ldr r5, [r8]\n"                                                                                       \
    MA_PV_WORD_LDRD("-48", "r5")                                                                             \
    "  ldr r5, [r8, #4]\n"                                                                                   \
    MA_PV_WORD_LDRD("-32", "r5")                                                                             \
    "  ldr r5, [r8, #8]\n"                                                                                   \
    MA_PV_WORD_LDM("db", "r5")                                                                               \
    "  ldr r5, [r8, #12]\n"                                                                                  \
    MA_PV_WORD_LDM("ia", "r5")

__asm__(MA_KEYS_ENTRY(ma_attn_keys8)
        MA_QK_WORD(0, "smuad", "")
        MA_QK_WORD(1, "smlad", ", lr")
        MA_ENTRY("  cbz r7, 7f\n")
        "5:\n"
        MA_PV8
        MA_KEYS_EXIT(ma_attn_keys8, MA_PV8, MA_RESCALE_LDM("db") MA_RESCALE_LDM("ia")));

__asm__(MA_KEYS_ENTRY(ma_attn_keys16)
        MA_QK_WORD(0, "smuad", "")
        MA_QK_WORD(1, "smlad", ", lr")
        MA_QK_WORD(2, "smlad", ", lr")
        MA_QK_WORD(3, "smlad", ", lr")
        MA_ENTRY("  cmp r7, #0\n  beq 7f\n")
        "5:\n"
        MA_PV16
        MA_KEYS_EXIT(ma_attn_keys16, MA_PV16, MA_RESCALE_LDRD("-48") MA_RESCALE_LDRD("-32") MA_RESCALE_LDM("db")
                     MA_RESCALE_LDM("ia")));

/* The head's accumulators, in order: they end at accs + 16. */
static inline int32_t *acc_of(key_ctx *c, int32_t dim) {
    return c->accs + 16 - dim;
}

static inline int32_t table_index(int64_t t, int32_t index_shift) {
    return __usat((int32_t)(t >> 32) >> index_shift, 8);
}

/* Keys from, from + step, ... (count of them) of the current row, k at the head's first column. A band pattern's
 * keys are all one apart: with `contiguous` the step (1) is already in c->stride, set once per call. */
static inline void row_keys(key_ctx *c, const int8_t *k, int32_t from, int32_t count, int32_t step,
                            int contiguous) {
    if (count > 0) {
        c->k = k + from * c->key_bytes;
        if (!contiguous) c->stride = step * c->key_bytes;
        c->count = count;
        if (c->dim == 8) {
            ma_attn_keys8(c->accs + 12);
        } else {
            ma_attn_keys16(c->accs + 12);
        }
    }
}

/* The same keys through the row's mask: each unbroken stretch of keys the mask keeps is one loop. Inlined, so
 * that a band pattern's calls (step 1, contiguous) compile to the plain index loops. */
static inline void row_masked(key_ctx *c, const int8_t *k, const uint8_t *mask, int32_t from, int32_t count,
                              int32_t step, int contiguous) {
    int32_t t = 0, kept;
    while (t < count) {
        for (; t < count && !mask[from + t * step]; ++t) {
        }
        for (kept = t; kept < count && mask[from + kept * step]; ++kept) {
        }
        row_keys(c, k, from + t * step, kept - t, step, contiguous);
        t = kept;
    }
}

/* q - q_zp as halfword pairs in SXTB16 order; the accumulators and the sum zeroed; m' below every s'. */
static void row_start(key_ctx *c, const int8_t *q, const ma_attention_s8_params *p) {
    const int32_t qzz = (int32_t)(((uint32_t)p->q_zp & 0xFFFFu) | ((uint32_t)p->q_zp << 16));
    int32_t d;
    for (d = 0; d < p->head_dim; d += 4) {
        const int32_t w = ma_word(q + d);
        c->qp[d / 2] = __ssub16(__sxtb16(w), qzz);
        c->qp[d / 2 + 1] = __ssub16(ma_sxtb16_ror8(w), qzz);
    }
    memset(acc_of(c, p->head_dim), 0, (size_t)p->head_dim * sizeof(int32_t));
    c->m = INT32_MIN; /* |s'| <= 16 * 255 * 128: the first key always rises (from zeros, as in the reference) */
    c->sum = 0;
    c->base = 0;
}

/* out = sat8(requant(256 (acc - v_zp sum) / sum) + out_zp) (row_output of the portable kernel). With sum < 2^23
 * (fewer than 256 keys) acc - v_zp sum fits int32; then one SMULL per element, and the small-operand
 * requantization (|o| <= 2^16) when the output multiplier allows it (`out`, prepared once per call). */
static void row_finish(key_ctx *c, const ma_attention_s8_params *p, const ma_requant_params *out_q,
                       int8_t *out) {
    const row_scale scale = row_scale_of(c->sum);
    const int32_t *acc = acc_of(c, p->head_dim), inv = (int32_t)scale.inv, shift = scale.shift;
    int32_t d;
    if (ma_requant_fast_small(p->out_mult, p->out_shift) && c->sum < (1u << 23)) {
        const int32_t zsum = p->v_zp * (int32_t)c->sum;
        for (d = 0; d < p->head_dim; ++d) {
            const int32_t o = (int32_t)(((int64_t)((acc[d] - zsum) >> shift) * inv + (1 << 22)) >> 23);
            out[d] = ma_dsp_sat8(ma_dsp_requant_small(2 * o, out_q), p->out_zp);
        }
    } else {
        for (d = 0; d < p->head_dim; ++d) out[d] = row_output(acc[d] - (int64_t)p->v_zp * c->sum, scale, p);
    }
}

/* The assembly's conditions: head size 8 or 16, at most MA_INT32_KEYS keys a row, and a score multiplier whose
 * index is one SMLAL and a right shift (shift < 0) and saturates before INT32_MAX. */
static int fast_path(const ma_attention_s8_params *p) {
    const exp_index_params e = exp_index_setup(p);
    return (p->head_dim == 8 || p->head_dim == 16) && ma_attention_max_keys(&p->pattern, p->seq) <= MA_INT32_KEYS &&
           p->score_shift < 0 && exp_index((uint32_t)INT32_MAX, &e) >= 255;
}

void ma_attention_s8(const int8_t *q, const int8_t *k, const int8_t *v, const ma_attention_s8_params *p,
                     int64_t *scratch, int8_t *out) {
    const int32_t seq = p->seq, dim = p->head_dim, stride = p->heads * p->head_dim;
    const ma_attention_pattern pattern = p->pattern; /* a local copy: the loop's calls cannot change it */
    const int band = ma_pattern_is_band(&pattern);
    key_ctx c;
    ma_requant_params out_q;
    int32_t h, i;
    if (!fast_path(p)) {
        ma_attention_s8_online(q, k, v, p, scratch, out);
        return;
    }
    c.neg_mult = -p->score_mult;
    c.mult = p->score_mult;
    c.k_index = ((int64_t)1 << 30) + ((int64_t)1 << (30 - p->score_shift));
    c.index_shift = -p->score_shift - 1;
    c.v_off = (int32_t)(v - k);
    c.key_bytes = stride;
    c.stride = stride;
    c.dim = dim;
    c.table = p->exp_table;
    out_q = ma_requant_prepare_small(p->out_mult, p->out_shift);
    for (h = 0; h < p->heads; ++h) {
        const int8_t *kh = k + h * dim;
        for (i = 0; i < seq; ++i) {
            const uint8_t *mask = p->mask ? p->mask + i * seq : NULL;
            row_start(&c, q + i * stride + h * dim, p);
            if (band) { /* a window and global tokens: two ranges, no key set to build */
                int32_t globals_end, lo, hi;
                ma_band_keys(&pattern, seq, i, &globals_end, &lo, &hi);
                if (mask) {
                    row_masked(&c, kh, mask, 0, globals_end, 1, 1);
                    row_masked(&c, kh, mask, lo, hi - lo, 1, 1);
                } else {
                    row_keys(&c, kh, 0, globals_end, 1, 1);
                    row_keys(&c, kh, lo, hi - lo, 1, 1);
                }
            } else {
                const ma_key_set keys = ma_attention_keys(&pattern, seq, i);
                ma_key_cursor cursor = {0, 0};
                int32_t start, count, step;
                while (ma_key_next_run(&keys, &cursor, &start, &count, &step)) {
                    if (mask) {
                        row_masked(&c, kh, mask, start, count, step, 0);
                    } else {
                        row_keys(&c, kh, start, count, step, 0);
                    }
                }
            }
            row_finish(&c, p, &out_q, out + i * stride + h * dim);
        }
    }
}
