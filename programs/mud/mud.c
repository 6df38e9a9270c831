/* mud.c: a small multi-user line server (rooms, look, say, who, go, quit) that does not drop
 * its players when it crashes: the designs of seeds/000 (Erwin Andreasen, 1998).
 *
 *   mud PORT                 copyover: `copyover` re-executes the server; SIGSEGV (and BUS,
 *                            ILL, FPE) writes the copyover file with raw system calls and
 *                            re-executes it too; the client sockets survive exec.
 *   mud --forkcore PORT      the same, and on a crash it first forks: the child returns into
 *                            the crash with SIG_DFL and dumps a clean core, the parent copyovers
 *   mud --watched FD         run by ./watcher: the listening socket and the players arrive over
 *                            the Unix socket FD (SCM_RIGHTS); each new client goes back to it
 *   (socket activation)      with LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES (systemd's conventions)
 *                            the listening socket is fd 3.., fds named player-NAME are players;
 *                            with NOTIFY_SOCKET each client is kept in the fd store (FDSTORE=1)
 *                            and a crash just ends the process: the supervisor restarts it.
 *
 * What clients see never holds pids, times or addresses: the same bytes natively and under
 * vsnap. The log (stderr) says what happens to the process, fd tables included.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>      /* sscanf at start-up, rename (a system call); no stdio output */
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAXP 64          /* player slots: a copyover that counts more is a corrupt list */
#define NAMELEN 16
#define COPYOVER_FILE "copyover.dat"
#define STATE_FILE "players.dat"

static const struct { const char *name, *desc; } rooms[] = {
    {"hall", "A long hall; a fire burns at the far end."},
    {"garden", "A walled garden. Bees work the lavender."},
    {"library", "Shelves of books climb into the dark."},
    {"cellar", "A cold cellar. Something drips."},
};
#define NROOMS ((int)(sizeof rooms / sizeof rooms[0]))

struct player {
    struct player *next;   /* the list the copyover walks (and counts: it may be corrupt) */
    int used, fd, id, room;
    char name[NAMELEN];    /* "" until the player has logged in */
    char in[256];
    int inlen;
};

static struct player pool[MAXP];   /* static: a crash handler must not need malloc */
static struct player *players;
static int listen_fd = -1, watcher_fd = -1, next_id = 1;
static int events_fd = -1;         /* mud.log, O_CLOEXEC: the fd a copyover must not keep */
static int forkcore, fdstore;      /* --forkcore; NOTIFY_SOCKET given (the fd store keeps us) */
static char *self_argv[8];         /* how to exec ourselves again */
static volatile int *volatile nowhere;  /* the `crash` command writes through it (NULL) */

/* ---------------------------------------------------------------------------------------- */
/* output with raw system calls only: these run inside the crash handler too, where the heap
 * (and stdio's locks) may be what broke */

struct buf { char b[1024]; int n; };   /* always room for a closing NUL */

static void add_s(struct buf *b, const char *s) {
    while (*s && b->n < (int)sizeof b->b - 1) b->b[b->n++] = *s++;
}

static void add_i(struct buf *b, long v) {  /* hand-written: snprintf may malloc */
    char t[24];
    int n = 0, neg = v < 0;
    unsigned long u = neg ? 0UL - (unsigned long)v : (unsigned long)v;
    do t[n++] = (char)('0' + u % 10); while ((u /= 10) != 0);
    if (neg) t[n++] = '-';
    while (n > 0 && b->n < (int)sizeof b->b - 1) b->b[b->n++] = t[--n];
}

