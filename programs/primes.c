/* primes.c: a compute-heavy guest.
 *
 * usage: primes [N]     (N defaults to 2,000,000)
 *
 * Counts the primes below N with the sieve of Eratosthenes, then fills a
 * 1 MiB buffer from a fixed-seed generator and hashes it with FNV-1a,
 * 100 times over (each round starts from the previous round's hash).
 * Both results are fixed numbers, so any two runs (native, emulated,
 * resumed from a checkpoint) must print exactly the same lines.
 *
 * It also prints one floating-point number (the share of primes below N)
 * with printf("%.3f"): formatting a double exercises the SSE registers and
 * the MXCSR/x87 control words that an emulator must set up like Linux does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HASH_BYTES (1024 * 1024)
#define HASH_ROUNDS 100  /* the default; `primes N ROUNDS` makes a shorter run */

/* Sieve of Eratosthenes: composite[i] != 0 when i is not prime. */
static long count_primes(long n)
{
    if (n < 3)
        return 0;
    char *composite = calloc((size_t)n, 1);  /* large: served by mmap */
    if (composite == NULL) {
        fprintf(stderr, "primes: out of memory\n");
        exit(1);
    }
    long count = 0;
    for (long i = 2; i < n; i++) {
        if (composite[i])
            continue;
        count++;
        for (long j = i * i; j < n; j += i)
            composite[j] = 1;
    }
    free(composite);
    return count;
}

/* Fill a buffer from a 64-bit LCG and hash it with 64-bit FNV-1a, again and
 * again: the hash of one round is the starting value of the next. */
static unsigned long long fnv_buffer(int rounds)
{
    unsigned char *buf = malloc(HASH_BYTES);
    if (buf == NULL) {
        fprintf(stderr, "primes: out of memory\n");
        exit(1);
    }
    unsigned long long x = 42;
    for (size_t i = 0; i < HASH_BYTES; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        buf[i] = (unsigned char)(x >> 56);
    }
    unsigned long long h = 14695981039346656037ull;
    for (int round = 0; round < rounds; round++)
        for (size_t i = 0; i < HASH_BYTES; i++)
            h = (h ^ buf[i]) * 1099511628211ull;
    free(buf);
    return h;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 2000000;
    int rounds = argc > 2 ? atoi(argv[2]) : HASH_ROUNDS;
    if (n < 0 || rounds < 0) {
        fprintf(stderr, "primes: N and ROUNDS must not be negative\n");
        return 2;
    }
    long count = count_primes(n);
    printf("primes below %ld: %ld\n", n, count);
    printf("share of primes: %.3f\n", n > 0 ? (double)count / (double)n : 0.0);
    printf("fnv1a of 1 MiB, %d rounds: %016llx\n", rounds, fnv_buffer(rounds));
    printf("EXIT-SUCCESS\n");
    return 0;
}
