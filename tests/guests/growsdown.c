/* A MAP_GROWSDOWN mapping grows when the process touches below it, as Linux's stacks do,
 * until it would come within the stack guard gap (256 pages) of the mapping below. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
static sigjmp_buf back;
static void on_segv(int sig) { siglongjmp(back, sig); }
int main(void) {
    struct sigaction sa = {0}; sa.sa_handler = on_segv; sigaction(SIGSEGV, &sa, 0);
    char *p = mmap(0, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_GROWSDOWN, -1, 0);
    char *guard = mmap(p - 4096 * 400, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0);
    (void)guard;
    for (long off = 4096; off <= 4096 * 400; off *= 2) {
        int sig;
        if ((sig = sigsetjmp(back, 1)) == 0) { p[-off] = 1; printf("-%ld: ok\n", off); }
        else printf("-%ld: signal %d\n", off, sig);
    }
    return 0;
}
