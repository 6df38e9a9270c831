/* syscalls.c: a system-call-heavy benchmark guest.
 *
 * usage: syscalls [N]     (N defaults to 200000)
 *
 * Makes N one-byte write() calls to /dev/null, N read() calls from
 * /dev/null (each returns 0: end of file) and N/100 getpid() calls, with
 * almost no computation between them.  Dividing the number of system calls
 * by the run time measures the cost of one trip into the (emulated) kernel.
 * The pid is never printed, only checked to stay the same.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200000;
    int fd = open("/dev/null", O_RDWR);
    if (fd < 0) {
        perror("/dev/null");
        return 1;
    }

    long calls = 0;
    char c = 'x';
    for (long i = 0; i < n; i++) {
        if (write(fd, &c, 1) != 1) {
            perror("write /dev/null");
            return 1;
        }
        calls++;
    }
    for (long i = 0; i < n; i++) {
        if (read(fd, &c, 1) != 0) {          /* /dev/null is always at EOF */
            fprintf(stderr, "syscalls: read from /dev/null returned data\n");
            return 1;
        }
        calls++;
    }
    pid_t first = getpid();
    calls++;
    for (long i = 0; i < n / 100; i++) {
        if (getpid() != first) {
            fprintf(stderr, "syscalls: getpid changed\n");
            return 1;
        }
        calls++;
    }
    close(fd);

    printf("writes %ld, reads %ld, getpids %ld\n", n, n, n / 100 + 1);
    printf("system calls in the loops: %ld\n", calls);
    printf("EXIT-SUCCESS\n");
    return 0;
}
