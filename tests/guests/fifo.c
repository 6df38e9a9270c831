/* fifo.c: mknod (FIFOs, regular files, sockets; devices refused to an ordinary user) and
 * named pipes used by one process (both ends here, non-blocking reads, EOF, ENXIO, EPIPE and
 * SIGPIPE, a full pipe). Run in an empty directory as an ordinary user: nothing here may
 * block. With argument "deadlock" it tries what would wait forever with one process. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static void show(const char *what, long r)
{
    printf("%-32s %ld %s\n", what, r, r < 0 ? strerror(errno) : "");
}

static long mk(const char *path, unsigned mode, unsigned long dev)
{
    errno = 0;
    return syscall(SYS_mknodat, AT_FDCWD, path, mode, dev);
}

static void st(const char *path)
{
    struct stat s;
    errno = 0;
    long r = lstat(path, &s);
    printf("  stat %-25s %ld mode %o size %lld %s\n", path, r, r ? 0 : s.st_mode,
           r ? 0 : (long long)s.st_size, r ? strerror(errno) : "");
}

static volatile int pipes;
static void on_pipe(int sig) { pipes++; }

int main(int argc, char **argv)
{
    char buf[128];
    long r;
    if (argc > 1 && !strcmp(argv[1], "deadlock")) {
        mk("q", S_IFIFO | 0600, 0);
        errno = 0; show("blocking open for reading", open("q", O_RDONLY));
        errno = 0; show("blocking open for writing", open("q", O_WRONLY));
        int rw = open("q", O_RDWR);
        errno = 0; show("read of an empty FIFO", read(rw, buf, 1));
        return 0;
    }
    show("mknod fifo", mk("p", S_IFIFO | 0666, 0));
    st("p");
    errno = 0; show("mkfifo", mkfifo("p2", 0600));
    st("p2");
    show("mknod fifo again", mk("p", S_IFIFO | 0666, 0));
    show("mknod regular", mk("reg", S_IFREG | 0640, 0));
    st("reg");
    show("mknod type 0", mk("reg0", 0600, 0));
    st("reg0");
    show("mknod char device", mk("chr", S_IFCHR | 0666, makedev(1, 3)));
    show("mknod block device", mk("blk", S_IFBLK | 0666, makedev(8, 0)));
    show("mknod char over a file", mk("reg", S_IFCHR | 0666, makedev(1, 3)));
    show("mknod directory", mk("dir", S_IFDIR | 0755, 0));
    show("mknod bad type", mk("bad", 0170000 | 0644, 0));
    show("mknod socket", mk("sock", S_IFSOCK | 0600, 0));
    st("sock");
    errno = 0; show("open a socket file", open("sock", O_RDONLY));
    show("mknod in a missing dir", mk("missing/x", S_IFIFO | 0600, 0));
    errno = 0; show("mknod (old call)", syscall(SYS_mknod, "p3", S_IFIFO | 0644, 0));
    st("p3");

    errno = 0; show("write end, no reader", open("p2", O_WRONLY | O_NONBLOCK));
    int rd = open("p", O_RDONLY | O_NONBLOCK);
    show("read end, non-blocking", rd >= 0 ? 0 : rd);
    errno = 0; show("read, no writer (EOF)", read(rd, buf, sizeof buf));
    int wr = open("p", O_WRONLY | O_NONBLOCK);
    show("write end, reader there", wr >= 0 ? 0 : wr);
    show("  F_GETFL", fcntl(wr, F_GETFL));
    show("write", write(wr, "hello", 5));
    memset(buf, 0, sizeof buf);
    show("read", read(rd, buf, sizeof buf));
    printf("  = [%s]\n", buf);
    errno = 0; show("read, empty, writer there", read(rd, buf, sizeof buf));
    errno = 0; show("lseek", lseek(rd, 0, SEEK_SET));
    errno = 0; show("pread", pread(rd, buf, 1, 0));
    struct stat s;
    fstat(wr, &s);
    printf("  fstat mode %o\n", s.st_mode);
    int w2 = open("p", O_WRONLY);
    show("blocking open, reader there", w2 >= 0 ? 0 : w2);
    show("blocking write", write(w2, "xyz", 3));
    close(w2);
    close(wr);
    memset(buf, 0, sizeof buf);
    show("read after writers closed", read(rd, buf, sizeof buf));
    printf("  = [%s]\n", buf);
    show("read again (EOF)", read(rd, buf, sizeof buf));
    close(rd);

    int rw = open("p", O_RDWR);
    show("O_RDWR open", rw >= 0 ? 0 : rw);
    int r2 = open("p", O_RDONLY);
    show("blocking read open, writer there", r2 >= 0 ? 0 : r2);
    show("write", write(rw, "both ends", 9));
    memset(buf, 0, sizeof buf);
    show("read from the other fd", read(r2, buf, sizeof buf));
    printf("  = [%s]\n", buf);
    fcntl(rw, F_SETFL, O_NONBLOCK);
    long total = 0;
    char chunk[4096];
    memset(chunk, 'z', sizeof chunk);
    while ((r = write(rw, chunk, sizeof chunk)) > 0)
        total += r;
    printf("filled the pipe with %ld bytes: %s\n", total, strerror(errno));
    errno = 0; show("one more byte", write(rw, "x", 1));
    close(r2);
    close(rw);

    rd = open("p2", O_RDONLY | O_NONBLOCK);
    wr = open("p2", O_WRONLY | O_NONBLOCK);
    close(rd);
    signal(SIGPIPE, SIG_IGN);
    errno = 0; show("write, no reader, ignored", write(wr, "x", 1));
    signal(SIGPIPE, on_pipe);
    errno = 0; show("write, no reader, caught", write(wr, "x", 1));
    printf("  SIGPIPE caught %d\n", pipes);
    close(wr);
    unlink("p");
    show("unlink fifo", access("p", F_OK));
    return 0;
}
