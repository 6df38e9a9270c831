/* MAP_SHARED mappings of a file open for writing: the guest's stores reach the file and a
 * write() to the file is in the mapping, in this process and in a forked child; msync's
 * errors; munmap keeps the stores; mprotect of a shared mapping of a read-only file; mremap;
 * /proc/self/maps; pages past the end after ftruncate are SIGBUS. Prints what it sees at
 * each step, to compare with Linux byte for byte. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define P 4096
static sigjmp_buf back;
static void on_bus(int sig) { siglongjmp(back, sig); }

static void file_says(int fd, const char *step, off_t off)
{
    char buf[9] = {0};
    ssize_t n = pread(fd, buf, 8, off);
    printf("%-10s pread@%ld=%zd '%s'\n", step, (long)off, n, buf);
    fflush(stdout);
}

static int peek(const char *p)
{
    int sig;
    if ((sig = sigsetjmp(back, 1)) != 0)
        return -sig;
    return (unsigned char)*(volatile const char *)p;
}

int main(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_bus;
    sigaction(SIGBUS, &sa, 0);
    sigaction(SIGSEGV, &sa, 0);
    int fd = open("s.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
    char page[P];
    for (int i = 0; i < 4; i++) {
        memset(page, 'a' + i, P);
        write(fd, page, P);
    }
    char *m = mmap(0, 4 * P, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    printf("mmap %s\n", m == MAP_FAILED ? strerror(errno) : "ok");
    if (m == MAP_FAILED)
        return 1;
    char *priv = mmap(0, 2 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    priv[P] = 'o';  /* its own page from now on */
    memcpy(m, "STORED", 6);
    memcpy(m + P + 10, "second", 6);
    file_says(fd, "store", 0);
    file_says(fd, "store2", P + 10);
    pwrite(fd, "WRITTEN", 7, 2 * P);
    printf("write     map='%.7s'\n", m + 2 * P);
    char buf[16] = {0};
    int rd = open("s.dat", O_RDONLY);
    read(rd, buf, 6);
    printf("other fd  '%s'\n", buf);

    /* msync: flags and alignment */
    printf("msync sync=%d async=%d inval=%d\n", msync(m, 4 * P, MS_SYNC),
           msync(m, P, MS_ASYNC), msync(m, P, MS_INVALIDATE));
    int both = msync(m, P, MS_SYNC | MS_ASYNC), e1 = errno;
    int odd = msync(m + 1, P, MS_SYNC), e2 = errno;
    int bad = msync(m, P, 8), e3 = errno;
    int gone = msync(m + 64 * P, P, MS_SYNC), e4 = errno;
    printf("msync both=%d %s odd=%d %s bad=%d %s\n", both, strerror(e1), odd, strerror(e2),
           bad, strerror(e3));
    printf("msync unmapped=%d %s\n", gone, strerror(e4));
    /* (Linux shows the stores in a private mapping's clean pages at once; vsnap by msync) */
    printf("private sees '%.6s' own '%.4s'\n", priv, priv + P);

    /* /proc/self/maps: rw-s, the name and the inode */
    struct stat st;
    fstat(fd, &st);
    char want[64], line[512];
    snprintf(want, sizeof want, "%lx-", (unsigned long)m);
    FILE *maps = fopen("/proc/self/maps", "r");
    while (maps && fgets(line, sizeof line, maps))
        if (!strncmp(line, want, strlen(want))) {
            char perms[8], dev[16], name[256] = "";
            unsigned long off, ino;
            sscanf(line, "%*s %7s %lx %15s %lu %255s", perms, &off, dev, &ino, name);
            const char *base = strrchr(name, '/');
            printf("maps %s off=%lx ino-ok=%d name=%s\n", perms, off, ino == st.st_ino,
                   base ? base + 1 : name);
        }
    if (maps)
        fclose(maps);

    /* fork: the child's stores reach the parent through the mapping and the file */
    pid_t pid = fork();
    if (pid == 0) {
        memcpy(m + 3 * P, "CHILD", 5);
        m[0] = 's';
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("fork      map='%.5s' '%.6s'\n", m + 3 * P, m);
    file_says(fd, "fork", 3 * P);
    /* a child shrinks the file: the parent's mapping loses the pages past the end */
    if ((pid = fork()) == 0) {
        ftruncate(fd, 3 * P);
        _exit(0);
    }
    waitpid(pid, &status, 0);
    printf("child shrank it: %d %d\n", peek(m + 2 * P), peek(m + 3 * P));

    /* mremap: grow (moving), the file's bytes follow */
    ftruncate(fd, 6 * P);
    char *g = mremap(m, 4 * P, 6 * P, MREMAP_MAYMOVE);
    printf("mremap %s '%.6s' '%.5s'\n", g == MAP_FAILED ? strerror(errno) : "ok", g, g + 3 * P);
    g[5 * P] = 'Z';
    file_says(fd, "grown", 5 * P);
    m = g;

    /* mprotect: a read-only shared mapping of a file open for writing may become writable;
     * one of a file open read-only may not */
    char *r = mmap(0, P, PROT_READ, MAP_SHARED, fd, 0);
    errno = 0;
    printf("mprotect rw-file=%d", mprotect(r, P, PROT_READ | PROT_WRITE));
    r[1] = 'T';
    file_says(fd, " then", 0);
    char *ro = mmap(0, P, PROT_READ, MAP_SHARED, rd, 0);
    int prot = mprotect(ro, P, PROT_READ | PROT_WRITE), e5 = errno;
    printf("mprotect ro-file=%d %s\n", prot, strerror(e5));
    errno = 0;
    char *w = mmap(0, P, PROT_READ | PROT_WRITE, MAP_SHARED, rd, 0);
    printf("mmap ro-file rw=%s\n", w == MAP_FAILED ? strerror(errno) : "mapped");
    m[2] = 'X';  /* a store by the writable mapping is in the read-only one at once */
    lseek(rd, 0, SEEK_SET);
    ssize_t into = read(rd, ro, 1);  /* the kernel may not write into it either */
    int e7 = errno;
    printf("ro sees '%.6s' read into it=%zd %s\n", ro, into, strerror(e7));

    /* ftruncate shrinks the file: pages wholly past the end are SIGBUS, the tail of the
     * last page reads as zeros */
    ftruncate(fd, P + 100);
    printf("shrunk %d %d %d %d\n", peek(m + P + 99), peek(m + P + 100), peek(m + 2 * P),
           peek(m + 5 * P));
    int pfd[2];
    pipe(pfd);
    errno = 0;
    ssize_t wn = write(pfd[1], m + 3 * P, 4);
    int e6 = errno;
    printf("write from past eof=%zd %s\n", wn, strerror(e6));
    ftruncate(fd, 3 * P);
    printf("regrown %d %d\n", peek(m + 2 * P), peek(m + P + 100));
    m[2 * P] = 'N';
    file_says(fd, "regrown", 2 * P);

    /* munmap: the stores stay in the file */
    m[P] = 'U';
    munmap(m, 6 * P);
    file_says(fd, "munmap", P);
    close(fd);
    close(rd);
    return 0;
}
