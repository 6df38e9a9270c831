/* epoll_sock.c: epoll on sockets against Linux, above all the edge-triggered mode of a
 * non-blocking server that reads until EAGAIN. Sections (argv[1], default all):
 *   unix, tcp  an echo server (this process) and a forked client over an AF_UNIX stream
 *              socket (a path) or TCP over 127.0.0.1: the listener's EPOLLIN once per new
 *              connection; a non-blocking connect's EPOLLOUT; bytes reported once per
 *              arrival in ET (a second wait with nothing new times out with 0), again and
 *              again in LT; EPOLLONESHOT off until re-armed with MOD; EPOLLRDHUP on the
 *              peer's shutdown(SHUT_WR); EPOLLOUT once after the peer drains a full
 *              buffer; EPOLLERR|EPOLLHUP on a reset (a close with bytes left unread)
 *   udp        datagrams arriving; a send's own EPOLLOUT (lo hands the buffer back at once)
 *   dgram      AF_UNIX datagrams and SOCK_SEQPACKET records: arrivals, the sender's EPOLLOUT
 *              when one of its messages is read, a receiver's full queue and its room again
 *   flight     an epoll item on a pipe whose only descriptor is in flight (SCM_RIGHTS)
 *              stays and reports, and goes once the received copy is closed
 * Each wait that expects something comes after the other process said (through a pipe)
 * that it acted, so native scheduling cannot change what is printed. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static int ctl_c2s[2], ctl_s2c[2];   /* the client tells the server, and back */

static void say(int fd, long v)
{
    fflush(stdout);   /* what this side printed comes before what the other prints next */
    if (write(fd, &v, sizeof v) != sizeof v)
        exit(3);
}

static long hear(int fd)
{
    long v;
    if (read(fd, &v, sizeof v) != sizeof v)
        exit(4);
    return v;
}

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

static void wait_show(const char *who, int ep, const char *what, int timeout)
{
    struct epoll_event ev[8];
    errno = 0;
    int n = epoll_wait(ep, ev, 8, timeout);
    printf("%s %-28s %d", who, what, n);
    if (n < 0)
        printf(" %s", strerror(errno));
    for (int i = 0; i < n; i++)
        printf(" [%#x %llu]", ev[i].events, (unsigned long long)ev[i].data.u64);
    printf("\n");
    fflush(stdout);
}

static void nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

/* read until EAGAIN (or the end, or an error): what came, then how it stopped */
static void drain(const char *who, int fd)
{
    char buf[256], got[256];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r > 0) {
            if (n + r < sizeof got) {
                memcpy(got + n, buf, r);
                n += r;
            }
            continue;
        }
        printf("%s   read \"%.*s\", then %s\n", who, (int)n, got,
               r == 0 ? "end of file" : strerror(errno));
        fflush(stdout);
        return;
    }
}

static int family;
static struct sockaddr_storage where;
static socklen_t where_len;

static int make_listener(void)
{
    int l;
    if (family == AF_UNIX) {
        struct sockaddr_un *a = (struct sockaddr_un *)&where;
        unlink("echo.sock");
        memset(a, 0, sizeof *a);
        a->sun_family = AF_UNIX;
        strcpy(a->sun_path, "echo.sock");
        where_len = sizeof *a;
        l = socket(AF_UNIX, SOCK_STREAM, 0);
        if (bind(l, (struct sockaddr *)a, where_len) < 0)
            exit(5);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&where;
        memset(a, 0, sizeof *a);
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        where_len = sizeof *a;
        l = socket(AF_INET, SOCK_STREAM, 0);
        if (bind(l, (struct sockaddr *)a, where_len) < 0)
            exit(5);
        getsockname(l, (struct sockaddr *)a, &where_len);
    }
    if (listen(l, 8) < 0)
        exit(6);
    return l;
}

