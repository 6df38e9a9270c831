/* pipefill: measure a Linux pipe with non-blocking operations, for tests/test_pipes.py.
 *
 * Each argument is a script run on a fresh pipe(2): operations separated by commas. A script
 * that starts with "D," makes the pipe with O_DIRECT (packet mode).
 *   wN   write N bytes            -> count or -errno
 *   z    write 0 bytes            -> count or -errno
 *   rN   read up to N bytes       -> count:fnv1a32 of the bytes, or -errno
 *   fN   write N bytes until a write fails -> total/number of successful writes/last -errno
 *   sN   fcntl(F_SETPIPE_SZ, N)   -> result or -errno
 *   g    fcntl(F_GETPIPE_SZ)      -> result
 *   n    ioctl(FIONREAD)          -> bytes buffered
 *   p    poll both ends, timeout 0 -> read revents/write revents in hex (x: end closed)
 *   cr   close the read end; cw   close the write end -> ok
 * Bytes written follow one running pattern per script, so a read's hash says which bytes came.
 * Prints one line per script: the results separated by spaces. SIGPIPE is ignored, so a write
 * without a reader shows -EPIPE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static unsigned char buf[1 << 21];
static unsigned counter;

static void pattern(size_t n) {
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)(counter++ * 7u + 3u);
}

static unsigned fnv(const unsigned char *p, size_t n) {
    unsigned h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* a write that gives back the pattern bytes it did not take */
static long put(int fd, size_t n) {
    unsigned start = counter;
    pattern(n);
    long r = write(fd, buf, n);
    counter = start + (r > 0 ? (unsigned)r : 0);
    return r < 0 ? -errno : r;
}

static void script(char *s) {
    int fds[2], direct = strncmp(s, "D,", 2) == 0;
    if (direct)
        s += 2;
    if (pipe2(fds, O_NONBLOCK | (direct ? O_DIRECT : 0)) != 0) {
        perror("pipe2");
        exit(1);
    }
    int rd = fds[0], wr = fds[1];
    counter = 0;
    const char *sep = "";
    for (char *op = strtok(s, ","); op; op = strtok(NULL, ",")) {
        long n = op[1] ? strtol(op + 1, NULL, 10) : 0;
        int any = rd >= 0 ? rd : wr;
        printf("%s", sep);
        sep = " ";
        switch (op[0]) {
        case 'w':
            printf("%ld", put(wr, (size_t)n));
            break;
        case 'z':
            printf("%ld", put(wr, 0));
            break;
        case 'r': {
            long r = read(rd, buf, (size_t)n);
            if (r < 0)
                printf("%d", -errno);
            else
                printf("%ld:%08x", r, fnv(buf, (size_t)r));
            break;
        }
        case 'f': {
            long total = 0, calls = 0, r;
            while ((r = put(wr, (size_t)n)) > 0) {
                total += r;
                calls++;
            }
            printf("%ld/%ld/%ld", total, calls, r);
            break;
        }
        case 's': {
            int r = fcntl(any, F_SETPIPE_SZ, (int)n);
            printf("%d", r < 0 ? -errno : r);
            break;
        }
        case 'g':
            printf("%d", fcntl(any, F_GETPIPE_SZ));
            break;
        case 'n': {
            int v = -1;
            ioctl(any, FIONREAD, &v);
            printf("%d", v);
            break;
        }
        case 'p': {
            /* every input and output event, so revents shows all that the end reports */
            short ev = POLLIN | POLLPRI | POLLOUT | POLLRDNORM | POLLRDBAND | POLLWRNORM
                       | POLLWRBAND;
            struct pollfd p[2] = {{rd, ev, 0}, {wr, ev, 0}};
            poll(p, 2, 0);
            if (rd >= 0) printf("%x/", p[0].revents); else printf("x/");
            if (wr >= 0) printf("%x", p[1].revents); else printf("x");
            break;
        }
        case 'c':
            if (op[1] == 'r') { close(rd); rd = -1; }
            else { close(wr); wr = -1; }
            printf("ok");
            break;
        default:
            fprintf(stderr, "pipefill: bad operation %s\n", op);
            exit(2);
        }
    }
    printf("\n");
    if (rd >= 0) close(rd);
    if (wr >= 0) close(wr);
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    for (int i = 1; i < argc; i++)
        script(argv[i]);
    return 0;
}
