/* cat.c: copy stdin to stdout (tests that stdin passes through vsnap). */
#include <unistd.h>

int main(void)
{
    char buf[4096];
    ssize_t n;
    while ((n = read(0, buf, sizeof buf)) > 0) {
        char *p = buf;
        while (n > 0) {
            ssize_t w = write(1, p, (size_t)n);
            if (w <= 0) return 1;
            p += w;
            n -= w;
        }
    }
    return n < 0 ? 1 : 0;
}
