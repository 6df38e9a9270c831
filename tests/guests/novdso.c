/* novdso.c: there is no vDSO (no AT_SYSINFO_EHDR in the auxv), so the libc's time calls are
 * system calls: each one shows in --strace and counts in --stats. */
#include <stdio.h>
#include <sys/auxv.h>
#include <sys/time.h>
#include <time.h>

int main(void)
{
    struct timespec ts;
    struct timeval tv;
    printf("AT_SYSINFO_EHDR %lu\n", getauxval(AT_SYSINFO_EHDR));
    clock_gettime(CLOCK_MONOTONIC, &ts);
    gettimeofday(&tv, NULL);
    time(NULL);
    return 0;
}