static void client(void)
{
    const char *C = "client";
    int ep = epoll_create1(0);
    /* A: a non-blocking connect, watched for EPOLLOUT in ET before it starts */
    int a = socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    add(ep, a, EPOLLOUT | EPOLLET, 1);
    wait_show(C, ep, "fresh socket", 0);
    int r = connect(a, (struct sockaddr *)&where, where_len);
    printf("%s connect A: %s\n", C, r == 0 ? "0" : strerror(errno));
    if (family == AF_INET)
        wait_show(C, ep, "connect done", -1);
    else
        wait_show(C, ep, "after connect", 0);
    wait_show(C, ep, "nothing new", 0);
    epoll_ctl(ep, EPOLL_CTL_DEL, a, NULL);
    nonblock(a, 0);
    say(ctl_c2s[1], 1);
    hear(ctl_s2c[0]);
    int b = socket(family, SOCK_STREAM, 0);
    if (connect(b, (struct sockaddr *)&where, where_len) < 0)
        exit(7);
    say(ctl_c2s[1], 2);
    hear(ctl_s2c[0]);

    /* bytes in ET, LT, one-shot */
    write(a, "hello", 5);
    say(ctl_c2s[1], 3);
    char echo[8] = {0};
    read(a, echo, 5);
    printf("%s echo: %s\n", C, echo);
    hear(ctl_s2c[0]);
    write(a, "ab", 2);
    write(a, "cd", 2);
    say(ctl_c2s[1], 4);
    hear(ctl_s2c[0]);
    write(a, "ef", 2);
    say(ctl_c2s[1], 5);
    hear(ctl_s2c[0]);
    write(a, "x", 1);                        /* level-triggered */
    say(ctl_c2s[1], 6);
    hear(ctl_s2c[0]);
    write(a, "y", 1);                        /* one-shot */
    say(ctl_c2s[1], 7);
    hear(ctl_s2c[0]);
    write(a, "z", 1);
    say(ctl_c2s[1], 8);
    hear(ctl_s2c[0]);
    shutdown(a, SHUT_WR);                    /* EPOLLRDHUP */
    say(ctl_c2s[1], 9);
    hear(ctl_s2c[0]);

    /* B: fill it until EAGAIN, the server drains it, EPOLLOUT once */
    nonblock(b, 1);
    add(ep, b, EPOLLOUT | EPOLLET, 2);
    wait_show(C, ep, "B writable", 0);
    wait_show(C, ep, "B nothing new", 0);
    static char block[4096];
    memset(block, 'w', sizeof block);
    long total = 0;
    for (;;) {
        ssize_t n = write(b, block, sizeof block);
        if (n <= 0)
            break;
        total += n;
    }
    printf("%s filled B until %s\n", C, strerror(errno));
    wait_show(C, ep, "B full", 0);
    say(ctl_c2s[1], total);
    hear(ctl_s2c[0]);
    wait_show(C, ep, "B drained", -1);
    wait_show(C, ep, "B nothing new", 0);
    wait_show(C, ep, "B still nothing", 0);
    say(ctl_c2s[1], 10);
    hear(ctl_s2c[0]);                        /* the server wrote to B: leave it unread */
    close(b);                                /* a reset */
    say(ctl_c2s[1], 11);
    hear(ctl_s2c[0]);
    close(a);
    exit(0);
}

