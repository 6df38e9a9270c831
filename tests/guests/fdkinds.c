/* fdkinds.c: one descriptor of each kind, in each state a checkpoint may find it in.
 *
 *   fdkinds SCENARIO
 *
 * Makes f (a file), d/ with a, b, c, opens one descriptor as SCENARIO says, changes its
 * state (renames, removes, replaces, half-reads...), then uses it twice with system calls
 * in between (places for checkpoints to land): fstat, read or list (names sorted, since a
 * directory's order is the file system's), the offset, a write. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct linux_dirent64 {
    unsigned long long d_ino;
    long long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

static char *names[256];
static int extra[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
static int nnames;

static void busy(void)
{
    for (int i = 0; i < 15; i++)
        getppid();
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* getdents64 with a buffer of `size` bytes, at most `calls` times; names are collected */
static long list(int fd, int size, int calls)
{
    char buf[4096];
    long total = 0;
    for (int c = 0; c < calls; c++) {
        long n = syscall(SYS_getdents64, fd, buf, size);
        if (n < 0) {
            printf("  getdents: %s\n", strerror(errno));
            nnames = 0;  /* what was read before is in the file system's order: forget it */
            return -1;
        }
        if (n == 0)
            break;
        for (long at = 0; at < n;) {
            struct linux_dirent64 *d = (void *)(buf + at);
            if (nnames < 256)
                names[nnames++] = strdup(d->d_name);
            at += d->d_reclen;
        }
        total += n;
    }
    return total;
}

static void show_names(void)
{
    qsort(names, nnames, sizeof *names, cmp);
    printf("  entries:");
    for (int i = 0; i < nnames; i++)
        printf(" %s", names[i]);
    printf("\n");
    nnames = 0;
}

static void use(const char *step, int fd, int isdir)
{
    struct stat st;
    printf("%s\n", step);
    if (fstat(fd, &st) != 0) {
        printf("  fstat: %s\n", strerror(errno));
    } else {
        const char *type = S_ISDIR(st.st_mode) ? "dir" : S_ISREG(st.st_mode) ? "reg" :
                           S_ISCHR(st.st_mode) ? "chr" : S_ISFIFO(st.st_mode) ? "fifo" : "?";
        printf("  fstat: %s mode %o nlink %ld size %lld\n", type, st.st_mode & 07777,
               (long)st.st_nlink, S_ISREG(st.st_mode) ? (long long)st.st_size : -1LL);
    }
    if (isdir) {
        list(fd, 4096, 100);
        show_names();
    } else {
        char buf[40] = {0};
        ssize_t n = read(fd, buf, 24);
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] < 32 || buf[i] > 126)
                buf[i] = '.';
        if (n < 0)
            printf("  read: %s\n", strerror(errno));
        else
            printf("  read %zd: %s\n", n, buf);
        n = write(fd, "W", 1);
        printf("  write: %s\n", n == 1 ? "1" : strerror(errno));
    }
    if (!isdir)  /* a directory's offset is a cookie of the file system's own */
        printf("  offset %lld\n", (long long)lseek(fd, 0, SEEK_CUR));
}

static int open_or_die(const char *path, int flags)
{
    int fd = open(path, flags, 0644);
    if (fd < 0) {
        printf("open %s: %s\n", path, strerror(errno));
        exit(1);
    }
    return fd;
}

static void make(const char *path, const char *text)
{
    int fd = open_or_die(path, O_WRONLY | O_CREAT | O_TRUNC);
    write(fd, text, strlen(text));
    close(fd);
}

