/* Shared arithmetic of the arm/ kernels (Cortex-M DSP extension through ACLE intrinsics, arm_acle.h).
 *
 * Every helper gives the same bits as its portable counterpart in ma_kernels_s8.h, on the argument ranges
 * stated beside it; the kernels that use them are tested against the numpy references in the emulator
 * (tests/test_kernels_arm.py). GCC or Clang only: signed right shifts are arithmetic there.
 *
 * Requantization without 64-bit rounding steps. qmath.requantize with shift = -right < 0 is
 *     high = floor((acc M + 2^30) / 2^31)                      (gemmlowp's doubling high multiply: for any
 *                                                              product, adding 2^30 or 1 - 2^30 by sign and
 *                                                              truncating toward zero is this floor)
 *     y    = floor((high + 2^(right-1) - [high < 0]) / 2^right)   (rounding divide, ties away from zero)
 * and two nested floors of integers fold into one: y = floor((acc M + K) / 2^(31+right)) with
 * K = 2^30 + (2^(right-1) - [high < 0]) 2^31. One SMLAL from K, and the high word shifted right by right-1, is
 * the whole requantization. [high < 0] may be replaced by [acc and M have opposite signs]: they differ only when
 * -2^30 <= acc M < 0, where high = 0 and both roundings give 0 (right >= 1). shift >= 0 (a real multiplier of
 * at least 1/2, rare) and M = INT32_MIN (which quantize_multiplier never returns) take ma_requantize itself.
 *
 * Where |acc| < 2^30 is known (an add's operands, a normalised LayerNorm value), shift = 0 is fast too: with
 * 2 acc in the product, y = floor((2 acc M + 2 K) / 2^(32+right)) is the high word shifted right by `right`,
 * and for right = 0 K is just 2^30 (no rounding divide follows). `ma_requant_prepare_small` sets that up and
 * the caller passes 2 acc.
 */
#ifndef MA_DSP_H
#define MA_DSP_H

#if !defined(__ARM_FEATURE_DSP)
#error "the arm/ kernels need the DSP extension (Cortex-M4, M7, M33 with DSP); build the ref/ variant instead"
#endif

#include <arm_acle.h>
#include <stdint.h>
#include <string.h>

#include "ma_kernels_s8.h"

/* The text around an assembly function defined in a top-level __asm__ block: its own section (so
 * --gc-sections keeps only what is called), Thumb-2, a word-aligned entry, and its size for the profilers. */
#define MA_ASM_FUNCTION_BEGIN(name)                                                                            \
    "  .section .text." #name ",\"ax\",%progbits\n"                                                          \
    "  .syntax unified\n"                                                                                    \
    "  .thumb\n"                                                                                             \
    "  .p2align 2\n"                                                                                         \
    "  .thumb_func\n"                                                                                        \
    "  .type " #name ", %function\n"                                                                         \
    #name ":\n"
#define MA_ASM_FUNCTION_END(name) "  .size " #name ", . - " #name "\n  .text\n"

/* Four bytes from any address as one word (the Cortex-M4/M7 LDR handles unaligned addresses). */
static inline int32_t ma_word(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline void ma_put_word(void *p, int32_t v) {
    memcpy(p, &v, 4);
}

/* Bytes 0 and 2 of x sign-extended to two halfwords: __sxtb16; bytes 1 and 3: SXTB16 with ROR #8. */
static inline int32_t ma_sxtb16_ror8(int32_t x) {
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

/* (bottom halfword of a, bottom halfword of b) and (top of a, top of b): GCC emits PKHBT / PKHTB. */
static inline int32_t ma_pack_bottoms(int32_t a, int32_t b) {
    return (int32_t)(((uint32_t)a & 0xFFFFu) | ((uint32_t)b << 16));
}

static inline int32_t ma_pack_tops(int32_t a, int32_t b) {
    return (int32_t)(((uint32_t)a >> 16) | ((uint32_t)b & 0xFFFF0000u));
}

/* One output channel's requantization, prepared once per channel. */
typedef struct {
    int64_t k_pos, k_neg; /* K for acc M >= 0 and for acc M < 0 (ma_dsp.h header comment) */
    int32_t mult, shift;
    int32_t high_shift;   /* right - 1: the shift of the high word */
} ma_requant_params;

/* Whether (mult, shift) takes the single-SMLAL path: shift < 0 and mult != INT32_MIN. */
static inline int ma_requant_fast(int32_t mult, int32_t shift) {
    return shift < 0 && mult != INT32_MIN;
}

static inline ma_requant_params ma_requant_prepare(int32_t mult, int32_t shift) {
    ma_requant_params p;
    p.mult = mult;
    p.shift = shift;
    p.high_shift = shift < 0 ? -shift - 1 : 0;
    p.k_pos = shift < 0 ? ((int64_t)1 << 30) + ((int64_t)1 << (30 - shift)) : 0;
    p.k_neg = p.k_pos - ((int64_t)1 << 31);
    return p;
}

/* Whether (mult, shift) is fast for |acc| < 2^30 (twice acc passed): shift <= 0 and M != INT32_MIN. */
static inline int ma_requant_fast_small(int32_t mult, int32_t shift) {
    return shift <= 0 && mult != INT32_MIN;
}

static inline ma_requant_params ma_requant_prepare_small(int32_t mult, int32_t shift) {
    ma_requant_params p;
    const int32_t right = shift < 0 ? -shift : 0;
    const uint32_t high = right > 0 ? 1u << (right - 1) : 0u; /* 2 K = 2^31 + 2^(right-1) 2^32 */
    p.mult = mult;
    p.shift = shift;
    p.high_shift = right;
    p.k_pos = (int64_t)(((uint64_t)high << 32) | 0x80000000u);
    p.k_neg = (int64_t)(((uint64_t)(high - (right > 0)) << 32) | 0x80000000u);
    return p;
}

/* The rare path, kept out of line so that the 64-bit reference code does not crowd the kernels' loops. */
__attribute__((noinline, unused)) static int32_t ma_dsp_requant_slow(int32_t acc, int32_t mult, int32_t shift) {
    return ma_requantize(acc, mult, shift);
}

/* ma_requantize(acc, mult, shift) for an int32 acc, when ma_requant_fast(mult, shift). */
static inline int32_t ma_dsp_requant_fast(int32_t acc, const ma_requant_params *p) {
    const int64_t t = ((acc ^ p->mult) < 0 ? p->k_neg : p->k_pos) + (int64_t)acc * p->mult; /* SMLAL */
    return (int32_t)(t >> 32) >> p->high_shift;
}

/* ma_requantize(acc, mult, shift) for |acc| < 2^30, given twice = 2 acc and ma_requant_prepare_small's p. */
static inline int32_t ma_dsp_requant_small(int32_t twice, const ma_requant_params *p) {
    return ma_dsp_requant_fast(twice, p);
}

/* ma_requantize(acc, mult, shift) for an int32 acc, any parameters. */
static inline int32_t ma_dsp_requant(int32_t acc, const ma_requant_params *p) {
    if (ma_requant_fast(p->mult, p->shift)) return ma_dsp_requant_fast(acc, p);
    return ma_dsp_requant_slow(acc, p->mult, p->shift);
}

/* sat8(x + zp) of a requantized x: QADD keeps the sum exact where it matters (x can be INT32_MAX on the slow
 * path), SSAT clamps. */
static inline int8_t ma_dsp_sat8(int32_t x, int32_t zp) {
    return (int8_t)__ssat(__qadd(x, zp), 8);
}

#endif
