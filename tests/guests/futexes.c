/* futexes.c: futex in a process with one thread. With the argument "hang", waits forever on
 * an unchanged word (Linux hangs; vsnap ends the guest and says why). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile int got;
static void on_sig(int s) { got = s; }
static uint32_t word = 7, word2 = 40;
static char raw[16] __attribute__((aligned(8)));

static long fx(void *addr, int op, uint32_t val, void *t, void *addr2, uint32_t val3) {
    return syscall(SYS_futex, addr, op, val, t, addr2, val3);
}

static void show(const char *what, long r) {
    if (r < 0) printf("%s = -1 %s\n", what, strerror(errno));
    else printf("%s = %ld\n", what, r);
}

static long ms_since(struct timespec *a) {
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (b.tv_sec - a->tv_sec) * 1000 + (b.tv_nsec - a->tv_nsec) / 1000000;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void init_once(void) { printf("once\n"); }

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1 && strcmp(argv[1], "hang") == 0) {
        printf("waiting forever\n");
        show("wait", fx(&word, FUTEX_WAIT_PRIVATE, 7, NULL, NULL, 0));
        return 0;
    }
    show("wait changed", fx(&word, FUTEX_WAIT, 8, NULL, NULL, 0));
    show("wait changed private", fx(&word, FUTEX_WAIT_PRIVATE, 8, NULL, NULL, 0));
    struct timespec t0, rel = {0, 100 * 1000000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    show("wait 100ms", fx(&word, FUTEX_WAIT, 7, &rel, NULL, 0));
    printf("  waited >= 100ms: %d\n", ms_since(&t0) >= 100);
    struct timespec abs;
    clock_gettime(CLOCK_MONOTONIC, &abs);
    t0 = abs;
    abs.tv_nsec += 50 * 1000000;
    if (abs.tv_nsec >= 1000000000) { abs.tv_sec++; abs.tv_nsec -= 1000000000; }
    show("wait_bitset abs 50ms", fx(&word, FUTEX_WAIT_BITSET_PRIVATE, 7, &abs, NULL,
                                    FUTEX_BITSET_MATCH_ANY));
    printf("  waited >= 50ms: %d\n", ms_since(&t0) >= 50);
    clock_gettime(CLOCK_REALTIME, &abs);
    abs.tv_sec += 1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    show("wait_bitset realtime 1s", fx(&word, FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME, 7, &abs,
                                       NULL, FUTEX_BITSET_MATCH_ANY));
    printf("  waited >= 900ms: %d\n", ms_since(&t0) >= 900);
    abs.tv_sec -= 100;
    show("wait_bitset past", fx(&word, FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME, 7, &abs, NULL,
                                FUTEX_BITSET_MATCH_ANY));
    show("wait_bitset 0", fx(&word, FUTEX_WAIT_BITSET, 7, &rel, NULL, 0));
    rel.tv_nsec = 1000000000;
    show("wait bad nsec", fx(&word, FUTEX_WAIT, 7, &rel, NULL, 0));
    rel.tv_nsec = 1000;
    show("wait realtime rel", fx(&word, FUTEX_WAIT | FUTEX_CLOCK_REALTIME, 7, &rel, NULL, 0));
    show("wait unaligned", fx(raw + 1, FUTEX_WAIT, 0, &rel, NULL, 0));
    show("wait NULL", fx(NULL, FUTEX_WAIT, 0, &rel, NULL, 0));
    show("wake", fx(&word, FUTEX_WAKE, 1, NULL, NULL, 0));
    show("wake private all", fx(&word, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0));
    show("wake realtime", fx(&word, FUTEX_WAKE | FUTEX_CLOCK_REALTIME, 1, NULL, NULL, 0));
    show("wake_bitset", fx(&word, FUTEX_WAKE_BITSET, 1, NULL, NULL, 1));
    show("wake_bitset 0", fx(&word, FUTEX_WAKE_BITSET, 1, NULL, NULL, 0));
    show("wake unaligned", fx(raw + 2, FUTEX_WAKE, 1, NULL, NULL, 0));
    show("requeue", fx(&word, FUTEX_REQUEUE, 1, (void *)1, &word2, 0));
    show("cmp_requeue same", fx(&word, FUTEX_CMP_REQUEUE, 1, (void *)1, &word2, 7));
    show("cmp_requeue changed", fx(&word, FUTEX_CMP_REQUEUE, 1, (void *)1, &word2, 8));
    show("cmp_requeue negative", fx(&word, FUTEX_CMP_REQUEUE, -1, (void *)1, &word2, 7));
    show("wake_op add 5", fx(&word, FUTEX_WAKE_OP, 1, (void *)1, &word2,
                             FUTEX_OP(FUTEX_OP_ADD, 5, FUTEX_OP_CMP_GT, 0)));
    printf("  word2 %u\n", word2);
    show("wake_op shift or", fx(&word, FUTEX_WAKE_OP, 1, (void *)1, &word2,
                                FUTEX_OP(FUTEX_OP_OR | FUTEX_OP_OPARG_SHIFT, 8, FUTEX_OP_CMP_EQ, 0)));
    printf("  word2 %u\n", word2);
    show("wake_op bad op", fx(&word, FUTEX_WAKE_OP, 1, (void *)1, &word2, 7u << 28));
    printf("  word2 %u\n", word2);
    show("fd", fx(&word, 2, 0, NULL, NULL, 0));
    show("op 99", fx(&word, 99, 0, NULL, NULL, 0));

    /* a signal ends a wait with EINTR */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0}, {0, 30000}};
    setitimer(ITIMER_REAL, &it, NULL);
    show("wait + alarm", fx(&word, FUTEX_WAIT_PRIVATE, 7, NULL, NULL, 0));
    printf("  got %d\n", got);
    got = 0;
    setitimer(ITIMER_REAL, &it, NULL);
    rel.tv_sec = 3; rel.tv_nsec = 0;
    show("wait 3s + alarm", fx(&word, FUTEX_WAIT_PRIVATE, 7, &rel, NULL, 0));
    printf("  got %d\n", got);

    /* what libc builds on futex, with one thread */
    pthread_once(&once, init_once);
    pthread_once(&once, init_once);
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    printf("lock %d unlock %d trylock %d\n", pthread_mutex_lock(&m), pthread_mutex_unlock(&m),
           pthread_mutex_trylock(&m));
    printf("EXIT-SUCCESS\n");
    return 0;
}
