/* rep string instructions (movs, stos, cmps, scas, lods) with counts from 0 up, for exact
 * instruction counting and stops inside a rep (tests/test_counting.py). */
#include <stdio.h>

static unsigned char src[5000], dst[5000];

int main(void)
{
    unsigned long check = 0;
    for (int i = 0; i < (int)sizeof src; i++) src[i] = (unsigned char)(i * 7 + 3);
    for (unsigned long n = 0; n < 4000; n = n * 3 + 1) {
        unsigned long c = n;
        void *d = dst, *s = src;
        __asm__ volatile("rep movsb" : "+c"(c), "+D"(d), "+S"(s) : : "memory");
        c = n / 8; d = dst;
        __asm__ volatile("rep stosq" : "+c"(c), "+D"(d) : "a"(0x0101010101010101UL) : "memory");
        c = n; d = dst; s = src;
        __asm__ volatile("repe cmpsb" : "+c"(c), "+D"(d), "+S"(s) : : "memory", "cc");
        check = check * 31 + c;
        c = n; d = src;
        __asm__ volatile("repne scasb" : "+c"(c), "+D"(d) : "a"(src[n / 2]) : "memory", "cc");
        check = check * 31 + c;
        c = n; s = src;
        unsigned long a = 0;
        __asm__ volatile("rep lodsb" : "+c"(c), "+S"(s), "+a"(a) : : "memory");
        check = check * 31 + a;
    }
    printf("%lu\n", check);
    return 0;
}
