/* UDP over the loopback, as Linux answers: autobind on send, message boundaries, the
   sender's address, MSG_TRUNC, MSG_PEEK, connect as a filter, ECONNREFUSED after a port
   unreachable on a connected socket, empty datagrams, v4 senders of a v6 socket.
   argv[1]: a base port (free natively; the test passes the same one to both runs). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *err(long r) { return r < 0 ? strerror(errno) : "ok"; }

static struct sockaddr_in a4(const char *ip, int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

static int udp(void) { return socket(AF_INET, SOCK_DGRAM, 0); }

static int port_of(int fd) {
    struct sockaddr_storage ss; socklen_t n = sizeof ss;
    getsockname(fd, (void *)&ss, &n);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static int ipoll(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT};
    poll(&p, 1, 0);
    return p.revents;
}

int main(int argc, char **argv) {
    int base = atoi(argv[1]);
    char buf[256], ip[64]; long r; int v; socklen_t vl = sizeof v;
    int A = udp();
    struct sockaddr_in a = a4("127.0.0.1", base);
    r = bind(A, (void *)&a, sizeof a); printf("bind %ld %s\n", r, err(r));
    printf("fresh poll %#x\n", ipoll(A));
    int B = udp();
    printf("B bound before send: %d\n", port_of(B) != 0);
    r = sendto(B, "one", 3, 0, (void *)&a, sizeof a); printf("sendto %ld %s\n", r, err(r));
    printf("B bound after send: %d\n", port_of(B) != 0);
    sendto(B, "two!", 4, 0, (void *)&a, sizeof a);
    sendto(B, "", 0, 0, (void *)&a, sizeof a);
    printf("poll with data %#x\n", ipoll(A));
    struct sockaddr_in from; socklen_t fl = sizeof from;
    r = recvfrom(A, buf, sizeof buf, 0, (void *)&from, &fl);
    inet_ntop(AF_INET, &from.sin_addr, ip, sizeof ip);
    printf("recvfrom %ld %.3s from %s len %u port is B's %d\n", r, buf, ip, fl,
           ntohs(from.sin_port) == port_of(B));
    r = recv(A, buf, 2, MSG_PEEK); printf("peek 2 of 4: %ld %.2s\n", r, buf);
    r = recv(A, buf, 2, MSG_TRUNC); printf("MSG_TRUNC: %ld %.2s\n", r, buf);
    struct iovec iov = {buf, sizeof buf};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    r = recvmsg(A, &mh, 0); printf("empty datagram %ld flags %#x\n", r, mh.msg_flags);
    r = recv(A, buf, sizeof buf, MSG_DONTWAIT); printf("nothing left %ld %s\n", r, err(r));
    sendto(B, "toolong", 7, 0, (void *)&a, sizeof a);
    mh.msg_iov->iov_len = 3;
    r = recvmsg(A, &mh, 0); printf("recvmsg short %ld flags %#x\n", r, mh.msg_flags);

    /* options: what UDP keeps */
    v = 0x13; setsockopt(B, IPPROTO_IP, IP_TOS, &v, sizeof v);
    getsockopt(B, IPPROTO_IP, IP_TOS, &v, &vl); printf("udp tos %#x\n", v);
    v = -1; setsockopt(B, IPPROTO_IP, IP_TTL, &v, sizeof v);
    getsockopt(B, IPPROTO_IP, IP_TTL, &v, &vl); printf("ttl -1 gives %d\n", v);
    v = 0; r = setsockopt(B, IPPROTO_IP, IP_TTL, &v, sizeof v); printf("ttl 0: %ld %s\n", r, err(r));
    r = getsockopt(B, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &v, &vl);
    printf("v6 level on a v4 socket: %ld %s\n", r, err(r));

    /* errors before anything moves */
    r = send(B, "x", 1, 0); printf("send unconnected %ld %s\n", r, err(r));
    struct sockaddr_in z = a4("127.0.0.1", 0);
    r = sendto(B, "x", 1, 0, (void *)&z, sizeof z); printf("sendto port 0 %ld %s\n", r, err(r));
    r = sendto(B, "x", 1, 0, (void *)&a, 15); printf("sendto short %ld %s\n", r, err(r));
    static char big[65508];
    r = sendto(B, big, sizeof big, 0, (void *)&a, sizeof a); printf("sendto 65508 %ld %s\n", r, err(r));
    r = sendto(B, big, 65507, 0, (void *)&a, sizeof a); printf("sendto 65507 %ld %s\n", r, err(r));
    r = recv(A, big, sizeof big, 0); printf("got %ld\n", r);

    /* connect filters what arrives */
    int C = udp();
    struct sockaddr_in bname = a4("127.0.0.1", port_of(B));
    r = connect(A, (void *)&bname, sizeof bname); printf("connect A to B %ld %s\n", r, err(r));
    sendto(C, "from C", 6, 0, (void *)&a, sizeof a);
    sendto(B, "from B", 6, 0, (void *)&a, sizeof a);
    r = recv(A, buf, sizeof buf, MSG_DONTWAIT); printf("A gets %ld %.6s\n", r, buf);
    r = recv(A, buf, sizeof buf, MSG_DONTWAIT); printf("then %ld %s\n", r, err(r));
    r = send(A, "back", 4, 0); printf("A sends to B %ld\n", r);
    r = recv(B, buf, sizeof buf, 0); printf("B gets %ld %.4s\n", r, buf);
    struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    r = connect(A, &unspec, sizeof unspec); printf("disconnect %ld %s\n", r, err(r));
    sendto(C, "from C", 6, 0, (void *)&a, sizeof a);
    r = recv(A, buf, sizeof buf, MSG_DONTWAIT); printf("A gets %ld %.6s\n", r, buf);

    /* a connected socket hears of a port no one has */
    int D = udp();
    struct sockaddr_in nobody = a4("127.0.0.1", base + 1);
    r = connect(D, (void *)&nobody, sizeof nobody); printf("connect to nobody %ld %s\n", r, err(r));
    r = send(D, "x", 1, 0); printf("first send %ld %s\n", r, err(r));
    printf("poll after %#x\n", ipoll(D));
    r = send(D, "x", 1, 0); printf("second send %ld %s\n", r, err(r));
    r = send(D, "x", 1, 0); printf("third send %ld %s\n", r, err(r));
    getsockopt(D, SOL_SOCKET, SO_ERROR, &v, &vl); printf("so_error %s\n", strerror(v));
    r = recv(D, buf, 1, MSG_DONTWAIT); printf("recv %ld %s\n", r, err(r));
    /* an unconnected one does not */
    r = sendto(C, "x", 1, 0, (void *)&nobody, sizeof nobody); printf("unconnected %ld\n", r);
    r = sendto(C, "x", 1, 0, (void *)&nobody, sizeof nobody); printf("again %ld %s\n", r, err(r));

    /* port sharing */
    int E2 = udp();
    r = bind(E2, (void *)&a, sizeof a); printf("bind taken %ld %s\n", r, err(r));

    /* v4 to a dual-stack v6 socket */
    int S6 = socket(AF_INET6, SOCK_DGRAM, 0);
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(base + 2),
                              .sin6_addr = IN6ADDR_ANY_INIT};
    r = bind(S6, (void *)&a6, sizeof a6); printf("bind [::] %ld %s\n", r, err(r));
    struct sockaddr_in to6 = a4("127.0.0.1", base + 2);
    sendto(C, "v4", 2, 0, (void *)&to6, sizeof to6);
    struct sockaddr_in6 f6; fl = sizeof f6;
    r = recvfrom(S6, buf, sizeof buf, 0, (void *)&f6, &fl);
    inet_ntop(AF_INET6, &f6.sin6_addr, ip, sizeof ip);
    printf("v6 socket got %ld %.2s from %s len %u\n", r, buf, ip, fl);
    r = sendto(S6, "re", 2, 0, (void *)&f6, fl); printf("reply %ld\n", r);
    fl = sizeof from;
    r = recvfrom(C, buf, sizeof buf, 0, (void *)&from, &fl);
    inet_ntop(AF_INET, &from.sin_addr, ip, sizeof ip);
    printf("v4 socket got %ld %.2s from %s port ok %d\n", r, buf, ip, ntohs(from.sin_port) == base + 2);
    a6.sin6_addr = in6addr_loopback;
    int T6 = socket(AF_INET6, SOCK_DGRAM, 0);
    sendto(T6, "v6", 2, 0, (void *)&a6, sizeof a6);
    fl = sizeof f6;
    r = recvfrom(S6, buf, sizeof buf, 0, (void *)&f6, &fl);
    inet_ntop(AF_INET6, &f6.sin6_addr, ip, sizeof ip);
    printf("v6 from v6 %ld %.2s from %s scope %u flow %u\n", r, buf, ip, f6.sin6_scope_id,
           f6.sin6_flowinfo);

    /* a flood: the receiver's buffer counts each datagram's skb, and drops past it */
    int sizes[] = {1, 300, 1000, 4000, 30000};
    for (int k = 0; k < 5; k++) {
        for (int small = 0; small < 2; small++) {
            int R = udp();
            if (small) { int one = 1; setsockopt(R, SOL_SOCKET, SO_RCVBUF, &one, sizeof one); }
            struct sockaddr_in ra = a4("127.0.0.1", base + 3);
            bind(R, (void *)&ra, sizeof ra);
            for (int i = 0; i < 400; i++) sendto(C, big, sizes[k], 0, (void *)&ra, sizeof ra);
            int got = 0;
            while (recv(R, big, sizeof big, MSG_DONTWAIT) >= 0) got++;
            printf("flood of %d-byte datagrams%s: %d arrive\n", sizes[k],
                   small ? " into the smallest buffer" : "", got);
            close(R);
        }
    }
    return 0;
}
