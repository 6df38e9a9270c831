/* sys_checkpoint(2) as <vsnap/checkpoint.h> declares it: what the call returns in the run
 * that saves and in a resumed one, the fd it wrote to, and its errors. Natively (no such
 * system call on Linux) every call fails with ENOSYS, which it prints. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vsnap/checkpoint.h>

static void show(const char *what, int r) {
    printf("%-34s %d %s\n", what, r, r < 0 ? strerror(errno) : "");
}

int main(int argc, char **argv) {
    int fd = open("self.img", O_RDWR | O_CREAT | O_TRUNC, 0644);
    int ro = open("self.img", O_RDONLY);
    int r = sys_checkpoint(CKPT_FREEZE, fd, -1, 0);
    if (r < 0) {
        show("CKPT_FREEZE into a file", r);
        return 0;
    }
    struct stat st;
    fstat(fd, &st);
    off_t at = lseek(fd, 0, SEEK_CUR);
    printf("sys_checkpoint returned %d\n", r);
    printf("fd %d still open, at the end of the image: %s\n", fd,
           at == st.st_size && at > 0 ? "yes" : "no");
    show("a bad type", sys_checkpoint(3, fd, -1, 0));
    show("another pid", sys_checkpoint(CKPT_FREEZE, fd, 4242, 0));
    show("the terminal's fd", sys_checkpoint(CKPT_FREEZE, 1, -1, 0));
    show("a file open read-only", sys_checkpoint(CKPT_FREEZE, ro, -1, 0));
    show("a closed fd", sys_checkpoint(CKPT_FREEZE, 77, -1, 0));
    show("a thaw of a pid", sys_checkpoint(CKPT_THAW, ro, 4242, 0));
    return 0;
}
