/* proc_sigchld.c: SIGCHLD. Its default action is to ignore (a parent sent SIGCHLD lives on and
 * its children still become zombies to wait for); a handler gets si_code/si_status/si_pid for
 * an exit, a death by signal and a stop; SA_NOCLDSTOP drops the stop notification; SIG_IGN and
 * SA_NOCLDWAIT reap children automatically (wait blocks until they are gone, then ECHILD), and
 * with SA_NOCLDWAIT a handler is still called. SIGCHLD stays blocked except inside sigsuspend,
 * so every handler call happens at a known point. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t calls, last_code, last_status, last_pid;

static void on_chld(int s, siginfo_t *si, void *ctx)
{
    (void)s, (void)ctx;
    calls++;
    last_code = si->si_code;
    last_status = si->si_status;
    last_pid = si->si_pid;
}

static const char *code(int c)
{
    switch (c) {
    case CLD_EXITED: return "CLD_EXITED";
    case CLD_KILLED: return "CLD_KILLED";
    case CLD_DUMPED: return "CLD_DUMPED";
    case CLD_STOPPED: return "CLD_STOPPED";
    case CLD_CONTINUED: return "CLD_CONTINUED";
    default: return "?";
    }
}

static int gate[2];

/* how: 0 exits, 1 dies of SIGUSR2, 2 stops, and once continued waits until gate closes */
static pid_t child(int how)
{
    if (how == 2)
        pipe(gate);
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        if (how == 1)
            raise(SIGUSR2);
        if (how == 2) {
            char c;
            close(gate[1]);
            raise(SIGSTOP);
            read(gate[0], &c, 1);
        }
        _exit(3);
    }
    if (how == 2)
        close(gate[0]);
    return p;
}

static void set(void (*h)(int), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    if (h) {
        sa.sa_handler = h;
    } else {
        sa.sa_sigaction = on_chld;
        flags |= SA_SIGINFO;
    }
    sa.sa_flags = flags;
    sigaction(SIGCHLD, &sa, 0);
}

static int pending_chld(void)
{
    sigset_t p;
    sigpending(&p);
    return sigismember(&p, SIGCHLD);
}

static void deliver(const char *label, pid_t p)
{
    sigset_t none;
    sigemptyset(&none);
    calls = 0;
    sigsuspend(&none);
    printf("%-26s handler calls %d, %s status %d pid==child: %s\n", label, (int)calls,
           code(last_code), (int)last_status, last_pid == p ? "yes" : "no");
}

int main(void)
{
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    int st;

    /* default: ignored, but children still wait to be waited for */
    kill(getpid(), SIGCHLD);
    printf("default, kill(self, SIGCHLD): still alive\n");
    sigprocmask(SIG_BLOCK, &chld, 0);
    pid_t p = child(0);
    siginfo_t si;
    waitid(P_PID, p, &si, WNOWAIT | WEXITED);
    printf("default, child exited: SIGCHLD pending %s, ", pending_chld() ? "yes" : "no");
    printf("waitpid %s\n", waitpid(p, &st, 0) == p ? "reaps it" : "fails");
    sigprocmask(SIG_UNBLOCK, &chld, 0);   /* discards the pending one: its action is ignore */
    sigprocmask(SIG_BLOCK, &chld, 0);
    printf("default, after unblocking: pending %s\n", pending_chld() ? "yes" : "no");

    /* a handler */
    set(0, 0);
    p = child(0);
    deliver("handler, exit(3):", p);
    waitpid(p, &st, 0);
    p = child(1);
    deliver("handler, raise(SIGUSR2):", p);
    waitpid(p, &st, 0);
    p = child(2);
    deliver("handler, raise(SIGSTOP):", p);
    kill(p, SIGCONT);
    deliver("handler, SIGCONT:", p);
    close(gate[1]);
    deliver("handler, then exit(3):", p);
    waitpid(p, &st, 0);

    /* SA_NOCLDSTOP: no SIGCHLD for a stop (nor for a continue) */
    set(0, SA_NOCLDSTOP);
    p = child(2);
    waitpid(p, &st, WUNTRACED);
    printf("SA_NOCLDSTOP, stopped: SIGCHLD pending %s\n", pending_chld() ? "yes" : "no");
    kill(p, SIGCONT);
    waitpid(p, &st, WCONTINUED);
    printf("SA_NOCLDSTOP, continued: SIGCHLD pending %s\n", pending_chld() ? "yes" : "no");
    close(gate[1]);
    deliver("SA_NOCLDSTOP, exit(3):", p);
    waitpid(p, &st, 0);

    /* SIG_IGN: automatic reaping */
    signal(SIGCHLD, SIG_IGN);
    sigprocmask(SIG_UNBLOCK, &chld, 0);
    p = child(0);
    child(0);
    errno = 0;
    int r = wait(&st);
    printf("SIG_IGN: wait() %d %s\n", r, errno == ECHILD ? "ECHILD" : "?");
    errno = 0;
    r = waitpid(p, &st, 0);
    printf("SIG_IGN: waitpid(child) %d %s\n", r, errno == ECHILD ? "ECHILD" : "?");

    /* SA_NOCLDWAIT with a handler: reaped, and the handler still runs */
    sigprocmask(SIG_BLOCK, &chld, 0);
    set(0, SA_NOCLDWAIT);
    p = child(0);
    deliver("SA_NOCLDWAIT, exit(3):", p);
    errno = 0;
    r = waitpid(p, &st, 0);
    printf("SA_NOCLDWAIT: waitpid(child) %d %s\n", r, errno == ECHILD ? "ECHILD" : "?");

    /* back to the default: zombies again */
    signal(SIGCHLD, SIG_DFL);
    p = child(0);
    r = waitpid(p, &st, 0);
    printf("SIG_DFL again: waitpid %s, exited %d\n", r == p ? "reaps it" : "fails",
           WEXITSTATUS(st));
    return 0;
}
