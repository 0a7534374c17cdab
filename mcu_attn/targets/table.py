"""The boards and cores mcu-attn knows. Every figure is from the vendor datasheet named beside it.

Flash and SRAM are what the linker may use for the model firmware: contiguous main SRAM only (CCM/DTCM and
backup RAM are listed separately because ordinary DMA-less code may still use them for the arena).
"""

from __future__ import annotations

from dataclasses import dataclass

from mcu_attn.errors import UserError

KB = 1024


@dataclass(frozen=True)
class Target:
    name: str
    core: str
    clock_hz: int
    flash_bytes: int
    flash_base: int
    sram_bytes: int
    sram_base: int
    extra_ram: str
    source: str
    aliases: tuple[str, ...] = ()


TARGETS: tuple[Target, ...] = (
    Target("stm32f746", "cortex-m7", 216_000_000, 1024 * KB, 0x0800_0000, 320 * KB, 0x2000_0000,
           "64 KB DTCM inside the 320 KB, 16 KB ITCM",
           "ST DS10916 (STM32F745xx/STM32F746xx datasheet) sec. 1 and 3.4-3.5", aliases=("stm32",)),
    Target("stm32f407", "cortex-m4f", 168_000_000, 1024 * KB, 0x0800_0000, 128 * KB, 0x2000_0000,
           "+64 KB CCM data RAM at 0x10000000",
           "ST DS8626 (STM32F405xx/STM32F407xx datasheet) sec. 2.2.4-2.2.6"),
    Target("stm32h743", "cortex-m7", 480_000_000, 2048 * KB, 0x0800_0000, 512 * KB, 0x2400_0000,
           "+128 KB DTCM at 0x20000000, 64 KB ITCM, 288 KB AHB SRAM",
           "ST DS12110 (STM32H742xI/G STM32H743xI/G datasheet) sec. 3.3.1-3.3.2"),
    Target("stm32l476", "cortex-m4f", 80_000_000, 1024 * KB, 0x0800_0000, 96 * KB, 0x2000_0000,
           "+32 KB SRAM2 at 0x10000000",
           "ST DS10198 (STM32L476xx datasheet) sec. 3.5-3.6"),
    Target("nrf52840", "cortex-m4f", 64_000_000, 1024 * KB, 0x0000_0000, 256 * KB, 0x2000_0000,
           "none", "Nordic nRF52840 Product Specification v1.8 sec. 4.2 (memory) and 5 (CPU)"),
    Target("host", "host", 0, 0, 0, 0, 0, "n/a", "the build machine (native run, used by tests)"),
)


def get_target(name: str) -> Target:
    for target in TARGETS:
        if name == target.name or name in target.aliases:
            return target
    known = ", ".join(t.name for t in TARGETS)
    raise UserError(f"unknown target {name!r} (known: {known}; 'stm32' means stm32f746)")
