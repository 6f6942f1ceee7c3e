/* counters.c -- per-site totals of native counters (counters.h). */
#include "counters.h"

#include <stdlib.h>
#include <string.h>
#include "grow.h"

/* The row of site id, made (empty) if it has none; NULL if memory ran out. */
static ulma_counter_stats *row_of(ulma_counters *c, uint32_t id)
{
    uint32_t *row = ulma_map_find(&c->index, id);
    if (row)
        return &c->rows[*row];
    if (c->n >= UINT32_MAX - 1 ||
        ulma_grow((void **)&c->rows, &c->cap, c->n + 1, sizeof *c->rows, 0) < 0 ||
        !ulma_map_get(&c->index, id, (uint32_t)c->n, NULL))
        return NULL;
    ulma_counter_stats *made = &c->rows[c->n++];
    memset(made, 0, sizeof *made);
    made->id = id;
    return made;
}

int ulma_counters_add(ulma_counters *c, uint32_t id, int64_t value, uint64_t tick)
{
    ulma_counter_stats *row = row_of(c, id);
    if (!row)
        return -1;
    if (row->samples == 0 || value < row->min)
        row->min = value;
    if (row->samples == 0 || value > row->max)
        row->max = value;
    row->samples++;
    row->sum += value;
    if (tick >= row->last_tick) {
        row->last = value;
        row->last_tick = tick;
    }
    return 0;
}

int ulma_counters_merge(ulma_counters *dst, const ulma_counters *src)
{
    for (size_t r = 0; r < src->n; r++) {
        const ulma_counter_stats *s = &src->rows[r];
        if (!s->samples)
            continue;
        ulma_counter_stats *d = row_of(dst, s->id);
        if (!d)
            return -1;
        if (d->samples == 0 || s->min < d->min)
            d->min = s->min;
        if (d->samples == 0 || s->max > d->max)
            d->max = s->max;
        if (d->samples == 0 || s->last_tick >= d->last_tick) {
            d->last = s->last;
            d->last_tick = s->last_tick;
        }
        d->samples += s->samples;
        d->sum += s->sum;
    }
    return 0;
}

void ulma_counters_free(ulma_counters *c)
{
    free(c->rows);
    ulma_map_free(&c->index);
    memset(c, 0, sizeof *c);
}
