/* proc_prctl.c: getppid and the per-process prctl settings across fork.
 * The child's getppid is its parent's pid; PR_SET_NAME truncates to 15 bytes, the name is
 * inherited by fork and private afterwards; PR_SET_PDEATHSIG is readable with
 * PR_GET_PDEATHSIG, is not inherited by a fork child, rejects a bad signal (EINVAL), and an
 * unknown option is EINVAL. The death signal itself is in proc_zombie.c. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static void name(const char *who)
{
    char buf[32];
    memset(buf, 'x', sizeof buf);
    prctl(PR_GET_NAME, buf);
    printf("%s name [%s]\n", who, buf);
}

static int deathsig(void)
{
    int s = -1;
    prctl(PR_GET_PDEATHSIG, &s);
    return s;
}

int main(void)
{
    pid_t me = getpid(), up = getppid();
    prctl(PR_SET_NAME, "a-name-longer-than-fifteen");
    name("parent:");
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    printf("parent: pdeathsig %d\n", deathsig());
    int go[2];
    pipe(go);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        char ch;
        printf("child: getppid is the parent: %s\n", getppid() == me ? "yes" : "no");
        printf("child: getpid differs: %s\n", getpid() != me ? "yes" : "no");
        name("child: inherited");
        printf("child: pdeathsig after fork %d\n", deathsig());
        prctl(PR_SET_NAME, "child");
        name("child: renamed");
        fflush(stdout);
        close(go[1]);
        read(go[0], &ch, 1);
        _exit(0);
    }
    close(go[0]);
    int st;
    close(go[1]);
    waitpid(c, &st, 0);
    name("parent: after the child renamed itself,");
    printf("parent: getppid unchanged: %s\n", getppid() == up ? "yes" : "no");
    errno = 0;
    int r = prctl(PR_SET_PDEATHSIG, 65);
    printf("PR_SET_PDEATHSIG 65: %d %s\n", r, errno == EINVAL ? "EINVAL" : "?");
    r = prctl(PR_SET_PDEATHSIG, 0);
    printf("PR_SET_PDEATHSIG 0: %d, now %d\n", r, deathsig());
    errno = 0;
    r = prctl(0x7fff, 0, 0, 0, 0);
    printf("unknown option: %d %s\n", r, errno == EINVAL ? "EINVAL" : "?");
    return 0;
}
