/* reserve.c MIB TOUCH: reserve MIB MiB of anonymous memory, touch the first TOUCH MiB of it
 * (one byte a page), and say so. Linux's overcommit lets a reservation far beyond what is
 * touched succeed; only touched pages cost memory. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
    size_t size = (size_t)atol(argv[1]) << 20, touch = (size_t)atol(argv[2]) << 20;
    char *p = mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        printf("mmap of %s MiB failed\n", argv[1]);
        return 1;
    }
    for (size_t i = 0; i < touch; i += 4096)
        p[i] = 1;
    printf("reserved %s MiB, touched %s MiB\n", argv[1], argv[2]);
    return 0;
}
