/* epoll.c: epoll_create/create1, epoll_ctl, epoll_wait/pwait/pwait2 against Linux.
 * Sections (argv[1], default all):
 *   errors   every check epoll_ctl and epoll_wait make, in Linux's order; EPOLLEXCLUSIVE's
 *            rules; ELOOP for cycles and deep nesting; the fd, fstat, fdinfo of an epoll
 *   modes    level-triggered, edge-triggered (a new report on every write to a pipe, even a
 *            readable one; EPOLLOUT only when a read frees a page of a full pipe; HUP on the
 *            last writer's close), one-shot and its re-arming, eventfd wakes, the order of
 *            the ready list and maxevents, data given back as set
 *   gotcha   an fd closed while its description stays open (dup) stays registered under
 *            the old number: reported with its data, DEL by the new number is ENOENT; gone
 *            once the last descriptor closes
 *   nested   an epoll inside an epoll, and an epoll fd in poll(2)
 *   procs    waits that another process ends: a pipe write, an eventfd write, a hangup; a
 *            timeout on the clock; a timer's signal (EINTR even with SA_RESTART); the
 *            child's signal through epoll_pwait's mask; an epoll shared across fork
 * Prints nothing that depends on timing. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EFD_NONBLOCK O_NONBLOCK

static void show(const char *what, long r)
{
    if (r < 0)
        printf("%-48s = -1 %s\n", what, strerror(errno));
    else
        printf("%-48s = %ld\n", what, r);
}
#define T(x) do { errno = 0; show(#x, (long)(x)); } while (0)

static int efd(unsigned init) { return syscall(SYS_eventfd2, init, EFD_NONBLOCK); }

static int add(int ep, int fd, unsigned events, uint64_t data)
{
    struct epoll_event e = {events, {.u64 = data}};
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
}

static int mod(int ep, int fd, unsigned events, uint64_t data)
{
    struct epoll_event e = {events, {.u64 = data}};
    return epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e);
}

static void wait_show(int ep, const char *what, int max, int timeout)
{
    struct epoll_event ev[16];
    errno = 0;
    int n = epoll_wait(ep, ev, max, timeout);
    printf("  %s: %d", what, n);
    if (n < 0)
        printf(" %s", strerror(errno));
    for (int i = 0; i < n; i++)
        printf(" [%#x %#llx]", ev[i].events, (unsigned long long)ev[i].data.u64);
    printf("\n");
}

static void fdinfo_items(int ep)
{
    /* Linux lists the items in the order of its tree (by kernel address): sorted by fd here */
    char path[64], line[256];
    struct { int tfd; unsigned events; unsigned long long data; } item[16];
    int n = 0;
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ep);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f)) {
        if (n < 16 && sscanf(line, "tfd: %d events: %x data: %llx", &item[n].tfd,
                             &item[n].events, &item[n].data) == 3)
            n++;
        else if (!strncmp(line, "flags:", 6) || !strncmp(line, "pos:", 4))
            printf("  fdinfo %s", line);
    }
    if (f)
        fclose(f);
    for (int low = -1, k = 0; k < n; k++) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (item[i].tfd > low && (best < 0 || item[i].tfd < item[best].tfd))
                best = i;
        low = item[best].tfd;
        printf("  fdinfo tfd %d events %#x data %#llx\n", item[best].tfd, item[best].events,
               item[best].data);
    }
}

