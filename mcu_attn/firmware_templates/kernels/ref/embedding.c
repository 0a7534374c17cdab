/* Embedding lookups by run-time token ids: rows of a constant table (in flash). References:
 * mcu_attn/ir/ops/embedding.py embedding, qembedding.
 *
 * An id below zero counts from the end of the table (ONNX Gather), and any id still outside [0, vocab) is
 * clamped to the nearest row: whatever the caller passes, no row outside the table is read. */
#include "ma_kernels.h"

#include <string.h>

static int32_t ma_token_row(int32_t id, int32_t vocab)
{
    if (id < 0) {
        id = id < -vocab ? 0 : id + vocab;
    }
    return id >= vocab ? vocab - 1 : id;
}

void ma_embedding(const int32_t *ids, int32_t count, const void *table, int32_t vocab, int32_t row_bytes, void *y)
{
    const uint8_t *rows = (const uint8_t *)table;
    uint8_t *out = (uint8_t *)y;
    int32_t i;
    for (i = 0; i < count; ++i) {
        memcpy(out + (size_t)i * (size_t)row_bytes, rows + (size_t)ma_token_row(ids[i], vocab) * (size_t)row_bytes,
               (size_t)row_bytes);
    }
}

void ma_embedding_s4(const int32_t *ids, int32_t count, const uint8_t *table, int32_t vocab, int32_t dim,
                     const int8_t *lut, int8_t *y)
{
    const int32_t row_bytes = (dim + 1) / 2;
    int32_t i, d;
    for (i = 0; i < count; ++i) {
        const uint8_t *row = table + (size_t)ma_token_row(ids[i], vocab) * (size_t)row_bytes;
        for (d = 0; d < dim; ++d) {
            const int32_t nibble = (row[d >> 1] >> ((d & 1) * 4)) & 0xF;
            y[(size_t)i * (size_t)dim + (size_t)d] = lut[nibble];  /* lut is indexed by the nibble: code & 0xF */
        }
    }
}
