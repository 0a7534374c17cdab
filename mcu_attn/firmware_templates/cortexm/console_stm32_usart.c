/* Console on an STM32 USART, written by polling. No vendor headers. Two register layouts:
 * - SR/DR (STM32F4, RM0090 sec. 30.6): SR at 0x00, DR at 0x04, BRR at 0x08, CR1 at 0x0C with UE at bit 13;
 * - ISR/TDR (STM32F7/H7/L4, RM0385 sec. 31.8, RM0433 sec. 48.7, RM0351 sec. 40.8, when board.h defines
 *   MA_USART_ISR_LAYOUT): CR1 at 0x00 with UE at bit 0, BRR at 0x0C, ISR at 0x1C, TDR at 0x28.
 * TXE (bit 7) and TC (bit 6) sit at the same positions in SR and ISR. */
#include "board.h"

#ifdef MA_USART_ISR_LAYOUT
#define USART_CR1 (MA_CONSOLE_BASE + 0x00u)
#define USART_BRR (MA_CONSOLE_BASE + 0x0Cu)
#define USART_STATUS (MA_CONSOLE_BASE + 0x1Cu)
#define USART_DATA (MA_CONSOLE_BASE + 0x28u)
#define CR1_UE (1u << 0)
#else
#define USART_STATUS (MA_CONSOLE_BASE + 0x00u)
#define USART_DATA (MA_CONSOLE_BASE + 0x04u)
#define USART_BRR (MA_CONSOLE_BASE + 0x08u)
#define USART_CR1 (MA_CONSOLE_BASE + 0x0Cu)
#define CR1_UE (1u << 13)
#endif
#define STATUS_TXE (1u << 7)
#define STATUS_TC (1u << 6)
#define CR1_TE (1u << 3)

void ma_console_init(void)
{
    MA_REG(MA_RCC_GPIO_ENR) |= 1u << MA_RCC_GPIO_EN_BIT;
    MA_REG(MA_RCC_UART_ENR) |= 1u << MA_RCC_UART_EN_BIT;
    (void)MA_REG(MA_RCC_UART_ENR); /* a read-back: the clock is running before the first register access */
    MA_REG(MA_GPIO_BASE + 0x00u) = (MA_REG(MA_GPIO_BASE + 0x00u) & ~(3u << (2u * MA_TX_PIN)))
                                   | (2u << (2u * MA_TX_PIN)); /* MODER: alternate function */
    MA_REG(MA_GPIO_BASE + 0x24u) = (MA_REG(MA_GPIO_BASE + 0x24u) & ~(0xFu << (4u * (MA_TX_PIN - 8u))))
                                   | ((uint32_t)MA_TX_AF << (4u * (MA_TX_PIN - 8u))); /* AFRH */
    MA_REG(USART_CR1) = 0u; /* BRR may only be written while the USART is disabled */
    MA_REG(USART_BRR) = MA_UART_BRR;
    MA_REG(USART_CR1) = CR1_UE | CR1_TE;
}

void ma_console_write(const char *text, uint32_t length)
{
    for (uint32_t i = 0; i < length; ++i) {
        while ((MA_REG(USART_STATUS) & STATUS_TXE) == 0u) {
        }
        MA_REG(USART_DATA) = (uint8_t)text[i];
    }
    while ((MA_REG(USART_STATUS) & STATUS_TC) == 0u) {
    }
}
