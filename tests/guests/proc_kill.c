/* proc_kill.c: kill(2) to a pid, to 0 (the caller's group), to -pgid, and its errors.
 * The top process forks L, which makes its own group (so kill(0) never reaches whoever
 * started us) and forks A (SIGUSR1 default: dies), B (a handler that counts and acknowledges
 * through a pipe) and C (SIGUSR1 ignored) into it, and G1, G2 into another group.
 * Who died of what comes from waitpid, in a fixed order; no pids are printed. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *en(int e)
{
    switch (e) {
    case EPERM: return "EPERM";
    case ESRCH: return "ESRCH";
    case EINVAL: return "EINVAL";
    default: return "E?";
    }
}

static void res(const char *label, int r)
{
    printf("%-34s %s\n", label, r < 0 ? en(errno) : "ok");
}

#define TRY(label, call) (errno = 0, res(label, (call)))

static pid_t xfork(void)
{
    fflush(stdout);
    pid_t p = fork();
    if (p < 0) {
        perror("fork");
        exit(1);
    }
    return p;
}

static void show(const char *who, pid_t p)
{
    int st;
    waitpid(p, &st, 0);
    if (WIFEXITED(st))
        printf("%s: exited %d\n", who, WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        printf("%s: killed by signal %d\n", who, WTERMSIG(st));
}

static int ack[2], stop[2], ready[2];
static volatile sig_atomic_t count;

static void on_usr1(int s)
{
    (void)s;
    count++;
    write(ack[1], "a", 1);
}

static void on_usr1_quiet(int s) { (void)s; count++; }

static pid_t member(int mode)
{
    pid_t p = xfork();
    if (p == 0) {
        close(stop[1]);
        if (mode == 0)
            signal(SIGUSR1, SIG_DFL);
        if (mode == 1)
            signal(SIGUSR1, on_usr1);
        if (mode == 2)
            signal(SIGUSR1, SIG_IGN);
        if (mode == 3) {             /* a second group: G1 leads it, G2 joins it */
            signal(SIGUSR1, SIG_DFL);
            setpgid(0, 0);
        }
        write(ready[1], "r", 1);
        char c;
        while (read(stop[0], &c, 1) != 0)
            ;
        _exit(count);
    }
    return p;
}

static void await(int fd, int n)
{
    char c;
    while (n-- > 0)
        if (read(fd, &c, 1) != 1)
            exit(8);
}

static int leader(void)
{
    setpgid(0, 0);
    signal(SIGUSR1, on_usr1_quiet);
    pipe(ack);
    pipe(stop);
    pipe(ready);
    pid_t a = member(0), b = member(1), c = member(2);
    pid_t g1 = member(3);
    await(ready[0], 4);
    pid_t g2 = xfork();
    if (g2 == 0) {
        setpgid(0, g1);
        write(ready[1], "r", 1);
        pause();
        _exit(0);
    }
    await(ready[0], 1);

    TRY("kill(A, 0)", kill(a, 0));
    TRY("kill(A, 65)", kill(a, 65));
    TRY("kill(A, -1)", kill(a, -1));
    TRY("kill(99999999, 0)", kill(99999999, 0));
    TRY("kill(-99999999, SIGUSR1)", kill(-99999999, SIGUSR1));
    TRY("kill(INT_MIN, 0)", kill(INT_MIN, 0));
    TRY("kill(-G1, 0)", kill(-g1, 0));

    TRY("kill(B, SIGUSR1)", kill(b, SIGUSR1));
    await(ack[0], 1);
    /* tgkill: one thread, named by its thread group and its thread id (both B here) */
    TRY("tgkill(B, B, SIGUSR1)", syscall(SYS_tgkill, b, b, SIGUSR1));
    await(ack[0], 1);
    TRY("tgkill(A, B, 0) wrong group", syscall(SYS_tgkill, a, b, 0));
    TRY("tgkill(B, B, 65)", syscall(SYS_tgkill, b, b, 65));
    TRY("tgkill(-1, B, 0)", syscall(SYS_tgkill, -1, b, 0));
    TRY("tkill(B, 0)", syscall(SYS_tkill, b, 0));
    TRY("kill(0, SIGUSR1)", kill(0, SIGUSR1));
    await(ack[0], 1);                /* B has handled it: and so have A, C and L */
    printf("L handled its own kill(0): %s\n", count == 1 ? "yes" : "no");
    TRY("kill(-G1, SIGTERM)", kill(-g1, SIGTERM));
    show("G1", g1);
    show("G2", g2);
    show("A (default)", a);
    TRY("kill(reaped A, 0)", kill(a, 0));
    close(stop[1]);
    show("B (handler)", b);
    show("C (ignored)", c);
    fflush(stdout);
    return 0;
}

int main(void)
{
    pid_t l = xfork();
    if (l == 0)
        exit(leader());
    show("L", l);
    return 0;
}
