/* unix_calls.c: AF_UNIX sockets in one process, every line comparable with Linux: socket and
 * its flag and family errors, socketpair (stream and datagram), bind to a path (an S_IFSOCK
 * inode, EADDRINUSE, ENOENT), abstract names and autobind, listen/accept/connect (EAGAIN for a
 * non-blocking accept, a full backlog: EAGAIN for a non-blocking connect, ECONNREFUSED,
 * EISCONN), getsockname/getpeername, shutdown, poll bits, FIONREAD/SIOCOUTQ, fstat and
 * /proc/self/fd, the SOL_SOCKET options, MSG_PEEK/MSG_TRUNC/MSG_DONTWAIT/MSG_NOSIGNAL, SIGPIPE,
 * ECONNRESET after a close with unread bytes, SCM_RIGHTS (and its truncation), SCM_CREDENTIALS
 * (EPERM for a lie), and SO_RCVTIMEO's EAGAIN. Nothing here blocks for long. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <termios.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SIOCOUTQ
#define SIOCOUTQ TIOCOUTQ
#endif

#define T(x) do { errno = 0; long r_ = (long)(x); \
    printf("%-60s %ld %s\n", #x, r_, r_ < 0 ? strerror(errno) : ""); } while (0)

static volatile int sigpipes = 0;
static void on_pipe(int s) { (void)s; sigpipes++; }

static socklen_t un(struct sockaddr_un *a, const char *path)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    strcpy(a->sun_path, path);
    return offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1;
}

static socklen_t abstract(struct sockaddr_un *a, const char *name)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    memcpy(a->sun_path + 1, name, strlen(name));
    return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name);
}

static void show_name(const char *what, int fd, int peer)
{
    struct sockaddr_un a;
    socklen_t len = sizeof a;
    memset(&a, 0x55, sizeof a);
    int r = peer ? getpeername(fd, (void *)&a, &len) : getsockname(fd, (void *)&a, &len);
    if (r < 0) {
        printf("%s: -1 %s\n", what, strerror(errno));
        return;
    }
    printf("%s: len %d family %d", what, (int)len, a.sun_family);
    if (len > 2 && a.sun_path[0])
        printf(" path %s", a.sun_path);
    else if (len > 2)
        printf(" abstract %d bytes", (int)len - 3);
    printf("\n");
}

static void show_poll(const char *what, int fd)
{
    struct pollfd p = {fd, POLLIN | POLLOUT | POLLRDHUP, 0};
    poll(&p, 1, 0);
    printf("poll %s: %#x\n", what, p.revents);
}

static int opt(int fd, int name)
{
    int v = -7;
    socklen_t len = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, name, &v, &len) < 0)
        return -errno * 1000;
    return v;
}

static void send_fds(int s, int *fds, int n, const char *data)
{
    char buf[CMSG_SPACE(sizeof(int) * 8)];
    struct iovec iov = {(void *)data, strlen(data)};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = buf;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    errno = 0;
    long r = sendmsg(s, &m, 0);
    printf("sendmsg %d fds: %ld %s\n", n, r, r < 0 ? strerror(errno) : "");
}

/* SCM_RIGHTS of n copies of fd: at most SCM_MAX_FD (253) in one message */
static void send_many(int s, int rcv, int fd, int n)
{
    static int many[300];
    static char cbuf[CMSG_SPACE(sizeof many)];
    for (int i = 0; i < n; i++)
        many[i] = dup(fd);
    struct iovec iov = {"m", 1};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), many, sizeof(int) * n);
    errno = 0;
    long r = sendmsg(s, &m, 0);
    printf("sendmsg %d fds: %ld %s\n", n, r, r < 0 ? strerror(errno) : "");
    for (int i = 0; i < n; i++)
        close(many[i]);
    if (r > 0) {
        char b;
        iov.iov_base = &b;
        m.msg_controllen = sizeof cbuf;
        r = recvmsg(rcv, &m, 0);
        c = CMSG_FIRSTHDR(&m);
        int got = c ? (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int)) : 0;
        printf("received %d fds, flags %#x\n", got, m.msg_flags);
        for (int i = 0; i < got; i++) {
            int fd2;
            memcpy(&fd2, CMSG_DATA(c) + i * sizeof(int), sizeof fd2);
            close(fd2);
        }
    }
}

