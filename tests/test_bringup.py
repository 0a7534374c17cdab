"""Board bring-up in the generated start-up (docs/firmware.md, "Board bring-up"), checked per board in Unicorn.

The firmware boots from reset to `ma_harness_idle` with a hook on every peripheral and system-control write.
The registers it leaves are decoded as the reference manuals define them, independently of the target table:
PLL factors -> core clock (= the table's clock), bus prescalers -> the console UART's clock -> its baud divisor
(115200) in board.h, flash wait states (= the table's), the flash accelerator or the Cortex-M7 L1 caches that are on, and
these are exactly what the cycle model replays (`cycles.flash_timing`).
"""

from __future__ import annotations

import re
import shutil

import pytest

from support import DIGITS

from mcu_attn.sim import cycles
from mcu_attn.targets.table import get_target

MODEL = DIGITS / "digits_vit.onnx"
BAUD = 115_200
SCB_CCR = 0xE000_ED14

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                reason="arm-none-eabi-gcc not installed (scripts/install-system-deps.sh)")


def _boot_writes(directory) -> dict[int, int]:
    """The last value the start-up wrote to each peripheral or system-control register, reset to idle."""
    from unicorn import UC_HOOK_MEM_WRITE

    from mcu_attn.sim.build_dir import BuildDir
    from mcu_attn.sim.elf import load_firmware
    from mcu_attn.sim.unicorn import UnicornRunner

    build = BuildDir(directory)
    runner = UnicornRunner(load_firmware(build.elf), build.target, boot=False)
    written: dict[int, int] = {}

    def on_write(uc, access, address, size, value, user_data) -> None:
        written[address] = value

    runner.uc.hook_add(UC_HOOK_MEM_WRITE, on_write, begin=0x4000_0000, end=0x5FFF_FFFF)
    runner.uc.hook_add(UC_HOOK_MEM_WRITE, on_write, begin=0xE000_E000, end=0xE000_EFFF)
    runner.boot()
    return written


def _ahb(field: int) -> int:
    """STM32 AHB prescaler field (4 bits): 0xxx divides by 1, 1000..1111 by 2, 4, 8, 16, 64, 128, 256, 512."""
    return 1 if field < 8 else [2, 4, 8, 16, 64, 128, 256, 512][field - 8]


def _apb(field: int) -> int:
    """STM32 APB prescaler field (3 bits): 0xx divides by 1, 100..111 by 2, 4, 8, 16."""
    return 1 if field < 4 else 2 << (field - 4)


def _stm32_f4_f7(w: dict[int, int], flash_acr: int) -> dict:
    pll, cfgr = w[0x4002_3804], w[0x4002_3808]
    m, n, p = pll & 0x3F, (pll >> 6) & 0x1FF, 2 * (((pll >> 16) & 3) + 1)
    assert (pll >> 22) & 1 == 0                        # PLLSRC = HSI, 16 MHz
    assert 1e6 <= 16e6 / m <= 2e6 and 100e6 <= 16e6 / m * n <= 432e6   # VCO input and output ranges
    core = 16e6 / m * n / p
    assert cfgr & 3 == 2                               # SW = PLL
    ahb = core / _ahb((cfgr >> 4) & 0xF)
    return {"core": core, "apb1": ahb / _apb((cfgr >> 10) & 7), "apb2": ahb / _apb((cfgr >> 13) & 7),
            "latency": w[flash_acr] & 0xF, "acr": w[flash_acr]}


