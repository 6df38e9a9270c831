/* malloc_stress.c: exercise the heap (brk) and large mmap'd allocations.
 *
 * 1. Thousands of small blocks of assorted sizes, each filled with a
 *    pattern; freed in a shuffled order, half re-allocated, all re-checked.
 * 2. A few big blocks of several MiB (malloc serves these with mmap).
 * 3. One buffer grown step by step with realloc up to 4 MiB (which moves it
 *    from the brk heap to mmap, and then grows it with mremap), then shrunk.
 * Every block is checked before it is freed; the checksum printed at the end
 * is computed from the data only, never from addresses, so it is the same
 * under musl and glibc.  A fixed-seed LCG makes every run identical.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NSMALL 5000

static unsigned long long seed = 12345;
static unsigned long long checksum = 14695981039346656037ull;  /* FNV-1a */

static unsigned rnd(unsigned limit)         /* 0 <= rnd(limit) < limit */
{
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)(seed >> 33) % limit;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) { fprintf(stderr, "malloc_stress: out of memory\n"); exit(1); }
    return p;
}

static unsigned char pat(size_t id, size_t j) { return (unsigned char)(id * 31 + j * 7); }

static void fill(unsigned char *p, size_t n, size_t id)
{
    for (size_t j = 0; j < n; j++) p[j] = pat(id, j);
}

/* Verify a block's pattern, fold it into the checksum. */
static void check(const unsigned char *p, size_t n, size_t id, const char *what)
{
    for (size_t j = 0; j < n; j++) {
        if (p[j] != pat(id, j)) {
            fprintf(stderr, "malloc_stress: %s block %zu corrupt at byte %zu\n", what, id, j);
            exit(1);
        }
        checksum = (checksum ^ p[j]) * 1099511628211ull;
    }
}

static unsigned char *small[NSMALL];
static size_t size[NSMALL], ident[NSMALL];
static size_t order[NSMALL];

static void shuffle(void)                    /* Fisher-Yates over order[] */
{
    for (size_t i = 0; i < NSMALL; i++) order[i] = i;
    for (size_t i = NSMALL - 1; i > 0; i--) {
        size_t j = rnd((unsigned)i + 1), t = order[i];
        order[i] = order[j]; order[j] = t;
    }
}

static void alloc_small(size_t i, size_t id)
{
    size[i] = 1 + rnd(rnd(8) == 0 ? 4000 : 200);    /* mostly tiny, some bigger */
    ident[i] = id;
    small[i] = xmalloc(size[i]);
    fill(small[i], size[i], id);
}

int main(void)
{
    /* 1. small blocks */
    for (size_t i = 0; i < NSMALL; i++) alloc_small(i, i);
    shuffle();
    for (size_t k = 0; k < NSMALL / 2; k++) {          /* free half, shuffled */
        size_t i = order[k];
        check(small[i], size[i], ident[i], "small");
        free(small[i]);
    }
    for (size_t k = 0; k < NSMALL / 2; k++)            /* refill the holes */
        alloc_small(order[k], NSMALL + k);
    shuffle();
    for (size_t k = 0; k < NSMALL; k++) {              /* check and free all */
        size_t i = order[k];
        check(small[i], size[i], ident[i], "small");
        free(small[i]);
    }
    printf("small blocks: %d allocated, all freed\n", NSMALL + NSMALL / 2);

    /* 2. big blocks: written a word at a time (plain stores, no rep stos) */
    static const size_t big_mib[] = { 4, 8, 6 };
    unsigned long long *big[3];
    for (int b = 0; b < 3; b++) {
        size_t words = big_mib[b] * 1024 * 1024 / 8;
        big[b] = xmalloc(words * 8);
        for (size_t w = 0; w < words; w++) big[b][w] = w * 2654435761u + (size_t)b;
    }
    for (int b = 0; b < 3; b++) {
        size_t words = big_mib[b] * 1024 * 1024 / 8;
        for (size_t w = 0; w < words; w++) {
            if (big[b][w] != w * 2654435761u + (size_t)b) {
                fprintf(stderr, "malloc_stress: big block %d corrupt\n", b);
                return 1;
            }
            checksum = (checksum ^ big[b][w]) * 1099511628211ull;
        }
        free(big[b]);
    }
    printf("big blocks: 4 + 8 + 6 MiB, all freed\n");

    /* 3. realloc growth: contents must survive every move */
    size_t len = 16, grows = 0;
    unsigned char *buf = xmalloc(len);
    fill(buf, len, 99);
    while (len < 4 * 1024 * 1024) {
        size_t newlen = len + len / 2;
        unsigned char *p = realloc(buf, newlen);
        if (p == NULL) { fprintf(stderr, "malloc_stress: realloc failed\n"); return 1; }
        buf = p;
        check(buf, len, 99, "realloc");
        fill(buf, newlen, 99);
        len = newlen;
        grows++;
    }
    buf = realloc(buf, 1000);                            /* shrink */
    if (buf == NULL) { fprintf(stderr, "malloc_stress: shrink failed\n"); return 1; }
    check(buf, 1000, 99, "shrunk");
    free(buf);
    printf("realloc: %zu grows up to %zu bytes, then shrunk to 1000\n", grows, len);

    printf("checksum %016llx\n", checksum);
    printf("EXIT-SUCCESS\n");
    return 0;
}
