/* timers.c MODE: interval timers and POSIX timers; prints which signals arrived and their
   siginfo, in a way that does not depend on how fast the machine is (natively the timers run
   on real time; under vsnap on the virtual clock).
   itimer   ITIMER_VIRTUAL and ITIMER_PROF fire on CPU time, not while sleeping
   posix    timer_create/settime/gettime/getoverrun/delete on MONOTONIC, REALTIME (absolute),
            the process CPU clock, SIGEV_NONE, overruns of a blocked periodic timer
   errors   the argument checks
   work     arms timers and keeps working through them (for checkpoints while they are armed) */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got[65];
static volatile int code[65], tid[65], overrun[65], value[65];

static void on_sig(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    got[sig]++;
    code[sig] = si->si_code;
    if (si->si_code == SI_TIMER) {
        tid[sig] = si->si_timerid;
        overrun[sig] = si->si_overrun;
        value[sig] = si->si_value.sival_int;
    }
}

static void catch(int sig)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sig;
    sa.sa_flags = SA_SIGINFO;
    sigaction(sig, &sa, NULL);
}

static void ms_sleep(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

static long ms(struct timeval tv) { return (tv.tv_sec * 1000000L + tv.tv_usec + 500) / 1000; }

static void report(const char *what, int sig)
{
    printf("%-26s got %d", what, (int)got[sig]);
    if (got[sig]) {
        printf(" code %d", code[sig]);
        if (code[sig] == SI_TIMER)
            printf(" timerid %d overrun %d value %d", tid[sig], overrun[sig], value[sig]);
    }
    printf("\n");
    fflush(stdout);
    got[sig] = 0;
}

static volatile unsigned long spins;

static void spin_until(int sig)
{
    /* user time, no system call: ITIMER_VIRTUAL counts only user time (vsnap's clock: 1 ns
       an instruction), and a loop of system calls would take a million calls to 10 ms */
    while (!got[sig]) spins++;
}

static void itimer(void)
{
    catch(SIGVTALRM);
    catch(SIGPROF);
    struct itimerval v = {{0, 0}, {0, 10000}}, g;
    setitimer(ITIMER_VIRTUAL, &v, NULL);
    getitimer(ITIMER_VIRTUAL, &g);
    printf("VIRTUAL set 10ms, reads %ldms interval %ldms\n", ms(g.it_value), ms(g.it_interval));
    spin_until(SIGVTALRM);
    report("ITIMER_VIRTUAL", SIGVTALRM);
    getitimer(ITIMER_VIRTUAL, &g);
    printf("after it fired: %ldms\n", ms(g.it_value));
    struct itimerval p = {{0, 5000}, {0, 5000}};
    setitimer(ITIMER_PROF, &p, NULL);
    for (int i = 0; i < 3; i++) spin_until(SIGPROF), report("ITIMER_PROF periodic", SIGPROF);
    struct itimerval off = {{0, 0}, {0, 0}}, old;
    setitimer(ITIMER_PROF, &off, &old);
    printf("PROF stopped, its interval was %ldms\n", ms(old.it_interval));
    setitimer(ITIMER_VIRTUAL, &v, NULL);
    ms_sleep(100);
    report("VIRTUAL while sleeping", SIGVTALRM);
    setitimer(ITIMER_VIRTUAL, &off, NULL);
    struct itimerval r = {{0, 0}, {0, 20000}};
    catch(SIGALRM);
    setitimer(ITIMER_REAL, &r, NULL);
    ms_sleep(100);
    report("ITIMER_REAL while sleeping", SIGALRM);
}

static void posix(void)
{
    catch(SIGUSR1);
    catch(SIGUSR2);
    catch(SIGRTMIN + 1);
    timer_t t1, t2, t3, t4;
    struct sigevent se;
    memset(&se, 0, sizeof se);
    se.sigev_notify = SIGEV_SIGNAL;
    se.sigev_signo = SIGUSR1;
    se.sigev_value.sival_int = 42;
    timer_create(CLOCK_MONOTONIC, &se, &t1);
    struct itimerspec its = {{0, 0}, {0, 20000000}}, g;
    timer_settime(t1, 0, &its, NULL);
    timer_gettime(t1, &g);
    printf("armed for 20ms: remaining in (0, 20ms] %d\n",
           g.it_value.tv_sec == 0 && g.it_value.tv_nsec > 0 && g.it_value.tv_nsec <= 20000000);
    ms_sleep(100);
    report("MONOTONIC one-shot", SIGUSR1);
    timer_gettime(t1, &g);
    printf("after: %ld.%09ld\n", (long)g.it_value.tv_sec, g.it_value.tv_nsec);

    /* a periodic timer whose signal is blocked: expirations become overruns */
    se.sigev_signo = SIGUSR2;
    se.sigev_value.sival_int = 7;
    timer_create(CLOCK_MONOTONIC, &se, &t2);
    sigset_t b;
    sigemptyset(&b);
    sigaddset(&b, SIGUSR2);
    sigprocmask(SIG_BLOCK, &b, NULL);
    struct itimerspec per = {{0, 100000000}, {0, 100000000}};
    timer_settime(t2, 0, &per, NULL);
    ms_sleep(250);
    sigprocmask(SIG_UNBLOCK, &b, NULL);
    report("periodic, blocked 250ms", SIGUSR2);
    printf("timer_getoverrun %d\n", timer_getoverrun(t2));
    timer_gettime(t2, &g);
    printf("interval %ld.%09ld\n", (long)g.it_interval.tv_sec, g.it_interval.tv_nsec);
    timer_delete(t2);

    /* absolute time on the wall clock, a real-time signal */
    se.sigev_signo = SIGRTMIN + 1;
    se.sigev_value.sival_int = -5;
    timer_create(CLOCK_REALTIME, &se, &t3);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    now.tv_nsec += 30000000;
    if (now.tv_nsec >= 1000000000) now.tv_sec++, now.tv_nsec -= 1000000000;
    struct itimerspec abs = {{0, 0}, now};
    timer_settime(t3, TIMER_ABSTIME, &abs, NULL);
    ms_sleep(100);
    report("REALTIME absolute", SIGRTMIN + 1);
    timer_delete(t3);

    /* the process CPU clock: it does not move while sleeping */
    se.sigev_signo = SIGUSR1;
    se.sigev_value.sival_int = 99;
    timer_create(CLOCK_PROCESS_CPUTIME_ID, &se, &t4);
    struct itimerspec c = {{0, 0}, {0, 10000000}};
    timer_settime(t4, 0, &c, NULL);
    ms_sleep(100);
    report("CPU clock, sleeping", SIGUSR1);
    spin_until(SIGUSR1);
    report("CPU clock, working", SIGUSR1);
    timer_delete(t4);

    /* SIGEV_NONE: no signal, but it runs */
    timer_t n;
    struct sigevent none;
    memset(&none, 0, sizeof none);
    none.sigev_notify = SIGEV_NONE;
    timer_create(CLOCK_MONOTONIC, &none, &n);
    struct itimerspec fifty = {{0, 0}, {0, 50000000}};
    timer_settime(n, 0, &fifty, NULL);
    timer_gettime(n, &g);
    printf("SIGEV_NONE running %d\n", g.it_value.tv_nsec > 0);
    ms_sleep(100);
    timer_gettime(n, &g);
    printf("SIGEV_NONE after: %ld.%09ld\n", (long)g.it_value.tv_sec, g.it_value.tv_nsec);
    timer_delete(n);
    errno = 0;
    int rc = timer_gettime(n, &g);
    printf("gettime of a deleted timer: %d %s\n", rc, errno == EINVAL ? "EINVAL" : strerror(errno));
    timer_delete(t1);
}

static void check(const char *what, int rc)
{
    printf("%s: %d %s\n", what, rc, errno == EINVAL ? "EINVAL" : strerror(errno));
    errno = 0;
}

static void errors(void)
{
    timer_t t;
    struct sigevent se;
    memset(&se, 0, sizeof se);
    se.sigev_notify = SIGEV_SIGNAL;
    se.sigev_signo = 0;
    check("signal 0", timer_create(CLOCK_MONOTONIC, &se, &t));
    se.sigev_signo = SIGUSR1;
    se.sigev_notify = 77;
    check("notify 77", timer_create(CLOCK_MONOTONIC, &se, &t));
    check("clock 99", timer_create(99, NULL, &t));
    se.sigev_notify = SIGEV_SIGNAL;
    timer_create(CLOCK_MONOTONIC, &se, &t);
    struct itimerspec bad = {{0, 0}, {0, 1000000000}};
    check("nsec 1e9", timer_settime(t, 0, &bad, NULL));
    struct itimerval badv = {{0, 0}, {0, 1000000}};
    check("usec 1e6", setitimer(ITIMER_REAL, &badv, NULL));
    check("which 5", setitimer(5, &badv, NULL));
}

static void work(void)
{
    catch(SIGUSR1);
    catch(SIGVTALRM);
    timer_t t;
    struct sigevent se;
    memset(&se, 0, sizeof se);
    se.sigev_signo = SIGUSR1;
    se.sigev_value.sival_int = 5;
    timer_create(CLOCK_MONOTONIC, &se, &t);
    struct itimerspec per = {{0, 300000}, {0, 300000}};
    timer_settime(t, 0, &per, NULL);
    struct itimerval v = {{0, 1000}, {0, 400}};
    setitimer(ITIMER_VIRTUAL, &v, NULL);
    unsigned long x = 1;
    for (int round = 0; round < 4; round++) {
        /* system calls (the MONOTONIC timer moves with them) and user time between them
           (ITIMER_VIRTUAL counts only user time) */
        for (int i = 0; i < 1500; i++) {
            x = x * 6364136223846793005UL + getppid();
            for (int j = 0; j < 400; j++) x = x * 2862933555777941757UL + (x >> 29);
        }
        printf("round %d: USR1 %d VTALRM %d\n", round, (int)got[SIGUSR1], (int)got[SIGVTALRM]);
    }
    struct itimerspec g;
    timer_gettime(t, &g);
    printf("left %ld overrun %d x %lu\n", g.it_value.tv_nsec, timer_getoverrun(t), x);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "posix";
    if (!strcmp(mode, "itimer")) itimer();
    else if (!strcmp(mode, "posix")) posix();
    else if (!strcmp(mode, "errors")) errors();
    else if (!strcmp(mode, "work")) work();
    printf("done\n");
    return 0;
}
