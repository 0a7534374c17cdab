/* The int8 linear's tiles in assembly (included by arm/linear_s8.c only; DSP extension).
 *
 * A pair tile is two input rows x two output channels: rows x0 and x0 + k against channels w0 and w0 + k. In
 * assembly so that the loop keeps its two pointers, k, the end, four accumulators and six temporaries in the
 * fourteen allocatable registers (compiled C spills one of them every step) and takes sixteen k per iteration. A
 * step of four k: w1, w0 and x1 loaded back to back (the loads pipeline), w extended to even/odd halfword pairs
 * once (SXTB16 and SXTB16 ROR #8), then each x row extended and multiplied into its two accumulators with SMLAD.
 * k & 15 goes out of line (the common k, a multiple of 16, falls through one untaken branch): k & 8 takes two more
 * steps, k & 4 one, k & 3 the scalar tail. The accumulators start at the channel's bias (the caller checked that
 * bias + dot cannot leave int32, so this is the reference's saturating sum). One call runs every row pair of a
 * channel pair (tp->pairs of them from tp->x, tp->y), so the per-tile work is a few loads and stores; a row tile
 * (one row x two channels, the same step with one x word) takes the row a 2-row layer leaves and single-row
 * layers. AAPCS: r0 = tp.
 *
 * Three epilogues, one function each (pair and row):
 * - ma_tile8_rows (QLinear): ma_dsp_requant_fast with the output zero point folded into K (below),
 *   t = K' + acc M + s (-2^31) with s = [acc and M differ in sign] = [acc < 0] (the caller keeps M >= 0), one
 *   SMLAL of s by 0x80000000,
 *   y = SSAT8(high word of t >> (right - 1));
 * - ma_tile8_rows_table (QLinearTable): the same y, then y = table[y] (tp->table points at entry 128);
 * - ma_tile8_rows_add (QLinearAdd): t = C + acc M + (r << r_k) r_M with C = 2^(s-1) - r_zp 2^r_k r_M + y_zp 2^s,
 *   y = SSAT8(high word of t >> (s - 32)); the residual element is read before the output is written, so y may
 *   be r.
 * K' = K + zp 2^(32 + h) (h = right - 1): floor(t / 2^(32 + h)) + zp = floor((t + zp 2^(32 + h)) / 2^(32 + h)),
 * and the reference's saturating add of zp never saturates here (|t| / 2^32 < 2^30 + 2^21), so this is the same
 * result; the caller keeps h <= 22 so that |t| < 2^62 + 2^61 + 2^54 stays inside int64. */
#ifndef MA_LINEAR_TILE8_H
#define MA_LINEAR_TILE8_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t k_pos;                           /*  0: K' for channel 0 (K with the zero point folded in) */
    int32_t bias, mult, high_shift, pad;     /*  8, 12, 16 */
    int64_t k_pos1;                          /* 24: channel 1 */
    int32_t bias1, mult1, high_shift1, pad1; /* 32, 36, 40 */
    int32_t pad2, n;                         /* 48, 52: -, y row stride */
    const int8_t *x;                         /* 56: the next row pair */
    const int8_t *w;                         /* 60: channel 0's weights (channel 1's follow, k bytes on) */
    int8_t *y;                               /* 64: row 0, channel 0 of the next row pair */
    int32_t k, pairs;                        /* 68, 72 */
    const int8_t *table;                     /* 76: table + 128 (QLinearTable) */
    const int8_t *r;                         /* 80: the residual at row 0, channel 0 of the next pair (QLinearAdd) */
    int32_t r_mult, r_left_shift, sum_high_shift; /* 84, 88, 92: r_M, r_k, s - 32 */
    int64_t sum_constant;                    /* 96: C */
} ma_tile_params;

#define MA_TILE_OFFSET(field, value) \
    typedef char ma_tile_check_##field[(offsetof(ma_tile_params, field) == (value)) ? 1 : -1]
MA_TILE_OFFSET(k_pos1, 24);
MA_TILE_OFFSET(n, 52);
MA_TILE_OFFSET(x, 56);
MA_TILE_OFFSET(pairs, 72);
MA_TILE_OFFSET(table, 76);
MA_TILE_OFFSET(r, 80);
MA_TILE_OFFSET(sum_high_shift, 92);
MA_TILE_OFFSET(sum_constant, 96);

