/* Console on the Arm CMSDK APB UART of the MPS2 FPGA images, written by polling (Arm DDI 0479, CMSDK technical
 * reference manual, APB UART). */
#include "board.h"

#define UART_DATA (MA_CONSOLE_BASE + 0x00u)
#define UART_STATE (MA_CONSOLE_BASE + 0x04u)
#define UART_CTRL (MA_CONSOLE_BASE + 0x08u)
#define UART_BAUDDIV (MA_CONSOLE_BASE + 0x10u)
#define STATE_TX_FULL (1u << 0)
#define CTRL_TX_EN (1u << 0)

void ma_console_init(void)
{
    MA_REG(UART_BAUDDIV) = MA_CMSDK_BAUDDIV;
    MA_REG(UART_CTRL) = CTRL_TX_EN;
}

void ma_console_write(const char *text, uint32_t length)
{
    for (uint32_t i = 0; i < length; ++i) {
        while ((MA_REG(UART_STATE) & STATE_TX_FULL) != 0u) {
        }
        MA_REG(UART_DATA) = (uint8_t)text[i];
    }
}
