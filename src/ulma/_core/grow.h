/* grow.h -- room in an array that grows by doubling, for the aggregator, the
 * exporters' replay and the agent's id bitmaps (symbols.c). */
#ifndef ULMA_GROW_H
#define ULMA_GROW_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Room in *p for `need` elements of `elem` bytes (*cap of them now; at least
 * 64 once any), the new room zeroed if `zero`; 0, or -1 if memory ran out
 * (then *p and *cap are as they were). */
static inline int ulma_grow(void **p, size_t *cap, size_t need, size_t elem, int zero)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q)
        return -1;
    if (zero)
        memset((char *)q + *cap * elem, 0, (n - *cap) * elem);
    *p = q;
    *cap = n;
    return 0;
}

#endif
