/* opvm.c: a guest that runs a script of operations, so tests can make thousands of
 * different guests without compiling anything.
 *
 * usage: opvm SCRIPT
 *
 * One operation a line ("open F0 a.txt c", "write F0 68690a", "malloc M3 4096", ...);
 * blank lines and comment lines ('#') are skipped.  The program keeps 16 file slots
 * F0..F15 (file descriptors) and 32 memory slots M0..M31 (malloc'd blocks).  Each
 * operation prints exactly one line, "LINE TEXT = RESULT", where RESULT is "ok ..." or
 * an errno name (from our own table: musl's and glibc's strerror texts differ); at the
 * end come a summary line and EXIT-SUCCESS.  Nothing printed depends on an address, a
 * pid or the time.  opvm.md describes every operation and its output.
 *
 * Each result line leaves in one write(1, ...) straight from a buffer (no stdio; two
 * writes for raise, unblock and alarm, which may kill), so a run that dies, or is
 * checkpointed, between two operations has printed exactly the lines before it.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define NF 16                    /* file slots F0..F15 */
#define NM 32                    /* memory slots M0..M31 */
#define MAXLINE 65536            /* longest script line */
#define MAXIO (1 << 20)          /* largest read / pread */
#define MAXBLOCK (16 << 20)      /* largest malloc / realloc / touch stride / brk step */
#define MAXSCRIPT (4 << 20)
#define MAXNAMES 1024            /* listdir */

static char script[MAXSCRIPT + 1], out[MAXLINE + 80000], names[65536];
static unsigned char iobuf[MAXIO], data[MAXLINE / 2];
static size_t outlen;
static int fds[NF];
static struct { unsigned char *p; size_t n; } mem[NM];
static volatile sig_atomic_t hits[32];     /* handler deliveries, per signal */
static unsigned long long cx = 88172645463325252ull;   /* compute state, kept between ops */
static int lineno, nops, nok, nfail, exit_code = -1;

/* ---- output: one line at a time, built in out[] and written with write(2) ---- */

static void put(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + outlen, sizeof out - outlen, fmt, ap);
    va_end(ap);
    if (n > 0) outlen += (size_t)n < sizeof out - outlen ? (size_t)n : sizeof out - outlen - 1;
}

static void flush_out(void)
{
    for (size_t done = 0; done < outlen; ) {
        ssize_t w = write(1, out + done, outlen - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) _exit(3);
        done += (size_t)w;
    }
    outlen = 0;
}

#define E(x) { x, #x }
static const char *errname(int e)
{
    static const struct { int e; const char *name; } t[] = {
        E(EPERM), E(ENOENT), E(ESRCH), E(EINTR), E(EIO), E(ENXIO), E(E2BIG), E(EBADF),
        E(ECHILD), E(EAGAIN), E(ENOMEM), E(EACCES), E(EFAULT), E(EBUSY), E(EEXIST), E(EXDEV),
        E(ENODEV), E(ENOTDIR), E(EISDIR), E(EINVAL), E(ENFILE), E(EMFILE), E(ETXTBSY), E(EFBIG),
        E(ENOSPC), E(ESPIPE), E(EROFS), E(EMLINK), E(EPIPE), E(ERANGE), E(ENAMETOOLONG),
        E(ENOSYS), E(ENOTEMPTY), E(ELOOP), E(EOVERFLOW), E(EDQUOT), E(EOPNOTSUPP) };
    static char other[16];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i].e == e) return t[i].name;
    snprintf(other, sizeof other, "E%d", e);
    return other;
}

static int fail(int e) { put("%s", errname(e)); return 1; }

/* A system call's result: "ok", or "ok R" when show is set, or the errno name. */
static int res(long long r, int show)
{
    if (r < 0) return fail(errno);
    if (show) put("ok %lld", r); else put("ok");
    return 0;
}

