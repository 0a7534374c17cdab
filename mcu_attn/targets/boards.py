"""Board facts beyond the memory map: the register writes that bring each part from its reset clock to the
table's clock, the console's pins, clocks and baud divisor, and the flash cache the cycle model replays.
`table.py` attaches them to each Target (a missing fact is an error where it is needed, never a default).

Bring-up is a list of register operations (`RegisterOp`) that the generated start-up executes in order
(firmware_templates/cortexm/bringup.c), before .data is copied:
- `require`: the register must read `value` under `mask` (a clock that is on and ready at reset); when it does
  not, the part is an emulation without a clock-tree model (QEMU's netduinoplus2 leaves RCC unimplemented and
  reads it as 0) and the rest of the list is skipped: the firmware keeps the reset clock, which only changes
  real time, never the counted instructions;
- `modify`: reg = (reg & ~mask) | value;
- `wait`: until (reg & mask) == value, at most `WAIT_LIMIT` reads (a PLL locks in well under 1 ms).
Unicorn presets the bits that `require` and `wait` expect (sim/unicorn.py), so its boot runs every write;
`tests/test_bringup.py` decodes the writes per board (PLL factors -> clock, prescalers -> console clock, baud
divisor, wait states, caches) and compares them with the table. The Cortex-M7's L1 caches are a core feature:
the start-up enables both (`MA_HAS_CACHE`), and `flash_cache` describes them.

Every STM32 runs its PLL from the internal HSI oscillator, so that no board crystal is assumed. The console is
USART1 with TX on PA9 (alternate function 7 on all four families; the STM32F746G-DISCO routes it to the ST-LINK
virtual COM port), the nRF52840's UARTE0 drives P0.06 (the nRF52840-DK's interface-MCU UART), 115200 baud. The
values come from the reference manuals named in each `what` or `source`; "not verified" marks what could not be
checked against the manual's register tables when it was written (the same convention as table.py).
"""

from __future__ import annotations

from dataclasses import dataclass

BAUD = 115_200
WAIT_LIMIT = 1_000_000   # register reads per `wait` before the start-up carries on


@dataclass(frozen=True)
class RegisterOp:
    kind: str          # "require", "modify" or "wait" (module docstring)
    address: int
    mask: int
    value: int
    what: str          # the register and fields, and where the reference manual describes them


@dataclass(frozen=True)
class Bringup:
    ops: tuple[RegisterOp, ...]
    console_clock_hz: int   # the console UART's kernel clock once the ops have run (its baud divisor follows)
    source: str


@dataclass(frozen=True)
class ConsolePins:
    """What the console driver needs besides the UART's address: clock enables, TX pin and its function."""
    macros: tuple[tuple[str, str], ...]   # board.h macros of the console_*.c driver
    source: str


@dataclass(frozen=True)
class FlashCache:
    """What hides the flash wait states, as the start-up configures it (cycles.py replays it as an LRU)."""
    description: str
    fetch_lines: int      # instruction cache lines (0: none)
    data_lines: int       # data cache lines for flash reads (0: none)
    line_bytes: int
    prefetch: bool        # a sequential instruction fetch is prefetched: only jumps to uncached lines stall
    source: str


def _modify(address: int, mask: int, value: int, what: str) -> RegisterOp:
    return RegisterOp("modify", address, mask, value, what)


def _wait(address: int, mask: int, value: int, what: str) -> RegisterOp:
    return RegisterOp("wait", address, mask, value, what)


def _require(address: int, mask: int, what: str) -> RegisterOp:
    return RegisterOp("require", address, mask, mask, what)


