/* SIGCKPT and SIGCKPTEXIT: by default the guest is saved to the template and goes on (or
 * ends); a handler takes the place of that. "wait" sleeps until a SIGCKPT from outside
 * (vsnap save PID --signal) has been taken; "line" reads a line of the terminal (^E in it:
 * SIGCKPT, as DragonFly's tty driver sends it). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <vsnap/checkpoint.h>

static void on(int s) { (void)s; printf("handler ran\n"); }

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "wait")) {
        for (;;) {
            struct timespec t = {0, 50000000};
            nanosleep(&t, 0);
        }
    }
    if (!strcmp(mode, "handler"))
        signal(SIGCKPT, on);
    if (!strcmp(mode, "line")) {   /* a line from the terminal, perhaps with ^E in it */
        char buf[256];
        if (fgets(buf, sizeof buf, stdin))
            printf("read: %s", buf);
        printf("after the line\n");
        return 0;
    }
    printf("before\n");
    fflush(stdout);
    raise(!strcmp(mode, "exit") ? SIGCKPTEXIT : SIGCKPT);
    printf("after the signal\n");
    return 0;
}
