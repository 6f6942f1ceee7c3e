/*
 * counters.h -- what the replay keeps of a native counter's values
 * (ULMA_COUNTER, records.h): per site, how many values were set, the last
 * one (and its tick), the smallest, the largest and their sum.  One table a
 * thread in the aggregator, added up across threads like its other totals.
 *
 * Memory follows the sites seen (an open-addressing index by site id), never
 * the size of an id or the number of values.
 */
#ifndef ULMA_COUNTERS_H
#define ULMA_COUNTERS_H

#include <stddef.h>
#include <stdint.h>
#include "map.h"

typedef struct {
    uint32_t id;
    uint32_t pad;
    uint64_t samples;
    int64_t last, min, max;
    uint64_t last_tick; /* the tick of `last` */
    __int128 sum;       /* 2^64 values of 60 bits fit */
} ulma_counter_stats;

typedef struct {
    ulma_counter_stats *rows; /* in the order first seen */
    size_t n, cap;
    ulma_map index;           /* site id -> row */
} ulma_counters;

/* Counts `value` set at `tick` for site `id`; 0, or -1 if memory ran out. */
int ulma_counters_add(ulma_counters *c, uint32_t id, int64_t value, uint64_t tick);
/* Adds src's rows to dst's (the later tick's last value wins). */
int ulma_counters_merge(ulma_counters *dst, const ulma_counters *src);
void ulma_counters_free(ulma_counters *c);

#endif
