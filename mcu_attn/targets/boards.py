"""What the harness needs to bring up a board's console UART, beyond the target table.

The firmware runs at the reset clock, so the UART's baud-rate divisor follows from the reset clock of the bus
that feeds it. On STM32 parts the console is USART1 with TX on PA9 (alternate function 7 on all four families;
the STM32F746G-DISCO routes it to the ST-LINK virtual COM port). The RCC enable registers and bits, the GPIO port
address and the reset clocks come from each part's reference manual:

| part | RCC | GPIOA enable | USART1 enable | GPIOA | USART1 clock at reset |
|---|---|---|---|---|---|
| STM32F407 | 0x40023800 | AHB1ENR (+0x30) bit 0 | APB2ENR (+0x44) bit 4 | 0x40020000 | HSI 16 MHz (RM0090 sec. 7) |
| STM32F746 | 0x40023800 | AHB1ENR (+0x30) bit 0 | APB2ENR (+0x44) bit 4 | 0x40020000 | HSI 16 MHz (RM0385 sec. 5) |
| STM32H743 | 0x58024400 | AHB4ENR (+0xE0) bit 0 | APB2ENR (+0xF0) bit 4 | 0x58020000 | HSI 64 MHz (RM0433 sec. 8) |
| STM32L476 | 0x40021000 | AHB2ENR (+0x4C) bit 0 | APB2ENR (+0x60) bit 14 | 0x48000000 | MSI 4 MHz (RM0351 sec. 6) |

The nRF52840 drives TXD on P0.06 (the nRF52840-DK's interface-MCU UART); the MPS2 images need no pin set-up.
Emulators ignore all of this except the UART registers themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcu_attn.targets.table import Target

BAUD = 115_200


@dataclass(frozen=True)
class Console:
    source: str                       # the console_*.c file under firmware_templates/cortexm
    macros: tuple[tuple[str, str], ...]


def _stm32(rcc: int, gpio_en: tuple[int, int], uart_en: tuple[int, int], gpio: int, clock_hz: int) -> dict:
    return {"MA_RCC_GPIO_ENR": f"0x{rcc + gpio_en[0]:08X}u", "MA_RCC_GPIO_EN_BIT": str(gpio_en[1]),
            "MA_RCC_UART_ENR": f"0x{rcc + uart_en[0]:08X}u", "MA_RCC_UART_EN_BIT": str(uart_en[1]),
            "MA_GPIO_BASE": f"0x{gpio:08X}u", "MA_TX_PIN": "9", "MA_TX_AF": "7",
            "MA_UART_BRR": str(round(clock_hz / BAUD))}


_STM32 = {
    "stm32f407": _stm32(0x4002_3800, (0x30, 0), (0x44, 4), 0x4002_0000, 16_000_000),
    "stm32f746": _stm32(0x4002_3800, (0x30, 0), (0x44, 4), 0x4002_0000, 16_000_000),
    "stm32h743": _stm32(0x5802_4400, (0xE0, 0), (0xF0, 4), 0x5802_0000, 64_000_000),
    "stm32l476": _stm32(0x4002_1000, (0x4C, 0), (0x60, 14), 0x4800_0000, 4_000_000),
}

_SOURCES = {"stm32-usart-sr": "console_stm32_usart.c", "stm32-usart-isr": "console_stm32_usart.c",
            "nrf-uarte": "console_nrf_uarte.c", "cmsdk-uart": "console_cmsdk_uart.c"}


def console(target: Target) -> Console:
    """The console driver source and the macros board.h gives it."""
    if target.console_uart not in _SOURCES:
        raise ValueError(f"target {target.name} has no console UART the harness knows ({target.console_uart})")
    macros = {"MA_CONSOLE_BASE": f"0x{target.console_uart_base:08X}u"}
    if target.console_uart.startswith("stm32"):
        macros.update(_STM32[target.name])
        if target.console_uart == "stm32-usart-isr":
            macros["MA_USART_ISR_LAYOUT"] = "1"
    elif target.console_uart == "nrf-uarte":
        macros.update({"MA_UARTE_TXD_PIN": "6", "MA_UARTE_BAUDRATE": "0x01D7E000u"})  # P0.06, 115200 baud
    elif target.console_uart == "cmsdk-uart":
        macros.update({"MA_CMSDK_BAUDDIV": "16"})  # the smallest divisor the CMSDK UART accepts
    return Console(_SOURCES[target.console_uart], tuple(sorted(macros.items())))
