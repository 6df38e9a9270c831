/* checkpt -r FILE: resume a checkpoint from inside a guest, as DragonFly's checkpt(1) does.
 * The program saved in FILE replaces this one (CKPT_THAW); its sys_checkpoint call returns 1.
 * Returns here only when the thaw fails. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <vsnap/checkpoint.h>

int main(int argc, char **argv) {
    if (argc != 3 || strcmp(argv[1], "-r") != 0) {
        fprintf(stderr, "usage: checkpt -r FILE\n");
        return 2;
    }
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) {
        fprintf(stderr, "checkpt: %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    sys_checkpoint(CKPT_THAW, fd, -1, 1);
    fprintf(stderr, "checkpt: cannot thaw %s: %s\n", argv[2], strerror(errno));
    return 1;
}
