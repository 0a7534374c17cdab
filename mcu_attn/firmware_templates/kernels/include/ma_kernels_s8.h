/* Integer (int8 / int4) kernels of mcu-attn. Contract: docs/integer-kernels.md; numpy references: the integer
 * ops of mcu_attn/ir/ops/ (linear, attention, layernorm, add, int8_pointwise). Every kernel here matches its
 * reference bit for bit.
 *
 * Portable C99 on <stdint.h> only: no floating point, no allocation, no global state. Signed right shifts
 * are written so that they are floor divisions by a power of two on any compiler (ma_asr64), and signed
 * overflow cannot happen for the parameter ranges the quantizer produces: shifts in [-31, 30] (what
 * quantize_multiplier returns), linear k < 2^17, attention head_dim <= 2^15 and seq <= 2^16, layernorm
 * c < 2^24. The static inline helpers below are the shared arithmetic (qmath.py in C); optimized kernels use
 * the same helpers to stay bit-identical. */
#ifndef MA_KERNELS_S8_H
#define MA_KERNELS_S8_H

#include <stdint.h>

#include "ma_attention_keys.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- shared integer arithmetic (mcu_attn/reference/qmath.py) -------------------------------------------- */

/* floor(x / 2^n) for 0 <= n <= 62, without relying on the implementation-defined >> of a negative value. */
static inline int64_t ma_asr64(int64_t x, int32_t n) {
    return x < 0 ? ~((~x) >> n) : x >> n;
}

/* (x + 2^(n-1)) >> n: round half toward +infinity (qmath.rshift_round), n >= 1. */
static inline int64_t ma_rshift_round64(int64_t x, int32_t n) {
    return ma_asr64(x + ((int64_t)1 << (n - 1)), n);
}

static inline int8_t ma_sat8(int64_t x) {
    return (int8_t)(x < -128 ? -128 : (x > 127 ? 127 : x));
}

/* qmath.requantize: gemmlowp's SaturatingRoundingDoublingHighMul(acc << max(shift, 0), mult) followed by
 * RoundingDivideByPOT(., max(-shift, 0)) (ties away from zero). The reference raises where acc << shift leaves
 * int32; here that value saturates instead, so every input is defined behaviour. */
static inline int32_t ma_requantize(int64_t acc, int32_t mult, int32_t shift) {
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    int64_t x, product, high, mask, remainder, threshold;
    if (acc > INT32_MAX) acc = INT32_MAX;
    if (acc < INT32_MIN) acc = INT32_MIN;
    x = acc * ((int64_t)1 << left);
    if (x > INT32_MAX) x = INT32_MAX;
    if (x < INT32_MIN) x = INT32_MIN;
    if (x == INT32_MIN && mult == INT32_MIN) {
        high = INT32_MAX;
    } else {
        product = x * (int64_t)mult;
        /* C99 division truncates toward zero, as gemmlowp's high multiply does */
        high = (product + (product >= 0 ? ((int64_t)1 << 30) : 1 - ((int64_t)1 << 30))) / ((int64_t)1 << 31);
    }
    mask = ((int64_t)1 << right) - 1;
    remainder = high & mask;
    threshold = (mask >> 1) + (high < 0 ? 1 : 0);
    return (int32_t)(ma_asr64(high, right) + (remainder > threshold ? 1 : 0));
}

/* qmath.requantize_sum of two terms: floor(((v0 << k0) m0 + (v1 << k1) m1 + 2^(s-1)) / 2^s) on int64. The
 * quantizer keeps v << k inside int32 and every product below 2^61 (qmath.sum_requant_params), so nothing
 * overflows; the shifts are multiplications here, which is defined for negative values too. */
static inline int64_t ma_requantize_sum2(int32_t v0, int32_t k0, int32_t m0, int32_t v1, int32_t k1, int32_t m1,
                                         int32_t s) {
    const int64_t t0 = (int64_t)v0 * ((int64_t)1 << k0) * m0, t1 = (int64_t)v1 * ((int64_t)1 << k1) * m1;
    return ma_asr64(t0 + t1 + ((int64_t)1 << (s - 1)), s);
}

