/* proc_waitflags.c: stopping and continuing a child, as its parent sees it.
 * WNOHANG on a running child returns 0; SIGSTOP stops it: waitpid(WUNTRACED) reports
 * WIFSTOPPED/WSTOPSIG once (a second WNOHANG|WUNTRACED finds nothing new); without WUNTRACED a
 * stop is not reported; SIGCONT: waitpid(WCONTINUED) reports WIFCONTINUED once; waitid gives
 * the same as siginfo codes (CLD_STOPPED, CLD_CONTINUED, CLD_KILLED, CLD_EXITED), with WNOWAIT
 * leaving the event in place. A stopped child killed by SIGKILL dies without a SIGCONT.
 * SIGTSTP and SIGTTIN stop a child that has a group of its own (not orphaned: its parent is
 * in another group of the same session), but not one that ignores them. An orphaned group
 * (where Linux drops these stops) is not tried: natively an orphan's new parent is outside
 * the session, under vsnap the guest's pid 1 is inside it. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *desc(int st)
{
    static char buf[64];
    if (WIFEXITED(st))
        snprintf(buf, sizeof buf, "exited %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, sizeof buf, "killed by %d", WTERMSIG(st));
    else if (WIFSTOPPED(st))
        snprintf(buf, sizeof buf, "stopped by %d", WSTOPSIG(st));
    else if (WIFCONTINUED(st))
        snprintf(buf, sizeof buf, "continued");
    else
        snprintf(buf, sizeof buf, "raw 0x%x", st);
    return buf;
}

static void w(const char *label, pid_t pid, int flags)
{
    int st = 0;
    errno = 0;
    pid_t r = waitpid(pid, &st, flags);
    printf("%-34s %s\n", label, r == pid ? desc(st) : r == 0 ? "0 (nothing to report)"
                                        : errno == ECHILD ? "ECHILD" : "?");
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

static void wid(const char *label, pid_t pid, int flags)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int r = waitid(P_PID, pid, &si, flags);
    if (r == 0 && si.si_pid == 0)
        printf("%-34s 0 (nothing to report)\n", label);
    else
        printf("%-34s %d signo=%d %s status=%d pid==child: %s\n", label, r, si.si_signo,
               code(si.si_code), si.si_status, si.si_pid == pid ? "yes" : "no");
}

static pid_t sleeper(int fds[2])
{
    pipe(fds);
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        char c;
        close(fds[1]);
        while (read(fds[0], &c, 1) != 0)
            ;
        _exit(6);
    }
    close(fds[0]);
    return p;
}

int main(void)
{
    int fds[2];
    pid_t p = sleeper(fds);
    w("WNOHANG, running", p, WNOHANG);
    kill(p, SIGSTOP);
    w("WUNTRACED after SIGSTOP", p, WUNTRACED);
    w("WNOHANG|WUNTRACED again", p, WNOHANG | WUNTRACED);
    kill(p, SIGCONT);
    w("WCONTINUED after SIGCONT", p, WCONTINUED);
    w("WNOHANG|WCONTINUED again", p, WNOHANG | WCONTINUED);
    kill(p, SIGSTOP);
    wid("waitid WSTOPPED|WNOWAIT", p, WSTOPPED | WNOWAIT);
    wid("waitid WSTOPPED (consumes)", p, WSTOPPED);
    wid("waitid WSTOPPED|WNOHANG", p, WSTOPPED | WNOHANG);
    kill(p, SIGCONT);
    wid("waitid WCONTINUED", p, WCONTINUED);
    close(fds[1]);
    wid("waitid WEXITED", p, WEXITED);
    w("waitpid after waitid reaped it", p, 0);

    p = sleeper(fds);
    kill(p, SIGSTOP);
    w("stopped, WNOHANG without WUNTRACED", p, WNOHANG);
    w("WUNTRACED", p, WUNTRACED);
    kill(p, SIGKILL);
    w("SIGKILL while stopped", p, 0);
    close(fds[1]);

    p = sleeper(fds);
    kill(p, SIGSTOP);
    w("WUNTRACED", p, WUNTRACED);
    kill(p, SIGTERM);                 /* stays pending while stopped */
    w("SIGTERM while stopped, WNOHANG", p, WNOHANG);
    kill(p, SIGCONT);                 /* now it runs and dies of SIGTERM */
    wid("SIGCONT, waitid WEXITED", p, WEXITED);  /* not WCONTINUED too: which comes first
                                                    is a race */
    w("waitpid after that", p, 0);
    close(fds[1]);

    for (int sig = SIGTSTP; sig <= SIGTTIN; sig++) {   /* 20, 21 */
        p = sleeper(fds);
        setpgid(p, p);
        kill(p, sig);
        w(sig == SIGTSTP ? "SIGTSTP, own group, WUNTRACED" : "SIGTTIN, own group, WUNTRACED",
          p, WUNTRACED);
        kill(p, SIGKILL);
        waitpid(p, 0, 0);
        close(fds[1]);
    }
    signal(SIGTSTP, SIG_IGN);   /* inherited by the next child */
    p = sleeper(fds);
    kill(p, SIGTSTP);
    kill(p, SIGUSR1);           /* something that does end it, after the SIGTSTP */
    w("SIGTSTP ignored, then SIGUSR1", p, WUNTRACED);
    close(fds[1]);
    signal(SIGTSTP, SIG_DFL);

    errno = 0;
    int r = waitid(P_PID, p, &(siginfo_t){0}, 0);
    printf("waitid with no event flags        %d %s\n", r, errno == EINVAL ? "EINVAL" : "?");
    return 0;
}
