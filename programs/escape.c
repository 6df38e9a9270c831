/* escape.c: try to get out of the sandbox, and show that every try fails.
 *
 * vsnap gives the guest a host directory as its "/".  This program tries
 * the classic ways out of such a root: "..", absolute paths, symbolic links
 * to "/" and "..", openat with a directory fd, chdir("..") in a loop,
 * /proc/self/root, over-long paths, and writes (mkdir, rename, link) aimed
 * above the root.  One line per attempt: what was tried, then "ok ..."
 * (the first bytes read, a size, a link target) or the errno name.
 *
 * Run it in a root holding a decoy etc/passwd that says "SANDBOX": every
 * successful open must print SANDBOX, never the host's real /etc/passwd.
 * (Natively, a chroot into such a directory gives the reference output.)
 * It works in its cwd and never writes to etc/passwd.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UP8 "../../../../../../../../"
#define UP  UP8 UP8 UP8 UP8    /* "../" x32, printed as UP: above any root */

enum op { OPEN, OPENAT, STAT, LSTAT, READLINK, SYMLINK, LINK, MKDIR, RMDIR, RENAME, UNLINK, CDUP };
static const char *opname[] = { "open", "openat", "stat", "lstat", "readlink", "symlink",
                                "link", "mkdir", "rmdir", "rename", "unlink", "50 x chdir(\"..\"), open" };
struct attempt { enum op op; const char *a, *b, *show; };  /* show: printable arguments */

static char long_ok[4000], too_long[6100], long_name[301];   /* filled in main */

static const struct attempt attempts[] = {
    /* plain paths: absolute, "..", and ".." past the root */
    { OPEN, "/etc/passwd", 0, 0 },         { OPEN, "../../../etc/passwd", 0, 0 },
    { OPEN, "/../../etc/passwd", 0, 0 },   { OPEN, UP "etc/passwd", 0, "UP \"etc/passwd\"" },
    { OPEN, "//etc//passwd", 0, 0 },       { OPEN, "/./etc/../etc/./passwd", 0, 0 },
    { MKDIR, "a", 0, 0 },                  { OPEN, "a/" UP "etc/passwd", 0, "\"a/\" UP \"etc/passwd\"" },
    { OPEN, "a/../../..", 0, 0 },          { STAT, "a/../../..", 0, 0 },
    { OPEN, "/proc/self/root/etc/passwd", 0, 0 },   { OPEN, "/etc/passwd/", 0, 0 },
    /* symbolic links: to "/", to "..", to an absolute file, in a loop */
    { SYMLINK, "/", "rootlink", 0 },       { OPEN, "rootlink/etc/passwd", 0, 0 },
    { READLINK, "rootlink", 0, 0 },        { LSTAT, "rootlink", 0, 0 },
    { SYMLINK, "../../..", "up3", 0 },     { OPEN, "up3/etc/passwd", 0, 0 },
    { MKDIR, "d", 0, 0 },                  { SYMLINK, UP, "d/up", "UP, \"d/up\"" },
    { OPEN, "d/up/etc/passwd", 0, 0 },     { SYMLINK, "/etc/passwd", "pwlink", 0 },
    { OPEN, "pwlink", 0, 0 },              { SYMLINK, "loopb", "loopa", 0 },
    { SYMLINK, "loopa", "loopb", 0 },      { OPEN, "loopa", 0, 0 },
    { OPEN, "loopa/x", 0, 0 },
    /* a regular file used as a directory; paths that are too long */
    { OPEN, "file", 0, 0 },                { OPEN, "file/..", 0, 0 },
    { OPEN, "file/../../etc/passwd", 0, 0 },
    { OPEN, long_ok, 0, "\"../\" x1300 \"etc/passwd\"" },
    { OPEN, too_long, 0, "\"../\" x2000 \"etc/passwd\"" },
    { OPEN, long_name, 0, "\"x\" x300" },
    /* climbing with chdir, and paths relative to a directory fd */
    { CDUP, "etc/passwd", 0, "\"etc/passwd\"" },
    { OPENAT, ".", UP "etc/passwd", "\".\", UP \"etc/passwd\"" },
    { OPENAT, "/", "../../etc/passwd", 0 },   { OPENAT, "..", "/etc/passwd", 0 },
    { STAT, UP "etc/passwd", 0, "UP \"etc/passwd\"" },   { STAT, "/..", 0, 0 },
    /* writes aimed above the root land in the root: "/escape.dir" is the same place */
    { MKDIR, UP "escape.dir", 0, "UP \"escape.dir\"" },  { STAT, "/escape.dir", 0, 0 },
    { RMDIR, "/escape.dir", 0, 0 },
    { RENAME, "file", UP "escape.file", "\"file\", UP \"escape.file\"" },
    { STAT, "/escape.file", 0, 0 },        { RENAME, "/escape.file", "file", 0 },
    { UNLINK, UP "no.such.file", 0, "UP \"no.such.file\"" },
    { LINK, UP "etc/passwd", "hardpw", "UP \"etc/passwd\", \"hardpw\"" },
    { OPEN, "hardpw", 0, 0 },
};

