/* proc_fork.c: the smallest fork: the child exits 7, the parent waits for it and prints what it
 * saw. tests/test_processes.py runs it under vsnap to learn whether vsnap can fork at all. */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0)
        _exit(7);
    int status;
    if (waitpid(pid, &status, 0) != pid) {
        perror("waitpid");
        return 1;
    }
    printf("fork ok, child exited %d\n", WEXITSTATUS(status));
    return 0;
}
