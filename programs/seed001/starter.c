/* starter.c: the service starter of seeds/001, as a program.
 *
 *   starter [--setsid] [SERVER...]
 *
 * The starter makes itself a process group leader (as a daemon would), then forks and execs
 * three servers (this program again, through /proc/self/exe): "afp" and "smb", which answer
 * SIGUSR1 with a handler only if named on the command line, and "mail", which, once the
 * others are ready, tells "its children" about new mail the way the post describes:
 * kill(0, SIGUSR1), to its whole process group. Without --setsid the servers stay in the
 * starter's group, so the broadcast reaches all of them, and SIGUSR1's default action,
 * terminate, kills every server without a handler. With --setsid each server calls setsid()
 * right after fork, is alone in its group, and survives.
 *
 * The starter watches its servers the way the post's starter does: it blocks SIGCHLD, sleeps in
 * sigsuspend, and reaps with waitpid(WNOHANG) whenever the SIGCHLD handler has run.
 * Before that it shows the two default actions in question on a child each: SIGCHLD's
 * (ignore: the child lives) and SIGUSR1's (terminate). Output is deterministic: the starter
 * prints everything, in a fixed order, and no pids. */
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

enum { AFP, SMB, MAIL, NSERVERS };
static const char *names[NSERVERS] = {"afp", "smb", "mail"};
enum { STOP_FD = 3, READY_FD = 4 };  /* where a server finds its two pipes */

static volatile sig_atomic_t usr1_count, chld_seen;
static void on_usr1(int s) { (void)s; usr1_count++; }
static void on_chld(int s) { (void)s; chld_seen = 1; }

static void handle(int sig, void (*h)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h;
    sa.sa_flags = SA_RESTART;
    sigaction(sig, &sa, 0);
}

static const char *fate(int st, char *buf, size_t n)
{
    if (WIFSIGNALED(st))
        snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else if (WIFEXITED(st))
        snprintf(buf, n, "exited %d", WEXITSTATUS(st));
    else
        snprintf(buf, n, "status 0x%x", st);
    return buf;
}

/* ---- a server, after exec: starts with default signal actions, as any new program ---- */

static int server(const char *name, int handles)
{
    if (handles)
        handle(SIGUSR1, on_usr1);
    if (strcmp(name, "mail") == 0) {
        /* the mail master itself expects the broadcast (it is in its own group) */
        handle(SIGUSR1, on_usr1);
        kill(0, SIGUSR1);              /* "new mail!" to the whole process group */
        return 0;
    }
    write(READY_FD, name, 1);          /* listening */
    close(READY_FD);
    char c;
    while (read(STOP_FD, &c, 1) != 0)  /* serve until the starter shuts us down */
        ;
    return usr1_count;                 /* how many notifications it handled */
}

/* ---- the starter ---- */

static pid_t start(int which, int use_setsid, int handles, int stop_r, int ready_w)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        if (use_setsid)
            setsid();                  /* the fix: a session and a group of its own */
        dup2(stop_r, STOP_FD);         /* dup2 clears close-on-exec */
        dup2(ready_w, READY_FD);
        char *args[] = {"starter", "--server", (char *)names[which],
                        handles ? "handles" : "default", 0};
        char *env[] = {0};
        execve("/proc/self/exe", args, env);
        _exit(127);
    }
    return pid;
}

static void show_default(const char *what, int sig)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        signal(sig, SIG_DFL);
        if (sig == SIGCHLD) {          /* the way SIGCHLD usually comes: a child of its own */
            pid_t grandchild = fork();
            if (grandchild == 0)
                _exit(0);
            waitpid(grandchild, 0, 0);
        }
        kill(getpid(), sig);           /* and sent outright, as kill(0, ...) would */
        _exit(0);                      /* reached only if the default action is to ignore */
    }
    int st;
    char buf[100];
    waitpid(pid, &st, 0);
    printf("%s, default action, sent to a child: the child %s\n", what,
           fate(st, buf, sizeof buf));
}

static int moved_high(int fd)
{
    int high = fcntl(fd, F_DUPFD_CLOEXEC, 10);
    close(fd);
    return high;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--server") == 0)
        return server(argv[2], strcmp(argv[3], "handles") == 0);

    int use_setsid = 0, handles[NSERVERS] = {0};
    for (int i = 1; i < argc; i++) {
        int known = 0;
        if (strcmp(argv[i], "--setsid") == 0)
            use_setsid = known = 1;
        for (int s = AFP; s <= SMB; s++)
            if (strcmp(argv[i], names[s]) == 0)
                handles[s] = known = 1;
        if (!known) {
            fprintf(stderr, "usage: starter [--setsid] [afp] [smb]\n");
            return 2;
        }
    }

    /* daemonify, so far as it matters here: lead a process group of our own (setsid fails if
     * we already lead a group; then we are one already) */
    if (setsid() < 0 && getpgrp() != getpid())
        setpgid(0, 0);
    printf("starter: leads its own process group: %s\n", getpgrp() == getpid() ? "yes" : "no");

    show_default("SIGCHLD", SIGCHLD);
    show_default("SIGUSR1", SIGUSR1);

    /* the broadcast will reach the starter too, unless the servers have their own groups */
    handle(SIGUSR1, on_usr1);
    handle(SIGCHLD, on_chld);
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &old);

    int stop[2], ready[2];
    pipe(stop);
    pipe(ready);
    for (int i = 0; i < 2; i++) {
        stop[i] = moved_high(stop[i]);
        ready[i] = moved_high(ready[i]);
    }
    pid_t pids[NSERVERS];
    int status[NSERVERS], alive = 0;
    for (int s = AFP; s <= SMB; s++) {
        pids[s] = start(s, use_setsid, handles[s], stop[0], ready[1]);
        alive++;
        char c;
        read(ready[0], &c, 1);  /* it is listening */
        printf("%s: started, %s SIGUSR1, in the starter's process group: %s\n", names[s],
               handles[s] ? "handles" : "does not handle",
               getpgid(pids[s]) == getpgrp() ? "yes" : "no");
    }
    pids[MAIL] = start(MAIL, use_setsid, 1, stop[0], ready[1]);
    alive++;
    printf("mail: started, will kill(0, SIGUSR1) to announce new mail\n");
    fflush(stdout);

    /* the monitor: wait for SIGCHLD, reap, log; shut the others down once mail is done */
    while (alive > 0) {
        while (!chld_seen)
            sigsuspend(&old);
        chld_seen = 0;
        pid_t pid;
        int st;
        while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
            for (int s = 0; s < NSERVERS; s++)
                if (pids[s] == pid) {
                    status[s] = st;
                    alive--;
                    if (s == MAIL)
                        close(stop[1]);  /* mail has spoken: shut the rest down */
                }
    }
    for (int s = 0; s < NSERVERS; s++) {
        char buf[100];
        printf("%s: %s", names[s], fate(status[s], buf, sizeof buf));
        if (s != MAIL && WIFEXITED(status[s]))
            printf(", after handling SIGUSR1 %d time(s)", WEXITSTATUS(status[s]));
        printf("\n");
    }
    printf("starter: received the broadcast too: %s\n", usr1_count ? "yes" : "no");
    return 0;
}
