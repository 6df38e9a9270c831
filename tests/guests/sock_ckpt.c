/* sock_ckpt.c MODE: AF_UNIX sockets holding state a checkpoint must keep (tests of
 * snapshot/sockimage.py save it anywhere and compare with the uninterrupted run).
 *   pair      a forked child writes to a socketpair, sends a pipe end and a socket whose
 *             peer holds bytes (SCM_RIGHTS, closed by the sender while in flight), then a
 *             64 KiB write that waits for the slow reader part way
 *   listen    a listener on a path and one on an abstract name with a backlog of clients that
 *             wrote and left before accept, then an accept that waits for a late client
 *   dgram     datagrams to a bound server from an autobound and an unbound sender, and a
 *             recv that waits for the last one
 *   inflight  sockets whose only reference is in flight inside another's queue (a chain
 *             c0 -> d1 -> c1, c1's peer being c0), taken back and used
 *   shut      shutdown halves, a peer that closed with bytes unread (ECONNRESET), options
 *             (SO_SNDBUF, SO_RCVTIMEO, SO_PASSCRED) read back after a wait
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void nap(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static socklen_t un(struct sockaddr_un *a, const char *path, int abstract)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    if (abstract) {
        strcpy(a->sun_path + 1, path);
        return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(path);
    }
    strcpy(a->sun_path, path);
    return offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1;
}

static void show_name(const char *what, struct sockaddr_un *a, socklen_t len)
{
    size_t n = len > offsetof(struct sockaddr_un, sun_path)
                   ? len - offsetof(struct sockaddr_un, sun_path) : 0;
    printf("%s: len %u ", what, (unsigned)len);
    if (n && a->sun_path[0] == 0)
        printf("@%.*s\n", (int)n - 1, a->sun_path + 1);
    else
        printf("%.*s\n", (int)n, a->sun_path);
}

static int send_fds(int s, const int *fds, int nfds, const char *data)
{
    char buf[CMSG_SPACE(4 * sizeof(int))];
    struct iovec iov = {(void *)data, strlen(data)};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = buf;
    m.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    return sendmsg(s, &m, 0);
}

static int recv_fds(int s, int *fds, int max, char *data, size_t len)
{
    char buf[CMSG_SPACE(4 * sizeof(int))];
    struct iovec iov = {data, len - 1};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = buf;
    m.msg_controllen = sizeof buf;
    ssize_t n = recvmsg(s, &m, 0);
    if (n < 0)
        return -1;
    data[n] = 0;
    int got = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            got = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            if (got > max)
                got = max;
            memcpy(fds, CMSG_DATA(c), got * sizeof(int));
        }
    return got;
}

static void pair_mode(void)
{
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        int p[2], inner[2];
        pipe(p);
        write(p[1], "through the pipe", 16);
        socketpair(AF_UNIX, SOCK_STREAM, 0, inner);
        write(inner[0], "waiting in a socket", 19);
        write(sv[1], "hello ", 6);
        write(sv[1], "world\n", 6);
        int pass[2] = {p[0], inner[1]};
        send_fds(sv[1], pass, 2, "fds");
        close(p[0]);
        close(p[1]);
        close(inner[1]);
        close(inner[0]);
        static char big[64 * 1024];
        int small = 8192;     /* a 16 KiB send buffer: the write waits part way */
        setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        for (size_t i = 0; i < sizeof big; i++)
            big[i] = (char)(i * 7 + i / 1000);
        ssize_t n = write(sv[1], big, sizeof big);
        printf("child wrote %zd\n", n);
        fflush(stdout);
        _exit(0);
    }
    close(sv[1]);
    nap(20);
    char buf[64];
    ssize_t n = read(sv[0], buf, 12);
    printf("parent read %zd: %.*s", n, (int)n, buf);
    int fds[2] = {-1, -1};
    int got = recv_fds(sv[0], fds, 2, buf, sizeof buf);
    printf("got %d fds with \"%s\"\n", got, buf);
    n = read(fds[0], buf, sizeof buf);
    printf("pipe: %.*s\n", (int)n, buf);
    n = read(fds[1], buf, sizeof buf);
    printf("socket: %.*s\n", (int)n, buf);
    n = read(fds[1], buf, sizeof buf);
    printf("socket then: %zd (%s)\n", n, n < 0 ? strerror(errno) : "eof");
    unsigned long sum = 0, total = 0;
    static char chunk[8192];
    for (;;) {
        nap(1);
        n = read(sv[0], chunk, sizeof chunk);
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            sum = sum * 31 + (unsigned char)chunk[i];
        total += n;
    }
    int status;
    waitpid(pid, &status, 0);
    printf("parent read %lu bytes, sum %lx, child status %d\n", total, sum, status);
}

