/* pipewait.c MODE: one call that waits on a pipe only this process could end, cut short by
 * SIGALRM (a handler without SA_RESTART; natively alarm(1) sends it, vsnap's tests send it to
 * the parked process): "partial" writes 100000 bytes into an empty pipe (Linux returns the
 * 65536 it moved), "full" writes 10 bytes into a full one (EINTR), "read" reads an empty one
 * (EINTR). Then it reads back what the pipe holds. A second argument "noalarm" sends no alarm:
 * Linux then waits forever. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile int alarms;
static void on_alarm(int s) { (void)s; alarms++; }
static char big[100000];

int main(int argc, char **argv)
{
    int p[2];
    const char *mode = argc > 1 ? argv[1] : "partial";
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    memset(big, 'x', sizeof big);
    pipe(p);
    if (!strcmp(mode, "full"))
        for (int i = 0; i < 16; i++)
            write(p[1], big, 4096);
    if (argc < 3 || strcmp(argv[2], "noalarm"))
        alarm(1);
    errno = 0;
    long r = !strcmp(mode, "read") ? read(p[0], big, 10)
           : write(p[1], big, !strcmp(mode, "full") ? 10 : sizeof big);
    int e = errno;
    alarm(0);
    printf("%s: %ld %s, %d alarm\n", mode, r, r < 0 ? strerror(e) : "", alarms);
    close(p[1]);
    long total = 0, n;
    while ((n = read(p[0], big, sizeof big)) > 0)
        total += n;
    printf("the pipe held %ld bytes\n", total);
    return 0;
}
