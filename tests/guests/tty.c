/* The terminal's settings, size and foreground group, as a program sees them on its
 * controlling terminal (tests/test_tty.py runs it natively and under vsnap, each on a
 * pseudo-terminal, and compares what it prints).
 *
 *   tty            the whole walk: read back the settings, raw mode reads, sizes, errors
 *   tty leave      set raw mode and end without putting it back
 *   tty crash      set raw mode and die of SIGSEGV
 *   tty wait       set raw mode, say "raw", and wait for a byte
 *   tty keep       on /dev/tty: set raw-ish settings and a size, compute a while, read both
 *                  back (the checkpoint test's)
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

struct ktermios2 {  /* the kernel's struct termios2 (TCGETS2) */
    unsigned c_iflag, c_oflag, c_cflag, c_lflag;
    unsigned char c_line, c_cc[19];
    unsigned c_ispeed, c_ospeed;
};
#define K_TCGETS2 0x802C542A

static volatile int winches;
static void on_winch(int s) { (void)s; winches++; }

static void say(const char *s) { write(1, s, strlen(s)); }

static void show(const char *what, const struct termios *t) {
    char line[256];
    int n = snprintf(line, sizeof line, "%s: iflag %o oflag %o cflag %o lflag %o cc", what,
                     t->c_iflag, t->c_oflag, t->c_cflag, t->c_lflag);
    for (int i = 0; i < 17; i++)
        n += snprintf(line + n, sizeof line - n, " %02x", t->c_cc[i]);
    snprintf(line + n, sizeof line - n, "\n");
    say(line);
}

static void raw_mode(int fd, struct termios *t) {
    t->c_lflag &= ~(ICANON | ECHO | ISIG | IEXTEN);
    t->c_iflag &= ~(ICRNL | IXON);
    t->c_cc[VMIN] = 1;
    t->c_cc[VTIME] = 0;
    if (tcsetattr(fd, TCSAFLUSH, t) != 0)
        perror("tcsetattr");
}

static void reads(int n) {
    char buf[64], line[128];
    for (int i = 0; i < n; i++) {
        ssize_t got = read(0, buf, sizeof buf);
        int k = snprintf(line, sizeof line, "got %zd:", got);
        for (ssize_t j = 0; j < got; j++)
            k += snprintf(line + k, sizeof line - k, " %02x", (unsigned char)buf[j]);
        snprintf(line + k, sizeof line - k, "\n");
        say(line);
    }
}

static void err(const char *what, int r) {
    char line[128];
    snprintf(line, sizeof line, "%s: %d %s\n", what, r, r < 0 ? strerror(errno) : "ok");
    say(line);
}

static void walk(void) {
    char line[160];
    struct winsize w;
    struct termios t0, t, back;
    struct ktermios2 k2;
    ioctl(0, TIOCGWINSZ, &w);
    snprintf(line, sizeof line, "winsize %d %d\n", w.ws_row, w.ws_col);
    say(line);
    tcgetattr(0, &t0);
    show("at start", &t0);
    ioctl(0, K_TCGETS2, &k2);
    snprintf(line, sizeof line, "speeds %u %u\n", k2.c_ispeed, k2.c_ospeed);
    say(line);
    t = t0;
    raw_mode(0, &t);
    tcgetattr(0, &back);
    show("raw", &back);
    snprintf(line, sizeof line, "read back the same: %d\n",
             memcmp(&t, &back, offsetof(struct termios, c_cc) + 17) == 0);
    say(line);
    say("raw>\n");
    reads(3);       /* x, ^C, ^E: one byte each, none a signal */
    say("two>\n");
    struct pollfd pfd = {0, POLLIN, 0};
    poll(&pfd, 1, 5000);
    usleep(100000);
    int queued = -1;
    ioctl(0, FIONREAD, &queued);
    snprintf(line, sizeof line, "queued %d\n", queued);
    say(line);
    reads(1);
    signal(SIGWINCH, on_winch);
    struct winsize big = {40, 120, 0, 0};
    err("set size", ioctl(0, TIOCSWINSZ, &big));
    ioctl(0, TIOCGWINSZ, &w);
    snprintf(line, sizeof line, "winsize %d %d, SIGWINCH %d\n", w.ws_row, w.ws_col, winches);
    say(line);
    err("same size", ioctl(0, TIOCSWINSZ, &big));
    snprintf(line, sizeof line, "SIGWINCH %d\n", winches);
    say(line);
    snprintf(line, sizeof line, "foreground is mine: %d\n", tcgetpgrp(0) == getpgrp());
    say(line);
    err("tcsetpgrp mine", tcsetpgrp(0, getpgrp()));
    err("tcsetpgrp none", tcsetpgrp(0, 4000000));
    err("tcsetpgrp -1", tcsetpgrp(0, -1));
    err("tcflush in", tcflush(0, TCIFLUSH));
    err("tcflush bad", tcflush(0, 7));
    err("tcflow on", tcflow(0, TCOON));
    err("tcflow bad", tcflow(0, 9));
    err("tcdrain", tcdrain(1));
    err("TCSETS bad pointer", ioctl(0, TCSETS, (void *)8));
    int null = open("/dev/null", O_RDWR);
    err("TCGETS on /dev/null", ioctl(null, TCGETS, &back));
    tcsetattr(0, TCSANOW, &t0);
    tcgetattr(0, &back);
    show("cooked again", &back);
    say("cooked>\n");
    reads(1);       /* a whole line */
}

static void keep(void) {
    int fd = open("/dev/tty", O_RDWR);
    struct termios t, back;
    tcgetattr(fd, &t);
    t.c_lflag &= ~(ICANON | ECHO);
    t.c_cc[VMIN] = 0;
    t.c_cc[VTIME] = 7;
    t.c_cc[VINTR] = 0x18;
    tcsetattr(fd, TCSANOW, &t);
    struct winsize w = {33, 99, 1, 2};
    ioctl(fd, TIOCSWINSZ, &w);
    volatile unsigned long x = 0;
    for (unsigned long i = 0; i < 20000; i++)
        x += i * i;
    tcgetattr(fd, &back);
    show("kept", &back);
    ioctl(fd, TIOCGWINSZ, &w);
    printf("winsize %d %d %d %d, same: %d\n", w.ws_row, w.ws_col, w.ws_xpixel, w.ws_ypixel,
           memcmp(&t, &back, offsetof(struct termios, c_cc) + 17) == 0);
}

int main(int argc, char **argv) {
    struct termios t;
    const char *mode = argc > 1 ? argv[1] : "walk";
    if (!strcmp(mode, "keep")) {
        keep();
        return 0;
    }
    if (!strcmp(mode, "walk")) {
        walk();
        return 0;
    }
    tcgetattr(0, &t);
    raw_mode(0, &t);
    say("raw\n");
    if (!strcmp(mode, "crash"))
        *(volatile int *)0 = 1;
    if (!strcmp(mode, "wait"))
        reads(1);
    return 0;
}