static void put(int fd, const char *s, int n) {   /* to a client, or the log (fd 2) */
    while (n > 0) {
        /* MSG_NOSIGNAL: a client gone is an error, not a SIGPIPE */
        ssize_t w = fd == 2 ? write(fd, s, (size_t)n) : send(fd, s, (size_t)n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        s += w;
        n -= (int)w;
    }
}

static void flush(int fd, struct buf *b) { put(fd, b->b, b->n); b->n = 0; }

/* "mud: A[I]C\n" to stderr, and "A[I]C\n" to the events file mud.log */
static void logline(const char *a, long i, const char *c) {
    struct buf b = {.n = 0};
    add_s(&b, "mud: ");
    add_s(&b, a);
    if (i != -1) add_i(&b, i);
    add_s(&b, c ? c : "");
    add_s(&b, "\n");
    if (events_fd >= 0) (void)!write(events_fd, b.b + 5, (size_t)b.n - 5);
    flush(2, &b);
}

/* which fds the process holds, and which of them close on exec: the picture of a copyover */
static void log_fds(const char *when) {
    struct buf b = {.n = 0};
    add_s(&b, "mud: fds ");
    add_s(&b, when);
    add_s(&b, ":");
    for (int fd = 0; fd < 64; fd++) {
        int fl = fcntl(fd, F_GETFD);
        struct stat st;
        if (fl < 0 || fstat(fd, &st) < 0) continue;
        add_s(&b, " ");
        add_i(&b, fd);
        add_s(&b, "=");
        const char *kind = S_ISSOCK(st.st_mode) ? "socket" : S_ISREG(st.st_mode) ? "file"
                         : S_ISFIFO(st.st_mode) ? "pipe" : S_ISCHR(st.st_mode) ? "chr" : "other";
        if (S_ISSOCK(st.st_mode)) {
            int on = 0;
            socklen_t len = sizeof on;
            if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on)
                kind = "listen";
        }
        add_s(&b, kind);
        if (fl & FD_CLOEXEC) add_s(&b, "(cloexec)");
    }
    add_s(&b, "\n");
    flush(2, &b);
}

