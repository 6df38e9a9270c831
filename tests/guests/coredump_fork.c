/* A forked child dies of SIGSEGV (inner, called by outer, writes through a null pointer)
 * and its parent prints how it ended: the signal and the WCOREDUMP bit of its wait status.
 *
 *   coredump_fork LIMIT [sock|plain [DIR]]
 * LIMIT: the RLIMIT_CORE soft limit to set first ("keep": leave it as it is). "sock": the
 * child holds both ends of a socketpair when it crashes, and the parent holds its own pair
 * (what a checkpoint of the machine cannot save). DIR: the child's working directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

__attribute__((noinline)) static void inner(volatile int *p) { *p = 42; }
__attribute__((noinline)) static void outer(volatile int *p) { inner(p); }

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "keep") != 0) {
        struct rlimit r;
        getrlimit(RLIMIT_CORE, &r);
        r.rlim_cur = strtoul(argv[1], 0, 10);
        if (setrlimit(RLIMIT_CORE, &r) != 0) { perror("setrlimit"); return 1; }
    }
    int sock = argc > 2 && strcmp(argv[2], "sock") == 0;
    int mine[2];
    if (sock && socketpair(AF_UNIX, SOCK_STREAM, 0, mine) != 0) { perror("socketpair"); return 1; }
    fflush(stdout);
    pid_t c = fork();
    if (c < 0) { perror("fork"); return 1; }
    if (c == 0) {
        int sv[2];
        if (sock && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) _exit(2);
        if (argc > 3 && chdir(argv[3]) != 0) _exit(3);
        outer((volatile int *)0);
        _exit(4);
    }
    int st;
    if (waitpid(c, &st, 0) != c) { perror("waitpid"); return 1; }
    if (WIFSIGNALED(st))
        printf("child killed by signal %d, core dumped %s\n", WTERMSIG(st),
               WCOREDUMP(st) ? "yes" : "no");
    else
        printf("child exited %d\n", WEXITSTATUS(st));
    if (sock) {  /* the parent's sockets still work after its child's crash */
        char b[3] = {0};
        if (write(mine[0], "ok", 2) != 2 || read(mine[1], b, 2) != 2) return 1;
        printf("parent's socket says %s\n", b);
    }
    return 0;
}
