/* Permission state around checkpoints: a descriptor opened for writing on a file since made
 * read-only, a working directory since made unsearchable, a read-only directory, a
 * set-user-ID file open for writing. After a resume each must behave as before it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void res(const char *what, long r) {
    if (r < 0) printf("%s: %s\n", what, errno == EACCES ? "EACCES" : strerror(errno));
    else printf("%s: ok\n", what);
}

int main(void) {
    struct stat st;
    setvbuf(stdout, NULL, _IOLBF, 0);
    umask(022);
    mkdir("d", 0755);
    int fd = open("d/f", O_RDWR | O_CREAT, 0644);
    int s = open("s", O_WRONLY | O_CREAT, 04755);
    chmod("d/f", 0444);
    chmod("d", 0555);
    for (int i = 0; i < 3; i++) {
        res("write through old fd", write(fd, "b", 1));
        int g = open("d/g", O_CREAT | O_WRONLY, 0644);
        res("create in read-only dir", g);
        int w = open("d/f", O_WRONLY);
        res("open read-only file for writing", w);
        chmod("s", 04755);
        res("write set-user-ID file", write(s, "x", 1));
        stat("s", &st);
        printf("mode %o\n", (unsigned)(st.st_mode & 07777));
    }
    res("chdir d", chdir("d"));
    chmod(".", 0);
    res("stat f in unsearchable cwd", stat("f", &st));
    res("open . in unsearchable cwd", open(".", O_RDONLY));
    res("chdir ..", chdir(".."));
    res("fchmod old fd", fchmod(fd, 0644));
    res("write again", write(fd, "c", 1));
    close(fd);
    close(s);
    return 0;
}
