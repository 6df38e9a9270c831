/* proc_execerr.c: execve's errors, and #! scripts. Files are made in the current directory:
 *   missing file ENOENT; a path through a regular file ENOTDIR; a directory EACCES;
 *   text without #! and with the x bit ENOEXEC (execve itself never falls back to sh);
 *   the same without any x bit EACCES (even for root); an empty file ENOEXEC; "\x7fELF" and
 *   zeros (a bad ELF header) ENOEXEC; a #! script whose interpreter is missing ENOENT;
 *   a #! script whose interpreter is this very program (its path from readlink of
 *   /proc/self/exe) with an argument: the interpreter gets [interp] [arg] [script path] [args].
 * execveat: an fd of this program with AT_EMPTY_PATH (what fexecve does; its name (comm)
 * afterwards is not printed: older kernels name it by the fd number, 6.18 here by the file),
 * a path relative to a directory fd, an empty path without AT_EMPTY_PATH (ENOENT), bad flags
 * (EINVAL); a #! script named relative to a close-on-exec directory fd is ENOENT (its
 * interpreter could not open "/dev/fd/N/script"), with the fd kept open it runs and the
 * interpreter gets that path.
 * Each exec is tried in a child, whose exit code carries the errno back. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *en(int e)
{
    switch (e) {
    case 0: return "ok";
    case ENOENT: return "ENOENT";
    case ENOEXEC: return "ENOEXEC";
    case EACCES: return "EACCES";
    case ENOTDIR: return "ENOTDIR";
    case EFAULT: return "EFAULT";
    case ELOOP: return "ELOOP";
    case EINVAL: return "EINVAL";
    case EISDIR: return "EISDIR";
    default: return "E?";
    }
}

static void put(const char *name, const void *data, size_t n, mode_t mode)
{
    int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    write(fd, data, n);
    close(fd);
    chmod(name, mode);
}

static void try_at(const char *label, int dirfd, const char *path, int flags)
{
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        char *args[] = {(char *)path, "one", "two", 0};
        char *env[] = {0};
        if (dirfd == -1)
            execve(path, args, env);
        else
            syscall(SYS_execveat, dirfd, path, args, env, flags);
        _exit(100 + errno);
    }
    int st;
    waitpid(c, &st, 0);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (code >= 100)
        printf("%-28s -1 %s\n", label, en(code - 100));
    else
        printf("%-28s ran, exited %d\n", label, code);
}

static void try(const char *label, const char *path) { try_at(label, -1, path, 0); }

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "one") == 0) {     /* run by execveat of our fd */
        printf("  this program again: argc %d [%s] [%s]\n", argc, argv[1], argv[2]);
        return 4;
    }
    if (argc > 1 && strcmp(argv[1], "as-interpreter") == 0) {
        printf("  interpreter got argc %d:", argc);
        for (int i = 1; i < argc; i++)
            printf(" [%s]", argv[i]);
        printf("\n");
        return 3;
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) {
        perror("readlink /proc/self/exe");
        return 1;
    }
    self[n] = 0;

    mkdir("adir", 0755);
    put("text-x", "echo hello\n", 11, 0755);
    put("text-nox", "echo hello\n", 11, 0644);
    put("empty-x", "", 0, 0755);
    char elf[64] = "\x7f" "ELF";
    put("badelf-x", elf, sizeof elf, 0755);
    put("short-elf-x", elf, 4, 0755);
    put("script-nointerp", "#!/no/such/interpreter\n", 23, 0755);
    char script[4200];
    int len = snprintf(script, sizeof script, "#!%s as-interpreter\nnot read by anyone\n", self);
    put("script-self", script, len, 0755);
    put("script-self-nox", script, len, 0644);

    try("missing file", "./no-such-file");
    try("through a regular file", "./text-x/sub");
    try("a directory", "./adir");
    try("text, x bit, no #!", "./text-x");
    try("text, no x bit", "./text-nox");
    try("empty file, x bit", "./empty-x");
    try("ELF magic, bad header", "./badelf-x");
    try("ELF magic only", "./short-elf-x");
    try("#! missing interpreter", "./script-nointerp");
    try("#! this program", "./script-self");
    try("#! this program, no x bit", "./script-self-nox");
    try("empty path", "");

    int self_fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    int dir_fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    try_at("execveat(fd, \"\", EMPTY_PATH)", self_fd, "", AT_EMPTY_PATH);
    try_at("execveat(dirfd, script)", dir_fd, "script-self", 0);
    try_at("execveat(dirfd, text-x)", dir_fd, "text-x", 0);
    try_at("execveat(fd, \"\", 0)", self_fd, "", 0);
    try_at("execveat(bad flags)", dir_fd, "script-self", 0x40000);
    close(self_fd);
    close(dir_fd);
    dir_fd = open(".", O_RDONLY | O_DIRECTORY);       /* the interpreter can reach this one */
    try_at("execveat(dirfd, script) kept", dir_fd, "script-self", 0);
    close(dir_fd);

    const char *files[] = {"text-x", "text-nox", "empty-x", "badelf-x", "short-elf-x",
                           "script-nointerp", "script-self", "script-self-nox"};
    for (unsigned i = 0; i < sizeof files / sizeof *files; i++)
        unlink(files[i]);
    rmdir("adir");

    return 0;
}
