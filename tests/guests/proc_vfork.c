/* proc_vfork.c: vfork. The parent is suspended until the child calls execve or _exit; the
 * child runs in the parent's memory (Linux shares it: a store the child makes before _exit is
 * seen by the parent, which POSIX leaves undefined but every shell-like program relies on not
 * breaking), the child has its own fd table (a close in the child leaves the parent's fd open).
 * Then vfork + execve of this program ("child" mode) with a pipe as its stdout, and vfork +
 * execve of a missing file: _exit(127) as a shell does. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int shared;

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        printf("exec'd child says %s, ppid is the vfork parent: %s\n", argv[2],
               atoi(argv[3]) == getppid() ? "yes" : "no");
        return 5;
    }
    int st;
    int fds[2];
    pipe(fds);
    fflush(stdout);
    pid_t p = vfork();
    if (p == 0) {
        shared = 42;
        close(fds[0]);   /* the child's own fd table */
        _exit(9);
    }
    printf("vfork: parent runs after the child's _exit, saw its store: %s\n",
           shared == 42 ? "yes" : "no");
    printf("vfork: fd the child closed is open here: %s\n",
           fcntl(fds[0], F_GETFD) >= 0 ? "yes" : "no");
    waitpid(p, &st, 0);
    printf("vfork: child exited %d\n", WEXITSTATUS(st));

    char me[16];
    snprintf(me, sizeof me, "%d", getpid());
    char *args[] = {"proc_vfork", "child", "hello", me, 0};
    fflush(stdout);
    p = vfork();
    if (p == 0) {
        dup2(fds[1], 1);
        execve("/proc/self/exe", args, (char *[]){0});
        _exit(127);
    }
    close(fds[1]);
    char buf[200];
    ssize_t n, total = 0;
    while ((n = read(fds[0], buf + total, sizeof buf - 1 - total)) > 0)
        total += n;
    buf[total] = 0;
    waitpid(p, &st, 0);
    printf("vfork+execve: child wrote: %s", buf);
    printf("vfork+execve: child exited %d\n", WEXITSTATUS(st));

    fflush(stdout);
    p = vfork();
    if (p == 0) {
        execve("./no-such-program", args, (char *[]){0});
        shared = errno;
        _exit(127);
    }
    waitpid(p, &st, 0);
    printf("vfork+execve(missing): exited %d, errno seen by the parent: %s\n",
           WEXITSTATUS(st), shared == ENOENT ? "ENOENT" : "?");
    return 0;
}
