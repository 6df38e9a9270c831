/* determinism.c: print everything that differs between two runs on a real machine:
 * the clocks, the pid, getrandom, AT_RANDOM, and a new file's inode and mtime (rdtsc is in
 * rdtsc.c, directories and links in dirstat.c).
 * Under vsnap two runs must print the same bytes; a different --seed changes the randomness.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static void hex(const char *label, const unsigned char *p, size_t n)
{
    printf("%s ", label);
    for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
    printf("\n");
}

int main(void)
{
    printf("time %lld\n", (long long)time(NULL));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    printf("realtime %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    printf("monotonic %lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    printf("gettimeofday %lld.%06ld\n", (long long)tv.tv_sec, (long)tv.tv_usec);
    printf("pid %d ppid %d\n", (int)getpid(), (int)getppid());

    unsigned char rnd[16];
    ssize_t got = getrandom(rnd, sizeof rnd, 0);
    printf("getrandom_n %zd\n", got);
    hex("getrandom", rnd, sizeof rnd);
    const unsigned char *at_random = (const unsigned char *)getauxval(AT_RANDOM);
    if (at_random) hex("AT_RANDOM", at_random, 16);
    else printf("AT_RANDOM missing\n");

    int fd = open("made.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { perror("made.txt"); return 1; }
    write(fd, "made\n", 5);
    struct stat st;
    fstat(fd, &st);
    close(fd);
    printf("made.txt ino %llu dev %llu mtime %lld.%09ld size %lld\n",
           (unsigned long long)st.st_ino, (unsigned long long)st.st_dev,
           (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, (long long)st.st_size);
    return 0;
}
