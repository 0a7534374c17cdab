/* Console on the nRF52 UARTE0 (EasyDMA), written by polling: each chunk is copied to a RAM buffer (EasyDMA
 * cannot read flash), sent with STARTTX and waited for with the ENDTX event. Register offsets from the nRF52840
 * Product Specification, UARTE chapter. */
#include "board.h"

#define UARTE_TASKS_STARTTX (MA_CONSOLE_BASE + 0x008u)
#define UARTE_TASKS_STOPTX (MA_CONSOLE_BASE + 0x00Cu)
#define UARTE_EVENTS_ENDTX (MA_CONSOLE_BASE + 0x120u)
#define UARTE_EVENTS_TXSTOPPED (MA_CONSOLE_BASE + 0x158u)
#define UARTE_ENABLE (MA_CONSOLE_BASE + 0x500u)
#define UARTE_PSEL_TXD (MA_CONSOLE_BASE + 0x50Cu)
#define UARTE_BAUDRATE (MA_CONSOLE_BASE + 0x524u)
#define UARTE_TXD_PTR (MA_CONSOLE_BASE + 0x544u)
#define UARTE_TXD_MAXCNT (MA_CONSOLE_BASE + 0x548u)
#define UARTE_CONFIG (MA_CONSOLE_BASE + 0x56Cu)
#define UARTE_ENABLE_ON 8u
#define CHUNK 64u

static uint8_t ma_uarte_buffer[CHUNK];

void ma_console_init(void)
{
    MA_REG(UARTE_ENABLE) = 0u;
    MA_REG(UARTE_PSEL_TXD) = MA_UARTE_TXD_PIN; /* port 0, connected */
    MA_REG(UARTE_BAUDRATE) = MA_UARTE_BAUDRATE;
    MA_REG(UARTE_CONFIG) = 0u;                 /* 8N1, no flow control */
    MA_REG(UARTE_ENABLE) = UARTE_ENABLE_ON;
}

void ma_console_write(const char *text, uint32_t length)
{
    while (length > 0u) {
        uint32_t count = length < CHUNK ? length : CHUNK;
        for (uint32_t i = 0; i < count; ++i) {
            ma_uarte_buffer[i] = (uint8_t)text[i];
        }
        MA_REG(UARTE_EVENTS_ENDTX) = 0u;
        MA_REG(UARTE_TXD_PTR) = (uint32_t)(uintptr_t)ma_uarte_buffer;
        MA_REG(UARTE_TXD_MAXCNT) = count;
        MA_REG(UARTE_TASKS_STARTTX) = 1u;
        while (MA_REG(UARTE_EVENTS_ENDTX) == 0u) {
        }
        text += count;
        length -= count;
    }
    MA_REG(UARTE_EVENTS_TXSTOPPED) = 0u;
    MA_REG(UARTE_TASKS_STOPTX) = 1u;
}
