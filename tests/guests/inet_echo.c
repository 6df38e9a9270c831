/* A line echo server and its client, for the host network policy (--listen, --connect).
   inet_echo serve PORT [guest]   listen on 127.0.0.1:PORT, serve one connection (or, with
                                  "guest", a forked guest client's), echo each line
   inet_echo client IP PORT       connect, send "ping", read the reply to its end
   inet_echo reach                try hosts off the loopback: the errno of each
   inet_echo pollserve PORT       serve one connection with a non-blocking poll() loop
   inet_echo forkserve PORT       accept one connection, a child serves it, the parent waits
   inet_echo nbclient IP PORT     as client, with a non-blocking connect, poll and SO_ERROR */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int client(const char *ip, int port, const char *line) {
    int c = socket(strchr(ip, ':') ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    struct sockaddr_storage ss = {0}; socklen_t n;
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *a = (void *)&ss;
        a->sin6_family = AF_INET6; a->sin6_port = htons(port);
        inet_pton(AF_INET6, ip, &a->sin6_addr); n = sizeof *a;
    } else {
        struct sockaddr_in *a = (void *)&ss;
        a->sin_family = AF_INET; a->sin_port = htons(port);
        inet_pton(AF_INET, ip, &a->sin_addr); n = sizeof *a;
    }
    if (connect(c, (void *)&ss, n) < 0) { printf("connect: %s\n", strerror(errno)); return 1; }
    write(c, line, strlen(line));
    shutdown(c, SHUT_WR);
    char buf[512]; long got = 0, r;
    while ((r = read(c, buf + got, sizeof buf - 1 - got)) > 0) got += r;
    buf[got] = 0;
    printf("reply: %s", buf);
    close(c);
    return 0;
}

static int nbclient(const char *ip, int port) {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    int r = connect(c, (void *)&a, sizeof a);
    printf("connect: %s\n", r < 0 ? strerror(errno) : "done at once");
    struct pollfd p = {.fd = c, .events = POLLOUT};
    r = poll(&p, 1, 30000);
    int err; socklen_t n = sizeof err;
    getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &n);
    printf("poll %d writable %d, SO_ERROR %s\n", r, !!(p.revents & POLLOUT), err ? strerror(err) : "0");
    if (err) return 1;
    fcntl(c, F_SETFL, 0);
    write(c, "ping\n", 5);
    shutdown(c, SHUT_WR);
    char buf[512]; long got = 0;
    while ((r = read(c, buf + got, sizeof buf - 1 - got)) > 0) got += r;
    buf[got] = 0;
    printf("reply: %s", buf);
    return 0;
}

static void reach(void) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(53)};
    inet_pton(AF_INET, "8.8.8.8", &a.sin_addr);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    printf("tcp 8.8.8.8: %s\n", connect(s, (void *)&a, sizeof a) < 0 ? strerror(errno) : "ok");
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    printf("udp 8.8.8.8: %s\n",
           sendto(u, "x", 1, 0, (void *)&a, sizeof a) < 0 ? strerror(errno) : "ok");
    printf("udp connect: %s\n", connect(u, (void *)&a, sizeof a) < 0 ? strerror(errno) : "ok");
    inet_pton(AF_INET, "192.0.2.77", &a.sin_addr);
    s = socket(AF_INET, SOCK_STREAM, 0);
    printf("tcp 192.0.2.77: %s\n", connect(s, (void *)&a, sizeof a) < 0 ? strerror(errno) : "ok");
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(53)};
    inet_pton(AF_INET6, "2001:4860::8888", &a6.sin6_addr);
    s = socket(AF_INET6, SOCK_STREAM, 0);
    printf("tcp6: %s\n", connect(s, (void *)&a6, sizeof a6) < 0 ? strerror(errno) : "ok");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!strcmp(argv[1], "reach")) { reach(); return 0; }
    if (!strcmp(argv[1], "client")) return client(argv[2], atoi(argv[3]), "ping\n");
    if (!strcmp(argv[1], "nbclient")) return nbclient(argv[2], atoi(argv[3]));
    int port = atoi(argv[2]), one = 1;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(l, (void *)&a, sizeof a) < 0 || listen(l, 4) < 0) {
        printf("listen: %s\n", strerror(errno)); return 1;
    }
    printf("listening\n");
    if (!strcmp(argv[1], "pollserve")) {
        struct pollfd p = {.fd = l, .events = POLLIN};
        int polls = 0;
        while (poll(&p, 1, -1) == 1 && !(p.revents & POLLIN)) polls++;
        int c = accept4(l, NULL, NULL, SOCK_NONBLOCK);
        char buf[256]; long r, total = 0;
        p.fd = c;
        for (;;) {
            p.revents = 0;
            if (poll(&p, 1, 60000) != 1) { printf("poll timed out\n"); return 1; }
            r = read(c, buf, sizeof buf);
            if (r < 0 && errno == EAGAIN) { printf("spurious wakeup\n"); continue; }
            if (r <= 0) break;
            write(c, buf, r);
            total += r;
        }
        printf("echoed %ld bytes, read ended with %ld\n", total, r);
        return 0;
    }
    if (argc > 3 && !fork()) _exit(client("127.0.0.1", port, "from guest\n"));
    int c = accept(l, NULL, NULL);
    int forked = !strcmp(argv[1], "forkserve");
    if (forked) {
        pid_t pid = fork();
        if (pid) {
            close(c);
            int status;
            waitpid(pid, &status, 0);
            printf("child %s\n", WIFEXITED(status) && !WEXITSTATUS(status) ? "done" : "failed");
            return 0;
        }
        close(l);
    }
    char line[256]; int n = 0, lines = 0; char ch;
    while (read(c, &ch, 1) == 1) {
        line[n++] = ch;
        if (ch == '\n' || n == sizeof line - 1) {
            char reply[300];
            int m = snprintf(reply, sizeof reply, "echo: %.*s", n, line);
            write(c, reply, m);
            printf("served: %.*s", n, line);
            n = 0; lines++;
        }
    }
    close(c);
    if (argc > 3) wait(NULL);
    printf("served %d lines\n", lines);
    return 0;
}
