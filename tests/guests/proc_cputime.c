/* CPU time is each process's own: a child that computes for a while does not move its
 * parent's CPU clocks; once waited for, it shows in the parent's RUSAGE_CHILDREN and times().
 * Prints only comparisons, so native and vsnap runs print the same lines. */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/times.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double cpu(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static double tv(struct timeval t) { return t.tv_sec + t.tv_usec / 1e6; }

int main(void) {
    double before = cpu(CLOCK_PROCESS_CPUTIME_ID);
    pid_t c = fork();
    if (c == 0) {
        double t0 = cpu(CLOCK_PROCESS_CPUTIME_ID);
        volatile unsigned long x = 0;
        while (cpu(CLOCK_PROCESS_CPUTIME_ID) - t0 < 0.2)
            for (int i = 0; i < 100000; i++) x += i;
        _exit(0);
    }
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    printf("children before the wait: %s\n", tv(ru.ru_utime) + tv(ru.ru_stime) < 0.01 ? "none" : "some");
    struct rusage cru;
    wait4(c, 0, 0, &cru);
    double mine = cpu(CLOCK_PROCESS_CPUTIME_ID) - before;
    printf("the child's 0.2 s in its wait4 rusage: %s\n", tv(cru.ru_utime) + tv(cru.ru_stime) >= 0.19 ? "yes" : "no");
    printf("the parent's own CPU time stayed small: %s\n", mine < 0.1 ? "yes" : "no");
    getrusage(RUSAGE_CHILDREN, &ru);
    printf("RUSAGE_CHILDREN after the wait: %s\n", tv(ru.ru_utime) + tv(ru.ru_stime) >= 0.19 ? ">= 0.2 s" : "less");
    struct tms t;
    times(&t);
    long hz = sysconf(_SC_CLK_TCK);
    printf("times(): children's >= 0.19 s: %s\n", (double)(t.tms_cutime + t.tms_cstime) / hz >= 0.19 ? "yes" : "no");
    return 0;
}
