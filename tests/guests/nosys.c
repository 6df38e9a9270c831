/* nosys.c: call system calls that vsnap does not implement, twice each. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static void try(const char *what, long nr)
{
    for (int i = 0; i < 2; i++) {
        errno = 0;
        long r = syscall(nr, 1L, 0L, 0L, 0L, 0L, 0L);
        printf("%s: %ld %s\n", what, r, errno == ENOSYS ? "ENOSYS" : strerror(errno));
    }
}

int main(void)
{
    unsigned long ctx = 0;
    for (int i = 0; i < 2; i++) {
        errno = 0;
        long r = syscall(SYS_io_setup, 1L, &ctx);
        printf("io_setup: %ld %s\n", r, errno == ENOSYS ? "ENOSYS" : strerror(errno));
    }
    try("335", 335);
    return 0;
}