/* floor(sqrt(x)), bit by bit (QLayerNorm's square root), as the body of a function of x in the unsigned type T
 * whose highest power of 4 is TOP: a 32-bit core runs the 32-bit form fast whenever the radicand fits. */
#define MA_ISQRT_BODY(T, TOP)                                                                                     \
    T root = 0, bit = (TOP);                                                                                    \
    while (bit > x) bit >>= 2;                                                                                  \
    while (bit != 0) {                                                                                          \
        if (x >= root + bit) {                                                                                  \
            x -= root + bit;                                                                                    \
            root = (root >> 1) + bit;                                                                           \
        } else {                                                                                                \
            root >>= 1;                                                                                         \
        }                                                                                                       \
        bit >>= 2;                                                                                              \
    }                                                                                                           \
    return root;

static inline uint64_t ma_isqrt_u64(uint64_t x) {
    MA_ISQRT_BODY(uint64_t, (uint64_t)1 << 62)
}

/* ---- kernels -------------------------------------------------------------------------------------------- */

/* y[r][n] = sat8(requant(bias[n] + sum_k x[r][k] w[n][k], mult[n], shift[n]) + y_zp); w is [n][k]. */
void ma_linear_s8(const int8_t *x, int32_t rows, int32_t k, int32_t n, const int8_t *w,
                  const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t y_zp, int8_t *y);

/* The same with int4 weights packed along k, two per byte, low nibble = even k: w is [n][(k + 1) / 2]. */
void ma_linear_s4(const int8_t *x, int32_t rows, int32_t k, int32_t n, const uint8_t *w,
                  const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t y_zp, int8_t *y);

/* QLinearTable: ma_linear_s8's y looked up in table[256] (y = table[y + 128]); _s4 with packed int4 weights. */
void ma_linear_table_s8(const int8_t *x, int32_t rows, int32_t k, int32_t n, const int8_t *w,
                        const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t y_zp,
                        const int8_t *table, int8_t *y);
void ma_linear_table_s4(const int8_t *x, int32_t rows, int32_t k, int32_t n, const uint8_t *w,
                        const int32_t *bias, const int32_t *mult, const int32_t *shift, int32_t y_zp,
                        const int8_t *table, int8_t *y);

typedef struct {
    int32_t right_shift, r_mult, r_left_shift, r_zp, y_zp;
} ma_linear_add_params;

/* QLinearAdd: acc = bias[n] + x . w as ma_linear_s8's (saturated to int32), then with the residual r [rows][n]
 * y = sat8(ma_requantize_sum2(acc, 0, mult[n], r - r_zp, r_left_shift, r_mult, right_shift) + y_zp). y may be r. */
void ma_linear_add_s8(const int8_t *x, int32_t rows, int32_t k, int32_t n, const int8_t *w, const int32_t *bias,
                      const int32_t *mult, const ma_linear_add_params *p, const int8_t *r, int8_t *y);
void ma_linear_add_s4(const int8_t *x, int32_t rows, int32_t k, int32_t n, const uint8_t *w, const int32_t *bias,
                      const int32_t *mult, const ma_linear_add_params *p, const int8_t *r, int8_t *y);

typedef struct {
    int32_t seq, heads, head_dim;
    ma_attention_pattern pattern; /* the keys each query sees (ma_attention_keys.h) */
    int32_t q_zp, k_zp, v_zp, out_zp, score_mult, score_shift, out_mult, out_shift;
    int32_t query_tile;        /* query rows per tile (>= 1): scratch size, not results */
    const uint16_t *exp_table; /* [256], Q15, exp_table[0] = 2^15 */
    const uint8_t *mask;       /* NULL, or [seq][seq]: 0 hides key j from query i (the dense kernel with a mask) */
} ma_attention_s8_params;