void ma_tile8_rows(ma_tile_params *tp);
void ma_tile8_rows_table(ma_tile_params *tp);
void ma_tile8_rows_add(ma_tile_params *tp);
void ma_tile8_row(ma_tile_params *tp);
void ma_tile8_row_table(ma_tile_params *tp);
void ma_tile8_row_add(ma_tile_params *tp);

#define MA_DOT8_STEP                                                                                               \
    "  ldr r8, [r1, r2]\n"          /* w1 */                                                                   \
    "  ldr r9, [r1], #4\n"          /* w0 */                                                                   \
    "  ldr r12, [r0, r2]\n"         /* x1 */                                                                   \
    "  sxtb16 r10, r8\n"            /* w1 k0 k2 */                                                             \
    "  sxtb16 r8, r8, ror #8\n"     /* w1 k1 k3 */                                                             \
    "  sxtb16 r11, r9\n"            /* w0 k0 k2 */                                                             \
    "  sxtb16 r9, r9, ror #8\n"     /* w0 k1 k3 */                                                             \
    "  sxtb16 lr, r12\n"                                                                                       \
    "  smlad r6, lr, r11, r6\n"                                                                                \
    "  smlad r7, lr, r10, r7\n"                                                                                \
    "  sxtb16 lr, r12, ror #8\n"                                                                               \
    "  smlad r6, lr, r9, r6\n"                                                                                 \
    "  smlad r7, lr, r8, r7\n"                                                                                 \
    "  ldr r12, [r0], #4\n"         /* x0 */                                                                   \
    "  sxtb16 lr, r12\n"                                                                                       \
    "  smlad r4, lr, r11, r4\n"                                                                                \
    "  smlad r5, lr, r10, r5\n"                                                                                \
    "  sxtb16 lr, r12, ror #8\n"                                                                               \
    "  smlad r4, lr, r9, r4\n"                                                                                 \
    "  smlad r5, lr, r8, r5\n"

/* The function: row pairs of one channel pair; EPILOGUE stores the four outputs from r4 (row 0, channel 0), r5
 * (row 0, channel 1), r6 (row 1, channel 0), r7 (row 1, channel 1) with r3 = tp, and leaves r2 = row 0's y. */
