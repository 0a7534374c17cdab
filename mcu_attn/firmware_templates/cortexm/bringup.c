/* Board bring-up and the Cortex-M7 caches (docs/firmware.md, "Board bring-up"). No vendor or CMSIS headers.
 *
 * ma_board_bringup runs the register operations the target table lists for the part (mcu_attn/targets/boards.py,
 * rendered into startup.c): clock tree to the table's clock, flash wait states, flash accelerator. A "require"
 * operation that does not hold ends the list early: the part is an emulation without a clock-tree model, and the
 * firmware keeps the reset clock. "wait" gives up after MA_WAIT_LIMIT reads.
 *
 * ma_caches_enable invalidates and enables the Cortex-M7's L1 instruction and data caches; ma_dcache_clean
 * writes every dirty data cache line back to memory, so that a debugger reading SRAM sees what the core wrote.
 * Both use the architected cache maintenance registers (Armv7-M ARM B2.2.7, Cortex-M7 TRM sec. 4.2): CCSIDR gives
 * the data cache's geometry, DCISW/DCCSW take (way, set).
 */
#include "board.h"

#define SCB_CCR 0xE000ED14u
#define SCB_CCSIDR 0xE000ED80u
#define SCB_CSSELR 0xE000ED84u
#define SCB_ICIALLU 0xE000EF50u
#define SCB_DCISW 0xE000EF60u
#define SCB_DCCSW 0xE000EF6Cu
#define CCR_DC (1u << 16)
#define CCR_IC (1u << 17)

void ma_board_bringup(const ma_register_op *ops, uint32_t count)
{
    for (uint32_t i = 0; i < count; ++i) {
        const ma_register_op *op = &ops[i];
        if (op->kind == MA_OP_REQUIRE) {
            if ((MA_REG(op->address) & op->mask) != op->value) {
                return;
            }
        } else if (op->kind == MA_OP_MODIFY) {
            MA_REG(op->address) = (MA_REG(op->address) & ~op->mask) | op->value;
        } else {
            for (uint32_t n = MA_WAIT_LIMIT; n != 0u && (MA_REG(op->address) & op->mask) != op->value; --n) {
            }
        }
    }
}

#if MA_HAS_CACHE
static void ma_barrier(void)
{
    __asm__ volatile("dsb\n\tisb" ::: "memory");
}

/* Writes every (set, way) of the level 1 data cache to `reg` (DCISW: invalidate, DCCSW: clean). */
static void ma_dcache_by_set_way(uint32_t reg)
{
    MA_REG(SCB_CSSELR) = 0u; /* level 1, data */
    ma_barrier();
    uint32_t ccsidr = MA_REG(SCB_CCSIDR);
    uint32_t sets = ((ccsidr >> 13) & 0x7FFFu) + 1u;
    uint32_t ways = ((ccsidr >> 3) & 0x3FFu) + 1u;
    uint32_t set_shift = (ccsidr & 0x7u) + 4u;                              /* log2(line bytes) */
    uint32_t way_shift = ways > 1u ? (uint32_t)__builtin_clz(ways - 1u) : 0u; /* ways in the top bits */
    for (uint32_t set = 0; set < sets; ++set) {
        for (uint32_t way = 0; way < ways; ++way) {
            MA_REG(reg) = (set << set_shift) | (ways > 1u ? way << way_shift : 0u);
        }
    }
    ma_barrier();
}

void ma_caches_enable(void)
{
    ma_barrier();
    MA_REG(SCB_ICIALLU) = 0u;
    ma_dcache_by_set_way(SCB_DCISW);
    MA_REG(SCB_CCR) |= CCR_IC | CCR_DC;
    ma_barrier();
}

void ma_dcache_clean(void)
{
    ma_dcache_by_set_way(SCB_DCCSW);
}
#endif