int main(int argc, char **argv)
{
    const char *s = argc > 1 ? argv[1] : "file-plain";
    int fd, isdir = strncmp(s, "dir", 3) == 0;
    mkdir("d", 0755);
    make("d/a", "A");
    make("d/b", "BB");
    make("d/c", "CCC");
    make("f", "the first file's text, long enough");

    if (strcmp(s, "file-plain") == 0) {
        fd = open_or_die("f", O_RDWR);
        lseek(fd, 4, SEEK_SET);
    } else if (strcmp(s, "file-renamed") == 0) {
        fd = open_or_die("f", O_RDWR);
        rename("f", "g");
    } else if (strcmp(s, "file-unlinked") == 0) {
        fd = open_or_die("f", O_RDWR);
        lseek(fd, 10, SEEK_SET);
        unlink("f");
    } else if (strcmp(s, "file-replaced") == 0) {
        fd = open_or_die("f", O_RDWR);
        unlink("f");
        make("f", "another file");
    } else if (strcmp(s, "file-dir-renamed") == 0) {
        fd = open_or_die("d/b", O_RDWR);
        rename("d", "e");
    } else if (strcmp(s, "file-wronly-unlinked") == 0) {
        fd = open_or_die("f", O_WRONLY);
        unlink("f");
        fchmod(fd, 0200);
    } else if (strcmp(s, "file-append") == 0) {
        fd = open_or_die("f", O_RDWR | O_APPEND);
    } else if (strcmp(s, "dir-plain") == 0) {
        fd = open_or_die("d", O_RDONLY | O_DIRECTORY);
    } else if (strcmp(s, "dir-renamed") == 0) {
        fd = open_or_die("d", O_RDONLY | O_DIRECTORY);
        rename("d", "e");
    } else if (strcmp(s, "dir-removed") == 0) {
        mkdir("empty", 0700);
        fd = open_or_die("empty", O_RDONLY | O_DIRECTORY);
        rmdir("empty");
    } else if (strcmp(s, "dir-replaced") == 0) {
        mkdir("empty", 0700);
        fd = open_or_die("empty", O_RDONLY | O_DIRECTORY);
        rmdir("empty");
        mkdir("empty", 0755);
        make("empty/new", "new");
    } else if (strcmp(s, "dir-partial") == 0) {
        fd = open_or_die("d", O_RDONLY | O_DIRECTORY);
        printf("first getdents: %ld bytes\n", list(fd, 48, 1));
    } else if (strcmp(s, "dir-partial-changed") == 0) {
        fd = open_or_die("d", O_RDONLY | O_DIRECTORY);
        printf("first getdents: %ld bytes\n", list(fd, 48, 1));
        make("d/added", "x");
        unlink("d/c");
    } else if (strcmp(s, "dir-partial-removed") == 0) {
        fd = open_or_die("d", O_RDONLY | O_DIRECTORY);
        printf("first getdents: %ld bytes\n", list(fd, 48, 1));
        unlink("d/a");
        unlink("d/b");
        unlink("d/c");
        rmdir("d");
    } else if (strcmp(s, "dir-root") == 0) {
        fd = open_or_die("/", O_RDONLY | O_DIRECTORY);
    } else if (strcmp(s, "dir-dev") == 0) {
        fd = open_or_die("/dev", O_RDONLY | O_DIRECTORY);
    } else if (strcmp(s, "dir-dev-partial") == 0) {
        fd = open_or_die("/dev", O_RDONLY | O_DIRECTORY);
        printf("first getdents: %ld bytes\n", list(fd, 48, 1));
    } else if (strcmp(s, "dir-proc") == 0) {
        fd = open_or_die("/proc", O_RDONLY | O_DIRECTORY);
    } else if (strcmp(s, "dir-proc-self") == 0) {
        fd = open_or_die("/proc/self", O_RDONLY | O_DIRECTORY);
    } else if (strcmp(s, "null") == 0) {
        fd = open_or_die("/dev/null", O_RDWR);
    } else if (strcmp(s, "console-dup") == 0) {
        fd = dup(1);
    } else if (strcmp(s, "console-tty") == 0) {
        fd = open_or_die("/dev/tty", O_RDWR);
    } else if (strcmp(s, "proc-maps") == 0) {
        fd = open_or_die("/proc/self/maps", O_RDONLY);
        char buf[16];
        read(fd, buf, sizeof buf);
    } else if (strcmp(s, "many") == 0) {
        /* all at once, for images with every kind of record in them */
        fd = open_or_die("f", O_RDWR);
        link("f", "f2");
        extra[0] = open_or_die("f2", O_RDONLY);
        unlink("f");
        unlink("f2");
        ftruncate(fd, 10 << 20);
        pwrite(fd, "end", 3, (10 << 20) - 3);
        mkdir("gone", 0700);
        extra[1] = open_or_die("gone", O_RDONLY | O_DIRECTORY);
        rmdir("gone");
        extra[2] = open_or_die("d", O_RDONLY | O_DIRECTORY);
        printf("first getdents: %ld bytes\n", list(extra[2], 48, 1));
        extra[3] = open_or_die("/dev", O_RDONLY | O_DIRECTORY);
        extra[4] = open_or_die("/proc/self/maps", O_RDONLY);
        char buf[16];
        read(extra[4], buf, sizeof buf);
        extra[5] = open_or_die("/dev/null", O_WRONLY);
        extra[6] = open_or_die("d/a", O_RDONLY);
    } else {
        printf("no scenario %s\n", s);
        return 2;
    }
    busy();
    use("first use", fd, isdir);
    busy();
    if (isdir)
        lseek(fd, 0, SEEK_SET);
    use("second use", fd, isdir);
    busy();
    for (int i = 0; i < 7 && extra[i] >= 0; i++)
        use("extra", extra[i], i == 1 || i == 2 || i == 3);
    return 0;
}
