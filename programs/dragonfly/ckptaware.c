/* A checkpoint-aware program in the style of DragonFly's sys_checkpoint(2) manual page: it
 * catches SIGCKPT, only sets a reminder in the handler, and checkpoints itself from its main
 * loop when it is convenient (CKPT_FREEZE to the template, %N.ckpt). The call returns 0 in
 * the run that saved and 1 in a resumed one, which reopens its log (not saved: it is
 * rebuilt) and says so.
 *
 *   ckptaware [STEPS]   counts to STEPS (default 6), one line a step in log.txt; after step 3
 *                       it raises SIGCKPT at itself, as ^E or `vsnap save PID --signal` would.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vsnap/checkpoint.h>

static volatile sig_atomic_t want_checkpoint;

static void on_ckpt(int sig) { (void)sig; want_checkpoint = 1; }

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 6;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_ckpt;
    sigaction(SIGCKPT, &sa, 0);
    FILE *log = fopen("log.txt", "a");
    for (int i = 1; i <= steps; i++) {
        fprintf(log, "step %d\n", i);
        fflush(log);
        if (i == 3)
            raise(SIGCKPT);           /* someone asks for a checkpoint */
        if (want_checkpoint) {
            want_checkpoint = 0;
            fclose(log);              /* not part of the checkpoint's promise: reopened */
            int r = sys_checkpoint(CKPT_FREEZE, -1, -1, 0);
            log = fopen("log.txt", "a");
            if (r < 0)
                printf("step %d: sys_checkpoint failed: %s\n", i, strerror(errno));
            else if (r == 0)
                printf("step %d: checkpointed, going on\n", i);
            else
                printf("step %d: resumed from the checkpoint (sys_checkpoint returned %d); "
                       "log reopened\n", i, r);
        }
    }
    printf("done after %d steps\n", steps);
    fclose(log);
    return 0;
}
