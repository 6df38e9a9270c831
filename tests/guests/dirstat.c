/* dirstat.c: the times of a directory and a symbolic link that the guest makes itself.
 * Under vsnap they must come from the virtual clock, like those of the files it writes:
 * two runs print the same bytes. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static void show(const char *label, const struct stat *st)
{
    printf("%s ino %llu mtime %lld.%09ld ctime %lld.%09ld\n", label,
           (unsigned long long)st->st_ino, (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
           (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec);
}

int main(void)
{
    struct stat st;
    if (mkdir("sub", 0755) != 0) { perror("mkdir"); return 1; }
    if (stat("sub", &st) != 0) { perror("stat sub"); return 1; }
    show("new dir", &st);
    int fd = open("sub/f", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { perror("sub/f"); return 1; }
    close(fd);
    if (stat("sub", &st) != 0) { perror("stat sub"); return 1; }
    show("dir after create", &st);
    if (symlink("f", "sub/link") != 0) { perror("symlink"); return 1; }
    if (lstat("sub/link", &st) != 0) { perror("lstat"); return 1; }
    show("symlink", &st);
    return 0;
}
