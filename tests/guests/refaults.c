/* The same CPU exception, caught and left by siglongjmp, four times over: a divide error
 * (SIGFPE), a privileged instruction (hlt: a general-protection fault, SIGSEGV), an invalid
 * opcode (ud2: SIGILL) and a breakpoint (int3: SIGTRAP). Linux delivers each afresh; Unicorn
 * once turned the second divide error into a double fault (vsnap/doublefault.py). */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static sigjmp_buf env;
static volatile int got_code;
static void *volatile got_addr;

static void on_signal(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    got_code = si->si_code;
    got_addr = si->si_addr;
    siglongjmp(env, sig);
}

static void fault(int kind, int zero)
{
    switch (kind) {
    case 0: { volatile int x = 10 / zero; (void)x; break; }
    case 1: __asm__ volatile("hlt"); break;
    case 2: __asm__ volatile("ud2"); break;
    case 3: __asm__ volatile("int3"); break;
    }
}

int main(int argc, char **argv)
{
    static const int sigs[] = {SIGFPE, SIGSEGV, SIGILL, SIGTRAP};
    static const char *names[] = {"divide error", "hlt", "ud2", "int3"};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO;
    for (int i = 0; i < 4; i++) sigaction(sigs[i], &sa, NULL);
    int zero = argc - 1;   /* 0: the compiler cannot know */
    for (int round = 0; round < 4; round++)
        for (int kind = 0; kind < 4; kind++) {
            int sig = sigsetjmp(env, 1);
            if (sig) {
                printf("round %d %-12s signal %d code %d addr %s\n", round, names[kind], sig,
                       got_code, got_addr ? "set" : "null");
                continue;
            }
            fault(kind, zero);
            printf("round %d %s: no signal\n", round, names[kind]);
        }
    return 0;
}
