/* counters.c -- per-site totals of native counters (counters.h). */
#include "counters.h"

#include <stdlib.h>
#include <string.h>
#include "grow.h"

static inline size_t hash(uint32_t id, size_t cap)
{
    return (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

static int reindex(ulma_counters *c, size_t cap)
{
    uint32_t *index = calloc(cap, sizeof *index);
    if (!index)
        return -1;
    for (size_t r = 0; r < c->n; r++) {
        size_t i = hash(c->rows[r].id, cap);
        while (index[i])
            i = (i + 1) & (cap - 1);
        index[i] = (uint32_t)r + 1;
    }
    free(c->index);
    c->index = index;
    c->index_cap = cap;
    return 0;
}

/* The row of site id, made (empty) if it has none; NULL if memory ran out. */
static ulma_counter_stats *row_of(ulma_counters *c, uint32_t id)
{
    if (c->index_cap) {
        size_t i = hash(id, c->index_cap);
        for (uint32_t r; (r = c->index[i]) != 0; i = (i + 1) & (c->index_cap - 1))
            if (c->rows[r - 1].id == id)
                return &c->rows[r - 1];
    }
    if (c->n >= UINT32_MAX - 1)
        return NULL;
    /* at most half full */
    if ((c->n + 1) * 2 > c->index_cap && reindex(c, c->index_cap ? c->index_cap * 2 : 16) < 0)
        return NULL;
    if (ulma_grow((void **)&c->rows, &c->cap, c->n + 1, sizeof *c->rows, 0) < 0)
        return NULL;
    ulma_counter_stats *row = &c->rows[c->n];
    memset(row, 0, sizeof *row);
    row->id = id;
    size_t i = hash(id, c->index_cap);
    while (c->index[i])
        i = (i + 1) & (c->index_cap - 1);
    c->index[i] = (uint32_t)++c->n;
    return row;
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
    free(c->index);
    memset(c, 0, sizeof *c);
}
