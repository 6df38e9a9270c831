/* unix_procs.c MODE: AF_UNIX sockets between processes, output comparable with Linux.
 *   fdpass   SCM_RIGHTS from a forked child to its parent and back: a pipe end and a file
 *            (the receiver reads and writes through them, sharing the file's offset), closed
 *            by the sender while in flight
 *   server   a server that forks a handler per client, clients on a path
 *   vanish   a peer killed with SIGKILL: EOF, EPIPE; ECONNRESET when it left bytes unread
 *   flood    a child floods a listener with non-blocking connects: EAGAIN past the backlog
 *   bulk     a blocking 1 MiB write against a reader with MSG_WAITALL (the writer waits)
 *   dgram    datagrams from children to a bound server, with their senders' names
 *   restart  accept interrupted by a signal: SA_RESTART restarts it, without it EINTR, and
 *            with SO_RCVTIMEO it is EINTR whatever SA_RESTART says; a timed-out recv
 *   lie      SCM_CREDENTIALS naming another pid or uid (EPERM unless privileged), and its own
 *   exec     sockets across execve (copyover): the one without close-on-exec keeps its bytes
 *            waiting and its peer, the SOCK_CLOEXEC one is gone
 *   creds    a reader with SO_PASSCRED never gets two writers' bytes in one read; without it
 *            it does
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static socklen_t un(struct sockaddr_un *a, const char *path)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    strcpy(a->sun_path, path);
    return offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1;
}

static int send_fd(int s, int fd, const char *data)
{
    char buf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {(void *)data, strlen(data)};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = buf;
    m.msg_controllen = sizeof buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    return sendmsg(s, &m, 0);
}

static int recv_fd(int s, char *data, size_t len)
{
    char buf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {data, len - 1};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = buf;
    m.msg_controllen = sizeof buf;
    ssize_t n = recvmsg(s, &m, 0);
    data[n > 0 ? n : 0] = 0;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (n < 0 || !c || c->cmsg_type != SCM_RIGHTS)
        return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

static void reap(const char *who)
{
    int st;
    pid_t p = wait(&st);
    if (p < 0)
        printf("%s: wait %s\n", who, strerror(errno));
    else if (WIFSIGNALED(st))
        printf("%s: killed by %d\n", who, WTERMSIG(st));
    else
        printf("%s: exit %d\n", who, WEXITSTATUS(st));
}

static void fdpass(void)
{
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    int sync[2];
    pipe(sync);
    pid_t c = fork();
    if (c == 0) {
        close(sv[0]);
        int p[2];
        pipe(p);
        int f = open("shared.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
        write(f, "0123456789abcdef", 16);
        lseek(f, 4, SEEK_SET);
        send_fd(sv[1], p[0], "pipe");
        send_fd(sv[1], f, "file");
        close(p[0]);
        close(f);
        write(p[1], "written after the end went\n", 27);
        close(p[1]);
        char b;
        read(sync[0], &b, 1);             /* the parent read the file */
        char got[64];
        int back = recv_fd(sv[1], got, sizeof got);
        char tmp[8] = {0};
        read(back, tmp, 3);
        printf("child: got %s, read through it \"%s\", offset now %ld\n", got, tmp,
               (long)lseek(back, 0, SEEK_CUR));
        _exit(0);
    }
    close(sv[1]);
    char what[64], buf[64];
    int pfd = recv_fd(sv[0], what, sizeof what);
    printf("parent: got %s fd ok %d\n", what, pfd > 2);
    int ffd = recv_fd(sv[0], what, sizeof what);
    printf("parent: got %s fd ok %d\n", what, ffd > 2);
    ssize_t n = read(pfd, buf, sizeof buf);
    printf("parent: pipe gave %zd: %.*s", n, (int)n, buf);
    n = read(pfd, buf, sizeof buf);
    printf("parent: then %zd (the child closed its write end)\n", n);
    n = read(ffd, buf, 4);
    printf("parent: file at the child's offset gave %.*s\n", (int)n, buf);
    write(ffd, "XY", 2);
    printf("parent: offset %ld\n", (long)lseek(ffd, 0, SEEK_CUR));
    send_fd(sv[0], ffd, "file back");
    close(ffd);
    write(sync[1], "x", 1);
    reap("child");
    int f = open("shared.txt", O_RDONLY);
    n = read(f, buf, sizeof buf);
    printf("file now %.*s\n", (int)n, buf);
    unlink("shared.txt");
}

