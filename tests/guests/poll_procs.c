/* poll_procs.c: poll, ppoll, select and pselect6 waiting on a pipe that another process
 * writes, closes or leaves alone. The parent waits; a child works for a while, then writes
 * (the wait ends with the descriptor ready), exits (POLLHUP), or sits blocked on a second
 * pipe (the timeout passes; a timer's signal or the child's kill ends the wait with EINTR,
 * SA_RESTART or not). A child that writes keeps its process alive until told to go, so
 * only the data can end the wait, not its exit. Prints nothing that depends on timing: a
 * child that is quicker than its parent's wait gives the same answers. Raw system calls, so
 * each call is the one named. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got;
static void on_sig(int s) { got = s; }

static void show(const char *what, long r)
{
    if (r < 0)
        printf("%s = -1 %s\n", what, strerror(errno));
    else
        printf("%s = %ld\n", what, r);
}

static void work(void)
{
    for (volatile long i = 0; i < 300000; i++)
        ;
}

static long ms_since(const struct timespec *a)
{
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (b.tv_sec - a->tv_sec) * 1000 + (b.tv_nsec - a->tv_nsec) / 1000000;
}

/* a child and the pipes between it and the parent: data (child -> parent), go (parent ->
 * child, to let it end) */
struct kid { pid_t pid; int data[2], go[2]; };

enum act { WRITE, HANGUP, SIT, SIGNAL };

static void start(struct kid *k, enum act act)
{
    if (pipe(k->data) || pipe(k->go)) {
        perror("pipe");
        exit(1);
    }
    fflush(stdout);
    k->pid = fork();
    if (k->pid < 0) {
        perror("fork");
        exit(1);
    }
    if (k->pid == 0) {
        char c;
        close(k->data[0]);
        close(k->go[1]);
        if (act != SIT)
            work();
        if (act == WRITE)
            write(k->data[1], "x", 1);
        if (act == SIGNAL)
            kill(getppid(), SIGUSR1);
        if (act == HANGUP)
            _exit(0);
        read(k->go[0], &c, 1);  /* until the parent says go (or closes) */
        _exit(0);
    }
    close(k->data[1]);
    close(k->go[0]);
}

