/* /proc/self and /dev as a program sees them, printed so that a native run (chroot with
 * /proc mounted, the /dev nodes made) and a vsnap run can be compared byte for byte: the pid
 * is printed as PID, pipe inodes as N, and fields whose numbers differ on purpose (memory
 * sizes, ids) are checked against the system calls that report them, printing only whether
 * they agree. Run as: /prog ARG... in a root holding data/a.txt ("abcdefgh"). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

extern char **environ;
static char pid[16];
static char buf[65536];

/* the text with the pid replaced by PID and pipe:[digits] by pipe:[N] */
static void put(const char *label, const char *s) {
    char out[4096]; size_t o = 0, n = strlen(pid);
    for (const char *p = s; *p && o < sizeof out - 8; ) {
        if (!strncmp(p, pid, n) && !(p[n] >= '0' && p[n] <= '9') &&
            (p == s || !(p[-1] >= '0' && p[-1] <= '9'))) {
            memcpy(out + o, "PID", 3); o += 3; p += n;
        } else if (!strncmp(p, "pipe:[", 6)) {
            memcpy(out + o, "pipe:[N]", 8); o += 8; p = strchr(p, ']') ? strchr(p, ']') + 1 : p + 6;
        } else out[o++] = *p++;
    }
    out[o] = 0;
    printf("%s: %s\n", label, out);
}

static ssize_t slurp(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -errno;
    ssize_t total = 0, n;
    while ((n = read(fd, buf + total, sizeof buf - 1 - total)) > 0) total += n;
    close(fd);
    buf[total] = 0;
    return total;
}

static void link_of(const char *label, const char *path) {
    char t[4096]; ssize_t n = readlink(path, t, sizeof t - 1);
    if (n < 0) { printf("%s: %s\n", label, strerror(errno)); return; }
    t[n] = 0; put(label, t);
}

static void fd_link(const char *label, int fd) {
    char p[64]; snprintf(p, sizeof p, "/proc/self/fd/%d", fd); link_of(label, p);
}

static long field(const char *text, const char *name) {   /* "Name:\t123" */
    const char *p = strstr(text, name);
    return p ? strtol(p + strlen(name), 0, 10) : -999;
}

static unsigned long long hexfield(const char *text, const char *name) {
    const char *p = strstr(text, name);
    return p ? strtoull(p + strlen(name), 0, 16) : ~0ULL;
}

static void handler(int s) { (void)s; }

static void cmdline_environ(void) {
    ssize_t n = slurp("/proc/self/cmdline");
    for (ssize_t i = 0; i < n; i++) if (!buf[i]) buf[i] = '|';
    put("cmdline", buf);
    n = slurp("/proc/self/environ");
    for (ssize_t i = 0; i < n; i++) if (!buf[i]) buf[i] = '|';
    put("environ", buf);
}

static void auxv(void) {
    char **e = environ;
    while (*e) e++;
    unsigned long *stack = (unsigned long *)(e + 1), *file = (unsigned long *)buf;
    ssize_t n = slurp("/proc/self/auxv");
    int same = n > 0 && n % 16 == 0, keys = 0, has_random = 0, has_phdr = 0;
    for (ssize_t i = 0; same && i < n / 8; i += 2) {
        same = file[i] == stack[i] && file[i + 1] == stack[i + 1];
        keys++;
        has_random |= file[i] == 25; has_phdr |= file[i] == 3;
        if (file[i] == 0) { same = same && (i + 2) * 8 == n; break; }
    }
    printf("auxv: equals the stack's=%d random=%d phdr=%d ends in AT_NULL=%d\n", same,
           has_random, has_phdr, n >= 16 && file[n / 8 - 2] == 0);
}

