/* polling.c: poll, ppoll, select and pselect6 on the kinds of descriptor vsnap has, their
 * errors, timeouts on the clock, and signal masks. Prints only what is the same on every
 * Linux (no pids, no exact times). Raw system calls, so that each call is the one named. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile int got;
static void on_sig(int s) { got = s; }

static long ms_since(struct timespec *a) {
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (b.tv_sec - a->tv_sec) * 1000 + (b.tv_nsec - a->tv_nsec) / 1000000;
}

static void show(const char *what, long r) {
    if (r < 0) printf("%s = -1 %s\n", what, strerror(errno));
    else printf("%s = %ld\n", what, r);
}

int main(void) {
    int fd = open("data.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
    write(fd, "line one\nline two\n", 18);
    int ro = open("data.txt", O_RDONLY);
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    int null = open("/dev/null", O_WRONLY);
    close(9);
    setvbuf(stdout, NULL, _IONBF, 0);

    /* poll: every kind, with all events, some events, a bad fd and a negative one */
    struct pollfd p[7] = {{fd, POLLIN | POLLOUT | POLLPRI}, {ro, POLLOUT}, {dir, POLLIN},
                          {null, POLLIN | POLLOUT}, {9, POLLIN}, {-3, POLLIN}, {1, POLLOUT}};
    long r = syscall(SYS_poll, p, 7, 0);
    show("poll kinds", r);
    for (int i = 0; i < 7; i++) printf("  fd %d events %#x revents %#x\n", p[i].fd, p[i].events,
                                       p[i].revents);
    show("poll none", syscall(SYS_poll, NULL, 0, 0));
    p[0].revents = 0x7777;
    p[0].events = 0;
    show("poll events 0", syscall(SYS_poll, p, 1, 0));
    printf("  revents %#x\n", p[0].revents);

    /* a timeout with nothing ready passes on the clock */
    struct timespec t0;
    struct pollfd never = {-1, POLLIN};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    show("poll 120ms", syscall(SYS_poll, &never, 1, 120));
    long took = ms_since(&t0);
    printf("  waited >= 120ms: %d, < 5000ms: %d\n", took >= 120, took < 5000);  /* a loaded host may lag */
    struct timespec ts = {0, 200 * 1000000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    show("ppoll 200ms", syscall(SYS_ppoll, &never, 1, &ts, NULL, 8));
    took = ms_since(&t0);
    printf("  waited >= 200ms: %d, left %ld.%09ld\n", took >= 200, (long)ts.tv_sec, ts.tv_nsec);
    ts.tv_sec = 0; ts.tv_nsec = 1000000000;
    show("ppoll bad nsec", syscall(SYS_ppoll, &never, 1, &ts, NULL, 8));
    ts.tv_nsec = 0;
    sigset_t none;
    sigemptyset(&none);
    show("ppoll sigsetsize 4", syscall(SYS_ppoll, &never, 1, &ts, &none, 4));

    /* select: read, write, except sets; EBADF; nfds checks; timeval folding and write-back */
    fd_set rd, wr, ex;
    FD_ZERO(&rd); FD_ZERO(&wr); FD_ZERO(&ex);
    FD_SET(fd, &rd); FD_SET(ro, &rd); FD_SET(null, &wr); FD_SET(dir, &ex); FD_SET(fd, &ex);
    struct timeval tv = {0, 0};
    show("select kinds", syscall(SYS_select, 20, &rd, &wr, &ex, &tv));
    printf("  rd %d %d wr %d ex %d %d\n", FD_ISSET(fd, &rd), FD_ISSET(ro, &rd),
           FD_ISSET(null, &wr), FD_ISSET(dir, &ex), FD_ISSET(fd, &ex));
    FD_ZERO(&rd); FD_SET(9, &rd);
    show("select closed fd", syscall(SYS_select, 10, &rd, NULL, NULL, &tv));
    show("select nfds -1", syscall(SYS_select, -1, NULL, NULL, NULL, &tv));
    FD_ZERO(&rd); FD_SET(fd, &rd);
    show("select nfds 1025", syscall(SYS_select, 1025, &rd, NULL, NULL, &tv));
    FD_ZERO(&rd); FD_SET(fd, &rd);
    show("select nfds small", syscall(SYS_select, fd, &rd, NULL, NULL, &tv));
    printf("  rd %d\n", FD_ISSET(fd, &rd));
    /* the fd table grows with the highest fd and never shrinks; bits past it are ignored */
    dup2(fd, 200);
    close(200);
    FD_ZERO(&rd); FD_SET(150, &rd);
    show("select closed fd 150 in a grown table", syscall(SYS_select, 151, &rd, NULL, NULL, &tv));
    /* far past it: a native run inherits its parent's table size (a test runner with many
       descriptors has a larger one), so the bit must lie beyond any table a parent leaves */
    static unsigned long big[5001 / 64 + 1];
    big[5000 / 64] = 1UL << (5000 % 64);
    show("select fd 5000 past the table", syscall(SYS_select, 5001, big, NULL, NULL, &tv));
    printf("  bit 5000 left as it was: %d\n", (int)(big[5000 / 64] >> (5000 % 64) & 1));
    tv.tv_sec = 0; tv.tv_usec = -1;
    show("select usec -1", syscall(SYS_select, 0, NULL, NULL, NULL, &tv));
    tv.tv_sec = 0; tv.tv_usec = 1500000;
    FD_ZERO(&rd); FD_SET(fd, &rd);
    show("select usec 1.5e6", syscall(SYS_select, fd + 1, &rd, NULL, NULL, &tv));
    printf("  left sec %ld, usec > 400000: %d\n", (long)tv.tv_sec, tv.tv_usec > 400000);
    FD_ZERO(&ex); FD_SET(fd, &ex);
    tv.tv_sec = 0; tv.tv_usec = 150000;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    show("select timeout", syscall(SYS_select, fd + 1, NULL, NULL, &ex, &tv));
    took = ms_since(&t0);
    printf("  waited >= 150ms: %d, left %ld.%06ld, ex %d\n", took >= 150, (long)tv.tv_sec,
           (long)tv.tv_usec, FD_ISSET(fd, &ex));

    /* a signal ends the wait with EINTR, even with SA_RESTART (poll is never restarted) */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0}, {0, 50000}};
    setitimer(ITIMER_REAL, &it, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    show("poll forever + alarm", syscall(SYS_poll, NULL, 0, -1));
    printf("  got %d, waited >= 50ms: %d\n", got, ms_since(&t0) >= 50);
    got = 0;
    setitimer(ITIMER_REAL, &it, NULL);
    tv.tv_sec = 5; tv.tv_usec = 0;
    FD_ZERO(&ex); FD_SET(fd, &ex);
    show("select 5s + alarm", syscall(SYS_select, fd + 1, NULL, NULL, &ex, &tv));
    printf("  got %d, left sec %ld (4 expected)\n", got, (long)tv.tv_sec);

    /* ppoll and pselect6 swap the signal mask for the wait, as sigsuspend does */
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t usr1, old;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);
    got = 0;
    raise(SIGUSR1);
    printf("after raise got %d\n", got);
    ts.tv_sec = 1; ts.tv_nsec = 0;
    show("ppoll unblocking", syscall(SYS_ppoll, &never, 1, &ts, &none, 8));
    sigprocmask(SIG_BLOCK, NULL, &old);
    printf("  got %d, usr1 blocked again %d\n", got, sigismember(&old, SIGUSR1));
    got = 0;
    raise(SIGUSR1);
    struct { const sigset_t *ss; size_t len; } data = {&none, 8};
    tv.tv_sec = 1;
    struct timespec ts2 = {1, 0};
    show("pselect6 unblocking", syscall(SYS_pselect6, 0, NULL, NULL, NULL, &ts2, &data));
    sigprocmask(SIG_BLOCK, NULL, &old);
    printf("  got %d, usr1 blocked again %d\n", got, sigismember(&old, SIGUSR1));
    /* a ready descriptor wins over a pending signal: no EINTR, the mask comes back blocked */
    got = 0;
    raise(SIGUSR1);
    struct pollfd rp = {fd, POLLIN};
    show("ppoll ready + pending", syscall(SYS_ppoll, &rp, 1, &ts, &none, 8));
    printf("  got %d (still pending)\n", got);
    sigprocmask(SIG_UNBLOCK, &usr1, NULL);
    printf("  after unblock got %d\n", got);
    data.len = 4;
    show("pselect6 ss_len 4", syscall(SYS_pselect6, 0, NULL, NULL, NULL, &ts2, &data));
    printf("EXIT-SUCCESS\n");
    return 0;
}
