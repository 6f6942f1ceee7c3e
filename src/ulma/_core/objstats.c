/* objstats.c -- per (function, type) object counts (objstats.h). */
#include "objstats.h"

#include <stdlib.h>
#include <string.h>
#include "grow.h"

static inline uint64_t key_of(uint32_t function, uint16_t type)
{
    return (uint64_t)function << 16 | type;
}

static inline size_t hash(uint64_t key, size_t cap)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

static int reindex(ulma_objstats *s, size_t cap)
{
    uint32_t *index = calloc(cap, sizeof *index);
    if (!index)
        return -1;
    for (size_t r = 0; r < s->n; r++) {
        size_t i = hash(key_of(s->rows[r].function, s->rows[r].type), cap);
        while (index[i])
            i = (i + 1) & (cap - 1);
        index[i] = (uint32_t)r + 1;
    }
    free(s->index);
    s->index = index;
    s->index_cap = cap;
    return 0;
}

/* The row of (function, type), made empty if new; NULL if memory ran out. */
static ulma_obj_row *row_of(ulma_objstats *s, uint32_t function, uint16_t type)
{
    uint64_t key = key_of(function, type);
    if (s->index_cap) {
        size_t i = hash(key, s->index_cap);
        for (uint32_t r; (r = s->index[i]) != 0; i = (i + 1) & (s->index_cap - 1))
            if (s->rows[r - 1].function == function && s->rows[r - 1].type == type)
                return &s->rows[r - 1];
    }
    if (s->n >= UINT32_MAX - 1)
        return NULL;
    if ((s->n + 1) * 2 > s->index_cap && reindex(s, s->index_cap ? s->index_cap * 2 : 64) < 0)
        return NULL;
    if (ulma_grow((void **)&s->rows, &s->cap, s->n + 1, sizeof *s->rows, 0) < 0)
        return NULL;
    ulma_obj_row *row = &s->rows[s->n];
    memset(row, 0, sizeof *row);
    row->function = function;
    row->type = type;
    size_t i = hash(key, s->index_cap);
    while (s->index[i])
        i = (i + 1) & (s->index_cap - 1);
    s->index[i] = (uint32_t)++s->n;
    return row;
}

int ulma_objstats_new(ulma_objstats *s, uint32_t creator, uint16_t type)
{
    ulma_obj_row *row = row_of(s, creator, type);
    if (!row)
        return -1;
    row->created++;
    return 0;
}

int ulma_objstats_free(ulma_objstats *s, uint32_t creator, uint16_t type, uint32_t freer)
{
    ulma_obj_row *made = row_of(s, creator, type);
    if (!made)
        return -1;
    made->freed++;
    ulma_obj_row *here = row_of(s, freer, type); /* (made may have moved) */
    if (!here)
        return -1;
    here->freed_here++;
    return 0;
}

int ulma_objstats_merge(ulma_objstats *dst, const ulma_objstats *src)
{
    for (size_t r = 0; r < src->n; r++) {
        const ulma_obj_row *s = &src->rows[r];
        ulma_obj_row *d = row_of(dst, s->function, s->type);
        if (!d)
            return -1;
        d->created += s->created;
        d->freed += s->freed;
        d->freed_here += s->freed_here;
    }
    return 0;
}

void ulma_objstats_release(ulma_objstats *s)
{
    free(s->rows);
    free(s->index);
    memset(s, 0, sizeof *s);
}