static void status_and_stat(int argc, char **argv) {
    sigset_t set; sigemptyset(&set); sigaddset(&set, SIGUSR2); sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, 0);
    signal(SIGHUP, SIG_IGN); signal(SIGUSR1, handler);
    raise(SIGTERM);                          /* blocked: pending for the thread */
    umask(027);
    slurp("/proc/self/status");
    char name[64] = ""; sscanf(strstr(buf, "Name:"), "Name:\t%63s", name);
    printf("status: Name=%s State=%.11s Threads=%ld Umask=%s\n", name,
           strstr(buf, "State:") + 7, field(buf, "Threads:"),
           strstr(buf, "Umask:\t0027") ? "0027" : "wrong");
    printf("status: pids agree=%d uid agrees=%d gid agrees=%d\n",
           field(buf, "\nPid:") == getpid() && field(buf, "Tgid:") == getpid() &&
           field(buf, "PPid:") == getppid() && field(buf, "NSpgid:") == getpgrp() &&
           field(buf, "NSsid:") == getsid(0),
           field(buf, "Uid:") == (long)getuid(), field(buf, "Gid:") == (long)getgid());
    unsigned long long blk = hexfield(buf, "SigBlk:"), ign = hexfield(buf, "SigIgn:");
    unsigned long long cgt = hexfield(buf, "SigCgt:"), pnd = hexfield(buf, "SigPnd:");
    unsigned long long want_blk = (1ULL << (SIGUSR2 - 1)) | (1ULL << (SIGTERM - 1));
    printf("status: SigBlk=%d SigIgn has HUP=%d SigCgt has USR1=%d pending TERM=%d\n",
           blk == want_blk, !!(ign & (1ULL << (SIGHUP - 1))), !!(cgt & (1ULL << (SIGUSR1 - 1))),
           !!((pnd | hexfield(buf, "ShdPnd:")) & (1ULL << (SIGTERM - 1))));
    long vmsize = field(buf, "VmSize:"), vmrss = field(buf, "VmRSS:"), stk = field(buf, "VmStk:");
    printf("status: Vm sizes make sense=%d\n", vmsize > 0 && vmrss > 0 && vmrss <= vmsize &&
           stk > 0 && field(buf, "VmPeak:") >= vmsize);

    slurp("/proc/self/stat");
    char *close_paren = strrchr(buf, ')');
    char comm[64] = ""; sscanf(buf, "%*d (%63[^)])", comm);
    unsigned long long f[60]; int nf = 2;
    for (char *p = close_paren + 2; *p && nf < 60; nf++) {
        if (nf == 2) { f[nf] = *p; p += 2; continue; }        /* state */
        f[nf] = strtoull(p, &p, 10); while (*p == ' ') p++;
        if (*p == '\n') { nf++; break; }
    }
    printf("stat: comm=%s state=%c fields=%d pid agrees=%d\n", comm, (char)f[2], nf,
           atol(buf) == getpid() && (long)f[3] == getppid() && (long)f[4] == getpgrp() &&
           (long)f[5] == getsid(0));
    /* 48 arg_start, 49 arg_end, 50 env_start, 51 env_end (1-based in proc(5)) */
    char *last_arg = argv[argc - 1];
    printf("stat: args agree=%d env agrees=%d threads=%llu blocked agrees=%d\n",
           f[47] == (unsigned long)argv[0] && f[48] == (unsigned long)(last_arg + strlen(last_arg) + 1),
           environ[0] && f[49] == (unsigned long)environ[0], f[19], f[31] == want_blk);
    slurp("/proc/self/statm");
    unsigned long sm[8]; int ns = sscanf(buf, "%lu %lu %lu %lu %lu %lu %lu", sm, sm + 1, sm + 2,
                                         sm + 3, sm + 4, sm + 5, sm + 6);
    printf("statm: fields=%d size agrees with status=%d\n", ns, sm[0] * 4 == (unsigned long)vmsize);
    signal(SIGTERM, SIG_IGN);   /* let it go, then restore the process's state */
    sigprocmask(SIG_UNBLOCK, &set, 0);
    signal(SIGHUP, SIG_DFL); signal(SIGUSR1, SIG_DFL); signal(SIGTERM, SIG_DFL);
    umask(022);
}

static void maps_and_smaps(void) {
    static char maps[65536];
    slurp("/proc/self/maps"); strcpy(maps, buf);
    slurp("/proc/self/smaps");
    int vmas = 0, sizes_ok = 1, links_ok = 1, file_maps = 0;
    for (char *line = maps; *line; ) {
        char *nl = strchr(line, '\n'); *nl = 0;
        unsigned long lo, hi; char path[1024] = "";
        sscanf(line, "%lx-%lx %*s %*s %*s %*s %1023s", &lo, &hi, path);
        char *at = strstr(buf, line);
        if (!at || field(at, "\nSize:") != (long)((hi - lo) >> 10)) sizes_ok = 0;
        if (path[0] == '/') {
            char p[128], t[1024]; snprintf(p, sizeof p, "/proc/self/map_files/%lx-%lx", lo, hi);
            ssize_t n = readlink(p, t, sizeof t - 1);
            if (n < 0 || (t[n] = 0, strcmp(t, path))) links_ok = 0;
            file_maps++;
        }
        vmas++; line = nl + 1;
    }
    int in_smaps = 0;
    for (char *p = buf; (p = strstr(p, "\nVmFlags:")); p++) in_smaps++;
    printf("smaps: one record per VMA=%d sizes agree=%d map_files agree=%d (%d)\n",
           in_smaps == vmas, sizes_ok, links_ok, file_maps > 0);
    unsigned long lo, hi; char p[128];
    sscanf(maps, "%lx-%lx", &lo, &hi);
    snprintf(p, sizeof p, "/proc/self/map_files/%lx-%lx", lo, hi);
    errno = 0; int fd = open(p, O_RDONLY);
    printf("map_files open: %s\n", fd >= 0 ? "ok" : strerror(errno));
    errno = 0; fd = open("/proc/self/status", O_WRONLY);
    printf("status for writing: %s\n", fd >= 0 ? "ok" : strerror(errno));
}

