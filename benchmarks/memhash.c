/* memhash.c: a memory-heavy guest for `make bench` (benchmarks/memory.py).
 *
 * usage: memhash N
 *
 * N pseudo-random keys, written out as strings ("k" and a number in base 36), go into an
 * open-addressing hash table of string keys (FNV-1a, linear probing, memcmp): a key seen
 * before gets its counter bumped, a new one is copied into a key pool. Then every stored key
 * is reversed in place and hashed again. It prints the number of distinct keys and a checksum.
 *
 * What it measures: loads and stores spread over some 40 MiB of tables (far more than any
 * TLB holds), short string loops, and no system calls but the final write. Its memory is
 * static (no malloc): the raw-Unicorn harness next to it serves only a few system calls.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAP (1u << 20)            /* slots: a power of two, at least 2 * distinct keys */
#define POOL (16u << 20)          /* bytes for the keys themselves */

struct slot {
    unsigned hash, len;
    char *key;                    /* NULL: empty */
    long count;
};

static struct slot table[CAP];
static char pool[POOL];
static size_t pool_used, distinct;

static unsigned fnv(const char *s, unsigned n)
{
    unsigned h = 2166136261u;
    for (unsigned i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static unsigned format_key(char *buf, unsigned long v)
{
    char tmp[16];
    unsigned n = 0, len = 0;
    do {
        tmp[n++] = "0123456789abcdefghijklmnopqrstuvwxyz"[v % 36];
        v /= 36;
    } while (v);
    buf[len++] = 'k';
    while (n)
        buf[len++] = tmp[--n];
    return len;
}

static void add(const char *key, unsigned len)
{
    unsigned h = fnv(key, len);
    for (unsigned i = h & (CAP - 1);; i = (i + 1) & (CAP - 1)) {
        struct slot *s = &table[i];
        if (s->key == NULL) {
            if (pool_used + len > POOL) {
                fputs("memhash: key pool full\n", stderr);
                exit(1);
            }
            s->key = memcpy(pool + pool_used, key, len);
            pool_used += len;
            s->hash = h, s->len = len, s->count = 1;
            distinct++;
            return;
        }
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) {
            s->count++;
            return;
        }
    }
}

int main(int argc, char **argv)
{
    unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    unsigned long x = 88172645463325252ul, keys = n / 2 + 1;
    char buf[32];
    for (unsigned long i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;       /* xorshift64 */
        add(buf, format_key(buf, x % keys * 2654435761ul));
    }
    unsigned long sum = 0;
    for (unsigned i = 0; i < CAP; i++) {
        struct slot *s = &table[i];
        if (s->key == NULL)
            continue;
        for (unsigned a = 0, b = s->len - 1; a < b; a++, b--) {
            char c = s->key[a];
            s->key[a] = s->key[b];
            s->key[b] = c;
        }
        sum = sum * 31 + fnv(s->key, s->len) + (unsigned long)s->count * i;
    }
    printf("%zu distinct keys of %lu, checksum %016lx\n", distinct, n, sum);
    return 0;
}
