/* A listener flooded by a host client, run natively and under `vsnap run --listen PORT`
 * (tests/test_host_flood.py). Usage: fdflood PORT LIMIT
 *
 * With RLIMIT_NOFILE lowered to LIMIT, it accepts until accept() fails (EMFILE: the waiting
 * connection stays queued, as Linux leaves it), asks for more descriptors than it may have
 * (setrlimit to 10,000, a poll of 10,000 entries), reads what its first client sent before
 * that client vanished with a reset, then closes that descriptor and accepts once more: the
 * connection that waited through EMFILE is served. Each connection it accepts gets
 * "hello N\n". */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *ename(int e) {
    switch (e) {
    case EMFILE: return "EMFILE";
    case EINVAL: return "EINVAL";
    case EPERM: return "EPERM";
    case ECONNRESET: return "ECONNRESET";
    case EAGAIN: return "EAGAIN";
    default: return "other";
    }
}

static void hello(int fd, int n) {
    char buf[32];
    int len = snprintf(buf, sizeof buf, "hello %d\n", n);
    if (send(fd, buf, (size_t)len, MSG_NOSIGNAL) != len) printf("send to %d failed\n", n);
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int port = atoi(argv[1]), limit = atoi(argv[2]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = (rlim_t)limit;
    if (rl.rlim_max > 4096) rl.rlim_max = 4096;   /* vsnap's hard limit: the same start */
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) { perror("setrlimit"); return 1; }

    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 128)) { perror("listen"); return 1; }
    printf("listening\n");

    int fds[4096], n = 0;
    for (;;) {
        int fd = accept(s, NULL, NULL);
        if (fd < 0) {
            printf("accepted %d, then %s\n", n, ename(errno));
            break;
        }
        fds[n++] = fd;
        hello(fd, n);
    }

    /* 10,000 descriptors: more than the limit allows, each a clear error */
    struct rlimit big = {10000, 10000};
    int r = setrlimit(RLIMIT_NOFILE, &big);
    int e = errno;
    struct rlimit now;
    getrlimit(RLIMIT_NOFILE, &now);
    printf("setrlimit NOFILE 10000: %s, soft limit now %s\n", r ? ename(e) : "ok",
           now.rlim_cur == (rlim_t)limit ? "unchanged" : "raised");
    static struct pollfd many[10000];
    for (int i = 0; i < 10000; i++) many[i].fd = -1;
    many[0].fd = s;
    many[0].events = POLLIN;
    r = poll(many, 10000, 0);
    printf("poll of 10000 entries: %d %s\n", r, r < 0 ? ename(errno) : "");
    r = poll(many, (nfds_t)limit + 1, 0);   /* one past RLIMIT_NOFILE: EINVAL too */
    printf("poll of limit+1 entries: %d %s\n", r, r < 0 ? ename(errno) : "");
    r = poll(many, (nfds_t)limit, 0);
    printf("poll of limit entries: %s\n", r < 0 ? ename(errno) : "ok");

    /* the first client sent a part of a line, then reset: the bytes, then the reset */
    char buf[64];
    ssize_t got = read(fds[0], buf, sizeof buf);
    printf("read %zd bytes: %.*s\n", got, got > 0 ? (int)got : 0, got > 0 ? buf : "");
    got = read(fds[0], buf, sizeof buf);
    printf("read again: %zd %s\n", got, got < 0 ? ename(errno) : "");
    close(fds[0]);

    int fd = accept(s, NULL, NULL);
    if (fd < 0) { printf("accept after a close: %s\n", ename(errno)); return 1; }
    hello(fd, n + 1);
    printf("served %d after the wait\n", n + 1);
    close(fd);
    return 0;   /* the rest are closed by the exit: their clients see the end */
}
