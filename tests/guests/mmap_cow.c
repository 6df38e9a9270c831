/* A MAP_PRIVATE file mapping shares its pages with the file until the process writes to
 * them (copy-on-write); a MAP_SHARED read-only one shares them for good. Changes to the file
 * through any descriptor (write, pwrite, writev, ftruncate, read into the mapping) show in the
 * shared pages, never in the pages the process wrote; pages wholly past the end of the file
 * are SIGBUS. Prints what it sees at each step, to compare with Linux byte for byte. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#define P 4096
static sigjmp_buf back;
static void on_bus(int sig) { siglongjmp(back, sig); }

static void show(const char *step, const char *p, const char *q)
{
    printf("%-10s", step);
    for (int page = 0; page < 3; page++) {
        for (int at = 0; at < 3; at++) {
            int off = page * P + (at == 0 ? 0 : at == 1 ? 5 : P - 1);
            int sig;
            if ((sig = sigsetjmp(back, 1)) != 0) { printf(" p:BUS%d", sig); continue; }
            unsigned char c = (unsigned char)p[off];
            printf(" p%d:%02x", off, c);
        }
        for (int at = 0; at < 2; at++) {
            int off = page * P + (at == 0 ? 0 : 5);
            int sig;
            if ((sig = sigsetjmp(back, 1)) != 0) { printf(" q:BUS%d", sig); continue; }
            printf(" q%d:%02x", off, (unsigned char)q[off]);
        }
    }
    printf("\n");
    fflush(stdout);
}

int main(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_bus;
    sigaction(SIGBUS, &sa, 0);
    sigaction(SIGSEGV, &sa, 0);
    char page[P];
    int fd = open("f.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
    for (int i = 0; i < 3; i++) {
        memset(page, 'a' + i, P);
        write(fd, page, P);
    }
    char *p = mmap(0, 3 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    char *q = mmap(0, 3 * P, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED || q == MAP_FAILED) { perror("mmap"); return 1; }
    show("mapped", p, q);
    pwrite(fd, "B", 1, 0);                       /* pwrite: both see it */
    show("pwrite", p, q);
    p[P + 5] = 'x';                              /* page 1 becomes the process's own */
    show("cow", p, q);
    int fd2 = open("f.dat", O_WRONLY);           /* another descriptor */
    lseek(fd2, P, SEEK_SET);
    write(fd2, "CCCCCC", 6);                     /* p's page 1 keeps its own bytes */
    show("write2", p, q);
    struct iovec iov[2] = {{"D", 1}, {"E", 1}};
    lseek(fd2, 2 * P + 4, SEEK_SET);
    writev(fd2, iov, 2);
    show("writev", p, q);
    ftruncate(fd, P + 100);                      /* page 2 is past the end: SIGBUS */
    show("shrink", p, q);
    pwrite(fd2, "Z", 1, 3 * P - 1);              /* the file grows back */
    show("grow", p, q);
    read(open("f.dat", O_RDONLY), p + 2 * P, 3); /* the kernel writes: page 2 is own */
    pwrite(fd2, "YYYY", 4, 2 * P);
    show("readinto", p, q);
    madvise(p + P, P, MADV_DONTNEED);            /* page 1 is the file's again */
    show("dontneed", p, q);
    close(fd);
    close(fd2);
    int fd3 = open("f.dat", O_RDWR);             /* the mappings keep the file */
    pwrite(fd3, "QQQQQQ", 6, 0);
    show("closed", p, q);
    mprotect(p, 3 * P, PROT_READ);
    mprotect(p, 3 * P, PROT_READ | PROT_WRITE);
    p[0] = 'w';
    pwrite(fd3, "RRRRRR", 6, 0);
    show("mprotect", p, q);
    char *r = mremap(p, 3 * P, 6 * P, MREMAP_MAYMOVE);
    pwrite(fd3, "SSSSSS", 6, P);
    show("mremap", r, q);
    return 0;
}
