/* counter.c: the checkpoint demo.
 *
 * usage: counter [N] [FILE]     (defaults: N = 20, FILE = counter.log)
 *
 * Each of N iterations appends "tick i" to FILE (opened once, O_APPEND),
 * prints "count i" to stdout, and then does some busy work.  The program
 * runs long enough to be stopped in the middle, saved, and resumed.
 *
 * What a checkpoint must carry for the resumed run to finish correctly:
 *   - the open file descriptor for FILE (and its O_APPEND flag),
 *   - the global variable `total` (the data segment),
 *   - the heap buffer `work` (malloc'd, so the heap matters),
 *   - the stack (the loop counter i lives in a register or on the stack),
 *   - every register, because the stop can happen at any instruction.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WORK_WORDS 1024     /* size of the heap buffer, in 32-bit words */
#define SPIN 100000         /* busy-loop iterations between ticks */

/* A global: it lives in .data, so a checkpoint must save the data segment. */
static unsigned long total = 7;

/* Some busy work: mix the heap buffer, return a checksum of this round. */
static unsigned long busy(unsigned *work, int round)
{
    unsigned long sum = 0;
    for (int k = 0; k < SPIN; k++) {
        unsigned *w = &work[k % WORK_WORDS];
        *w = *w * 1103515245u + 12345u + (unsigned)round;
        sum += *w >> 16;
    }
    return sum;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20;
    const char *path = argc > 2 ? argv[2] : "counter.log";

    /* Opened once, before the loop: a checkpoint in the middle of the loop
     * must save this descriptor and reopen it on restore. */
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0) {
        perror(path);
        return 1;
    }

    /* A heap buffer with known contents (calloc: no uninitialised memory). */
    unsigned *work = calloc(WORK_WORDS, sizeof *work);
    if (work == NULL) {
        fprintf(stderr, "counter: out of memory\n");
        return 1;
    }

    for (int i = 1; i <= n; i++) {
        char line[32];
        int len = snprintf(line, sizeof line, "tick %d\n", i);
        if (write(fd, line, (size_t)len) != len) {
            perror("write");
            return 1;
        }
        printf("count %d\n", i);
        fflush(stdout);            /* one write(1, ...) per line */
        total += busy(work, i);
    }

    if (close(fd) != 0) {
        perror("close");
        return 1;
    }
    printf("sum %lu\n", total);
    free(work);
    printf("EXIT-SUCCESS\n");
    return 0;
}
