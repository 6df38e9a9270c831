/* anonfiles.c: files without names (memfd_create, O_TMPFILE) and descriptors that only name
 * a file (O_PATH, also of a symbolic link itself). Prints results and errnos, never inode
 * numbers or absolute paths, so a native run in the same layout prints the same bytes.
 * Run in an empty directory. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef O_PATH
#define O_PATH 010000000
#endif
#ifndef O_TMPFILE
#define O_TMPFILE (020000000 | O_DIRECTORY)
#endif

static void show(const char *what, long r)
{
    printf("%-34s %ld %s\n", what, r, r < 0 ? strerror(errno) : "");
}

static long memfd(const char *name, unsigned flags)
{
    errno = 0;
    return syscall(SYS_memfd_create, name, flags);
}

static void st(const char *what, int fd)
{
    struct stat s;
    errno = 0;
    long r = fstat(fd, &s);
    printf("%-34s %ld mode %o nlink %lu size %lld %s\n", what, r, r ? 0 : s.st_mode,
           r ? 0 : (unsigned long)s.st_nlink, r ? 0 : (long long)s.st_size,
           r ? strerror(errno) : "");
}

static void listing(const char *when)
{
    DIR *d = opendir(".");
    struct dirent *e;
    char names[1024] = "";
    int n = 0;
    char *all[64];
    while ((e = readdir(d)) && n < 64)
        all[n++] = strdup(e->d_name);
    closedir(d);
    for (int i = 0; i < n; i++)        /* sorted: native order is the file system's */
        for (int j = i + 1; j < n; j++)
            if (strcmp(all[i], all[j]) > 0) { char *t = all[i]; all[i] = all[j]; all[j] = t; }
    for (int i = 0; i < n; i++) { strcat(names, all[i]); strcat(names, " "); }
    printf("listing %s: %s\n", when, names);
}

static void io(const char *what, int fd)
{
    char buf[64] = "";
    errno = 0;
    long w = write(fd, "abc", 3);
    printf("%-34s write %ld %s", what, w, w < 0 ? strerror(errno) : "");
    errno = 0;
    long r = pread(fd, buf, sizeof buf - 1, 0);
    printf(" pread %ld %s [%s]\n", r, r < 0 ? strerror(errno) : "", r > 0 ? buf : "");
}

