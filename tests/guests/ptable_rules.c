/* The process-table rules of Linux, natively: setpgid/setsid/getsid/getpgid/kill(.., 0)/wait4/
 * waitid errnos and results, in one fixed sequence that tests/test_proctable.py replays on
 * vsnap/proctable.py. Prints one line per step, "step: result", with pids as names (P, S, A, B,
 * C, D) so the output does not depend on the host's pids.
 *
 * P forks S; S calls setsid() (S is not a group leader) and runs everything else in its fresh
 * session, so nothing depends on how P was started. Children A, B (exec'd), C (own session) and
 * D (exits at once) are held by a pipe and synchronised by pipes, never by sleeping.
 * Never signals anything but its own children, and only with 0, SIGSTOP and SIGCONT. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t P, S, A, B, C, D;

static const char *ename(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case ESRCH: return "ESRCH";
    case ECHILD: return "ECHILD";
    case EACCES: return "EACCES";
    case EINVAL: return "EINVAL";
    default: return "E?";
    }
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (write(1, buf, (size_t)n) != n) _exit(99);
}

static const char *name(pid_t pid) {
    static char other[32];
    if (pid == P) return "P";
    if (pid == S) return "S";
    if (pid == A) return "A";
    if (pid == B) return "B";
    if (pid == C) return "C";
    if (pid == D) return "D";
    if (pid == 0) return "none";
    snprintf(other, sizeof other, "pid%d", (int)pid);
    return other;
}

static void ok(const char *step, long r) {          /* 0 or -1/errno */
    if (r < 0) say("%s: %s\n", step, ename(errno));
    else say("%s: ok\n", step);
}

static void who(const char *step, pid_t r) {         /* a pid, or -1/errno */
    if (r < 0) say("%s: %s\n", step, ename(errno));
    else say("%s: %s\n", step, name(r));
}

static void waited(const char *step, pid_t r, int st) {
    if (r < 0) say("%s: %s\n", step, ename(errno));
    else if (r == 0) say("%s: none\n", step);
    else say("%s: %s %#x\n", step, name(r), st);
}

/* st is read after the call: C leaves the order of argument evaluation open */
#define W(step, call) do { pid_t r_ = (call); waited(step, r_, st); } while (0)

static void idwaited(const char *step, int r, siginfo_t *si) {
    if (r < 0) say("%s: %s\n", step, ename(errno));
    else if (si->si_pid == 0) say("%s: none\n", step);
    else say("%s: %s code %d status %d\n", step, name(si->si_pid), si->si_code, si->si_status);
}

static int hold[2];

static void held(int code) {                          /* a child: wait for the end, exit code */
    char c;
    close(hold[1]);
    while (read(hold[0], &c, 1) != 0) {}
    _exit(code);
}

static void zombie(pid_t pid) {                       /* until pid is a zombie, not reaping it */
    siginfo_t si;
    while (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) < 0 && errno == EINTR) {}
}