static void server(void)
{
    struct sockaddr_un a;
    socklen_t la = un(&a, "srv.sock");
    unlink("srv.sock");
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    bind(l, (void *)&a, la);
    listen(l, 4);
    pid_t srv = fork();
    if (srv == 0) {
        for (int i = 0; i < 3; i++) {
            int s = accept(l, NULL, NULL);
            if (fork() == 0) {
                close(l);
                char buf[64];
                ssize_t n;
                while ((n = read(s, buf, sizeof buf)) > 0) {
                    for (ssize_t k = 0; k < n; k++)
                        if (buf[k] >= 'a' && buf[k] <= 'z')
                            buf[k] -= 32;
                    write(s, buf, n);
                }
                _exit(0);
            }
            close(s);
        }
        for (int i = 0; i < 3; i++)
            wait(NULL);
        _exit(0);
    }
    close(l);
    const char *lines[] = {"first client", "second one", "the third"};
    for (int i = 0; i < 3; i++) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(s, (void *)&a, la) < 0)
            printf("connect: %s\n", strerror(errno));
        write(s, lines[i], strlen(lines[i]));
        shutdown(s, SHUT_WR);
        char buf[64];
        ssize_t n, got = 0;
        while ((n = read(s, buf + got, sizeof buf - got)) > 0)
            got += n;
        printf("client %d: %.*s\n", i, (int)got, buf);
        close(s);
    }
    reap("server");
    unlink("srv.sock");
}

static void vanish(void)
{
    int sv[2];
    char buf[16];
    signal(SIGPIPE, SIG_IGN);
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    pid_t c = fork();
    if (c == 0) {
        close(sv[0]);
        write(sv[1], "hi", 2);
        pause();
        _exit(0);
    }
    close(sv[1]);
    read(sv[0], buf, 2);
    kill(c, SIGKILL);
    ssize_t n = read(sv[0], buf, sizeof buf);
    printf("read after the peer died: %zd\n", n);
    errno = 0;
    n = write(sv[0], "x", 1);
    printf("write after: %zd %s\n", n, strerror(errno));
    reap("killed child");
    close(sv[0]);

    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    c = fork();
    if (c == 0) {
        close(sv[0]);
        write(sv[1], "ready", 5);
        pause();
        _exit(0);
    }
    close(sv[1]);
    write(sv[0], "never read", 10);
    read(sv[0], buf, 5);
    kill(c, SIGKILL);
    reap("killed child");
    errno = 0;
    n = read(sv[0], buf, sizeof buf);
    printf("read after the peer died with bytes unread: %zd %s\n", n, strerror(errno));
    n = read(sv[0], buf, sizeof buf);
    printf("and again: %zd\n", n);
    close(sv[0]);
}

static void flood(void)
{
    struct sockaddr_un a;
    socklen_t la = un(&a, "flood.sock");
    unlink("flood.sock");
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    bind(l, (void *)&a, la);
    listen(l, 2);
    pid_t c = fork();
    if (c == 0) {
        int ok = 0, i;
        for (i = 0; i < 1000; i++) {
            int s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (s < 0) {
                printf("flood: socket %s after %d\n", strerror(errno), i);
                break;
            }
            if (connect(s, (void *)&a, la) < 0) {
                printf("flood: connect %d: %s\n", i, strerror(errno));
                close(s);
                if (errno == EAGAIN)
                    break;
                continue;
            }
            ok++;
        }
        printf("flood: %d connected\n", ok);
        _exit(0);
    }
    reap("flooder");
    fcntl(l, F_SETFL, O_NONBLOCK);
    int accepted = 0, s;
    while ((s = accept(l, NULL, NULL)) >= 0) {
        char b;
        ssize_t n = read(s, &b, 1);
        printf("accepted one whose client is gone: read %zd\n", n);
        close(s);
        accepted++;
    }
    printf("accepted %d, then %s\n", accepted, strerror(errno));
    close(l);
    unlink("flood.sock");
}

static char big[1 << 20], back[1 << 20];

static void bulk(void)
{
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 7 + i / 4096);
    pid_t c = fork();
    if (c == 0) {
        close(sv[0]);
        ssize_t n = write(sv[1], big, sizeof big);
        printf("writer: wrote %zd\n", n);
        _exit(0);
    }
    close(sv[1]);
    size_t got = 0;
    int reads = 0;
    while (got < sizeof back) {
        ssize_t n = recv(sv[0], back + got, 100000, MSG_WAITALL);
        if (n <= 0)
            break;
        got += n;
        reads++;
    }
    reap("writer");
    printf("reader: %zu bytes in %d reads, same %d\n", got, reads,
           memcmp(big, back, sizeof big) == 0);
    close(sv[0]);

    /* a writer parked on a full buffer is let go by the reader's SHUT_RD (EPIPE after the
     * bytes it moved) and by the reader's close */
    for (int how = 0; how < 2; how++) {
        socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
        c = fork();
        if (c == 0) {
            close(sv[0]);
            signal(SIGPIPE, SIG_IGN);
            errno = 0;
            ssize_t n = write(sv[1], big, sizeof big);
            printf("parked writer: %s, errno %s\n", n > 0 ? "moved some" : "moved none",
                   errno ? strerror(errno) : "none");
            errno = 0;
            n = write(sv[1], big, 10);
            printf("then: %zd %s\n", n, strerror(errno));
            _exit(0);
        }
        usleep(200000);
        if (how == 0)
            shutdown(sv[0], SHUT_RD);
        else
            close(sv[0]);
        reap("parked writer");
        if (how == 0)
            close(sv[0]);
        close(sv[1]);
    }
}

