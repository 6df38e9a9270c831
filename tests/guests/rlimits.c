/* rlimits.c MODE: set resource limits and run into them; prints what happened, the same
   natively (as an unprivileged user) and under vsnap.
   rules    setrlimit/getrlimit/prlimit's checks and what they report back
   nofile   RLIMIT_NOFILE: dup to EMFILE, dup2 and F_DUPFD past the limit
   fsize    RLIMIT_FSIZE: a partial write, then a write past it (SIGXFSZ kills: status 153)
   fsize-ign / fsize-handler   the same with SIGXFSZ ignored (EFBIG) or caught
   mem      RLIMIT_AS and RLIMIT_DATA: mmap, brk, mprotect and mremap refused with ENOMEM
   cpu / cpu-handler           RLIMIT_CPU: SIGXCPU kills (152), or is caught and comes again
                               until the hard limit's SIGKILL (137)
   nocore   sets RLIMIT_CORE to 0/0 and aborts: vsnap --core writes no core for it */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *err(int e)
{
    switch (e) {
    case 0: return "ok";
    case EINVAL: return "EINVAL";
    case EPERM: return "EPERM";
    case EMFILE: return "EMFILE";
    case EBADF: return "EBADF";
    case EFBIG: return "EFBIG";
    case ENOMEM: return "ENOMEM";
    default: return strerror(e);
    }
}

static void show(const char *what, long r)
{
    printf("%-28s %ld %s\n", what, r, r < 0 ? err(errno) : "ok");
    fflush(stdout);
}

static void lim(const char *name, int res)
{
    struct rlimit r;
    getrlimit(res, &r);
    printf("%-8s soft=%lld hard=%lld\n", name, r.rlim_cur == RLIM_INFINITY ? -1LL : (long long)r.rlim_cur,
           r.rlim_max == RLIM_INFINITY ? -1LL : (long long)r.rlim_max);
    fflush(stdout);
}

static int set(int res, rlim_t cur, rlim_t max)
{
    struct rlimit r = {cur, max};
    errno = 0;
    return setrlimit(res, &r);
}

static void rules(void)
{
    show("set NOFILE 100/200", set(RLIMIT_NOFILE, 100, 200));
    lim("NOFILE", RLIMIT_NOFILE);
    show("set NOFILE 300/200", set(RLIMIT_NOFILE, 300, 200));
    show("raise hard NOFILE to 300", set(RLIMIT_NOFILE, 100, 300));
    show("set NOFILE 200/200", set(RLIMIT_NOFILE, 200, 200));
    show("lower hard NOFILE to 150", set(RLIMIT_NOFILE, 150, 150));
    show("raise it back to 200", set(RLIMIT_NOFILE, 150, 200));
    lim("NOFILE", RLIMIT_NOFILE);
    struct rlimit r = {4096, 8192}, old;
    errno = 0;
    show("bad resource 99", syscall(SYS_prlimit64, 0, 99, NULL, &old));
    errno = 0;
    show("getrlimit 16", syscall(SYS_getrlimit, 16, &old));
    r.rlim_cur = 1 << 20; r.rlim_max = 1 << 21;
    show("prlimit FSIZE", prlimit(0, RLIMIT_FSIZE, &r, &old));
    printf("old FSIZE soft=%lld\n", old.rlim_cur == RLIM_INFINITY ? -1LL : (long long)old.rlim_cur);
    r.rlim_cur = 1 << 19; r.rlim_max = 1 << 21;
    show("prlimit FSIZE again", prlimit(0, RLIMIT_FSIZE, &r, &old));
    printf("old FSIZE soft=%lld hard=%lld\n", (long long)old.rlim_cur, (long long)old.rlim_max);
    lim("FSIZE", RLIMIT_FSIZE);
    show("set STACK 4M/unlimited", set(RLIMIT_STACK, 4 << 20, RLIM_INFINITY));
    lim("STACK", RLIMIT_STACK);
    show("set CORE 0/0", set(RLIMIT_CORE, 0, 0));
    show("set CORE 1M/1M", set(RLIMIT_CORE, 1 << 20, 1 << 20));
    lim("CORE", RLIMIT_CORE);
}

static void nofile(void)
{
    show("set NOFILE 8/8", set(RLIMIT_NOFILE, 8, 8));
    int fd, last = -1;
    while ((fd = dup(0)) >= 0) last = fd;
    printf("dup up to fd %d, then %s\n", last, err(errno));
    errno = 0;
    show("dup2(0, 8)", dup2(0, 8));
    errno = 0;
    show("dup2(0, 7)", dup2(0, 7));
    errno = 0;
    show("F_DUPFD from 8", fcntl(0, F_DUPFD, 8));
    close(5);
    errno = 0;
    show("F_DUPFD from 3", fcntl(0, F_DUPFD, 3));
    errno = 0;
    show("open when full", open(".", O_RDONLY));
    show("raise soft to 9? (hard 8)", set(RLIMIT_NOFILE, 9, 9));
}

static void on_xfsz(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    printf("caught signal %d code %d from self %d\n", sig, si->si_code, si->si_pid == getpid());
}

