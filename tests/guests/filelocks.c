/* filelocks.c: flock, POSIX and OFD record locks, and leases, within one process.
 * Every probe prints what it sees; nothing depends on the pid or the time. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#ifndef F_OFD_GETLK
#define F_OFD_GETLK 36
#define F_OFD_SETLK 37
#define F_OFD_SETLKW 38
#endif

static void show(const char *what, long r) {
    if (r < 0) printf("%s = -1 %s\n", what, strerror(errno));
    else printf("%s = %ld\n", what, r);
}

static int setlk(int fd, int cmd, short type, short whence, long start, long len) {
    struct flock fl = {.l_type = type, .l_whence = whence, .l_start = start, .l_len = len};
    return fcntl(fd, cmd, &fl);
}

static const char *tname(int t) {
    return t == F_RDLCK ? "F_RDLCK" : t == F_WRLCK ? "F_WRLCK" : t == F_UNLCK ? "F_UNLCK" : "?";
}

/* F_GETLK (or F_OFD_GETLK) for a write lock at [start, start+len) */
static void probe(const char *what, int fd, int cmd, long start, long len) {
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    if (fcntl(fd, cmd, &fl) < 0) { printf("%s: -1 %s\n", what, strerror(errno)); return; }
    if (fl.l_type == F_UNLCK) { printf("%s: F_UNLCK (start %ld len %ld kept)\n", what,
                                       (long)fl.l_start, (long)fl.l_len); return; }
    printf("%s: %s start %ld len %ld whence %d pid %s\n", what, tname(fl.l_type),
           (long)fl.l_start, (long)fl.l_len, fl.l_whence,
           fl.l_pid == -1 ? "-1" : fl.l_pid == getpid() ? "mine" : "other");
}

static volatile int sigio_count, lease_fd = -1;
static void on_sigio(int s) {
    (void)s;
    sigio_count++;
    if (lease_fd >= 0) {
        /* the holder gives way, as a lease holder should */
        printf("  SIGIO: release -> %d\n", fcntl(lease_fd, F_SETLEASE, F_UNLCK));
    }
}

