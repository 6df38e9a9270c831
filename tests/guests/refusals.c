/* refusals.c: what vsnap refuses loudly instead of doing silently wrong (run under vsnap only;
 * Linux would seal, or hang). "seal": memfd sealing. "opath": an O_PATH descriptor whose file
 * is then removed, held across a stretch of system calls (a checkpoint there is refused). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_GET_SEALS 1034
#define F_SEAL_WRITE 8
#endif

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "seal")) {
        int fd = syscall(SYS_memfd_create, "sealed", 2 /* MFD_ALLOW_SEALING */);
        errno = 0;
        long r = fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE);
        printf("F_ADD_SEALS %ld %s\n", r, r < 0 ? strerror(errno) : "");
        errno = 0;
        r = fcntl(fd, F_GET_SEALS);
        printf("F_GET_SEALS %ld %s\n", r, r < 0 ? strerror(errno) : "");
        printf("write %ld\n", (long)write(fd, "still writable", 14));
        return 0;
    }
    close(open("victim", O_CREAT | O_WRONLY, 0600));
    int p = open("victim", O_PATH);
    unlink("victim");
    for (int i = 0; i < 200; i++)
        getppid();
    printf("held fd %d\n", p);
    return 0;
}
