/* linkghost.c: one inode open through two hard links, names removed while it is open.
 *
 *   linkghost MODE [raw]     MODE: none (keep both names), a (remove a), b (remove b),
 *                            ab (remove both), moved (link a to c, then remove a and b)
 *
 * Prints, at each step, for every descriptor: whether it is the same inode as the others
 * (and as each remaining name), st_nlink, st_size and the content read through it. With
 * "raw" it also prints the inode numbers themselves (vsnap's are deterministic; a native
 * run's are not). The busy loops between steps give checkpoints places to land. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int raw;

static void busy(void)
{
    for (int i = 0; i < 20; i++)
        getppid();
}

static void show(const char *step, int fd1, int fd2, int fd3)
{
    struct stat s1, s2, s3, sn;
    fstat(fd1, &s1);
    fstat(fd2, &s2);
    fstat(fd3, &s3);
    printf("%s: fd1==fd2 %d fd1==fd3 %d nlink %ld %ld %ld size %ld\n", step,
           s1.st_ino == s2.st_ino && s1.st_dev == s2.st_dev,
           s1.st_ino == s3.st_ino && s1.st_dev == s3.st_dev,
           (long)s1.st_nlink, (long)s2.st_nlink, (long)s3.st_nlink, (long)s1.st_size);
    const char *names[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        if (stat(names[i], &sn) == 0)
            printf("  name %s: same inode %d nlink %ld\n", names[i],
                   sn.st_ino == s1.st_ino && sn.st_dev == s1.st_dev, (long)sn.st_nlink);
        else
            printf("  name %s: gone\n", names[i]);
    }
    if (raw)
        printf("  ino %lu %lu %lu\n", (unsigned long)s1.st_ino, (unsigned long)s2.st_ino,
               (unsigned long)s3.st_ino);
    char buf[64] = {0};
    ssize_t n = pread(fd1, buf, sizeof buf - 1, 0);
    printf("  fd1 reads %zd: %s|\n", n, buf);
    memset(buf, 0, sizeof buf);
    n = pread(fd2, buf, sizeof buf - 1, 0);
    printf("  fd2 reads %zd: %s|\n", n, buf);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "ab";
    raw = argc > 2 && strcmp(argv[2], "raw") == 0;
    int fd = open("a", O_WRONLY | O_CREAT | O_TRUNC, 0640);
    if (fd < 0 || write(fd, "first", 5) != 5) { perror("a"); return 1; }
    close(fd);
    if (link("a", "b") != 0) { perror("link"); return 1; }
    int fd1 = open("a", O_RDWR);          /* through the first name */
    int fd2 = open("b", O_RDONLY);        /* through the second */
    int fd3 = open("b", O_WRONLY);        /* write-only, through the second */
    if (fd1 < 0 || fd2 < 0 || fd3 < 0) { perror("open"); return 1; }
    show("opened", fd1, fd2, fd3);
    busy();
    if (strcmp(mode, "moved") == 0) {
        link("a", "c");
        unlink("a");
        unlink("b");
    } else {
        if (strchr(mode, 'a'))
            unlink("a");
        if (strchr(mode, 'b'))
            unlink("b");
    }
    show("removed", fd1, fd2, fd3);
    busy();
    if (pwrite(fd1, "+one", 4, 5) != 4) perror("pwrite fd1");
    busy();
    if (write(fd3, "THREE", 5) != 5) perror("write fd3");
    show("written", fd1, fd2, fd3);
    busy();
    show("end", fd1, fd2, fd3);
    return 0;
}
