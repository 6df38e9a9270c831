/* timesave.c: file times that only the kernel's books hold (an atime older than the mtime, a
 * ctime later than both), held across system calls where a checkpoint may fall, then read
 * back after a read of the file (which must leave the atime alone) and after a chmod. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static void show(const char *label, int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0) { perror("fstat"); return; }
    printf("%s: atime %lld.%09ld mtime %lld.%09ld ctime %lld.%09ld\n", label,
           (long long)st.st_atim.tv_sec, st.st_atim.tv_nsec, (long long)st.st_mtim.tv_sec,
           st.st_mtim.tv_nsec, (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
}

int main(void)
{
    char buf[8];
    int fd = open("f", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "data", 4) != 4) { perror("f"); return 1; }
    struct timespec t[2] = {{1000, 1}, {2000, 2}};
    if (utimensat(AT_FDCWD, "f", t, 0) != 0) { perror("utimensat"); return 1; }
    show("set", fd);
    for (int i = 0; i < 8; i++)
        getppid();  /* places to checkpoint with the times only in the books */
    if (pread(fd, buf, 4, 0) != 4) { perror("pread"); return 1; }
    show("after a read", fd);
    if (fchmod(fd, 0600) != 0) { perror("fchmod"); return 1; }
    for (int i = 0; i < 4; i++)
        getppid();
    show("after fchmod", fd);
    return 0;
}
