/* QEarlyExit: the confidence test of an early-exit head and, when it passes, its logits as the output.
 * Reference: mcu_attn/ir/ops/early_exit.py qearly_exit. sum_j gap_table[max - early_j] is 2^15 / p_max in Q15
 * (the largest logit contributes gap_table[0] = 2^15), so p_max >= threshold is sum <= bound, no division. */
#include "ma_kernels_dynamic.h"
#include "ma_kernels_s8.h"

int32_t ma_early_exit_s8(const int8_t *early, const ma_early_exit_s8_params *p, int8_t *out) {
    int32_t i, top = -128;
    uint32_t sum = 0;
    for (i = 0; i < p->count; ++i) {
        if (early[i] > top) top = early[i];
    }
    for (i = 0; i < p->count; ++i) {
        sum += p->gap_table[top - early[i]]; /* count * 2^15 <= 2^31 for any head below 2^16 classes */
    }
    if (sum > (uint32_t)p->bound) return 0;
    for (i = 0; i < p->count; ++i) {
        out[i] = ma_sat8((int64_t)ma_requantize((int64_t)early[i] - p->early_zp, p->mult, p->shift) + p->out_zp);
    }
    return 1;
}
