/* proc_dup2.c: descriptors across fork. fork copies the fd table, not the open files: a file
 * offset and the status flags (O_APPEND) are shared by parent and child, the close-on-exec flag
 * is per descriptor; dup2 in the child redirects only the child; a close in the child leaves
 * the parent's descriptor open. Files are created in the current directory. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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

static void reap(pid_t p)
{
    int st;
    waitpid(p, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st))
        printf("child failed: status 0x%x\n", st);
}

int main(void)
{
    int fd = open("dup2.out", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (dup2(fd, 5) != 5)
        return 1;
    close(fd);
    fcntl(5, F_SETFD, FD_CLOEXEC);

    pid_t c = xfork();
    if (c == 0) {
        write(5, "child-", 6);                  /* moves the shared offset */
        fcntl(5, F_SETFL, O_APPEND);            /* a status flag: shared too */
        fcntl(5, F_SETFD, 0);                   /* close-on-exec: this child's fd only */
        int p[2];
        pipe(p);
        close(p[0]);
        close(p[1]);
        _exit(0);
    }
    reap(c);
    printf("offset after the child wrote 6:  %ld\n", (long)lseek(5, 0, SEEK_CUR));
    printf("O_APPEND set by the child:       %s\n", fcntl(5, F_GETFL) & O_APPEND ? "yes" : "no");
    printf("FD_CLOEXEC still set here:       %s\n", fcntl(5, F_GETFD) & FD_CLOEXEC ? "yes" : "no");
    write(5, "parent\n", 7);

    /* redirect the child's stdout into a pipe with dup2; ours stays where it was */
    int p[2];
    pipe(p);
    c = xfork();
    if (c == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        printf("to the pipe via stdout\n");
        fflush(stdout);
        close(5);                               /* closes only the child's descriptor */
        _exit(0);
    }
    close(p[1]);
    char buf[100];
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    reap(c);
    printf("the child's redirected stdout:   %s", buf);
    printf("fd 5 after the child closed it:  %s\n", fcntl(5, F_GETFD) >= 0 ? "open" : "closed");
    lseek(5, 0, SEEK_SET);
    n = read(5, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("the file:                        %s", buf);

    /* dup2 onto itself, onto a bad number, from a closed descriptor */
    errno = 0;
    int r = dup2(5, 5);
    printf("dup2(5, 5):                      %d\n", r);
    errno = 0;
    r = dup2(5, -1);
    printf("dup2(5, -1):                     %d %s\n", r, errno == EBADF ? "EBADF" : "?");
    errno = 0;
    r = dup2(77, 6);
    printf("dup2(77 closed, 6):              %d %s\n", r, errno == EBADF ? "EBADF" : "?");
    unlink("dup2.out");
    return 0;
}