#define MA_TILE8_FUNCTION(name, EPILOGUE)                                                                        \
    MA_ASM_FUNCTION_BEGIN(name)                                                                              \
    "  push {r4-r11, lr}\n"                                                                                  \
    "  push {r0}\n"                 /* tp */                                                                 \
    "0:\n"                                                                                                   \
    "  ldr r3, [sp]\n"                                                                                       \
    "  ldr r0, [r3, #56]\n"         /* x, row 0 */                                                           \
    "  ldr r1, [r3, #60]\n"         /* w, channel 0 */                                                       \
    "  ldr r2, [r3, #68]\n"         /* k */                                                                  \
    "  ldr r4, [r3, #8]\n"          /* a00 = a10 = bias0, a01 = a11 = bias1 */                               \
    "  ldr r5, [r3, #32]\n"                                                                                  \
    "  mov r6, r4\n"                                                                                         \
    "  mov r7, r5\n"                                                                                         \
    "  bic r3, r2, #15\n"                                                                                    \
    "  add r3, r0, r3\n"            /* end of the 16-k steps in x0 */                                        \
    "  cmp r0, r3\n"                                                                                         \
    "  beq 2f\n"                                                                                             \
    "1:\n"                                                                                                   \
    MA_DOT8_STEP                                                                                             \
    MA_DOT8_STEP                                                                                             \
    MA_DOT8_STEP                                                                                             \
    MA_DOT8_STEP                                                                                             \
    "  cmp r0, r3\n"                                                                                         \
    "  bne 1b\n"                                                                                             \
    "2:\n"                                                                                                   \
    "  ands r3, r2, #15\n"                                                                                   \
    "  bne 6f\n"                                                                                             \
    "5:\n"                                                                                                   \
    "  ldr r3, [sp]\n"              /* tp */                                                                 \
    "  ldr r2, [r3, #64]\n"         /* y, row 0 */                                                           \
    EPILOGUE                                                                                                 \
    "  ldr r9, [r3, #52]\n"         /* next row pair: y += 2 n, x += 2 k */                                  \
    "  add r8, r2, r9, lsl #1\n"                                                                             \
    "  str r8, [r3, #64]\n"                                                                                  \
    "  ldr r9, [r3, #68]\n"                                                                                  \
    "  ldr r8, [r3, #56]\n"                                                                                  \
    "  add r8, r8, r9, lsl #1\n"                                                                             \
    "  str r8, [r3, #56]\n"                                                                                  \
    "  ldr r8, [r3, #72]\n"                                                                                  \
    "  subs r8, r8, #1\n"                                                                                    \
    "  str r8, [r3, #72]\n"                                                                                  \
    "  bne 0b\n"                                                                                             \
    "  add sp, sp, #4\n"                                                                                     \
    "  pop {r4-r11, pc}\n"                                                                                   \
    "6:\n"                          /* k & 15 */                                                             \
    "  tst r2, #8\n"                                                                                         \
    "  beq 7f\n"                                                                                             \
    MA_DOT8_STEP                                                                                             \
    MA_DOT8_STEP                                                                                             \
    "7:\n"                                                                                                   \
    "  tst r2, #4\n"                                                                                         \
    "  beq 8f\n"                                                                                             \
    MA_DOT8_STEP                                                                                             \
    "8:\n"                                                                                                   \
    "  ands r3, r2, #3\n"                                                                                    \
    "  beq 5b\n"                                                                                             \
    "4:\n"                                                                                                   \
    "  ldrsb r8, [r0, r2]\n"        /* x1 */                                                                 \
    "  ldrsb r9, [r1, r2]\n"        /* w1 */                                                                 \
    "  ldrsb r10, [r0], #1\n"       /* x0 */                                                                 \
    "  ldrsb r11, [r1], #1\n"       /* w0 */                                                                 \
    "  mla r4, r10, r11, r4\n"                                                                               \
    "  mla r5, r10, r9, r5\n"                                                                                \
    "  mla r6, r8, r11, r6\n"                                                                                \
    "  mla r7, r8, r9, r7\n"                                                                                 \
    "  subs r3, r3, #1\n"                                                                                    \
    "  bne 4b\n"                                                                                             \
    "  b 5b\n"                                                                                               \
    MA_ASM_FUNCTION_END(name)

/* A step of four k for one row: w1, w0, x0 loaded back to back, each w extended once, two SMLADs a channel. */
#define MA_DOT8_ROW_STEP                                                                                           \
    "  ldr r8, [r1, r2]\n"          /* w1 */                                                                   \
    "  ldr r9, [r1], #4\n"          /* w0 */                                                                   \
    "  ldr r12, [r0], #4\n"         /* x0 */                                                                   \
    "  sxtb16 r10, r8\n"                                                                                       \
    "  sxtb16 r8, r8, ror #8\n"                                                                                \
    "  sxtb16 r11, r9\n"                                                                                       \
    "  sxtb16 r9, r9, ror #8\n"                                                                                \
    "  sxtb16 lr, r12\n"                                                                                       \
    "  smlad r4, lr, r11, r4\n"                                                                                \
    "  smlad r5, lr, r10, r5\n"                                                                                \
    "  sxtb16 lr, r12, ror #8\n"                                                                               \
    "  smlad r4, lr, r9, r4\n"                                                                                 \
    "  smlad r5, lr, r8, r5\n"

/* The row tile: row tp->x (y at tp->y, residual at tp->r) against one channel pair, eight k an iteration; r6 is
 * the end, r7 = tp; EPILOGUE stores r4 (channel 0) and r5 (channel 1) with r3 = tp and r2 = the row's y. */
