/* A 16 MiB file mapped MAP_SHARED and written on every page, before and after the point a
 * test saves it at ("mapped" on stdout): the image must refer to the file, not hold its
 * pages, and the stores after a resume must reach the file as before. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#define SIZE (16 << 20)
#define P 4096

static unsigned long sum(int fd)
{
    static unsigned long buf[1 << 13];
    unsigned long s = 0;
    for (off_t off = 0; off < SIZE; off += sizeof buf) {
        pread(fd, buf, sizeof buf, off);
        for (unsigned i = 0; i < sizeof buf / sizeof buf[0]; i++)
            s = (s << 7 | s >> 57) ^ buf[i];  /* every byte counts, and where it is */
    }
    return s;
}

int main(void)
{
    int fd = open("big.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
    ftruncate(fd, SIZE);
    unsigned char *m = mmap(0, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return 1;
    for (int i = 0; i < SIZE; i += P)
        m[i + (i / P) % 4000] = (unsigned char)(i / P * 7 + 1);
    printf("mapped %lu\n", sum(fd));
    fflush(stdout);
    for (volatile int spin = 0; spin < 20000; spin++)
        ;
    for (int i = 0; i < SIZE; i += P)
        m[i + 4001] += m[i + (i / P) % 4000] + 1;
    pwrite(fd, "after", 5, 12345);
    printf("again %lu '%.5s'\n", sum(fd), m + 12345);
    msync(m, SIZE, MS_SYNC);
    munmap(m, SIZE);
    printf("unmapped %lu\n", sum(fd));
    return 0;
}
