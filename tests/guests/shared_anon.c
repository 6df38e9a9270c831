/* MAP_SHARED | MAP_ANONYMOUS memory as Linux keeps it: MADV_DONTNEED leaves its bytes (they
   are the shmem file's), mremap moves them along, /proc/self/maps says "rw-s" and
   "/dev/zero (deleted)". (After fork, both processes see each other's stores: that part
   waits for fork; vsnap/memfork.py's tests check it on the hardware.) */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

int main(void)
{
    char *p = mmap(0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    strcpy(p, "hello shared");
    strcpy(p + 8192, "third page");
    madvise(p, 4096, MADV_DONTNEED);
    printf("after MADV_DONTNEED: '%s'\n", p);
    if (mprotect(p, 3 * 4096, PROT_READ) || mprotect(p, 3 * 4096, PROT_READ | PROT_WRITE))
        perror("mprotect");
    char *q = mremap(p, 3 * 4096, 64 * 4096, MREMAP_MAYMOVE);
    /* (the 61 pages it grew by lie past the end of the shmem object: SIGBUS on Linux) */
    printf("after mremap: '%s' '%s'\n", q, q + 8192);
    char line[512];
    FILE *f = fopen("/proc/self/maps", "r");
    int shown = 0;
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, " rw-s ") && strstr(line, "/dev/zero (deleted)") && !shown++)
            puts("maps: rw-s /dev/zero (deleted)");
    return 0;
}
