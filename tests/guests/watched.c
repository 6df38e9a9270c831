/* watched.c: a line server written for systemd's socket activation and fd store, for
 * `vsnap run --watch` (and natively under any supervisor with the same conventions).
 *
 * It takes its fds from LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES (sd_listen_fds(3)): a listening
 * socket (found by SO_ACCEPTCONN, whatever its name) and the clients the store kept for it
 * (named "client-N"). Each client it accepts goes to the store (FDSTORE=1, FDNAME=client-N,
 * the fd in SCM_RIGHTS), so a restart hands it back and the client stays connected.
 *
 * One line in, one line out, per client:
 *   echo TEXT   TEXT                      count     how many clients it serves
 *   crash       "crashing", then SIGSEGV  exit N    "bye", then exit(N)
 *   stop        STOPPING=1, "stopping", exit(0) once that client hung up
 *   forget      FDSTOREREMOVE=1 for this client ("forgotten")
 *   fork        a child that sleeps (for KillMode=control-group) ("forked")
 *   bad         notify messages systemd ignores or refuses ("sent")
 *   save        sys_checkpoint to its template (vsnap's <vsnap/checkpoint.h>): "saved", or
 *               "no checkpoints here" natively; resumed from that image, it says so on its
 *               stderr and answers nothing more to the save
 * A client that hangs up is closed here and left in the store (the supervisor drops it).
 * It never blocks: non-blocking accept and reads, a 1 ms sleep when nothing happened (no
 * poll, so it runs on any vsnap with sockets).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAXC 32

struct client { int fd, id; char buf[256]; size_t len; };
static struct client cl[MAXC];
static int ncl, next_id = 1, listen_fd = -1;

static int notify(const char *msg, size_t len, const int *fds, int nfds)
{
    const char *e = getenv("NOTIFY_SOCKET");
    if (!e || !*e) return -1;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t n = strlen(e);
    if (n >= sizeof sa.sun_path) return -1;
    memcpy(sa.sun_path, e, n);
    if (e[0] == '@') sa.sun_path[0] = 0;
    socklen_t salen = offsetof(struct sockaddr_un, sun_path) + n + (e[0] == '@' ? 0 : 1);
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    char cbuf[CMSG_SPACE(sizeof(int) * 4)];
    struct iovec iov = {(void *)msg, len};
    struct msghdr m = {0};
    m.msg_name = &sa;
    m.msg_namelen = salen;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    if (nfds) {
        memset(cbuf, 0, sizeof cbuf);
        m.msg_control = cbuf;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    int r = sendmsg(s, &m, MSG_NOSIGNAL) < 0 ? -1 : 0;
    close(s);
    return r;
}

static int notify_str(const char *msg) { return notify(msg, strlen(msg), NULL, 0); }

static void say(struct client *c, const char *text)
{
    size_t n = strlen(text), off = 0;
    while (off < n) {
        ssize_t w = send(c->fd, text + off, n - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) { usleep(1000); continue; }
        if (w <= 0) return;
        off += (size_t)w;
    }
}

static void add_client(int fd, int id, int stored)
{
    if (ncl == MAXC) { close(fd); return; }
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    cl[ncl].fd = fd;
    cl[ncl].id = id;
    cl[ncl].len = 0;
    ncl++;
    if (id >= next_id) next_id = id + 1;
    char msg[64];
    if (stored) {
        fprintf(stderr, "restored client-%d\n", id);
    } else {
        snprintf(msg, sizeof msg, "FDSTORE=1\nFDNAME=client-%d", id);
        fprintf(stderr, "accepted client-%d (store: %s)\n", id,
               notify(msg, strlen(msg), &fd, 1) == 0 ? "yes" : "no");
        snprintf(msg, sizeof msg, "welcome client-%d\n", id);
        say(&cl[ncl - 1], msg);
    }
    fflush(stderr);
}

static void activation(void)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    const char *names = getenv("LISTEN_FDNAMES");
    if (!pid || !fds || atol(pid) != (long)getpid()) return;
    int n = atoi(fds);
    for (int i = 0; i < n; i++) {
        int fd = 3 + i;
        char name[64] = "";
        const char *s = names;
        for (int k = 0; k < i && s; k++) { s = strchr(s, ':'); if (s) s++; }
        if (s) {
            size_t len = strcspn(s, ":");
            if (len < sizeof name) { memcpy(name, s, len); name[len] = 0; }
        }
        int on = 0;
        socklen_t ol = sizeof on;
        if (!strncmp(name, "client-", 7)) {
            add_client(fd, atoi(name + 7), 1);
        } else if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &ol) == 0 && on) {
            listen_fd = fd;
            fcntl(fd, F_SETFD, FD_CLOEXEC);
        }
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
}

static void bad_messages(void)
{
    char big[5000];
    memset(big, 'A', sizeof big);
    memcpy(big, "STATUS=", 7);
    notify(big, sizeof big, NULL, 0);                         /* longer than 4096 */
    notify("READY=1\0STOPPING=1", 18, NULL, 0);               /* a NUL byte */
    notify_str("no equals sign here\nWHATEVER=1\nX");          /* unknown: ignored */
    int p[2];
    if (pipe(p) == 0) {
        notify("FDSTORE=1\nFDNAME=bad:name", 25, p, 1);      /* invalid name */
        notify("STATUS=extra fds", 16, p, 2);                  /* fds without FDSTORE=1 */
        close(p[0]);
        close(p[1]);
    }
    notify_str("FDSTOREREMOVE=1");                            /* no FDNAME */
}

