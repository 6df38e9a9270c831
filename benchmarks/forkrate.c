/* Native fork cost for benchmarks/fork.py: touch N MiB (argv[1]), then fork a child that
   exits at once and wait for it, over and over for about argv[2] milliseconds; print
   "forks seconds" (fork + _exit + waitpid per second is forks / seconds). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    size_t n = (size_t)atoi(argv[1]) << 20;
    double budget = (argc > 2 ? atoi(argv[2]) : 500) / 1000.0;
    volatile char *p = malloc(n);
    for (size_t i = 0; i < n; i += 4096)
        p[i] = (char)i;
    long forks = 0;
    double t0 = now(), t;
    do {
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        if (pid < 0 || waitpid(pid, 0, 0) != pid)
            return 1;
        forks++;
    } while ((t = now()) - t0 < budget);
    printf("%ld %.6f\n", forks, t - t0);
    return 0;
}