# ---- STM32F407 at 168 MHz (RM0090) -----------------------------------------------------------------------
_F4_RCC, _F4_FLASH, _F4_PWR = 0x4002_3800, 0x4002_3C00, 0x4000_7000
STM32F407 = Bringup((
    _require(_F4_RCC + 0x00, 1 << 1, "RCC_CR HSIRDY: HSI on and ready at reset (RM0090 sec. 7.3.1)"),
    _modify(_F4_RCC + 0x40, 1 << 28, 1 << 28, "RCC_APB1ENR PWREN (RM0090 sec. 7.3.13)"),
    _modify(_F4_PWR + 0x00, 1 << 14, 1 << 14, "PWR_CR VOS = 1, scale 1 for 168 MHz (RM0090 sec. 5.4.1)"),
    _modify(_F4_FLASH + 0x00, 0x707, 0x705, "FLASH_ACR LATENCY = 5 WS, PRFTEN, ICEN, DCEN: the ART accelerator "
                                            "(RM0090 sec. 3.5.1 Table 10, sec. 3.9.1)"),
    _wait(_F4_FLASH + 0x00, 0x7, 0x5, "FLASH_ACR LATENCY reads back 5 before the clock rises (RM0090 sec. 3.5.1)"),
    _modify(_F4_RCC + 0x04, 0x0F43_FFFF, 8 | 168 << 6 | 0 << 16 | 7 << 24,
            "RCC_PLLCFGR: PLLSRC = HSI 16 MHz, PLLM = 8 (2 MHz), PLLN = 168 (VCO 336 MHz), PLLP = 2 (168 MHz), "
            "PLLQ = 7 (48 MHz) (RM0090 sec. 7.3.2)"),
    _modify(_F4_RCC + 0x08, 0xFCF0, 5 << 10 | 4 << 13, "RCC_CFGR HPRE /1, PPRE1 /4 (APB1 42 MHz), PPRE2 /2 "
                                                       "(APB2 84 MHz) (RM0090 sec. 7.3.3)"),
    _modify(_F4_RCC + 0x00, 1 << 24, 1 << 24, "RCC_CR PLLON (RM0090 sec. 7.3.1)"),
    _wait(_F4_RCC + 0x00, 1 << 25, 1 << 25, "RCC_CR PLLRDY"),
    _modify(_F4_RCC + 0x08, 0x3, 0x2, "RCC_CFGR SW = PLL (RM0090 sec. 7.3.3)"),
    _wait(_F4_RCC + 0x08, 0xC, 0x8, "RCC_CFGR SWS = PLL"),
), 84_000_000, "ST RM0090 sec. 7.2 clock tree: USART1 on APB2 = 84 MHz. Register fields recalled from RM0090 "
               "and ST's STM32F4 system_stm32f4xx.c; not verified against the manual's tables")

# ---- STM32F746 at 216 MHz (RM0385) -----------------------------------------------------------------------
_F7_RCC, _F7_FLASH, _F7_PWR = 0x4002_3800, 0x4002_3C00, 0x4000_7000
STM32F746 = Bringup((
    _require(_F7_RCC + 0x00, 1 << 1, "RCC_CR HSIRDY: HSI on and ready at reset (RM0385 sec. 5.3.1)"),
    _modify(_F7_RCC + 0x40, 1 << 28, 1 << 28, "RCC_APB1ENR PWREN (RM0385 sec. 5.3.13)"),
    _modify(_F7_PWR + 0x00, 0xC000, 0xC000, "PWR_CR1 VOS = 11, scale 1 (RM0385 sec. 4.4.1)"),
    _modify(_F7_RCC + 0x04, 0x0F43_FFFF, 8 | 216 << 6 | 0 << 16 | 9 << 24,
            "RCC_PLLCFGR: PLLSRC = HSI 16 MHz, PLLM = 8 (2 MHz), PLLN = 216 (VCO 432 MHz), PLLP = 2 (216 MHz), "
            "PLLQ = 9 (48 MHz) (RM0385 sec. 5.3.2)"),
    _modify(_F7_RCC + 0x08, 0xFCF0, 5 << 10 | 4 << 13, "RCC_CFGR HPRE /1, PPRE1 /4 (APB1 54 MHz), PPRE2 /2 "
                                                       "(APB2 108 MHz) (RM0385 sec. 5.3.3)"),
    _modify(_F7_RCC + 0x00, 1 << 24, 1 << 24, "RCC_CR PLLON (RM0385 sec. 5.3.1)"),
    _wait(_F7_RCC + 0x00, 1 << 25, 1 << 25, "RCC_CR PLLRDY"),
    _modify(_F7_PWR + 0x00, 1 << 16, 1 << 16, "PWR_CR1 ODEN: over-drive, needed above 180 MHz (RM0385 sec. 4.4.1)"),
    _wait(_F7_PWR + 0x04, 1 << 16, 1 << 16, "PWR_CSR1 ODRDY"),
    _modify(_F7_PWR + 0x00, 1 << 17, 1 << 17, "PWR_CR1 ODSWEN: switch to over-drive"),
    _wait(_F7_PWR + 0x04, 1 << 17, 1 << 17, "PWR_CSR1 ODSWRDY"),
    _modify(_F7_FLASH + 0x00, 0xF, 0x7, "FLASH_ACR LATENCY = 7 WS (RM0385 sec. 3.3.2 Table 5). ART and prefetch "
                                        "stay off: they serve the ITCM interface, the code here runs over AXIM "
                                        "through the L1 caches"),
    _wait(_F7_FLASH + 0x00, 0xF, 0x7, "FLASH_ACR LATENCY reads back 7"),
    _modify(_F7_RCC + 0x08, 0x3, 0x2, "RCC_CFGR SW = PLL (RM0385 sec. 5.3.3)"),
    _wait(_F7_RCC + 0x08, 0xC, 0x8, "RCC_CFGR SWS = PLL"),
), 108_000_000, "ST RM0385 sec. 5.2 clock tree: USART1 on APB2 = 108 MHz (DCKCFGR2 USART1SEL = APB2 at reset). "
                "Register fields recalled from RM0385 and ST's F7 HAL; not verified against the manual's tables")

