/* proc_pgrp.c: process groups and sessions, and Linux's errno rules for them. Everything runs
 * in a child C of the top process (so it does not matter whether the top process leads a group
 * or a session: natively it depends on who started it). No pids are printed, only relations.
 *   C: inherits its parent's group and session; setpgid(0,0) makes it a group leader, after
 *      which setsid is EPERM. setpgid: pid not a child ESRCH, negative pgid EINVAL, a group
 *      that does not exist in the session EPERM, a child that has exec'd EACCES.
 *   D (child of C): setsid makes it leader of a new session and group; then setsid EPERM,
 *      setpgid(0, C's group) EPERM (another session), C's setpgid(D, ...) EPERM; getsid(D)
 *      from C works (Linux does not refuse it).
 *   getpgid/getsid of a reaped pid ESRCH. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *en(int e)
{
    switch (e) {
    case EPERM: return "EPERM";
    case ESRCH: return "ESRCH";
    case EINVAL: return "EINVAL";
    case EACCES: return "EACCES";
    default: return "E?";
    }
}

static const char *yesno(int b) { return b ? "yes" : "no"; }

static void res(const char *label, int r)
{
    printf("%-40s %s\n", label, r < 0 ? en(errno) : "ok");
    fflush(stdout);
}

#define TRY(label, call) (errno = 0, res(label, (call)))

static pid_t xfork(void)
{
    fflush(stdout);
    pid_t p = fork();
    if (p < 0) {
        perror("fork");
        exit(1);
    }
    return p;
}

static void wait_byte(int fd)
{
    char c;
    if (read(fd, &c, 1) != 1)
        exit(9);
}

static int run_c(void)
{
    pid_t me = getpid(), parent = getppid();
    printf("C: in its parent's group: %s, session: %s\n",
           yesno(getpgrp() == getpgid(parent)), yesno(getsid(0) == getsid(parent)));
    printf("C: getpgid(0)==getpgrp(): %s, getsid(0)==getsid(me): %s\n",
           yesno(getpgid(0) == getpgrp()), yesno(getsid(0) == getsid(me)));
    TRY("C: setpgid(getppid(), 0)", setpgid(parent, 0));
    TRY("C: setpgid(0, -1)", setpgid(0, -1));
    TRY("C: setpgid(-1, 0)", setpgid(-1, 0));
    TRY("C: setpgid(0, 0)", setpgid(0, 0));
    printf("C: now leads its group: %s\n", yesno(getpgrp() == me));
    TRY("C: setsid() as a group leader", setsid());
    TRY("C: setpgid(0, 0) again", setpgid(0, 0));
    TRY("C: setpgid(0, getpid()) ", setpgid(0, me));

    /* D: a child moved by its parent while it has not exec'd, then its own session */
    int go[2], done[2];
    pipe(go);
    pipe(done);
    pid_t d = xfork();
    if (d == 0) {
        wait_byte(go[0]);
        printf("D: moved into its own group by C: %s\n", yesno(getpgrp() == getpid()));
        TRY("D: setsid() as a group leader", setsid());
        TRY("D: setpgid(0, C's group)", setpgid(0, me));  /* back into C's group */
        printf("D: back in C's group: %s\n", yesno(getpgrp() == me));
        TRY("D: setsid()", setsid());
        printf("D: leads session and group: %s %s\n", yesno(getsid(0) == getpid()),
               yesno(getpgrp() == getpid()));
        TRY("D: setsid() again", setsid());
        TRY("D: setpgid(0, 0) as session leader", setpgid(0, 0));
        TRY("D: setpgid(0, C's group)", setpgid(0, me));
        write(done[1], "d", 1);
        wait_byte(go[0]);
        _exit(0);
    }
    TRY("C: setpgid(D, D)", setpgid(d, d));
    TRY("C: setpgid(D, 12345678) no such group", setpgid(d, 12345678));
    write(go[1], "g", 1);
    wait_byte(done[0]);
    TRY("C: setpgid(D, D) after D's setsid", setpgid(d, d));
    TRY("C: setpgid(D, C) after D's setsid", setpgid(d, me));
    printf("C: getsid(D)==D across sessions: %s\n", yesno(getsid(d) == d));
    printf("C: getpgid(D)==D: %s\n", yesno(getpgid(d) == d));
    write(go[1], "g", 1);
    int st;
    waitpid(d, &st, 0);
    printf("C: D exited %d\n", WEXITSTATUS(st));
    TRY("C: getpgid(reaped D)", getpgid(d));
    TRY("C: getsid(reaped D)", getsid(d));

    /* E: a child that has exec'd can no longer be moved (EACCES); the exec is seen as EOF on
     * a close-on-exec pipe; E waits for the end of another pipe, so it is still there */
    int exec_seen[2], hold[2];
    pipe2(exec_seen, O_CLOEXEC);
    pipe(hold);
    pid_t e = xfork();
    if (e == 0) {
        close(exec_seen[0]);
        close(hold[1]);
        dup2(hold[0], 0);
        char *args[] = {"proc_pgrp", "wait-stdin", 0};
        execve("/proc/self/exe", args, (char *[]){0});
        _exit(127);
    }
    close(exec_seen[1]);
    close(hold[0]);
    char c;
    read(exec_seen[0], &c, 1);   /* EOF: E has exec'd */
    TRY("C: setpgid(E, E) after E's execve", setpgid(e, e));
    TRY("C: setpgid(E, C) (already there)", setpgid(e, me));
    close(hold[1]);
    waitpid(e, &st, 0);
    printf("C: E exited %d\n", WEXITSTATUS(st));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "wait-stdin") == 0) {
        char c;
        while (read(0, &c, 1) > 0)
            ;
        return 4;
    }
    pid_t c = xfork();
    if (c == 0) {
        fflush(stdout);
        exit(run_c());
    }
    int st;
    waitpid(c, &st, 0);
    printf("top: C exited %d\n", WEXITSTATUS(st));
    return 0;
}