static unsigned long long fnv1a(const unsigned char *p, size_t n)
{
    unsigned long long h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* A read's result: "ok COUNT DATA", DATA the bytes in hex up to 32 of them, else a hash. */
static int put_data(ssize_t n)
{
    if (res(n, 1)) return 1;
    if (n == 0) put(" -");
    else if (n > 32) put(" fnv1a:%016llx", fnv1a(iobuf, (size_t)n));
    else for (ssize_t i = 0; i < n; i++) put("%s%02x", i ? "" : " ", iobuf[i]);
    return 0;
}

/* Signals a script may name.  The stop signals are left out: they would hang a native run. */
#define S(x) { #x, x }
static const struct { const char *name; int sig; } sigs[] = {
    S(SIGHUP), S(SIGINT), S(SIGQUIT), S(SIGILL), S(SIGTRAP), S(SIGABRT), S(SIGBUS), S(SIGFPE),
    S(SIGKILL), S(SIGUSR1), S(SIGSEGV), S(SIGUSR2), S(SIGPIPE), S(SIGALRM), S(SIGTERM),
    S(SIGCHLD), S(SIGCONT), S(SIGURG), S(SIGXCPU), S(SIGXFSZ), S(SIGVTALRM), S(SIGPROF),
    S(SIGWINCH), S(SIGIO), S(SIGPWR), S(SIGSYS) };
#define NSIGS (int)(sizeof sigs / sizeof sigs[0])

static const char *signame(int sig)
{
    for (int i = 0; i < NSIGS; i++)
        if (sigs[i].sig == sig) return sigs[i].name;
    return "SIG?";
}

/* " SIGHUP:1 SIGUSR1:2": every handler count that is not 0, in signal-number order, or " -" */
static int put_counts(void)
{
    int any = 0;
    for (int s = 1; s < 32; s++)
        if (hits[s]) put(" %s:%d", signame(s), (int)hits[s]), any = 1;
    if (!any) put(" -");
    return 0;
}

/* ---- arguments ---- */

/* The op table gives each op's arguments as a string of kinds, one letter each:
 *   F  a file slot that holds an fd      f  any file slot       (v.n: the slot number)
 *   M  a memory slot that holds a block  m  any memory slot
 *   p  a path        h  hex bytes, "-" for none (into data[]; v.n: their count)
 *   s  a signal name (v.n: its number)
 *   k  an open mode, w  a whence (v.n: its index in modes[] or whences[])
 *   and a number (v.n), in the range its letter gives in ranges[].
 * A bad argument jumps back to call(), which prints EPARSE or EBADSLOT. */
typedef struct { long long n; const char *s; } arg;

static const struct { char kind; long long lo, hi; } ranges[] = {
    {'n', 0, MAXIO}, {'o', -LLONG_MAX, LLONG_MAX}, {'l', -1, 1LL << 30}, {'z', 0, MAXBLOCK},
    {'Z', 1, MAXBLOCK}, {'b', 0, 255}, {'c', 0, 1000000000000LL}, {'t', 1, 10000} };

static const char *const modes[] = { "r", "w", "a", "rw", "c", "x", NULL };
static const int mode_flags[] = { O_RDONLY, O_WRONLY | O_CREAT | O_TRUNC,
    O_WRONLY | O_CREAT | O_APPEND, O_RDWR, O_RDWR | O_CREAT | O_TRUNC, O_RDWR | O_CREAT | O_EXCL };
static const char *const whences[] = { "set", "cur", "end", NULL };   /* SEEK_SET, _CUR, _END */

static jmp_buf argfail;
static const char *argerr;

static void reject(const char *why) { argerr = why; longjmp(argfail, 1); }

static long long num(const char *s, long long lo, long long hi)
{
    const char *d = s + (*s == '-');
    size_t n = strlen(d);
    if (n == 0 || n > 19 || strspn(d, "0123456789") != n) reject("EPARSE");
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno || v < lo || v > hi) reject("EPARSE");
    return v;
}

