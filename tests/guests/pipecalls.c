/* pipecalls.c: pipe and pipe2 in one process, every line comparable with Linux: flags, fstat,
 * /proc/self/fd and fdinfo, FIONREAD, poll, F_GETPIPE_SZ/F_SETPIPE_SZ, packet mode, EOF, EAGAIN,
 * partial and atomic non-blocking writes, EPIPE + SIGPIPE (its siginfo), descriptions shared by
 * dup/F_DUPFD/dup2 (the pipe ends follow descriptions, not fds), readv across buffers, and the
 * calls a pipe refuses (lseek, pread, fsync, ftruncate, TCGETS, read of the write end), the
 * inode calls it takes (fchmod, futimens, fstatfs, flock), a new description of it through
 * /proc/self/fd/N, and EMFILE leaving no descriptor behind. Nothing here blocks. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>

#define T(x) do { errno = 0; long r_ = (long)(x); \
    printf("%-44s %ld %s\n", #x, r_, r_ < 0 ? strerror(errno) : ""); } while (0)

static volatile int sig_code = -1, sig_pid_ok = -1, sig_uid_ok = -1, sig_count = 0;

static void on_pipe(int s, siginfo_t *i, void *c)
{
    (void)s; (void)c;
    sig_count++;
    sig_code = i->si_code;
    sig_pid_ok = i->si_pid == getpid();
    sig_uid_ok = (uid_t)i->si_uid == getuid();
}

static char big[1 << 20];

static void stat_both(int *p)
{
    struct stat a, b, here;
    fstat(p[0], &a);
    fstat(p[1], &b);
    stat(".", &here);
    printf("fstat mode %o nlink %ld size %lld blksize %ld blocks %lld uid_ok %d gid_ok %d\n",
           a.st_mode, (long)a.st_nlink, (long long)a.st_size, (long)a.st_blksize,
           (long long)a.st_blocks, a.st_uid == getuid(), a.st_gid == getgid());
    printf("ends share ino %d dev %d; dev differs from the root's %d; times equal %d\n",
           a.st_ino == b.st_ino, a.st_dev == b.st_dev, a.st_dev != here.st_dev,
           a.st_mtime == a.st_ctime && a.st_atime == a.st_mtime);
    char path[64], link[64], want[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", p[1]);
    ssize_t n = readlink(path, link, sizeof link - 1);
    link[n < 0 ? 0 : n] = 0;
    snprintf(want, sizeof want, "pipe:[%lu]", (unsigned long)a.st_ino);
    printf("readlink is pipe:[st_ino] %d\n", strcmp(link, want) == 0);
    for (int e = 0; e < 2; e++) {
        snprintf(path, sizeof path, "/proc/self/fdinfo/%d", p[e]);
        FILE *f = fopen(path, "r");
        char line[128];
        while (f && fgets(line, sizeof line, f)) {
            unsigned long ino;
            if (!strncmp(line, "pos:", 4) || !strncmp(line, "flags:", 6))
                printf("fdinfo %d %s", e, line);
            else if (sscanf(line, "ino: %lu", &ino) == 1)
                printf("fdinfo %d ino is st_ino %d\n", e, ino == (unsigned long)a.st_ino);
        }
        if (f)
            fclose(f);
    }
}

static void polls(const char *what, int *p)
{
    struct pollfd q[2] = {{p[0], POLLIN | POLLOUT, 0}, {p[1], POLLIN | POLLOUT, 0}};
    int n = poll(q, 2, 0);
    printf("poll %-28s %d read %#x write %#x\n", what, n, q[0].revents, q[1].revents);
}

static int nread(int fd)
{
    int n = -1;
    ioctl(fd, FIONREAD, &n);
    return n;
}

static long fill(int fd, size_t chunk)
{
    long total = 0, r;
    while ((r = write(fd, big, chunk)) > 0)
        total += r;
    return total;
}

static void drain(int fd)
{
    while (read(fd, big, sizeof big) > 0)
        ;
}

int main(void)
{
    int p[2], q[2], fd;
    char buf[256];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 7 + 3);
    setvbuf(stdout, NULL, _IONBF, 0);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_pipe;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGPIPE, &sa, NULL);

    printf("-- flags\n");
    T(pipe2(p, O_SYNC));
    T(pipe2(p, O_ASYNC));
    T(pipe2(p, 0x80000000));
    T(pipe2(p, O_CLOEXEC | O_NONBLOCK | O_DIRECT));
    T(fcntl(p[0], F_GETFL));
    T(fcntl(p[1], F_GETFL));
    T(fcntl(p[0], F_GETFD));
    close(p[0]);
    close(p[1]);
    T(pipe(p));
    T(fcntl(p[0], F_GETFL));
    T(fcntl(p[1], F_GETFL));
    T(fcntl(p[1], F_GETFD));

    printf("-- what a pipe is\n");
    T(write(p[1], "hello, pipe", 11));
    stat_both(p);
    T(nread(p[0]));
    polls("5 bytes waiting", p);
    T(read(p[0], buf, 5));
    T(nread(p[0]));
    T(fcntl(p[0], F_GETPIPE_SZ));
    T(lseek(p[0], 0, SEEK_CUR));
    T(lseek(p[1], 0, SEEK_SET));
    T(pread(p[0], buf, 1, 0));
    T(pwrite(p[1], buf, 1, 0));
    T(fsync(p[1]));
    T(ftruncate(p[1], 0));
    T(ioctl(p[0], TCGETS, buf));
    T(read(p[1], buf, 1));
    T(write(p[0], buf, 1));
    T(read(p[0], buf, 0));
    T(read(p[0], buf, sizeof buf));
    printf("read back: %.6s\n", buf);

    printf("-- non-blocking: EAGAIN, partial and atomic writes\n");
    T(fcntl(p[0], F_SETFL, O_NONBLOCK));
    T(fcntl(p[1], F_SETFL, O_NONBLOCK));
    T(fcntl(p[1], F_GETFL));
    T(read(p[0], buf, 1));
    T(write(p[1], big, 100000));
    polls("full", p);
    T(write(p[1], big, 1));
    T(read(p[0], buf, 100));
    T(write(p[1], big, 200));   /* room left in the last page only after a page frees */
    drain(p[0]);
    T(fill(p[1], 4097));
    drain(p[0]);
    T(fill(p[1], 1000));
    T(read(p[0], big, 4096));
    T(write(p[1], big, 4096));
    T(write(p[1], big, 5000));
    T(nread(p[0]));
    drain(p[0]);
    polls("empty", p);

    printf("-- readv across buffers\n");
    T(write(p[1], "abcdefghij", 10));
    {
        char a[4], b[3], c[8];
        struct iovec iov[3] = {{a, 4}, {b, 3}, {c, 8}};
        T(readv(p[0], iov, 3));
        printf("readv got %.4s|%.3s|%.3s\n", a, b, c);
    }
    {
        struct iovec iov[2] = {{"one ", 4}, {"two", 3}};
        T(writev(p[1], iov, 2));
        T(read(p[0], buf, sizeof buf));
    }

    printf("-- F_SETPIPE_SZ\n");
    T(fcntl(p[1], F_SETPIPE_SZ, 5000));
    T(fcntl(p[0], F_GETPIPE_SZ));
    T(fill(p[1], 1));
    T(fcntl(p[1], F_SETPIPE_SZ, 4096));
    drain(p[0]);
    T(fcntl(p[1], F_SETPIPE_SZ, 0));
    T(fcntl(p[1], F_SETPIPE_SZ, 1 << 30));
    T(fcntl(p[1], F_SETPIPE_SZ, 1 << 20));
    T(fill(p[1], 65536));
    drain(p[0]);

    printf("-- packet mode (O_DIRECT)\n");
    T(fcntl(p[1], F_SETFL, O_NONBLOCK | O_DIRECT));
    T(fcntl(p[1], F_GETFL));
    T(write(p[1], "first", 5));
    T(write(p[1], "second", 6));
    T(read(p[0], buf, 3));
    T(read(p[0], buf, sizeof buf));
    T(read(p[0], buf, sizeof buf));
    T(fcntl(p[1], F_SETFL, O_NONBLOCK));

    printf("-- descriptions, not fds\n");
    T(fd = dup(p[0]));
    T(close(p[0]));
    T(write(p[1], "still read", 10));
    T(fcntl(fd, F_DUPFD, 20));
    T(close(fd));
    T(write(p[1], "x", 1));
    printf("no SIGPIPE yet: %d\n", sig_count);
    T(pipe(q));
    T(dup2(q[0], 20));          /* the pipe's last read end goes */
    polls("no reader", (int[]){20, p[1]});
    T(write(p[1], "y", 1));
    printf("SIGPIPE count %d code %d pid_ok %d uid_ok %d\n", sig_count, sig_code, sig_pid_ok,
           sig_uid_ok);
    T(write(p[1], "", 0));
    signal(SIGPIPE, SIG_IGN);
    T(write(p[1], "z", 1));

    printf("-- EOF once the last writer goes\n");
    T(write(q[1], "tail", 4));
    T(fd = dup(q[1]));
    T(close(q[1]));
    T(fcntl(20, F_SETFL, O_NONBLOCK));
    T(read(20, buf, 2));
    T(read(20, buf, 10));
    T(read(20, buf, 10));
    T(close(fd));
    polls("no writer", (int[]){20, 20});
    T(read(20, buf, 10));
    T(close(q[0]));
    T(read(20, buf, 10));
    T(close(20));
    T(close(p[1]));
    T(close(p[1]));

    printf("-- the pipe's inode and the calls around it\n");
    struct stat s;
    struct statfs sf;
    T(pipe(p));
    T(fchmod(p[1], 04751));
    fstat(p[0], &s);
    printf("mode after fchmod %o\n", s.st_mode);
    {
        struct timespec ts[2] = {{100, 5}, {200, 7}};
        T(futimens(p[0], ts));
        fstat(p[1], &s);
        printf("times %ld.%ld %ld.%ld\n", (long)s.st_atime, s.st_atim.tv_nsec,
               (long)s.st_mtime, s.st_mtim.tv_nsec);
    }
    T(fstatfs(p[0], &sf));
    printf("f_type %lx\n", (unsigned long)sf.f_type);
    T(flock(p[0], LOCK_EX));
    T(mmap(0, 4096, PROT_READ, MAP_PRIVATE, p[0], 0));
    T(posix_fadvise(p[0], 0, 0, POSIX_FADV_NORMAL));
    T(fallocate(p[1], 0, 0, 10));
    T(sync_file_range(p[1], 0, 0, 0));
    T(fdatasync(p[1]));
    T(fchdir(p[0]));
    T(lseek(p[0], 0, SEEK_DATA));
    T(fd = open("file", O_CREAT | O_RDWR | O_TRUNC, 0644));
    T(write(fd, "abcdef", 6));
    T(lseek(fd, 0, SEEK_SET));
    T(sendfile(p[1], fd, NULL, 6));
    T(read(p[0], buf, 64));
    T(write(p[1], "xyz", 3));
    T(sendfile(fd, p[0], NULL, 3));
    T(copy_file_range(p[0], NULL, fd, NULL, 3, 0));
    T(fcntl(fd, F_GETPIPE_SZ));
    T(fcntl(fd, F_SETPIPE_SZ, 4096));
    T(close(fd));
    T(unlink("file"));

    printf("-- /proc/self/fd/N: new descriptions of the same pipe\n");
    snprintf(buf, sizeof buf, "/proc/self/fd/%d", p[1]);
    T(q[0] = open(buf, O_RDONLY));
    T(fcntl(q[0], F_GETFL));
    T(read(q[0], buf, 64));
    snprintf(buf, sizeof buf, "/proc/self/fd/%d", p[0]);
    T(q[1] = open(buf, O_RDWR | O_NONBLOCK));
    T(fcntl(q[1], F_GETFL));
    T(write(q[1], "hi", 2));
    T(read(q[1], buf, 10));
    T(close(p[0]));
    T(close(q[0]));
    T(write(p[1], "still", 5));  /* q[1] reads too */
    T(close(q[1]));
    T(write(p[1], "gone", 4));

    printf("-- EMFILE\n");
    {
        struct rlimit rl = {p[1] + 2, p[1] + 2};
        T(setrlimit(RLIMIT_NOFILE, &rl));
        q[0] = q[1] = -1;
        T(pipe(q));
        printf("q %d %d\n", q[0], q[1]);
        T(close(q[1]));
        T(pipe(q));                 /* one free descriptor: EMFILE, and it stays free */
        T(fd = dup(0));
        T(close(fd));
        T(close(p[1]));
        T(close(q[0]));
        T(pipe(q));
        printf("q %d %d\n", q[0], q[1]);
    }
    return 0;
}