# ---- STM32H743 at 480 MHz (RM0433; silicon revision V) ---------------------------------------------------
_H7_RCC, _H7_PWR, _H7_FLASH, _H7_SYSCFG = 0x5802_4400, 0x5802_4800, 0x5200_2000, 0x5800_0400
STM32H743 = Bringup((
    _require(_H7_RCC + 0x00, 1 << 2, "RCC_CR HSIRDY: HSI 64 MHz on and ready at reset (RM0433 sec. 8.7.2)"),
    _modify(_H7_PWR + 0x0C, 0x7, 0x2, "PWR_CR3 LDOEN, BYPASS and SCUEN cleared: LDO supply (RM0433 sec. 6.8.4)"),
    _wait(_H7_PWR + 0x04, 1 << 13, 1 << 13, "PWR_CSR1 ACTVOSRDY"),
    _modify(_H7_PWR + 0x18, 0xC000, 0xC000, "PWR_D3CR VOS = 11, scale 1 (RM0433 sec. 6.8.7)"),
    _wait(_H7_PWR + 0x18, 1 << 13, 1 << 13, "PWR_D3CR VOSRDY"),
    _modify(_H7_RCC + 0xF4, 1 << 1, 1 << 1, "RCC_APB4ENR SYSCFGEN (RM0433 sec. 8.7.42)"),
    _modify(_H7_SYSCFG + 0x2C, 0x1, 0x1, "SYSCFG_PWRCR ODEN: VOS0, needed for 480 MHz (RM0433 sec. 6.6.2)"),
    _wait(_H7_PWR + 0x18, 1 << 13, 1 << 13, "PWR_D3CR VOSRDY at VOS0"),
    _modify(_H7_FLASH + 0x00, 0x3F, 0x24, "FLASH_ACR LATENCY = 4 WS, WRHIGHFREQ = 2 (RM0433 sec. 4.3.8 Table 17)"),
    _wait(_H7_FLASH + 0x00, 0xF, 0x4, "FLASH_ACR LATENCY reads back 4"),
    _modify(_H7_RCC + 0x28, 0x3F3, 4 << 4, "RCC_PLLCKSELR PLLSRC = HSI, DIVM1 = 4 (16 MHz) (RM0433 sec. 8.7.11)"),
    _modify(_H7_RCC + 0x2C, 0x1000F, 0x3 << 2 | 1 << 16, "RCC_PLLCFGR PLL1RGE = 8-16 MHz, wide VCO, integer, "
                                                         "DIVP1EN (RM0433 sec. 8.7.12)"),
    _modify(_H7_RCC + 0x30, 0x7F7F_FFFF, 59 | 1 << 9 | 3 << 16 | 1 << 24,
            "RCC_PLL1DIVR DIVN1 = 60 (VCO 960 MHz), DIVP1 = 2 (480 MHz), DIVQ1 = 4, DIVR1 = 2 (RM0433 sec. 8.7.13)"),
    _modify(_H7_RCC + 0x18, 0xF7F, 0x8 | 4 << 4, "RCC_D1CFGR D1CPRE /1, HPRE /2 (AXI 240 MHz), D1PPRE /2 "
                                                 "(RM0433 sec. 8.7.8)"),
    _modify(_H7_RCC + 0x1C, 0x770, 4 << 4 | 4 << 8, "RCC_D2CFGR D2PPRE1 /2, D2PPRE2 /2 (APB2 120 MHz) "
                                                    "(RM0433 sec. 8.7.9)"),
    _modify(_H7_RCC + 0x20, 0x70, 4 << 4, "RCC_D3CFGR D3PPRE /2 (RM0433 sec. 8.7.10)"),
    _modify(_H7_RCC + 0x00, 1 << 24, 1 << 24, "RCC_CR PLL1ON"),
    _wait(_H7_RCC + 0x00, 1 << 25, 1 << 25, "RCC_CR PLL1RDY"),
    _modify(_H7_RCC + 0x10, 0x7, 0x3, "RCC_CFGR SW = PLL1 (RM0433 sec. 8.7.7)"),
    _wait(_H7_RCC + 0x10, 0x38, 0x18, "RCC_CFGR SWS = PLL1"),
), 120_000_000, "ST RM0433 sec. 8.5 clock tree: USART1 kernel clock rcc_pclk2 = 120 MHz (D2CCIP2R USART16SEL at "
                "reset). 480 MHz needs revision V silicon at VOS0. Register fields recalled from RM0433 and ST's H7 "
                "HAL; not verified against the manual's tables")

