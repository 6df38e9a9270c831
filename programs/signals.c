/* signals.c: Unix signals, one feature at a time, each checked.
 *
 * raise and a handler; a blocked signal waiting in the pending set; SA_SIGINFO with si_code;
 * SA_RESETHAND; a handler on an alternate stack (sigaltstack + SA_ONSTACK); a handler that
 * changes the interrupted registers through its ucontext (skipping a ud2); SIGSEGV and
 * SIGFPE from real faults, recovered with siglongjmp; alarm + pause; an interval timer with
 * sigsuspend. Every line it prints is the same on Linux and under vsnap.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <ucontext.h>
#include <unistd.h>

static volatile sig_atomic_t hits;
static volatile int last_code, on_alt;
static sigjmp_buf recover;
static char altstack[64 * 1024];

static void count(int sig) { (void)sig; hits++; }

static void with_info(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    last_code = si->si_code;
    hits += sig;
}

static void where_am_i(int sig)
{
    char here;
    (void)sig;
    on_alt = (uintptr_t)&here >= (uintptr_t)altstack &&
             (uintptr_t)&here < (uintptr_t)altstack + sizeof altstack;
}

static void skip_ud2(int sig, siginfo_t *si, void *ctx)
{
    ucontext_t *uc = ctx;
    (void)sig; (void)si;
    uc->uc_mcontext.gregs[REG_RIP] += 2;   /* ud2 is two bytes: carry on after it */
}

static void fault(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    last_code = si->si_code;
    siglongjmp(recover, sig);
}

static void on(int sig, void (*h)(int, siginfo_t *, void *), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = h;
    sa.sa_flags = SA_SIGINFO | flags;
    sigaction(sig, &sa, NULL);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);

    signal(SIGUSR1, count);
    raise(SIGUSR1);
    printf("raise: handler ran %d time(s)\n", (int)hits);

    sigset_t block, pending;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, NULL);
    raise(SIGUSR1);
    raise(SIGUSR1);                        /* standard signals do not queue */
    sigpending(&pending);
    printf("blocked: hits %d, SIGUSR1 pending %d\n", (int)hits, sigismember(&pending, SIGUSR1));
    sigprocmask(SIG_UNBLOCK, &block, NULL);
    printf("unblocked: hits %d\n", (int)hits);

    hits = 0;
    on(SIGUSR2, with_info, SA_RESETHAND);
    kill(getpid(), SIGUSR2);
    struct sigaction now;
    sigaction(SIGUSR2, NULL, &now);
    printf("siginfo: hits %d, si_code %d (SI_USER), reset to default %d\n", (int)hits,
           last_code, now.sa_handler == SIG_DFL);

    stack_t ss = { .ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0 };
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = where_am_i;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGHUP, &sa, NULL);
    raise(SIGHUP);
    printf("sigaltstack: handler ran on the alternate stack %d\n", on_alt);

    on(SIGILL, skip_ud2, 0);
    __asm__ volatile("ud2");
    printf("ucontext: skipped a ud2 by changing the saved rip\n");

    on(SIGSEGV, fault, 0);
    volatile int *volatile bad = (int *)16;
    int sig = sigsetjmp(recover, 1);
    if (sig == 0)
        *bad = 1;
    printf("fault: recovered from signal %d, si_code %d (SEGV_MAPERR)\n", sig, last_code);

    on(SIGFPE, fault, 0);
    volatile int seven = 7, zero = 0;      /* volatile: no compiler may fold the division */
    sig = sigsetjmp(recover, 1);
    if (sig == 0)
        printf("%d\n", seven / zero);
    printf("fault: recovered from signal %d, si_code %d (FPE_INTDIV)\n", sig, last_code);

    hits = 0;
    signal(SIGALRM, count);
    alarm(1);
    pause();
    printf("alarm: pause returned after %d alarm(s)\n", (int)hits);

    struct itimerval it = { .it_interval = { 0, 20000 }, .it_value = { 0, 20000 } };
    sigset_t alrm, old;
    sigemptyset(&alrm);
    sigaddset(&alrm, SIGALRM);
    sigprocmask(SIG_BLOCK, &alrm, &old);
    setitimer(ITIMER_REAL, &it, NULL);
    hits = 0;
    while (hits < 3)
        sigsuspend(&old);                  /* the race-free way to wait for a signal */
    memset(&it, 0, sizeof it);
    setitimer(ITIMER_REAL, &it, NULL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    printf("itimer: %d ticks seen with sigsuspend\n", (int)hits);

    printf("EXIT-SUCCESS\n");
    return 0;
}
