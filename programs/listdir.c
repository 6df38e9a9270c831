/* listdir.c: directories, from both sides.
 *
 * usage: listdir [DIR]     (DIR defaults to ".")
 *
 * Moves into DIR, creates the subdirectory listdir.out with a few entries
 * (two files, an empty file, a subdirectory and a symbolic link), then lists
 * it with opendir/readdir and describes each entry with lstat.
 *
 * readdir returns entries in whatever order the file system keeps them, so
 * the names are sorted before printing.  Directory sizes depend on the file
 * system too, so only regular files and links show a size.  Re-running is
 * fine: existing entries are reused and the files are truncated.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void die(const char *what) { perror(what); exit(1); }

static void make_file(const char *name, const char *text)
{
    int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die(name);
    size_t n = strlen(text);
    if (write(fd, text, n) != (ssize_t)n) die("write");
    if (close(fd) != 0) die("close");
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *type_name(mode_t m)
{
    if (S_ISREG(m)) return "file";
    if (S_ISDIR(m)) return "dir";
    if (S_ISLNK(m)) return "link";
    return "other";
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    if (chdir(dir) != 0) die(dir);
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd) == NULL) die("getcwd");
    printf("cwd: %s\n", cwd);

    /* Build the directory; EEXIST just means an earlier run made it. */
    if (mkdir("listdir.out", 0755) != 0 && errno != EEXIST) die("mkdir listdir.out");
    if (chdir("listdir.out") != 0) die("chdir listdir.out");
    make_file("alpha.txt", "alpha\n");
    make_file("beta.txt", "the second file\n");
    make_file("empty", "");
    if (mkdir("sub", 0755) != 0 && errno != EEXIST) die("mkdir sub");
    if (symlink("alpha.txt", "link") != 0 && errno != EEXIST) die("symlink");
    if (chdir("..") != 0) die("chdir ..");

    /* Read every name, including "." and "..". */
    DIR *d = opendir("listdir.out");
    if (d == NULL) die("opendir");
    char *names[64];
    size_t n = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (n == 64) { fprintf(stderr, "listdir: too many entries\n"); return 1; }
        if ((names[n++] = strdup(e->d_name)) == NULL) die("strdup");
    }
    if (errno != 0) die("readdir");
    closedir(d);
    qsort(names, n, sizeof names[0], by_name);

    printf("listdir.out has %zu entries:\n", n);
    for (size_t i = 0; i < n; i++) {
        char path[512];
        struct stat st;
        snprintf(path, sizeof path, "listdir.out/%s", names[i]);
        if (lstat(path, &st) != 0) die(path);
        if (S_ISDIR(st.st_mode))
            printf("  %-10s %-5s      -\n", names[i], type_name(st.st_mode));
        else
            printf("  %-10s %-5s %6ld\n", names[i], type_name(st.st_mode), (long)st.st_size);
        free(names[i]);
    }

    /* stat (not lstat) follows the link to alpha.txt */
    struct stat st;
    if (stat("listdir.out/link", &st) != 0) die("stat link");
    printf("stat through link: %s, %ld bytes\n", type_name(st.st_mode), (long)st.st_size);
    printf("EXIT-SUCCESS\n");
    return 0;
}
