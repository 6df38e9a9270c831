/* hello.c: the smallest guest program.
 *
 * What it shows: a static binary starts (the libc sets up TLS, the stack
 * holds argc/argv/envp/auxv), calls printf, which ends in a write(1, ...)
 * system call, and exits with status 0 through exit_group.
 */
#include <stdio.h>

int main(void)
{
    printf("Hello, world!\n");
    printf("EXIT-SUCCESS\n");
    return 0;
}
