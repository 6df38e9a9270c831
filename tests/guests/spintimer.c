/* Timers that fire while the program computes without making a single system call: natively
 * the kernel's timer interrupt delivers the signal in the middle of the loop; under vsnap the
 * CPU stops at the instruction where the deadline falls (1 ns per instruction of virtual time).
 *
 *   spintimer real       setitimer(ITIMER_REAL, 20 ms interval), 5 SIGALRMs while spinning
 *   spintimer virtual    ITIMER_VIRTUAL, 20 ms of user time, 5 SIGVTALRMs
 *   spintimer prof       ITIMER_PROF, 20 ms of CPU time, 5 SIGPROFs
 *   spintimer posix      timer_create(CLOCK_PROCESS_CPUTIME_ID), 10 ms periodic, 5 signals
 *   spintimer alarm      alarm(1), then spin until SIGALRM
 *
 * By default it prints only what holds on any machine (which signals came, how many). With a
 * second argument "where", each handler also notes how far the loop had got when its signal
 * came: under vsnap that is the same in every run and after every resume.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define TICKS 5

static volatile unsigned long spins;
static volatile int ticks;
static unsigned long where[TICKS + 1];

static void on_tick(int sig)
{
    (void)sig;
    if (ticks <= TICKS) where[ticks] = spins;
    ticks++;
}

static void spin_until(int n)
{
    while (ticks < n) spins++;   /* no system call in here */
}

static void catch(int sig)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_tick;
    sigaction(sig, &sa, NULL);
}

static void itimer(int which, int sig, long usec)
{
    catch(sig);
    struct itimerval v = {{0, usec}, {0, usec}};
    setitimer(which, &v, NULL);
    spin_until(TICKS);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(which, &off, NULL);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "real";
    int show = argc > 2 && !strcmp(argv[2], "where");
    int want = TICKS;
    if (!strcmp(mode, "real")) itimer(ITIMER_REAL, SIGALRM, 20000);
    else if (!strcmp(mode, "virtual")) itimer(ITIMER_VIRTUAL, SIGVTALRM, 20000);
    else if (!strcmp(mode, "prof")) itimer(ITIMER_PROF, SIGPROF, 20000);
    else if (!strcmp(mode, "posix")) {
        catch(SIGUSR1);
        struct sigevent se;
        memset(&se, 0, sizeof se);
        se.sigev_notify = SIGEV_SIGNAL;
        se.sigev_signo = SIGUSR1;
        timer_t t;
        if (timer_create(CLOCK_PROCESS_CPUTIME_ID, &se, &t)) { perror("timer_create"); return 1; }
        struct itimerspec per = {{0, 10000000}, {0, 10000000}};
        timer_settime(t, 0, &per, NULL);
        spin_until(TICKS);
        timer_delete(t);
    } else if (!strcmp(mode, "alarm")) {
        catch(SIGALRM);
        alarm(1);
        spin_until(1);
        want = 1;
    } else {
        fprintf(stderr, "spintimer: unknown mode %s\n", mode);
        return 2;
    }
    printf("%s: %d signal%s while spinning\n", mode, ticks, ticks == 1 ? "" : "s");
    if (show)
        for (int i = 0; i < want; i++) printf("  signal %d after %lu spins\n", i + 1, where[i]);
    return ticks == want ? 0 : 1;
}
