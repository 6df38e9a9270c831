/* forkloop.c N [MIB]: touch MIB MiB of heap (one write a page), then N rounds of fork + _exit
   + waitpid; print how many forks were waited for and a checksum of the memory, so that a run
   under vsnap can be compared with a native one byte for byte. benchmarks/procs.py times it
   from outside (natively and under `vsnap run`, the same binary): the guest's own clock is
   virtual under vsnap. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000;
    size_t size = (size_t)(argc > 2 ? atol(argv[2]) : 0) << 20;
    unsigned char *p = size ? malloc(size) : NULL;
    if (size && !p) {
        fprintf(stderr, "forkloop: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < size; i += 4096)
        p[i] = (unsigned char)(i >> 12);
    long waited = 0;
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("forkloop: fork");
            return 1;
        }
        if (pid == 0)
            _exit(0);
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
            perror("forkloop: waitpid");
            return 1;
        }
        waited++;
    }
    unsigned long sum = 0;
    for (size_t i = 0; i < size; i += 4096)
        sum += p[i];
    printf("forks %ld, %zu MiB touched, sum %lu\n", waited, size >> 20, sum);
    return 0;
}
