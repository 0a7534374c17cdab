/* QAttention with seq queries over kv_seq keys of another count (Linformer: the keys and values projected along
 * the sequence to kv_seq rows, mcu_attn/passes/linformer.py). Every query sees every key (no pattern, no mask),
 * in ascending order, with the online softmax of ma_attention_s8_online.h: per query the running maximum, the
 * running sum of exp-table entries and head_dim int64 accumulators, rescaled when the maximum rises, and one
 * reciprocal at the end of the row. So the result is QAttention's contract (reference:
 * mcu_attn/ir/ops/attention.py qattention with k and v of kv_seq rows) and the work is
 * O(seq * kv_seq * head_dim) per head: linear in seq for a fixed kv_seq. Query rows are taken query_tile at a
 * time (each key row is read once per tile); scratch is ma_attention_s8_scratch's: the tile size changes the
 * schedule, never the result. p->seq is the query count; the pattern and the mask of p are not read. The
 * algorithm is ma_attention_kv_s8_online (ma_attention_s8_online.h). */
#include "ma_attention_s8_online.h"

int32_t ma_attention_kv_s8_scratch(const ma_attention_s8_params *p) {
    return ma_attention_s8_scratch_bytes(p);
}

void ma_attention_kv_s8(const int8_t *q, const int8_t *k, const int8_t *v, const ma_attention_s8_params *p,
                        int32_t kv_seq, int64_t *scratch, int8_t *out) {
    ma_attention_kv_s8_online(q, k, v, p, kv_seq, scratch, out);
}