#define MA_TILE8_ROW_FUNCTION(name, EPILOGUE)                                                                    \
    MA_ASM_FUNCTION_BEGIN(name)                                                                              \
    "  push {r4-r11, lr}\n"                                                                                  \
    "  mov r7, r0\n"                                                                                         \
    "  ldr r0, [r7, #56]\n"         /* x */                                                                  \
    "  ldr r1, [r7, #60]\n"         /* w, channel 0 */                                                       \
    "  ldr r2, [r7, #68]\n"         /* k */                                                                  \
    "  ldr r4, [r7, #8]\n"          /* a0 = bias0, a1 = bias1 */                                             \
    "  ldr r5, [r7, #32]\n"                                                                                  \
    "  bic r6, r2, #7\n"                                                                                     \
    "  add r6, r0, r6\n"                                                                                     \
    "  cmp r0, r6\n"                                                                                         \
    "  beq 2f\n"                                                                                             \
    "1:\n"                                                                                                   \
    MA_DOT8_ROW_STEP                                                                                         \
    MA_DOT8_ROW_STEP                                                                                         \
    "  cmp r0, r6\n"                                                                                         \
    "  bne 1b\n"                                                                                             \
    "2:\n"                                                                                                   \
    "  tst r2, #4\n"                                                                                         \
    "  beq 3f\n"                                                                                             \
    MA_DOT8_ROW_STEP                                                                                         \
    "3:\n"                                                                                                   \
    "  ands r6, r2, #3\n"                                                                                    \
    "  beq 5f\n"                                                                                             \
    "4:\n"                                                                                                   \
    "  ldrsb r9, [r1, r2]\n"        /* w1 */                                                                 \
    "  ldrsb r10, [r0], #1\n"       /* x0 */                                                                 \
    "  ldrsb r11, [r1], #1\n"       /* w0 */                                                                 \
    "  mla r4, r10, r11, r4\n"                                                                               \
    "  mla r5, r10, r9, r5\n"                                                                                \
    "  subs r6, r6, #1\n"                                                                                    \
    "  bne 4b\n"                                                                                             \
    "5:\n"                                                                                                   \
    "  mov r3, r7\n"                                                                                         \
    "  ldr r2, [r3, #64]\n"         /* y */                                                                  \
    EPILOGUE                                                                                                 \
    "  pop {r4-r11, pc}\n"                                                                                   \
    MA_ASM_FUNCTION_END(name)

/* ma_dsp_requant_fast of ACC with the channel's K' at KOFF (r9 = M, r12 = right - 1, r0 = 0x80000000), then
 * LOOKUP (nothing or the table) and the store. */
#define MA_OUT8(ACC, KOFF, LOOKUP, STORE)                                                                        \
    "  lsr r10, " ACC ", #31\n"       /* acc < 0: M >= 0, so the signs differ */                              \
    "  ldrd r11, lr, [r3, #" KOFF "]\n"                                                                       \
    "  smlal r11, lr, " ACC ", r9\n"                                                                           \
    "  smlal r11, lr, r10, r0\n"      /* - 2^31 when the signs differ */                                       \
    "  asr lr, lr, r12\n"                                                                                      \
    "  ssat lr, #8, lr\n"                                                                                      \
    LOOKUP                                                                                                     \
    "  " STORE "\n"

/* Channel c's M and right - 1 (r9, r12). */
#define MA_CHANNEL_PARAMS(MOFF, SOFF) "  ldr r9, [r3, #" MOFF "]\n  ldr r12, [r3, #" SOFF "]\n"

/* r1 = row 1's y; channel 0's parameters, its two outputs, channel 1's, its two. */
#define MA_REQUANT_EPILOGUE(LOOKUP)                                                                              \
    "  ldr r1, [r3, #52]\n"                                                                                    \
    "  add r1, r1, r2\n"            /* y, row 1 */                                                             \
    "  mov r0, #0x80000000\n"                                                                                  \
    MA_CHANNEL_PARAMS("12", "16")                                                                              \
    MA_OUT8("r4", "0", LOOKUP, "strb lr, [r2]")                                                                \
    MA_OUT8("r6", "0", LOOKUP, "strb lr, [r1]")                                                                \
    MA_CHANNEL_PARAMS("36", "40")                                                                              \
    MA_OUT8("r5", "24", LOOKUP, "strb lr, [r2, #1]")                                                           \
    MA_OUT8("r7", "24", LOOKUP, "strb lr, [r1, #1]")

