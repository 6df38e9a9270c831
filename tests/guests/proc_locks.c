/* POSIX record locks belong to a process: a forked child does not inherit its parent's,
 * sees them with F_GETLK (l_pid the parent), fails F_SETLK and waits in F_SETLKW until the
 * parent lets go. */
#include <stdio.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/wait.h>
int main(void) {
    int fd = open("lockfile", O_RDWR | O_CREAT | O_TRUNC, 0600), p[2];
    pipe(p);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
    fcntl(fd, F_SETLK, &fl);
    setvbuf(stdout, 0, _IONBF, 0);
    pid_t c = fork();
    if (c == 0) {
        struct flock q = fl;
        fcntl(fd, F_GETLK, &q);
        printf("child sees lock held by parent: %s\n", q.l_type == F_WRLCK && q.l_pid == getppid() ? "yes" : "no");
        printf("child SETLK: %d\n", fcntl(fd, F_SETLK, &fl));
        write(p[1], "x", 1);
        fcntl(fd, F_SETLKW, &fl);
        printf("child got the lock after the parent let go\n");
        _exit(0);
    }
    char b; read(p[0], &b, 1);
    usleep(100000);
    printf("parent unlocks\n");
    fl.l_type = F_UNLCK; fcntl(fd, F_SETLK, &fl);
    wait(0);
    return 0;
}
