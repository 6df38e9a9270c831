/* prctl_caps.c: the per-process switches (prctl, membarrier) and the privileged calls an
 * ordinary user may try (capget, capset, sethostname, setdomainname). Prints every result
 * and errno, so a run under vsnap can be compared byte for byte with a native one made as an
 * unprivileged user. Raw system calls: no libc wrapper may hide an answer. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PR_SET_PDEATHSIG 1
#define PR_GET_PDEATHSIG 2
#define PR_GET_DUMPABLE 3
#define PR_SET_DUMPABLE 4
#define PR_SET_NAME 15
#define PR_GET_NAME 16
#define PR_GET_SECCOMP 21
#define PR_CAPBSET_READ 23
#define PR_SET_CHILD_SUBREAPER 36
#define PR_GET_CHILD_SUBREAPER 37
#define PR_SET_NO_NEW_PRIVS 38
#define PR_GET_NO_NEW_PRIVS 39

static void show(const char *what, long r)
{
    printf("%-28s %ld %s\n", what, r, r < 0 ? strerror(errno) : "");
}

static long pr(long op, long a2, long a3, long a4, long a5)
{
    errno = 0;
    return syscall(SYS_prctl, op, a2, a3, a4, a5);
}

static void name(const char *when)
{
    char buf[32];
    memset(buf, 'x', sizeof buf);
    long r = pr(PR_GET_NAME, (long)buf, 0, 0, 0);
    printf("%-28s %ld [%s] pad=%d\n", when, r, buf, buf[15] == 0 && buf[16] == 'x');
}

struct cap_header { unsigned version; int pid; };
struct cap_data { unsigned effective, permitted, inheritable; };

static void caps(unsigned version, int pid, int with_data)
{
    struct cap_header h = {version, pid};
    struct cap_data d[2];
    memset(d, 0x55, sizeof d);
    errno = 0;
    long r = syscall(SYS_capget, &h, with_data ? d : NULL);
    printf("capget %#x pid %d(1=self) data %d: %ld %s version now %#x data %x %x %x %x %x %x\n",
           version, pid == getpid() ? 1 : pid, with_data, r, r < 0 ? strerror(errno) : "", h.version,
           d[0].effective, d[0].permitted, d[0].inheritable,
           d[1].effective, d[1].permitted, d[1].inheritable);
}

static void capset(unsigned version, unsigned e0, unsigned p1, unsigned i0)
{
    struct cap_header h = {version, 0};
    struct cap_data d[2] = {{e0, 0, i0}, {0, p1, 0}};
    errno = 0;
    long r = syscall(SYS_capset, &h, d);
    printf("capset %#x %x %x %x: %ld %s version now %#x\n", version, e0, p1, i0, r,
           r < 0 ? strerror(errno) : "", h.version);
}

static void membarrier(const char *what, long cmd, long flags)
{
    errno = 0;
    long r = syscall(SYS_membarrier, cmd, flags, 0L);
    if (cmd == 0 && r > 0)
        r &= 0x1ff;  /* the commands of Linux 6.1; newer kernels add GET_REGISTRATIONS */
    show(what, r);
}

