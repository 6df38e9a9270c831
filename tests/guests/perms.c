/* Permission checks as an unprivileged owner: every file here belongs to the caller, so the
 * owner's mode bits decide. Builds a small tree under ./t, tries each operation, and prints
 * "operation: ok" or "operation: ERRNO" (names, not strerror texts: musl and glibc differ).
 * Run it natively as a normal user and under vsnap: the lines must be the same. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef AT_EACCESS
#define AT_EACCESS 0x200
#endif
#ifndef SYS_faccessat2
#define SYS_faccessat2 439
#endif

static const char *ename(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EBADF: return "EBADF";
    case EACCES: return "EACCES";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case EXDEV: return "EXDEV";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case ENOTEMPTY: return "ENOTEMPTY";
    case ELOOP: return "ELOOP";
    case ENOSYS: return "ENOSYS";
    default: return "E?";
    }
}

/* one result line; a descriptor that came back is closed */
static void res(const char *what, long r) {
    if (r < 0) {
        printf("%s: %s\n", what, ename(errno));
    } else {
        printf("%s: ok\n", what);
    }
}

static void res_fd(const char *what, int fd) {
    res(what, fd);
    if (fd >= 0) close(fd);
}

static void put(const char *path, const char *text, mode_t mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, text, strlen(text)) < 0) { perror(path); _exit(2); }
    close(fd);
    chmod(path, mode);
}

static long size_of(const char *path) {
    struct stat st;
    return stat(path, &st) < 0 ? -1 : (long)st.st_size;
}

static unsigned mode_of(const char *path) {
    struct stat st;
    return stat(path, &st) < 0 ? 0xFFFFFFFFu : (unsigned)(st.st_mode & 07777);
}

/* names in a directory through a descriptor, without stat: a listing needs only read */
static void list(const char *what, const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0) { res(what, -1); return; }
    char buf[4096];
    long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (n < 0) { res(what, -1); close(fd); return; }
    int count = 0;
    for (long off = 0; off < n;) {
        unsigned short reclen = *(unsigned short *)(buf + off + 16);
        count++;
        off += reclen;
    }
    printf("%s: %d names\n", what, count);
    close(fd);
}

/* The working directory below a directory that is no longer searchable: names relative to it
 * still resolve (Linux's walk starts at the cwd and never passes the directories above it). */
static int under_unsearchable_parent(void) {
    struct stat st;
    int top = open(".", O_RDONLY | O_DIRECTORY);
    mkdir("p", 0755); mkdir("p/in", 0755); put("p/in/f", "f\n", 0644); put("p/x", "x\n", 0644);
    res("chdir p/in", chdir("p/in"));
    res("chmod .. 0600", chmod("..", 0600));
    res("stat f", stat("f", &st));
    res("stat .", stat(".", &st));
    res("stat ../x", stat("../x", &st));
    res("stat ..", stat("..", &st));
    res_fd("create g", open("g", O_CREAT | O_WRONLY, 0644));
    res("mkdir d", mkdir("d", 0755));
    res("rename g -> h", rename("g", "h"));
    res("unlink h", unlink("h"));
    res("rmdir d", rmdir("d"));
    res("fchdir top", fchdir(top));
    res("stat p/in", stat("p/in", &st));
    res("chdir p/in", chdir("p/in"));
    res("chmod p 0755", chmod("p", 0755));
    printf("done\n");
    return 0;
}