static int write_all(int fd, struct buf *b) {
    const char *s = b->b;
    int n = b->n;
    b->n = 0;
    while (n > 0) {
        ssize_t w = write(fd, s, (size_t)n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        s += w;
        n -= (int)w;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* the players' file: one line per player "player FD ID ROOM NAME", written with open/write/
 * close/rename only. The copyover writes it from the crash handler; with the fd store it is
 * written at each change of state, when the program knows it is sane (the post's advice) */

/* the list may be what the crash broke: a cycle or a wild pointer would make a copyover
 * write players forever ("abort if you suddenly have 40000 players"); walk it once, counting */
static int list_sane(void) {
    int count = 0;
    for (struct player *p = players; p; p = p->next)
        if (++count > MAXP || p < pool || p >= pool + MAXP || !p->used) {
            logline("copyover aborted: the player list is corrupt after ", count, " entries");
            return 0;
        }
    return 1;
}

static int save_players(const char *path) {
    char tmp[64];
    struct buf b = {.n = 0};
    add_s(&b, path);
    add_s(&b, ".tmp");
    memcpy(tmp, b.b, (size_t)b.n);   /* memcpy and strlen are async-signal-safe in practice */
    tmp[b.n] = 0;
    b.n = 0;
    if (!list_sane()) return -1;
    /* O_CLOEXEC: the file must not follow the exec; the sockets must */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    add_s(&b, "listen ");
    add_i(&b, listen_fd);
    add_s(&b, "\nnextid ");
    add_i(&b, next_id);
    add_s(&b, "\n");
    for (struct player *p = players; p; p = p->next) {
        add_s(&b, "player ");
        add_i(&b, p->fd);
        add_s(&b, " ");
        add_i(&b, p->id);
        add_s(&b, " ");
        add_i(&b, p->room);
        add_s(&b, " ");
        add_s(&b, p->name[0] ? p->name : "-");
        add_s(&b, "\n");
        if (b.n > 900 && write_all(fd, &b) < 0) { close(fd); return -1; }
    }
    add_s(&b, "end\n");
    if (write_all(fd, &b) < 0 || close(fd) < 0) return -1;
    return rename(tmp, path);
}

static void everyone(const char *text) {
    /* MSG_DONTWAIT: a client that reads nothing (a full socket buffer) must not hold up the
     * copyover of everyone else; it misses the line, not the world */
    for (struct player *p = players; p; p = p->next)
        (void)!send(p->fd, text, strlen(text), MSG_DONTWAIT | MSG_NOSIGNAL);
}

static void set_default(int sig) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigaction(sig, &sa, NULL);
}

/* save the players and become a fresh copy of the program: the sockets are not close-on-exec,
 * so the new image finds them at the same numbers; returns only if that failed */
static void copyover(const char *why) {
    if (!list_sane()) return;
    everyone(why);
    if (save_players(COPYOVER_FILE) < 0) {
        logline("copyover: cannot save the players", -1, "");
        return;
    }
    log_fds("before exec");
    int n = 0;
    while (self_argv[n]) n++;
    char *argv[12];
    for (int i = 0; i < n; i++) argv[i] = self_argv[i];
    argv[n] = "--copyover";
    argv[n + 1] = COPYOVER_FILE;
    argv[n + 2] = NULL;
    extern char **environ;
    execve(argv[0], argv, environ);
    logline("copyover: execve failed, errno ", errno, "");
}

/* where the kernel puts the forked child's core (stderr only: it holds the pid) */
static void say_core(pid_t child, int status) {
    struct buf b = {.n = 0};
    add_s(&b, "mud: fork-to-core: the child ");
    add_i(&b, child);
    if (WIFSIGNALED(status)) {
        add_s(&b, " died of signal ");
        add_i(&b, WTERMSIG(status));
        add_s(&b, WCOREDUMP(status) ? " (core dumped)" : " (no core: RLIMIT_CORE?)");
    } else {
        add_s(&b, " exited ");
        add_i(&b, WEXITSTATUS(status));
    }
    char pat[128];
    int fd = open("/proc/sys/kernel/core_pattern", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, pat, sizeof pat - 1);
    if (fd >= 0) close(fd);
    if (n > 0) {
        while (n > 0 && pat[n - 1] == '\n') n--;
        pat[n] = 0;
        add_s(&b, pat[0] == '|' ? "; core_pattern pipes cores to " : "; core_pattern: ");
        add_s(&b, pat);
    } else {
        add_s(&b, "; under vsnap: `vsnap run --core FILE` writes FILE.");
        add_i(&b, child);
    }
    add_s(&b, "\n");
    flush(2, &b);
}

static void on_crash(int sig) {
    set_default(sig);   /* one-shot: a second fault while saving must kill, not loop */
    logline("caught signal ", sig, "; saving the players and re-executing");
    if (forkcore) {
        /* the raw system call: libc's fork runs atfork handlers and takes the malloc lock */
        long child = syscall(SYS_fork);
        if (child == 0)
            return;   /* the child returns into the crash with SIG_DFL: a clean core */
        if (child > 0) {
            int status = 0;
            while (wait4((pid_t)child, &status, 0, NULL) < 0 && errno == EINTR) {}
            say_core((pid_t)child, status);
        }
    }
    copyover("The world shimmers: something broke, and it is being rebuilt...\n");
    /* exec failed: return with SIG_DFL, and the fault kills the process */
}

/* ---------------------------------------------------------------------------------------- */
/* the fd store (sd_notify by hand) and the Watcher's socket */

static void sd_notify_fd(const char *msg, int fd) {
    const char *e = getenv("NOTIFY_SOCKET");
    if (!e || !*e) return;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t len = strlen(e);
    if (len >= sizeof sa.sun_path) return;
    memcpy(sa.sun_path, e, len);
    if (e[0] == '@') sa.sun_path[0] = 0;   /* systemd's spelling of an abstract address */
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len
                                  + (e[0] == '@' ? 0 : 1));
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return;
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = strlen(msg)};
    union { char b[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } c;
    struct msghdr mh = {.msg_name = &sa, .msg_namelen = salen, .msg_iov = &iov, .msg_iovlen = 1};
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
    if (sendmsg(s, &mh, MSG_NOSIGNAL) < 0) logline("sd_notify failed, errno ", errno, "");
    close(s);
}

static void send_fd(int sock, const char *msg, int fd) {   /* to the Watcher */
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
    if (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0) logline("to the watcher: sendmsg errno ", errno, "");
}

static int recv_fd(int sock, char *msg, int size, int *fd) {
    struct iovec iov = {.iov_base = msg, .iov_len = (size_t)size - 1};
    union { char b[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } c;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.b,
                        .msg_controllen = sizeof c.b};
    ssize_t n;
    while ((n = recvmsg(sock, &mh, 0)) < 0 && errno == EINTR) {}
    if (n < 0) return -1;
    msg[n] = 0;
    *fd = -1;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
        memcpy(fd, CMSG_DATA(cm), sizeof *fd);
    return (int)n;
}

enum change { ADDED, LOGGED_IN, MOVED, DROPPED };

/* tell whoever keeps the sockets (the Watcher, the fd store, the players' file) of a change */
static void kept_changed(struct player *p, enum change what) {
    if (watcher_fd >= 0) {
        struct buf b = {.n = 0};
        add_s(&b, what == ADDED ? "add " : what == DROPPED ? "del " : "set ");
        add_i(&b, p->id);
        add_s(&b, " ");
        add_i(&b, p->room);
        add_s(&b, " ");
        add_s(&b, p->name[0] ? p->name : "-");
        b.b[b.n] = 0;
        send_fd(watcher_fd, b.b, what == ADDED ? p->fd : -1);
    }
    if (!fdstore) return;
    if (p->name[0] && (what == LOGGED_IN || what == DROPPED)) {
        struct buf b = {.n = 0};
        add_s(&b, what == LOGGED_IN ? "FDSTORE=1\nFDNAME=player-"
                                    : "FDSTOREREMOVE=1\nFDNAME=player-");
        add_s(&b, p->name);
        b.b[b.n] = 0;
        sd_notify_fd(b.b, what == LOGGED_IN ? p->fd : -1);
    }
    save_players(STATE_FILE);
}

/* ---------------------------------------------------------------------------------------- */
/* the game */

static void say_to(struct player *p, const char *s) { put(p->fd, s, (int)strlen(s)); }

/* "A B C D\n" to the others in the room */
static void room_says(int room, struct player *except, const char *a, const char *b,
                      const char *c) {
    for (struct player *q = players; q; q = q->next) {
        if (q == except || q->room != room || !q->name[0]) continue;
        struct buf m = {.n = 0};
        add_s(&m, a);
        add_s(&m, b);
        add_s(&m, c);
        add_s(&m, "\n");
        flush(q->fd, &m);
    }
}

static void look(struct player *p, struct buf *b) {
    add_s(b, rooms[p->room].name);
    add_s(b, ": ");
    add_s(b, rooms[p->room].desc);
    add_s(b, "\nExits:");
    for (int r = 0; r < NROOMS; r++)
        if (r != p->room) { add_s(b, " "); add_s(b, rooms[r].name); }
    add_s(b, "\n");
    const char *names[MAXP];
    int n = 0;
    for (struct player *q = players; q; q = q->next)
        if (q != p && q->name[0] && q->room == p->room) names[n++] = q->name;
    for (int i = 1; i < n; i++)   /* sorted: the order of connections is not the players' */
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            const char *t = names[j]; names[j] = names[j - 1]; names[j - 1] = t;
        }
    if (n) {
        add_s(b, "Here:");
        for (int i = 0; i < n; i++) { add_s(b, " "); add_s(b, names[i]); }
        add_s(b, "\n");
    }
}

static struct player *new_player(int fd) {
    for (int i = 0; i < MAXP; i++)
        if (!pool[i].used) {
            struct player *p = &pool[i];
            memset(p, 0, sizeof *p);
            p->used = 1;
            p->fd = fd;
            struct player **end = &players;   /* append: the list keeps arrival order */
            while (*end) end = &(*end)->next;
            *end = p;
            return p;
        }
    return NULL;
}

static void drop(struct player *p) {
    for (struct player **q = &players; *q; q = &(*q)->next)
        if (*q == p) { *q = p->next; break; }
    p->used = 0;
    kept_changed(p, DROPPED);
    close(p->fd);
}

static int valid_name(const char *s) {
    int n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
              (s[n] >= '0' && s[n] <= '9')))
            return 0;
    if (n == 0 || n >= NAMELEN) return 0;
    for (struct player *q = players; q; q = q->next)
        if (q->name[0] && strcmp(q->name, s) == 0) return 0;
    return 1;
}

