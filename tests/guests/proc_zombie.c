/* proc_zombie.c: zombies and reparenting.
 * A child that has exited stays a zombie until waited for: waitid(WNOWAIT) sees it without
 * reaping it, kill(pid, 0) and getpgid(pid) still find it; after waitpid it is gone (ESRCH).
 * An orphan: a grandchild asks for SIGUSR1 on its parent's death (PR_SET_PDEATHSIG); when the
 * middle process exits, the grandchild gets the signal and a new parent. Natively the new
 * parent is init or the nearest subreaper, under vsnap the guest's pid 1: the grandchild prints
 * only "reparented: yes", and sends its lines to the top process through a pipe, so that all
 * output comes from one process, in a fixed order. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *yesno(int b) { return b ? "yes" : "no"; }

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

static void zombie(void)
{
    pid_t pid = xfork();
    if (pid == 0)
        _exit(5);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int r = waitid(P_PID, pid, &si, WEXITED | WNOWAIT);
    printf("waitid(WNOWAIT)            %d code=%s status=%d pid==child: %s\n", r,
           si.si_code == CLD_EXITED ? "CLD_EXITED" : "?", si.si_status,
           yesno(si.si_pid == pid));
    printf("kill(zombie, 0)            %d\n", kill(pid, 0));
    printf("getpgid(zombie)==mine      %s\n", yesno(getpgid(pid) == getpgrp()));
    memset(&si, 0, sizeof si);
    r = waitid(P_PID, pid, &si, WEXITED | WNOWAIT | WNOHANG);
    printf("waitid again, still there  %d pid==child: %s\n", r, yesno(si.si_pid == pid));
    int st;
    r = waitpid(pid, &st, 0);
    printf("waitpid reaps it           %s exited %d\n", yesno(r == pid), WEXITSTATUS(st));
    errno = 0;
    r = kill(pid, 0);
    printf("kill(reaped, 0)            %d %s\n", r, errno == ESRCH ? "ESRCH" : "?");
}

static void orphan(void)
{
    int report[2], ready[2];
    pipe(report);
    pid_t middle = xfork();
    if (middle == 0) {
        close(report[0]);
        pipe(ready);
        pid_t me = getpid();
        pid_t g = xfork();
        if (g == 0) {
            close(ready[0]);
            sigset_t set;
            sigemptyset(&set);
            sigaddset(&set, SIGUSR1);
            sigprocmask(SIG_BLOCK, &set, 0);
            prctl(PR_SET_PDEATHSIG, SIGUSR1);
            int before = getppid() == me;
            write(ready[1], "r", 1);
            close(ready[1]);
            int sig = 0;
            sigwait(&set, &sig);
            char line[200];
            int n = snprintf(line, sizeof line,
                             "grandchild: parent was the middle process: %s\n"
                             "grandchild: got SIGUSR1 when it died: %s\n"
                             "grandchild: reparented: %s\n",
                             yesno(before), yesno(sig == SIGUSR1), yesno(getppid() != me));
            write(report[1], line, n);
            _exit(0);
        }
        close(ready[1]);
        char c;
        read(ready[0], &c, 1);  /* the grandchild has its death signal set */
        _exit(3);
    }
    close(report[1]);
    int st;
    waitpid(middle, &st, 0);
    printf("middle process exited %d\n", WEXITSTATUS(st));
    char buf[512];
    ssize_t n, total = 0;
    while ((n = read(report[0], buf + total, sizeof buf - 1 - total)) > 0)
        total += n;  /* until EOF: the grandchild has exited */
    buf[total] = 0;
    fputs(buf, stdout);
}

int main(void)
{
    zombie();
    orphan();
    return 0;
}