def _decode(name: str, w: dict[int, int]) -> dict:
    if name == "stm32f407":
        clocks = _stm32_f4_f7(w, 0x4002_3C00)
        assert clocks["apb1"] <= 42e6 and clocks["apb2"] <= 84e6          # DS8626 bus limits
        acr = clocks["acr"]
        caches = {"fetch": bool(acr >> 9 & 1), "data": bool(acr >> 10 & 1), "prefetch": bool(acr >> 8 & 1)}
        return {**clocks, "console": clocks["apb2"], **caches}
    if name == "stm32f746":
        clocks = _stm32_f4_f7(w, 0x4002_3C00)
        assert clocks["apb1"] <= 54e6 and clocks["apb2"] <= 108e6         # DS10916 bus limits
        assert w[0x4000_7000] >> 16 & 3 == 3                              # over-drive on and switched
        ccr = w[SCB_CCR]
        return {**clocks, "console": clocks["apb2"], "fetch": bool(ccr >> 17 & 1), "data": bool(ccr >> 16 & 1),
                "prefetch": bool(clocks["acr"] >> 8 & 1)}
    if name == "stm32h743":
        divm = (w[0x5802_4428] >> 4) & 0x3F
        divr = w[0x5802_4430]
        n, p = (divr & 0x1FF) + 1, ((divr >> 9) & 0x7F) + 1
        assert w[0x5802_4428] & 3 == 0 and 8e6 <= 64e6 / divm <= 16e6      # HSI 64 MHz, PLL1 input range 3
        core = 64e6 / divm * n / p
        assert w[0x5802_4410] & 7 == 3 and w[0x5800_042C] & 1                # SW = PLL1, VOS0
        d1 = w[0x5802_4418]
        ahb = core / _ahb(d1 & 0xF) / _ahb((d1 >> 8) & 0xF)
        apb2 = ahb / _apb((w[0x5802_441C] >> 8) & 7)
        assert ahb <= 240e6 and apb2 <= 120e6                                # DS12110 bus limits at VOS0
        ccr = w[SCB_CCR]
        return {"core": core, "console": apb2, "latency": w[0x5200_2000] & 0xF,
                "fetch": bool(ccr >> 17 & 1), "data": bool(ccr >> 16 & 1), "prefetch": False}
    if name == "stm32l476":
        pll = w[0x4002_100C]
        m, n, r = ((pll >> 4) & 7) + 1, (pll >> 8) & 0x7F, 2 * (((pll >> 25) & 3) + 1)
        assert pll & 3 == 2 and pll >> 24 & 1                               # HSI16, PLLR output on
        core = 16e6 / m * n / r
        cfgr = w[0x4002_1008]
        assert cfgr & 3 == 3                                                # SW = PLL
        apb2 = core / _ahb((cfgr >> 4) & 0xF) / _apb((cfgr >> 11) & 7)
        acr = w[0x4002_2000]
        return {"core": core, "console": apb2, "latency": acr & 7,
                "fetch": bool(acr >> 9 & 1), "data": bool(acr >> 10 & 1), "prefetch": bool(acr >> 8 & 1)}
    assert name == "nrf52840"
    assert w[0x4000_0000] == 1                                              # HFXO started
    return {"core": 64e6, "console": None, "latency": 0, "fetch": bool(w[0x4001_E540] & 1),
            "data": False, "prefetch": False}


@pytest.mark.parametrize("name", ["stm32f407", "stm32f746", "stm32h743", "stm32l476", "nrf52840"])
def test_start_up_brings_the_board_to_the_table(tmp_path, name):
    from mcu_attn.build import BuildOptions, build

    target = get_target(name)
    build(MODEL, name, tmp_path / name, BuildOptions(bits=32))
    found = _decode(name, _boot_writes(tmp_path / name))
    assert found["core"] == target.clock_hz
    assert found["latency"] == target.flash_wait_states
    if found["console"] is not None:  # the console driver's baud divisor (written after the inference)
        assert found["console"] == target.bringup.console_clock_hz
        brr = int(re.search(r"#define MA_UART_BRR (\d+)", (tmp_path / name / "board.h").read_text()).group(1))
        assert brr == round(found["console"] / BAUD) and abs(found["console"] / brr / BAUD - 1) < 0.01
    flash = cycles.flash_timing(target)      # what the cycle model replays is what the start-up enabled
    assert (flash.fetch_lines > 0, flash.data_lines > 0, flash.prefetch) == \
        (found["fetch"], found["data"], found["prefetch"])
    assert flash.wait_states == found["latency"]


def test_every_part_has_its_facts():
    import dataclasses

    from mcu_attn.errors import UserError
    from mcu_attn.targets.boards import console

    for name in ("stm32f407", "stm32f746", "stm32h743", "stm32l476", "nrf52840"):
        target = get_target(name)
        assert target.bringup.ops and target.bringup.source and target.flash_cache.source
        assert all(op.what for op in target.bringup.ops) and target.console_pins.source
    bare = dataclasses.replace(get_target("stm32f407"), flash_cache=None, bringup=None)
    with pytest.raises(UserError, match="no flash cache fact"):
        cycles.flash_timing(bare)
    with pytest.raises(UserError, match="no clock bring-up"):
        console(bare)
