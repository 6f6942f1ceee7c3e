/*
 * map.h -- an open-addressing map from 64-bit keys to 32-bit values (keys
 * stored + 1, so 0 marks an empty slot; at most half full), for the
 * exporters' replay and the aggregator's tables of counters and objects.
 * Memory follows the keys put in, never their size.
 */
#ifndef ULMA_MAP_H
#define ULMA_MAP_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t *keys; /* key + 1; 0 = empty */
    uint32_t *vals;
    size_t n, cap;
    uint32_t gen;   /* changes whenever values move: a slot kept from before is stale */
} ulma_map;

/* Where a value sat in a map (found again by key if the map moved it since). */
typedef struct {
    uint32_t slot, gen;
} ulma_map_ref;

static inline uint64_t ulma_map_mix(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
}

static inline void ulma_map_free(ulma_map *m)
{
    uint32_t gen = m->gen + 1; /* references into it are stale */
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
    m->gen = gen;
}

static inline int ulma_map_grow(ulma_map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    uint64_t *keys = calloc(cap, sizeof *keys);
    uint32_t *vals = malloc(cap * sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i])
            continue;
        size_t j = ulma_map_mix(m->keys[i]) & (cap - 1);
        while (keys[j])
            j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    m->gen++;
    return 0;
}

/* The value of key, or NULL. */
static inline uint32_t *ulma_map_find(const ulma_map *m, uint64_t key)
{
    if (!m->cap)
        return NULL;
    key++;
    for (size_t j = ulma_map_mix(key) & (m->cap - 1);; j = (j + 1) & (m->cap - 1)) {
        if (m->keys[j] == key)
            return &m->vals[j];
        if (!m->keys[j])
            return NULL;
    }
}

/* The value of key, made `fresh` if new; NULL if memory ran out. */
static inline uint32_t *ulma_map_get(ulma_map *m, uint64_t key, uint32_t fresh, int *made)
{
    uint32_t *v = ulma_map_find(m, key);
    if (made)
        *made = 0;
    if (v)
        return v;
    if ((m->n + 1) * 2 > m->cap && ulma_map_grow(m) < 0)
        return NULL;
    key++;
    size_t j = ulma_map_mix(key) & (m->cap - 1);
    while (m->keys[j])
        j = (j + 1) & (m->cap - 1);
    m->keys[j] = key;
    m->vals[j] = fresh;
    m->n++;
    if (made)
        *made = 1;
    return &m->vals[j];
}

/* A reference to v, a value in m, for ulma_map_at. */
static inline ulma_map_ref ulma_map_ref_of(const ulma_map *m, const uint32_t *v)
{
    return (ulma_map_ref){(uint32_t)(v - m->vals), m->gen};
}

/* The value of key, at `ref` if the map has not moved it since (no search). */
static inline uint32_t *ulma_map_at(const ulma_map *m, ulma_map_ref ref, uint64_t key)
{
    return ref.gen == m->gen ? &m->vals[ref.slot] : ulma_map_find(m, key);
}

#endif
