/* proc_pipes.c: pipes between processes.
 * A producer | consumer pipeline; EOF only when the last writer has closed (a non-blocking read
 * says EAGAIN while one writer is left); writing to a pipe nobody reads: EPIPE with SIGPIPE
 * ignored or handled, death by SIGPIPE by default; the capacity, filled without blocking
 * (Linux's pipe holds 16 pages: 64 KiB in 4096-byte writes, but 1000-byte writes do not share
 * a page they do not fit in); partial non-blocking writes; a blocking write larger than the
 * pipe completes while a reader drains it. No pids, no timing: every step waits for the last. */
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
    case EAGAIN: return "EAGAIN";
    case EPIPE: return "EPIPE";
    case EINTR: return "EINTR";
    case EBADF: return "EBADF";
    default: return "E?";
    }
}


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

static int reap(pid_t p)
{
    int st;
    waitpid(p, &st, 0);
    return st;
}

static void show(const char *what, int st)
{
    if (WIFEXITED(st))
        printf("%s: exited %d\n", what, WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        printf("%s: killed by signal %d\n", what, WTERMSIG(st));
}

static void pipeline(void)
{
    int p[2];
    pipe(p);
    pid_t prod = xfork();
    if (prod == 0) {
        close(p[0]);
        for (int i = 1; i <= 500; i++)
            dprintf(p[1], "line %d of the producer\n", i);
        _exit(0);
    }
    pid_t cons = xfork();
    if (cons == 0) {
        close(p[1]);
        char buf[777];
        long bytes = 0, lines = 0, sum = 0;
        ssize_t n;
        while ((n = read(p[0], buf, sizeof buf)) > 0)
            for (ssize_t i = 0; i < n; i++) {
                bytes++;
                lines += buf[i] == '\n';
                sum = (sum * 31 + (unsigned char)buf[i]) % 1000000007;
            }
        printf("consumer: %ld bytes, %ld lines, hash %ld, then EOF\n", bytes, lines, sum);
        fflush(stdout);
        _exit(0);
    }
    close(p[0]);
    close(p[1]);
    int cs = reap(cons);   /* the consumer prints: print nothing before it has exited */
    int ps = reap(prod);
    show("producer", ps);
    show("consumer", cs);
}

static void last_writer(void)
{
    int p[2], go[2];
    pipe2(p, O_NONBLOCK);
    pipe(go);
    pid_t w1 = xfork();
    if (w1 == 0) {
        write(p[1], "1", 1);
        _exit(0);
    }
    pid_t w2 = xfork();
    if (w2 == 0) {
        char c;
        close(go[1]);
        read(go[0], &c, 1);
        write(p[1], "2", 1);
        _exit(0);
    }
    close(p[1]);
    close(go[0]);
    reap(w1);
    char buf[8];
    ssize_t n = read(p[0], buf, sizeof buf);
    printf("first writer gone: read %zd byte(s)\n", n);
    errno = 0;
    n = read(p[0], buf, sizeof buf);
    printf("one writer left: read %zd %s\n", n, en(errno));
    write(go[1], "g", 1);
    reap(w2);
    n = read(p[0], buf, sizeof buf);
    printf("second writer gone: read %zd byte(s)\n", n);
    n = read(p[0], buf, sizeof buf);
    printf("no writer left: read %zd (EOF)\n", n);
    close(p[0]);
    close(go[1]);
}

static volatile sig_atomic_t got_pipe;
static void on_pipe(int s) { (void)s; got_pipe++; }

static void broken(int mode)
{
    static const char *what[] = {"SIGPIPE ignored", "SIGPIPE handled", "SIGPIPE default"};
    int p[2], out[2];
    pipe(p);
    close(p[0]);      /* before fork: from the start, nobody can read */
    pipe(out);
    pid_t c = xfork();
    if (c == 0) {
        close(out[0]);
        if (mode == 0)
            signal(SIGPIPE, SIG_IGN);
        if (mode == 1)
            signal(SIGPIPE, on_pipe);
        errno = 0;
        ssize_t n = write(p[1], "x", 1);
        dprintf(out[1], "write %zd %s, handler ran %d time(s)", n, en(errno), (int)got_pipe);
        _exit(0);
    }
    close(p[1]);
    close(out[1]);
    char buf[100] = "";
    ssize_t n = read(out[0], buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    close(out[0]);
    printf("%s: %s; ", what[mode], n > 0 ? buf : "(nothing)");
    show("child", reap(c));
}

static long fill(int fd, size_t chunk)
{
    static char buf[100000];
    long total = 0;
    for (;;) {
        ssize_t n = write(fd, buf, chunk);
        if (n < 0) {
            if (errno != EAGAIN)
                printf("fill: %s\n", en(errno));
            return total;
        }
        total += n;
    }
}

static void capacity(void)
{
    static char buf[100000];
    int p[2];
    pipe2(p, O_NONBLOCK);
    printf("F_GETPIPE_SZ: %d\n", fcntl(p[1], F_GETPIPE_SZ));
    printf("filled with 4096-byte writes: %ld bytes\n", fill(p[1], 4096));
    errno = 0;
    ssize_t n = write(p[1], "x", 1);
    printf("full, one more byte: %zd %s\n", n, en(errno));
    n = read(p[0], buf, 10);
    errno = 0;
    n = write(p[1], buf, 10);
    printf("read 10, write 10: %zd %s\n", n, en(errno));
    n = read(p[0], buf, 4086);
    n = write(p[1], buf, 100000);
    printf("read the rest of the first page, write 100000: %zd (partial)\n", n);
    close(p[0]);
    close(p[1]);

    pipe2(p, O_NONBLOCK);
    printf("filled with 1000-byte writes: %ld bytes\n", fill(p[1], 1000));
    close(p[0]);
    close(p[1]);

    pipe2(p, O_NONBLOCK);
    n = write(p[1], buf, 100000);
    printf("write 100000 into an empty pipe: %zd (partial)\n", n);
    close(p[0]);
    close(p[1]);
}

static void big_blocking_write(void)
{
    static char buf[200000];
    int p[2], res[2];
    pipe(p);
    pipe(res);
    pid_t c = xfork();
    if (c == 0) {
        close(p[0]);
        memset(buf, 'b', sizeof buf);
        ssize_t n = write(p[1], buf, sizeof buf);
        write(res[1], &n, sizeof n);
        _exit(0);
    }
    close(p[1]);
    long total = 0;
    ssize_t n;
    while ((n = read(p[0], buf, 7000)) > 0)
        total += n;
    ssize_t wrote = 0;
    read(res[0], &wrote, sizeof wrote);
    printf("blocking write of 200000: returned %zd, reader got %ld\n", wrote, total);
    reap(c);
    close(p[0]);
    close(res[0]);
    close(res[1]);
}

int main(void)
{
    pipeline();
    last_writer();
    for (int m = 0; m < 3; m++)
        broken(m);
    capacity();
    big_blocking_write();
    errno = 0;
    int r = pipe2((int[2]){0, 0}, 0x1234);
    printf("pipe2(bad flags): %d %s\n", r, errno == EINVAL ? "EINVAL" : "?");
    return 0;
}