static void recv_fds(int s, size_t room, int flags)
{
    char buf[64], cbuf[256];
    struct iovec iov = {buf, sizeof buf};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = room ? cbuf : NULL;
    m.msg_controllen = room;
    errno = 0;
    long r = recvmsg(s, &m, flags);
    printf("recvmsg room %zu: %ld %s flags %#x controllen %zu", room, r,
           r < 0 ? strerror(errno) : "", m.msg_flags, (size_t)m.msg_controllen);
    if (r > 0)
        printf(" data %.*s", (int)r, buf);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        printf(" [cmsg level %d type %d len %zu", c->cmsg_level, c->cmsg_type,
               (size_t)c->cmsg_len);
        if (c->cmsg_type == SCM_RIGHTS) {
            int n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (int i = 0; i < n; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                printf(" fd%d cloexec %d", i, fcntl(fd, F_GETFD));
                close(fd);
            }
        } else if (c->cmsg_type == SCM_CREDENTIALS) {
            struct ucred u;
            memcpy(&u, CMSG_DATA(c), sizeof u);
            printf(" pid_ok %d uid_ok %d gid_ok %d", u.pid == getpid(), u.uid == getuid(),
                   u.gid == getgid());
        }
        printf("]");
    }
    printf("\n");
}

int main(void)
{
    struct sockaddr_un a, b;
    socklen_t la, lb;
    char buf[256];
    int sv[2], dv[2], v;
    signal(SIGPIPE, on_pipe);
    setvbuf(stdout, NULL, _IONBF, 0);

    printf("-- socket\n");
    T(socket(AF_UNIX, SOCK_STREAM | 0x1000000, 0));
    T(socket(12345, SOCK_STREAM, 0));
    T(socket(AF_UNIX, 9, 0));
    T(socket(AF_UNIX, SOCK_STREAM, 7));
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    printf("flags %#o fd flags %d\n", fcntl(s, F_GETFL), fcntl(s, F_GETFD));
    struct stat st;
    fstat(s, &st);
    printf("fstat sock %d mode %o nlink %ld size %lld uid_ok %d\n", S_ISSOCK(st.st_mode),
           st.st_mode, (long)st.st_nlink, (long long)st.st_size, st.st_uid == getuid());
    char link[64], want[64];
    snprintf(buf, sizeof buf, "/proc/self/fd/%d", s);
    ssize_t n = readlink(buf, link, sizeof link - 1);
    link[n > 0 ? n : 0] = 0;
    snprintf(want, sizeof want, "socket:[%lu]", (unsigned long)st.st_ino);
    printf("readlink is socket:[st_ino] %d\n", strcmp(link, want) == 0);
    T(lseek(s, 0, SEEK_SET));
    T(pread(s, buf, 1, 0));
    T(pwrite(s, buf, 1, 0));
    T(fsync(s));
    T(fdatasync(s));
    T(ftruncate(s, 0));
    T(fchdir(s));
    T(fcntl(s, F_GETPIPE_SZ));
    T(fallocate(s, 0, 0, 10));
    T(posix_fadvise(s, 0, 0, POSIX_FADV_NORMAL) ? -1 : 0);
    T(flock(s, LOCK_EX));
    T(mmap(NULL, 4096, PROT_READ, MAP_SHARED, s, 0) == MAP_FAILED ? -1 : 0);
    T(ioctl(s, TCGETS, buf));
    struct statfs sfs;
    fstatfs(s, &sfs);
    printf("fstatfs type %#lx\n", (unsigned long)sfs.f_type);
    snprintf(buf, sizeof buf, "/proc/self/fd/%d", s);
    T(open(buf, O_RDWR));
    T(opt(s, SO_TYPE));
    T(opt(s, SO_DOMAIN));
    T(opt(s, SO_PROTOCOL));
    T(opt(s, SO_ACCEPTCONN));
    T(opt(s, SO_ERROR));
    T(opt(s, 12345));
    T(write(s, "x", 1));
    T(read(s, buf, 1));
    show_poll("fresh stream", s);
    show_name("unbound name", s, 0);
    show_name("unbound peer", s, 1);
    T(shutdown(s, SHUT_WR));
    T(shutdown(s, 3));
    close(s);
    T(getsockname(1, (void *)&a, &la));

    printf("-- socketpair\n");
    T(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    int bad2[2] = {-5, -5};
    T(socketpair(AF_UNIX, SOCK_STREAM, 3, bad2));
    printf("failed socketpair wrote the next fds %d %d\n", bad2[0] == sv[1] + 1,
           bad2[1] == sv[1] + 2);
    show_name("pair name", sv[0], 0);
    show_name("pair peer", sv[0], 1);
    T(write(sv[0], "hello", 5));
    T(write(sv[0], "world", 5));
    int q = -1;
    ioctl(sv[1], FIONREAD, &q);
    printf("FIONREAD %d\n", q);
    T(recv(sv[1], buf, 3, MSG_PEEK));
    T(recv(sv[1], buf, 100, 0));
    printf("got %.10s\n", buf);
    T(recv(sv[1], buf, 100, MSG_DONTWAIT));
    {
        struct iovec wv[3] = {{"vec", 3}, {"", 0}, {"tored", 5}};
        char x[3], y[4], z[8];
        struct iovec rv[3] = {{x, 3}, {y, 4}, {z, 8}};
        T(writev(sv[0], wv, 3));
        T(readv(sv[1], rv, 3));
        printf("readv %.3s|%.4s|%.1s\n", x, y, z);
    }
    show_poll("pair empty", sv[1]);
    T(shutdown(sv[0], SHUT_WR));
    show_poll("after peer SHUT_WR", sv[1]);
    show_poll("after own SHUT_WR", sv[0]);
    T(read(sv[1], buf, 10));
    T(write(sv[0], "x", 1));
    printf("sigpipes %d\n", sigpipes);
    T(send(sv[0], "x", 1, MSG_NOSIGNAL));
    printf("sigpipes %d\n", sigpipes);
    T(write(sv[1], "back", 4));
    T(read(sv[0], buf, 10));
    close(sv[0]);
    show_poll("after peer close", sv[1]);
    T(write(sv[1], "x", 1));
    printf("sigpipes %d\n", sigpipes);
    close(sv[1]);

    /* a close with bytes unread: the peer's read gives ECONNRESET once, then EOF */
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    T(write(sv[0], "left", 4));
    T(write(sv[1], "mine", 4));
    close(sv[0]);
    show_poll("peer closed unread", sv[1]);
    T(opt(sv[1], SO_ERROR));
    T(read(sv[1], buf, 10));
    T(read(sv[1], buf, 10));
    T(send(sv[1], "y", 1, MSG_NOSIGNAL));
    close(sv[1]);
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    T(write(sv[0], "left", 4));
    close(sv[0]);
    T(read(sv[1], buf, 10));
    T(read(sv[1], buf, 10));
    T(read(sv[1], buf, 10));
    close(sv[1]);

    printf("-- datagrams\n");
    T(socketpair(AF_UNIX, SOCK_DGRAM, 0, dv));
    T(send(dv[0], "one", 3, 0));
    T(send(dv[0], "twotwo", 6, 0));
    T(send(dv[0], "", 0, 0));
    ioctl(dv[1], FIONREAD, &q);
    printf("FIONREAD %d\n", q);
    T(recv(dv[1], buf, 100, 0));
    T(recv(dv[1], buf, 3, 0));
    T(recv(dv[1], buf, 100, 0));
    T(recv(dv[1], buf, 100, MSG_DONTWAIT));
    T(send(dv[0], "abcdef", 6, 0));
    T(recv(dv[1], buf, 2, MSG_TRUNC));
    T(send(dv[0], "abcdef", 6, 0));
    {
        struct iovec iov = {buf, 4};
        struct msghdr m = {0};
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        T(recvmsg(dv[1], &m, 0));
        printf("msg_flags %#x\n", m.msg_flags);
    }
    show_poll("dgram pair", dv[0]);
    T(listen(dv[0], 1));
    T(accept(dv[0], NULL, NULL));
    int flood = 0;
    fcntl(dv[0], F_SETFL, O_NONBLOCK);
    while (send(dv[0], "z", 1, 0) == 1 && flood < 100000)
        flood++;
    printf("dgram flood: %d then %s\n", flood, flood < 100000 ? strerror(errno) : "");
    close(dv[1]);
    T(send(dv[0], "z", 1, 0));
    close(dv[0]);

    printf("-- bind and connect by path\n");
    unlink("s1");
    unlink("s2");
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un fam2 = {AF_UNIX};
    la = un(&a, "s1");
    T(bind(l, (void *)&a, 1));
    T(bind(l, (void *)&a, 200));
    T(bind(l, (void *)&a, la));
    T(bind(l, (void *)&a, la));
    T(bind(l, (void *)&fam2, sizeof(sa_family_t)));
    lb = un(&b, "s1-other");
    T(bind(l, (void *)&b, lb));
    T(access("s1-other", F_OK));
    lstat("s1", &st);
    printf("s1 is a socket %d mode %o\n", S_ISSOCK(st.st_mode), st.st_mode & 0777);
    show_name("bound name", l, 0);
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    T(bind(c, (void *)&a, la));
    T(connect(c, (void *)&a, la));
    lb = un(&b, "nowhere");
    T(connect(c, (void *)&b, lb));
    lb = un(&b, "dir/s");
    T(bind(c, (void *)&b, lb));
    lb = un(&b, "unix_calls.txt");
    close(open("unix_calls.txt", O_CREAT | O_WRONLY, 0644));
    T(connect(c, (void *)&b, lb));
    T(listen(c, 1));
    T(listen(l, 0));
    T(opt(l, SO_ACCEPTCONN));
    v = 1;
    setsockopt(l, SOL_SOCKET, SO_PASSCRED, &v, sizeof v);
    v = 10000;
    setsockopt(l, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    show_poll("listener", l);
    fcntl(l, F_SETFL, O_NONBLOCK);
    T(accept(l, NULL, NULL));
    fcntl(c, F_SETFL, O_NONBLOCK);
    T(connect(c, (void *)&a, la));
    T(connect(c, (void *)&a, la));
    T(write(c, "early", 5));
    show_poll("listener with one", l);
    int c2 = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    T(connect(c2, (void *)&a, la));
    int c3 = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    T(connect(c3, (void *)&a, la));
    int d = socket(AF_UNIX, SOCK_DGRAM, 0);
    T(connect(d, (void *)&a, la));
    close(d);
    struct sockaddr_un peer;
    socklen_t pl = sizeof peer;
    int acc = accept4(l, (void *)&peer, &pl, SOCK_CLOEXEC);
    printf("accept4: ok %d peer len %d cloexec %d flags %#o\n", acc >= 0, (int)pl,
           fcntl(acc, F_GETFD), fcntl(acc, F_GETFL));
    printf("accepted passcred %d sndbuf %d; client passcred %d\n", opt(acc, SO_PASSCRED),
           opt(acc, SO_SNDBUF), opt(c, SO_PASSCRED));
    show_name("accepted name", acc, 0);
    show_name("accepted peer", acc, 1);
    show_name("client peer", c, 1);
    T(read(acc, buf, 100));
    struct ucred cr;
    socklen_t cl = sizeof cr;
    getsockopt(acc, SOL_SOCKET, SO_PEERCRED, &cr, &cl);
    printf("peercred len %d pid_ok %d uid_ok %d gid_ok %d\n", (int)cl, cr.pid == getpid(),
           cr.uid == getuid(), cr.gid == getgid());
    cl = sizeof cr;
    getsockopt(l, SOL_SOCKET, SO_PEERCRED, &cr, &cl);
    printf("listener peercred pid_ok %d uid_ok %d gid_ok %d\n", cr.pid == getpid(),
           cr.uid == getuid(), cr.gid == getgid());
    cl = sizeof cr;
    getsockopt(c2, SOL_SOCKET, SO_PEERCRED, &cr, &cl);
    printf("unconnected peercred pid %d uid %d gid %d\n", cr.pid, (int)cr.uid, (int)cr.gid);
    T(accept4(l, NULL, NULL, 0x40));
    T(shutdown(l, SHUT_RD));
    T(accept(l, NULL, NULL));
    fcntl(l, F_SETFL, 0);
    T(accept(l, NULL, NULL));
    T(connect(socket(AF_UNIX, SOCK_STREAM, 0), (void *)&a, la));
    close(acc);
    close(l);
    T(connect(c3, (void *)&a, la));
    close(c);
    close(c2);
    close(c3);
    unlink("s1");

    printf("-- abstract names and autobind\n");
    l = socket(AF_UNIX, SOCK_DGRAM, 0);
    la = abstract(&a, "vsnap-test-abstract");
    T(bind(l, (void *)&a, la));
    show_name("abstract name", l, 0);
    int l2 = socket(AF_UNIX, SOCK_DGRAM, 0);
    T(bind(l2, (void *)&a, la));
    struct sockaddr_un fam = {AF_UNIX};
    T(bind(l2, (void *)&fam, sizeof(sa_family_t)));
    show_name("autobound", l2, 0);
    T(sendto(l2, "to abstract", 11, 0, (void *)&a, la));
    struct sockaddr_un from;
    socklen_t fl = sizeof from;
    memset(&from, 0, sizeof from);
    n = recvfrom(l, buf, sizeof buf, 0, (void *)&from, &fl);
    struct sockaddr_un mine;
    socklen_t ml = sizeof mine;
    getsockname(l2, (void *)&mine, &ml);
    printf("recvfrom %zd %.*s from len %d same as sender %d\n", n, (int)n, buf, (int)fl,
           fl == ml && memcmp(&from, &mine, fl) == 0);
    int anon = socket(AF_UNIX, SOCK_DGRAM, 0);
    T(sendto(anon, "anon", 4, 0, (void *)&a, la));
    fl = sizeof from;
    n = recvfrom(l, buf, sizeof buf, 0, (void *)&from, &fl);
    printf("recvfrom unbound sender %zd len %d\n", n, (int)fl);
    close(anon);
    close(l);
    T(sendto(l2, "gone", 4, 0, (void *)&a, la));
    la = abstract(&a, "vsnap-test-abstract");
    l = socket(AF_UNIX, SOCK_DGRAM, 0);
    T(bind(l, (void *)&a, la));
    close(l);
    close(l2);

    printf("-- options\n");
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    v = 1;
    T(setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &v, sizeof v));
    T(opt(s, SO_REUSEADDR));
    v = 5;
    T(setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &v, sizeof v));
    T(opt(s, SO_KEEPALIVE));
    T(setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &v, 2));
    v = 1;
    T(setsockopt(s, SOL_SOCKET, SO_SNDBUF, &v, sizeof v));
    T(opt(s, SO_SNDBUF));
    v = 100000;
    T(setsockopt(s, SOL_SOCKET, SO_SNDBUF, &v, sizeof v));
    T(opt(s, SO_SNDBUF));
    v = 1;
    T(setsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, sizeof v));
    T(opt(s, SO_RCVBUF));
    v = 50000;
    T(setsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, sizeof v));
    T(opt(s, SO_RCVBUF));
    T(setsockopt(s, SOL_SOCKET, SO_TYPE, &v, sizeof v));
    T(setsockopt(s, 6, 1, &v, sizeof v));
    struct linger lg = {1, 7}, lg2;
    T(setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
    socklen_t lgl = sizeof lg2;
    getsockopt(s, SOL_SOCKET, SO_LINGER, &lg2, &lgl);
    printf("linger %d %d len %d\n", lg2.l_onoff, lg2.l_linger, (int)lgl);
    struct timeval tv = {0, 100000}, tv2;
    T(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
    socklen_t tvl = sizeof tv2;
    getsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv2, &tvl);
    printf("rcvtimeo %ld %ld len %d\n", (long)tv2.tv_sec, (long)tv2.tv_usec, (int)tvl);
    tv.tv_usec = 2000000;
    T(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
    T(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, 8));
    close(s);
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    tv.tv_sec = 0;
    tv.tv_usec = 20000;
    setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    T(read(sv[0], buf, 10));
    T(recv(sv[0], buf, 10, MSG_WAITALL));
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    long total = 0;
    static char chunk[1024];
    while ((n = write(sv[0], chunk, sizeof chunk)) > 0)
        total += n;
    printf("stream filled: more than 0 %d, at most sndbuf %d, then %s\n", total > 0,
           total <= opt(sv[0], SO_SNDBUF), strerror(errno));
    show_poll("full stream", sv[0]);
    ioctl(sv[0], SIOCOUTQ, &q);
    printf("SIOCOUTQ above written %d\n", q > total);
    printf("stream filled with %ld bytes\n", total);
    ioctl(sv[1], FIONREAD, &q);
    printf("FIONREAD == written %d\n", q == total);
    close(sv[0]);
    close(sv[1]);

    printf("-- seqpacket\n");
    {
        struct pollfd pf;
        T(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv));
        T(send(sv[0], "one", 3, 0));
        T(send(sv[0], "twotwo", 6, 0));
        T(send(sv[0], "", 0, 0));
        ioctl(sv[1], FIONREAD, &q);
        printf("FIONREAD %d\n", q);
        T(recv(sv[1], buf, 2, 0));
        T(recv(sv[1], buf, 64, MSG_TRUNC | MSG_PEEK));
        T(recv(sv[1], buf, 64, 0));
        T(recv(sv[1], buf, 64, MSG_DONTWAIT));
        T(recv(sv[1], buf, 64, MSG_DONTWAIT));
        la = un(&a, "sq.sock");
        unlink("sq.sock");
        T(sendto(sv[0], "x", 1, 0, (void *)&a, la));
        T(recv(sv[1], buf, 64, 0));
        pf = (struct pollfd){sv[0], POLLIN | POLLOUT | POLLRDHUP, 0};
        poll(&pf, 1, 0);
        printf("poll %#x\n", pf.revents);
        T(shutdown(sv[0], SHUT_WR));
        T(recv(sv[1], buf, 64, 0));
        T(send(sv[0], "x", 1, 0));
        printf("sigpipes %d\n", sigpipes);
        T(send(sv[1], "y", 1, 0));
        close(sv[0]);
        pf = (struct pollfd){sv[1], POLLIN | POLLOUT | POLLRDHUP, 0};
        poll(&pf, 1, 0);
        printf("poll closed %#x\n", pf.revents);
        T(send(sv[1], "y", 1, 0));
        printf("sigpipes %d\n", sigpipes);
        T(recv(sv[1], buf, 64, 0));
        T(send(sv[1], "y", 1, 0));
        close(sv[1]);
        s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
        T(send(s, "x", 1, 0));
        T(recv(s, buf, 1, MSG_DONTWAIT));
        T(read(s, buf, 1));
        pf = (struct pollfd){s, POLLIN | POLLOUT, 0};
        poll(&pf, 1, 0);
        printf("poll fresh %#x\n", pf.revents);
        T(bind(s, (void *)&a, la));
        T(listen(s, 1));
        pf = (struct pollfd){s, POLLIN | POLLOUT, 0};
        poll(&pf, 1, 0);
        printf("poll listener %#x\n", pf.revents);
        c = socket(AF_UNIX, SOCK_SEQPACKET, 0);
        T(connect(c, (void *)&a, la));
        int d2 = socket(AF_UNIX, SOCK_STREAM, 0);
        T(connect(d2, (void *)&a, la));
        close(d2);
        T(write(c, "hello", 5));
        T(write(c, "again", 5));
        int acc2 = accept(s, NULL, NULL);
        T(read(acc2, buf, 3));
        T(read(acc2, buf, 64));
        static char huge[300000];
        T(send(c, huge, 212992 - 32, MSG_DONTWAIT));
        T(send(c, huge, 212992 - 31, MSG_DONTWAIT));
        T(send(c, huge, 1, MSG_DONTWAIT));
        close(acc2);
        T(send(c, "z", 1, 0));
        printf("sigpipes %d\n", sigpipes);
        T(recv(c, buf, 1, 0));
        close(c);
        close(s);
        unlink("sq.sock");
        /* a datagram EPIPE sends no SIGPIPE either */
        socketpair(AF_UNIX, SOCK_DGRAM, 0, dv);
        T(shutdown(dv[0], SHUT_WR));
        T(send(dv[0], "x", 1, 0));
        T(shutdown(dv[1], SHUT_RD));
        T(send(dv[1], "x", 1, 0));
        printf("sigpipes %d\n", sigpipes);
        close(dv[0]);
        close(dv[1]);
    }

    printf("-- SCM_RIGHTS and SCM_CREDENTIALS\n");
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    int fds[3];
    pipe(fds);
    fds[2] = open("unix_calls.txt", O_RDONLY);
    send_fds(sv[0], fds, 3, "three");
    T(write(sv[0], "plain", 5));
    {
        char path[64], info[256];
        snprintf(path, sizeof path, "/proc/self/fdinfo/%d", sv[1]);
        int fi = open(path, O_RDONLY);
        ssize_t k = read(fi, info, sizeof info - 1);
        info[k > 0 ? k : 0] = 0;
        close(fi);
        char *line = strstr(info, "scm_fds:");
        printf("fdinfo %s", line ? line : "has no scm_fds line\n");
    }
    recv_fds(sv[1], 256, MSG_PEEK);
    recv_fds(sv[1], 256, MSG_CMSG_CLOEXEC);
    recv_fds(sv[1], 256, 0);
    send_fds(sv[0], fds, 3, "trunc");
    recv_fds(sv[1], CMSG_SPACE(sizeof(int)), 0);
    send_fds(sv[0], fds, 2, "none");
    recv_fds(sv[1], 0, 0);
    send_fds(sv[0], fds, 1, "x");
    T(read(sv[1], buf, 10));
    int bad = 99;
    send_fds(sv[0], &bad, 1, "bad");
    send_many(sv[0], sv[1], 0, 253);
    send_many(sv[0], sv[1], 0, 254);
    close(fds[0]);
    close(fds[1]);
    close(fds[2]);
    v = 1;
    T(setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &v, sizeof v));
    T(write(sv[0], "cred", 4));
    recv_fds(sv[1], 256, 0);
    recv_fds(sv[1], 0, MSG_DONTWAIT);
    {
        char cbuf[CMSG_SPACE(sizeof(struct ucred))];
        struct iovec iov = {"lie", 3};
        struct msghdr m = {0};
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = cbuf;
        m.msg_controllen = sizeof cbuf;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_CREDENTIALS;
        cm->cmsg_len = CMSG_LEN(sizeof(struct ucred));
        struct ucred u = {getpid(), getuid(), getgid()};
        memcpy(CMSG_DATA(cm), &u, sizeof u);
        T(sendmsg(sv[0], &m, 0));
        recv_fds(sv[1], 256, 0);
        cm->cmsg_len = CMSG_LEN(4);
        T(sendmsg(sv[0], &m, 0));
        cm->cmsg_len = 4;
        T(sendmsg(sv[0], &m, 0));
        cm->cmsg_len = CMSG_LEN(sizeof(struct ucred));
        cm->cmsg_type = 77;
        T(sendmsg(sv[0], &m, 0));
    }
    close(sv[0]);
    close(sv[1]);

    /* a flock lock held by a description in flight: it stays while the message waits, and
     * goes when the message is thrown away with the receiving socket */
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    int lk = open("unix_calls.txt", O_RDONLY);
    T(flock(lk, LOCK_EX));
    send_fds(sv[0], &lk, 1, "lock");
    close(lk);
    int other = open("unix_calls.txt", O_RDONLY);
    T(flock(other, LOCK_EX | LOCK_NB));
    close(sv[1]);
    T(flock(other, LOCK_EX | LOCK_NB));
    close(other);
    close(sv[0]);
    unlink("unix_calls.txt");
    printf("done\n");
    return 0;
}
