/* Kernels of the input-dependent techniques (docs/dynamic.md): early exit, token pruning and streaming attention.
 * Numpy references: mcu_attn/ir/ops/early_exit.py, token_select.py and attention_step.py. Every kernel here
 * matches its reference bit for bit. */
#ifndef MA_KERNELS_DYNAMIC_H
#define MA_KERNELS_DYNAMIC_H

#include <stdint.h>

#include "ma_kernels_s8.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int32_t count;               /* logits of the head (and of the model's output) */
    int32_t early_zp, mult, shift, out_zp;
    int32_t bound;               /* confident when sum_j gap_table[max - early_j] <= bound */
    const uint16_t *gap_table;   /* [256], Q15: round(2^15 exp(-s g)) for int8 logit gaps g */
} ma_early_exit_s8_params;

/* QEarlyExit's decision: when the head's logits `early` are confident, write them requantized to the output's
 * parameters into out (out[i] = sat8(requant(early[i] - early_zp, mult, shift) + out_zp)) and return 1; else
 * return 0 and leave out alone. */
int32_t ma_early_exit_s8(const int8_t *early, const ma_early_exit_s8_params *p, int8_t *out);

typedef struct {
    int32_t seq, width;          /* x and out rows: seq in, keep + 1 out, width int8 values each */
    int32_t heads, head_dim, keep, cls, q_zp, k_zp, score_mult, score_shift;
    const uint16_t *exp_table;   /* [256], Q15: the attention's table */
} ma_token_select_s8_params;

/* QTokenSelect: out = the class token's row of x, then the keep rows its attention (q, k: [seq][heads *
 * head_dim]) weights most, in their original order. scratch: ma_token_select_s8_scratch bytes, 4-aligned. */
void ma_token_select_s8(const int8_t *x, const int8_t *q, const int8_t *k, const ma_token_select_s8_params *p,
                        uint32_t *scratch, int8_t *out);

/* Scratch bytes ma_token_select_s8 needs: 9 seq, rounded up to 8. */
int32_t ma_token_select_s8_scratch(const ma_token_select_s8_params *p);

/* QAttentionStep: the attention output of one new position of a causal local attention (p->pattern.window keys: the
 * position and the window - 1 before it). ring is the state of this attention in SRAM, 8-byte aligned: int32
 * next slot, int32 slots filled, then window slots of keys and window slots of values (heads * head_dim int8
 * each). The new k and v go into the next slot; the query then takes the filled slots from the oldest to the
 * newest with QAttention's online softmax, so the row equals QAttention's last row over the same positions. All
 * zeros is the empty state. scratch: head_dim int64. */
void ma_attention_step_s8(const int8_t *q, const int8_t *k, const int8_t *v, const ma_attention_s8_params *p,
                          uint8_t *ring, int64_t *scratch, int8_t *out);

/* Scratch bytes ma_attention_step_s8 needs: 8 head_dim. */
int32_t ma_attention_step_s8_scratch(const ma_attention_s8_params *p);

/* The event test of ma_step: 1 (compute the step) or 0 (skip it). counters[0] says whether the stream has an
 * anchor input (last), counters[1] how many computed steps in a row stayed within delta of it. An input with
 * some |x[i] - last[i]| >= delta (or the first input) becomes the anchor and is computed; an input within delta
 * is still computed until `settle` steps in a row were (the receptive field then holds only such inputs), and
 * skipped after that. delta 0 computes every step. */
int32_t ma_event_s8(const int8_t *x, int32_t count, int32_t delta, int32_t settle, int8_t *last, int32_t *counters);

#ifdef __cplusplus
}
#endif

#endif /* MA_KERNELS_DYNAMIC_H */
