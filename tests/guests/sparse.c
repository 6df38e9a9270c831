/* sparse.c: a file with a hole, open while the checkpoints happen.
 *
 *   sparse ghost|named|ghost-prealloc [HOLE_MIB]
 *
 * Writes 100000 bytes of a pattern at 0 and "tail" after a hole of HOLE_MIB MiB (default
 * 1024), with prealloc also 1 MiB of blocks reserved in the hole and 1 MiB past the end
 * (fallocate), removes the name (ghost) or keeps it (named), then prints the size,
 * st_blocks and what reads back, before and after filling a little of the hole. st_blocks
 * is the point: a file with a hole must keep it. The file is removed at the end. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void busy(void)
{
    for (int i = 0; i < 20; i++)
        getppid();
}

static void show(const char *step, int fd, off_t tail_at)
{
    struct stat st;
    /* written back first: with five extents (prealloc, filled) ext4 moves its extent tree
     * out of the inode when the host writes the file back, and st_blocks grows by that block
     * then, at a moment the flusher chooses; after fsync every run counts it */
    fsync(fd);
    fstat(fd, &st);
    char buf[8] = {0}, mid[8] = {0};
    pread(fd, buf, 4, tail_at);
    pread(fd, mid, 4, tail_at / 2);
    unsigned sum = 0;
    unsigned char head[4096];
    for (off_t at = 0; at < 100000; at += sizeof head) {
        ssize_t n = pread(fd, head, sizeof head, at);
        for (ssize_t i = 0; i < n; i++)
            sum = sum * 31 + head[i];
    }
    printf("%s: size %lld blocks %lld nlink %ld tail %s mid %02x%02x%02x%02x head %08x\n",
           step, (long long)st.st_size, (long long)st.st_blocks, (long)st.st_nlink, buf,
           mid[0], mid[1], mid[2], mid[3], sum);
}

int main(int argc, char **argv)
{
    int ghost = argc > 1 && strncmp(argv[1], "ghost", 5) == 0;
    off_t tail_at = (off_t)(argc > 2 ? atoi(argv[2]) : 1024) << 20;
    int fd = open("s", O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) { perror("s"); return 1; }
    unsigned char pattern[100000];
    for (int i = 0; i < (int)sizeof pattern; i++)
        pattern[i] = (unsigned char)(i * 7 + i / 251);
    if (write(fd, pattern, sizeof pattern) != sizeof pattern) { perror("write"); return 1; }
    if (pwrite(fd, "tail", 4, tail_at) != 4) { perror("pwrite"); return 1; }
    if (strstr(argv[1], "prealloc")) {
        /* blocks reserved and never written: zeros that count in st_blocks, inside the
         * file and past its end */
        if (fallocate(fd, 0, tail_at / 4, 1 << 20) != 0) perror("fallocate");
        if (fallocate(fd, 1 /* FALLOC_FL_KEEP_SIZE */, tail_at + 4096, 1 << 20) != 0)
            perror("fallocate past the end");
    }
    if (ghost)
        unlink("s");
    show("made", fd, tail_at);
    busy();
    show("again", fd, tail_at);
    if (pwrite(fd, "mid!", 4, tail_at / 2) != 4) { perror("pwrite mid"); return 1; }
    busy();
    show("filled", fd, tail_at);
    unlink("s");  /* a test compares the files left behind: not a 1 GiB one */
    return 0;
}