static const char *errname(int e)
{
    static const struct { int e; const char *name; } t[] = {
        {ENOENT,"ENOENT"}, {ENOTDIR,"ENOTDIR"}, {EISDIR,"EISDIR"}, {ELOOP,"ELOOP"},
        {ENAMETOOLONG,"ENAMETOOLONG"}, {EACCES,"EACCES"}, {EPERM,"EPERM"}, {EEXIST,"EEXIST"},
        {EXDEV,"EXDEV"}, {EINVAL,"EINVAL"}, {EBADF,"EBADF"}, {ENOTEMPTY,"ENOTEMPTY"},
        {EROFS,"EROFS"}, {EBUSY,"EBUSY"}, {ENOSYS,"ENOSYS"}, {EFAULT,"EFAULT"}, {ENOSPC,"ENOSPC"} };
    static char other[16];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i].e == e) return t[i].name;
    snprintf(other, sizeof other, "E%d", e);
    return other;
}

/* Print "ok <first line, up to 15 bytes>" from fd, or the read error. */
static void show_bytes(int fd)
{
    char buf[16];
    ssize_t n = read(fd, buf, 15);
    if (n < 0) { printf("ok, but read: %s\n", errname(errno)); close(fd); return; }
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] == '\n') n = i; else if (buf[i] < 32 || buf[i] > 126) buf[i] = '.';
    printf("ok %.*s\n", (int)n, buf);
    close(fd);
}

static void run(const struct attempt *t)
{
    struct stat st;
    char buf[64];
    int r = 0, fd, cwd;
    switch (t->op) {
    case OPEN:    if ((fd = open(t->a, O_RDONLY)) >= 0) { show_bytes(fd); return; } r = -1; break;
    case OPENAT:  if ((cwd = open(t->a, O_RDONLY | O_DIRECTORY)) < 0) { r = -1; break; }
                  fd = openat(cwd, t->b, O_RDONLY); close(cwd);
                  if (fd >= 0) { show_bytes(fd); return; } r = -1; break;
    case STAT:    r = stat(t->a, &st); break;
    case LSTAT:   r = lstat(t->a, &st); break;
    case READLINK: if ((r = (int)readlink(t->a, buf, sizeof buf - 1)) >= 0) {
                       printf("ok -> %.*s\n", r, buf); return; } break;
    case SYMLINK: r = symlink(t->a, t->b); break;
    case LINK:    r = link(t->a, t->b); break;
    case MKDIR:   r = mkdir(t->a, 0755); break;
    case RMDIR:   r = rmdir(t->a); break;
    case RENAME:  r = rename(t->a, t->b); break;
    case UNLINK:  r = unlink(t->a); break;
    case CDUP:    /* climb 50 times, look around, then come back with fchdir */
        if ((cwd = open(".", O_RDONLY | O_DIRECTORY)) < 0) { r = -1; break; }
        for (int i = 0; i < 50; i++) if (chdir("..") != 0) r = -1;
        fd = r == 0 ? open(t->a, O_RDONLY) : -1;
        int e = errno;
        if (getcwd(buf, sizeof buf) == NULL) strcpy(buf, "?");
        if (fchdir(cwd) != 0) { perror("fchdir"); _exit(1); }
        close(cwd);
        printf("(cwd %s) ", buf);
        if (fd >= 0) { show_bytes(fd); return; }
        errno = e; r = -1; break;
    }
    if (r < 0) { printf("%s\n", errname(errno)); return; }
    if (t->op != STAT && t->op != LSTAT)
        printf("ok\n");
    else if (S_ISDIR(st.st_mode))
        printf("ok dir\n");                     /* directory sizes vary by file system */
    else
        printf("ok %s %ld\n", S_ISLNK(st.st_mode) ? "link" : "file", (long)st.st_size);
}

/* dst = "../" repeated n times, then "etc/passwd" */
static void up_path(char *dst, int n)
{
    for (int i = 0; i < n; i++) memcpy(dst + 3 * i, "../", 3);
    strcpy(dst + 3 * n, "etc/passwd");
}

int main(void)
{
    /* Long paths: one just under PATH_MAX (4096), one over it, one with a 300-byte name. */
    up_path(long_ok, 1300);
    up_path(too_long, 2000);
    memset(long_name, 'x', 300);              /* long_name[300] stays 0 */

    /* Start clean (an earlier run may have left these), then make "file". */
    const char *old[] = { "rootlink", "up3", "d/up", "pwlink", "loopa", "loopb", "hardpw", "/escape.file" };
    for (size_t i = 0; i < sizeof old / sizeof old[0]; i++) unlink(old[i]);
    rmdir("a"); rmdir("d"); rmdir("/escape.dir");
    int fd = open("file", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "file\n", 5) != 5 || close(fd) != 0) { perror("file"); return 1; }

    for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++) {
        const struct attempt *t = &attempts[i];
        char what[120];             /* the call, as C: open("a") or symlink("a", "b") */
        if (t->show) snprintf(what, sizeof what, "%s(%s)", opname[t->op], t->show);
        else if (t->b) snprintf(what, sizeof what, "%s(\"%s\", \"%s\")", opname[t->op], t->a, t->b);
        else snprintf(what, sizeof what, "%s(\"%s\")", opname[t->op], t->a);
        printf("%2zu %-46s ", i + 1, what);
        run(t);
    }
    printf("EXIT-SUCCESS\n");
    return 0;
}
