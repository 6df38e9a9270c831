/* SIGCKPT from another process: a parent sends it to its child, whose default action saves
 * the whole tree to the template (the child's name and pid in it) while the child waits. */
#include <stdio.h>
#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>
#include <vsnap/checkpoint.h>
int main(void) {
    int p[2]; pipe(p);
    setvbuf(stdout, 0, _IONBF, 0);
    pid_t c = fork();
    if (c == 0) { char b; read(p[0], &b, 1); printf("child: woke\n"); return 0; }
    kill(c, SIGCKPT);
    write(p[1], "x", 1);
    wait(0);
    printf("parent: done\n");
    return 0;
}