static void echo(void)
{
    const char *S = "server";
    int l = make_listener();
    nonblock(l, 1);
    int ep = epoll_create1(0);
    add(ep, l, EPOLLIN | EPOLLET, 100);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        client();
    hear(ctl_c2s[0]);
    wait_show(S, ep, "first connection", -1);
    wait_show(S, ep, "nothing new", 0);
    say(ctl_s2c[1], 1);
    hear(ctl_c2s[0]);
    wait_show(S, ep, "second connection", -1);
    wait_show(S, ep, "nothing new", 0);
    int a = accept(l, NULL, NULL), b = accept(l, NULL, NULL);
    errno = 0;
    int c = accept(l, NULL, NULL);
    printf("%s accepted A %s, B %s, then %s\n", S, a >= 0 ? "ok" : "no", b >= 0 ? "ok" : "no",
           c < 0 ? strerror(errno) : "a third");
    wait_show(S, ep, "queue empty", 0);
    nonblock(a, 1);
    add(ep, a, EPOLLIN | EPOLLRDHUP | EPOLLET, 10);
    wait_show(S, ep, "A added, no data", 0);
    say(ctl_s2c[1], 2);

    hear(ctl_c2s[0]);                        /* hello */
    wait_show(S, ep, "hello", -1);
    wait_show(S, ep, "ET: nothing new", 0);
    drain(S, a);
    write(a, "hello", 5);
    wait_show(S, ep, "after echo", 0);
    say(ctl_s2c[1], 3);
    hear(ctl_c2s[0]);                        /* ab, cd */
    wait_show(S, ep, "two writes", -1);
    wait_show(S, ep, "ET: nothing new", 0);
    say(ctl_s2c[1], 4);
    hear(ctl_c2s[0]);                        /* ef: unread bytes wait, yet a new report */
    wait_show(S, ep, "more while readable", -1);
    wait_show(S, ep, "ET: nothing new", 0);
    drain(S, a);
    mod(ep, a, EPOLLIN | EPOLLRDHUP, 11);
    wait_show(S, ep, "LT, nothing there", 0);
    say(ctl_s2c[1], 5);
    hear(ctl_c2s[0]);                        /* x */
    wait_show(S, ep, "LT", -1);
    wait_show(S, ep, "LT again", 0);
    drain(S, a);
    wait_show(S, ep, "LT drained", 0);
    mod(ep, a, EPOLLIN | EPOLLONESHOT | EPOLLET, 12);
    say(ctl_s2c[1], 6);
    hear(ctl_c2s[0]);                        /* y */
    wait_show(S, ep, "one-shot", -1);
    say(ctl_s2c[1], 7);
    hear(ctl_c2s[0]);                        /* z */
    wait_show(S, ep, "one-shot fired", 0);
    mod(ep, a, EPOLLIN | EPOLLONESHOT | EPOLLET, 13);
    wait_show(S, ep, "re-armed", 0);
    wait_show(S, ep, "re-armed, fired", 0);
    drain(S, a);
    mod(ep, a, EPOLLIN | EPOLLRDHUP | EPOLLET, 14);
    say(ctl_s2c[1], 8);
    hear(ctl_c2s[0]);                        /* shutdown(SHUT_WR) */
    wait_show(S, ep, "peer shut for writing", -1);
    wait_show(S, ep, "ET: nothing new", 0);
    drain(S, a);
    say(ctl_s2c[1], 9);

    long total = hear(ctl_c2s[0]);           /* B is full */
    static char buf[65536];
    long got = 0;
    while (got < total) {
        ssize_t n = read(b, buf, sizeof buf);
        if (n <= 0)
            exit(8);
        got += n;
    }
    nonblock(b, 1);
    errno = 0;
    printf("%s drained B: %s, then %s\n", S, got == total ? "all" : "not all",
           read(b, buf, 1) < 0 ? strerror(errno) : "more");
    fflush(stdout);
    say(ctl_s2c[1], 10);
    hear(ctl_c2s[0]);                        /* the client has seen B writable */
    add(ep, b, EPOLLIN | EPOLLRDHUP | EPOLLET, 20);
    write(b, "unread", 6);
    say(ctl_s2c[1], 11);
    hear(ctl_c2s[0]);                        /* B closed with bytes unread */
    wait_show(S, ep, "reset", -1);
    wait_show(S, ep, "ET: nothing new", 0);
    drain(S, b);
    say(ctl_s2c[1], 12);
    int st;
    waitpid(pid, &st, 0);
    printf("%s client status %d\n", S, st);
    close(a);
    close(b);
    close(l);
    close(ep);
    if (family == AF_UNIX)
        unlink("echo.sock");
}

static void udp(void)
{
    const char *U = "udp";
    int r = socket(AF_INET, SOCK_DGRAM, 0), s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    bind(r, (struct sockaddr *)&a, len);
    getsockname(r, (struct sockaddr *)&a, &len);
    connect(s, (struct sockaddr *)&a, len);
    int ep = epoll_create1(0);
    add(ep, r, EPOLLIN | EPOLLET, 1);
    add(ep, s, EPOLLOUT | EPOLLET, 2);
    wait_show(U, ep, "fresh", 0);
    wait_show(U, ep, "nothing new", 0);
    send(s, "one", 3, 0);
    wait_show(U, ep, "one datagram", 0);
    wait_show(U, ep, "nothing new", 0);
    send(s, "two", 3, 0);
    send(s, "three", 5, 0);
    wait_show(U, ep, "two more", 0);
    char buf[16];
    recv(r, buf, sizeof buf, MSG_DONTWAIT);
    wait_show(U, ep, "one read", 0);
    close(r);
    send(s, "lost", 4, 0);                   /* port unreachable: ECONNREFUSED next */
    wait_show(U, ep, "to a closed port", 0);
    wait_show(U, ep, "nothing new", 0);
    close(s);
    close(ep);
}