static int command(struct client *c, char *line)
{
    char out[300];
    if (!strncmp(line, "echo ", 5)) {
        snprintf(out, sizeof out, "%s\n", line + 5);
        say(c, out);
    } else if (!strcmp(line, "count")) {
        snprintf(out, sizeof out, "%d clients\n", ncl);
        say(c, out);
    } else if (!strcmp(line, "crash")) {
        say(c, "crashing\n");
        fprintf(stderr, "crash requested by client-%d\n", c->id);
        fflush(stderr);
        *(volatile int *)0 = 1;
    } else if (!strncmp(line, "exit ", 5)) {
        say(c, "bye\n");
        exit(atoi(line + 5));
    } else if (!strcmp(line, "stop")) {
        notify_str("STOPPING=1\nSTATUS=stopping");
        say(c, "stopping\n");
        fprintf(stderr, "stopping\n");
        int fl = fcntl(c->fd, F_GETFL);
        fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
        char b;
        while (read(c->fd, &b, 1) > 0)      /* a graceful stop: once that client is gone */
            ;
        exit(0);
    } else if (!strcmp(line, "forget")) {
        snprintf(out, sizeof out, "FDSTOREREMOVE=1\nFDNAME=client-%d", c->id);
        notify_str(out);
        say(c, "forgotten\n");
    } else if (!strcmp(line, "fork")) {
        pid_t pid = fork();
        if (pid == 0) {
            for (;;) sleep(1000);
        }
        say(c, pid > 0 ? "forked\n" : "fork failed\n");
    } else if (!strcmp(line, "save")) {
        /* vsnap's sys_checkpoint(CKPT_FREEZE, -1, -1, 1): 0 saved, 1 resumed from it */
        long r = syscall(19280, 1, -1, -1, 1);
        if (r == 1) {
            fprintf(stderr, "resumed from the checkpoint with %d clients\n", ncl);
            fflush(stderr);
        } else {
            say(c, r == 0 ? "saved\n" : "no checkpoints here\n");
        }
    } else if (!strcmp(line, "bad")) {
        bad_messages();
        say(c, "sent\n");
    } else {
        say(c, "?\n");
    }
    return 0;
}

int main(void)
{
    activation();
    if (listen_fd < 0) {
        fprintf(stderr, "watched: no listening socket passed (LISTEN_FDS)\n");
        return 2;
    }
    fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
    fprintf(stderr, "started with %d stored\n", ncl);
    fflush(stderr);
    notify_str("READY=1\nSTATUS=serving");
    for (;;) {
        int busy = 0;
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            add_client(fd, next_id, 0);
            busy = 1;
        }
        for (int i = 0; i < ncl; i++) {
            struct client *c = &cl[i];
            ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
            if (r == 0 || (r < 0 && errno != EAGAIN)) {
                fprintf(stderr, "client-%d left\n", c->id);
                close(c->fd);
                cl[i] = cl[--ncl];
                i--;
                busy = 1;
                continue;
            }
            if (r < 0) continue;
            busy = 1;
            c->len += (size_t)r;
            char *nl;
            while ((nl = memchr(c->buf, '\n', c->len))) {
                *nl = 0;
                command(c, c->buf);
                size_t used = (size_t)(nl + 1 - c->buf);
                memmove(c->buf, nl + 1, c->len - used);
                c->len -= used;
            }
        }
        if (!busy) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
}
