/* proc_spawn.c: posix_spawn of this program ("child" mode), with file actions (open a file at
 * fd 3, dup2 a pipe onto stdout, close fd 4) and attributes (a new process group, a signal
 * mask, SIGUSR1 reset to default while the parent ignores it); the child reports what it got.
 * Then the errors: spawning a missing file gives ENOENT as posix_spawn's return value (musl
 * and glibc both report exec failures that way, without a child left to wait for), and a file
 * action that fails (opening a missing file) gives its errno. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *en(int e)
{
    switch (e) {
    case 0: return "0";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case ENOEXEC: return "ENOEXEC";
    default: return "E?";
    }
}

static int child(char **argv)
{
    char buf[64] = "";
    ssize_t n = read(3, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("child: argv [%s] [%s]\n", argv[1], argv[2]);
    printf("child: fd 3 reads \"%s\", fd 4 %s\n", buf, fcntl(4, F_GETFD) >= 0 ? "open" : "closed");
    printf("child: own process group: %s, same session: %s\n",
           getpgrp() == getpid() ? "yes" : "no",
           getsid(0) == getsid(getppid()) ? "yes" : "no");
    sigset_t m;
    sigprocmask(SIG_BLOCK, 0, &m);
    printf("child: SIGUSR2 blocked %s, SIGTERM blocked %s\n",
           sigismember(&m, SIGUSR2) ? "yes" : "no", sigismember(&m, SIGTERM) ? "yes" : "no");
    struct sigaction usr1, hup;
    sigaction(SIGUSR1, 0, &usr1);
    sigaction(SIGHUP, 0, &hup);
    printf("child: SIGUSR1 %s; SIGHUP %s\n", usr1.sa_handler == SIG_DFL ? "default" : "ignored",
           hup.sa_handler == SIG_IGN ? "ignored" : "default");
    return 7;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "child") == 0)
        return child(argv);
    int fd = open("spawn.in", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    write(fd, "from the file", 13);
    close(fd);
    int p[2], q[2];
    pipe(q);
    p[0] = fcntl(q[0], F_DUPFD, 20);   /* away from 3 and 4, which the actions name */
    p[1] = fcntl(q[1], F_DUPFD, 20);
    close(q[0]);
    close(q[1]);
    dup2(p[0], 4);
    signal(SIGUSR1, SIG_IGN);
    signal(SIGHUP, SIG_IGN);

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 3, "spawn.in", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addclose(&fa, 4);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                  POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&at, 0);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    posix_spawnattr_setsigmask(&at, &s);
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    posix_spawnattr_setsigdefault(&at, &s);

    char *args[] = {"proc_spawn", "child", "an argument", 0};
    char *env[] = {0};
    pid_t pid = 0;
    fflush(stdout);
    int r = posix_spawn(&pid, "/proc/self/exe", &fa, &at, args, env);
    close(p[1]);
    char buf[1000];
    ssize_t n, total = 0;
    while ((n = read(p[0], buf + total, sizeof buf - 1 - total)) > 0)
        total += n;
    buf[total] = 0;
    int st;
    waitpid(pid, &st, 0);
    printf("posix_spawn returned %s, child exited %d, wrote:\n%s", en(r), WEXITSTATUS(st), buf);

    errno = 0;
    pid = 0;
    r = posix_spawn(&pid, "./no-such-file", 0, 0, args, env);
    printf("posix_spawn(missing file): %s, child to wait for: %s\n", en(r),
           r == 0 ? "yes" : (wait(&st) < 0 && errno == ECHILD) ? "none" : "one?");

    posix_spawn_file_actions_t bad;
    posix_spawn_file_actions_init(&bad);
    posix_spawn_file_actions_addopen(&bad, 3, "no-such-input", O_RDONLY, 0);
    errno = 0;
    r = posix_spawn(&pid, "/proc/self/exe", &bad, 0, args, env);
    printf("posix_spawn(failing open action): %s, child to wait for: %s\n", en(r),
           r == 0 ? "yes" : (wait(&st) < 0 && errno == ECHILD) ? "none" : "one?");
    unlink("spawn.in");
    return 0;
}
