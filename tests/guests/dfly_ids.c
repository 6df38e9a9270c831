/* What DragonFly's checkpt(1) cannot keep, seen from inside: the ids before and after a save
 * (the save is made at the sched_yield() call, the test's marker), a file written before it,
 * and with an argument, something DragonFly refuses: a deleted-but-open file ("ghost"), a
 * deleted mapped one ("ghostmap"), a child ("fork"), a pipe ("pipe"), or stdout moved onto a
 * file ("redirect"). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

static pid_t pid0, ppid0, pgrp0, sid0;  /* cached before the save */

static void ids(const char *when)
{
    char line[160];
    int n = snprintf(line, sizeof line, "%s: pid %d ppid %d pgrp %d sid %d uid %d gid %d\n",
                     when, (int)getpid(), (int)getppid(), (int)getpgrp(), (int)getsid(0),
                     (int)getuid(), (int)getgid());
    write(1, line, n);
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "";
    char buf[64];
    int fd, p[2];

    pid0 = getpid(); ppid0 = getppid(); pgrp0 = getpgrp(); sid0 = getsid(0);
    fd = open("note.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "written before the save\n", 24) != 24)
        return 1;
    ids("before");
    if (!strcmp(what, "ghost")) {
        int g = open("ghost.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
        write(g, "ghost\n", 6);
        unlink("ghost.txt");
    } else if (!strcmp(what, "ghostmap")) {
        int g = open("mapped.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
        write(g, "mapped\n", 7);
        if (mmap(0, 4096, PROT_READ, MAP_PRIVATE, g, 0) == MAP_FAILED)
            return 1;
        close(g);
        unlink("mapped.txt");
    } else if (!strcmp(what, "fork")) {
        if (fork() == 0)
            _exit(0);
    } else if (!strcmp(what, "pipe")) {
        if (pipe(p) != 0)
            return 1;
    } else if (!strcmp(what, "redirect")) {
        int o = open("out.txt", O_CREAT | O_WRONLY | O_TRUNC, 0644);
        dup2(o, 1);
        close(o);
    }
    sched_yield();  /* the save point */
    ids("after");
    printf("pid %s, pgrp %s, ppid %s, sid %s\n",
           getpid() == pid0 ? "unchanged" : "changed", getpgrp() == pgrp0 ? "unchanged" : "changed",
           getppid() == ppid0 ? "unchanged" : "changed", getsid(0) == sid0 ? "unchanged" : "changed");
    lseek(fd, 0, SEEK_SET);
    int n = read(fd, buf, sizeof buf);
    printf("note.txt: %.*s", n > 0 ? n : 0, buf);
    return 0;
}