static void errors(void)
{
    printf("-- errors\n");
    T(epoll_create(0));
    T(epoll_create(-1));
    T(epoll_create1(1));
    int ep = epoll_create(1);
    int ep2 = epoll_create1(EPOLL_CLOEXEC);
    T(fcntl(ep, F_GETFL));
    T(fcntl(ep, F_GETFD));
    T(fcntl(ep2, F_GETFD));
    struct stat st;
    fstat(ep, &st);
    printf("  fstat mode %o nlink %lu uid %d size %ld\n", st.st_mode,
           (unsigned long)st.st_nlink, st.st_uid, (long)st.st_size);
    char path[64], link[128];
    snprintf(path, sizeof path, "/proc/self/fd/%d", ep);
    ssize_t n = readlink(path, link, sizeof link - 1);
    link[n > 0 ? n : 0] = 0;
    printf("  readlink %s\n", link);
    T(open(path, O_RDONLY));
    char b[16];
    T(read(ep, b, 8));
    T(write(ep, b, 8));
    T(lseek(ep, 0, SEEK_SET));

    int p[2];
    pipe(p);
    int file = open("epoll-file.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    int null = open("/dev/null", O_RDWR);
    int zero = open("/dev/zero", O_RDONLY);
    int opath = open(".", O_PATH);
    int e = efd(0);
    struct epoll_event ev = {EPOLLIN, {.u64 = 0x1122334455667788ULL}};
    T(epoll_ctl(ep, EPOLL_CTL_ADD, file, &ev));
    T(epoll_ctl(ep, EPOLL_CTL_ADD, dir, &ev));
    T(epoll_ctl(ep, EPOLL_CTL_ADD, null, &ev));
    T(epoll_ctl(ep, EPOLL_CTL_ADD, zero, &ev));
    T(epoll_ctl(ep, EPOLL_CTL_ADD, opath, &ev));
    T(epoll_ctl(ep, EPOLL_CTL_DEL, file, NULL));
    T(epoll_ctl(ep, EPOLL_CTL_ADD, ep, &ev));
    T(epoll_ctl(e, EPOLL_CTL_ADD, p[0], &ev));
    T(epoll_ctl(ep, EPOLL_CTL_ADD, 99, &ev));
    T(epoll_ctl(99, EPOLL_CTL_ADD, p[0], &ev));
    T(epoll_ctl(ep, 7, p[0], &ev));
    T(epoll_ctl(ep, 0, p[0], &ev));
    T(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], NULL));
    T(epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL));
    T(epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &ev));
    T(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev));
    T(epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev));
    T(mod(ep, p[0], EPOLLIN | EPOLLEXCLUSIVE, 1));
    T(epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL));
    T(add(ep, p[0], EPOLLIN | EPOLLEXCLUSIVE | EPOLLET, 2));
    T(mod(ep, p[0], EPOLLIN, 3));
    T(epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL));
    T(add(ep, p[0], EPOLLIN | EPOLLEXCLUSIVE | EPOLLONESHOT, 4));
    T(add(ep, p[0], EPOLLIN | EPOLLEXCLUSIVE | EPOLLRDHUP, 4));
    T(add(ep, p[0], EPOLLIN | EPOLLEXCLUSIVE | EPOLLPRI, 4));
    T(add(ep, p[0], EPOLLIN | EPOLLEXCLUSIVE | EPOLLRDNORM, 4));
    T(add(ep2, ep, EPOLLIN | EPOLLEXCLUSIVE, 4));
    T(add(ep, p[0], EPOLLOUT | EPOLLEXCLUSIVE | EPOLLHUP | EPOLLERR, 5));
    T(add(ep, p[1], 0xffffffffu & ~(EPOLLEXCLUSIVE | EPOLLWAKEUP), 0xfeedfacecafebeefULL));
    fdinfo_items(ep);

    struct epoll_event out[4];
    T(epoll_wait(ep, out, 0, 0));
    T(epoll_wait(ep, out, -1, 0));
    T(epoll_wait(ep, out, 0x7fffffff, 0));
    T(epoll_wait(e, out, 1, 0));
    T(epoll_wait(99, out, 1, 0));
    T(epoll_wait(ep, (void *)0xffffffffffff0000ULL, 1, 0));
    T(epoll_wait(ep, NULL, 1, 0));  /* p[1] is writable: the copy faults */
    T(syscall(SYS_epoll_pwait, ep, out, 1, 0, NULL, 4));
    sigset_t none;
    sigemptyset(&none);
    T(syscall(SYS_epoll_pwait, ep, out, 1, 0, &none, 4));
    struct timespec t = {0, 1000000000};
    T(syscall(SYS_epoll_pwait2, ep, out, 1, &t, NULL, 8));
    t = (struct timespec){-1, 0};
    T(syscall(SYS_epoll_pwait2, ep, out, 1, &t, NULL, 8));
    t = (struct timespec){0, 0};
    T(syscall(SYS_epoll_pwait2, ep, out, 4, &t, NULL, 8));
    printf("  [%#x %#llx]\n", out[0].events, (unsigned long long)out[0].data.u64);

    /* cycles and depth: at most 4 levels of epolls inside epolls */
    int a = epoll_create1(0), c = epoll_create1(0);
    T(add(a, c, EPOLLIN, 0));
    T(add(c, a, EPOLLIN, 0));
    int ch[7];
    for (int i = 0; i < 7; i++)
        ch[i] = epoll_create1(0);
    for (int i = 0; i < 6; i++) {
        printf("  up %d: ", i);
        T(add(ch[i + 1], ch[i], EPOLLIN, i));
    }
    int d[7];
    for (int i = 0; i < 7; i++)
        d[i] = epoll_create1(0);
    for (int i = 0; i < 6; i++) {
        printf("  down %d: ", i);
        T(add(d[i], d[i + 1], EPOLLIN, i));
    }
    for (int i = 0; i < 7; i++) {
        close(ch[i]);
        close(d[i]);
    }
    close(a);
    close(c);
    close(ep);
    close(ep2);
    close(e);
    close(p[0]);
    close(p[1]);
    close(file);
    close(dir);
    close(null);
    close(zero);
    close(opath);
    unlink("epoll-file.txt");
}

