/* demo.c: a program that checkpoints itself with Antonov's 1990 trick (antonov.c).
 *
 * usage: demo [-n STEPS] [-c K]... [-s SAVE] [-j JOURNAL] [-d MS] [-k] [-v]
 *
 *   -n STEPS    work steps to do (default 8, at most 200)
 *   -c K        after step K, raise(SIGUSR1): save to SAVE and exit (repeatable: a restored
 *               process can save itself again at a later K)
 *   -s SAVE     the save file (default demo.save)
 *   -j JOURNAL  the file each step appends a line to (default demo.journal)
 *   -d MS       sleep MS milliseconds after each step, time enough for `kill -USR1 PID`
 *   -k          keep the save file after a restore (restore the same moment again later)
 *   -v          describe the layout and the descriptors on stderr when saving and restoring
 *
 * Run it once with -c 3: it stops after step 3 and leaves demo.save.  Run it again with the
 * same arguments: main's special branch finds demo.save, and the program goes on at step 4,
 * with its counter, its heap word, the array on its stack and its journal as they were.
 * The two runs print to stdout exactly what one run without -c prints.
 *
 * Natively, run it with address randomisation off:   setarch -R ./demo -c 3
 *
 * What the program keeps where, so that every part of the save file matters:
 *   counter           data segment (.data: it has an initial value)
 *   word              heap: brk memory from antonov_sbrk (not malloc: musl's malloc uses
 *                     mmap, which the save file does not hold)
 *   recent[]          main's stack frame
 *   the journal       an open descriptor; opened without O_APPEND, so its offset matters
 *   the screen        a status box on stderr, redrawn after a restore
 *
 * stdout has no addresses, times or pids: runs can be compared byte for byte.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "antonov.c"  /* the library is one file: this keeps `vsnap run demo.c` working */

#define MAX_STEPS 200
#define MAX_CHECKPOINTS 16

static long counter = 1990;           /* .data */
static char *word;                    /* .bss, pointing into the heap */
static int journal_fd = -1;
static int steps = 8, step_now, delay_ms;
static int checkpoints[MAX_CHECKPOINTS], ncheckpoints;
static const char *save_path = "demo.save", *journal_path = "demo.journal";

/* The "screen": a box on stderr.  Drawn with write(2) from a local buffer, because the
 * redraw runs inside the signal handler. */
static void draw_screen(const char *title)
{
    char box[512];
    long at = journal_fd >= 0 ? lseek(journal_fd, 0, SEEK_CUR) : 0;
    int n = snprintf(box, sizeof box,
                     "+------------------------------------------+\n"
                     "| %-40s |\n"
                     "| step %3d of %-3d   counter %-14ld |\n"
                     "| word  %-34.34s |\n"
                     "| journal fd %-2d at %-6ld                  |\n"
                     "+------------------------------------------+\n",
                     title, step_now, steps, counter, word ? word : "", journal_fd, at);
    if (n > 0)
        write(2, box, (size_t)n < sizeof box ? (size_t)n : sizeof box - 1);
}

/* Antonov's "perform a program re-initialization actions (it may be redrawing screen)". */
static void redraw(void)
{
    char title[64];
    snprintf(title, sizeof title, "restored from %.26s", save_path);
    draw_screen(title);
}

static int is_checkpoint(int step)
{
    for (int i = 0; i < ncheckpoints; i++)
        if (checkpoints[i] == step)
            return 1;
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: demo [-n STEPS] [-c K]... [-s SAVE] [-j JOURNAL] [-d MS] [-k] "
                    "[-v]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int flags = 0, opt;
    while ((opt = getopt(argc, argv, "n:c:s:j:d:kv")) != -1) {
        switch (opt) {
        case 'n': steps = atoi(optarg); break;
        case 'c':
            if (ncheckpoints == MAX_CHECKPOINTS)
                usage();
            checkpoints[ncheckpoints++] = atoi(optarg);
            break;
        case 's': save_path = optarg; break;
        case 'j': journal_path = optarg; break;
        case 'd': delay_ms = atoi(optarg); break;
        case 'k': flags |= ANTONOV_KEEP_SAVE; break;
        case 'v': flags |= ANTONOV_VERBOSE; break;
        default: usage();
        }
    }
    if (optind != argc || steps < 1 || steps > MAX_STEPS)
        usage();
    if (antonov_init(save_path, redraw, flags) < 0) {
        perror("demo: antonov_init");
        return 1;
    }

    /* The special branch: with a save file this does not return; the saved process goes on
     * from inside its signal handler, and returns from raise() below. */
    if (antonov_restart() < 0)
        return 2;

    /* Run as usual. */
    journal_fd = antonov_open(journal_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (journal_fd < 0) {
        perror(journal_path);
        return 1;
    }
    word = antonov_sbrk(MAX_STEPS + 1);
    if (word == (void *)-1) {
        fprintf(stderr, "demo: no heap\n");
        return 1;
    }
    word[0] = 0;
    long recent[3] = {0, 0, 0};        /* on the stack */

    for (int step = 1; step <= steps; step++) {
        /* the work: a little arithmetic on each part of the state */
        counter = (counter * 7919 + step) % 1000003;
        word[step - 1] = (char)('a' + counter % 26);
        word[step] = 0;
        recent[step % 3] = counter;

        char line[96];
        int n = snprintf(line, sizeof line, "step %d counter %ld\n", step, counter);
        if (write(journal_fd, line, (size_t)n) != n) {
            perror(journal_path);
            return 1;
        }
        printf("step %d: counter=%ld word=%s recent=[%ld %ld %ld] journal=%ld\n", step,
               counter, word, recent[0], recent[1], recent[2],
               (long)lseek(journal_fd, 0, SEEK_CUR));
        fflush(stdout);
        step_now = step;
        draw_screen("antonov demo");

        if (is_checkpoint(step))
            raise(SIGUSR1);           /* save and exit; a restart returns from here */
        if (delay_ms > 0) {
            struct timespec ts = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    printf("done: counter=%ld word=%s\n", counter, word);
    antonov_close(journal_fd);
    printf("EXIT-SUCCESS\n");
    return 0;
}