/* One row: channel 0's output, channel 1's. */
#define MA_REQUANT_ROW_EPILOGUE(LOOKUP)                                                                          \
    "  mov r0, #0x80000000\n"                                                                                  \
    MA_CHANNEL_PARAMS("12", "16")                                                                              \
    MA_OUT8("r4", "0", LOOKUP, "strb lr, [r2]")                                                                \
    MA_CHANNEL_PARAMS("36", "40")                                                                              \
    MA_OUT8("r5", "24", LOOKUP, "strb lr, [r2, #1]")

/* t = C + ACC M + (r << r_k) r_M; r9 = M, r1 = the residual row, r0 = r_M, r8 = r_k, r12 = s - 32. */
#define MA_OUT_ADD(ACC, OFF, Y)                                                                                  \
    "  ldrd r11, lr, [r3, #96]\n"                                                                              \
    "  smlal r11, lr, " ACC ", r9\n"                                                                           \
    "  ldrsb r10, [r1, #" OFF "]\n"                                                                            \
    "  lsl r10, r10, r8\n"                                                                                     \
    "  smlal r11, lr, r10, r0\n"                                                                               \
    "  asr lr, lr, r12\n"                                                                                      \
    "  ssat lr, #8, lr\n"                                                                                      \
    "  strb lr, [" Y ", #" OFF "]\n"

/* Row 0's two outputs (all a row tile has). */
#define MA_ADD_ROW_EPILOGUE                                                                                      \
    "  ldr r1, [r3, #80]\n"                                                                                    \
    "  ldr r0, [r3, #84]\n"                                                                                    \
    "  ldr r8, [r3, #88]\n"                                                                                    \
    "  ldr r12, [r3, #92]\n"                                                                                   \
    "  ldr r9, [r3, #12]\n"                                                                                    \
    MA_OUT_ADD("r4", "0", "r2")                                                                                \
    "  ldr r9, [r3, #36]\n"                                                                                    \
    MA_OUT_ADD("r5", "1", "r2")

/* Row 0's outputs, then row 1's (r4 becomes row 1's y once r4 is stored); the residual pointer moves 2 n. */
#define MA_ADD_EPILOGUE                                                                                          \
    MA_ADD_ROW_EPILOGUE                                                                                        \
    "  ldr r4, [r3, #52]\n"                                                                                    \
    "  add r1, r1, r4\n"                                                                                       \
    "  add r4, r2, r4\n"            /* y, row 1 */                                                             \
    MA_OUT_ADD("r7", "1", "r4")                                                                                \
    "  ldr r9, [r3, #12]\n"                                                                                    \
    MA_OUT_ADD("r6", "0", "r4")                                                                                \
    "  ldr r9, [r3, #52]\n"                                                                                    \
    "  add r1, r1, r9\n"                                                                                       \
    "  str r1, [r3, #80]\n"

__asm__(MA_TILE8_FUNCTION(ma_tile8_rows, MA_REQUANT_EPILOGUE(""))
        MA_TILE8_FUNCTION(ma_tile8_rows_table, "  ldr r8, [r3, #76]\n" MA_REQUANT_EPILOGUE("  ldrsb lr, [r8, lr]\n"))
        MA_TILE8_FUNCTION(ma_tile8_rows_add, MA_ADD_EPILOGUE)
        MA_TILE8_ROW_FUNCTION(ma_tile8_row, MA_REQUANT_ROW_EPILOGUE(""))
        MA_TILE8_ROW_FUNCTION(ma_tile8_row_table,
                              "  ldr r8, [r3, #76]\n" MA_REQUANT_ROW_EPILOGUE("  ldrsb lr, [r8, lr]\n"))
        MA_TILE8_ROW_FUNCTION(ma_tile8_row_add, MA_ADD_ROW_EPILOGUE));

#undef MA_DOT8_STEP
#undef MA_DOT8_ROW_STEP
#undef MA_TILE8_FUNCTION
#undef MA_TILE8_ROW_FUNCTION
#undef MA_OUT8
#undef MA_CHANNEL_PARAMS
#undef MA_REQUANT_EPILOGUE
#undef MA_REQUANT_ROW_EPILOGUE
#undef MA_OUT_ADD
#undef MA_ADD_ROW_EPILOGUE
#undef MA_ADD_EPILOGUE

#endif