static void modes(void)
{
    printf("-- modes\n");
    char buf[70000];
    int p[2];
    pipe2(p, O_NONBLOCK);
    int ep = epoll_create1(0);
    T(add(ep, p[0], EPOLLIN | EPOLLET | EPOLLRDHUP, 1));
    T(add(ep, p[1], EPOLLOUT | EPOLLET, 2));
    wait_show(ep, "ET start", 8, 0);
    wait_show(ep, "ET again", 8, 0);
    write(p[1], "a", 1);
    wait_show(ep, "ET write", 8, 0);
    wait_show(ep, "ET again", 8, 0);
    write(p[1], "b", 1);
    wait_show(ep, "ET write to a readable pipe", 8, 0);
    read(p[0], buf, 1);
    wait_show(ep, "ET read, not full", 8, 0);
    read(p[0], buf, 10);
    int pages = 0;
    while (write(p[1], buf, 4096) > 0)
        pages++;
    printf("  filled %d pages\n", pages);
    wait_show(ep, "ET after filling", 8, 0);
    read(p[0], buf, 100);
    wait_show(ep, "ET read 100 of a full pipe", 8, 0);
    read(p[0], buf, 4096);
    wait_show(ep, "ET read frees a page", 8, 0);
    read(p[0], buf, sizeof buf);
    write(p[1], "", 0);
    wait_show(ep, "ET empty write", 8, 0);
    int d = dup(p[1]);
    close(p[1]);
    wait_show(ep, "ET close of a dup'd writer", 8, 0);
    close(d);
    wait_show(ep, "ET last writer closed", 8, 0);
    wait_show(ep, "ET again", 8, 0);
    close(p[0]);

    int e = efd(0);
    T(add(ep, e, EPOLLIN | EPOLLOUT | EPOLLET, 3));
    wait_show(ep, "eventfd ET add", 8, 0);
    uint64_t v = 0;
    write(e, &v, 8);
    wait_show(ep, "eventfd write 0", 8, 0);
    v = 5;
    write(e, &v, 8);
    wait_show(ep, "eventfd write 5", 8, 0);
    read(e, &v, 8);
    wait_show(ep, "eventfd read", 8, 0);
    read(e, &v, 8);
    wait_show(ep, "eventfd read EAGAIN", 8, 0);
    T(mod(ep, e, EPOLLIN | EPOLLET, 0x33));
    v = 0;
    write(e, &v, 8);
    wait_show(ep, "eventfd IN only, write 0", 8, 0);
    close(e);

    int q[2], r[2];
    pipe2(q, O_NONBLOCK);
    pipe2(r, O_NONBLOCK);
    T(add(ep, q[0], EPOLLIN, 4));
    write(q[1], "xy", 2);
    wait_show(ep, "LT", 8, 0);
    wait_show(ep, "LT again", 8, 0);
    T(mod(ep, q[0], EPOLLIN | EPOLLONESHOT, 5));
    wait_show(ep, "one-shot", 8, 0);
    wait_show(ep, "one-shot again", 8, 0);
    write(q[1], "z", 1);
    wait_show(ep, "one-shot after a write", 8, 0);
    fdinfo_items(ep);
    T(mod(ep, q[0], EPOLLIN | EPOLLONESHOT, 6));
    wait_show(ep, "one-shot re-armed", 8, 0);
    T(add(ep, r[0], EPOLLIN, 7));
    T(epoll_ctl(ep, EPOLL_CTL_DEL, q[0], NULL));
    T(add(ep, q[0], EPOLLIN, 8));
    write(r[1], "r", 1);
    wait_show(ep, "order", 8, 0);
    wait_show(ep, "maxevents 1", 1, 0);
    wait_show(ep, "maxevents 1", 1, 0);
    wait_show(ep, "order after", 8, 0);
    T(mod(ep, q[0], EPOLLIN, 9));
    wait_show(ep, "MOD keeps the place", 8, 0);
    T(mod(ep, r[0], EPOLLOUT, 10));
    wait_show(ep, "MOD to events not ready", 8, 0);
    T(mod(ep, r[0], EPOLLIN | EPOLLET, 11));
    wait_show(ep, "MOD to ET, ready", 8, 0);
    wait_show(ep, "ET again", 8, 0);
    close(q[0]);
    close(q[1]);
    close(r[0]);
    close(r[1]);
    close(ep);
}