static void dgram(void)
{
    struct sockaddr_un a;
    socklen_t la = un(&a, "dg.sock");
    unlink("dg.sock");
    int d = socket(AF_UNIX, SOCK_DGRAM, 0);
    bind(d, (void *)&a, la);
    for (int i = 0; i < 3; i++) {
        if (fork() == 0) {
            int s = socket(AF_UNIX, SOCK_DGRAM, 0);
            struct sockaddr_un me;
            char name[32], msg[32];
            snprintf(name, sizeof name, "c%d.sock", i);
            unlink(name);
            bind(s, (void *)&me, un(&me, name));
            snprintf(msg, sizeof msg, "from child %d", i);
            sendto(s, msg, strlen(msg), 0, (void *)&a, la);
            char reply[32];
            ssize_t n = recv(s, reply, sizeof reply, 0);
            printf("child %d: reply %.*s\n", i, (int)n, reply);
            unlink(name);
            _exit(0);
        }
        char buf[64];
        struct sockaddr_un from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(d, buf, sizeof buf, 0, (void *)&from, &fl);
        printf("server: %.*s from %s\n", (int)n, buf, from.sun_path);
        sendto(d, "ack", 3, 0, (void *)&from, fl);
        reap("dgram child");
    }
    close(d);
    unlink("dg.sock");
}

static volatile int alarms;
static void on_alarm(int s) { (void)s; alarms++; }