static int find_room(const char *s) {
    for (int r = 0; r < NROOMS; r++)
        if (strcmp(rooms[r].name, s) == 0) return r;
    return -1;
}

/* the `overflow` command: recursion until the stack is gone (volatile: a real frame each) */
static int deep(int n) {
    volatile char pad[1024];
    pad[0] = (char)n;
    if (pad[0] == 1 && n < 0) return 0;   /* never: it tells the compiler it may end */
    return deep(n + 1) + pad[0];
}

/* returns 0 when the player is gone */
static int command(struct player *p, char *line) {
    struct buf b = {.n = 0};
    if (!p->name[0]) {
        if (!valid_name(line)) {
            say_to(p, "Names are letters and digits, at most 15, not taken. "
                      "What is your name?\n> ");
            return 1;
        }
        strcpy(p->name, line);
        kept_changed(p, LOGGED_IN);
        logline("login: ", -1, p->name);
        add_s(&b, "Hello ");
        add_s(&b, p->name);
        add_s(&b, ".\n");
        look(p, &b);
        add_s(&b, "> ");
        flush(p->fd, &b);
        room_says(p->room, p, p->name, " arrives.", "");
        return 1;
    }
    char *arg = strchr(line, ' ');
    if (arg) *arg++ = 0; else arg = line + strlen(line);
    if (!line[0]) {
        say_to(p, "> ");
    } else if (!strcmp(line, "look")) {
        look(p, &b);
        add_s(&b, "> ");
        flush(p->fd, &b);
    } else if (!strcmp(line, "say")) {
        room_says(p->room, p, p->name, " says: ", arg);
        add_s(&b, "You say: ");
        add_s(&b, arg);
        add_s(&b, "\n> ");
        flush(p->fd, &b);
    } else if (!strcmp(line, "who")) {
        struct player *list[MAXP];
        int n = 0;
        for (struct player *q = players; q; q = q->next)
            if (q->name[0]) list[n++] = q;
        for (int i = 1; i < n; i++)
            for (int j = i; j > 0 && strcmp(list[j - 1]->name, list[j]->name) > 0; j--) {
                struct player *t = list[j]; list[j] = list[j - 1]; list[j - 1] = t;
            }
        add_s(&b, "Players:");
        for (int i = 0; i < n; i++) {
            add_s(&b, " ");
            add_s(&b, list[i]->name);
            add_s(&b, " (");
            add_s(&b, rooms[list[i]->room].name);
            add_s(&b, ")");
        }
        add_s(&b, "\n> ");
        flush(p->fd, &b);
    } else if (!strcmp(line, "go")) {
        int r = find_room(arg);
        if (r < 0) {
            add_s(&b, "There is no room called '");
            add_s(&b, arg);
            add_s(&b, "'.\n> ");
        } else if (r == p->room) {
            add_s(&b, "You are in the ");
            add_s(&b, arg);
            add_s(&b, " already.\n> ");
        } else {
            char where[32] = "";
            strcat(strcat(where, rooms[r].name), ".");
            room_says(p->room, p, p->name, " leaves for the ", where);
            p->room = r;
            kept_changed(p, MOVED);
            room_says(p->room, p, p->name, " arrives.", "");
            add_s(&b, "You go to the ");
            add_s(&b, rooms[r].name);
            add_s(&b, ".\n");
            look(p, &b);
            add_s(&b, "> ");
        }
        flush(p->fd, &b);
    } else if (!strcmp(line, "quit")) {
        say_to(p, "Goodbye.\n");
        room_says(p->room, p, p->name, " has left the world.", "");
        logline("quit: ", -1, p->name);
        drop(p);
        return 0;
    } else if (!strcmp(line, "copyover")) {
        copyover("The world shimmers as it is rebuilt...\n");
        say_to(p, "The copyover failed; the world goes on as it was.\n> ");
    } else if (!strcmp(line, "crash")) {
        logline("crash: ", -1, "writing through a NULL pointer");
        *nowhere = 42;
    } else if (!strcmp(line, "overflow")) {
        logline("overflow: ", -1, "recursing until the stack runs out");
        return deep(0);
    } else if (!strcmp(line, "tangle")) {   /* for the tests: the crash of a corrupt list */
        struct player *last = players;
        while (last->next) last = last->next;
        last->next = players;   /* a cycle: a naive copyover would write players forever */
        logline("tangle: ", -1, "the player list is now a cycle");
        *nowhere = 42;
    } else if (!strcmp(line, "shutdown")) {
        everyone("The world ends.\n");
        logline("shutdown", -1, "");
        while (players) drop(players);
        exit(0);
    } else {
        add_s(&b, "Unknown command '");
        add_s(&b, line);
        add_s(&b, "'. Commands: look, say TEXT, who, go ROOM, quit, copyover, crash.\n> ");
        flush(p->fd, &b);
    }
    return 1;
}

