/* faultaddr.c: where faults happen, as a SIGSEGV handler sees them (si_addr, si_code), and a
 * store loop over writable pages between them.
 *
 * Each case faults once; the handler prints si_addr relative to the page it expected and
 * siglongjmps out. Then the stack grows down by 1 MiB (a fault vsnap serves by itself) and a
 * store loop writes 4 MiB of static memory twice and prints a checksum.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static sigjmp_buf back;
static uintptr_t base;

static void on_segv(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    printf("  signal %d, code %d, at base%+ld\n", sig, si->si_code,
           (long)((uintptr_t)si->si_addr - base));
    siglongjmp(back, 1);
}

static long grow(int depth)
{
    volatile char frame[4096];
    frame[0] = (char)depth;
    frame[4095] = (char)depth;
    return depth == 0 ? frame[0] : grow(depth - 1) + frame[4095];
}

static unsigned char arena[4 << 20];

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    char *p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(p + 2 * 4096, 4096);           /* p: rw, p+4096: changed below, p+8192: unmapped */
    base = (uintptr_t)p;
    p[0] = 1;
    mprotect(p + 4096, 4096, PROT_READ);
    puts("write to a read-only page");
    if (!sigsetjmp(back, 1)) ((volatile char *)p)[4096 + 0x123] = 1;
    puts("8-byte write to an unmapped page");
    if (!sigsetjmp(back, 1)) *(volatile uint64_t *)(p + 2 * 4096 + 0x40) = 1;
    mprotect(p + 4096, 4096, PROT_NONE);
    puts("read of a PROT_NONE page");
    if (!sigsetjmp(back, 1)) (void)((volatile char *)p)[4096 + 0x7ff];
    puts("store after a fault, on the page that faulted last time");
    mprotect(p + 4096, 4096, PROT_READ | PROT_WRITE);
    ((volatile char *)p)[4096 + 0x7ff] = 2;
    printf("  %d\n", p[4096 + 0x7ff]);
    puts("write to a page written before, made read-only since");
    mprotect(p, 4096, PROT_READ);
    if (!sigsetjmp(back, 1)) ((volatile char *)p)[0x10] = 3;
    puts("call to an unmapped address");
    if (!sigsetjmp(back, 1)) ((void (*)(void))(p + 2 * 4096 + 0x10))();
    printf("stack growth: %ld\n", grow(256));
    unsigned long sum = 0;
    for (int round = 0; round < 2; round++)
        for (unsigned i = 0; i < sizeof arena; i += 8) {
            *(uint64_t *)(arena + i) += i ^ round;
            sum += arena[i];
        }
    printf("stores: %lu\n", sum);
    return 0;
}
