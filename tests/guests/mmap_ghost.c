/* File mappings whose descriptor is gone: one of a deleted file still open elsewhere (its
 * writes must keep showing in the pages the process has not written), one of a deleted file
 * nobody holds any more (only the mapping keeps it), one of a named file with no descriptor
 * open (each round opens it, writes, closes). Checkpoints must bring all three back. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define P 4096

int main(void)
{
    char page[P];
    int fd = open("g1.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
    memset(page, 'a', P);
    write(fd, page, P);
    write(fd, page, P);
    char *p = mmap(0, 2 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    unlink("g1.dat");
    int fd2 = open("g2.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
    memset(page, 'z', P);
    write(fd2, page, P);
    char *q = mmap(0, P, PROT_READ, MAP_SHARED, fd2, 0);
    close(fd2);
    unlink("g2.dat");
    int fd3 = open("g3.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
    write(fd3, "0000", 4);
    char *r = mmap(0, P, PROT_READ, MAP_PRIVATE, fd3, 0);
    close(fd3);
    for (int round = 0; round < 6; round++) {
        char c = 'A' + round;
        fd3 = open("g3.dat", O_WRONLY);
        pwrite(fd3, &c, 1, round % 4);
        close(fd3);
        pwrite(fd, &c, 1, round);         /* page 0 shows these until it is written */
        pwrite(fd, &c, 1, P + round);     /* page 1 always shows them */
        if (round == 3)
            p[100] = '!';                 /* page 0 becomes the process's own */
        printf("round %d: %.8s %.8s %c %.4s %.4s\n", round, p, p + P, p[100], q, r);
        fflush(stdout);
    }
    return 0;
}
