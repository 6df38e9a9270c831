/* rdtsc.c: read the time-stamp counter twice. Under vsnap it comes from the virtual clock:
 * the same values every run, and never going backwards. */
#include <stdio.h>

static unsigned long long __attribute__((noinline)) tsc(void) { return __builtin_ia32_rdtsc(); }

int main(void)
{
    unsigned long long t1 = tsc();
    unsigned long long t2 = __builtin_ia32_rdtsc();
    printf("rdtsc %llu %llu\n", t1, t2);
    printf("%s\n", t2 >= t1 ? "monotonic" : "BACKWARDS");
    return 0;
}