static void listen_mode(void)
{
    struct sockaddr_un a, b;
    socklen_t la = un(&a, "srv.sock", 0), lb = un(&b, "abs.sock", 1);
    int ls = socket(AF_UNIX, SOCK_STREAM, 0), ab = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    if (bind(ls, (struct sockaddr *)&a, la) || listen(ls, 4) ||
        bind(ab, (struct sockaddr *)&b, lb) || listen(ab, 2)) {
        perror("listen");
        exit(1);
    }
    fflush(stdout);
    for (int i = 0; i < 4; i++) {
        if (fork() == 0) {
            if (i == 3)
                nap(50);        /* the late one: the parent waits in accept for it */
            int c = socket(AF_UNIX, i == 2 ? SOCK_SEQPACKET : SOCK_STREAM, 0);
            if (connect(c, (struct sockaddr *)(i == 2 ? &b : &a), i == 2 ? lb : la)) {
                perror("connect");
                _exit(1);
            }
            char msg[32];
            int len = snprintf(msg, sizeof msg, "client %d", i);
            write(c, msg, len);
            if (i == 1) {
                /* stays until the server answers */
                char ans[16];
                ssize_t n = read(c, ans, sizeof ans);
                printf("client 1 got %.*s\n", (int)n, ans);
                fflush(stdout);
            }
            close(c);
            _exit(0);
        }
    }
    nap(20);
    for (int i = 0; i < 4; i++) {
        int use = i == 2 ? ab : ls;
        struct sockaddr_un peer;
        socklen_t pl = sizeof peer;
        int c = accept(use, (struct sockaddr *)&peer, &pl);
        char buf[32];
        ssize_t n = read(c, buf, sizeof buf);
        printf("accepted (peer len %u): %.*s\n", (unsigned)pl, (int)n, buf);
        if (n > 0 && buf[7] == '1')
            write(c, "welcome", 7);
        struct sockaddr_un me;
        socklen_t ml = sizeof me;
        getsockname(c, (struct sockaddr *)&me, &ml);
        show_name("  its name", &me, ml);
        close(c);
    }
    for (int i = 0; i < 4; i++)
        wait(NULL);
    unlink("srv.sock");
}

