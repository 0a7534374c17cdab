/* QAttentionStep: one new position of a causal local attention over a ring buffer of the positions before it.
 * Reference: mcu_attn/ir/ops/attention_step.py qattention_step (QAttention's last row). The keys are folded in
 * from the oldest to the newest with the online softmax of ma_attention_s8_online.h, one at a time, so the
 * result is bit-identical to QAttention's row over the same positions in ascending order. */
#include <string.h>

#include "ma_attention_s8_online.h"
#include "ma_kernels_dynamic.h"

int32_t ma_attention_step_s8_scratch(const ma_attention_s8_params *p) {
    return 8 * p->head_dim;
}

void ma_attention_step_s8(const int8_t *q, const int8_t *k, const int8_t *v, const ma_attention_s8_params *p,
                          uint8_t *ring, int64_t *scratch, int8_t *out) {
    const int32_t window = p->pattern.window, dim = p->head_dim, width = p->heads * p->head_dim;
    int32_t *slots = (int32_t *)ring; /* [0] the next slot to write, [1] the slots filled */
    int8_t *keys = (int8_t *)(ring + 8), *values = keys + (int64_t)window * width;
    const exp_index_params gaps = exp_index_setup(p);
    int32_t h, t, d, first;
    memcpy(keys + (int64_t)slots[0] * width, k, (size_t)width);
    memcpy(values + (int64_t)slots[0] * width, v, (size_t)width);
    slots[0] = slots[0] + 1 == window ? 0 : slots[0] + 1;
    if (slots[1] < window) ++slots[1];
    first = slots[0] - slots[1] < 0 ? slots[0] - slots[1] + window : slots[0] - slots[1]; /* the oldest slot */
    for (h = 0; h < p->heads; ++h) {
        const int8_t *qh = q + (int64_t)h * dim;
        int32_t top = INT32_MIN;
        uint32_t sum = 0;
        for (d = 0; d < dim; ++d) scratch[d] = 0;
        for (t = 0; t < slots[1]; ++t) {
            const int32_t slot = first + t < window ? first + t : first + t - window;
            const int8_t *kj = keys + (int64_t)slot * width + (int64_t)h * dim;
            int32_t s = 0;
            for (d = 0; d < dim; ++d) s += ((int32_t)qh[d] - p->q_zp) * ((int32_t)kj[d] - p->k_zp);
            ma_online_fold(s, values + (int64_t)slot * width + (int64_t)h * dim, dim, p->exp_table, &gaps, &top,
                           &sum, scratch);
        }
        finish_row(scratch, sum, p, out + (int64_t)h * dim);
    }
}

int32_t ma_event_s8(const int8_t *x, int32_t count, int32_t delta, int32_t settle, int8_t *last, int32_t *counters) {
    int32_t i, changed = !counters[0];
    for (i = 0; i < count && !changed; ++i) {
        const int32_t difference = (int32_t)x[i] - last[i];
        changed = (difference < 0 ? -difference : difference) >= delta;
    }
    if (changed) { /* a new anchor: the steady run starts again */
        memcpy(last, x, (size_t)count);
        counters[0] = 1;
        counters[1] = 1;
        return 1;
    }
    if (counters[1] < settle) { /* unchanged, but the receptive field still holds older inputs */
        ++counters[1];
        return 1;
    }
    return 0;
}