/* q, k, v, out: [seq][heads * head_dim]. Online softmax over the keys each query's pattern (a window, strided
 * keys, a dilated window, key blocks, global tokens, causality: ma_attention_keys.h) and the mask allow, in
 * ascending order, query_tile rows at a time: O(seq * keys per query) work per head, O(query_tile * head_dim)
 * scratch, never a score matrix or row.
 * scratch is 8-byte aligned. */
void ma_attention_s8(const int8_t *q, const int8_t *k, const int8_t *v, const ma_attention_s8_params *p,
                     int64_t *scratch, int8_t *out);

/* Scratch bytes ma_attention_s8 needs: query_tile * (8 * head_dim + 8). */
int32_t ma_attention_s8_scratch(const ma_attention_s8_params *p);

/* q, out: [seq][heads * head_dim]; k, v: [kv_seq][heads * head_dim] (keys and values projected along the
 * sequence, Linformer). Every query sees every key, in ascending order: QAttention's online softmax with no
 * pattern and no mask (p->seq is the query count; p's pattern and mask are not read). O(seq * kv_seq) work per
 * head. */
void ma_attention_kv_s8(const int8_t *q, const int8_t *k, const int8_t *v, const ma_attention_s8_params *p,
                        int32_t kv_seq, int64_t *scratch, int8_t *out);

/* Scratch bytes ma_attention_kv_s8 needs: ma_attention_s8_scratch's. */
int32_t ma_attention_kv_s8_scratch(const ma_attention_s8_params *p);

typedef struct {
    int32_t c, recip_shift, right_shift;
    int64_t eps;
    const int32_t *mult; /* [c] */
    const int64_t *bias; /* [c] */
} ma_layernorm_s8_params;

/* Integer LayerNorm of `rows` rows of p->c values (x and y: [rows][c]). */
void ma_layernorm_s8(const int8_t *x, int32_t rows, const ma_layernorm_s8_params *p, int8_t *y);

typedef struct {
    int32_t c, in_zp, out_zp;
    int64_t eps;
    const int32_t *mult, *shift; /* [c] each */
} ma_rmsnorm_s8_params;

/* Integer RMSNorm of `rows` rows of p->c values (x and y: [rows][c]), in rmsnorm_s8.c. */
void ma_rmsnorm_s8(const int8_t *x, int32_t rows, const ma_rmsnorm_s8_params *p, int8_t *y);

/* y[i] = table[x[i] + 128]. */
void ma_table_s8(const int8_t *x, int32_t count, const int8_t *table, int8_t *y);

typedef struct {
    int32_t a_zp, b_zp, a_mult, a_left_shift, b_mult, b_left_shift, right_shift, out_zp;
} ma_add_s8_params;

/* y[i] = sat8(ma_requantize_sum2(a[i] - a_zp, a_left_shift, a_mult, b[j] - b_zp, b_left_shift, b_mult,
 * right_shift) + out_zp) with j = i % b_count; b_count divides count. */
void ma_add_s8(const int8_t *a, const int8_t *b, int32_t count, int32_t b_count, const ma_add_s8_params *p,
               int8_t *y);

/* y[i] = sat8(requant(x[i] - in_zp, mult, shift) + out_zp). */
void ma_requant_s8(const int8_t *x, int32_t count, int32_t in_zp, int32_t mult, int32_t shift, int32_t out_zp,
                   int8_t *y);
/* y[i] = sat8(requant((a[i] - a_zp)(b[i % b_count] - b_zp), mult, shift) + y_zp), in mul_s8.c. */
void ma_mul_s8(const int8_t *a, const int8_t *b, int32_t count, int32_t b_count, int32_t a_zp, int32_t b_zp,
               int32_t mult, int32_t shift, int32_t y_zp, int8_t *y);

#ifdef __cplusplus
}
#endif

#endif /* MA_KERNELS_S8_H */
