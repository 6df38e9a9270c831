/* proc_wait.c: fork + wait and the exit status a parent sees: exit codes (only the low 8 bits
 * travel), _exit without a stdio flush, death by a signal raised, sent by the parent or caused
 * by a fault, the raw status word (core-dump bit masked off: it depends on RLIMIT_CORE), the
 * ECHILD cases, waitpid(-1) collecting several children, and stdio's unflushed buffer copied
 * into the child by fork (so it is written twice). No pids are printed. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *en(int e)
{
    switch (e) {
    case ECHILD: return "ECHILD";
    case EINVAL: return "EINVAL";
    case ESRCH: return "ESRCH";
    default: return "E?";
    }
}

static void show(const char *what, int st)
{
    st &= ~0x80;  /* WCOREDUMP: whether a core was written is the host's business */
    if (WIFEXITED(st))
        printf("%-22s exited %d (raw 0x%04x)\n", what, WEXITSTATUS(st), st);
    else if (WIFSIGNALED(st))
        printf("%-22s killed by signal %d (raw 0x%04x)\n", what, WTERMSIG(st), st);
    else
        printf("%-22s other (raw 0x%04x)\n", what, st);
}

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

static void child(const char *what, int mode)
{
    pid_t p = xfork();
    if (p == 0) {
        struct rlimit no = {0, 0};
        setrlimit(RLIMIT_CORE, &no);  /* no core files left behind */
        switch (mode) {
        case 0: exit(0);
        case 1: exit(1);
        case 2: exit(255);
        case 3: exit(256);                       /* only the low 8 bits: 0 */
        case 4: printf("unflushed"); _exit(42);  /* _exit: the text is lost */
        case 5: raise(SIGTERM); break;
        case 6: raise(SIGKILL); break;
        case 7: abort();
        case 8: *(volatile int *)0 = 1; break;   /* SIGSEGV */
        case 9: raise(SIGUSR2); break;
        }
        exit(99);
    }
    int st;
    pid_t r = waitpid(p, &st, 0);
    if (r != p) {
        printf("%-22s waitpid failed\n", what);
        return;
    }
    show(what, st);
}

int main(void)
{
    child("exit(0)", 0);
    child("exit(1)", 1);
    child("exit(255)", 2);
    child("exit(256)", 3);
    child("_exit(42)", 4);
    child("raise(SIGTERM)", 5);
    child("raise(SIGKILL)", 6);
    child("abort()", 7);
    child("store to NULL", 8);
    child("raise(SIGUSR2)", 9);

    /* killed by the parent while blocked in read */
    int fds[2];
    pipe(fds);
    pid_t p = xfork();
    if (p == 0) {
        char c;
        close(fds[1]);
        read(fds[0], &c, 1);
        _exit(0);
    }
    close(fds[0]);
    kill(p, SIGKILL);
    int st;
    waitpid(p, &st, 0);
    show("kill(child, SIGKILL)", st);
    close(fds[1]);

    /* the ECHILD cases */
    int r;
    errno = 0, r = waitpid(p, &st, 0);
    printf("waitpid(reaped child)  %d %s\n", r, en(errno));
    errno = 0, r = waitpid(getpid(), &st, 0);
    printf("waitpid(getpid())      %d %s\n", r, en(errno));
    errno = 0, r = wait(&st);
    printf("wait() no children     %d %s\n", r, en(errno));
    errno = 0, r = waitpid(-1, &st, 0x10);  /* no such flag */
    printf("waitpid(-1, bad flags) %d %s\n", r, en(errno));

    /* waitpid(-1) collects every child, in whatever order they end: count the codes */
    for (int i = 0; i < 5; i++)
        if (xfork() == 0)
            _exit(10 + i);
    int seen = 0, n = 0;
    while ((p = waitpid(-1, &st, 0)) > 0) {
        n++;
        seen |= 1 << (WEXITSTATUS(st) - 10);
    }
    printf("waitpid(-1) collected  %d children, codes mask 0x%x, then %s\n", n, seen,
           en(errno));

    /* fork copies stdio's buffer: text not flushed before fork is written by both */
    fflush(stdout);
    printf("written before fork, unflushed\n");
    p = fork();
    if (p == 0)
        exit(0);  /* exit flushes the child's copy */
    waitpid(p, &st, 0);
    printf("parent done\n");
    return 0;
}
