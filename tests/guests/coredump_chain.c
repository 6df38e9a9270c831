/* A chain of calls for tests/test_coredump.py: main -> outer -> inner. inner calls getppid()
   as a marker the test can find, then loops for a while: a checkpoint taken in the loop must
   give a core file whose backtrace in gdb reads inner, outer, main. */
#include <stdio.h>
#include <unistd.h>

__attribute__((noinline)) long inner(volatile long *cells, long n) {
    long sum = 0;
    getppid(); /* the marker */
    for (long i = 0; i < n; i++)
        sum += cells[i % 4] * i;
    return sum;
}

__attribute__((noinline)) long outer(long n) {
    volatile long cells[4] = {1, 2, 3, 4};
    return inner(cells, n) + 1;
}

int main(int argc, char **argv) {
    (void)argv;
    printf("%ld\n", outer(100000L * argc));
    return 0;
}
