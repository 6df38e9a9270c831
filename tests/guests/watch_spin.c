/* watch_spin.c: the first start makes /mark and crashes; every start after spins without
 * a system call (a host signal must still reach it: test_watch). */
#include <fcntl.h>
#include <unistd.h>
int main(void)
{
    int fd = open("/mark", O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (fd >= 0) {
        write(2, "crash\n", 6);
        *(volatile int *)0 = 1;
    }
    write(2, "spin\n", 5);
    for (volatile unsigned long i = 0;; i++)
        ;
}
