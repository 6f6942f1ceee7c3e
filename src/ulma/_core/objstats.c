/* objstats.c -- per (function, type) object counts (objstats.h). */
#include "objstats.h"

#include <stdlib.h>
#include <string.h>
#include "grow.h"

static inline uint64_t key_of(uint32_t function, uint16_t type)
{
    return (uint64_t)function << 16 | type;
}

/* The row of (function, type), made empty if new (the one row past the
 * limit if the table is full); NULL if memory ran out. */
static ulma_obj_row *row_of(ulma_objstats *s, uint32_t function, uint16_t type)
{
    uint64_t key = key_of(function, type);
    uint32_t *row = ulma_map_find(&s->index, key);
    if (row)
        return &s->rows[*row];
    if (s->n >= ULMA_OBJ_MAX_ROWS && function != ULMA_OBJ_PAST_ROWS)
        return row_of(s, ULMA_OBJ_PAST_ROWS, ULMA_OBJ_PAST_ROWS_TYPE);
    if (s->n > ULMA_OBJ_MAX_ROWS ||
        ulma_grow((void **)&s->rows, &s->cap, s->n + 1, sizeof *s->rows, 0) < 0 ||
        !ulma_map_get(&s->index, key, (uint32_t)s->n, NULL))
        return NULL;
    ulma_obj_row *made = &s->rows[s->n++];
    memset(made, 0, sizeof *made);
    made->function = function;
    made->type = type;
    return made;
}

int ulma_objstats_new(ulma_objstats *s, uint32_t creator, uint16_t type, uint64_t bytes)
{
    ulma_obj_row *row = row_of(s, creator, type);
    if (!row)
        return -1;
    row->created++;
    row->bytes_made += bytes;
    return 0;
}

int ulma_objstats_free(ulma_objstats *s, uint32_t creator, uint16_t type, uint32_t freer, uint64_t bytes)
{
    ulma_obj_row *made = row_of(s, creator, type);
    if (!made)
        return -1;
    made->freed++;
    made->bytes_freed += bytes;
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
        d->bytes_made += s->bytes_made;
        d->bytes_freed += s->bytes_freed;
    }
    return 0;
}

void ulma_objstats_release(ulma_objstats *s)
{
    free(s->rows);
    ulma_map_free(&s->index);
    memset(s, 0, sizeof *s);
}