# ---- STM32L476 at 80 MHz (RM0351) ------------------------------------------------------------------------
_L4_RCC, _L4_FLASH = 0x4002_1000, 0x4002_2000
STM32L476 = Bringup((
    _require(_L4_RCC + 0x00, 1 << 1, "RCC_CR MSIRDY: MSI 4 MHz on and ready at reset (RM0351 sec. 6.4.1); "
                                     "PWR_CR1 VOS stays at its reset value, Range 1"),
    _modify(_L4_RCC + 0x00, 1 << 8, 1 << 8, "RCC_CR HSION (RM0351 sec. 6.4.1)"),
    _wait(_L4_RCC + 0x00, 1 << 10, 1 << 10, "RCC_CR HSIRDY"),
    _modify(_L4_FLASH + 0x00, 0x707, 0x704, "FLASH_ACR LATENCY = 4 WS, PRFTEN, ICEN, DCEN: the ART accelerator "
                                            "(RM0351 sec. 3.3.3 Table 9, sec. 3.7.1)"),
    _wait(_L4_FLASH + 0x00, 0x7, 0x4, "FLASH_ACR LATENCY reads back 4"),
    _modify(_L4_RCC + 0x0C, 0x0700_7F73, 0x2 | 10 << 8 | 1 << 24,
            "RCC_PLLCFGR PLLSRC = HSI16, PLLM = 1, PLLN = 10 (VCO 160 MHz), PLLR = 2 (80 MHz), PLLREN "
            "(RM0351 sec. 6.4.4)"),
    _modify(_L4_RCC + 0x00, 1 << 24, 1 << 24, "RCC_CR PLLON"),
    _wait(_L4_RCC + 0x00, 1 << 25, 1 << 25, "RCC_CR PLLRDY"),
    _modify(_L4_RCC + 0x08, 0x3FF3, 0x3, "RCC_CFGR HPRE, PPRE1, PPRE2 /1 (APB2 80 MHz), SW = PLL "
                                         "(RM0351 sec. 6.4.3)"),
    _wait(_L4_RCC + 0x08, 0xC, 0xC, "RCC_CFGR SWS = PLL"),
), 80_000_000, "ST RM0351 sec. 6.2 clock tree: USART1 on PCLK2 = 80 MHz (CCIPR USART1SEL at reset). Register "
               "fields recalled from RM0351 and ST's L4 HAL; not verified against the manual's tables")

