/* Credentials of an unprivileged user: the id calls, setgroups, and chown on files it owns.
 * Raw system calls where the libc wrappers differ (musl and glibc), the libc wrappers where a
 * program would use them. Prints one line per call: "call: result" or "call: ERRNO".
 * Run natively as a normal user (uid and gid 1000, groups {1000}) and under vsnap. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *ename(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EBADF: return "EBADF";
    case EFAULT: return "EFAULT";
    case EACCES: return "EACCES";
    case EINVAL: return "EINVAL";
    case ENOTDIR: return "ENOTDIR";
    case ENOSYS: return "ENOSYS";
    default: return "E?";
    }
}

static void res(const char *what, long r) {
    if (r < 0) printf("%s: %s\n", what, ename(errno));
    else printf("%s: %ld\n", what, r);
}

static unsigned mode_of(const char *path) {
    struct stat st;
    return lstat(path, &st) < 0 ? 0xFFFFFFFFu : (unsigned)(st.st_mode & 07777);
}

static void put(const char *path, mode_t mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) { perror(path); _exit(2); }
    close(fd);
    chmod(path, mode);
}

#define M1 ((long)(unsigned)-1)

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    umask(022);
    uid_t uid = getuid();
    gid_t gid = getgid();
    printf("ids %u %u %u %u\n", (unsigned)getuid(), (unsigned)geteuid(), (unsigned)getgid(),
           (unsigned)getegid());
    unsigned r[3] = {7, 7, 7};
    res("getresuid", syscall(SYS_getresuid, &r[0], &r[1], &r[2]));
    printf("resuid %u %u %u\n", r[0], r[1], r[2]);
    res("getresgid", syscall(SYS_getresgid, &r[0], &r[1], &r[2]));
    printf("resgid %u %u %u\n", r[0], r[1], r[2]);
    res("getresuid bad pointer", syscall(SYS_getresuid, &r[0], (void *)8, &r[2]));

    printf("-- uid\n");
    res("setuid(getuid())", setuid(uid));
    res("setuid(0)", syscall(SYS_setuid, 0));
    res("setuid(1001)", syscall(SYS_setuid, uid + 1));
    res("setuid(-1)", syscall(SYS_setuid, M1));
    res("setreuid(-1,-1)", syscall(SYS_setreuid, M1, M1));
    res("setreuid(uid,uid)", syscall(SYS_setreuid, uid, uid));
    res("setreuid(0,-1)", syscall(SYS_setreuid, 0, M1));
    res("setreuid(-1,0)", syscall(SYS_setreuid, M1, 0));
    res("setresuid(-1,-1,-1)", syscall(SYS_setresuid, M1, M1, M1));
    res("setresuid(uid,uid,uid)", syscall(SYS_setresuid, uid, uid, uid));
    res("setresuid(-1,-1,0)", syscall(SYS_setresuid, M1, M1, 0));
    res("setresuid(0,uid,uid)", syscall(SYS_setresuid, 0, uid, uid));
    res("setfsuid(0)", syscall(SYS_setfsuid, 0));
    res("setfsuid(-1)", syscall(SYS_setfsuid, M1));
    res("setfsuid(uid)", syscall(SYS_setfsuid, uid));
    res("libc setreuid(uid,uid)", setreuid(uid, uid));
    res("libc setresuid(0,0,0)", setresuid(0, 0, 0));

    printf("-- gid\n");
    res("setgid(getgid())", setgid(gid));
    res("setgid(0)", syscall(SYS_setgid, 0));
    res("setgid(-1)", syscall(SYS_setgid, M1));
    res("setregid(-1,-1)", syscall(SYS_setregid, M1, M1));
    res("setregid(gid,gid)", syscall(SYS_setregid, gid, gid));
    res("setregid(0,-1)", syscall(SYS_setregid, 0, M1));
    res("setresgid(-1,-1,-1)", syscall(SYS_setresgid, M1, M1, M1));
    res("setresgid(gid,gid,gid)", syscall(SYS_setresgid, gid, gid, gid));
    res("setresgid(-1,0,-1)", syscall(SYS_setresgid, M1, 0, M1));
    res("setfsgid(0)", syscall(SYS_setfsgid, 0));
    res("setfsgid(gid)", syscall(SYS_setfsgid, gid));
    res("libc setegid(gid)", setegid(gid));
    res("libc seteuid(uid)", seteuid(uid));
    res("libc seteuid(0)", seteuid(0));

    printf("-- groups\n");
    gid_t list[8] = {0};
    res("getgroups(0)", syscall(SYS_getgroups, 0, NULL));
    res("getgroups(8)", syscall(SYS_getgroups, 8, list));
    printf("group %u\n", (unsigned)list[0]);
    res("getgroups(-1)", syscall(SYS_getgroups, -1, list));
    res("setgroups(0)", syscall(SYS_setgroups, 0, NULL));
    res("setgroups(1,{gid})", syscall(SYS_setgroups, 1, list));
    res("setgroups(70000)", syscall(SYS_setgroups, 70000, list));
    res("setgroups(-1)", syscall(SYS_setgroups, -1, list));
    printf("ids %u %u %u %u\n", (unsigned)getuid(), (unsigned)geteuid(), (unsigned)getgid(),
           (unsigned)getegid());

    printf("-- chown\n");
    put("f", 0644);
    res("chown(f,-1,-1)", chown("f", -1, -1));
    res("chown(f,uid,gid)", chown("f", uid, gid));
    res("chown(f,uid,-1)", chown("f", uid, -1));
    res("chown(f,-1,gid)", chown("f", -1, gid));
    res("chown(f,0,-1)", chown("f", 0, -1));
    res("chown(f,-1,0)", chown("f", -1, 0));
    res("chown(f,uid+1,gid)", chown("f", uid + 1, gid));
    res("chown(f,uid,gid+1)", chown("f", uid, gid + 1));
    res("chown(missing)", chown("missing", -1, -1));
    res("lchown(f,uid,gid)", lchown("f", uid, gid));
    symlink("f", "link");
    res("lchown(link,-1,-1)", lchown("link", -1, -1));
    res("lchown(link,0,0)", lchown("link", 0, 0));
    symlink("missing", "dangling");
    res("lchown(dangling,uid,-1)", lchown("dangling", uid, -1));
    res("chown(dangling,uid,-1)", chown("dangling", uid, -1));
    int fd = open("f", O_RDONLY);
    res("fchown(fd,uid,gid)", fchown(fd, uid, gid));
    res("fchown(fd,0,-1)", fchown(fd, 0, -1));
    res("fchown(99,-1,-1)", fchown(99, -1, -1));
    res("fchownat(link,NOFOLLOW)", fchownat(AT_FDCWD, "link", uid, gid, AT_SYMLINK_NOFOLLOW));
    res("fchownat(bad flag)", fchownat(AT_FDCWD, "f", uid, gid, 0x1));
    res("fchownat(fd,\"\",EMPTY_PATH)", fchownat(fd, "", uid, gid, AT_EMPTY_PATH));
    res("fchownat(fd,\"\",0)", fchownat(fd, "", uid, gid, 0));
    res("fchownat(fd,f,0)", fchownat(fd, "f", uid, gid, 0));
    close(fd);
    mkdir("d", 0755);
    put("d/g", 0644);
    res("chown(d,uid,gid)", chown("d", uid, gid));
    chmod("d", 0644);
    res("chown(d/g) without search", chown("d/g", uid, gid));
    chmod("d", 0755);

    printf("-- chown and set-user-ID bits\n");
    chmod("f", 06755);
    res("chown(f,-1,-1) on 6755", chown("f", -1, -1));
    printf("mode %o\n", mode_of("f"));
    chmod("f", 06755);
    res("chown(f,uid,gid) on 6755", chown("f", uid, gid));
    printf("mode %o\n", mode_of("f"));
    chmod("f", 06755);
    res("chown(f,0,-1) on 6755", chown("f", 0, -1));
    printf("mode %o\n", mode_of("f"));
    chmod("f", 02644);
    res("chown(f,uid,-1) on 2644", chown("f", uid, -1));
    printf("mode %o\n", mode_of("f"));
    chmod("f", 04644);
    fd = open("f", O_RDONLY);
    res("fchown(fd,-1,gid) on 4644", fchown(fd, -1, gid));
    close(fd);
    printf("mode %o\n", mode_of("f"));
    chmod("d", 06755);
    res("chown(d,uid,gid) on dir 6755", chown("d", uid, gid));
    printf("mode %o\n", mode_of("d"));
    chmod("d", 0755);
    printf("done\n");
    return 0;
}
