/* Kernels of the input-dependent techniques (docs/dynamic.md): early exit and token pruning. Numpy references:
 * mcu_attn/ir/ops/early_exit.py and token_select.py. Every kernel here matches its reference bit for bit. */
#ifndef MA_KERNELS_DYNAMIC_H
#define MA_KERNELS_DYNAMIC_H

#include <stdint.h>

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

#ifdef __cplusplus
}
#endif

#endif /* MA_KERNELS_DYNAMIC_H */