# ---- nRF52840 at 64 MHz (Product Specification) ----------------------------------------------------------
_NRF_CLOCK, _NRF_NVMC = 0x4000_0000, 0x4001_E000
NRF52840 = Bringup((
    _modify(_NRF_CLOCK + 0x000, 0x1, 0x1, "CLOCK TASKS_HFCLKSTART: the crystal oscillator, as in the ICPU0 current "
                                          "figure (nRF52840 PS sec. 'CLOCK')"),
    _wait(_NRF_CLOCK + 0x100, 0x1, 0x1, "CLOCK EVENTS_HFCLKSTARTED"),
    _modify(_NRF_NVMC + 0x540, 0x1, 0x1, "NVMC ICACHECNF CACHEEN: the instruction cache (nRF52840 PS sec. 'NVMC')"),
), 64_000_000, "Nordic nRF52840 PS: the CPU always runs at 64 MHz; the UARTE baud register value does not depend "
               "on the clock. Register offsets recalled from the PS; not verified against it")


# ---- console pins ----------------------------------------------------------------------------------------
def _stm32_pins(rcc: int, gpio_enable: tuple[int, int], uart_enable: tuple[int, int], gpio: int,
                source: str) -> ConsolePins:
    """USART1 TX on PA9, AF7: the RCC enable registers (offset, bit) of GPIOA and USART1, GPIOA's address."""
    return ConsolePins((("MA_RCC_GPIO_ENR", f"0x{rcc + gpio_enable[0]:08X}u"), ("MA_RCC_GPIO_EN_BIT", str(gpio_enable[1])),
                        ("MA_RCC_UART_ENR", f"0x{rcc + uart_enable[0]:08X}u"), ("MA_RCC_UART_EN_BIT", str(uart_enable[1])),
                        ("MA_GPIO_BASE", f"0x{gpio:08X}u"), ("MA_TX_PIN", "9"), ("MA_TX_AF", "7")), source)


PINS_STM32F407 = _stm32_pins(_F4_RCC, (0x30, 0), (0x44, 4), 0x4002_0000,
                             "RM0090 sec. 7.3.10 AHB1ENR GPIOAEN, 7.3.14 APB2ENR USART1EN, sec. 2.3 GPIOA; PA9 AF7 "
                             "(DS8626 alternate function table)")
PINS_STM32F746 = _stm32_pins(_F7_RCC, (0x30, 0), (0x44, 4), 0x4002_0000,
                             "RM0385 sec. 5.3.10 AHB1ENR GPIOAEN, 5.3.14 APB2ENR USART1EN, sec. 2.2.2 GPIOA; PA9 AF7 "
                             "(DS10916 alternate function table)")
PINS_STM32H743 = _stm32_pins(_H7_RCC, (0xE0, 0), (0xF0, 4), 0x5802_0000,
                             "RM0433 sec. 8.7.43 AHB4ENR GPIOAEN, 8.7.46 APB2ENR USART1EN, sec. 2.3.2 GPIOA; PA9 AF7 "
                             "(DS12110 alternate function table)")
PINS_STM32L476 = _stm32_pins(_L4_RCC, (0x4C, 0), (0x60, 14), 0x4800_0000,
                             "RM0351 sec. 6.4.17 AHB2ENR GPIOAEN, 6.4.21 APB2ENR USART1EN, sec. 2.2.2 GPIOA; PA9 AF7 "
                             "(DS10198 alternate function table)")