int main(int argc, char **argv) {
    struct stat st;
    umask(022);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "parent") == 0)
        return under_unsearchable_parent();

    if (mkdir("t", 0755) < 0) { perror("mkdir t"); return 2; }
    put("t/ro.txt", "read only\n", 0444);
    put("t/none.txt", "nothing\n", 0000);
    put("t/wo.txt", "write only\n", 0222);
    put("t/rw.txt", "read write\n", 0644);
    put("t/trunc.txt", "truncate me\n", 0644);
    put("t/x.sh", "#!/bin/sh\n", 0755);
    mkdir("t/rx", 0755); put("t/rx/f", "in rx\n", 0644); mkdir("t/rx/sub", 0755);
    chmod("t/rx", 0555);
    mkdir("t/nox", 0755); put("t/nox/f", "in nox\n", 0644); mkdir("t/nox/d", 0755);
    chmod("t/nox", 0644);
    mkdir("t/wx", 0755); put("t/wx/f", "in wx\n", 0644); chmod("t/wx", 0333);
    mkdir("t/zero", 0755); chmod("t/zero", 0000);
    mkdir("t/a", 0755); mkdir("t/a/sub", 0755); chmod("t/a/sub", 0555);
    mkdir("t/b", 0755);
    symlink("nox/f", "t/to_nox");
    symlink("rx", "t/to_rx");

    printf("-- open\n");
    res_fd("open ro O_RDONLY", open("t/ro.txt", O_RDONLY));
    res_fd("open ro O_WRONLY", open("t/ro.txt", O_WRONLY));
    res_fd("open ro O_RDWR", open("t/ro.txt", O_RDWR));
    res_fd("open ro O_WRONLY|O_APPEND", open("t/ro.txt", O_WRONLY | O_APPEND));
    res_fd("open ro O_RDONLY|O_TRUNC", open("t/ro.txt", O_RDONLY | O_TRUNC));
    res_fd("open ro O_CREAT|O_WRONLY", open("t/ro.txt", O_CREAT | O_WRONLY, 0644));
    res_fd("open ro O_CREAT|O_RDONLY", open("t/ro.txt", O_CREAT | O_RDONLY, 0644));
    res_fd("open ro O_CREAT|O_EXCL", open("t/ro.txt", O_CREAT | O_EXCL | O_WRONLY, 0644));
    printf("ro size %ld\n", size_of("t/ro.txt"));
    res_fd("open none O_RDONLY", open("t/none.txt", O_RDONLY));
    res_fd("open none O_WRONLY", open("t/none.txt", O_WRONLY));
    res_fd("open wo O_RDONLY", open("t/wo.txt", O_RDONLY));
    res_fd("open wo O_WRONLY", open("t/wo.txt", O_WRONLY));
    res_fd("open wo O_RDWR", open("t/wo.txt", O_RDWR));
    res_fd("open trunc O_RDONLY|O_TRUNC", open("t/trunc.txt", O_RDONLY | O_TRUNC));
    printf("trunc size %ld\n", size_of("t/trunc.txt"));
    res_fd("creat 0444 O_RDWR", open("t/new444", O_CREAT | O_RDWR, 0444));
    printf("new444 mode %o\n", mode_of("t/new444"));
    res_fd("reopen new444 O_RDWR", open("t/new444", O_RDWR));
    res_fd("open dir O_RDONLY|O_TRUNC", open("t/b", O_RDONLY | O_TRUNC));
    res_fd("open dir O_WRONLY", open("t/b", O_WRONLY));
    res_fd("open zero dir", open("t/zero", O_RDONLY | O_DIRECTORY));
    res_fd("open wx dir", open("t/wx", O_RDONLY | O_DIRECTORY));
    res_fd("open nox dir", open("t/nox", O_RDONLY | O_DIRECTORY));
    res_fd("open ro O_DIRECTORY", open("t/ro.txt", O_RDONLY | O_DIRECTORY));
    res_fd("open /dev/null O_RDWR", open("/dev/null", O_RDWR));

    printf("-- read-only directory\n");
    res_fd("open rx/f", open("t/rx/f", O_RDWR));
    res_fd("open rx/f O_CREAT", open("t/rx/f", O_CREAT | O_WRONLY, 0644));
    res_fd("create rx/new", open("t/rx/new", O_CREAT | O_WRONLY, 0644));
    res_fd("create rx/f O_EXCL", open("t/rx/f", O_CREAT | O_EXCL | O_WRONLY, 0644));
    res_fd("creat rx/new", creat("t/rx/new", 0644));
    res("mkdir rx/d", mkdir("t/rx/d", 0755));
    res("mkdir rx/sub", mkdir("t/rx/sub", 0755));
    res("mkdir rx/.", mkdir("t/rx/.", 0755));
    res("rmdir rx/sub", rmdir("t/rx/sub"));
    res("rmdir rx/f", rmdir("t/rx/f"));
    res("rmdir rx/missing", rmdir("t/rx/missing"));
    res("unlink rx/f", unlink("t/rx/f"));
    res("unlink rx/sub", unlink("t/rx/sub"));
    res("unlink rx/missing", unlink("t/rx/missing"));
    res("unlinkat rx/sub AT_REMOVEDIR", unlinkat(AT_FDCWD, "t/rx/sub", AT_REMOVEDIR));
    res("rename rx/f -> b/f", rename("t/rx/f", "t/b/f"));
    res("rename rw.txt -> rx/new", rename("t/rw.txt", "t/rx/new"));
    res("rename rw.txt -> rx/f", rename("t/rw.txt", "t/rx/f"));
    res("rename rx/f -> rx/g", rename("t/rx/f", "t/rx/g"));
    res("rename rx/missing -> b/m", rename("t/rx/missing", "t/b/m"));
    res("rename rx/f -> rx/f", rename("t/rx/f", "t/rx/f"));
    res("link rw.txt rx/l", link("t/rw.txt", "t/rx/l"));
    res("link rw.txt rx/f", link("t/rw.txt", "t/rx/f"));
    res("link rx/sub b/sub", link("t/rx/sub", "t/b/sub"));
    res("link rx/f b/f", link("t/rx/f", "t/b/f"));
    res("symlink x rx/s", symlink("x", "t/rx/s"));
    res("symlink x rx/f", symlink("x", "t/rx/f"));
    res("truncate rx/f", truncate("t/rx/f", 2));
    printf("rx/f size %ld\n", size_of("t/rx/f"));
    res("chmod rx/f", chmod("t/rx/f", 0600));
    res("via link open to_rx/f", open("t/to_rx/f", O_RDONLY) >= 0 ? 0 : -1);
    res("via link create to_rx/n", open("t/to_rx/n", O_CREAT | O_WRONLY, 0644));

    printf("-- directory without search permission\n");
    res("stat nox", stat("t/nox", &st));
    res("stat nox/", stat("t/nox/", &st));
    res("stat nox/f", stat("t/nox/f", &st));
    res("lstat nox/f", lstat("t/nox/f", &st));
    res("stat nox/.", stat("t/nox/.", &st));
    res("stat nox/..", stat("t/nox/..", &st));
    res("stat nox/missing", stat("t/nox/missing", &st));
    res("stat nox/f/x", stat("t/nox/f/x", &st));
    res("stat nox/d/x", stat("t/nox/d/x", &st));
    res("stat ro.txt/x", stat("t/ro.txt/x", &st));
    res_fd("open nox/f", open("t/nox/f", O_RDONLY));
    res_fd("create nox/new", open("t/nox/new", O_CREAT | O_WRONLY, 0644));
    res("mkdir nox/new", mkdir("t/nox/new", 0755));
    res("unlink nox/f", unlink("t/nox/f"));
    res("rmdir nox/d", rmdir("t/nox/d"));
    res("rename nox/f -> b/f", rename("t/nox/f", "t/b/f"));
    res("rename b -> nox/b", rename("t/b", "t/nox/b"));
    res("symlink x nox/s", symlink("x", "t/nox/s"));
    res("link nox/f b/l", link("t/nox/f", "t/b/l"));
    res("truncate nox/f", truncate("t/nox/f", 0));
    res("chmod nox/f", chmod("t/nox/f", 0600));
    res("access nox/f F_OK", access("t/nox/f", F_OK));
    res("chdir nox", chdir("t/nox"));
    res("stat to_nox", stat("t/to_nox", &st));
    res("lstat to_nox", lstat("t/to_nox", &st));
    char lbuf[64];
    res("readlink to_nox", readlink("t/to_nox", lbuf, sizeof lbuf));
    res("readlink nox/f", readlink("t/nox/f", lbuf, sizeof lbuf));
    list("list nox", "t/nox");
    list("list wx", "t/wx");
    list("list zero", "t/zero");
    res("stat wx/f", stat("t/wx/f", &st));
    res_fd("open wx/f", open("t/wx/f", O_RDONLY));
    res_fd("create wx/n", open("t/wx/n", O_CREAT | O_WRONLY, 0644));
    res("unlink wx/n", unlink("t/wx/n"));
    res("stat zero/x", stat("t/zero/x", &st));
    res("mkdir zero/x", mkdir("t/zero/x", 0755));

    printf("-- truncate\n");
    res("truncate ro.txt", truncate("t/ro.txt", 0));
    res("truncate none.txt", truncate("t/none.txt", 0));
    res("truncate wo.txt", truncate("t/wo.txt", 1));
    printf("wo size %ld\n", size_of("t/wo.txt"));
    res("truncate dir", truncate("t/b", 0));
    res("truncate negative", truncate("t/ro.txt", -1));
    res("truncate missing", truncate("t/missing", 0));
    res("truncate nox/f negative", truncate("t/nox/f", -1));

    printf("-- access\n");
    res("access ro R_OK", access("t/ro.txt", R_OK));
    res("access ro W_OK", access("t/ro.txt", W_OK));
    res("access ro X_OK", access("t/ro.txt", X_OK));
    res("access none F_OK", access("t/none.txt", F_OK));
    res("access none R_OK", access("t/none.txt", R_OK));
    res("access wo W_OK", access("t/wo.txt", W_OK));
    res("access x.sh R_OK|X_OK", access("t/x.sh", R_OK | X_OK));
    res("access zero dir X_OK", access("t/zero", X_OK));
    res("access rx dir W_OK", access("t/rx", W_OK));
    res("access mode 8", access("t/ro.txt", 8));
    res("access missing", access("t/missing", F_OK));
    res("access /dev/null R_OK|W_OK", access("/dev/null", R_OK | W_OK));
    res("access /dev/null X_OK", access("/dev/null", X_OK));
    res("faccessat AT_EACCESS W_OK",
        syscall(SYS_faccessat2, AT_FDCWD, "t/ro.txt", W_OK, AT_EACCESS));
    res("faccessat AT_EACCESS R_OK",
        syscall(SYS_faccessat2, AT_FDCWD, "t/ro.txt", R_OK, AT_EACCESS));
    res("faccessat bad flag", syscall(SYS_faccessat2, AT_FDCWD, "t/ro.txt", R_OK, 0x4));
    res("faccessat NOFOLLOW link W_OK",
        syscall(SYS_faccessat2, AT_FDCWD, "t/to_nox", W_OK, AT_SYMLINK_NOFOLLOW));
    res("faccessat link W_OK", syscall(SYS_faccessat2, AT_FDCWD, "t/to_nox", W_OK, 0));
    int rodir = open("t/rx", O_RDONLY | O_DIRECTORY);
    res("faccessat AT_EMPTY_PATH W_OK", syscall(SYS_faccessat2, rodir, "", W_OK, AT_EMPTY_PATH));
    res("faccessat AT_EMPTY_PATH X_OK", syscall(SYS_faccessat2, rodir, "", X_OK, AT_EMPTY_PATH));
    res("faccessat dirfd f W_OK", syscall(SYS_faccessat, rodir, "f", W_OK));
    close(rodir);

    printf("-- moving directories\n");
    res("rename a/sub -> b/sub", rename("t/a/sub", "t/b/sub"));
    res("rename a/sub -> a/sub2", rename("t/a/sub", "t/a/sub2"));
    chmod("t/a/sub2", 0755);
    res("rename a/sub2 -> b/sub", rename("t/a/sub2", "t/b/sub"));
    res("rename ro.txt -> b", rename("t/ro.txt", "t/b"));
    res("rename b -> ro.txt", rename("t/b", "t/ro.txt"));
    res("rename ro.txt -> zero", rename("t/ro.txt", "t/zero"));
    res("rmdir zero", rmdir("t/zero"));
    res("mkdir zero 0", mkdir("t/zero", 0));

    printf("-- trailing slashes and last components\n");
    mkdir("t/w", 0755); mkdir("t/w/sub", 0755); mkdir("t/w/sub2", 0755);
    put("t/w/f", "f\n", 0644);
    symlink("sub", "t/w/ls"); symlink("nowhere", "t/w/dl");
    mkdir("t/w/ro", 0755); mkdir("t/w/ro/sub", 0755); put("t/w/ro/f", "f\n", 0644);
    symlink("sub", "t/w/ro/ls");
    chmod("t/w/ro", 0555);
    res("unlink ro/sub/", unlink("t/w/ro/sub/"));
    res("unlink ro/ls/", unlink("t/w/ro/ls/"));
    res("unlink ro/f/", unlink("t/w/ro/f/"));
    res("unlink ro/sub/.", unlink("t/w/ro/sub/."));
    res("rmdir ro/f/", rmdir("t/w/ro/f/"));
    res("rmdir ro/ls/", rmdir("t/w/ro/ls/"));
    res("rename ro/sub/ -> w/x", rename("t/w/ro/sub/", "t/w/x"));
    res("rename ro/f -> w/x/", rename("t/w/ro/f", "t/w/x/"));
    res("rename ro/ls/ -> w/x", rename("t/w/ro/ls/", "t/w/x"));
    res("mkdir ro/new/", mkdir("t/w/ro/new/", 0755));
    res("symlink ro/new/", symlink("x", "t/w/ro/new/"));
    res("link f ro/new/", link("t/w/f", "t/w/ro/new/"));
    res("rmdir w/ls/", rmdir("t/w/ls/"));
    res("rmdir w/ls", rmdir("t/w/ls"));
    res("unlink w/ls/", unlink("t/w/ls/"));
    res("unlink w/dl/", unlink("t/w/dl/"));
    res("rename w/sub2 -> w/ls/", rename("t/w/sub2", "t/w/ls/"));
    res("rename w/f -> w/g/", rename("t/w/f", "t/w/g/"));
    res("rename w/sub2/ -> w/sub3/", rename("t/w/sub2/", "t/w/sub3/"));
    res("mkdir w/f/", mkdir("t/w/f/", 0755));
    res("mkdir w/dl/", mkdir("t/w/dl/", 0755));
    res("mkdir w/ls/", mkdir("t/w/ls/", 0755));
    res("symlink w/f/", symlink("x", "t/w/f/"));
    res("symlink w/n/", symlink("x", "t/w/n/"));
    res("link f w/n/", link("t/w/f", "t/w/n/"));
    res("link f w/ls/", link("t/w/f", "t/w/ls/"));
    res("rmdir w/sub/..", rmdir("t/w/sub/.."));
    res("rmdir /", rmdir("/"));
    res("unlink /", unlink("/"));
    res("stat w/sub", stat("t/w/sub", &st));
    res("stat w/sub3", stat("t/w/sub3", &st));
    res("lstat w/ls", lstat("t/w/ls", &st));
    res("stat w/g", stat("t/w/g", &st));
    chmod("t/w/ro", 0755);

    printf("-- working directory\n");
    int top = open(".", O_RDONLY | O_DIRECTORY);
    res("chdir t/zero", chdir("t/zero"));
    res("chdir t/rx", chdir("t/rx"));
    res("stat f", stat("f", &st));
    chmod(".", 0644);  /* the cwd itself, no longer searchable */
    res("stat . in nox cwd", stat(".", &st));
    res("stat f in nox cwd", stat("f", &st));
    res_fd("open . in nox cwd", open(".", O_RDONLY | O_DIRECTORY));
    res("chdir .. in nox cwd", chdir(".."));
    char cwd[256];
    res("getcwd in nox cwd", getcwd(cwd, sizeof cwd) ? 0 : -1);
    res("fchdir top", fchdir(top));
    res("chmod t/rx 0755", chmod("t/rx", 0755));
    int nox = open("t/nox", O_RDONLY | O_DIRECTORY);
    res("fchdir nox", fchdir(nox));
    res("fchdir file", fchdir(0));
    res("fchmod nox 0755", fchmod(nox, 0755));
    res("fchdir nox after fchmod", fchdir(nox));
    res("stat f after", stat("f", &st));
    res("fchdir top again", fchdir(top));

    printf("-- set-user-ID bits on write\n");
    put("t/suid", "abc\n", 06755);
    printf("suid mode %o\n", mode_of("t/suid"));
    int fd = open("t/suid", O_WRONLY);
    res("write suid", write(fd, "x", 1));
    printf("after write %o\n", mode_of("t/suid"));
    chmod("t/suid", 06755);
    res("write nothing", write(fd, "", 0));
    printf("after empty write %o\n", mode_of("t/suid"));
    res("ftruncate suid", ftruncate(fd, 1));
    printf("after ftruncate %o\n", mode_of("t/suid"));
    chmod("t/suid", 02644);
    res("write sgid no group exec", write(fd, "y", 1));
    printf("after write %o\n", mode_of("t/suid"));
    chmod("t/suid", 04644);
    res("truncate suid", truncate("t/suid", 0));
    printf("after truncate %o\n", mode_of("t/suid"));
    close(fd);
    chmod("t/suid", 06755);
    fd = open("t/suid", O_WRONLY | O_TRUNC);
    printf("after O_TRUNC open %o\n", mode_of("t/suid"));
    close(fd);
    /* opened while plain, made set-user-ID through its name, then written */
    put("t/plain", "abc\n", 0644);
    fd = open("t/plain", O_WRONLY);
    res("write plain", write(fd, "x", 1));
    chmod("t/plain", 04755);
    res("write plain after chmod", write(fd, "x", 1));
    printf("after write %o\n", mode_of("t/plain"));
    close(fd);
    fd = open("t/plain", O_WRONLY | O_CREAT, 0644);  /* fresh, then fchmod through another fd */
    int fd2 = open("t/plain", O_RDONLY);
    fchmod(fd2, 02775);
    res("write after fchmod", write(fd, "y", 1));
    printf("after write %o\n", mode_of("t/plain"));
    close(fd); close(fd2);
    res_fd("create 4755", open("t/made", O_CREAT | O_WRONLY, 04755));
    fd = open("t/made", O_WRONLY);
    printf("made mode %o\n", mode_of("t/made"));
    res("write made", write(fd, "z", 1));
    printf("after write %o\n", mode_of("t/made"));
    close(fd);

    /* leave a tree anyone can remove */
    chmod("t/rx", 0755); chmod("t/nox", 0755); chmod("t/wx", 0755); chmod("t/zero", 0755);
    chmod("t/a", 0755);
    printf("done\n");
    return 0;
}
