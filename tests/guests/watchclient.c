/* watchclient.c WHERE STEP...: clients of watched.c, following a script, printing what each
 * sent and got on stdout (the transcript). WHERE is unix:PATH (an AF_UNIX path, "@NAME"
 * abstract) or tcp:PORT (127.0.0.1). Steps:
 *   N+        connect client N, print its welcome line
 *   N:TEXT    send TEXT and a newline on client N, print the one line that comes back
 *   N-        close client N
 *   N?        wait on client N for a line or the end of the connection
 *   N.        send "stop", print the answer, and close (the server exits once we are gone)
 *   N!        send client N's fd to the fd store itself (FDSTORE=1 to @vsnap/notify): a
 *             process that is not the service's, which the supervisor must not hear
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int fds[10];

static int dial(const char *where)
{
    if (!strncmp(where, "tcp:", 4)) {
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons((unsigned short)atoi(where + 4));
        a.sin_addr.s_addr = htonl(0x7f000001);
        int s = socket(AF_INET, SOCK_STREAM, 0);
        for (int tries = 0; tries < 500; tries++) {
            if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) return s;
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
        }
        return -1;
    }
    const char *path = where + 5;
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    socklen_t len = offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1;
    if (path[0] == '@') { a.sun_path[0] = 0; len--; }
    for (int tries = 0; tries < 500; tries++) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(s, (struct sockaddr *)&a, len) == 0) return s;
        close(s);
        struct timespec ts = {0, 10000000};   /* the server may not be up yet */
        nanosleep(&ts, NULL);
    }
    return -1;
}

/* one line from s, or "EOF" */
static void line(int n)
{
    char buf[512];
    size_t len = 0;
    while (len < sizeof buf - 1) {
        ssize_t r = read(fds[n], buf + len, 1);
        if (r <= 0) {
            printf("%d< %s\n", n, r == 0 ? "EOF" : strerror(errno));
            return;
        }
        if (buf[len] == '\n') break;
        len++;
    }
    buf[len] = 0;
    printf("%d< %s\n", n, buf);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) { fprintf(stderr, "usage: watchclient WHERE STEP...\n"); return 2; }
    for (int i = 2; i < argc; i++) {
        const char *st = argv[i];
        int n = st[0] - '0';
        if (n < 0 || n > 9) { fprintf(stderr, "bad step %s\n", st); return 2; }
        switch (st[1]) {
        case '+':
            fds[n] = dial(argv[1]);
            if (fds[n] < 0) { printf("%d: cannot connect\n", n); return 1; }
            line(n);
            break;
        case ':': {
            char out[512];
            int len = snprintf(out, sizeof out, "%s\n", st + 2);
            printf("%d> %s\n", n, st + 2);
            if (send(fds[n], out, (size_t)len, MSG_NOSIGNAL) != len)
                printf("%d: send: %s\n", n, strerror(errno));
            line(n);
            break;
        }
        case '-':
            close(fds[n]);
            printf("%d closed\n", n);
            break;
        case '?':
            line(n);
            break;
        case '.':
            printf("%d> stop\n", n);
            send(fds[n], "stop\n", 5, MSG_NOSIGNAL);
            line(n);
            close(fds[n]);
            break;
        case '!': {
            struct sockaddr_un a;
            memset(&a, 0, sizeof a);
            a.sun_family = AF_UNIX;
            memcpy(a.sun_path, "\0vsnap/notify", 13);
            const char *msg = "FDSTORE=1\nFDNAME=intruder";
            char cbuf[CMSG_SPACE(sizeof(int))];
            memset(cbuf, 0, sizeof cbuf);
            struct iovec iov = {(void *)msg, strlen(msg)};
            struct msghdr m = {0};
            m.msg_name = &a;
            m.msg_namelen = offsetof(struct sockaddr_un, sun_path) + 13;
            m.msg_iov = &iov;
            m.msg_iovlen = 1;
            m.msg_control = cbuf;
            m.msg_controllen = sizeof cbuf;
            struct cmsghdr *c = CMSG_FIRSTHDR(&m);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(c), &fds[n], sizeof(int));
            int s = socket(AF_UNIX, SOCK_DGRAM, 0);
            printf("%d! %s\n", n, sendmsg(s, &m, 0) < 0 ? strerror(errno) : "sent");
            close(s);
            break;
        }
        default:
            fprintf(stderr, "bad step %s\n", st);
            return 2;
        }
    }
    return 0;
}
