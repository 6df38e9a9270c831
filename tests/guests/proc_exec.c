/* proc_exec.c: what survives execve. The program runs itself again through /proc/self/exe
 * with the argument "after", which reports on the state it inherited:
 *   descriptors: O_CLOEXEC ones are closed, others stay open (dup clears the flag, dup3 and
 *   F_DUPFD_CLOEXEC set it, F_SETFD after open sets it); a shared file offset goes through;
 *   signals: a handler is reset to the default, SIG_IGN stays ignored, the blocked mask and a
 *   pending blocked signal stay; argv and envp are the ones passed; the pid is the same one;
 *   the name (comm) is the basename of the path given to execve: "exe".
 * Also: execve in a child leaves the parent unchanged, and the child's status comes back. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_usr1(int s) { (void)s; }

static int after(int argc, char **argv, char **envp)
{
    printf("after exec: argc %d: [%s] [%s]", argc, argv[1], argv[3]);  /* argv[2]: a pid */
    printf("\nafter exec: env:");
    for (char **e = envp; *e; e++)
        printf(" [%s]", *e);
    printf("\n");
    static const char *names[] = {"plain", "O_CLOEXEC", "F_SETFD", "dup of cloexec",
                                  "dup3 O_CLOEXEC", "F_DUPFD_CLOEXEC", "pipe2 rd", "pipe2 wr"};
    for (int fd = 10; fd < 18; fd++)
        printf("fd %d (%s): %s\n", fd, names[fd - 10], fcntl(fd, F_GETFD) >= 0 ? "open" : "closed");
    printf("fd 10 offset: %ld\n", (long)lseek(10, 0, SEEK_CUR));
    struct sigaction sa;
    sigaction(SIGUSR1, 0, &sa);
    printf("SIGUSR1 (had a handler): %s\n", sa.sa_handler == SIG_DFL ? "SIG_DFL" : "kept?");
    sigaction(SIGUSR2, 0, &sa);
    printf("SIGUSR2 (was ignored): %s\n", sa.sa_handler == SIG_IGN ? "SIG_IGN" : "not ignored");
    sigset_t set, pend;
    sigprocmask(SIG_BLOCK, 0, &set);
    printf("SIGTERM still blocked: %s\n", sigismember(&set, SIGTERM) ? "yes" : "no");
    sigpending(&pend);
    printf("SIGTERM still pending: %s\n", sigismember(&pend, SIGTERM) ? "yes" : "no");
    printf("same pid: %s\n", atoi(argv[2]) == getpid() ? "yes" : "no");
    char comm[17] = "";
    prctl(PR_GET_NAME, comm);
    printf("name after exec: %s\n", comm);
    fflush(stdout);
    /* do not die of the pending SIGTERM when unblocking: just leave */
    return 42;
}

int main(int argc, char **argv, char **envp)
{
    if (argc > 1 && strcmp(argv[1], "after") == 0)
        return after(argc, argv, envp);

    int f = open("exec.tmp", O_RDWR | O_CREAT | O_TRUNC, 0644);
    write(f, "abcdef", 6);
    lseek(f, 2, SEEK_SET);
    dup2(f, 10);                                     /* plain */
    int g = open("exec.tmp", O_RDONLY | O_CLOEXEC);
    dup2(g, 11);
    fcntl(11, F_SETFD, FD_CLOEXEC);                  /* dup2 cleared it; set it again */
    close(g);
    g = open("exec.tmp", O_RDONLY);
    dup2(g, 12);
    close(g);
    fcntl(12, F_SETFD, FD_CLOEXEC);                  /* F_SETFD */
    g = dup(11);                                     /* dup of a cloexec fd: flag cleared */
    dup2(g, 13);
    close(g);
    dup3(f, 14, O_CLOEXEC);
    fcntl(f, F_DUPFD_CLOEXEC, 15);
    close(f);
    int p[2];
    pipe2(p, O_CLOEXEC);
    dup3(p[0], 16, O_CLOEXEC);
    dup2(p[1], 17);                                  /* dup2: not cloexec */
    close(p[0]);
    close(p[1]);

    signal(SIGUSR1, on_usr1);
    signal(SIGUSR2, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, 0);
    prctl(PR_SET_NAME, "before-exec");

    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        raise(SIGTERM);                              /* blocked: stays pending */
        char pid[16];
        snprintf(pid, sizeof pid, "%d", getpid());
        char *args[] = {"ignored-argv0", "after", pid, "third arg", 0};
        char *env[] = {"A=1", "EMPTY=", 0};
        execve("/proc/self/exe", args, env);
        perror("execve");
        _exit(127);
    }
    int st;
    waitpid(c, &st, 0);
    printf("parent: child exited %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    char comm[17] = "";
    prctl(PR_GET_NAME, comm);
    printf("parent: name still %s, fd 11 open: %s\n", comm,
           fcntl(11, F_GETFD) >= 0 ? "yes" : "no");
    unlink("exec.tmp");
    return 0;
}
