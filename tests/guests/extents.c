/* extents.c: fallocate, SEEK_DATA/SEEK_HOLE, sendfile, copy_file_range, the sync calls,
 * fadvise64, readahead and the errors of statfs, as raw system calls, printed so that a native
 * run and a vsnap run on the same host file system print the same bytes. Runs in an empty
 * directory with stdout a pipe. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define KiB 1024L
#define MiB (1024L * 1024L)
#define FL_KEEP_SIZE 0x01
#define FL_PUNCH_HOLE 0x02
#define FL_COLLAPSE_RANGE 0x08
#define FL_ZERO_RANGE 0x10
#define FL_INSERT_RANGE 0x20
#define SEEK_DATA_ 3
#define SEEK_HOLE_ 4

static long call(long r) { return r < 0 ? -errno : r; }

static long falloc(int fd, int mode, long off, long len)
{
    return call(syscall(SYS_fallocate, fd, mode, off, len));
}

static long seek(int fd, long off, int whence) { return call(lseek(fd, off, whence)); }

static void extents(const char *label, int fd)
{
    struct stat st;
    fstat(fd, &st);
    printf("%-26s size %lld blocks %lld |", label, (long long)st.st_size,
           (long long)st.st_blocks);
    for (long pos = 0;;) {
        long data = seek(fd, pos, SEEK_DATA_);
        if (data < 0) { printf(" end %ld\n", data); break; }
        long hole = seek(fd, data, SEEK_HOLE_);
        printf(" data %ld..%ld", data, hole);
        pos = hole;
    }
}

static void fill(int fd, char c, long off, long len)
{
    char buf[4096];
    memset(buf, c, sizeof buf);
    for (long done = 0; done < len; done += sizeof buf)
        if (pwrite(fd, buf, sizeof buf, off + done) != sizeof buf) perror("pwrite");
}

static int zeros(int fd, long off, long len)
{
    char buf[4096];
    for (long done = 0; done < len; done += sizeof buf) {
        if (pread(fd, buf, sizeof buf, off + done) != sizeof buf) return -1;
        for (int i = 0; i < (int)sizeof buf; i++)
            if (buf[i]) return 0;
    }
    return 1;
}

static void mtime_moved(const char *label, int fd)
{
    struct stat st;
    fstat(fd, &st);
    printf("%s: mtime moved %d\n", label, st.st_mtim.tv_sec != 1000);
    struct timespec t[2] = {{1000, 0}, {1000, 0}};
    syscall(SYS_utimensat, fd, NULL, t, 0);
}

int main(void)
{
    int fd = open("sparse", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { perror("sparse"); return 1; }
    printf("empty SEEK_DATA 0: %ld, SEEK_HOLE 0: %ld\n", seek(fd, 0, SEEK_DATA_),
           seek(fd, 0, SEEK_HOLE_));
    fill(fd, 'a', 0, 64 * KiB);
    fill(fd, 'b', 1 * MiB, 64 * KiB);
    fill(fd, 'c', 4 * MiB, 64 * KiB);
    fsync(fd);  /* let the file system settle its extents (delayed allocation) */
    extents("written", fd);
    printf("SEEK_DATA past end: %ld, SEEK_HOLE past end: %ld, SEEK_DATA -1: %ld\n",
           seek(fd, 5 * MiB, SEEK_DATA_), seek(fd, 5 * MiB, SEEK_HOLE_),
           seek(fd, -1, SEEK_DATA_));
    printf("SEEK_DATA in a hole: %ld, offset now %ld\n", seek(fd, 100 * KiB, SEEK_DATA_),
           seek(fd, 0, SEEK_CUR));
    struct timespec t[2] = {{1000, 0}, {1000, 0}};
    syscall(SYS_utimensat, fd, NULL, t, 0);

    printf("punch: %ld\n", falloc(fd, FL_PUNCH_HOLE | FL_KEEP_SIZE, 1 * MiB, 64 * KiB));
    extents("after punch", fd);
    mtime_moved("punch", fd);
    printf("punched reads zeros: %d\n", zeros(fd, 1 * MiB, 64 * KiB));
    printf("punch partial block: %ld\n", falloc(fd, FL_PUNCH_HOLE | FL_KEEP_SIZE, 100, 200));
    char blk[512];
    if (pread(fd, blk, sizeof blk, 0) != sizeof blk) perror("pread");
    int zeroed = 1;
    for (int i = 100; i < 300; i++)
        zeroed &= blk[i] == 0;
    printf("partial punch: zeroed %d, around it kept %d %d\n", zeroed, blk[99] == 'a',
           blk[300] == 'a');
    printf("punch without KEEP_SIZE: %ld\n", falloc(fd, FL_PUNCH_HOLE, 0, 4096));
    printf("allocate past end: %ld\n", falloc(fd, 0, 6 * MiB, 64 * KiB));
    extents("after allocate", fd);
    mtime_moved("allocate", fd);
    printf("allocate KEEP_SIZE: %ld\n", falloc(fd, FL_KEEP_SIZE, 8 * MiB, 64 * KiB));
    extents("after KEEP_SIZE", fd);
    printf("zero range: %ld\n", falloc(fd, FL_ZERO_RANGE, 4 * MiB, 16 * KiB));
    printf("zeroed: %d, rest kept: %d\n", zeros(fd, 4 * MiB, 16 * KiB),
           zeros(fd, 4 * MiB + 16 * KiB, 16 * KiB));
    extents("after zero range", fd);
    printf("collapse unaligned: %ld\n", falloc(fd, FL_COLLAPSE_RANGE, 100, 4096));
    printf("collapse: %ld\n", falloc(fd, FL_COLLAPSE_RANGE, 1 * MiB, 1 * MiB));
    extents("after collapse", fd);
    printf("insert: %ld\n", falloc(fd, FL_INSERT_RANGE, 0, 64 * KiB));
    extents("after insert", fd);
    printf("mode 0x4: %ld, mode 0x100: %ld\n", falloc(fd, 0x4, 0, 4096),
           falloc(fd, 0x100, 0, 4096));
    printf("len 0: %ld, offset -1: %ld, bad fd: %ld\n", falloc(fd, 0, 0, 0),
           falloc(fd, 0, -1, 4096), falloc(99, 0, 0, 4096));
    int ro = open("sparse", O_RDONLY);
    printf("read-only: %ld\n", falloc(ro, 0, 0, 4096));
    printf("pipe (stdout): %ld\n", falloc(1, 0, 0, 4096));
    if (mkdir("d", 0755) != 0) perror("mkdir");
    int dfd = open("d", O_RDONLY | O_DIRECTORY);
    printf("directory: %ld\n", falloc(dfd, 0, 0, 4096));

    /* sendfile: with and without an offset pointer, to a file and to stdout */
    int src = open("src", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (write(src, "0123456789abcdefghij", 20) != 20) perror("write src");
    int dst = open("dst", O_RDWR | O_CREAT | O_TRUNC, 0644);
    off_t off = 5;
    long n = call(syscall(SYS_sendfile, dst, src, &off, 6));
    printf("sendfile with offset: %ld, offset now %lld, src offset %ld\n", n,
           (long long)off, seek(src, 0, SEEK_CUR));
    lseek(src, 2, SEEK_SET);
    n = call(syscall(SYS_sendfile, dst, src, NULL, 4));
    printf("sendfile without: %ld, src offset %ld, dst offset %ld\n", n,
           seek(src, 0, SEEK_CUR), seek(dst, 0, SEEK_CUR));
    off = 15;
    n = call(syscall(SYS_sendfile, dst, src, &off, 100));
    printf("sendfile past the end: %ld, offset %lld\n", n, (long long)off);
    off = 30;
    printf("sendfile at the end: %ld\n", call(syscall(SYS_sendfile, dst, src, &off, 10)));
    char buf[64] = {0};
    printf("dst holds %ld bytes: %s\n", (long)pread(dst, buf, sizeof buf - 1, 0), buf);
    fflush(stdout);
    off = 0;
    n = call(syscall(SYS_sendfile, 1, src, &off, 10));
    printf("\nsendfile to stdout: %ld\n", n);
    int app = open("app", O_WRONLY | O_CREAT | O_APPEND, 0644);
    printf("to O_APPEND: %ld\n", call(syscall(SYS_sendfile, app, src, NULL, 4)));
    printf("from write-only: %ld\n", call(syscall(SYS_sendfile, dst, app, NULL, 4)));
    printf("to read-only: %ld\n", call(syscall(SYS_sendfile, ro, src, NULL, 4)));
    printf("from a directory: %ld\n", call(syscall(SYS_sendfile, dst, dfd, NULL, 4)));
    off = -1;
    printf("negative offset: %ld\n", call(syscall(SYS_sendfile, dst, src, &off, 4)));

    /* copy_file_range */
    long long oin = 10, oout = 0;
    int cpy = open("cpy", O_RDWR | O_CREAT | O_TRUNC, 0644);
    n = call(syscall(SYS_copy_file_range, src, &oin, cpy, &oout, 5, 0));
    printf("copy_file_range: %ld, offsets %lld %lld, src offset %ld\n", n, (long long)oin,
           (long long)oout, seek(src, 0, SEEK_CUR));
    lseek(src, 0, SEEK_SET);
    n = call(syscall(SYS_copy_file_range, src, NULL, cpy, NULL, 3, 0));
    printf("without offsets: %ld, offsets now %ld %ld\n", n, seek(src, 0, SEEK_CUR),
           seek(cpy, 0, SEEK_CUR));
    memset(buf, 0, sizeof buf);
    printf("cpy holds %ld bytes: %s\n", (long)pread(cpy, buf, sizeof buf - 1, 0), buf);
    oin = 0;
    printf("flags: %ld\n", call(syscall(SYS_copy_file_range, src, &oin, cpy, NULL, 3, 1)));
    oin = 0, oout = 4;
    printf("overlap: %ld\n", call(syscall(SYS_copy_file_range, src, &oin, src, &oout, 8, 0)));
    oin = 0, oout = 40;
    printf("same file apart: %ld\n",
           call(syscall(SYS_copy_file_range, src, &oin, src, &oout, 8, 0)));
    printf("to O_APPEND: %ld\n", call(syscall(SYS_copy_file_range, src, NULL, app, NULL, 3, 0)));
    printf("to a pipe: %ld\n", call(syscall(SYS_copy_file_range, src, NULL, 1, NULL, 3, 0)));
    printf("from a directory: %ld\n",
           call(syscall(SYS_copy_file_range, dfd, NULL, cpy, NULL, 3, 0)));

    /* making it durable */
    printf("fsync %ld fdatasync %ld fsync dir %ld fsync pipe %ld fsync bad %ld\n",
           call(fsync(fd)), call(fdatasync(fd)), call(fsync(dfd)), call(fsync(1)),
           call(fsync(99)));
    sync();
    printf("syncfs %ld syncfs pipe %ld syncfs bad %ld\n", call(syscall(SYS_syncfs, fd)),
           call(syscall(SYS_syncfs, 1)), call(syscall(SYS_syncfs, 99)));
    printf("sync_file_range %ld, bad flags %ld, negative offset %ld, pipe %ld, dir %ld\n",
           call(syscall(SYS_sync_file_range, fd, 0L, 0L, 2)),
           call(syscall(SYS_sync_file_range, fd, 0L, 0L, 8)),
           call(syscall(SYS_sync_file_range, fd, -1L, 0L, 2)),
           call(syscall(SYS_sync_file_range, 1, 0L, 0L, 2)),
           call(syscall(SYS_sync_file_range, dfd, 0L, 0L, 2)));
    printf("fadvise %ld, advice 6 %ld, negative len %ld, pipe %ld, dir %ld, bad fd %ld\n",
           call(syscall(SYS_fadvise64, fd, 0L, 0L, 4)),
           call(syscall(SYS_fadvise64, fd, 0L, 0L, 6)),
           call(syscall(SYS_fadvise64, fd, 0L, -1L, 0)),
           call(syscall(SYS_fadvise64, 1, 0L, 0L, 0)),
           call(syscall(SYS_fadvise64, dfd, 0L, 0L, 0)),
           call(syscall(SYS_fadvise64, 99, 0L, 0L, 0)));
    printf("readahead %ld, write-only %ld, dir %ld, bad fd %ld\n",
           call(syscall(SYS_readahead, fd, 0L, 4096L)), call(syscall(SYS_readahead, app, 0L, 1L)),
           call(syscall(SYS_readahead, dfd, 0L, 1L)), call(syscall(SYS_readahead, 99, 0L, 1L)));

    char sfs[120];
    printf("statfs missing %ld, fstatfs bad fd %ld, statfs bad pointer %ld, statfs . %ld\n",
           call(syscall(SYS_statfs, "missing", sfs)), call(syscall(SYS_fstatfs, 99, sfs)),
           call(syscall(SYS_statfs, ".", (void *)16)), call(syscall(SYS_statfs, ".", sfs)));
    puts("EXIT-SUCCESS");
    return 0;
}