static void dgram_mode(void)
{
    struct sockaddr_un a;
    socklen_t la = un(&a, "dg.sock", 0);
    int srv = socket(AF_UNIX, SOCK_DGRAM, 0);
    bind(srv, (struct sockaddr *)&a, la);
    if (fork() == 0) {
        int s = socket(AF_UNIX, SOCK_DGRAM, 0);
        struct sockaddr_un me = {.sun_family = AF_UNIX};
        bind(s, (struct sockaddr *)&me, sizeof(sa_family_t));  /* autobind */
        socklen_t ml = sizeof me;
        getsockname(s, (struct sockaddr *)&me, &ml);
        show_name("autobound", &me, ml);
        fflush(stdout);
        sendto(s, "from autobound", 14, 0, (struct sockaddr *)&a, la);
        int u = socket(AF_UNIX, SOCK_DGRAM, 0);
        sendto(u, "from unbound", 12, 0, (struct sockaddr *)&a, la);
        sendto(s, "second", 6, 0, (struct sockaddr *)&a, la);
        nap(40);
        sendto(u, "late", 4, 0, (struct sockaddr *)&a, la);
        _exit(0);
    }
    nap(20);
    for (int i = 0; i < 4; i++) {
        char buf[64];
        struct sockaddr_un from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(srv, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
        printf("datagram %.*s ", (int)n, buf);
        show_name("from", &from, fl);
    }
    wait(NULL);
    unlink("dg.sock");
}

static void inflight_mode(void)
{
    int c[2], d[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, c);
    socketpair(AF_UNIX, SOCK_DGRAM, 0, d);
    send_fds(c[1], &d[1], 1, "d1 in c0's queue");       /* c0 queues d1 */
    send_fds(d[0], &c[1], 1, "c1 in d1's queue");       /* d1 queues c1 */
    write(d[0], "more for d1", 11);
    close(c[1]);
    close(d[1]);
    nap(10);
    char buf[64];
    int fd[1];
    int got = recv_fds(c[0], fd, 1, buf, sizeof buf);
    printf("from c0: %d fd, \"%s\"\n", got, buf);
    int d1 = fd[0];
    nap(10);
    got = recv_fds(d1, fd, 1, buf, sizeof buf);
    printf("from d1: %d fd, \"%s\"\n", got, buf);
    int c1 = fd[0];
    ssize_t n = recv(d1, buf, sizeof buf, 0);
    printf("from d1 then: %.*s\n", (int)n, buf);
    write(c1, "round trip", 10);
    nap(10);
    n = read(c[0], buf, sizeof buf);
    printf("c0 read %.*s\n", (int)n, buf);
}

static void shut_mode(void)
{
    int a[2], b[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, a);
    socketpair(AF_UNIX, SOCK_STREAM, 0, b);
    int size = 8192;
    setsockopt(a[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    struct timeval tv = {0, 300000};
    setsockopt(a[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int on = 1;
    setsockopt(b[0], SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
    write(a[0], "last words", 10);
    shutdown(a[0], SHUT_WR);
    write(b[1], "unread", 6);
    close(b[0]);                /* left bytes unread: b[1] sees ECONNRESET */
    nap(10);
    char buf[32];
    ssize_t n = read(a[1], buf, sizeof buf);
    printf("a1 read %zd: %.*s\n", n, (int)n, buf);
    n = read(a[1], buf, sizeof buf);
    printf("a1 then %zd\n", n);
    n = send(a[0], "x", 1, MSG_NOSIGNAL);
    printf("a0 write after SHUT_WR: %zd %s\n", n, n < 0 ? strerror(errno) : "");
    n = read(b[1], buf, sizeof buf);
    printf("b1 read: %zd %s\n", n, n < 0 ? strerror(errno) : "");
    n = read(b[1], buf, sizeof buf);
    printf("b1 then: %zd\n", n);
    socklen_t l = sizeof size;
    getsockopt(a[0], SOL_SOCKET, SO_SNDBUF, &size, &l);
    printf("SO_SNDBUF %d\n", size);
    l = sizeof tv;
    getsockopt(a[1], SOL_SOCKET, SO_RCVTIMEO, &tv, &l);
    printf("SO_RCVTIMEO %ld.%06ld\n", (long)tv.tv_sec, (long)tv.tv_usec);
    int c[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, c);
    setsockopt(c[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    n = read(c[0], buf, sizeof buf);     /* times out on the virtual clock */
    printf("timed read: %zd %s\n", n, n < 0 ? strerror(errno) : "");
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "pair"))
        pair_mode();
    else if (!strcmp(mode, "listen"))
        listen_mode();
    else if (!strcmp(mode, "dgram"))
        dgram_mode();
    else if (!strcmp(mode, "inflight"))
        inflight_mode();
    else if (!strcmp(mode, "shut"))
        shut_mode();
    else {
        fprintf(stderr, "usage: sock_ckpt pair|listen|dgram|inflight|shut\n");
        return 2;
    }
    return 0;
}