static void unix_pair(int type, const char *U)
{
    int sv[2];
    socketpair(AF_UNIX, type | SOCK_NONBLOCK, 0, sv);
    int ep = epoll_create1(0);
    add(ep, sv[1], EPOLLIN | EPOLLET, 1);
    add(ep, sv[0], EPOLLOUT | EPOLLET, 2);
    wait_show(U, ep, "fresh", 0);
    wait_show(U, ep, "nothing new", 0);
    send(sv[0], "one", 3, 0);
    send(sv[0], "two", 3, 0);
    wait_show(U, ep, "two sent", 0);
    wait_show(U, ep, "nothing new", 0);
    char buf[16];
    recv(sv[1], buf, sizeof buf, 0);
    wait_show(U, ep, "one read", 0);
    recv(sv[1], buf, 2, 0);                  /* truncated: still freed */
    wait_show(U, ep, "another read", 0);
    shutdown(sv[1], SHUT_RD);
    wait_show(U, ep, "receiver shut for reading", 0);
    close(sv[1]);
    wait_show(U, ep, "receiver closed", 0);
    close(sv[0]);
    close(ep);
}

static void dgram(void)
{
    const char *D = "dgram";
    unix_pair(SOCK_DGRAM, "dgram pair");
    unix_pair(SOCK_SEQPACKET, "seqpacket");
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, "dgram.sock");
    unlink(a.sun_path);
    int r = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    bind(r, (struct sockaddr *)&a, sizeof a);
    connect(s, (struct sockaddr *)&a, sizeof a);
    int ep = epoll_create1(0);
    add(ep, r, EPOLLIN | EPOLLET, 1);
    add(ep, s, EPOLLOUT | EPOLLET, 2);
    wait_show(D, ep, "fresh", 0);
    int n = 0;
    while (send(s, "d", 1, 0) == 1)
        n++;
    printf("%s %d sent, then %s\n", D, n, strerror(errno));
    wait_show(D, ep, "receiver full", 0);
    wait_show(D, ep, "nothing new", 0);
    char buf[4];
    recv(r, buf, sizeof buf, 0);
    wait_show(D, ep, "one read", 0);
    wait_show(D, ep, "nothing new", 0);
    close(r);
    wait_show(D, ep, "receiver closed", 0);
    errno = 0;
    printf("%s send %zd %s\n", D, send(s, "d", 1, 0), strerror(errno));
    close(s);
    close(ep);
    unlink(a.sun_path);
}

static void flight(void)
{
    const char *F = "flight";
    int p[2], sv[2];
    pipe(p);
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    int ep = epoll_create1(0);
    add(ep, p[0], EPOLLIN, 40);
    add(ep, sv[1], EPOLLIN | EPOLLET, 41);
    char cbuf[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {"f", 1};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                        .msg_controllen = sizeof cbuf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &p[0], sizeof(int));
    printf("%s sendmsg %zd\n", F, sendmsg(sv[0], &mh, 0));
    close(p[0]);                             /* its only holder now: the message */
    wait_show(F, ep, "sent, read end closed", 0);
    write(p[1], "q", 1);
    wait_show(F, ep, "pipe written", 0);
    wait_show(F, ep, "LT again", 0);
    char one;
    memset(cbuf, 0, sizeof cbuf);
    iov.iov_base = &one;
    mh.msg_controllen = sizeof cbuf;
    printf("%s recvmsg %zd\n", F, recvmsg(sv[1], &mh, 0));
    int got;
    memcpy(&got, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof got);
    wait_show(F, ep, "received", 0);
    close(got);                              /* the last reference: the item goes */
    wait_show(F, ep, "received copy closed", 0);
    close(p[1]);
    close(sv[0]);
    wait_show(F, ep, "peer closed", 0);
    close(sv[1]);
    close(ep);
}

int main(int argc, char **argv)
{
    const char *part = argc > 1 ? argv[1] : "all";
    int all = !strcmp(part, "all");
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    pipe(ctl_c2s);
    pipe(ctl_s2c);
    if (all || !strcmp(part, "unix")) {
        printf("== AF_UNIX\n");
        family = AF_UNIX;
        echo();
    }
    if (all || !strcmp(part, "tcp")) {
        printf("== TCP\n");
        family = AF_INET;
        echo();
    }
    if (all || !strcmp(part, "udp")) {
        printf("== UDP\n");
        udp();
    }
    if (all || !strcmp(part, "dgram")) {
        printf("== AF_UNIX datagrams\n");
        dgram();
    }
    if (all || !strcmp(part, "flight")) {
        printf("== in flight\n");
        flight();
    }
    printf("EXIT-SUCCESS\n");
    return 0;
}
