/* compute.c: a pure compute loop, no system calls inside it.
 *
 * usage: compute [N]     (N defaults to 100,000,000 iterations)
 *
 * Runs a xorshift64 generator N times and folds every value into a sum.
 * Each step depends on the one before, so the compiler can neither skip
 * nor vectorise the loop.  Under an emulator this measures raw instruction
 * speed: the only system calls are the ones at start-up and the final
 * printf.
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000000;
    unsigned long long x = 88172645463325252ull;   /* any non-zero seed */
    unsigned long long sum = 0;

    for (long i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        sum += x;
    }

    printf("xorshift64 after %ld steps: x=%016llx sum=%016llx\n", n, x, sum);
    printf("EXIT-SUCCESS\n");
    return 0;
}
