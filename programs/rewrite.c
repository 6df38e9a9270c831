/* rewrite.c: random-access file I/O.
 *
 * usage: rewrite FILE
 *
 * Creates FILE holding 8 fixed-size records, reads it back, rewrites two
 * records in the middle (one with pwrite, one with lseek + write), cuts the
 * file to 6 records with ftruncate, and prints what is left.  The file is
 * left behind on purpose, so a test can compare the final file of a normal
 * run with that of a run that was checkpointed and resumed.
 *
 * What it shows: the file offset belongs to the open file description; pread
 * and pwrite do not move it; lseek(SEEK_END) and fstat both see the size.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RECSIZE 16                       /* "record 3 ......\n" */
#define NREC 8

static void die(const char *what) { perror(what); exit(1); }

/* A record: "TAG i" padded with dots to 15 characters, then a newline. */
static void make_record(char *rec, int i, const char *tag)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%s %d ", tag, i);
    memset(rec, '.', RECSIZE - 1);
    memcpy(rec, tmp, n < RECSIZE - 1 ? (size_t)n : RECSIZE - 1);
    rec[RECSIZE - 1] = '\n';
}

/* Print the whole file, reading from offset 0 with pread. */
static void show(int fd, const char *title)
{
    char buf[RECSIZE * NREC + 1];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n < 0) die("pread");
    buf[n] = '\0';
    printf("--- %s (%zd bytes)\n%s", title, n, buf);
}

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: rewrite FILE\n"); return 2; }
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die(argv[1]);

    char rec[RECSIZE];
    for (int i = 0; i < NREC; i++) {                 /* 1. write the records */
        make_record(rec, i, "record");
        if (write(fd, rec, RECSIZE) != RECSIZE) die("write");
    }
    printf("offset after writing: %ld\n", (long)lseek(fd, 0, SEEK_CUR));

    if (lseek(fd, 0, SEEK_SET) != 0) die("lseek");    /* 2. read them back */
    char all[RECSIZE * NREC];
    if (read(fd, all, sizeof all) != (ssize_t)sizeof all) die("read");
    printf("read back %d records, first: %.15s\n", NREC, all);

    make_record(rec, 3, "CHANGED");                  /* 3a. pwrite record 3 */
    if (pwrite(fd, rec, RECSIZE, 3 * RECSIZE) != RECSIZE) die("pwrite");
    printf("offset after pwrite: %ld (unchanged)\n", (long)lseek(fd, 0, SEEK_CUR));

    if (lseek(fd, 5 * RECSIZE, SEEK_SET) < 0) die("lseek");   /* 3b. record 5 */
    make_record(rec, 5, "REWRITTEN");
    if (write(fd, rec, RECSIZE) != RECSIZE) die("write");
    printf("offset after lseek+write: %ld\n", (long)lseek(fd, 0, SEEK_CUR));
    show(fd, "after rewriting");

    if (ftruncate(fd, 6 * RECSIZE) != 0) die("ftruncate");    /* 4. cut */
    struct stat st;
    if (fstat(fd, &st) != 0) die("fstat");
    printf("fstat size after ftruncate: %ld\n", (long)st.st_size);
    printf("lseek SEEK_END: %ld\n", (long)lseek(fd, 0, SEEK_END));

    /* 5. read what is left, through the file offset this time */
    if (lseek(fd, 0, SEEK_SET) != 0) die("lseek");
    char buf[RECSIZE * NREC];
    ssize_t got, total = 0;
    while ((got = read(fd, buf + total, sizeof buf - (size_t)total)) > 0) total += got;
    if (got < 0) die("read");
    printf("--- final content (%zd bytes)\n", total);
    fwrite(buf, 1, (size_t)total, stdout);

    if (close(fd) != 0) die("close");
    printf("EXIT-SUCCESS\n");
    return 0;
}
