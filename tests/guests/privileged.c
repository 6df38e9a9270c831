/* Each privileged instruction in turn, as a user program may try it: Linux answers every one
 * with a general-protection fault (SIGSEGV, si_code SI_KERNEL, no address), caught here and
 * left by siglongjmp. Unicorn runs its CPU in ring 0, where they all ran silently, until
 * vsnap put the guest in ring 3 (vsnap/userring.py). Rounds repeat so that each fault is
 * raised afresh (vsnap/doublefault.py). Last, popf may not raise IOPL or clear IF. A
 * checkpoint anywhere must not bring ring 0 back. */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static sigjmp_buf env;
static volatile int got_code;
static void *volatile got_addr;
static volatile unsigned long reached;   /* set after the instruction, if it ran */

static void on_signal(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    got_code = si->si_code;
    got_addr = si->si_addr;
    siglongjmp(env, sig);
}

static const char *names[] = {
    "cli", "sti", "hlt", "rdmsr", "wrmsr", "wbinvd", "invd", "swapgs", "clts",
    "mov cr0->rax", "mov rax->cr3", "mov dr7->rax", "lgdt", "lidt", "invlpg", "lmsw",
    "ltr", "lldt", "sysexit",
};
#define COUNT (int)(sizeof names / sizeof names[0])

static void try(int i)
{
    static unsigned char table[16];
    switch (i) {
    case 0: __asm__ volatile("cli"); break;
    case 1: __asm__ volatile("sti"); break;
    case 2: __asm__ volatile("hlt"); break;
    case 3: __asm__ volatile("rdmsr" : : "c"(0x10) : "rax", "rdx"); break;
    case 4: __asm__ volatile("wrmsr" : : "c"(0x10), "a"(0), "d"(0)); break;
    case 5: __asm__ volatile("wbinvd"); break;
    case 6: __asm__ volatile("invd"); break;
    case 7: __asm__ volatile("swapgs"); break;
    case 8: __asm__ volatile("clts"); break;
    case 9: { unsigned long v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); break; }
    case 10: __asm__ volatile("mov %0, %%cr3" : : "r"(0UL)); break;
    case 11: { unsigned long v; __asm__ volatile("mov %%dr7, %0" : "=r"(v)); break; }
    case 12: __asm__ volatile("lgdt %0" : : "m"(table)); break;
    case 13: __asm__ volatile("lidt %0" : : "m"(table)); break;
    case 14: __asm__ volatile("invlpg %0" : : "m"(table[0])); break;
    case 15: __asm__ volatile("lmsw %w0" : : "r"(1)); break;
    case 16: __asm__ volatile("ltr %w0" : : "r"(0)); break;
    case 17: __asm__ volatile("lldt %w0" : : "r"(0)); break;
    case 18: __asm__ volatile("sysexit"); break;
    }
    reached++;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGILL, &sa, NULL);
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < COUNT; i++) {
            int sig = sigsetjmp(env, 1);
            if (sig) {
                printf("round %d %-13s signal %d code %d addr %s\n", round, names[i], sig,
                       got_code, got_addr ? "set" : "null");
                continue;
            }
            try(i);
            printf("round %d %-13s ran: no signal\n", round, names[i]);
        }
    /* popf may not change IOPL or IF in a user process (IOPL 0): silently ignored */
    unsigned long flags;
    __asm__ volatile("pushfq; orq $0x3000, (%%rsp); andq $~0x200, (%%rsp); popfq; pushfq; pop %0"
                     : "=r"(flags) : : "cc", "memory");
    printf("after popf: iopl %lu if %lu\n", (flags >> 12) & 3, (flags >> 9) & 1);
    printf("ran %lu\n", reached);
    return 0;
}
