/* workout.c: a program that leans on every step of antonov.c, for the grader (grade.py).
 *
 * usage: workout [-n STEPS] [-c K]... [-s SAVE] [-v]
 *
 *   -n STEPS   steps to do (default 6, at most 40)
 *   -c K       in step K, at the bottom of a deep recursion, raise(SIGUSR1): save and exit
 *   -s SAVE    the save file (default workout.save)
 *   -v         the library describes the layout and the descriptors on stderr
 *
 * It needs a file workout.in in its directory (read from, 37 bytes a step).  Each part of
 * its state lives where one step of the recipe has to bring it back:
 *
 *   fd 3  workout.in   O_RDONLY: each step reads the next 37 bytes       (step 1, 7: offsets)
 *   fd 4  workout.out  O_WRONLY, created: a line a step, at its offset   (step 1, 7: offsets)
 *   fd 5  workout.log  O_WRONLY|O_APPEND: each step seeks to 0 first, so  (step 1, 7: flags)
 *                      only O_APPEND keeps the lines in order
 *   fd 6  .            a directory                                      (step 1: types)
 *   the stack          the signal comes 48 frames deep, each frame with  (step 4)
 *                      a 400-byte array that the unwinding sums up
 *   .data and .bss     a counter, and a 24 KiB array touched each step  (step 5)
 *   the heap           64 KiB from antonov_sbrk at the start, one more   (step 5)
 *                      page each step, filled and summed
 *   a live jmp_buf     the step loop is setjmp/longjmp on main's stack   (steps 4, 6, e)
 *
 * stdout has no addresses: one run, or a run saved at K and a second run that restores it,
 * print the same bytes and leave the same files.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "antonov.c"

#define MAX_STEPS 40
#define DEPTH 48
#define CHUNK 37

static long counter = 1983;                   /* .data */
static unsigned char big[24 << 10];           /* .bss */
static unsigned char *heap;                   /* .bss, pointing into the heap */
static long heap_size;
static int in_fd = -1, out_fd = -1, log_fd = -1, dir_fd = -1;
static int checkpoints[16], ncheckpoints;
static int steps = 6;                         /* not in main's frame: longjmp would clobber it */

static int is_checkpoint(int step)
{
    for (int i = 0; i < ncheckpoints; i++)
        if (checkpoints[i] == step)
            return 1;
    return 0;
}

/* A deep stack: each frame keeps 400 bytes that only its own unwinding reads again. */
static __attribute__((noinline)) unsigned long dive(int depth, int step)
{
    volatile unsigned char frame[400];
    for (int i = 0; i < (int)sizeof frame; i++)
        frame[i] = (unsigned char)(counter + depth * 31 + i);
    unsigned long below = 0;
    if (depth > 0)
        below = dive(depth - 1, step);
    else if (is_checkpoint(step))
        raise(SIGUSR1);                       /* save and exit; a restart returns here */
    unsigned long sum = below * 3;
    for (int i = 0; i < (int)sizeof frame; i++)
        sum += frame[i] * (unsigned long)(i + 1);
    return sum % 1000000007UL;
}

static void do_step(int step)
{
    char chunk[CHUNK + 1], line[160];
    long got = read(in_fd, chunk, CHUNK);
    if (got < 0)
        got = 0;
    chunk[got] = 0;
    for (long i = 0; i < got; i++)
        if (chunk[i] == '\n')
            chunk[i] = '/';
    counter = (counter * 7919 + step) % 1000003;
    for (int i = 0; i < (int)sizeof big; i += 97)
        big[i] = (unsigned char)(big[i] * 5 + counter + step);
    /* one more page of heap */
    unsigned char *more = antonov_sbrk(4096);
    if (more == (void *)-1) {
        fprintf(stderr, "workout: no heap\n");
        exit(1);
    }
    heap_size += 4096;
    for (long i = 0; i < heap_size; i += 61)
        heap[i] = (unsigned char)(heap[i] + counter + i);
    unsigned long stack_sum = dive(DEPTH, step);
    unsigned long big_sum = 0, heap_sum = 0;
    for (int i = 0; i < (int)sizeof big; i++)
        big_sum = big_sum * 31 + big[i];
    for (long i = 0; i < heap_size; i++)
        heap_sum = heap_sum * 131 + heap[i];
    int n = snprintf(line, sizeof line, "step %d: read \"%s\" counter %ld stack %lu bss %lu heap %lu\n",
                     step, chunk, counter, stack_sum, big_sum % 100000, heap_sum % 100000);
    if (write(out_fd, line, (size_t)n) != n) {
        perror("workout.out");
        exit(1);
    }
    /* someone seeks the log to its start: with O_APPEND the write still goes to the end */
    lseek(log_fd, 0, SEEK_SET);
    n = snprintf(line, sizeof line, "log %d\n", step);
    if (write(log_fd, line, (size_t)n) != n) {
        perror("workout.log");
        exit(1);
    }
    printf("%s", line);
    printf("step %d: out at %ld, in at %ld\n", step, (long)lseek(out_fd, 0, SEEK_CUR),
           (long)lseek(in_fd, 0, SEEK_CUR));
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int opt, flags = 0;
    const char *save = "workout.save";
    while ((opt = getopt(argc, argv, "n:c:s:v")) != -1) {
        switch (opt) {
        case 'n': steps = atoi(optarg); break;
        case 'c':
            if (ncheckpoints < 16)
                checkpoints[ncheckpoints++] = atoi(optarg);
            break;
        case 's': save = optarg; break;
        case 'v': flags |= ANTONOV_VERBOSE; break;
        default:
            fprintf(stderr, "usage: workout [-n STEPS] [-c K]... [-s SAVE] [-v]\n");
            return 2;
        }
    }
    if (steps < 1 || steps > MAX_STEPS || antonov_init(save, NULL, flags) < 0)
        return 2;
    if (antonov_restart() < 0)
        return 2;

    in_fd = antonov_open("workout.in", O_RDONLY);
    out_fd = antonov_open("workout.out", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    log_fd = antonov_open("workout.log", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    dir_fd = antonov_open(".", O_RDONLY | O_DIRECTORY);
    if (in_fd < 0 || out_fd < 0 || log_fd < 0 || dir_fd < 0) {
        perror("workout: open");
        return 1;
    }
    heap_size = 64 << 10;
    heap = antonov_sbrk(heap_size);
    if (heap == (void *)-1) {
        fprintf(stderr, "workout: no heap\n");
        return 1;
    }
    memset(heap, 7, (size_t)heap_size);

    /* The step loop, as setjmp and longjmp: the jmp_buf lives on main's stack, and after a
     * restore the next longjmp uses it, so main's frame must come back exactly. */
    jmp_buf again;
    int step = setjmp(again);
    if (step == 0)
        step = 1;
    if (step <= steps) {
        do_step(step);
        longjmp(again, step + 1);
    }
    printf("done: counter %ld\n", counter);
    antonov_close(in_fd);
    antonov_close(out_fd);
    antonov_close(log_fd);
    antonov_close(dir_fd);
    printf("EXIT-SUCCESS\n");
    return 0;
}