/* "F3" -> 3 (kind 'F' or 'M'); if full, the slot must hold something */
static int slot(const char *s, char kind, int full)
{
    int n = kind == 'F' ? NF : NM;
    if (s[0] != kind || s[1] == '-' || (s[1] == '0' && s[2])) reject("EPARSE");
    int i = (int)num(s + 1, 0, n - 1);
    if (full && (kind == 'F' ? fds[i] < 0 : mem[i].p == NULL)) reject("EBADSLOT");
    return i;
}

/* A relative path of [A-Za-z0-9_.-] and '/', no ".." component: it stays below the cwd. */
static void path(const char *s)
{
    size_t n = strlen(s);
    if (n > 1024 || s[0] == '/' ||
        strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/") != n)
        reject("EPARSE");
    for (const char *c = s; c; c = strchr(c, '/') ? strchr(c, '/') + 1 : NULL)
        if (c[0] == '.' && c[1] == '.' && (c[2] == '/' || c[2] == '\0')) reject("EPARSE");
}

static size_t hex(const char *s)             /* into data[]; returns the byte count */
{
    size_t n = strlen(s);
    if (strcmp(s, "-") == 0) return 0;
    if (n % 2 || strspn(s, "0123456789abcdefABCDEF") != n) reject("EPARSE");
    for (size_t i = 0; i < n / 2; i++) {
        char b[3] = { s[2 * i], s[2 * i + 1], 0 };
        data[i] = (unsigned char)strtoul(b, NULL, 16);
    }
    return n / 2;
}

static int word(const char *s, const char *const *words)   /* s's index in words */
{
    for (int k = 0; words[k]; k++)
        if (strcmp(s, words[k]) == 0) return k;
    reject("EPARSE");
    return -1;
}

static void parse(const char *kinds, char **a, arg *v)
{
    for (int k = 1; kinds[k - 1]; k++) {
        char c = kinds[k - 1];
        const char *s = v[k].s = a[k];
        if (strchr("FfMm", c)) v[k].n = slot(s, (char)toupper(c), isupper(c));
        else if (c == 'p') path(s);
        else if (c == 'h') v[k].n = (long long)hex(s);
        else if (c == 'k' || c == 'w') v[k].n = word(s, c == 'k' ? modes : whences);
        else if (c == 's') {
            int i = 0;
            while (i < NSIGS && strcmp(s, sigs[i].name) != 0) i++;
            if (i == NSIGS) reject("EPARSE");
            v[k].n = sigs[i].sig;
        } else
            for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++)
                if (ranges[r].kind == c) v[k].n = num(s, ranges[r].lo, ranges[r].hi);
    }
}

/* ---- files ---- */

/* Put fd, if the call gave one, into slot i, closing what the slot held before. */
static int set_f(long long i, int fd)
{
    if (fd >= 0 && fds[i] >= 0) close(fds[i]);
    if (fd >= 0) fds[i] = fd;
    return res(fd, 1);
}

static int op_open(arg *v) { return set_f(v[1].n, open(v[2].s, mode_flags[v[3].n], 0644)); }
static int op_dup(arg *v) { return set_f(v[2].n, dup(fds[v[1].n])); }

static int op_close(arg *v)
{
    int r = close(fds[v[1].n]);
    fds[v[1].n] = -1;                      /* the slot is empty even if close failed */
    return res(r, 0);
}

static int op_read(arg *v) { return put_data(read(fds[v[1].n], iobuf, (size_t)v[2].n)); }
static int op_pread(arg *v) { return put_data(pread(fds[v[1].n], iobuf, (size_t)v[2].n, v[3].n)); }
static int op_write(arg *v) { return res(write(fds[v[1].n], data, (size_t)v[2].n), 1); }
static int op_pwrite(arg *v) { return res(pwrite(fds[v[1].n], data, (size_t)v[2].n, v[3].n), 1); }
static int op_ftruncate(arg *v) { return res(ftruncate(fds[v[1].n], v[2].n), 0); }