static void input(struct player *p) {
    ssize_t n = read(p->fd, p->in + p->inlen, sizeof p->in - 1 - (size_t)p->inlen);
    if (n < 0 && errno == EINTR) return;
    if (n <= 0) {   /* the client went away */
        if (p->name[0]) room_says(p->room, p, p->name, " has left the world.", "");
        logline("gone: ", -1, p->name[0] ? p->name : "-");
        drop(p);
        return;
    }
    p->inlen += (int)n;
    for (;;) {
        char *nl = memchr(p->in, '\n', (size_t)p->inlen);
        if (!nl) {
            if (p->inlen == (int)sizeof p->in - 1) p->inlen = 0;   /* an endless line */
            return;
        }
        *nl = 0;
        if (nl > p->in && nl[-1] == '\r') nl[-1] = 0;
        char line[256];
        strcpy(line, p->in);
        int used = (int)(nl - p->in) + 1;
        memmove(p->in, nl + 1, (size_t)(p->inlen - used));
        p->inlen -= used;
        if (!command(p, line)) return;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* start-up: where the listening socket and the players come from */

static struct player *restored(int fd, int id, int room, const char *name) {
    struct player *p = new_player(fd);
    if (!p) { close(fd); return NULL; }
    p->id = id;
    if (id >= next_id) next_id = id + 1;
    p->room = room >= 0 && room < NROOMS ? room : 0;
    if (name && strcmp(name, "-") != 0 && strlen(name) < NAMELEN) strcpy(p->name, name);
    return p;
}

static void welcome_back(void) {
    for (struct player *p = players; p; p = p->next) {
        struct buf b = {.n = 0};
        if (p->name[0]) {
            add_s(&b, "The world settles again. You are in the ");
            add_s(&b, rooms[p->room].name);
            add_s(&b, ".\n> ");
        } else {
            add_s(&b, "The world settles again. What is your name?\n> ");
        }
        flush(p->fd, &b);
    }
}

static int read_file(const char *path, char *out, int size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int n = 0;
    ssize_t r;
    while (n < size - 1 && (r = read(fd, out + n, (size_t)(size - 1 - n))) > 0) n += (int)r;
    close(fd);
    out[n] = 0;
    return n;
}

static void from_copyover(const char *path) {
    static char text[MAXP * 64 + 128];
    if (read_file(path, text, sizeof text) < 0) {
        logline("cannot read the copyover file; starting empty", -1, "");
        return;
    }
    unlink(path);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        int fd, id, room;
        char name[NAMELEN + 1];
        if (!strncmp(line, "listen ", 7)) listen_fd = atoi(line + 7);
        else if (!strncmp(line, "nextid ", 7)) next_id = atoi(line + 7);
        else if (sscanf(line, "player %d %d %d %16s", &fd, &id, &room, name) == 4)
            restored(fd, id, room, name);
    }
    welcome_back();
    int count = 0;
    for (struct player *p = players; p; p = p->next) count++;
    logline("copyover: the file gave back ", count, " players");
}

static int room_in_state(const char *name) {   /* the fd store keeps names, the file rooms */
    static char text[MAXP * 64 + 128];
    if (read_file(STATE_FILE, text, sizeof text) < 0) return 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int fd, id, room;
        char n[NAMELEN + 1];
        if (sscanf(line, "player %d %d %d %16s", &fd, &id, &room, n) == 4 && !strcmp(n, name))
            return room;
    }
    return 0;
}