static void gotcha(void)
{
    printf("-- gotcha\n");
    int p[2];
    pipe2(p, O_NONBLOCK);
    int ep = epoll_create1(0);
    T(add(ep, p[0], EPOLLIN, 0xabc));
    int d = dup(p[0]);
    close(p[0]);
    write(p[1], "x", 1);
    wait_show(ep, "closed fd, open description", 8, 0);
    fdinfo_items(ep);
    T(epoll_ctl(ep, EPOLL_CTL_DEL, d, NULL));
    T(mod(ep, d, EPOLLIN, 1));
    T(add(ep, d, EPOLLIN, 0xdef));
    wait_show(ep, "both registrations", 8, 0);
    T(epoll_ctl(ep, EPOLL_CTL_DEL, d, NULL));
    wait_show(ep, "the old one still", 8, 0);
    int again = dup2(d, p[0]);  /* the old number, the same description again */
    T(epoll_ctl(ep, EPOLL_CTL_DEL, again, NULL));
    wait_show(ep, "after DEL by its number", 8, 0);
    T(add(ep, d, EPOLLIN, 0x123));
    close(d);
    close(again);
    wait_show(ep, "the description released", 8, 0);
    fdinfo_items(ep);
    close(p[1]);
    close(ep);
}

static void nested(void)
{
    printf("-- nested\n");
    int p[2];
    pipe2(p, O_NONBLOCK);
    int inner = epoll_create1(0), outer = epoll_create1(0);
    T(add(inner, p[0], EPOLLIN, 1));
    T(add(outer, inner, EPOLLIN | EPOLLET, 2));
    struct pollfd q = {inner, POLLIN | POLLOUT, 0};
    T(poll(&q, 1, 0));
    wait_show(outer, "nothing yet", 8, 0);
    write(p[1], "a", 1);
    T(poll(&q, 1, 0));
    printf("  revents %#x\n", q.revents);
    wait_show(outer, "inner has one", 8, 0);
    wait_show(outer, "again (ET)", 8, 0);
    write(p[1], "b", 1);
    wait_show(outer, "another write", 8, 0);
    wait_show(inner, "inner", 8, 0);
    wait_show(outer, "inner LT item still ready", 8, 0);
    char buf[8];
    read(p[0], buf, sizeof buf);
    wait_show(inner, "inner after read", 8, 0);
    T(poll(&q, 1, 0));
    T(mod(outer, inner, EPOLLOUT, 3));
    write(p[1], "c", 1);
    wait_show(outer, "outer wants OUT", 8, 0);
    close(p[0]);
    close(p[1]);
    close(inner);
    wait_show(outer, "inner closed", 8, 0);
    close(outer);
}

static volatile sig_atomic_t got;
static void on_sig(int sig) { got = sig; }

static void work(void)
{
    for (volatile long i = 0; i < 200000; i++)
        ;
}

enum act { WRITE, EVENT, HANGUP, SIT, SIGNAL, CTL };

static pid_t child(int ep, int wfd, int go, enum act act)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid)
        return pid;
    char c;
    if (act != SIT)
        work();
    if (act == WRITE)
        write(wfd, "w", 1);
    if (act == EVENT) {
        uint64_t v = 2;
        write(wfd, &v, 8);
    }
    if (act == SIGNAL)
        kill(getppid(), SIGUSR1);
    if (act == CTL)  /* the epoll is the parent's too */
        add(ep, wfd, EPOLLOUT, 0x77);
    if (act == HANGUP)
        _exit(0);
    read(go, &c, 1);
    _exit(0);
}