static int op_lseek(arg *v) { return res(lseek(fds[v[1].n], v[2].n, (int)v[3].n), 1); }
static int op_fstat(arg *v)
{
    struct stat st;
    if (fstat(fds[v[1].n], &st)) return fail(errno);
    mode_t m = st.st_mode;
    if (S_ISREG(m)) put("ok reg %lld", (long long)st.st_size);
    else put("ok %s -", S_ISDIR(m) ? "dir" : S_ISCHR(m) ? "chr" : S_ISFIFO(m) ? "fifo" : "other");
    return 0;                              /* no size for directories: it depends on the fs */
}

static int op_unlink(arg *v) { return res(unlink(v[1].s), 0); }
static int op_mkdir(arg *v) { return res(mkdir(v[1].s, 0755), 0); }
static int op_rmdir(arg *v) { return res(rmdir(v[1].s), 0); }
static int op_rename(arg *v) { return res(rename(v[1].s, v[2].s), 0); }

static int by_name(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Every entry readdir gives, "." and ".." too, sorted by strcmp. */
static int op_listdir(arg *v)
{
    static char *list[MAXNAMES];
    size_t n = 0, used = 0;
    DIR *d = opendir(v[1].s);
    if (!d) return fail(errno);
    for (struct dirent *e; (e = readdir(d)) != NULL; n++) {
        size_t len = strlen(e->d_name) + 1;
        if (n == MAXNAMES || used + len > sizeof names) { closedir(d); return fail(EOVERFLOW); }
        list[n] = memcpy(names + used, e->d_name, len);
        used += len;
    }
    closedir(d);
    qsort(list, n, sizeof list[0], by_name);
    put("ok %zu", n);
    for (size_t k = 0; k < n; k++) put(" %s", list[k]);
    return 0;
}

/* ---- memory: a block's contents are always defined (zero until written) ---- */

static int op_malloc(arg *v)
{
    unsigned char *p = calloc(1, (size_t)v[2].n);
    if (!p) return fail(ENOMEM);
    free(mem[v[1].n].p);                   /* a full slot is released after success */
    mem[v[1].n].p = p, mem[v[1].n].n = (size_t)v[2].n;
    return res(0, 0);
}

static int op_realloc(arg *v)                /* size 0 is refused: glibc frees, musl does not */
{
    size_t n = (size_t)v[2].n, old = mem[v[1].n].n;
    unsigned char *p = realloc(mem[v[1].n].p, n);
    if (!p) return fail(ENOMEM);
    if (n > old) memset(p + old, 0, n - old);
    mem[v[1].n].p = p, mem[v[1].n].n = n;
    return res(0, 0);
}

static int op_free(arg *v)
{
    free(mem[v[1].n].p);
    mem[v[1].n].p = NULL, mem[v[1].n].n = 0;
    return res(0, 0);
}

static int op_fill(arg *v)                   /* byte k becomes BYTE + k + k / 256, mod 256 */
{
    unsigned char *p = mem[v[1].n].p;
    for (size_t k = 0; k < mem[v[1].n].n; k++) p[k] = (unsigned char)(v[2].n + k + (k >> 8));
    return res(0, 0);
}

static int op_touch(arg *v)                  /* add 1 to one byte every STRIDE bytes */
{
    size_t count = 0;
    for (size_t k = 0; k < mem[v[1].n].n; k += (size_t)v[2].n, count++) mem[v[1].n].p[k]++;
    return res((long long)count, 1);
}

static int op_sum(arg *v)
{
    put("ok %zu %016llx", mem[v[1].n].n, fnv1a(mem[v[1].n].p, mem[v[1].n].n));
    return 0;
}

static int op_brk(arg *v)                    /* raw brk: musl's sbrk refuses to grow */
{
    long cur = syscall(SYS_brk, 0);
    return syscall(SYS_brk, cur + v[1].n) == cur + v[1].n ? res(0, 0) : fail(ENOMEM);
}

static int op_compute(arg *v)                /* xorshift64, no system calls */
{
    for (long long k = v[1].n; k > 0; k--) {
        cx ^= cx << 13;
        cx ^= cx >> 7;
        cx ^= cx << 17;
    }
    put("ok %016llx", cx);
    return 0;
}

static int op_print(arg *v) { return res(write(1, data, (size_t)v[1].n), 1); }
static int op_err(arg *v) { return res(write(2, data, (size_t)v[1].n), 1); }

/* ---- signals ---- */

static void count(int sig) { hits[sig]++; }

static int set_action(int sig, void (*h)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h;
    sa.sa_flags = SA_RESTART;
    return res(sigaction(sig, &sa, NULL), 0);
}

static int op_handle(arg *v) { return set_action((int)v[1].n, count); }
static int op_ignore(arg *v) { return set_action((int)v[1].n, SIG_IGN); }
static int op_default(arg *v) { return set_action((int)v[1].n, SIG_DFL); }

static int mask(int how, int sig)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    return res(sigprocmask(how, &set, NULL), 0);
}

