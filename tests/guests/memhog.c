/* memhog.c: allocate 1 MiB blocks forever, touching every page: a memory budget must stop it. */
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    for (unsigned long n = 1;; n++) {
        volatile char *p = malloc(1 << 20);
        if (p == NULL) { printf("malloc failed after %lu MiB\n", n - 1); return 1; }
        for (int i = 0; i < (1 << 20); i += 4096) p[i] = (char)i;
    }
}