static void fsize(const char *how)
{
    if (!strcmp(how, "fsize-ign")) signal(SIGXFSZ, SIG_IGN);
    if (!strcmp(how, "fsize-handler")) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_xfsz;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGXFSZ, &sa, NULL);
    }
    show("set FSIZE 10", set(RLIMIT_FSIZE, 10, RLIM_INFINITY));
    int fd = open("out.txt", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    show("write 6", write(fd, "abcdef", 6));
    show("write 6 more", write(fd, "ghijkl", 6));
    show("write 0 at the limit", write(fd, "", 0));
    show("write at the limit", write(fd, "mnop", 4));
    show("ftruncate to 5", ftruncate(fd, 5));
    show("ftruncate to 20", ftruncate(fd, 20));
    show("pwrite 4 at 8", pwrite(fd, "WXYZ", 4, 8));
    close(fd);
}

static void mem(void)
{
    long page = sysconf(_SC_PAGESIZE);
    show("set AS 64M", set(RLIMIT_AS, 64 << 20, RLIM_INFINITY));
    void *p = mmap(NULL, 128 << 20, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    show("mmap 128M", p == MAP_FAILED ? -1 : 0);
    void *q = mmap(NULL, 16 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    show("mmap 16M", q == MAP_FAILED ? -1 : 0);
    errno = 0;
    void *r = mremap(q, 16 << 20, 96 << 20, MREMAP_MAYMOVE);
    show("mremap to 96M", r == MAP_FAILED ? -1 : 0);
    show("set AS unlimited", set(RLIMIT_AS, RLIM_INFINITY, RLIM_INFINITY));
    show("set DATA 32M", set(RLIMIT_DATA, 32 << 20, RLIM_INFINITY));
    p = mmap(NULL, 64 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    show("mmap 64M writable", p == MAP_FAILED ? -1 : 0);
    p = mmap(NULL, 64 << 20, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    show("mmap 64M read-only", p == MAP_FAILED ? -1 : 0);
    errno = 0;
    show("mprotect it writable", mprotect(p, 64 << 20, PROT_READ | PROT_WRITE));
    errno = 0;
    show("mprotect a page writable", mprotect(p, page, PROT_READ | PROT_WRITE));
    long brk0 = syscall(SYS_brk, 0);
    long brk1 = syscall(SYS_brk, brk0 + (64 << 20));
    printf("brk +64M moved: %s\n", brk1 == brk0 ? "no" : "yes");
    brk1 = syscall(SYS_brk, brk0 + page);
    printf("brk +1 page moved: %s\n", brk1 == brk0 ? "no" : "yes");
}

static volatile sig_atomic_t xcpu;

static void on_xcpu(int sig)
{
    (void)sig;
    xcpu++;
    struct rlimit r;
    getrlimit(RLIMIT_CPU, &r);
    char line[80];
    int n = snprintf(line, sizeof line, "SIGXCPU %d, soft limit now %ld\n", xcpu, (long)r.rlim_cur);
    write(1, line, n);
}

static void cpu(const char *how)
{
    if (!strcmp(how, "cpu-handler")) {
        signal(SIGXCPU, on_xcpu);
        show("set CPU 1/2", set(RLIMIT_CPU, 1, 2));
    } else {
        show("set CPU 1/unlimited", set(RLIMIT_CPU, 1, RLIM_INFINITY));
    }
    /* user time, no system call (vsnap's clock: 1 ns an instruction; a loop of system calls
       would need a million of them a virtual second, several times slower to emulate) */
    static volatile unsigned long spins;
    for (;;) spins++;
}

static int recurse(int depth)
{
    char frame[64 << 10];  /* 64 KiB a level, every page touched */
    for (size_t i = 0; i < sizeof frame; i += 4096) frame[i] = (char)depth;
    frame[sizeof frame - 1] = (char)depth;
    __asm__ volatile("" : : "r"(frame) : "memory");  /* the compiler keeps all of it */
    int below = depth > 1 ? recurse(depth - 1) : 0;
    __asm__ volatile("" : : "r"(frame) : "memory");
    return below + frame[0] + frame[sizeof frame - 1];
}

static void on_segv(int sig)
{
    (void)sig;
    write(1, "SIGSEGV: the stack could not grow\n", 34);
    _exit(0);
}

static void deep(const char *what, int kib)
{
    printf("%s: recurse %d KiB ...", what, kib);
    fflush(stdout);
    recurse(kib / 64);
    printf(" ok\n");
    fflush(stdout);
}

static void stack(const char *how)
{
    static char alt[64 << 10];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt};
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_segv;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGSEGV, &sa, NULL);
    if (!strcmp(how, "stack-small")) {
        show("set STACK 1M", set(RLIMIT_STACK, 1 << 20, RLIM_INFINITY));
        deep("under 1M", 512);
        deep("under 1M", 2048);
    } else if (!strcmp(how, "stack-big")) {
        show("set STACK 16M", set(RLIMIT_STACK, 16 << 20, RLIM_INFINITY));
        deep("under 16M", 12 << 10);
    } else {
        deep("under 8M", 4 << 10);
        deep("under 8M", 12 << 10);
    }
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "rules";
    if (!strcmp(mode, "rules")) rules();
    else if (!strcmp(mode, "nofile")) nofile();
    else if (!strncmp(mode, "fsize", 5)) fsize(mode);
    else if (!strcmp(mode, "mem")) mem();
    else if (!strncmp(mode, "cpu", 3)) cpu(mode);
    else if (!strncmp(mode, "stack", 5)) stack(mode);
    else if (!strcmp(mode, "nocore")) set(RLIMIT_CORE, 0, 0), abort();
    printf("done\n");
    return 0;
}