static int op_block(arg *v) { return mask(SIG_BLOCK, (int)v[1].n); }
static int op_unblock(arg *v) { return mask(SIG_UNBLOCK, (int)v[1].n) || put_counts(); }
static int op_raise(arg *v) { return res(raise((int)v[1].n), 0) || put_counts(); }

static int op_pending(arg *v)
{
    sigset_t set;
    int any = 0;
    (void)v;
    sigpending(&set);
    put("ok");
    for (int s = 1; s < 32; s++)
        if (sigismember(&set, s) == 1) put(" %s", signame(s)), any = 1;
    if (!any) put(" -");
    return 0;
}

/* A one-shot ITIMER_REAL, then wait for SIGALRM with SIGALRM unblocked. */
static int op_alarm(arg *v)
{
    struct sigaction sa;
    sigset_t during;
    sigaction(SIGALRM, NULL, &sa);
    if (sa.sa_handler == SIG_IGN) return put("EHANG"), 1;   /* it would never come */
    sigprocmask(SIG_SETMASK, NULL, &during);
    sigdelset(&during, SIGALRM);
    struct itimerval it = { { 0, 0 }, { v[1].n / 1000, v[1].n % 1000 * 1000 } };
    if (setitimer(ITIMER_REAL, &it, NULL)) return fail(errno);
    sigsuspend(&during);
    memset(&it, 0, sizeof it);             /* cancel: a pending SIGALRM may have come first */
    setitimer(ITIMER_REAL, &it, NULL);
    put("ok");
    return put_counts();
}

/* ---- processes ---- */

/* The child goes on with the rest of the script; the parent waits for it, then goes on too. */
static int op_fork(arg *v)
{
    int st;
    (void)v;
    pid_t pid = fork();
    if (pid <= 0) return pid ? fail(errno) : (put("ok child"), 0);
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return fail(errno);
    if (WIFSIGNALED(st) && write(1, "\n", 1) != 1) _exit(3);   /* end the child's last line */
    if (WIFEXITED(st)) put("ok parent exit %d", WEXITSTATUS(st));
    else put("ok parent signal %s", signame(WTERMSIG(st)));
    return 0;
}

static int op_exit(arg *v) { exit_code = (int)v[1].n; return res(0, 0); }

/* ---- the operation table and the interpreter ---- */

#define EARLY 1      /* print "LINE TEXT = " before the call: a signal may end the process in it */

