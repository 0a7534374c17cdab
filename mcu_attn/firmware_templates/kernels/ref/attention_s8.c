/* QAttention, portable: the online-softmax algorithm of ma_attention_s8_online.h, which is the specification
 * (reference: mcu_attn/ir/ops/attention.py qattention). */
#include "ma_attention_s8_online.h"

int32_t ma_attention_s8_scratch(const ma_attention_s8_params *p) {
    return ma_attention_s8_scratch_bytes(p);
}

void ma_attention_s8(const int8_t *q, const int8_t *k, const int8_t *v, const ma_attention_s8_params *p,
                     int64_t *scratch, int8_t *out) {
    ma_attention_s8_online(q, k, v, p, scratch, out);
}
