/* proc_killall.c: kill(-1, sig) reaches every process the sender may signal except itself
 * (and the pid namespace's init). The top process T handles SIGTERM (it may or may not be
 * reached: natively that depends on whether it is init of its namespace; it prints nothing
 * about it), A and B (default SIGTERM, in two different groups) die, C ignores it and lives,
 * the sender K is spared. NATIVELY THIS MUST RUN IN A FRESH PID NAMESPACE (unshare --pid
 * --fork): elsewhere kill(-1) would reach every process of the user. With no argument
 * "yes-i-am-in-a-pid-namespace" it refuses to run, unless getpid() is 1. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int ready[2], stop[2];

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

static void on_term(int s) { (void)s; }

static pid_t child(int mode)
{
    pid_t p = xfork();
    if (p == 0) {
        close(stop[1]);
        signal(SIGTERM, mode == 2 ? SIG_IGN : SIG_DFL);
        if (mode == 1)
            setpgid(0, 0);
        write(ready[1], "r", 1);
        char c;
        while (read(stop[0], &c, 1) != 0)
            ;
        _exit(0);
    }
    return p;
}

int main(int argc, char **argv)
{
    if (getpid() != 1 && !(argc > 1 && strcmp(argv[1], "yes-i-am-in-a-pid-namespace") == 0)) {
        fprintf(stderr, "proc_killall: run me as pid 1 of a fresh pid namespace\n");
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, 0);
    pipe(ready);
    pipe(stop);
    pid_t a = child(0), b = child(1), c = child(2);
    char ch;
    for (int i = 0; i < 3; i++)
        read(ready[0], &ch, 1);
    pid_t k = xfork();
    if (k == 0) {
        close(stop[1]);
        signal(SIGTERM, SIG_DFL);
        errno = 0;
        int r0 = kill(-1, 0);
        int r = kill(-1, SIGTERM);
        printf("K: kill(-1, 0) = %d, kill(-1, SIGTERM) = %d\n", r0, r);
        fflush(stdout);
        _exit(0);
    }
    show("K (sender)", k);
    show("A (default)", a);
    show("B (default, own group)", b);
    close(stop[1]);
    show("C (ignores SIGTERM)", c);
    errno = 0;
    int r = kill(-1, 0);
    printf("T: kill(-1, 0) with no one else left: %d %s\n", r, errno == ESRCH ? "ESRCH" : "");
    return 0;
}
