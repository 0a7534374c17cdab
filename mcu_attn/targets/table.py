"""The boards and cores mcu-attn knows, with every constant's source.

Memory. `flash_*` and `sram_*` are what the linker may use for the model firmware: one contiguous flash region and
one contiguous SRAM region (the TCM/CCM/backup RAMs that are not contiguous with it are listed in `extra_ram`).

Clock and energy. `clock_hz` is the highest core clock the datasheet allows; `run_current_a` is the typical supply
current in Run mode at that clock with code executing from flash, at `voltage_v`; `flash_wait_states` is the
number the reference manual prescribes at that clock; `flash_cache` is what hides them. The cycle and energy
models (`mcu_attn/sim`) read these. `bringup` is the register sequence with which the generated start-up sets
that clock, those wait states and that cache (boards.py); the same facts feed the start-up and the model.

Citations. `source` covers the core, clock and memory map; `citations` gives one string per other constant
(`cite(field)`). A citation says "not verified" where the number could not be checked against the document
named, so that nobody mistakes a recollection for a datasheet figure. docs/targets.md has the same table.

Console. `console_uart` names the UART register interface the harness polls (`mcu_attn/firmware_templates/cortexm/
console_*.c`): "stm32-usart-sr" (STM32F4: SR/DR), "stm32-usart-isr" (STM32F7/H7/L4: ISR/TDR), "nrf-uarte"
(nRF52 UARTE, EasyDMA) and "cmsdk-uart" (Arm CMSDK APB UART of the MPS2 FPGA images).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from mcu_attn.errors import UserError
from mcu_attn.targets import boards
from mcu_attn.targets.boards import Bringup, ConsolePins, FlashCache

KB = 1024
MB = 1024 * KB

_FPU_FLAGS = {
    None: ("-mfloat-abi=soft",),
    "fpv4-sp-d16": ("-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"),
    "fpv5-sp-d16": ("-mfpu=fpv5-sp-d16", "-mfloat-abi=hard"),
    "fpv5-d16": ("-mfpu=fpv5-d16", "-mfloat-abi=hard"),
}


@dataclass(frozen=True)
class Target:
    name: str
    core: str                        # the -mcpu name: cortex-m4, cortex-m7, cortex-m33 (or "host")
    fpu: str | None                  # the -mfpu name, None without an FPU
    clock_hz: int
    flash_base: int
    flash_bytes: int
    sram_base: int
    sram_bytes: int
    extra_ram: str
    source: str                      # core, clock and memory map
    aliases: tuple[str, ...] = ()
    renode_platform: str | None = None   # platforms/cpus/*.repl inside a Renode installation
    qemu_machine: str | None = None      # qemu-system-arm -M name whose memory map and console UART match
    pyocd_target: str | None = None
    console_uart: str | None = None      # register interface, see the module docstring
    console_uart_base: int | None = None
    has_dwt: bool = False                # DWT cycle counter (DWT->CYCCNT)
    run_current_a: float | None = None
    voltage_v: float | None = None
    flash_wait_states: int | None = None
    flash_cache: FlashCache | None = None    # what hides the wait states, as the start-up configures it
    bringup: Bringup | None = None           # reset clock -> clock_hz, wait states, accelerators (boards.py)
    console_pins: ConsolePins | None = None  # clock enables, TX pin, baud register of the console UART
    renode_uart: str | None = None           # the console UART's name in the Renode platform
    openocd: tuple[str, str] | None = None   # OpenOCD's interface and target scripts for the usual board
    citations: tuple[tuple[str, str], ...] = field(default=())

    @property
    def is_host(self) -> bool:
        return self.name == "host"

    @property
    def cflags(self) -> tuple[str, ...]:
        """-mcpu/-mthumb/-mfpu/-mfloat-abi for arm-none-eabi-gcc (empty for the host)."""
        if self.is_host:
            return ()
        return (f"-mcpu={self.core}", "-mthumb", *_FPU_FLAGS[self.fpu])

    def cite(self, name: str) -> str:
        """The source of one constant (`source` when it has no citation of its own)."""
        return dict(self.citations).get(name, self.source)

    def as_dict(self) -> dict:
        """Everything `mcu-attn targets --json` prints (addresses as integers)."""
        names = ("name", "aliases", "core", "fpu", "clock_hz", "flash_base", "flash_bytes", "sram_base",
                 "sram_bytes", "extra_ram", "renode_platform", "renode_uart", "qemu_machine", "pyocd_target",
                 "openocd", "console_uart", "console_uart_base", "has_dwt", "run_current_a", "voltage_v",
                 "flash_wait_states", "source")
        entry = {key: getattr(self, key) for key in names}
        entry["aliases"] = list(self.aliases)
        entry["openocd"] = list(self.openocd) if self.openocd else None
        entry["flash_cache"] = asdict(self.flash_cache) if self.flash_cache else None
        entry["bringup"] = None if self.bringup is None else {
            "console_clock_hz": self.bringup.console_clock_hz, "source": self.bringup.source,
            "ops": [asdict(op) for op in self.bringup.ops]}
        entry["console_pins"] = None if self.console_pins is None else {
            "macros": dict(self.console_pins.macros), "source": self.console_pins.source}
        entry["cflags"] = list(self.cflags)
        entry["citations"] = dict(self.citations)
        return entry


# ---- citations ---------------------------------------------------------------------------------------------------
# The memory maps, clocks and flash wait states of the ST parts are in their reference manuals (RM) and
# datasheets (DS); the Nordic part's in its Product Specification (PS). "not verified" marks a number recalled
# from the document named that could not be checked against it when the table was written.

_F746_RUN = ("ST DS10916 (STM32F745xx/STM32F746xx datasheet), sec. 6.3.6 'Supply current characteristics', "
             "Run mode from flash (ART and L1-cache on), 216 MHz, all peripherals disabled, typical: about "
             "100 mA. Rounded; not verified against the table")
_F407_RUN = ("ST DS8626 (STM32F405xx/STM32F407xx datasheet), sec. 5.3.6, Table 20 'Typical and maximum current "
             "consumption in Run mode, code with data processing running from Flash memory (ART accelerator "
             "enabled)', 168 MHz, all peripherals disabled, typical 40 mA (= the 238 uA/MHz ST quotes for this "
             "line). Not verified against the table")
_H743_RUN = ("ST DS12110 (STM32H742xI/G STM32H743xI/G datasheet), sec. 6.3.6, Run mode current from flash, "
             "480 MHz (VOS0), all peripherals disabled, typical: order of 150 mA. Not verified against the table; "
             "treat as an estimate")
_L476_RUN = ("ST DS10198 (STM32L476xx datasheet), cover page '100 uA/MHz run mode (LDO mode)' times 80 MHz; "
             "sec. 6.3.5 'Current consumption in Run mode, code with data processing running from Flash, ART "
             "enable (Cache ON Prefetch OFF)', Range 1, 80 MHz gives the full figure. Derived, not verified "
             "against the table")
_NRF_RUN = ("Nordic nRF52840 Product Specification v1.x, sec. 'Current consumption > Electrical specification > "
            "CPU running', ICPU0: CPU running CoreMark at 64 MHz from flash, cache enabled, clock HFXO, "
            "regulator DC/DC, 3 V: 3.3 mA typical (about 52 uA/MHz). Not verified against the table")
_WS = {
    "stm32f746": "ST RM0385 (STM32F75xxx/74xxx reference manual), sec. 3.3.2, Table 5 'Number of wait states "
                 "according to CPU clock (HCLK) frequency': 7 WS for 210 < HCLK <= 216 MHz at 2.7-3.6 V. "
                 "Not verified against the table",
    "stm32f407": "ST RM0090 (STM32F405/415/407/417/427/437/429/439 reference manual), sec. 3.5.1, Table 10 "
                 "'Number of wait states according to CPU clock (HCLK) frequency': 5 WS for 150 < HCLK <= 168 MHz "
                 "at 2.7-3.6 V (also reproduced in ST's STM32F4 standard peripheral library, FLASH_SetLatency)",
    "stm32h743": "ST RM0433 (STM32H742/743/753/750 reference manual), sec. 4.3.8, Table 17 'FLASH recommended "
                 "number of wait states and programming delay': 4 WS at ACLK 240 MHz (core 480 MHz, VOS0). "
                 "Not verified against the table",
    "stm32l476": "ST RM0351 (STM32L4x5/L4x6 reference manual), sec. 3.3.3, Table 9 'Number of wait states "
                 "according to CPU clock (HCLK) frequency': 4 WS for 64 < HCLK <= 80 MHz in Range 1. "
                 "Not verified against the table",
    "nrf52840": "Nordic nRF52840 PS: no programmable flash wait states and no wait-state figure found (not "
                "verified); 0 assumed, with the instruction cache (NVMC ICACHECNF) on as in the ICPU0 current figure",
}
_UART = {
    "stm32f746": "USART1 at 0x40011000: ST RM0385 sec. 2.2.2 Table 1 (memory map); Renode platforms/cpus/"
                 "stm32f746.repl maps usart1 (STM32F7_USART) there",
    "stm32f407": "USART1 at 0x40011000: ST RM0090 sec. 2.3 Table 1; Renode platforms/cpus/stm32f4.repl (STM32_UART) "
                 "and QEMU netduinoplus2 (first -serial) map it there",
    "stm32h743": "USART1 at 0x40011000: ST RM0433 sec. 2.3.2 Table 8; Renode platforms/cpus/stm32h7.repl "
                 "(STM32F7_USART)",
    "stm32l476": "USART1 at 0x40013800: ST RM0351 sec. 2.2.2 Table 1 (memory map). Not verified against the table",
    "nrf52840": "UARTE0 at 0x40002000: nRF52840 PS sec. 'Memory > Instantiation'; Renode platforms/cpus/"
                "nrf52840.repl (NRF52840_UART, easyDMA: true)",
}
_MPS2 = ("Arm MPS2 FPGA image as QEMU 7.2 models it (qemu-system-arm -M {machine}, `info mtree`): {memory}; "
         "console is the CMSDK APB UART0 at {uart}. No silicon: no clock, current or flash wait states"
         "; 25 MHz is the FPGA image's nominal clock")
_NO_SILICON = "none: an FPGA image, not a part with a datasheet"


def _mps2(core: str, fpu: str, machine: str, flash_base: int, sram_base: int, extra_ram: str, memory: str,
          uart_base: int, uart_note: str = "") -> Target:
    """An MPS2 FPGA image (the target is named after its core): 4 MB of code and 4 MB of data SSRAM, a 25 MHz
    nominal clock, the CMSDK APB UART0 as console, no silicon figures."""
    return Target(core, core, fpu, 25_000_000, flash_base, 4 * MB, sram_base, 4 * MB, extra_ram,
                  _MPS2.format(machine=machine, memory=memory, uart=f"{uart_base:#x}{uart_note}"),
                  qemu_machine=machine, pyocd_target="cortex_m", console_uart="cmsdk-uart",
                  console_uart_base=uart_base, has_dwt=True, flash_cache=boards.CACHE_NONE_MPS2,
                  console_pins=boards.PINS_MPS2,
                  citations=(("run_current_a", _NO_SILICON), ("flash_wait_states", _NO_SILICON)))


def _cites(name: str, run: str, volts: str) -> tuple[tuple[str, str], ...]:
    return (("run_current_a", run), ("voltage_v", volts), ("flash_wait_states", _WS[name]),
            ("console_uart_base", _UART[name]))


_ST_VOLTS = "VDD = 3.3 V, the condition of the typical Run-mode figures in the ST datasheet named for run_current_a"

TARGETS: tuple[Target, ...] = (
    Target("stm32f746", "cortex-m7", "fpv5-sp-d16", 216_000_000, 0x0800_0000, 1 * MB, 0x2000_0000, 320 * KB,
           "the 320 KB are 64 KB DTCM + 240 KB SRAM1 + 16 KB SRAM2; +16 KB ITCM RAM, 4 KB backup SRAM",
           "ST DS10916 (STM32F745xx/STM32F746xx datasheet) sec. 1, 3.4 (memories) and Figure 'Memory map'",
           aliases=("stm32",), renode_platform="platforms/cpus/stm32f746.repl", renode_uart="sysbus.usart1",
           pyocd_target="stm32f746nghx", openocd=("interface/stlink.cfg", "target/stm32f7x.cfg"),
           console_uart="stm32-usart-isr", console_uart_base=0x4001_1000, has_dwt=True, run_current_a=0.100,
           voltage_v=3.3, flash_wait_states=7, flash_cache=boards.CACHE_STM32F746, bringup=boards.STM32F746,
           console_pins=boards.PINS_STM32F746,
           citations=_cites("stm32f746", _F746_RUN, _ST_VOLTS)),
    Target("stm32f407", "cortex-m4", "fpv4-sp-d16", 168_000_000, 0x0800_0000, 1 * MB, 0x2000_0000, 128 * KB,
           "+64 KB CCM data RAM at 0x10000000",
           "ST DS8626 (STM32F405xx/STM32F407xx datasheet) sec. 2.2.4-2.2.6 and Figure 18 'Memory map'",
           renode_platform="platforms/cpus/stm32f4.repl", renode_uart="sysbus.usart1", qemu_machine="netduinoplus2",
           pyocd_target="stm32f407vgtx", openocd=("interface/stlink.cfg", "target/stm32f4x.cfg"),
           console_uart="stm32-usart-sr", console_uart_base=0x4001_1000,
           has_dwt=True, run_current_a=0.040, voltage_v=3.3, flash_wait_states=5,
           flash_cache=boards.CACHE_STM32F407, bringup=boards.STM32F407, console_pins=boards.PINS_STM32F407,
           citations=_cites("stm32f407", _F407_RUN, _ST_VOLTS)),
    Target("stm32h743", "cortex-m7", "fpv5-d16", 480_000_000, 0x0800_0000, 2 * MB, 0x2400_0000, 512 * KB,
           "+128 KB DTCM at 0x20000000, 64 KB ITCM, 288 KB AHB SRAM (D2), 64 KB SRAM4 (D3)",
           "ST DS12110 (STM32H742xI/G STM32H743xI/G datasheet) sec. 3.3.1-3.3.2 (480 MHz: revision V, VOS0)",
           renode_platform="platforms/cpus/stm32h743.repl", renode_uart="sysbus.usart1",
           pyocd_target="stm32h743zitx", openocd=("interface/stlink.cfg", "target/stm32h7x.cfg"),
           console_uart="stm32-usart-isr", console_uart_base=0x4001_1000, has_dwt=True, run_current_a=0.150,
           voltage_v=3.3, flash_wait_states=4, flash_cache=boards.CACHE_STM32H743, bringup=boards.STM32H743,
           console_pins=boards.PINS_STM32H743,
           citations=_cites("stm32h743", _H743_RUN, _ST_VOLTS)),
    Target("stm32l476", "cortex-m4", "fpv4-sp-d16", 80_000_000, 0x0800_0000, 1 * MB, 0x2000_0000, 96 * KB,
           "+32 KB SRAM2 at 0x10000000",
           "ST DS10198 (STM32L476xx datasheet) sec. 3.5-3.6 and Figure 'Memory map'",
           pyocd_target="stm32l476rgtx", openocd=("interface/stlink.cfg", "target/stm32l4x.cfg"),
           console_uart="stm32-usart-isr", console_uart_base=0x4001_3800,
           has_dwt=True, run_current_a=0.008, voltage_v=3.0, flash_wait_states=4,
           flash_cache=boards.CACHE_STM32L476, bringup=boards.STM32L476, console_pins=boards.PINS_STM32L476,
           citations=_cites("stm32l476", _L476_RUN,
                            "VDD = 3.0 V, the typical-value condition of ST DS10198 sec. 6.3.5")),
    Target("nrf52840", "cortex-m4", "fpv4-sp-d16", 64_000_000, 0x0000_0000, 1 * MB, 0x2000_0000, 256 * KB,
           "none",
           "Nordic nRF52840 Product Specification v1.x sec. 'Memory' (flash at 0, RAM at 0x20000000) and 'CPU'",
           renode_platform="platforms/cpus/nrf52840.repl", renode_uart="sysbus.uart0", pyocd_target="nrf52840",
           openocd=("interface/jlink.cfg", "target/nrf52.cfg"), console_uart="nrf-uarte",
           console_uart_base=0x4000_2000, has_dwt=True, run_current_a=0.0033, voltage_v=3.0,
           flash_wait_states=0, flash_cache=boards.CACHE_NRF52840, bringup=boards.NRF52840,
           console_pins=boards.PINS_NRF52840,
           citations=_cites("nrf52840", _NRF_RUN,
                            "3 V on VDD, the common condition of the nRF52840 PS current-consumption scenarios")),
    _mps2("cortex-m4", "fpv4-sp-d16", "mps2-an386", 0x0000_0000, 0x2000_0000,
          "the image has 64 KB more block RAM at 0x01000000",
          "4 MB ZBT SSRAM1 at 0 (code), 4 MB SSRAM2/3 at 0x20000000", 0x4000_4000),
    _mps2("cortex-m7", "fpv5-d16", "mps2-an500", 0x0000_0000, 0x2000_0000,
          "the image has 16 MB PSRAM at 0x60000000",
          "4 MB ZBT SSRAM1 at 0 (code), 4 MB SSRAM2/3 at 0x20000000", 0x4000_4000),
    _mps2("cortex-m33", "fpv5-sp-d16", "mps2-an505", 0x1000_0000, 0x3800_0000,
          "runs in the Secure state: code and data use the Secure aliases",
          "4 MB ZBT SSRAM1 at 0x10000000 (Secure alias of 0, code), "
          "2+2 MB SSRAM2/3 at 0x38000000 (Secure alias of 0x28000000)", 0x5020_0000, " (Secure)"),
    Target("host", "host", None, 0, 0, 0, 0, 0, "n/a", "the build machine (native run, used by tests)"),
)


def get_target(name: str) -> Target:
    for target in TARGETS:
        if name == target.name or name in target.aliases:
            return target
    known = ", ".join(t.name for t in TARGETS)
    raise UserError(f"unknown target {name!r} (known: {known}; 'stm32' means stm32f746)")
