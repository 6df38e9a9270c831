/* The current directory and directory descriptors name a directory, not a path: they follow
   it when it is renamed, and once it is removed getcwd fails with ENOENT, "." still names it,
   ".." its old parent, and any other name in it is ENOENT, even after a new directory is made
   with the old name. Prints paths relative to the directory it started in, so a native run in
   a fresh directory and a run under vsnap print the same bytes. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static char base[4096];

static const char *rel(const char *path) {   /* the start directory is "." */
    if (!strcmp(path, base[0] ? base : "/")) return ".";
    return strncmp(path, base, strlen(base)) ? path : path + strlen(base);
}

static void cwd(const char *what) {
    char buf[4096];
    long n = syscall(SYS_getcwd, buf, sizeof buf);   /* the system call itself */
    if (n < 0) { printf("%s: getcwd syscall errno %d\n", what, errno); }
    else printf("%s: getcwd syscall %s\n", what, rel(buf));
    errno = 0;
    char *p = getcwd(buf, sizeof buf);                /* what the C library makes of it */
    if (!p) printf("%s: getcwd() NULL errno %d\n", what, errno);
    else printf("%s: getcwd() %s\n", what, rel(buf));
}

static void rc(const char *what, long r) {
    printf("%s: %ld%s%s\n", what, r < 0 ? -1L : r, r < 0 ? " errno " : "", r < 0 ? strerror(errno) : "");
}

static void link_of(const char *what, const char *path) {
    char buf[4096];
    ssize_t n = readlink(path, buf, sizeof buf - 1);
    if (n < 0) { printf("%s: readlink errno %d\n", what, errno); return; }
    buf[n] = 0;
    printf("%s: %s\n", what, rel(buf));
}

static int entries(int dirfd) {
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    DIR *d = fdopendir(fd);
    int n = 0;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

static int nlink(int dirfd, const char *name) {
    struct stat st;
    if (fstatat(dirfd, name, &st, name[0] ? 0 : AT_EMPTY_PATH) < 0) return -errno;
    return (int)st.st_nlink;
}

int main(void) {
    if (!getcwd(base, sizeof base)) return 1;
    if (!strcmp(base, "/")) base[0] = 0;

    /* the cwd renamed, then removed, then a new directory of the same name */
    rc("mkdir d", mkdir("d", 0755));
    rc("chdir d", chdir("d"));
    int held = open(".", O_RDONLY | O_DIRECTORY);
    int opath = open(".", O_PATH | O_DIRECTORY);
    rc("rename d e", rename("../d", "../e"));
    cwd("renamed");
    link_of("proc cwd renamed", "/proc/self/cwd");
    rc("create f", open("f", O_CREAT | O_WRONLY, 0644) >= 0 ? 0 : -1);
    rc("f is in e", access("../e/f", F_OK));
    rc("unlink f", unlink("f"));
    rc("rmdir ../e", rmdir("../e"));
    cwd("removed");
    link_of("proc cwd removed", "/proc/self/cwd");
    rc("mkdir ../e again", mkdir("../e", 0755));
    rc("create g", open("g", O_CREAT | O_WRONLY, 0644));
    rc("mkdir h", mkdir("h", 0755));
    rc("stat x", nlink(AT_FDCWD, "x"));
    printf("nlink . %d .. %d held %d opath %d\n", nlink(AT_FDCWD, "."), nlink(AT_FDCWD, "..") > 0,
           nlink(held, ""), nlink(opath, ""));
    printf("entries . %d held %d\n", entries(AT_FDCWD), entries(held));
    rc("openat held y", openat(held, "y", O_CREAT | O_WRONLY, 0644));
    rc("openat opath y", openat(opath, "y", O_CREAT | O_WRONLY, 0644));
    rc("openat held ..", openat(held, "..", O_RDONLY | O_DIRECTORY) >= 0 ? 0 : -1);
    rc("new e has g", access("../e/g", F_OK));
    rc("rename new e", rename("../e", "../e2"));   /* not the removed one: it has no name */
    link_of("proc cwd after", "/proc/self/cwd");
    char fdlink[64];
    snprintf(fdlink, sizeof fdlink, "/proc/self/fd/%d", held);
    link_of("proc held after", fdlink);
    int dot = open(".", O_RDONLY | O_DIRECTORY);     /* opened after it was removed */
    snprintf(fdlink, sizeof fdlink, "/proc/self/fd/%d", dot);
    link_of("proc dot", fdlink);
    rc("rename it back", rename("../e2", "../e"));
    rc("fchdir held", fchdir(held));
    cwd("fchdir to removed");
    rc("chdir ..", chdir(".."));
    cwd("parent");
    printf("entries e %d\n", entries(open("e", O_RDONLY | O_DIRECTORY)));
    rc("rmdir e", rmdir("e"));

    /* a held directory renamed: names resolve inside it at its new place */
    rc("mkdir p", mkdir("p", 0755));
    int p = open("p", O_RDONLY | O_DIRECTORY);
    rc("rename p q", rename("p", "q"));
    rc("mkdir p again", mkdir("p", 0755));
    rc("openat p z", openat(p, "z", O_CREAT | O_WRONLY, 0644) >= 0 ? 0 : -1);
    rc("q has z", access("q/z", F_OK));
    rc("p has z", access("p/z", F_OK));
    rc("fchdir p", fchdir(p));
    cwd("fchdir renamed");
    link_of("proc fd renamed", "/proc/self/cwd");

    /* an ancestor renamed, then the cwd moved out and its old parent removed */
    rc("chdir base", chdir(base[0] ? base : "/"));
    rc("mkdir a/b", mkdir("a", 0755) | mkdir("a/b", 0755));
    rc("chdir a/b", chdir("a/b"));
    rc("rename a c", rename("../../a", "../../c"));
    cwd("ancestor renamed");
    rc("rename b out", rename("../b", "../../bb"));
    rc("rmdir old parent", rmdir("../c"));
    cwd("moved out");
    rc("rmdir self", rmdir("../bb"));
    cwd("self removed");
    rc("create k", open("k", O_CREAT | O_WRONLY, 0644));
    rc("chdir ..", chdir(".."));
    cwd("back");
    printf("dot nlink %d entries %d\n", nlink(dot, ""), entries(dot));
    link_of("proc dot at the end", fdlink);
    return 0;
}
