/* touch64.c: touch 64 MiB of heap with a non-repeating pattern, mark the moment with
 * getppid() (the benchmark saves the guest right after it), then check it and exit.
 * Used by benchmarks/checkpoint.py to time save and restore of a guest with 64 MiB of data. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define SIZE (64u << 20)

int main(void)
{
    unsigned long long *p = malloc(SIZE);
    if (!p) { fprintf(stderr, "touch64: out of memory\n"); return 1; }
    unsigned long long x = 88172645463325252ull;
    for (size_t i = 0; i < SIZE / 8; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        p[i] = x;
    }
    getppid();  /* the marker: everything is touched */
    unsigned long long sum = 0;
    for (size_t i = 0; i < SIZE / 8; i++) sum += p[i];
    printf("sum %016llx\nEXIT-SUCCESS\n", sum);
    return 0;
}