static void reap(pid_t pid, int go)
{
    int st;
    write(go, "g", 1);
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st))
        printf("  child ended badly: %#x\n", st);
}

static void procs(void)
{
    printf("-- procs\n");
    int p[2], g[2];
    pipe(p);
    pipe(g);
    int e = efd(0);
    int ep = epoll_create1(0);
    add(ep, p[0], EPOLLIN, 1);
    add(ep, e, EPOLLIN, 2);
    signal(SIGPIPE, SIG_IGN);

    pid_t pid = child(ep, p[1], g[0], WRITE);
    wait_show(ep, "pipe write by the child", 8, -1);
    char c;
    read(p[0], &c, 1);
    reap(pid, g[1]);

    pid = child(ep, e, g[0], EVENT);
    wait_show(ep, "eventfd write by the child, 60 s", 8, 60000);
    uint64_t v;
    read(e, &v, 8);
    printf("  value %lu\n", (unsigned long)v);
    reap(pid, g[1]);

    pid = child(ep, p[1], g[0], CTL);
    close(p[1]);  /* only the child's copy is left */
    struct timespec ts = {60, 0};
    struct epoll_event out[4];
    errno = 0;
    int n = syscall(SYS_epoll_pwait2, ep, out, 4, &ts, NULL, 8);
    printf("  child's EPOLL_CTL_ADD shows here: %d [%#x %#llx]\n", n, n > 0 ? out[0].events : 0,
           n > 0 ? (unsigned long long)out[0].data.u64 : 0ULL);
    reap(pid, g[1]);
    wait_show(ep, "child gone: its write end closed, the item with it", 8, 0);
    close(p[0]);

    pipe(p);
    add(ep, p[0], EPOLLIN | EPOLLET, 3);
    pid = child(ep, p[1], g[0], HANGUP);
    close(p[1]);
    wait_show(ep, "hangup", 8, -1);
    reap(pid, g[1]);
    epoll_ctl(ep, EPOLL_CTL_DEL, p[0], NULL);
    close(p[0]);

    pipe(p);
    add(ep, p[0], EPOLLIN, 4);
    pid = child(ep, p[1], g[0], SIT);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    wait_show(ep, "timeout 150 ms", 8, 150);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("  waited >= 150 ms: %d\n",
           (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 >= 150);
    ts = (struct timespec){0, 120000000};
    T(syscall(SYS_epoll_pwait2, ep, out, 4, &ts, NULL, 8));

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0}, {0, 80000}};
    setitimer(ITIMER_REAL, &it, NULL);
    wait_show(ep, "SIGALRM with SA_RESTART", 8, -1);
    printf("  handler ran %d\n", got == SIGALRM);
    reap(pid, g[1]);

    sigaction(SIGUSR1, &sa, NULL);
    sigset_t usr1, none, now;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigemptyset(&none);
    sigprocmask(SIG_BLOCK, &usr1, NULL);
    got = 0;
    pid = child(ep, p[1], g[0], SIGNAL);
    T(epoll_pwait(ep, out, 4, -1, &none));
    sigprocmask(SIG_BLOCK, NULL, &now);
    printf("  handler ran %d, SIGUSR1 blocked again %d\n", got == SIGUSR1,
           sigismember(&now, SIGUSR1));
    reap(pid, g[1]);
    close(p[0]);
    close(p[1]);
    close(e);
    close(ep);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *only = argc > 1 ? argv[1] : "";
    if (!strcmp(only, "hang")) {  /* Linux waits forever: nothing else can write the pipe */
        int p[2];
        pipe(p);
        int ep = epoll_create1(0);
        add(ep, p[0], EPOLLIN, 0);
        wait_show(ep, "forever", 1, -1);
        return 0;
    }
    if (!*only || !strcmp(only, "errors"))
        errors();
    if (!*only || !strcmp(only, "modes"))
        modes();
    if (!*only || !strcmp(only, "gotcha"))
        gotcha();
    if (!*only || !strcmp(only, "nested"))
        nested();
    if (!*only || !strcmp(only, "procs"))
        procs();
    printf("EXIT-SUCCESS\n");
    return 0;
}
