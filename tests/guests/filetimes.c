/* filetimes.c: utimensat, futimens, utimes, futimesat and utime as raw system calls, printed so
 * that a native run and a vsnap run print the same bytes: times the program sets itself are
 * printed as they are; times that come from a clock ("now") are printed as facts that hold on
 * either clock (later than 2020, equal to the other time, ctime not before mtime).
 * Runs in an empty directory. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#ifndef UTIME_NOW
#define UTIME_NOW ((1l << 30) - 1l)
#define UTIME_OMIT ((1l << 30) - 2l)
#endif
#define RECENT 1577836800  /* 2020-01-01: later than this is "now" on either clock */

struct kutimbuf { long actime, modtime; };

static long call(long r) { return r < 0 ? -errno : r; }

static long utimensat_(int dirfd, const char *path, const struct timespec *ts, int flags)
{
    return call(syscall(SYS_utimensat, dirfd, path, ts, flags));
}

static void show(const char *label, const char *path, int follow)
{
    struct stat st;
    int r = follow ? stat(path, &st) : lstat(path, &st);
    if (r != 0) { printf("%s: stat %s\n", label, strerror(errno)); return; }
    long long a = st.st_atim.tv_sec, m = st.st_mtim.tv_sec, c = st.st_ctim.tv_sec;
    printf("%-28s atime ", label);
    if (a > RECENT) printf("now"); else printf("%lld.%09ld", a, st.st_atim.tv_nsec);
    printf(" mtime ");
    if (m > RECENT) printf("now"); else printf("%lld.%09ld", m, st.st_mtim.tv_nsec);
    printf(" | a==m %d ctime>=mtime %d ctime-now %d\n",
           st.st_atim.tv_sec == st.st_mtim.tv_sec && st.st_atim.tv_nsec == st.st_mtim.tv_nsec,
           c > m || (c == m && st.st_ctim.tv_nsec >= st.st_mtim.tv_nsec), c > RECENT);
}

static void ts2(struct timespec *t, long as, long an, long ms, long mn)
{
    t[0].tv_sec = as; t[0].tv_nsec = an; t[1].tv_sec = ms; t[1].tv_nsec = mn;
}