int main(int argc, char **argv)
{
    int v;
    name("initial name");
    show("set name long", pr(PR_SET_NAME, (long)"a-rather-long-worker-name", 0, 0, 0));
    name("after long name");
    show("set name short", pr(PR_SET_NAME, (long)"w7", 0, 0, 0));
    name("after short name");
    show("set name NULL", pr(PR_SET_NAME, 0, 0, 0, 0));
    show("get name NULL", pr(PR_GET_NAME, 0, 0, 0, 0));

    show("get dumpable", pr(PR_GET_DUMPABLE, 0, 0, 0, 0));
    show("set dumpable 0", pr(PR_SET_DUMPABLE, 0, 0, 0, 0));
    show("get dumpable", pr(PR_GET_DUMPABLE, 0, 0, 0, 0));
    show("set dumpable 2", pr(PR_SET_DUMPABLE, 2, 0, 0, 0));
    show("set dumpable 1", pr(PR_SET_DUMPABLE, 1, 0, 0, 0));
    show("get dumpable", pr(PR_GET_DUMPABLE, 0, 0, 0, 0));

    v = -1; show("get subreaper", pr(PR_GET_CHILD_SUBREAPER, (long)&v, 0, 0, 0));
    printf("  = %d\n", v);
    show("set subreaper 5", pr(PR_SET_CHILD_SUBREAPER, 5, 0, 0, 0));
    v = -1; show("get subreaper", pr(PR_GET_CHILD_SUBREAPER, (long)&v, 0, 0, 0));
    printf("  = %d\n", v);
    show("get subreaper NULL", pr(PR_GET_CHILD_SUBREAPER, 0, 0, 0, 0));

    v = -1; show("get pdeathsig", pr(PR_GET_PDEATHSIG, (long)&v, 0, 0, 0));
    printf("  = %d\n", v);
    show("set pdeathsig 65", pr(PR_SET_PDEATHSIG, 65, 0, 0, 0));
    show("set pdeathsig 15", pr(PR_SET_PDEATHSIG, 15, 0, 0, 0));
    v = -1; show("get pdeathsig", pr(PR_GET_PDEATHSIG, (long)&v, 0, 0, 0));
    printf("  = %d\n", v);

    show("get no_new_privs", pr(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
    show("get no_new_privs 1", pr(PR_GET_NO_NEW_PRIVS, 1, 0, 0, 0));
    show("set no_new_privs 2", pr(PR_SET_NO_NEW_PRIVS, 2, 0, 0, 0));
    show("set no_new_privs 1,1", pr(PR_SET_NO_NEW_PRIVS, 1, 1, 0, 0));
    show("set no_new_privs", pr(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    show("get no_new_privs", pr(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));

    show("get keepcaps", pr(7, 0, 0, 0, 0));
    show("set keepcaps 2", pr(8, 2, 0, 0, 0));
    show("set keepcaps 1", pr(8, 1, 0, 0, 0));
    show("get keepcaps", pr(7, 0, 0, 0, 0));
    show("set timerslack 1234", pr(29, 1234, 0, 0, 0));
    show("get timerslack", pr(30, 0, 0, 0, 0));
    show("get thp_disable", pr(42, 0, 0, 0, 0));
    show("get thp_disable 1", pr(42, 1, 0, 0, 0));
    show("set thp_disable 1,1", pr(41, 1, 1, 0, 0));
    show("set thp_disable 7", pr(41, 7, 0, 0, 0));
    show("get thp_disable", pr(42, 0, 0, 0, 0));
    {
        long tid = 0;
        long r = pr(40, (long)&tid, 0, 0, 0);
        printf("get tid address %ld nonzero %d\n", r, tid != 0);
        show("get tid address NULL", pr(40, 0, 0, 0, 0));
    }
    show("get seccomp", pr(PR_GET_SECCOMP, 0, 0, 0, 0));
    show("capbset read 0", pr(PR_CAPBSET_READ, 0, 0, 0, 0));
    show("capbset read 40", pr(PR_CAPBSET_READ, 40, 0, 0, 0));
    show("capbset read 41", pr(PR_CAPBSET_READ, 41, 0, 0, 0));
    show("unknown option 9999", pr(9999, 0, 0, 0, 0));
    show("unknown option -1", pr(-1, 0, 0, 0, 0));

    caps(0, 0, 0);
    caps(0, 0, 1);
    caps(0x20080522, 0, 1);
    caps(0x20071026, 0, 1);
    caps(0x19980330, 0, 1);
    caps(0x20080522, getpid(), 1);
    caps(0x20080522, -1, 1);
    caps(0x20080522, 0x3ffffff0, 1);
    caps(0x20080522, 0, 0);
    capset(0x20080522, 0, 0, 0);
    capset(0x20080522, 1, 0, 0);
    capset(0x20080522, 0, 1, 0);
    capset(0x20080522, 0, 0x10000, 0);  /* above CAP_LAST_CAP: dropped, as Linux does */
    capset(0x20080522, 0, 0, 4);
    capset(0x19980330, 0, 1, 0);        /* v1 has one word: the second is not read */
    capset(0x1234, 0, 0, 0);

    membarrier("membarrier query", 0, 0);
    membarrier("membarrier query flags", 0, 1);
    membarrier("membarrier private", 8, 0);
    membarrier("membarrier register", 16, 0);
    membarrier("membarrier private", 8, 0);
    membarrier("membarrier sync-core", 32, 0);
    membarrier("membarrier reg sync-core", 64, 0);
    membarrier("membarrier sync-core", 32, 0);
    membarrier("membarrier global exp", 2, 0);
    membarrier("membarrier reg global exp", 4, 0);
    membarrier("membarrier rseq cpu", 128, 1);
    membarrier("membarrier bad", 1024, 0);

    errno = 0; show("sethostname", syscall(SYS_sethostname, "box", 3L));
    errno = 0; show("setdomainname", syscall(SYS_setdomainname, "box", 3L));
    errno = 0; show("sethostname long", syscall(SYS_sethostname, "box", 1000L));

    /* the state again at the end: a checkpoint anywhere above must keep it */
    name("final name");
    v = -1; pr(PR_GET_PDEATHSIG, (long)&v, 0, 0, 0);
    printf("final: dumpable %ld no_new_privs %ld pdeathsig %d", pr(PR_GET_DUMPABLE, 0, 0, 0, 0),
           pr(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), v);
    v = -1; pr(PR_GET_CHILD_SUBREAPER, (long)&v, 0, 0, 0);
    printf(" subreaper %d membarrier %ld", v, (long)syscall(SYS_membarrier, 8L, 0L, 0L));
    printf(" keepcaps %ld timerslack %ld thp_disable %ld\n", pr(7, 0, 0, 0, 0),
           pr(30, 0, 0, 0, 0), pr(42, 0, 0, 0, 0));
    return 0;
}
