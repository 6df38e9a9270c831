/* A vfork child dies of SIGSEGV while it runs in its parent's memory (a window no checkpoint
 * can hold); the parent prints how it ended: the signal and the WCOREDUMP bit. */
#include <stdio.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/wait.h>

int main(void) {
    struct rlimit r = {1 << 30, 1 << 30};
    if (setrlimit(RLIMIT_CORE, &r) != 0) { perror("setrlimit"); return 1; }
    pid_t c = vfork();
    if (c < 0) { perror("vfork"); return 1; }
    if (c == 0) {
        *(volatile int *)0 = 1;
        _exit(1);
    }
    int st;
    if (waitpid(c, &st, 0) != c) { perror("waitpid"); return 1; }
    printf("vfork child killed by signal %d, core dumped %s\n", WTERMSIG(st),
           WCOREDUMP(st) ? "yes" : "no");
    return 0;
}
