/* Fills N MiB (argv[1], default 4) of heap with a pattern and sums it in floating point and
   in integers, with no system call inside the loops: tests/test_memfork.py stops it in the
   middle, forks its hardware and runs parent and child on. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    size_t n = (size_t)(argc > 1 ? atoi(argv[1]) : 4) << 20;
    unsigned char *p = malloc(n);
    if (!p)
        return 1;
    double f = 0.5;
    unsigned long sum = 0;
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < n; i++)
            p[i] = (unsigned char)(i * 7 + round);
        for (size_t i = 0; i < n; i += 64) {
            sum = sum * 31 + p[i];
            f = f * 1.0000001 + p[i] / 3.0;
        }
    }
    printf("%lu %.6f\n", sum, f);
    return 0;
}
