/* eventfd.c: eventfd and eventfd2, every line comparable with Linux: the counter, semaphore
 * mode, O_NONBLOCK, close-on-exec, the 8-byte rule (read and write, readv and writev), the
 * value that cannot be written, poll's bits, fstat of the anonymous inode, /proc/self/fd and
 * fdinfo, the calls it refuses; then with a child process: a read that waits for the child's
 * write, a write that waits for room, the counter shared across fork, EINTR from a timer and
 * SA_RESTART. Prints nothing that depends on timing or on other eventfds of the host. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define EFD_SEMAPHORE 1
#define EFD_CLOEXEC O_CLOEXEC
#define EFD_NONBLOCK O_NONBLOCK

static void show(const char *what, long r)
{
    if (r < 0)
        printf("%-34s = -1 %s\n", what, strerror(errno));
    else
        printf("%-34s = %ld\n", what, r);
}
#define T(x) do { errno = 0; show(#x, (long)(x)); } while (0)

static int efd(unsigned long init, int flags) { return syscall(SYS_eventfd2, init, flags); }

static uint64_t v;
static long rd(int fd) { v = 0; return read(fd, &v, 8); }
static long wr(int fd, uint64_t x) { return write(fd, &x, 8); }

static void revents(const char *what, int fd)
{
    struct pollfd q = {fd, POLLIN | POLLOUT | POLLPRI, 0};
    poll(&q, 1, 0);
    printf("  poll %s: %#x\n", what, q.revents);
}

static void fdinfo(int fd, ino_t ino)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "r");
    unsigned long n;
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "ino: %lu", &n) == 1)
            printf("  fdinfo ino is st_ino %d\n", n == (unsigned long)ino);
        else if (sscanf(line, "eventfd-id: %lu", &n) == 1)
            printf("  fdinfo has an eventfd-id\n");
        else if (strncmp(line, "mnt_id:", 7))
            printf("  fdinfo %s", line);
    }
    if (f)
        fclose(f);
}

static void basics(void)
{
    int fd = efd(3, EFD_NONBLOCK | EFD_CLOEXEC);
    printf("eventfd(3, NONBLOCK|CLOEXEC) is fd %d\n", fd);
    T(fcntl(fd, F_GETFL));
    T(fcntl(fd, F_GETFD));
    struct stat st, st2;
    fstat(fd, &st);
    printf("  fstat mode %o nlink %lu uid %d gid %d size %ld blocks %ld blksize %ld rdev %lu\n",
           st.st_mode, (unsigned long)st.st_nlink, st.st_uid, st.st_gid, (long)st.st_size,
           (long)st.st_blocks, (long)st.st_blksize, (unsigned long)st.st_rdev);
    printf("  S_ISREG %d S_ISFIFO %d S_ISCHR %d\n", S_ISREG(st.st_mode), S_ISFIFO(st.st_mode),
           S_ISCHR(st.st_mode));
    int other = efd(0, 0);
    fstat(other, &st2);
    printf("  another eventfd: same inode %d, same device %d, same times %d\n",
           st.st_ino == st2.st_ino, st.st_dev == st2.st_dev, st.st_mtime == st2.st_mtime);
    char path[64], link[128];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, link, sizeof link - 1);
    link[n > 0 ? n : 0] = 0;
    printf("  readlink %s\n", link);
    T(open(path, O_RDWR));
    fdinfo(fd, st.st_ino);
    struct statfs sf;
    T(fstatfs(fd, &sf));
    printf("  f_type %#lx\n", (unsigned long)sf.f_type);
    revents("count 3", fd);

    /* the 8-byte rule, the counter */
    char b[16];
    T(read(fd, b, 7));
    T(rd(fd));
    printf("  value %lu\n", (unsigned long)v);
    T(rd(fd));
    revents("count 0", fd);
    T(write(fd, b, 4));
    T(wr(fd, 0xffffffffffffffffULL));
    T(wr(fd, 0));
    T(wr(fd, 0xfffffffffffffffeULL));
    revents("count max-1", fd);
    T(wr(fd, 1));
    T(wr(fd, 0));
    T(rd(fd));
    printf("  value %#lx\n", (unsigned long)v);
    T(wr(fd, 5));
    T(wr(fd, 6));
    T(read(fd, b, 16));
    memcpy(&v, b, 8);
    printf("  value %lu\n", (unsigned long)v);
    uint64_t big[2] = {7, 100};
    T(write(fd, big, 16));  /* the first 8 bytes count */
    struct iovec iov[2] = {{b, 4}, {b + 4, 4}};
    T(readv(fd, iov, 2));
    memcpy(&v, b, 8);
    printf("  readv value %lu\n", (unsigned long)v);
    v = 9;
    memcpy(b, &v, 8);
    T(writev(fd, iov, 2));
    struct iovec one[2] = {{b, 8}, {b, 8}};
    T(writev(fd, one, 2));
    T(rd(fd));
    printf("  value %lu\n", (unsigned long)v);
    struct iovec small[2] = {{b, 2}, {b + 2, 2}};
    T(readv(fd, small, 2));

    /* calls it answers its own way */
    T(lseek(fd, 0, SEEK_SET));
    T(lseek(fd, 10, SEEK_CUR));
    T(lseek(fd, 0, 9));
    T(pread(fd, b, 8, 0));
    T(pwrite(fd, b, 8, 0));
    int arg = 0;
    T(ioctl(fd, FIONREAD, &arg));
    T(fsync(fd));
    T(ftruncate(fd, 0));
    T(fcntl(fd, F_GETPIPE_SZ));
    T(flock(fd, LOCK_EX | LOCK_NB));
    T(flock(fd, LOCK_UN));
    arg = 0;
    T(ioctl(fd, FIONBIO, &arg));
    T(fcntl(fd, F_GETFL));
    arg = 1;
    T(ioctl(fd, FIONBIO, &arg));
    T(fcntl(fd, F_GETFL));

    /* flags */
    T(efd(0, 0x10));
    T(efd(0, O_RDWR));
    T(efd(0x100000005UL, 0));  /* initval is an unsigned int */
    T(rd(3 + 2));
    printf("  value %lu\n", (unsigned long)v);
    T(syscall(SYS_eventfd, 4));
    T(fcntl(6, F_GETFL));
    T(fcntl(6, F_GETFD));
    int s = efd(2, EFD_SEMAPHORE | EFD_NONBLOCK);
    fstat(s, &st2);
    fdinfo(s, st2.st_ino);
    T(rd(s));
    printf("  value %lu\n", (unsigned long)v);
    T(wr(s, 3));
    T(rd(s));
    printf("  value %lu\n", (unsigned long)v);
    revents("semaphore at 3", s);
    close(s);
    close(6);
    close(5);
    close(other);
    close(fd);
}

