/* fdshare.c: what dup shares and a second open does not (notebooks 02a and 02b).
 *
 * usage: fdshare A B C [-e FD] [-x FD]
 *
 *   fd 3  open("shared.txt", O_WRONLY | O_CREAT | O_TRUNC)
 *   fd 4  dup(3): a second descriptor for the SAME open file description
 *   fd 5  open("shared.txt", O_WRONLY): a NEW description of the same file
 *   A bytes 'a' are written through fd 3, then B bytes 'b' through fd 4, then C bytes 'c'
 *   through fd 5 (from its own offset 0, over the a's).
 *   fd 6  open("scratch.tmp", O_RDWR | O_CREAT | O_TRUNC), "half-done work\n" written, and
 *         the name unlinked: a file deleted while open (its bytes live on, nameless).
 *
 *   -e FD  open fd FD (3 or 5) with O_CLOEXEC (dup's copy never has it: FD_CLOEXEC belongs
 *          to the descriptor, not to the description)
 *   -x FD  close fd FD before the moment below
 *
 * Then one getpid(): the moment the notebooks stop the guest at (nothing changes the fd
 * table after it). Last, the report, read back through the descriptors themselves: each
 * fd's offset (lseek SEEK_CUR) and close-on-exec bit, shared.txt's size, and what the
 * deleted file still holds.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void fail(const char *what)
{
    perror(what);
    exit(1);
}

static void put(int fd, char c, long n)
{
    char buf[256];
    memset(buf, c, sizeof buf);
    while (n > 0) {
        long k = n < (long)sizeof buf ? n : (long)sizeof buf;
        if (write(fd, buf, (size_t)k) != k)
            fail("write");
        n -= k;
    }
}

int main(int argc, char **argv)
{
    long n[3];
    int cloexec_fd = -1, close_fd = -1, i, a = 1;

    for (i = 0; i < 3; i++) {
        if (a >= argc) {
            fprintf(stderr, "usage: fdshare A B C [-e FD] [-x FD]\n");
            return 2;
        }
        n[i] = atol(argv[a++]);
    }
    for (; a + 1 < argc; a += 2) {
        if (strcmp(argv[a], "-e") == 0)
            cloexec_fd = atoi(argv[a + 1]);
        else if (strcmp(argv[a], "-x") == 0)
            close_fd = atoi(argv[a + 1]);
    }

    int fd3 = open("shared.txt", O_WRONLY | O_CREAT | O_TRUNC | (cloexec_fd == 3 ? O_CLOEXEC : 0),
                   0644);
    int fd4 = dup(fd3);
    int fd5 = open("shared.txt", O_WRONLY | (cloexec_fd == 5 ? O_CLOEXEC : 0));
    if (fd3 != 3 || fd4 != 4 || fd5 != 5)
        fail("open shared.txt");
    put(3, 'a', n[0]);
    put(4, 'b', n[1]);
    put(5, 'c', n[2]);

    static const char work[] = "half-done work\n";
    if (open("scratch.tmp", O_RDWR | O_CREAT | O_TRUNC, 0600) != 6)
        fail("open scratch.tmp");
    if (write(6, work, sizeof work - 1) != (ssize_t)(sizeof work - 1))
        fail("write scratch.tmp");
    if (unlink("scratch.tmp") != 0)
        fail("unlink");
    if (close_fd >= 0 && close(close_fd) != 0)
        fail("close");

    getpid();   /* the moment: the fd table is complete */

    for (int fd = 3; fd <= 6; fd++) {
        off_t off = lseek(fd, 0, SEEK_CUR);
        int flags = fcntl(fd, F_GETFD);
        if (off < 0 || flags < 0)
            printf("fd %d: closed\n", fd);
        else
            printf("fd %d: offset %ld, close-on-exec %d\n", fd, (long)off, !!(flags & FD_CLOEXEC));
    }
    struct stat st;
    if (stat("shared.txt", &st) != 0)
        fail("stat shared.txt");
    printf("shared.txt: %ld bytes\n", (long)st.st_size);
    char back[64] = {0};
    if (close_fd != 6) {
        if (pread(6, back, sizeof back - 1, 0) < 0)
            fail("pread");
        printf("scratch.tmp (deleted): %s", back);
    }
    printf("EXIT-SUCCESS\n");
    return 0;
}
