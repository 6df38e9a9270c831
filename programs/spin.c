/* spin.c: a bad guest that never stops.
 *
 * An endless loop with no system calls in it.  The only ways out are an
 * instruction budget or timeout in the emulator, or a signal.  The volatile
 * counter keeps the loop real (an empty `for (;;);` without side effects is
 * something a C compiler could otherwise treat specially).
 */
#include <stdio.h>

int main(void)
{
    printf("spinning forever\n");
    fflush(stdout);
    volatile unsigned long spins = 0;
    for (;;)
        spins++;
}
