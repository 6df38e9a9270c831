#define _GNU_SOURCE
/* TCP over the loopback, as Linux answers: bind, listen, accept, connect (blocking and not),
   shutdown's FIN, a reset from a close with unread bytes, EPIPE after the peer closed,
   MSG_PEEK/DONTWAIT/WAITALL, options, IPv6 with a v4 client, TIME_WAIT and SO_REUSEADDR.
   argv[1]: a base port; the test passes a free one, the same natively and under vsnap. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static char out[8192];
static size_t used;
#define say(...) (used += snprintf(out + used, sizeof out - used, __VA_ARGS__))
static int base;

static const char *err(long r) { return r < 0 ? strerror(errno) : "ok"; }

static struct sockaddr_in a4(const char *ip, int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

static int tcp(void) { return socket(AF_INET, SOCK_STREAM, 0); }

static int listener(int port, int reuse) {
    int s = tcp();
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof reuse);
    struct sockaddr_in a = a4("127.0.0.1", port);
    if (bind(s, (void *)&a, sizeof a) < 0 || listen(s, 8) < 0) { perror("listener"); exit(2); }
    return s;
}

static int client(int port) {
    int c = tcp();
    struct sockaddr_in a = a4("127.0.0.1", port);
    if (connect(c, (void *)&a, sizeof a) < 0) { perror("connect"); exit(2); }
    return c;
}

static void show_name(const char *what, int fd, int peer) {
    struct sockaddr_storage ss; socklen_t n = sizeof ss; char ip[64] = "?";
    int r = peer ? getpeername(fd, (void *)&ss, &n) : getsockname(fd, (void *)&ss, &n);
    if (r < 0) { say("%s: %s\n", what, strerror(errno)); return; }
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof ip);
    else
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof ip);
    say("%s: family %d len %u ip %s\n", what, ss.ss_family, n, ip);
}

static int ipoll(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP};
    poll(&p, 1, 0);
    return p.revents;
}

static void child_talk(int port) {
    int c = client(port);
    write(c, "hello", 5);
    shutdown(c, SHUT_WR);
    char buf[64]; long n, got = 0;
    while ((n = read(c, buf + got, sizeof buf - got)) > 0) got += n;
    printf("child: got %.*s then %ld\n", (int)got, buf, n);
    fflush(stdout);
    _exit(0);
}

int main(int argc, char **argv) {
    base = atoi(argv[1]);
    int one = 1, v; socklen_t vl = sizeof v; char buf[256]; long r;

    /* a fresh socket */
    int s = tcp();
    say("fresh poll %#x\n", ipoll(s));
    show_name("fresh name", s, 0);
    show_name("fresh peer", s, 1);
    r = send(s, "x", 1, MSG_NOSIGNAL); say("send unconnected %ld %s\n", r, err(r));
    r = recv(s, buf, 1, 0); say("recv unconnected %ld %s\n", r, err(r));
    r = shutdown(s, SHUT_WR); say("shutdown unconnected %ld %s\n", r, err(r));
    getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, &vl); say("nodelay %d\n", v);
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, &vl); say("nodelay set %d\n", v);
    getsockopt(s, IPPROTO_TCP, TCP_KEEPIDLE, &v, &vl); say("keepidle %d\n", v);
    getsockopt(s, IPPROTO_IP, IP_TTL, &v, &vl); say("ttl %d\n", v);
    getsockopt(s, SOL_SOCKET, SO_SNDBUF, &v, &vl); say("sndbuf %d", v);
    getsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, &vl); say(" rcvbuf %d\n", v);
    v = 0x13; setsockopt(s, IPPROTO_IP, IP_TOS, &v, sizeof v);
    getsockopt(s, IPPROTO_IP, IP_TOS, &v, &vl); say("tcp tos %#x\n", v);
    setsockopt(s, IPPROTO_TCP, TCP_CORK, &one, sizeof one);
    getsockopt(s, IPPROTO_TCP, TCP_CORK, &v, &vl); say("cork %d\n", v);
    v = 1500; setsockopt(s, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, sizeof v);
    getsockopt(s, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, &vl); say("user timeout %d\n", v);
    r = setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, 2); say("short optlen %ld %s\n", r, err(r));
    v = 0; r = setsockopt(s, IPPROTO_TCP, TCP_KEEPCNT, &v, sizeof v);
    say("keepcnt 0: %ld %s\n", r, err(r));
    close(s);

    /* bind and the port space */
    int l = listener(base, 0);
    show_name("listener", l, 0);
    s = tcp();
    struct sockaddr_in a = a4("127.0.0.1", base);
    r = bind(s, (void *)&a, sizeof a); say("bind taken port %ld %s\n", r, err(r));
    a = a4("0.0.0.0", base);
    r = bind(s, (void *)&a, sizeof a); say("bind any on taken port %ld %s\n", r, err(r));
    a = a4("10.1.2.3", 0);
    r = bind(s, (void *)&a, sizeof a); say("bind foreign %ld %s\n", r, err(r));
    a = a4("127.0.0.1", 0);
    r = bind(s, (void *)&a, 15); say("bind short %ld %s\n", r, err(r));
    r = bind(s, (void *)&a, sizeof a); say("bind ephemeral %ld %s\n", r, err(r));
    r = bind(s, (void *)&a, sizeof a); say("bind again %ld %s\n", r, err(r));
    close(s);
    say("listener poll %#x\n", ipoll(l));

    /* a connection with another process: FIN both ways */
    pid_t pid = fork();
    if (pid == 0) child_talk(base);
    struct sockaddr_in peer; socklen_t pl = sizeof peer;
    int c = accept4(l, (void *)&peer, &pl, SOCK_CLOEXEC);
    say("accepted %s family %d len %u\n", c >= 0 ? "yes" : strerror(errno), peer.sin_family, pl);
    show_name("accepted name", c, 0);
    getsockopt(c, SOL_SOCKET, SO_SNDBUF, &v, &vl); say("connected sndbuf %d", v);
    getsockopt(c, SOL_SOCKET, SO_RCVBUF, &v, &vl); say(" rcvbuf %d\n", v);
    show_name("accepted peer", c, 1);
    long got = 0, n;
    while ((n = read(c, buf + got, sizeof buf - got)) > 0) got += n;
    say("server got %.*s then %ld; poll %#x\n", (int)got, buf, n, ipoll(c));
    write(c, "world", 5);
    close(c);
    waitpid(pid, NULL, 0);

    /* connect to a port no one listens on */
    s = tcp();
    a = a4("127.0.0.1", base + 1);
    r = connect(s, (void *)&a, sizeof a); say("connect closed port %ld %s\n", r, err(r));
    close(s);
    s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    r = connect(s, (void *)&a, sizeof a); say("nonblocking connect closed %ld %s\n", r, err(r));
    say("refused poll %#x\n", ipoll(s));
    getsockopt(s, SOL_SOCKET, SO_ERROR, &v, &vl); say("so_error %s\n", strerror(v));
    r = connect(s, (void *)&a, sizeof a); say("connect again %ld %s\n", r, err(r));
    close(s);

    /* a non-blocking connect that works */
    s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    a = a4("127.0.0.1", base);
    r = connect(s, (void *)&a, sizeof a); say("nonblocking connect %ld %s\n", r, err(r));
    struct pollfd pf = {.fd = s, .events = POLLOUT};
    poll(&pf, 1, 1000);
    say("connected poll %#x\n", pf.revents);
    getsockopt(s, SOL_SOCKET, SO_ERROR, &v, &vl); say("so_error %d\n", v);
    r = connect(s, (void *)&a, sizeof a); say("connect again %ld %s\n", r, err(r));
    r = connect(s, (void *)&a, sizeof a); say("and again %ld %s\n", r, err(r));
    c = accept(l, NULL, NULL);
    /* peek, dontwait, waitall */
    write(s, "abc", 3);
    r = recv(c, buf, 2, MSG_PEEK); say("peek %ld %.2s\n", r, buf);
    r = recv(c, buf, 10, 0); say("read %ld %.3s\n", r, buf);
    r = recv(c, buf, 10, MSG_DONTWAIT); say("dontwait %ld %s\n", r, err(r));
    write(s, "ab", 2); write(s, "cd", 2);
    r = recv(c, buf, 4, MSG_WAITALL); say("waitall %ld %.4s\n", r, buf);
    /* the client closes with unread bytes: a reset */
    write(c, "xyz", 3);
    close(s);
    r = read(c, buf, 10); say("after reset %ld %s\n", r, err(r));
    r = read(c, buf, 10); say("then %ld %s\n", r, err(r));
    say("reset poll %#x\n", ipoll(c));
    show_name("reset peer", c, 1);
    close(c);

    /* the peer closed cleanly: a write succeeds once, then EPIPE */
    s = client(base);
    c = accept(l, NULL, NULL);
    close(s);
    r = read(c, buf, 10); say("after fin %ld %s\n", r, err(r));
    say("fin poll %#x\n", ipoll(c));
    r = send(c, "1", 1, MSG_NOSIGNAL); say("write after fin %ld %s\n", r, err(r));
    r = send(c, "2", 1, MSG_NOSIGNAL); say("write again %ld %s\n", r, err(r));
    say("epipe poll %#x\n", ipoll(c));
    close(c);

    /* half-close: the server still writes after the client's SHUT_WR */
    s = client(base);
    c = accept(l, NULL, NULL);
    shutdown(s, SHUT_WR);
    r = read(c, buf, 10); say("half-closed read %ld\n", r);
    r = write(c, "late", 4); say("server writes %ld\n", r);
    r = read(s, buf, 10); say("client reads %ld %.4s\n", r, buf);
    r = send(s, "x", 1, MSG_NOSIGNAL); say("client write after SHUT_WR %ld %s\n", r, err(r));
    say("half poll client %#x server %#x\n", ipoll(s), ipoll(c));
    close(s); close(c);
    close(l);

    /* TIME_WAIT holds the port of the side that closed first */
    l = listener(base + 2, 1);
    s = client(base + 2);
    c = accept(l, NULL, NULL);
    close(c);
    r = read(s, buf, 10); say("client sees fin %ld\n", r);
    close(s);
    close(l);
    s = tcp();
    a = a4("127.0.0.1", base + 2);
    r = bind(s, (void *)&a, sizeof a); say("rebind without SO_REUSEADDR %ld %s\n", r, err(r));
    close(s);
    s = tcp();
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    r = bind(s, (void *)&a, sizeof a); say("rebind with SO_REUSEADDR %ld %s\n", r, err(r));
    close(s);

    /* IPv6: a v4 client of a dual-stack listener, a v6 client */
    int l6 = socket(AF_INET6, SOCK_STREAM, 0);
    getsockopt(l6, IPPROTO_IPV6, IPV6_V6ONLY, &v, &vl); say("v6only %d\n", v);
    getsockopt(l6, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &v, &vl); say("hops %d\n", v);
    v = 0x13; setsockopt(l6, IPPROTO_IPV6, IPV6_TCLASS, &v, sizeof v);
    getsockopt(l6, IPPROTO_IPV6, IPV6_TCLASS, &v, &vl); say("tcp tclass %#x\n", v);
    getsockopt(l6, IPPROTO_IP, IP_TTL, &v, &vl); say("ip ttl on v6 %d\n", v);
    setsockopt(l6, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(base + 3),
                              .sin6_addr = IN6ADDR_ANY_INIT};
    r = bind(l6, (void *)&a6, sizeof a6); say("bind [::] %ld %s\n", r, err(r));
    r = setsockopt(l6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    say("v6only after bind %ld %s\n", r, err(r));
    listen(l6, 4);
    s = client(base + 3);
    c = accept(l6, NULL, NULL);
    show_name("v6 accepted name", c, 0);
    show_name("v6 accepted peer", c, 1);
    show_name("v4 client peer", s, 1);
    close(s); close(c);
    s = socket(AF_INET6, SOCK_STREAM, 0);
    a6.sin6_addr = in6addr_loopback;
    r = connect(s, (void *)&a6, sizeof a6); say("v6 connect %ld %s\n", r, err(r));
    c = accept(l6, NULL, NULL);
    show_name("v6 peer", c, 1);
    show_name("v6 client name", s, 0);
    close(s); close(c); close(l6);
    s = socket(AF_INET6, SOCK_STREAM, 0);
    r = bind(s, (void *)&a6, sizeof a6);
    getsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v, &vl); say("v6only after bind to ::1: %d\n", v);
    close(s);

    /* a listener closed with a connection not yet accepted: the client is reset */
    l = listener(base + 3, 1);
    s = client(base + 3);
    close(l);
    r = read(s, buf, 10); say("client of a closed listener %ld %s\n", r, err(r));
    close(s);

    /* bulk: another process writes more than the buffers hold; every byte arrives */
    l = listener(base, 1);
    pid = fork();
    if (pid == 0) {
        int w = client(base);
        static unsigned char chunk[10000];
        long sent = 0;
        while (sent < 300000) {
            for (int i = 0; i < (int)sizeof chunk; i++) chunk[i] = (unsigned char)((sent + i) * 7);
            long m = write(w, chunk, sizeof chunk);
            if (m <= 0) _exit(3);
            sent += m;
        }
        _exit(0);
    }
    c = accept(l, NULL, NULL);
    unsigned long sum = 0, total = 0, bad = 0;
    while ((n = read(c, buf, sizeof buf)) > 0) {
        for (long i = 0; i < n; i++) bad += buf[i] != (char)((total + i) * 7), sum += (unsigned char)buf[i];
        total += n;
    }
    int status;
    waitpid(pid, &status, 0);
    say("bulk: %lu bytes, sum %lu, %lu out of place, writer status %d\n", total, sum, bad, status);
    close(c); close(l);

    fputs(out, stdout);
    return 0;
}
