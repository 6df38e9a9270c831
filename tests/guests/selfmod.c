/* Self-modifying code, for exact instruction counting (tests/test_counting.py).
 *
 * 1. mprotect: code written into a page made writable, then executable, run, rewritten in
 *    place with code of the same size but another number of instructions, run again.
 * 2. RWX: code rewritten in a writable and executable page without any system call between
 *    the write and the run, many times in a loop.
 * 3. Code that patches the instruction right after its store, in the block being run.
 * Prints what the code returned, so the run is checked too. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

typedef int (*fn)(void);

/* both 7 bytes long: A returns 1 in 3 instructions, B returns 2 in 4 */
static const unsigned char A[] = {0xb8, 0x01, 0x00, 0x00, 0x00, 0x90, 0xc3};  /* mov; nop; ret */
static const unsigned char B[] = {0x31, 0xc0, 0xff, 0xc0, 0xff, 0xc0, 0xc3};  /* xor; inc; inc */
/* mov byte [rip+1], 5 (the immediate of the next instruction); mov eax, 1; nop; nop; ret:
 * returns 5 */
static const unsigned char P[] = {0xc6, 0x05, 0x01, 0x00, 0x00, 0x00, 0x05,
                                  0xb8, 0x01, 0x00, 0x00, 0x00, 0x90, 0x90, 0xc3};
/* mov eax, imm32; ret: the immediate is rewritten */
static const unsigned char C[] = {0xb8, 0x00, 0x00, 0x00, 0x00, 0xc3};

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? 0 : 200, total = 0;
    for (const char *p = argc > 1 ? argv[1] : ""; *p; p++) rounds = rounds * 10 + (*p - '0');

    unsigned char *page = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                               -1, 0);
    if (page == MAP_FAILED) { perror("mmap"); return 1; }
    for (int i = 0; i < rounds / 20 + 1; i++) {
        mprotect(page, 4096, PROT_READ | PROT_WRITE);
        memcpy(page, i % 2 ? B : A, sizeof A);
        mprotect(page, 4096, PROT_READ | PROT_EXEC);
        for (int j = 0; j < 5; j++) total += ((fn)page)();
    }
    printf("mprotect: %d\n", total);

    unsigned char *rwx = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (rwx == MAP_FAILED) { perror("mmap rwx"); return 1; }
    memcpy(rwx, C, sizeof C);
    long sum = 0;
    for (int i = 0; i < rounds; i++) {
        if (i % 3 == 0) memcpy(rwx + 64, i % 2 ? A : B, sizeof A);  /* same place, other code */
        memcpy(rwx + 1, &i, 4);
        sum += ((fn)rwx)() + ((fn)(rwx + 64))();
    }
    printf("rwx: %ld\n", sum);

    sum = 0;
    for (int i = 0; i < rounds / 4 + 1; i++) {
        memcpy(rwx + 128, P, sizeof P);
        sum += ((fn)(rwx + 128))();
    }
    printf("patched: %ld\n", sum);
    return 0;
}
