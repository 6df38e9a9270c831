/* ill.c: a bad guest that executes an illegal instruction.
 *
 * `ud2` is the x86 instruction defined to be invalid.  The CPU raises #UD
 * and Linux kills the program with SIGILL (exit status 132 in a shell:
 * 128 + 4).  An emulated kernel must report the same death.
 */
#include <stdio.h>

int main(void)
{
    printf("about to execute ud2\n");
    fflush(stdout);
    __asm__ volatile("ud2");
    printf("still alive?\n");        /* never reached */
    return 1;
}