PINS_NRF52840 = ConsolePins((("MA_UARTE_TXD_PIN", "6"), ("MA_UARTE_BAUDRATE", "0x01D7E000u")),
                            "nRF52840 PS sec. UARTE: PSEL.TXD = P0.06 (nRF52840-DK interface MCU), BAUDRATE "
                            "0x01D7E000 = 115200 baud")
PINS_MPS2 = ConsolePins((("MA_CMSDK_BAUDDIV", "16"),),
                        "Arm DDI 0479 CMSDK APB UART: BAUDDIV 16, the smallest divisor it accepts (QEMU ignores it)")

# ---- flash caches, as the start-up leaves them -----------------------------------------------------------
CACHE_STM32F407 = FlashCache("ART accelerator: instruction cache, data cache, prefetch", 64, 8, 16, True,
                             "RM0090 sec. 3.5.2: 64 lines of 128 bits on I-Code, 8 on D-Code, instruction prefetch; "
                             "all three enabled by the start-up (FLASH_ACR ICEN, DCEN, PRFTEN)")
CACHE_STM32L476 = FlashCache("ART accelerator: 1 KB instruction cache, 256 B data cache, prefetch", 32, 8, 32, True,
                             "RM0351 sec. 3.3.4: instruction cache 32 lines of 4 x 64 bits, data cache 8 lines of "
                             "4 x 64 bits, prefetch; enabled by the start-up (FLASH_ACR ICEN, DCEN, PRFTEN)")
CACHE_STM32F746 = FlashCache("Cortex-M7 L1 caches: 4 KB instruction + 4 KB data", 128, 128, 32, False,
                             "DS10916 sec. 3.1: L1 4 KB I + 4 KB D, 32-byte lines, both enabled by the start-up; a "
                             "miss fetches the whole line, no sequential prefetch is modelled (the flash prefetch "
                             "and ART serve the ITCM interface, not the AXIM one the code uses)")
CACHE_STM32H743 = FlashCache("Cortex-M7 L1 caches: 16 KB instruction + 16 KB data", 512, 512, 32, False,
                             "DS12110 sec. 3.1: L1 16 KB I + 16 KB D, 32-byte lines, both enabled by the start-up; "
                             "no sequential prefetch is modelled")
CACHE_NRF52840 = FlashCache("NVMC instruction cache", 128, 0, 16, False,
                            "nRF52840 PS sec. NVMC (ICACHECNF, enabled by the start-up): 128-bit lines; the 2 KB "
                            "size, uncached data reads and no prefetch are assumptions, which with 0 wait states do "
                            "not change the result")
CACHE_NONE_MPS2 = FlashCache("none: the code runs from SSRAM, no wait states", 0, 0, 16, False,
                             "Arm MPS2 FPGA images: code and data in zero-wait-state SSRAM")


# ---- the console driver ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Console:
    source: str                       # the console_*.c file under firmware_templates/cortexm
    macros: tuple[tuple[str, str], ...]


_SOURCES = {"stm32-usart-sr": "console_stm32_usart.c", "stm32-usart-isr": "console_stm32_usart.c",
            "nrf-uarte": "console_nrf_uarte.c", "cmsdk-uart": "console_cmsdk_uart.c"}


def console(target) -> Console:
    """The console driver source and the macros board.h gives it: the target's pins, and on STM32 parts the
    baud divisor for the UART's clock after bring-up."""
    from mcu_attn.errors import UserError

    if target.console_uart not in _SOURCES or target.console_pins is None:
        raise UserError(f"target {target.name}: the target table has no console UART and pins the harness knows "
                        f"({target.console_uart})")
    macros = {"MA_CONSOLE_BASE": f"0x{target.console_uart_base:08X}u", **dict(target.console_pins.macros)}
    if target.console_uart.startswith("stm32"):
        if target.bringup is None:
            raise UserError(f"target {target.name}: the target table has no clock bring-up, so no console baud "
                            f"divisor")
        macros["MA_UART_BRR"] = str(round(target.bringup.console_clock_hz / BAUD))
        if target.console_uart == "stm32-usart-isr":
            macros["MA_USART_ISR_LAYOUT"] = "1"
    return Console(_SOURCES[target.console_uart], tuple(sorted(macros.items())))
