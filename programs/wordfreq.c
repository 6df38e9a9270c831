/* wordfreq.c: count word frequencies in a text file.
 *
 * usage: wordfreq FILE [TOP]     (TOP defaults to 10)
 *
 * A word is a run of ASCII letters, folded to lower case; anything else
 * separates words.  Words are counted in a chained hash table whose nodes
 * come from malloc, then the TOP most frequent are printed, ordered by
 * count (highest first) and then alphabetically.
 *
 * What it shows: buffered stdio reads (fopen/getc become read() calls of a
 * few KiB each), many small heap allocations, and qsort.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBUCKETS 1024
#define MAXWORD 64

struct node {
    struct node *next;
    long count;
    char word[];               /* flexible array member: the word itself */
};

static struct node *buckets[NBUCKETS];
static size_t nwords;          /* distinct words */

/* FNV-1a: a small, good string hash. */
static unsigned hash(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void add_word(const char *w)
{
    struct node **head = &buckets[hash(w) % NBUCKETS];
    for (struct node *n = *head; n; n = n->next)
        if (strcmp(n->word, w) == 0) {
            n->count++;
            return;
        }
    struct node *n = malloc(sizeof *n + strlen(w) + 1);
    if (n == NULL) {
        fprintf(stderr, "wordfreq: out of memory\n");
        exit(1);
    }
    strcpy(n->word, w);
    n->count = 1;
    n->next = *head;
    *head = n;
    nwords++;
}

/* qsort order: higher count first, ties alphabetically. */
static int by_count(const void *a, const void *b)
{
    const struct node *x = *(struct node *const *)a;
    const struct node *y = *(struct node *const *)b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return strcmp(x->word, y->word);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: wordfreq FILE [TOP]\n");
        return 2;
    }
    long top = argc > 2 ? atol(argv[2]) : 10;
    FILE *f = fopen(argv[1], "r");
    if (f == NULL) {
        perror(argv[1]);
        return 1;
    }

    /* Read character by character; plain ASCII tests, so no locale matters. */
    char word[MAXWORD];
    size_t len = 0;
    long total = 0;
    int c;
    do {
        c = getc(f);
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
            if (len < MAXWORD - 1)             /* very long words are cut */
                word[len++] = (char)(c | 0x20); /* ASCII lower case */
        } else if (len > 0) {
            word[len] = '\0';
            add_word(word);
            total++;
            len = 0;
        }
    } while (c != EOF);
    if (ferror(f)) {
        perror(argv[1]);
        return 1;
    }
    fclose(f);

    /* Gather the nodes into an array, sort it, print the head. */
    struct node **all = malloc((nwords ? nwords : 1) * sizeof *all);
    if (all == NULL) {
        fprintf(stderr, "wordfreq: out of memory\n");
        return 1;
    }
    size_t k = 0;
    for (int b = 0; b < NBUCKETS; b++)
        for (struct node *n = buckets[b]; n; n = n->next)
            all[k++] = n;
    qsort(all, nwords, sizeof *all, by_count);

    printf("%ld words, %zu distinct\n", total, nwords);
    for (size_t i = 0; i < nwords && (long)i < top; i++)
        printf("%6ld %s\n", all[i]->count, all[i]->word);
    for (size_t i = 0; i < nwords; i++)     /* give everything back */
        free(all[i]);
    free(all);
    printf("EXIT-SUCCESS\n");
    return 0;
}