static volatile sig_atomic_t got;
static void on_sig(int sig) { got = sig; }
static int go_fd;
static void on_go(int sig) { got = sig; write(go_fd, "g", 1); }

static void work(void)
{
    for (volatile long i = 0; i < 200000; i++)
        ;
}

static void between_processes(void)
{
    int fd = efd(0, 0), st;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {  /* the counter is the parent's: shared by fork */
        work();
        wr(fd, 41);
        wr(fd, 1);
        _exit(0);
    }
    /* a read that waits until the child writes: 41, or 42 if both writes came first */
    long r = rd(fd);
    printf("read that waits = %ld, value 41 or 42: %d\n", r, v == 41 || v == 42);
    waitpid(pid, &st, 0);
    if (v == 41)
        rd(fd);
    printf("  child status %d\n", WEXITSTATUS(st));
    revents("after both", fd);

    /* a write that waits for room: the child takes the counter */
    wr(fd, 0xfffffffffffffffdULL);
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        work();
        rd(fd);
        _exit(v == 0xfffffffffffffffdULL ? 0 : 1);
    }
    T(wr(fd, 7));
    waitpid(pid, &st, 0);
    printf("  child read the old count: %d\n", WIFEXITED(st) && WEXITSTATUS(st) == 0);
    T(rd(fd));
    printf("  value %lu\n", (unsigned long)v);

    /* a child's close does not touch the parent's counter; select sees the write */
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        work();
        wr(fd, 3);
        close(fd);
        _exit(0);
    }
    fd_set rfds;
    FD_ZERO(&rfds);
    FD_SET(fd, &rfds);
    T(select(fd + 1, &rfds, NULL, NULL, NULL));
    waitpid(pid, &st, 0);
    T(rd(fd));
    printf("  value %lu\n", (unsigned long)v);

    /* a timer's signal ends a read that waits: EINTR without SA_RESTART; with it, the read
     * goes on and takes what the child writes after the signal */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0}, {0, 50000}};
    setitimer(ITIMER_REAL, &it, NULL);
    T(rd(fd));
    printf("  handler ran %d\n", got == SIGALRM);
    int go[2];
    pipe(go);
    go_fd = go[1];
    sa.sa_handler = on_go;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    got = 0;
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        char c;
        close(go[1]);
        read(go[0], &c, 1);  /* until the parent's handler says go */
        wr(fd, 12);
        _exit(0);
    }
    close(go[0]);
    setitimer(ITIMER_REAL, &it, NULL);
    T(rd(fd));
    printf("  value %lu, handler ran %d\n", (unsigned long)v, got == SIGALRM);
    close(go[1]);
    waitpid(pid, &st, 0);
    close(fd);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1 && !strcmp(argv[1], "hang")) {  /* Linux waits forever: nothing can write */
        int fd = efd(0, 0);
        printf("read = %ld\n", rd(fd));
        return 0;
    }
    basics();
    between_processes();
    printf("EXIT-SUCCESS\n");
    return 0;
}
