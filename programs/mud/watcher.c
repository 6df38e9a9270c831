/* watcher.c: the 'Watcher' of seeds/000. It listens on PORT, forks and execs the MUD
 * (`MUD --watched FD`) and keeps a copy of every socket: the listening one and each client's,
 * which the MUD hands over (SCM_RIGHTS over a Unix datagram socketpair) as it accepts it,
 * with the player's name and room as the message. When the MUD dies the Watcher still holds
 * every connection: it tells the players the world is being rebuilt, answers them itself for
 * --down-ms milliseconds (a very small mini-MUD), restarts the MUD and passes all the sockets
 * back. When the MUD exits with status 0 (`shutdown`) the Watcher ends too.
 *
 *   watcher PORT MUD [--down-ms N]
 *
 * With LISTEN_PID/LISTEN_FDS (systemd-socket-activate) the listener is fd 3, PORT unused.
 *
 * Messages MUD -> Watcher: "add ID ROOM NAME" + the client's fd, "set ID ROOM NAME", "del ID".
 * Watcher -> MUD at its start: "listen" + fd, "player ID ROOM NAME" + fd ..., "end".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAXP 64

struct client { int used, fd, id, room; char name[32]; };
static struct client clients[MAXP];
static int listen_fd, chld_pipe[2];

static void say(const char *fmt, long a, const char *b) {   /* the Watcher's log, stderr */
    char line[256];
    int n = snprintf(line, sizeof line, fmt, a, b);
    if (n > 0) (void)!write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void put(int fd, const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void on_chld(int sig) {   /* the self-pipe: poll wakes when the MUD dies */
    (void)sig;
    int e = errno;
    (void)!write(chld_pipe[1], "x", 1);
    errno = e;
}

static void send_fd(int sock, const char *msg, int fd) {
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = strlen(msg)};
    union { char b[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } c;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&c, 0, sizeof c);
        mh.msg_control = c.b;
        mh.msg_controllen = sizeof c.b;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    }
    while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0) {
        if (errno == EINTR) continue;
        say("watcher: sendmsg to the mud failed, errno %ld%s\n", errno, "");
        return;
    }
}

/* one message from the MUD, or -1 when none is waiting (MSG_DONTWAIT) */
static int from_mud(int sock, int flags) {
    char msg[128];
    int fd = -1;
    struct iovec iov = {.iov_base = msg, .iov_len = sizeof msg - 1};
    union { char b[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } c;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.b,
                        .msg_controllen = sizeof c.b};
    /* CLOEXEC: the Watcher's copies must not leak into the next MUD by exec; they go to it
     * by SCM_RIGHTS, numbered as the MUD's recvmsg chooses */
    ssize_t n = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC);
    if (n <= 0) return -1;
    msg[n] = 0;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
        memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    int id, room;
    char name[32];
    if (sscanf(msg, "add %d %d %31s", &id, &room, name) == 3 && fd >= 0) {
        for (int i = 0; i < MAXP; i++)
            if (!clients[i].used) {
                clients[i] = (struct client){1, fd, id, room, ""};
                strcpy(clients[i].name, name);
                return 1;
            }
        close(fd);
    } else if (sscanf(msg, "set %d %d %31s", &id, &room, name) == 3) {
        for (int i = 0; i < MAXP; i++)
            if (clients[i].used && clients[i].id == id) {
                clients[i].room = room;
                strcpy(clients[i].name, name);
            }
    } else if (sscanf(msg, "del %d", &id) == 1) {
        for (int i = 0; i < MAXP; i++)
            if (clients[i].used && clients[i].id == id) {
                close(clients[i].fd);
                clients[i].used = 0;
            }
    } else if (fd >= 0) {
        close(fd);
    }
    return 1;
}

/* fork and exec the MUD, then hand it the sockets; returns its pid and our end of the pair */
static pid_t start_mud(const char *mud, int *sock) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) < 0) {
        perror("watcher: socketpair");
        exit(1);
    }
    pid_t pid = fork();
    if (pid == 0) {
        /* the one fd the MUD inherits by exec, always 3 (dup2 clears close-on-exec): the
         * MUD's fd table does not depend on how many sockets the Watcher holds */
        if (sv[1] == 3) fcntl(3, F_SETFD, 0);
        else if (dup2(sv[1], 3) < 0) _exit(127);
        execl(mud, mud, "--watched", "3", (char *)NULL);
        perror("watcher: exec the mud");
        _exit(127);
    }
    close(sv[1]);
    *sock = sv[0];
    send_fd(*sock, "listen", listen_fd);
    int n = 0;
    for (int i = 0; i < MAXP; i++)
        if (clients[i].used) {
            char msg[96];
            snprintf(msg, sizeof msg, "player %d %d %s", clients[i].id, clients[i].room,
                     clients[i].name);
            send_fd(*sock, msg, clients[i].fd);
            n++;
        }
    send_fd(*sock, "end", -1);
    say("watcher: started the mud, handed it the listening socket and %ld players%s\n", n, "");
    return pid;
}

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

