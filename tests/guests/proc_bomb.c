/* Bad input for the process budgets: "bomb" forks forever (each child too), "zombies" makes
 * children that exit and are never waited for, "deadlock" has a parent and child each read a
 * pipe only the other would write, "nproc N" lowers RLIMIT_NPROC to N and counts the forks
 * that succeed before EAGAIN. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "bomb";
    if (!strcmp(mode, "bomb"))
        for (;;)
            fork();
    if (!strcmp(mode, "zombies")) {
        for (;;) {
            pid_t c = fork();
            if (c == 0)
                _exit(0);
            if (c < 0) {
                printf("fork: %s\n", strerror(errno));
                return 1;
            }
        }
    }
    if (!strcmp(mode, "deadlock")) {
        int a[2], b[2];
        char x;
        pipe(a);
        pipe(b);
        if (fork() == 0) {
            read(a[0], &x, 1);  /* waits for the parent */
            write(b[1], "x", 1);
            _exit(0);
        }
        read(b[0], &x, 1);      /* waits for the child */
        write(a[1], "x", 1);
        return 0;
    }
    if (!strcmp(mode, "nproc")) {
        struct rlimit r = {atoi(argv[2]), atoi(argv[2])};
        setrlimit(RLIMIT_NPROC, &r);
        int made = 0;
        for (int i = 0; i < 50; i++) {
            pid_t c = fork();
            if (c == 0) {
                pause();
                _exit(0);
            }
            if (c < 0) {
                printf("after %d forks: %s\n", made, strerror(errno));
                break;
            }
            made++;
        }
        signal(SIGTERM, SIG_IGN);  /* the children go; this one stays */
        kill(0, SIGTERM);
        while (wait(0) > 0)
            ;
        return 0;
    }
    return 2;
}
