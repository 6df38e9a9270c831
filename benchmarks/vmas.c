/* vmas.c N [STRIDE]: N one-page anonymous mmaps, each written, then every STRIDE-th page made
 * read-only (with STRIDE 2 the N pages are N separate VMAs on Linux too, since neighbours
 * differ; with STRIDE 0 none is, and Linux merges them), then all unmapped one by one.
 * Prints a checksum of what it read back. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 4096, stride = argc > 2 ? atoi(argv[2]) : 2;
    char **pages = malloc(sizeof(char *) * n);
    unsigned long sum = 0;
    for (int i = 0; i < n; i++) {
        pages[i] = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (pages[i] == MAP_FAILED) {
            printf("mmap %d failed\n", i);
            return 1;
        }
        pages[i][i % 4096] = (char)i;
        if (stride && i % stride == 0)
            mprotect(pages[i], 4096, PROT_READ);
    }
    for (int i = 0; i < n; i++)
        sum = sum * 31 + (unsigned char)pages[i][i % 4096];
    for (int i = 0; i < n; i++)
        munmap(pages[i], 4096);
    printf("%d pages, checksum %lx\n", n, sum);
    return 0;
}