static int session(void) {
    int st, ex[2], cs[2];
    char c;
    siginfo_t si;
    ok("S setsid", setsid());
    ok("S setsid again", setsid());
    who("S getsid", getsid(0));
    who("S getpgid", getpgid(0));
    if (pipe(hold) < 0) return 90;

    if ((A = fork()) == 0) held(1);
    ok("setpgid A A", setpgid(A, A));
    who("getpgid A", getpgid(A));
    ok("setpgid A S", setpgid(A, S));
    ok("setpgid A nogroup", setpgid(A, P));
    ok("setpgid A -1", setpgid(A, -1));
    ok("setpgid P", setpgid(P, 0));
    ok("setpgid S self-leader", setpgid(0, 0));
    ok("setpgid A A again", setpgid(A, 0));

    if (pipe2(ex, O_CLOEXEC) < 0) return 91;
    if ((B = fork()) == 0) {
        char fd[16];
        snprintf(fd, sizeof fd, "%d", hold[0]);
        close(hold[1]);
        execl("/proc/self/exe", "ptable_rules", "hold", fd, (char *)0);
        _exit(98);
    }
    close(ex[1]);
    while (read(ex[0], &c, 1) > 0) {}                 /* EOF: B has exec'd */
    close(ex[0]);
    ok("setpgid B", setpgid(B, 0));
    who("getpgid B", getpgid(B));

    if (pipe(cs) < 0) return 92;
    if ((C = fork()) == 0) {
        close(cs[0]);
        if (setsid() < 0) _exit(97);
        if (write(cs[1], "x", 1) != 1) _exit(96);
        held(2);
    }
    close(cs[1]);
    if (read(cs[0], &c, 1) != 1) return 93;          /* C has its own session */
    close(cs[0]);
    who("getsid C", getsid(C));
    ok("setpgid C", setpgid(C, 0));
    ok("setpgid A C", setpgid(A, C));
    ok("S setpgid S C", setpgid(0, C));

    ok("kill 0", kill(0, 0));
    ok("kill -S", kill(-S, 0));
    ok("kill -A", kill(-A, 0));
    ok("kill -C", kill(-C, 0));
    ok("kill C", kill(C, 0));

    if ((D = fork()) == 0) _exit(7);
    zombie(D);
    ok("kill D zombie", kill(D, 0));
    ok("setpgid D A", setpgid(D, A));
    who("getpgid D", getpgid(D));
    who("getsid D", getsid(D));
    st = 0;
    W("wait -A", waitpid(-A, &st, WNOHANG));
    W("wait D reaped", waitpid(D, &st, WNOHANG));
    ok("kill D reaped", kill(D, 0));
    ok("kill -D", kill(-D, 0));
    W("wait -P", waitpid(-P, &st, WNOHANG));
    W("wait any", waitpid(-1, &st, WNOHANG));
    W("wait 0", waitpid(0, &st, WNOHANG));
    W("wait4 WNOWAIT", (pid_t)syscall(SYS_wait4, -1, &st, WNOHANG | WNOWAIT, 0));
    memset(&si, 0, sizeof si);
    idwaited("waitid pgid 0", waitid(P_PGID, 0, &si, WEXITED | WNOHANG), &si);
    idwaited("waitid pid 0", waitid(P_PID, 0, &si, WEXITED | WNOHANG), &si);
    idwaited("waitid no event", waitid(P_ALL, 0, &si, WNOHANG), &si);

    ok("stop A", kill(A, SIGSTOP));
    W("wait A stopped", waitpid(A, &st, WUNTRACED));
    W("wait A stopped again", waitpid(A, &st, WUNTRACED | WNOHANG));
    ok("cont A", kill(A, SIGCONT));
    W("wait A untraced", waitpid(A, &st, WUNTRACED | WNOHANG));
    W("wait A continued", waitpid(A, &st, WCONTINUED));
    W("wait A continued again", waitpid(A, &st, WCONTINUED | WNOHANG));
    ok("stop A 2", kill(A, SIGSTOP));
    memset(&si, 0, sizeof si);
    idwaited("waitid A nowait", waitid(P_PID, (id_t)A, &si, WSTOPPED | WNOWAIT), &si);
    W("wait A still", waitpid(A, &st, WUNTRACED | WNOHANG));
    ok("stop A 3", kill(A, SIGSTOP));
    W("wait A once", waitpid(A, &st, WUNTRACED | WNOHANG));
    ok("cont A 2", kill(A, SIGCONT));
    ok("stop A 4", kill(A, SIGSTOP));
    idwaited("waitid A stopped", waitid(P_PID, (id_t)A, &si, WSTOPPED | WNOWAIT), &si);
    ok("cont A 3", kill(A, SIGCONT));
    W("wait A stop dropped", waitpid(A, &st, WUNTRACED | WNOHANG));
    memset(&si, 0, sizeof si);
    idwaited("waitid A continued", waitid(P_PID, (id_t)A, &si, WCONTINUED | WNOHANG), &si);

    close(hold[0]);
    close(hold[1]);                                   /* A, B and C exit */
    zombie(A);
    zombie(B);
    zombie(C);
    idwaited("waitid only stopped", waitid(P_ALL, 0, &si, WSTOPPED | WNOHANG), &si);
    W("reap 1", waitpid(-1, &st, 0));
    W("reap 2", waitpid(-1, &st, 0));
    W("reap 3", waitpid(-1, &st, 0));
    W("reap 4", waitpid(-1, &st, 0));
    return 0;
}

int main(int argc, char **argv) {
    int st;
    if (argc == 3 && strcmp(argv[1], "hold") == 0) {  /* B after exec */
        char c;
        while (read(atoi(argv[2]), &c, 1) != 0) {}
        return 3;
    }
    P = getpid();
    if ((S = fork()) == 0) {
        S = getpid();
        _exit(session());
    }
    W("P wait S", waitpid(S, &st, 0));
    return 0;
}