static void flocks(void) {
    printf("-- flock\n");
    int a = open("locked.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
    int b = open("locked.txt", O_RDONLY);
    int c = dup(a);
    show("a LOCK_EX", flock(a, LOCK_EX));
    show("a LOCK_EX again", flock(a, LOCK_EX));
    show("c (dup of a) LOCK_EX|NB", flock(c, LOCK_EX | LOCK_NB));
    show("b LOCK_EX|NB", flock(b, LOCK_EX | LOCK_NB));
    show("b LOCK_SH|NB", flock(b, LOCK_SH | LOCK_NB));
    show("a LOCK_SH", flock(a, LOCK_SH));
    show("b LOCK_SH|NB", flock(b, LOCK_SH | LOCK_NB));
    show("a LOCK_EX|NB (conflicts, drops a's)", flock(a, LOCK_EX | LOCK_NB));
    show("b LOCK_EX|NB (a's is gone)", flock(b, LOCK_EX | LOCK_NB));
    show("a LOCK_SH|NB", flock(a, LOCK_SH | LOCK_NB));
    show("b LOCK_UN", flock(b, LOCK_UN));
    show("b LOCK_UN again", flock(b, LOCK_UN));
    show("a LOCK_EX|NB", flock(a, LOCK_EX | LOCK_NB));
    close(a);
    show("b LOCK_SH|NB (c still holds a's description)", flock(b, LOCK_SH | LOCK_NB));
    close(c);
    show("b LOCK_EX|NB (a's description closed)", flock(b, LOCK_EX | LOCK_NB));
    show("bad op 3", flock(b, 3));
    show("bad op 0", flock(b, 0));
    show("bad fd, bad op", flock(99, 3));
    show("bad fd", flock(99, LOCK_SH));
    show("LOCK_MAND", flock(b, 32 | LOCK_SH));
    int d = open(".", O_RDONLY | O_DIRECTORY);
    show("directory LOCK_EX", flock(d, LOCK_EX));
    int n1 = open("/dev/null", O_RDONLY), n2 = open("/dev/null", O_RDONLY);
    show("/dev/null LOCK_EX", flock(n1, LOCK_EX | LOCK_NB));
    show("/dev/null again LOCK_EX", flock(n2, LOCK_EX | LOCK_NB));
    close(n1); close(n2); close(d); close(b);
}

static void records(void) {
    printf("-- record locks\n");
    int a = open("records.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
    write(a, "0123456789abcdefghij", 20);
    int b = open("records.txt", O_RDWR);
    int r = open("records.txt", O_RDONLY);
    show("posix WR [0,10)", setlk(a, F_SETLK, F_WRLCK, SEEK_SET, 0, 10));
    probe("F_GETLK own process", a, F_GETLK, 0, 100);
    probe("F_OFD_GETLK b", b, F_OFD_GETLK, 5, 1);
    show("ofd b WR [5,6)", setlk(b, F_OFD_SETLK, F_WRLCK, SEEK_SET, 5, 1));
    show("ofd b RD [20,30)", setlk(b, F_OFD_SETLK, F_RDLCK, SEEK_SET, 20, 10));
    probe("F_GETLK at 25", a, F_GETLK, 25, 1);
    show("posix WR [25,26)", setlk(a, F_SETLK, F_WRLCK, SEEK_SET, 25, 1));
    show("posix RD [25,26)", setlk(a, F_SETLK, F_RDLCK, SEEK_SET, 25, 1));
    probe("F_OFD_GETLK b at 25 (own)", b, F_OFD_GETLK, 25, 1);
    probe("F_OFD_GETLK r at 25", r, F_OFD_GETLK, 25, 1);
    /* split and merge: the process's locks on [0,100) */
    show("posix WR [0,100)", setlk(a, F_SETLK, F_WRLCK, SEEK_SET, 0, 100));
    show("ofd r RD [50,60)", setlk(r, F_OFD_SETLK, F_RDLCK, SEEK_SET, 50, 10));
    show("ofd b unlock all", setlk(b, F_OFD_SETLK, F_UNLCK, SEEK_SET, 0, 0));
    probe("  probe 55 from b", b, F_OFD_GETLK, 55, 1);
    show("ofd r unlock all", setlk(r, F_OFD_SETLK, F_UNLCK, SEEK_SET, 0, 0));
    show("posix WR [0,100)", setlk(a, F_SETLK, F_WRLCK, SEEK_SET, 0, 100));
    show("posix unlock [40,50)", setlk(a, F_SETLK, F_UNLCK, SEEK_SET, 40, 10));
    for (long at = 0; at < 110; at += 15) {
        char what[64];
        snprintf(what, sizeof what, "  probe %ld", at);
        probe(what, b, F_OFD_GETLK, at, 1);
    }
    show("posix RD [45,47) in the hole", setlk(a, F_SETLK, F_RDLCK, SEEK_SET, 45, 2));
    probe("  probe 46", b, F_OFD_GETLK, 46, 1);
    probe("  probe 48", b, F_OFD_GETLK, 48, 1);
    show("posix WR [40,50) fills it", setlk(a, F_SETLK, F_WRLCK, SEEK_SET, 40, 10));
    probe("  probe 0 (merged)", b, F_OFD_GETLK, 0, 1);
    show("posix RD from SEEK_END -5, len 0", setlk(a, F_SETLK, F_RDLCK, SEEK_END, -5, 0));
    probe("  probe 1000", b, F_OFD_GETLK, 1000, 1);
    lseek(a, 10, SEEK_SET);
    show("posix unlock SEEK_CUR len -5", setlk(a, F_SETLK, F_UNLCK, SEEK_CUR, 0, -5));
    probe("  probe 7", b, F_OFD_GETLK, 7, 1);
    probe("  probe 4", b, F_OFD_GETLK, 4, 1);
    /* errors */
    show("start < 0", setlk(a, F_SETLK, F_RDLCK, SEEK_SET, -1, 5));
    show("len < 0 before 0", setlk(a, F_SETLK, F_RDLCK, SEEK_SET, 2, -5));
    show("whence 7", setlk(a, F_SETLK, F_RDLCK, 7, 0, 5));
    show("type 9", setlk(a, F_SETLK, 9, SEEK_SET, 0, 5));
    struct flock g = {.l_type = F_UNLCK, .l_whence = SEEK_SET};
    show("F_GETLK with F_UNLCK", fcntl(a, F_GETLK, &g));
    show("WR on read-only fd", setlk(r, F_SETLK, F_WRLCK, SEEK_SET, 0, 1));
    show("unlock on read-only fd", setlk(r, F_SETLK, F_UNLCK, SEEK_SET, 0, 1));
    struct flock p = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_pid = 1};
    show("OFD with l_pid", fcntl(b, F_OFD_SETLK, &p));
    show("OFD GETLK with l_pid", fcntl(b, F_OFD_GETLK, &p));
    show("F_GETLK bad pointer", fcntl(a, F_GETLK, (void *)8));
    /* closing ANY descriptor of the file drops the process's POSIX locks */
    show("posix WR [0,100)", setlk(a, F_SETLK, F_WRLCK, SEEK_SET, 0, 100));
    show("ofd b RD [500,501) before the close", setlk(b, F_OFD_SETLK, F_RDLCK, SEEK_SET, 500, 1));
    probe("probe 500 from r before the close", r, F_OFD_GETLK, 500, 1);
    int other = open("records.txt", O_RDONLY);
    close(other);
    probe("after closing another fd, probe 0", b, F_OFD_GETLK, 0, 1);
    probe("b's OFD lock stays, probe 500 from r", r, F_OFD_GETLK, 500, 1);
    int bd = dup(b);
    close(b);
    probe("b closed, dup open: probe 500", r, F_OFD_GETLK, 500, 1);
    close(bd);
    probe("b's description closed: probe 500", r, F_OFD_GETLK, 500, 1);
    close(a); close(r);
}

static void leases(void) {
    printf("-- leases\n");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigio;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGIO, &sa, NULL);
    int w0 = open("lease.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int r = open("lease.txt", O_RDONLY);
    show("RDLCK while a writer is open", fcntl(r, F_SETLEASE, F_RDLCK));
    close(w0);
    show("GETLEASE none", fcntl(r, F_GETLEASE));
    show("UNLCK with none", fcntl(r, F_SETLEASE, F_UNLCK));
    show("RDLCK", fcntl(r, F_SETLEASE, F_RDLCK));
    show("GETLEASE", fcntl(r, F_GETLEASE));
    int r2 = open("lease.txt", O_RDONLY);
    show("a reader opens: fd ok", r2 >= 0);
    show("r2 RDLCK too", fcntl(r2, F_SETLEASE, F_RDLCK));
    show("r2 WRLCK", fcntl(r2, F_SETLEASE, F_WRLCK));
    show("r2 UNLCK", fcntl(r2, F_SETLEASE, F_UNLCK));
    close(r2);
    show("a writer opens O_NONBLOCK", open("lease.txt", O_WRONLY | O_NONBLOCK));
    printf("  SIGIO seen %d\n", sigio_count);
    show("GETLEASE while breaking", fcntl(r, F_GETLEASE));
    show("UNLCK", fcntl(r, F_SETLEASE, F_UNLCK));
    int w = open("lease.txt", O_WRONLY);
    show("then a writer opens: fd ok", w >= 0);
    show("WRLCK with a writer open", fcntl(r, F_SETLEASE, F_WRLCK));
    close(w);
    show("WRLCK alone (read-only fd)", fcntl(r, F_SETLEASE, F_WRLCK));
    show("GETLEASE", fcntl(r, F_GETLEASE));
    lease_fd = r;
    int r3 = open("lease.txt", O_RDONLY);  /* blocks; the handler releases; restarted */
    show("a reader opens (handler releases): fd ok", r3 >= 0);
    printf("  SIGIO seen %d\n", sigio_count);
    show("GETLEASE after", fcntl(r, F_GETLEASE));
    close(r3);
    lease_fd = -1;
    show("bad type 7", fcntl(r, F_SETLEASE, 7));
    int d = open(".", O_RDONLY | O_DIRECTORY);
    show("on a directory", fcntl(d, F_SETLEASE, F_RDLCK));
    int n = open("/dev/null", O_RDONLY);
    show("on /dev/null", fcntl(n, F_SETLEASE, F_RDLCK));
    close(d); close(n); close(r);
}

/* vsnap only (Linux takes lease-break-time, 45 s, for real): a lease nobody gives up is
 * broken when the time is up; the clock moves by that much */
static void lease_timeout(void) {
    sigset_t io;
    sigemptyset(&io);
    sigaddset(&io, SIGIO);
    sigprocmask(SIG_BLOCK, &io, NULL);
    int w = open("slow.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
    show("WRLCK", fcntl(w, F_SETLEASE, F_WRLCK));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int r = open("slow.txt", O_RDONLY);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("reader open after %ld s: fd ok %d\n", (long)(t1.tv_sec - t0.tv_sec), r >= 0);
    show("GETLEASE (downgraded)", fcntl(w, F_GETLEASE));
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1 && strcmp(argv[1], "lease-timeout") == 0) { lease_timeout(); return 0; }
    if (argc > 1 && strcmp(argv[1], "deadlock") == 0) {
        int a = open("dead.txt", O_RDWR | O_CREAT, 0644), b = open("dead.txt", O_RDWR);
        flock(a, LOCK_EX);
        printf("blocking\n");
        show("b LOCK_EX", flock(b, LOCK_EX));
        return 0;
    }
    flocks();
    records();
    leases();
    printf("EXIT-SUCCESS\n");
    return 0;
}
