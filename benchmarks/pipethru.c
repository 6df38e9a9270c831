/* pipethru.c MIB CHUNK [unix]: a parent writes MIB MiB through a pipe (or, with "unix", a
   connected AF_UNIX stream socketpair), CHUNK bytes a write, to a
   forked child that reads CHUNK bytes at a time and counts the bytes and their sum; the child
   prints both, the parent waits for it. benchmarks/procs.py times it from outside, natively
   and under `vsnap run` (the same binary), and compares what the child printed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long total = (argc > 1 ? atol(argv[1]) : 16) << 20;
    size_t chunk = argc > 2 ? (size_t)atol(argv[2]) : 65536;
    char *buf = malloc(chunk);
    int fd[2];
    int unix_socket = argc > 3 && strcmp(argv[3], "unix") == 0;
    if (!buf || chunk == 0 || (unix_socket ? socketpair(AF_UNIX, SOCK_STREAM, 0, fd)
                                           : pipe(fd)) < 0) {
        perror("pipethru");
        return 1;
    }
    for (size_t i = 0; i < chunk; i++)
        buf[i] = (char)(i * 7 + 1);
    pid_t pid = fork();
    if (pid < 0) {
        perror("pipethru: fork");
        return 1;
    }
    if (pid == 0) {
        close(fd[1]);
        unsigned long long bytes = 0, sum = 0;
        ssize_t got;
        while ((got = read(fd[0], buf, chunk)) > 0) {
            /* every 512th byte of the stream, wherever the reads split it */
            for (ssize_t i = (512 - bytes % 512) % 512; i < got; i += 512)
                sum += (unsigned char)buf[i];
            bytes += (unsigned long long)got;
        }
        if (got < 0) {
            perror("pipethru: read");
            _exit(1);
        }
        printf("read %llu bytes in chunks of up to %zu, sum of every 512th byte %llu\n", bytes, chunk, sum);
        fflush(stdout);
        _exit(0);
    }
    close(fd[0]);
    for (long left = total; left > 0;) {
        size_t n = left < (long)chunk ? (size_t)left : chunk;
        ssize_t put = write(fd[1], buf, n);
        if (put <= 0) {
            perror("pipethru: write");
            return 1;
        }
        left -= put;
    }
    close(fd[1]);
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
        fprintf(stderr, "pipethru: the reader failed\n");
        return 1;
    }
    return 0;
}
