/* Faults handed to the guest's handlers, again and again: loads from unmapped memory, stores
 * to read-only memory, ud2, int3, int $0x41 (tests/test_counting.py: the counts stay
 * exact across a block that faults). */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static sigjmp_buf back;
static volatile int seen[32];

static void on_signal(int sig)
{
    seen[sig]++;
    siglongjmp(back, 1);
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_NODEFER;
    for (int s = 1; s < 32; s++)
        if (s != SIGKILL && s != SIGSTOP) sigaction(s, &sa, 0);
    static const int ro = 5;
    volatile int sink = 0;
    for (int i = 0; i < 20; i++) {
        if (!sigsetjmp(back, 0)) { sink += i; sink += *(volatile int *)(16 + i); }
        if (!sigsetjmp(back, 0)) { sink += i; *(volatile int *)&ro = i; }
        if (!sigsetjmp(back, 0)) { sink += i; __asm__ volatile("ud2"); }
        if (!sigsetjmp(back, 0)) { sink += i; __asm__ volatile("int3"); sink += 1; }
        if (!sigsetjmp(back, 0)) { sink += i; __asm__ volatile("int $0x41"); sink += 1; }
    }
    int total = 0;
    for (int s = 1; s < 32; s++) total += seen[s];
    printf("handled %d faults, sink %d\n", total, sink);
    return 0;
}
