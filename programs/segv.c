/* segv.c: a bad guest that writes to an unmapped address.
 *
 * Address 0x10 is in the first page, which Linux never maps, so the store
 * faults and the kernel kills the program with SIGSEGV (exit status 139 in
 * a shell: 128 + 11).  An emulated kernel must report the same death.
 * The address is read from a volatile variable, so the compiler cannot see
 * that it is a null-page pointer and replace the store with something else.
 */
#include <stdint.h>
#include <stdio.h>

int main(void)
{
    printf("about to write to address 0x10\n");
    fflush(stdout);
    volatile uintptr_t address = 0x10;
    volatile int *p = (volatile int *)address;
    *p = 42;
    printf("still alive?\n");        /* never reached */
    return 1;
}