int main(void)
{
    char buf[300];
    int fd, fd2;

    mkdir("w", 0755);  /* a directory of our own: the listing of / is vsnap's business */
    chdir("w");

    /* memfd_create */
    fd = memfd("buf", 1 /* MFD_CLOEXEC */);
    show("memfd_create", fd >= 0 ? 0 : fd);
    show("  F_GETFD", fcntl(fd, F_GETFD));
    show("  F_GETFL", fcntl(fd, F_GETFL));
    st("  fstat new", fd);
    show("  write", write(fd, "hello memfd", 11));
    show("  lseek", lseek(fd, 0, SEEK_SET));
    memset(buf, 0, sizeof buf);
    show("  read", read(fd, buf, sizeof buf));
    printf("  = [%s]\n", buf);
    show("  ftruncate", ftruncate(fd, 5000));
    st("  fstat grown", fd);
    char *map = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
    printf("  mmap: %.11s\n", map == MAP_FAILED ? "failed" : map);
    memset(buf, 'a', 249); buf[249] = 0;
    fd2 = memfd(buf, 0);
    show("memfd 249-byte name", fd2 >= 0 ? 0 : fd2);
    close(fd2);
    buf[249] = 'a'; buf[250] = 0;
    show("memfd 250-byte name", memfd(buf, 0));
    show("memfd bad flags", memfd("x", 0x100));
    show("memfd NULL name", memfd(NULL, 0));
    fd2 = memfd("", 2 /* MFD_ALLOW_SEALING */);
    show("memfd allow sealing", fd2 >= 0 ? 0 : fd2);
    show("  F_GETFD", fcntl(fd2, F_GETFD));
    close(fd2);
    listing("after memfds");

    /* O_TMPFILE */
    mkdir("tmp", 0755);
    errno = 0;
    fd2 = open("tmp", O_TMPFILE | O_RDWR, 0640);
    show("O_TMPFILE rdwr", fd2 >= 0 ? 0 : fd2);
    st("  fstat", fd2);
    show("  F_GETFL", fcntl(fd2, F_GETFL));
    io("  io", fd2);
    errno = 0; show("O_TMPFILE rdonly", open("tmp", O_TMPFILE | O_RDONLY, 0600));
    errno = 0; show("O_TMPFILE creat", open("tmp", O_TMPFILE | O_CREAT | O_RDWR, 0600));
    errno = 0; show("O_TMPFILE missing", open("nodir", O_TMPFILE | O_RDWR, 0600));
    int plain = open("f.txt", O_CREAT | O_WRONLY, 0644);
    write(plain, "file text", 9);
    close(plain);
    errno = 0; show("O_TMPFILE on a file", open("f.txt", O_TMPFILE | O_RDWR, 0600));
    errno = 0; show("__O_TMPFILE only", open("tmp", 020000000 | O_RDWR, 0600));
    errno = 0;
    int fd3 = open("tmp", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0777);
    show("O_TMPFILE wronly", fd3 >= 0 ? 0 : fd3);
    st("  fstat", fd3);
    show("  F_GETFL", fcntl(fd3, F_GETFL));
    show("  F_GETFD", fcntl(fd3, F_GETFD));
    errno = 0; show("  read", read(fd3, buf, 1));
    listing("after O_TMPFILE");
    chdir("tmp"); listing("of tmp"); chdir("..");

    /* O_PATH */
    symlink("f.txt", "lnk");
    mkdir("d", 0755);
    errno = 0;
    int p = open("f.txt", O_PATH | O_CREAT | O_TRUNC | O_WRONLY, 0600);
    show("O_PATH file", p >= 0 ? 0 : p);
    st("  fstat (not truncated)", p);
    show("  F_GETFL", fcntl(p, F_GETFL));
    show("  F_GETFD", fcntl(p, F_GETFD));
    errno = 0; show("  F_SETFD", fcntl(p, F_SETFD, FD_CLOEXEC));
    show("  F_GETFD", fcntl(p, F_GETFD));
    errno = 0; show("  F_SETFL", fcntl(p, F_SETFL, O_APPEND));
    errno = 0; show("  read", read(p, buf, 4));
    errno = 0; show("  write", write(p, "x", 1));
    errno = 0; show("  pread", pread(p, buf, 4, 0));
    errno = 0; show("  lseek", lseek(p, 0, SEEK_SET));
    /* the system call itself: musl's fchmod() retries through /proc/self/fd */
    errno = 0; show("  fchmod", syscall(SYS_fchmod, p, 0600));
    errno = 0; show("  ftruncate", ftruncate(p, 0));
    errno = 0; show("  fsync", fsync(p));
    errno = 0;
    show("  mmap", mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, p, 0) == MAP_FAILED ? -1 : 0);
    errno = 0; fd2 = dup(p); show("  dup", fd2 >= 0 ? 0 : fd2);
    st("  fstat of dup", fd2);
    errno = 0; show("  read of dup", read(fd2, buf, 4));
    errno = 0; show("  close dup", close(fd2));
    errno = 0; fd2 = fcntl(p, F_DUPFD_CLOEXEC, 20); show("  F_DUPFD_CLOEXEC", fd2);
    errno = 0; show("  openat(file fd, x)", openat(p, "x", O_RDONLY));
    errno = 0; show("  fchdir file", fchdir(p));
    errno = 0; show("  close", close(p));

    errno = 0;
    p = open("lnk", O_PATH | O_NOFOLLOW);
    show("O_PATH|O_NOFOLLOW link", p >= 0 ? 0 : p);
    st("  fstat", p);
    memset(buf, 0, sizeof buf);
    errno = 0; show("  readlinkat(fd, \"\")", readlinkat(p, "", buf, sizeof buf));
    printf("  = [%s]\n", buf);
    struct stat s;
    errno = 0;
    show("  fstatat AT_EMPTY_PATH", fstatat(p, "", &s, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW));
    printf("  mode %o\n", s.st_mode);
    errno = 0; show("  read", read(p, buf, 4));
    close(p);
    errno = 0; p = open("lnk", O_PATH); show("O_PATH link followed", p >= 0 ? 0 : p);
    st("  fstat", p);
    errno = 0; show("  readlinkat(fd, \"\")", readlinkat(p, "", buf, sizeof buf));
    close(p);
    errno = 0; show("O_NOFOLLOW link (no O_PATH)", open("lnk", O_NOFOLLOW | O_RDONLY));

    errno = 0;
    p = open("d", O_PATH | O_DIRECTORY);
    show("O_PATH dir", p >= 0 ? 0 : p);
    st("  fstat", p);
    show("  F_GETFL", fcntl(p, F_GETFL));
    errno = 0;
    fd2 = openat(p, "inner", O_CREAT | O_WRONLY, 0600);
    show("  openat(dir fd, inner)", fd2 >= 0 ? 0 : fd2);
    close(fd2);
    errno = 0; show("  fstatat(dir fd, inner)", fstatat(p, "inner", &s, 0));
    errno = 0; show("  getdents64", syscall(SYS_getdents64, p, buf, sizeof buf));
    errno = 0; show("  fchdir", fchdir(p));
    errno = 0; show("  stat inner from there", stat("inner", &s));
    chdir("..");
    close(p);
    errno = 0; show("O_PATH|O_DIRECTORY on file", open("f.txt", O_PATH | O_DIRECTORY));
    errno = 0; show("O_PATH missing", open("missing", O_PATH));
    errno = 0;
    p = open("/dev/null", O_PATH);
    show("O_PATH /dev/null", p >= 0 ? 0 : p);
    st("  fstat", p);
    errno = 0; show("  write", write(p, "x", 1));
    close(p);

    /* the nameless files again at the end: a checkpoint anywhere above must keep them */
    st("memfd at the end", fd);
    memset(buf, 0, sizeof buf);
    pread(fd, buf, 11, 0);
    printf("memfd holds [%s] offset %ld\n", buf, (long)lseek(fd, 0, SEEK_CUR));
    st("tmpfile at the end", fd2 = open("tmp", O_TMPFILE | O_RDWR, 0600));
    io("tmpfile io", fd3);
    listing("at the end");
    return 0;
}