int main(void)
{
    struct timespec t[2];
    int fd = open("f", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { perror("f"); return 1; }
    show("new file", "f", 1);
    if (write(fd, "hello\n", 6) != 6) { perror("write"); return 1; }

    ts2(t, 1000, 500, 2000, 600);
    printf("set both: %ld\n", utimensat_(AT_FDCWD, "f", t, 0));
    show("after set both", "f", 1);
    ts2(t, 0, UTIME_OMIT, 3000, 0);
    printf("omit atime: %ld\n", utimensat_(AT_FDCWD, "f", t, 0));
    show("after omit atime", "f", 1);
    ts2(t, 7, UTIME_NOW, 9, UTIME_OMIT);
    printf("now atime, omit mtime: %ld\n", utimensat_(AT_FDCWD, "f", t, 0));
    show("after now/omit", "f", 1);
    ts2(t, 0, UTIME_OMIT, 0, UTIME_OMIT);
    printf("both omit, missing path, bad flags: %ld\n",
           utimensat_(AT_FDCWD, "missing", t, 0x8000));
    ts2(t, 1, 1000000000, 2, 0);
    printf("nsec 1e9: %ld\n", utimensat_(AT_FDCWD, "f", t, 0));
    ts2(t, 1, 0, 2, -1);
    printf("nsec -1: %ld\n", utimensat_(AT_FDCWD, "f", t, 0));
    ts2(t, 1, 1000000000, 2, 0);
    printf("bad nsec, missing path: %ld\n", utimensat_(AT_FDCWD, "missing", t, 0));
    ts2(t, 1, 0, 2, 0);
    printf("bad flags: %ld\n", utimensat_(AT_FDCWD, "f", t, 0x8000));
    printf("bad pointer: %ld\n", utimensat_(AT_FDCWD, "f", (void *)16, 0));
    printf("NULL path, AT_FDCWD: %ld\n", utimensat_(AT_FDCWD, NULL, t, 0));

    ts2(t, 11, 1, 12, 2);
    printf("futimens: %ld\n", utimensat_(fd, NULL, t, 0));
    show("after futimens", "f", 1);
    printf("futimens with flags: %ld\n", utimensat_(fd, NULL, t, AT_SYMLINK_NOFOLLOW));
    printf("futimens bad fd: %ld\n", utimensat_(99, NULL, t, 0));
    ts2(t, 21, 0, 22, 0);
    printf("AT_EMPTY_PATH: %ld\n", utimensat_(fd, "", t, AT_EMPTY_PATH));
    show("after AT_EMPTY_PATH", "f", 1);
    printf("empty path without flag: %ld\n", utimensat_(fd, "", t, 0));

    /* a write moves mtime and keeps atime; ctime follows */
    if (pwrite(fd, "x", 1, 0) != 1) { perror("pwrite"); return 1; }
    show("after write", "f", 1);
    printf("NULL times: %ld\n", utimensat_(AT_FDCWD, "f", NULL, 0));
    show("after NULL times", "f", 1);
    ts2(t, 31, 0, 32, 0);
    utimensat_(AT_FDCWD, "f", t, 0);
    if (ftruncate(fd, 2) != 0) { perror("ftruncate"); return 1; }
    show("after ftruncate", "f", 1);
    utimensat_(AT_FDCWD, "f", t, 0);
    if (fchmod(fd, 0600) != 0) { perror("fchmod"); return 1; }
    show("after fchmod", "f", 1);

    /* symbolic links: the link itself with AT_SYMLINK_NOFOLLOW, else its target */
    if (symlink("f", "lnk") != 0) { perror("symlink"); return 1; }
    ts2(t, 41, 0, 42, 0);
    printf("nofollow: %ld\n", utimensat_(AT_FDCWD, "lnk", t, AT_SYMLINK_NOFOLLOW));
    show("link itself", "lnk", 0);
    show("its target", "f", 1);
    ts2(t, 51, 0, 52, 0);
    printf("follow: %ld\n", utimensat_(AT_FDCWD, "lnk", t, 0));
    show("target through link", "f", 1);

    /* a directory, by name and by descriptor */
    if (mkdir("d", 0755) != 0) { perror("mkdir"); return 1; }
    ts2(t, 61, 0, 62, 0);
    printf("dir: %ld\n", utimensat_(AT_FDCWD, "d", t, 0));
    show("dir", "d", 1);
    int dfd = open("d", O_RDONLY | O_DIRECTORY);
    ts2(t, 63, 0, 64, 0);
    printf("dir by fd: %ld\n", utimensat_(dfd, NULL, t, 0));
    show("dir by fd", "d", 1);
    if (close(open("d/g", O_WRONLY | O_CREAT, 0644)) != 0) { perror("d/g"); return 1; }
    show("dir after a new name", "d", 1);
    ts2(t, 65, 0, 66, 0);
    printf("relative to dirfd: %ld\n", utimensat_(dfd, "g", t, 0));
    show("d/g", "d/g", 1);

    /* the older calls: microseconds, then whole seconds */
    struct timeval tv[2] = {{71, 123}, {72, 999999}};
    printf("utimes: %ld\n", call(syscall(SYS_utimes, "f", tv)));
    show("after utimes", "f", 1);
    tv[1].tv_usec = 1000000;
    printf("utimes usec 1e6: %ld\n", call(syscall(SYS_utimes, "f", tv)));
    printf("utimes usec 1e6, missing: %ld\n", call(syscall(SYS_utimes, "missing", tv)));
    tv[1].tv_usec = -1;
    printf("utimes usec -1: %ld\n", call(syscall(SYS_utimes, "f", tv)));
    tv[0].tv_sec = 81; tv[0].tv_usec = 1; tv[1].tv_sec = 82; tv[1].tv_usec = 2;
    printf("futimesat: %ld\n", call(syscall(SYS_futimesat, dfd, "g", tv)));
    show("after futimesat", "d/g", 1);
    printf("futimesat NULL path: %ld\n", call(syscall(SYS_futimesat, dfd, NULL, tv)));
    show("dir after futimesat", "d", 1);
    struct kutimbuf ub = {91, 92};
    printf("utime: %ld\n", call(syscall(SYS_utime, "f", &ub)));
    show("after utime", "f", 1);
    printf("utime NULL: %ld\n", call(syscall(SYS_utime, "f", NULL)));
    show("after utime NULL", "f", 1);
    printf("utime missing: %ld\n", call(syscall(SYS_utime, "missing", &ub)));

    /* times before 1970 and far ahead */
    ts2(t, -86400, 5, 4102444800, 0);
    printf("1969 and 2100: %ld\n", utimensat_(AT_FDCWD, "f", t, 0));
    struct stat st;
    stat("f", &st);
    printf("1969 and 2100 read back: %lld %lld\n", (long long)st.st_atim.tv_sec,
           (long long)st.st_mtim.tv_sec);
    puts("EXIT-SUCCESS");
    return 0;
}
