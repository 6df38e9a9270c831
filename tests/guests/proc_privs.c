/* proc_privs.c: what an unprivileged process may not do, before and after fork (the child has
 * the same ids). setuid/setgid/setreuid/setresgid to the ids it has succeed and change nothing;
 * to another id EPERM; setgroups EPERM even to its own group (it needs CAP_SETGID); chroot
 * EPERM. Ids are printed only as relations (the guest's and the native user's numbers differ).
 * Natively the tests run this as uid/gid 65534 when they are root. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *en(int e)
{
    switch (e) {
    case EPERM: return "EPERM";
    case EINVAL: return "EINVAL";
    case ENOENT: return "ENOENT";
    case EFAULT: return "EFAULT";
    default: return "E?";
    }
}

static void res(const char *who, const char *label, long r)
{
    printf("%s %-28s %s\n", who, label, r < 0 ? en(errno) : "ok");
}

/* raw system calls: glibc's setuid family broadcasts to threads, musl's differs in details;
 * the kernel's answer is what is checked */
#define TRY(label, ...) (errno = 0, res(who, label, syscall(__VA_ARGS__)))

static void checks(const char *who)
{
    uid_t u = getuid();
    gid_t g = getgid();
    printf("%s ids: uid==euid %s, gid==egid %s, root %s\n", who, u == geteuid() ? "yes" : "no",
           g == getegid() ? "yes" : "no", u == 0 ? "yes" : "no");
    TRY("setuid(own uid)", SYS_setuid, u);
    TRY("setgid(own gid)", SYS_setgid, g);
    TRY("setuid(uid+1)", SYS_setuid, u + 1);
    TRY("setgid(gid+1)", SYS_setgid, g + 1);
    TRY("setuid(0)", SYS_setuid, 0);
    TRY("setreuid(-1, own)", SYS_setreuid, -1, u);
    TRY("setresgid(own, own, own)", SYS_setresgid, g, g, g);
    TRY("setresuid(-1, uid+1, -1)", SYS_setresuid, -1, u + 1, -1);
    gid_t list[1] = {g};
    TRY("setgroups(1, {own gid})", SYS_setgroups, 1, list);
    TRY("setgroups(0, NULL)", SYS_setgroups, 0, 0);
    TRY("chroot(\".\")", SYS_chroot, ".");
    TRY("chroot(\"/no/such/dir\")", SYS_chroot, "/no/such/dir");
    printf("%s ids unchanged: %s\n", who, getuid() == u && getgid() == g && geteuid() == u &&
                                          getegid() == g ? "yes" : "no");
}

int main(void)
{
    uid_t u = getuid();
    checks("parent:");
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        printf("child:  same uid as the parent: %s\n", getuid() == u ? "yes" : "no");
        checks("child: ");
        fflush(stdout);
        _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
    printf("child exited %d\n", WEXITSTATUS(st));
    return 0;
}