#define OP(name, kinds, flags) { #name, kinds, flags, op_##name }
static const struct op { const char *name, *kinds; int flags; int (*fn)(arg *); } ops[] = {
    OP(open, "fpk", 0),      OP(close, "F", 0),       OP(dup, "Ff", 0),        OP(read, "Fn", 0),
    OP(write, "Fh", 0),      OP(pread, "Fno", 0),     OP(pwrite, "Fho", 0),    OP(lseek, "Fow", 0),
    OP(ftruncate, "Fl", 0),  OP(fstat, "F", 0),       OP(unlink, "p", 0),      OP(mkdir, "p", 0),
    OP(rmdir, "p", 0),       OP(rename, "pp", 0),     OP(listdir, "p", 0),     OP(malloc, "mz", 0),
    OP(realloc, "MZ", 0),    OP(free, "M", 0),        OP(fill, "Mb", 0),       OP(touch, "MZ", 0),
    OP(sum, "M", 0),         OP(brk, "z", 0),         OP(compute, "c", 0),     OP(print, "h", 0),
    OP(err, "h", 0),         OP(handle, "s", 0),      OP(ignore, "s", 0),      OP(default, "s", 0),
    OP(block, "s", 0),       OP(unblock, "s", EARLY), OP(raise, "s", EARLY),   OP(pending, "", 0),
    OP(alarm, "t", EARLY),   OP(fork, "", 0),         OP(exit, "b", 0),
};

/* Parse the arguments and run op.  Returns 1 if it failed. */
static int call(const struct op *op, char **a)
{
    arg v[8];
    if (setjmp(argfail)) return put("%s", argerr), 1;
    parse(op->kinds, a, v);
    if (op->flags & EARLY) flush_out();
    return op->fn(v);
}

static void run_line(char *line)
{
    char *a[8];
    int n = 0, failed;
    const struct op *op = NULL;
    put("%d %s = ", lineno, line);         /* the line as read, before strtok cuts it up */
    for (char *t = strtok(line, " \t"); t; t = strtok(NULL, " \t"))
        if (n < 8) a[n++] = t; else n = 9;
    for (size_t k = 0; n >= 1 && n <= 8 && k < sizeof ops / sizeof ops[0]; k++)
        if (strcmp(a[0], ops[k].name) == 0 && strlen(ops[k].kinds) == (size_t)n - 1) op = &ops[k];
    failed = op ? call(op, a) : (put("EPARSE"), 1);   /* unknown op or wrong argument count */
    nops++;
    failed ? nfail++ : nok++;
    put("\n");
    flush_out();
}

static void finish(int code)
{
    int files = 0, blocks = 0;
    for (int i = 0; i < NF; i++) files += fds[i] >= 0;
    for (int i = 0; i < NM; i++) blocks += mem[i].p != NULL;
    put("summary ops=%d ok=%d failed=%d files=%d blocks=%d\n", nops, nok, nfail, files, blocks);
    if (code == 0) put("EXIT-SUCCESS\n");
    flush_out();
    exit(code);
}

int main(int argc, char **argv)
{
    if (argc != 2) { fprintf(stderr, "usage: opvm SCRIPT\n"); return 2; }
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) { perror(argv[1]); return 2; }
    size_t len = 0;
    ssize_t r = 0;
    while (len <= MAXSCRIPT && (r = read(fd, script + len, MAXSCRIPT + 1 - len)) > 0)
        len += (size_t)r;
    if (r < 0 || len > MAXSCRIPT) {
        fprintf(stderr, "opvm: %s: unreadable or over 4 MiB\n", argv[1]);
        return 2;
    }
    close(fd);

    /* The same start wherever it runs: no inherited fds below 32, default signals, umask 022. */
    for (fd = 3; fd < 32; fd++) close(fd);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int i = 0; i < NSIGS; i++)
        if (sigs[i].sig != SIGKILL) signal(sigs[i].sig, SIG_DFL);
    umask(022);
    for (int i = 0; i < NF; i++) fds[i] = -1;

    for (char *line = script, *nl; line < script + len; line = nl + 1) {
        nl = memchr(line, '\n', (size_t)(script + len - line));
        if (!nl) nl = script + len;        /* the last line may lack its newline */
        *nl = '\0';
        lineno++;
        if (nl - line > MAXLINE) {
            fprintf(stderr, "opvm: line %d: over 64 KiB\n", lineno);
            return 2;
        }
        size_t lead = strspn(line, " \t");
        if (line[lead] == '\0' || line[lead] == '#') continue;   /* blank, or a comment */
        run_line(line);
        if (exit_code >= 0) finish(exit_code);
    }
    finish(0);
}