static int socket_activation(void) {
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    if (!pid || !fds || atol(pid) != (long)getpid()) return 0;
    int n = atoi(fds);
    const char *names = getenv("LISTEN_FDNAMES");
    for (int i = 0; i < n; i++) {
        int fd = 3 + i;
        char name[64] = "";
        if (names) {   /* the i-th of the colon-separated names */
            const char *s = names;
            for (int k = 0; k < i && s; k++) { s = strchr(s, ':'); if (s) s++; }
            if (s) {
                size_t len = strcspn(s, ":");
                if (len < sizeof name) { memcpy(name, s, len); name[len] = 0; }
            }
        }
        int on = 0;
        socklen_t len = sizeof on;
        if (!strncmp(name, "player-", 7)) {
            struct player *p = restored(fd, next_id, room_in_state(name + 7), name + 7);
            if (p) logline("from the fd store: ", -1, name);
        } else if (listen_fd < 0 && getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0
                   && on) {
            listen_fd = fd;
        }
    }
    /* as sd_listen_fds(1): a copyover or a child must not take these for its own */
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    logline("socket activation: ", n, " fds");
    return 1;
}

static void from_watcher(int sock) {
    char msg[128];
    int fd;
    while (recv_fd(sock, msg, sizeof msg, &fd) > 0) {
        int id, room;
        char name[NAMELEN + 1];
        if (!strcmp(msg, "end")) break;
        if (!strcmp(msg, "listen")) listen_fd = fd;
        else if (sscanf(msg, "player %d %d %16s", &id, &room, name) == 3 && fd >= 0)
            restored(fd, id, room, name);
        else if (fd >= 0) close(fd);
    }
    if (players) welcome_back();
}