/* the world is down: answer each line a player sends, until the deadline */
static void mini_mud(long down_ms) {
    long end = now_ms() + down_ms;
    char buf[256];
    for (;;) {
        long left = end - now_ms();
        if (left <= 0) return;
        struct pollfd pf[MAXP];
        int who[MAXP], n = 0;
        for (int i = 0; i < MAXP; i++)
            if (clients[i].used) { pf[n].fd = clients[i].fd; pf[n].events = POLLIN; who[n++] = i; }
        int r = poll(pf, (nfds_t)n, (int)left);
        if (r < 0 && errno != EINTR) return;
        for (int k = 0; k < n && r > 0; k++) {
            if (!pf[k].revents) continue;
            struct client *c = &clients[who[k]];
            ssize_t got = read(c->fd, buf, sizeof buf);
            if (got <= 0) {   /* gone while the world was down */
                close(c->fd);
                c->used = 0;
                continue;
            }
            for (ssize_t j = 0; j < got; j++)   /* one answer per line */
                if (buf[j] == '\n') {
                    char line[128];
                    snprintf(line, sizeof line,
                             "[watcher] The world is being rebuilt, %s. Please wait.\n> ",
                             strcmp(c->name, "-") ? c->name : "stranger");
                    put(c->fd, line);
                }
        }
    }
}

int main(int argc, char **argv) {
    long down_ms = 0;
    if (argc == 5 && !strcmp(argv[3], "--down-ms")) down_ms = atol(argv[4]);
    else if (argc != 3) {
        fprintf(stderr, "usage: watcher PORT MUD [--down-ms N]\n");
        return 2;
    }
    const char *mud = argv[2];
    const char *lpid = getenv("LISTEN_PID"), *lfds = getenv("LISTEN_FDS");
    if (lpid && lfds && atol(lpid) == (long)getpid() && atoi(lfds) >= 1) {
        listen_fd = 3;   /* given by socket activation (systemd-socket-activate) */
        fcntl(3, F_SETFD, FD_CLOEXEC);
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
        say("watcher: the listening socket came by socket activation (%ld fds)%s\n",
            atol(lfds), "");
    } else {
        listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int on = 1;
        setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((unsigned short)atoi(argv[1])),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (bind(listen_fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(listen_fd, 16) < 0) {
            perror("watcher: listen");
            return 1;
        }
    }
    if (pipe2(chld_pipe, O_CLOEXEC | O_NONBLOCK) < 0) return 1;
    struct sigaction sa = {.sa_handler = on_chld, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
    sigaction(SIGCHLD, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int sock;
    pid_t pid = start_mud(mud, &sock);
    int restarts = 0;
    for (;;) {
        struct pollfd pf[2] = {{.fd = sock, .events = POLLIN},
                               {.fd = chld_pipe[0], .events = POLLIN}};
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        if (pf[0].revents & POLLIN) from_mud(sock, MSG_DONTWAIT);
        if (!(pf[1].revents & POLLIN)) continue;
        char x[16];
        while (read(chld_pipe[0], x, sizeof x) > 0) {}
        int status;
        if (waitpid(pid, &status, WNOHANG) != pid) continue;
        while (from_mud(sock, MSG_DONTWAIT) > 0) {}   /* what it said before it died */
        close(sock);
        int kept = 0;
        for (int i = 0; i < MAXP; i++) kept += clients[i].used;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            say("watcher: the mud shut down (exit 0); %ld players were still here%s\n", kept, "");
            return 0;
        }
        if (WIFSIGNALED(status))
            say("watcher: the mud died of signal %ld; I still hold %s", WTERMSIG(status), "");
        else
            say("watcher: the mud exited with status %ld; I still hold %s",
                WEXITSTATUS(status), "");
        say("%ld client sockets and the listening one%s\n", kept, "");
        if (++restarts > 20) {
            say("watcher: %ld restarts: giving up%s\n", restarts - 1, "");
            return 1;
        }
        for (int i = 0; i < MAXP; i++)
            if (clients[i].used) put(clients[i].fd, "[watcher] The world is being rebuilt...\n");
        if (down_ms > 0) mini_mud(down_ms);
        pid = start_mud(mud, &sock);
    }
}
