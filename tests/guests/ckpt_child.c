/* A child of the first process checkpoints itself: the image holds the tree, and a resume makes
 * the child's call return the resumer's retval while its parent waits for it as before. */
#include <stdio.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/wait.h>
#include <vsnap/checkpoint.h>
int main(void) {
    setvbuf(stdout, 0, _IONBF, 0);
    pid_t c = fork();
    if (c == 0) {
        int fd = open("child.img", O_RDWR | O_CREAT | O_TRUNC, 0644);
        int r = sys_checkpoint(CKPT_FREEZE, fd, -1, 0);
        printf("child: returned %d\n", r);
        return 0;
    }
    wait(0);
    printf("parent: done\n");
    return 0;
}