static int bind_port(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);   /* not CLOEXEC: it follows the copyover */
    int on = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 16) < 0) {
        logline("cannot listen on port ", port, "");
        exit(1);
    }
    return s;
}

static void usage(void) {
    static const char u[] = "usage: mud [--forkcore] PORT | mud --watched FD\n";
    put(2, u, (int)sizeof u - 1);
    exit(2);
}

int main(int argc, char **argv) {
    const char *copyover_file = NULL;
    int port = -1, argn = 0;
    self_argv[argn++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--forkcore")) { forkcore = 1; self_argv[argn++] = argv[i]; }
        else if (!strcmp(argv[i], "--watched") && i + 1 < argc) {
            watcher_fd = atoi(argv[++i]);
            self_argv[argn++] = argv[i - 1];
            self_argv[argn++] = argv[i];
        } else if (!strcmp(argv[i], "--copyover") && i + 1 < argc) copyover_file = argv[++i];
        else if (argv[i][0] >= '0' && argv[i][0] <= '9' && port < 0) {
            port = atoi(argv[i]);
            self_argv[argn++] = argv[i];
        } else usage();
    }
    log_fds("at start");
    /* the server's own files close on exec; only the sockets follow a copyover */
    events_fd = open("mud.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    /* exec keeps the signal mask: a copyover from the crash handler arrives with the fault's
     * signal blocked, and a second crash would then kill without the handler */
    sigset_t crashes;
    sigemptyset(&crashes);
    int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE};
    for (int i = 0; i < 4; i++) sigaddset(&crashes, sigs[i]);
    sigprocmask(SIG_UNBLOCK, &crashes, NULL);
    signal(SIGPIPE, SIG_IGN);

    fdstore = getenv("NOTIFY_SOCKET") != NULL;
    if (copyover_file) {
        from_copyover(copyover_file);
    } else if (watcher_fd >= 0) {
        from_watcher(watcher_fd);
        log_fds("after the watcher's handover");
    } else if (socket_activation()) {
        welcome_back();   /* the players the fd store gave back */
    } else if (port < 0) {
        usage();
    }
    if (listen_fd < 0) {
        if (port < 0) { logline("no listening socket and no port", -1, ""); return 1; }
        listen_fd = bind_port(port);
    }
    int count = 0;
    for (struct player *p = players; p; p = p->next) count++;
    logline("players: ", count, "");
    if (fdstore) save_players(STATE_FILE);   /* restored players are in the store already */
    if (!fdstore && watcher_fd < 0) {
        /* copyover on a crash; with a Watcher or the fd store, a crash just ends the process */
        /* its own stack: a crash that is a stack overflow has no stack left to run on.
         * execve forgets the alternate stack, so each start sets it again */
        static char altstack[64 * 1024];
        stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
        sigaltstack(&ss, NULL);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_crash;
        sa.sa_flags = SA_RESETHAND | SA_ONSTACK;   /* one-shot, and on_crash says so again */
        for (int i = 0; i < 4; i++) sigaction(sigs[i], &sa, NULL);
    }
    if (forkcore) {   /* ulimit -c unlimited: the forked child's core must not be cut */
        struct rlimit rl;
        if (getrlimit(RLIMIT_CORE, &rl) == 0) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_CORE, &rl);
        }
    }
    if (fdstore) sd_notify_fd("READY=1", -1);
    logline("ready", -1, "");

    for (;;) {
        struct pollfd pf[MAXP + 1];
        struct player *who[MAXP + 1];
        int n = 0;
        pf[n].fd = listen_fd;
        pf[n].events = POLLIN;
        who[n++] = NULL;
        for (struct player *p = players; p; p = p->next) {
            pf[n].fd = p->fd;
            pf[n].events = POLLIN;
            who[n++] = p;
        }
        if (poll(pf, (nfds_t)n, -1) < 0) {
            if (errno == EINTR) continue;
            logline("poll failed, errno ", errno, "");
            return 1;
        }
        for (int i = 1; i < n; i++)
            if (pf[i].revents) input(who[i]);
        if (pf[0].revents & POLLIN) {
            int fd = accept(listen_fd, NULL, NULL);   /* not CLOEXEC: it survives copyover */
            if (fd < 0) continue;
            struct player *p = new_player(fd);
            if (!p) {
                static const char full[] = "The world is full. Come back later.\n";
                put(fd, full, (int)sizeof full - 1);
                close(fd);
                continue;
            }
            p->id = next_id++;
            kept_changed(p, ADDED);
            say_to(p, "Welcome to the MUD. What is your name?\n> ");
        }
    }
}
