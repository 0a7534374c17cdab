/* Console on an STM32F4 USART (SR/DR register layout), written by polling. No vendor headers: the register
 * offsets are those of the reference manual (RM0090 sec. 30.6). */
#include "board.h"

#define USART_SR (MA_CONSOLE_BASE + 0x00u)
#define USART_DR (MA_CONSOLE_BASE + 0x04u)
#define USART_BRR (MA_CONSOLE_BASE + 0x08u)
#define USART_CR1 (MA_CONSOLE_BASE + 0x0Cu)
#define SR_TXE (1u << 7)
#define SR_TC (1u << 6)
#define CR1_UE (1u << 13)
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
    MA_REG(USART_BRR) = MA_UART_BRR;
    MA_REG(USART_CR1) = CR1_UE | CR1_TE;
}

void ma_console_write(const char *text, uint32_t length)
{
    for (uint32_t i = 0; i < length; ++i) {
        while ((MA_REG(USART_SR) & SR_TXE) == 0u) {
        }
        MA_REG(USART_DR) = (uint8_t)text[i];
    }
    while ((MA_REG(USART_SR) & SR_TC) == 0u) {
    }
}