static void fds(void) {
    mkdir("/tmp", 0755);
    int a = open("/data/a.txt", O_RDWR | O_APPEND);
    char c[4]; read(a, c, 3);
    int d = open("/data", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int n = open("/dev/null", O_WRONLY);
    int s = open("/proc/self/status", O_RDONLY);
    int t = open("/tmp/gone", O_RDWR | O_CREAT | O_TRUNC, 0600);
    write(t, "ghost", 5); unlink("/tmp/gone");
    fd_link("fd 0", 0); fd_link("fd 1", 1); fd_link("fd 2", 2);
    fd_link("file", a); fd_link("dir", d); fd_link("null", n); fd_link("proc", s);
    fd_link("deleted", t);
    char p[64]; snprintf(p, sizeof p, "/proc/self/fdinfo/%d", a); slurp(p);
    printf("fdinfo file: pos=%ld flags=%lo\n", field(buf, "pos:"),
           strtoul(strstr(buf, "flags:") + 7, 0, 8));
    snprintf(p, sizeof p, "/proc/self/fdinfo/%d", d); slurp(p);
    printf("fdinfo dir: pos=%ld flags=%lo\n", field(buf, "pos:"),
           strtoul(strstr(buf, "flags:") + 7, 0, 8));
    /* the listing of fd/, in order */
    DIR *dir = opendir("/proc/self/fd"); struct dirent *e; char names[512] = "";
    while ((e = readdir(dir))) { strcat(names, e->d_name); strcat(names, " "); }
    printf("fd/: %s(own %d)\n", names, dirfd(dir));
    closedir(dir);
    /* following the links: the same file afresh, with an offset of its own */
    snprintf(p, sizeof p, "/proc/self/fd/%d", t);
    int again = open(p, O_RDONLY); char g[8] = ""; ssize_t got = read(again, g, 7);
    printf("reopen deleted: read=%zd %.5s offsets %ld %ld\n", got, g,
           (long)lseek(t, 0, SEEK_CUR), (long)lseek(again, 0, SEEK_CUR));
    snprintf(p, sizeof p, "/proc/self/fd/%d", a);
    int a2 = open(p, O_RDONLY); got = read(a2, g, 4);
    printf("reopen file: read=%zd %.4s\n", got, g);
    struct stat s1, s2; fstat(a, &s1); stat(p, &s2);
    printf("stat through link: same inode=%d\n", s1.st_ino == s2.st_ino && s1.st_dev == s2.st_dev);
    struct stat l; snprintf(p, sizeof p, "/proc/self/fd/%d", n); lstat(p, &l);
    printf("lstat link: mode=%o\n", l.st_mode);
    close(a); close(a2); close(d); close(n); close(s); close(t); close(again);
    snprintf(p, sizeof p, "/proc/self/fd/%d", a);
    printf("closed: %s\n", access(p, F_OK) ? strerror(errno) : "still there");
}

static void links(void) {
    link_of("exe", "/proc/self/exe");
    int fd = open("/proc/self/exe", O_RDONLY); char m[4] = "";
    printf("exe opens: %d %.3s\n", read(fd, m, 4) == 4, m + 1); close(fd);
    chdir("/data"); link_of("cwd", "/proc/self/cwd"); chdir("/");
    link_of("root", "/proc/self/root");
    link_of("self", "/proc/self");
    link_of("thread-self", "/proc/thread-self");
    link_of("mounts", "/proc/mounts");
    link_of("stdin", "/dev/stdin"); link_of("stderr", "/dev/stderr"); link_of("fd", "/dev/fd");
    char p[64]; snprintf(p, sizeof p, "/proc/%s/comm", pid); slurp(p); put("comm by pid", buf);
    snprintf(p, sizeof p, "/proc/%s/task/%s/comm", pid, pid); slurp(p); put("task comm", buf);
    slurp("/proc/self/comm"); put("comm", buf);
    int c = open("/proc/self/comm", O_WRONLY);
    printf("comm write=%zd", write(c, "a-name-longer-than-15\n", 22)); close(c);
    slurp("/proc/self/status"); char nm[64]; sscanf(strstr(buf, "Name:"), "Name:\t%63s", nm);
    slurp("/proc/self/comm"); printf(" Name=%s comm=%s", nm, buf);
    c = open("/proc/self/comm", O_WRONLY); write(c, "x\n", 2); close(c);
    slurp("/proc/self/comm"); for (char *q = buf; *q; q++) if (*q == '\n') *q = '$';
    printf("now=%s\n", buf);
    c = open("/proc/self/comm", O_WRONLY); write(c, "prog", 4); close(c);
    printf("mounts readable=%d mountinfo readable=%d\n", slurp("/proc/self/mounts") > 0,
           slurp("/proc/self/mountinfo") > 0);
    struct stat st; printf("/proc/self/fd is a dir=%d\n", !stat("/dev/fd/", &st) && S_ISDIR(st.st_mode));
}

static void devices(void) {
    const char *names[] = {"null", "zero", "full", "random", "urandom", "tty", 0};
    for (int i = 0; names[i]; i++) {
        char p[32]; struct stat st; snprintf(p, sizeof p, "/dev/%s", names[i]);
        if (stat(p, &st)) { printf("%s: %s\n", p, strerror(errno)); continue; }
        printf("%s: chr=%d %u,%u\n", p, S_ISCHR(st.st_mode), major(st.st_rdev), minor(st.st_rdev));
    }
    int z = open("/dev/zero", O_RDWR); char b[32]; memset(b, 'x', sizeof b);
    ssize_t r = read(z, b, sizeof b); int zeros = 1;
    for (int i = 0; i < 32; i++) zeros &= b[i] == 0;
    printf("zero: read=%zd zeros=%d write=%zd\n", r, zeros, write(z, "abc", 3));
    int nl = open("/dev/null", O_RDWR);
    printf("lseek: zero=%ld null=%ld\n", (long)lseek(z, 100, SEEK_SET), (long)lseek(nl, 7, SEEK_SET));
    close(nl);
    errno = 0; nl = open("/dev/null", O_RDWR | O_CREAT | O_EXCL, 0600);
    printf("excl: %d %s\n", nl, strerror(errno));
    char *m = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, z, 0);
    printf("zero: mmap ok=%d %d\n", m != MAP_FAILED, m != MAP_FAILED ? m[4097] : -1);
    if (m != MAP_FAILED) { m[5] = 1; munmap(m, 8192); }
    close(z);
    int f = open("/dev/full", O_RDWR); errno = 0;
    ssize_t w = write(f, "x", 1);
    printf("full: write=%zd %s read=%zd\n", w, strerror(errno), read(f, b, 16));
    close(f);
    int u = open("/dev/urandom", O_RDONLY);
    printf("urandom: read=%zd\n", read(u, b, 32)); close(u);
    u = open("/dev/random", O_RDONLY);
    printf("random: read=%zd\n", read(u, b, 16)); close(u);
    DIR *d = opendir("/dev"); struct dirent *e; int seen = 0;
    const char *want[] = {"null", "zero", "full", "random", "urandom", "tty", "stdin", "stdout",
                          "stderr", "fd", 0};
    while ((e = readdir(d)))
        for (int i = 0; want[i]; i++) seen += !strcmp(e->d_name, want[i]);
    closedir(d);
    printf("/dev lists the ten=%d\n", seen == 10);
    d = opendir("/"); int dev = 0, proc = 0;
    while ((e = readdir(d))) { dev |= !strcmp(e->d_name, "dev"); proc |= !strcmp(e->d_name, "proc"); }
    closedir(d);
    printf("/ lists dev=%d proc=%d\n", dev, proc);
}

int main(int argc, char **argv) {
    snprintf(pid, sizeof pid, "%d", getpid());
    setvbuf(stdout, 0, _IONBF, 0);
    cmdline_environ();
    auxv();
    status_and_stat(argc, argv);
    maps_and_smaps();
    fds();
    links();
    devices();
    printf("EXIT-SUCCESS\n");
    return 0;
}
