/* pipeckpt.c: pipes whose state a checkpoint must carry: bytes buffered page by page (odd
 * write sizes leave part-filled pages that later writes merge into), a packet-mode pipe, a pipe
 * whose write end is closed with bytes still in it (EOF after them), a pipe grown with
 * F_SETPIPE_SZ, and a pipe made after a resume (its inode is not an older pipe's). Prints what
 * it reads, so a lost or doubled byte shows. With argument "forever" it ends by reading an
 * empty pipe whose only writer is itself: Linux waits forever. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

static unsigned sum(const char *b, long n)
{
    unsigned h = 2166136261u;
    for (long i = 0; i < n; i++)
        h = (h ^ (unsigned char)b[i]) * 16777619u;
    return h;
}

static char buf[1 << 17];

int main(int argc, char **argv)
{
    int a[2], d[2], e[2], g[2];
    for (int i = 0; i < (int)sizeof buf; i++)
        buf[i] = (char)(i * 13 + 1);
    setvbuf(stdout, NULL, _IONBF, 0);
    pipe2(a, O_NONBLOCK);
    pipe2(d, O_NONBLOCK | O_DIRECT);
    pipe(e);
    pipe2(g, O_CLOEXEC);
    fcntl(g[1], F_SETPIPE_SZ, 1 << 18);
    long total = 0;
    for (int round = 0; round < 12; round++) {
        long w = write(a[1], buf + round, 1 + round * 1500);
        long w2 = write(d[1], buf + 7 * round, 10 + round);
        long r = read(a[0], buf + 65536, 700 + round * 900);
        long r2 = read(d[0], buf + 65536 + 8192, 4);
        total += w - r;
        int pending = 0;
        ioctl(a[0], FIONREAD, &pending);
        printf("round %d wrote %ld,%ld read %ld (%08x),%ld (%.4s) pending %d/%ld\n", round, w, w2,
               r, sum(buf + 65536, r > 0 ? r : 0), r2, buf + 65536 + 8192, pending, total);
    }
    write(e[1], "last words", 10);
    close(e[1]);
    long n = write(g[1], buf, 100000);
    printf("g took %ld\n", n);
    char small[8];
    for (int i = 0; i < 4; i++) {
        long r = read(e[0], small, 4);
        printf("e read %ld %.*s\n", r, (int)(r > 0 ? r : 0), small);
    }
    long got = 0, r;
    while (got < n && (r = read(g[0], buf + 65536, 30000)) > 0) {
        printf("g read %ld (%08x)\n", r, sum(buf + 65536, r));
        got += r;
    }
    int h[2];
    struct stat s1, s2;
    pipe(h);
    fstat(a[0], &s1);
    fstat(h[0], &s2);
    printf("a new pipe has an inode of its own: %d\n", s2.st_ino != s1.st_ino);
    while ((r = read(a[0], buf + 65536, 5000)) > 0)
        printf("a drained %ld (%08x)\n", r, sum(buf + 65536, r));
    if (argc > 1 && !strcmp(argv[1], "forever")) {
        printf("reading an empty pipe I alone could write\n");
        r = read(h[0], small, 1);
        printf("never here %ld\n", r);
    }
    return 0;
}