static void finish(struct kid *k)
{
    int st;
    write(k->go[1], "g", 1);
    close(k->go[1]);
    close(k->data[0]);
    waitpid(k->pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        printf("  child ended badly: %#x\n", st);
}

static void drain(struct kid *k)
{
    char c;
    long n = read(k->data[0], &c, 1);
    printf("  read %ld '%c'\n", n, n == 1 ? c : '-');
}

static void wakes_on_data(void)
{
    struct kid k;
    struct pollfd pfd;

    start(&k, WRITE);
    pfd = (struct pollfd){k.data[0], POLLIN | POLLOUT, 0};
    show("poll data", syscall(SYS_poll, &pfd, 1, -1));
    printf("  revents %#x\n", pfd.revents);
    drain(&k);
    finish(&k);

    start(&k, WRITE);
    pfd = (struct pollfd){k.data[0], POLLIN, 0};
    show("poll data 60s", syscall(SYS_poll, &pfd, 1, 60000));
    printf("  revents %#x\n", pfd.revents);
    drain(&k);
    finish(&k);

    start(&k, WRITE);
    struct timespec ts = {60, 0};
    pfd = (struct pollfd){k.data[0], POLLIN, 0};
    show("ppoll data", syscall(SYS_ppoll, &pfd, 1, &ts, NULL, 8));
    printf("  revents %#x, left <= 60s: %d\n", pfd.revents,
           ts.tv_sec < 60 || (ts.tv_sec == 60 && ts.tv_nsec == 0));
    drain(&k);
    finish(&k);

    start(&k, WRITE);
    fd_set rd, wr;
    FD_ZERO(&rd);
    FD_ZERO(&wr);
    FD_SET(k.data[0], &rd);
    FD_SET(k.go[1], &rd);  /* the write end of a pipe is never readable */
    show("select data", syscall(SYS_select, k.go[1] + 1, &rd, NULL, NULL, NULL));
    printf("  data %d go %d\n", FD_ISSET(k.data[0], &rd), FD_ISSET(k.go[1], &rd));
    drain(&k);
    finish(&k);

    start(&k, WRITE);
    FD_ZERO(&rd);
    FD_SET(k.data[0], &rd);
    struct timeval tv = {60, 0};
    show("select data 60s", syscall(SYS_select, k.data[0] + 1, &rd, NULL, NULL, &tv));
    printf("  data %d, left <= 60s: %d\n", FD_ISSET(k.data[0], &rd),
           tv.tv_sec < 60 || (tv.tv_sec == 60 && tv.tv_usec == 0));
    drain(&k);
    finish(&k);

    start(&k, WRITE);
    FD_ZERO(&rd);
    FD_ZERO(&wr);
    FD_SET(k.data[0], &rd);
    show("pselect6 data", syscall(SYS_pselect6, k.data[0] + 1, &rd, &wr, NULL, NULL, NULL));
    printf("  data %d\n", FD_ISSET(k.data[0], &rd));
    drain(&k);
    finish(&k);
}

static void hangup(void)
{
    struct kid k;
    struct pollfd pfd;

    start(&k, HANGUP);
    pfd = (struct pollfd){k.data[0], POLLIN, 0};
    show("poll hangup", syscall(SYS_poll, &pfd, 1, -1));
    printf("  revents %#x\n", pfd.revents);
    drain(&k);
    finish(&k);

    start(&k, HANGUP);
    pfd = (struct pollfd){k.data[0], 0, 0};  /* POLLHUP is reported even when not asked */
    show("poll hangup, no events", syscall(SYS_poll, &pfd, 1, -1));
    printf("  revents %#x\n", pfd.revents);
    finish(&k);

    start(&k, HANGUP);
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(k.data[0], &rd);
    show("select hangup", syscall(SYS_select, k.data[0] + 1, &rd, NULL, NULL, NULL));
    printf("  readable %d\n", FD_ISSET(k.data[0], &rd));
    finish(&k);
}

static void timeouts(void)
{
    struct kid k;
    struct pollfd pfd;
    struct timespec t0;

    start(&k, SIT);
    pfd = (struct pollfd){k.data[0], POLLIN, 0x55};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    show("poll 150ms", syscall(SYS_poll, &pfd, 1, 150));
    printf("  revents %#x, waited >= 150ms: %d\n", pfd.revents, ms_since(&t0) >= 150);

    struct timespec ts = {0, 120 * 1000000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    show("ppoll 120ms", syscall(SYS_ppoll, &pfd, 1, &ts, NULL, 8));
    printf("  waited >= 120ms: %d, left %ld.%09ld\n", ms_since(&t0) >= 120, (long)ts.tv_sec,
           ts.tv_nsec);

    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(k.data[0], &rd);
    struct timeval tv = {0, 130000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    show("select 130ms", syscall(SYS_select, k.data[0] + 1, &rd, NULL, NULL, &tv));
    printf("  readable %d, waited >= 130ms: %d, left %ld.%06ld\n", FD_ISSET(k.data[0], &rd),
           ms_since(&t0) >= 130, (long)tv.tv_sec, (long)tv.tv_usec);

    FD_SET(k.data[0], &rd);
    ts = (struct timespec){0, 110 * 1000000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    show("pselect6 110ms", syscall(SYS_pselect6, k.data[0] + 1, &rd, NULL, NULL, &ts, NULL));
    printf("  readable %d, waited >= 110ms: %d, left %ld.%09ld\n", FD_ISSET(k.data[0], &rd),
           ms_since(&t0) >= 110, (long)ts.tv_sec, ts.tv_nsec);
    finish(&k);
}

static void alarm_in(long ms)
{
    struct itimerval it = {{0, 0}, {ms / 1000, ms % 1000 * 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static void interrupted(void)
{
    struct kid k;
    struct pollfd pfd;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;

    /* a timer's signal, while the child sits: EINTR, with SA_RESTART too (poll and select
     * are never restarted after a handler) */
    for (int restart = 0; restart < 2; restart++) {
        sa.sa_flags = restart ? SA_RESTART : 0;
        sigaction(SIGALRM, &sa, NULL);
        start(&k, SIT);
        got = 0;
        alarm_in(100);
        pfd = (struct pollfd){k.data[0], POLLIN, 0x55};
        show(restart ? "poll, SIGALRM with SA_RESTART" : "poll, SIGALRM",
             syscall(SYS_poll, &pfd, 1, -1));
        printf("  revents %#x, handler ran %d\n", pfd.revents, got == SIGALRM);
        got = 0;
        alarm_in(100);
        fd_set rd;
        FD_ZERO(&rd);
        FD_SET(k.data[0], &rd);
        show(restart ? "select, SIGALRM with SA_RESTART" : "select, SIGALRM",
             syscall(SYS_select, k.data[0] + 1, &rd, NULL, NULL, NULL));
        printf("  handler ran %d\n", got == SIGALRM);
        finish(&k);
    }

    /* the child's kill: SIGUSR1 is blocked but for the call's own mask, so it waits for the
     * call wherever it comes; the old mask is back afterwards */
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t usr1, none, now;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigemptyset(&none);
    sigprocmask(SIG_BLOCK, &usr1, NULL);

    start(&k, SIGNAL);
    got = 0;
    pfd = (struct pollfd){k.data[0], POLLIN, 0x55};
    show("ppoll, child's SIGUSR1", syscall(SYS_ppoll, &pfd, 1, NULL, &none, 8));
    sigprocmask(SIG_BLOCK, NULL, &now);
    printf("  revents %#x, handler ran %d, SIGUSR1 blocked again %d\n", pfd.revents,
           got == SIGUSR1, sigismember(&now, SIGUSR1));
    finish(&k);

    start(&k, SIGNAL);
    got = 0;
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(k.data[0], &rd);
    struct { const sigset_t *ss; size_t len; } data = {&none, 8};
    struct timespec ts = {60, 0};
    show("pselect6, child's SIGUSR1",
         syscall(SYS_pselect6, k.data[0] + 1, &rd, NULL, NULL, &ts, &data));
    sigprocmask(SIG_BLOCK, NULL, &now);
    printf("  handler ran %d, SIGUSR1 blocked again %d, left <= 60s: %d\n", got == SIGUSR1,
           sigismember(&now, SIGUSR1), ts.tv_sec < 60 || ts.tv_nsec == 0);
    finish(&k);

    /* the same wait with the mask keeping SIGUSR1 out: the data ends it, and the signal is
     * still pending afterwards */
    struct kid w;
    start(&k, SIGNAL);
    got = 0;
    finish(&k);  /* the signal is pending now (the child sent it before it exited) */
    start(&w, WRITE);
    pfd = (struct pollfd){w.data[0], POLLIN, 0};
    show("ppoll, SIGUSR1 kept out", syscall(SYS_ppoll, &pfd, 1, NULL, &usr1, 8));
    sigset_t pending;
    sigpending(&pending);
    printf("  revents %#x, handler ran %d, SIGUSR1 pending %d\n", pfd.revents, got == SIGUSR1,
           sigismember(&pending, SIGUSR1));
    drain(&w);
    finish(&w);
    sigprocmask(SIG_UNBLOCK, &usr1, NULL);
    printf("  unblocked: handler ran %d\n", got == SIGUSR1);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    signal(SIGPIPE, SIG_IGN);  /* "go" to a child that has gone */
    const char *only = argc > 1 ? argv[1] : "";
    if (!*only || !strcmp(only, "data"))
        wakes_on_data();
    if (!*only || !strcmp(only, "hangup"))
        hangup();
    if (!*only || !strcmp(only, "timeout"))
        timeouts();
    if (!*only || !strcmp(only, "signal"))
        interrupted();
    printf("EXIT-SUCCESS\n");
    return 0;
}