static void restart_case(const char *what, int flags, int timeout)
{
    struct sockaddr_un a;
    socklen_t la = un(&a, "rs.sock");
    unlink("rs.sock");
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    bind(l, (void *)&a, la);
    listen(l, 1);
    if (timeout) {
        struct timeval tv = {5, 0};
        setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sa.sa_flags = flags;
    sigaction(SIGALRM, &sa, NULL);
    alarms = 0;
    pid_t c = fork();
    if (c == 0) {
        usleep(400000);
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        connect(s, (void *)&a, la);
        _exit(0);
    }
    struct itimerval it = {{0, 0}, {0, 100000}};
    setitimer(ITIMER_REAL, &it, NULL);
    errno = 0;
    int s = accept(l, NULL, NULL);
    printf("%s: accept %s %s, alarms %d\n", what, s >= 0 ? "ok" : "failed",
           s >= 0 ? "" : strerror(errno), alarms);
    reap("connector");
    close(l);
    if (s >= 0)
        close(s);
    unlink("rs.sock");
}

static void restart(void)
{
    restart_case("SA_RESTART", SA_RESTART, 0);
    restart_case("no SA_RESTART", 0, 0);
    restart_case("SA_RESTART with SO_RCVTIMEO", SA_RESTART, 1);
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    struct timeval tv = {0, 250000};
    setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char b[4];
    errno = 0;
    ssize_t n = read(sv[0], b, sizeof b);
    printf("timed-out read: %zd %s\n", n, strerror(errno));
    if (fork() == 0) {
        usleep(100000);
        write(sv[1], "ab", 2);
        usleep(100000);
        write(sv[1], "cd", 2);
        _exit(0);
    }
    n = recv(sv[0], b, sizeof b, MSG_WAITALL);
    printf("waitall across two writes: %zd %.*s\n", n, (int)(n > 0 ? n : 0), b);
    reap("writer");
    /* SO_RCVLOWAT: a read waits for that many bytes; a non-blocking one takes what is there */
    int lowat = 3;
    printf("SO_RCVLOWAT: %d\n", setsockopt(sv[0], SOL_SOCKET, SO_RCVLOWAT, &lowat,
                                             sizeof lowat));
    if (fork() == 0) {
        usleep(100000);
        write(sv[1], "ef", 2);
        usleep(100000);
        write(sv[1], "gh", 2);
        _exit(0);
    }
    n = recv(sv[0], b, sizeof b, 0);
    printf("read with SO_RCVLOWAT 3: %zd %.*s\n", n, (int)(n > 0 ? n : 0), b);
    reap("writer");
    write(sv[1], "ij", 2);
    n = recv(sv[0], b, sizeof b, MSG_DONTWAIT);
    printf("non-blocking read below SO_RCVLOWAT: %zd %.*s\n", n, (int)(n > 0 ? n : 0), b);
    lowat = 0;
    setsockopt(sv[0], SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
    socklen_t ll = sizeof lowat;
    getsockopt(sv[0], SOL_SOCKET, SO_RCVLOWAT, &lowat, &ll);
    printf("SO_RCVLOWAT 0 reads back %d\n", lowat);
}

static void creds(void)
{
    for (int pass = 0; pass < 2; pass++) {
        int sv[2];
        socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
        int v = pass;
        setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &v, sizeof v);
        if (fork() == 0) {
            write(sv[0], "child ", 6);
            write(sv[0], "bytes ", 6);
            _exit(0);
        }
        reap("writer");
        write(sv[0], "parent bytes", 12);
        char buf[64], cbuf[CMSG_SPACE(sizeof(struct ucred))];
        for (int i = 0; i < 2; i++) {
            struct iovec iov = {buf, sizeof buf};
            struct msghdr m = {0};
            m.msg_iov = &iov;
            m.msg_iovlen = 1;
            m.msg_control = cbuf;
            m.msg_controllen = sizeof cbuf;
            fcntl(sv[1], F_SETFL, O_NONBLOCK);
            ssize_t n = recvmsg(sv[1], &m, 0);
            struct cmsghdr *c = CMSG_FIRSTHDR(&m);
            int mine = -1;
            if (c && c->cmsg_type == SCM_CREDENTIALS) {
                struct ucred u;
                memcpy(&u, CMSG_DATA(c), sizeof u);
                mine = u.pid == getpid();
            }
            printf("passcred %d read %d: %zd \"%.*s\" from me %d\n", pass, i, n,
                   (int)(n > 0 ? n : 0), buf, mine);
        }
        close(sv[0]);
        close(sv[1]);
    }
}

static void exec_keep(char *self)
{
    int sv[2], gone[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, gone);
    write(sv[1], "waiting across exec", 19);
    char a[16], b[16], c[16];
    snprintf(a, sizeof a, "%d", sv[0]);
    snprintf(b, sizeof b, "%d", sv[1]);
    snprintf(c, sizeof c, "%d", gone[0]);
    execl(self, self, "exec2", a, b, c, (char *)NULL);
    printf("execl: %s\n", strerror(errno));
}

static void exec_after(char **argv)
{
    int s0 = atoi(argv[2]), s1 = atoi(argv[3]), gone = atoi(argv[4]);
    char buf[64];
    ssize_t n = read(s0, buf, sizeof buf);
    printf("after exec: read %zd %.*s\n", n, (int)(n > 0 ? n : 0), buf);
    printf("after exec: SOCK_CLOEXEC one: %d %s\n", fcntl(gone, F_GETFD), strerror(errno));
    write(s0, "back", 4);
    n = read(s1, buf, sizeof buf);
    printf("after exec: the peer got %.*s\n", (int)(n > 0 ? n : 0), buf);
}

static void lie_with(int s, const char *what, pid_t pid, uid_t uid)
{
    char cbuf[CMSG_SPACE(sizeof(struct ucred))];
    struct iovec iov = {"cred", 4};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_CREDENTIALS;
    cm->cmsg_len = CMSG_LEN(sizeof(struct ucred));
    struct ucred u = {pid, uid, getgid()};
    memcpy(CMSG_DATA(cm), &u, sizeof u);
    errno = 0;
    long r = sendmsg(s, &m, 0);
    printf("%s: %ld %s\n", what, r, r >= 0 ? "" : errno == EPERM ? "EPERM" : strerror(errno));
}

static void lie(void)
{
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    lie_with(sv[0], "other pid", getpid() + 1, getuid());
    lie_with(sv[0], "uid 0", getpid(), 0);
    lie_with(sv[0], "own", getpid(), getuid());
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "fdpass"))
        fdpass();
    else if (!strcmp(mode, "server"))
        server();
    else if (!strcmp(mode, "vanish"))
        vanish();
    else if (!strcmp(mode, "flood"))
        flood();
    else if (!strcmp(mode, "bulk"))
        bulk();
    else if (!strcmp(mode, "dgram"))
        dgram();
    else if (!strcmp(mode, "restart"))
        restart();
    else if (!strcmp(mode, "lie"))
        lie();
    else if (!strcmp(mode, "creds"))
        creds();
    else if (!strcmp(mode, "exec"))
        exec_keep(argv[0]);
    else if (!strcmp(mode, "exec2") && argc > 4)
        exec_after(argv);
    else {
        fprintf(stderr, "usage: unix_procs fdpass|server|vanish|flood|bulk|dgram|restart\n");
        return 2;
    }
    printf("done\n");
    return 0;
}
