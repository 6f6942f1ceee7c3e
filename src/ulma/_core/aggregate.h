/*
 * aggregate.h -- replays one thread's event stream into per-function and
 * per-edge totals.  The live monitor (drain.c) and trace-file readers feed
 * the same code, so what is shown live is what a report from a file shows.
 *
 * Accounting (all in clock ticks; the caller converts):
 *   - a frame's elapsed time = its return tick - its call (or resume) tick;
 *   - self += elapsed - time spent in its direct callees;
 *   - total += elapsed only for the outermost active frame of that function
 *     (recursion counted once, as cProfile does); edges likewise per pair;
 *   - a SYNC group (after drops, or at a thread's first event) closes the old
 *     stack at the last tick seen and opens the stated frames without
 *     counting calls; the gap is counted as lost, credited to no function.
 */
#ifndef ULMA_AGGREGATE_H
#define ULMA_AGGREGATE_H

#include <stddef.h>
#include <stdint.h>
#include "records.h"

typedef struct {
    uint64_t calls, resumes, self, total;
} ulma_func_stats;

typedef struct {
    uint32_t caller, callee;
    uint64_t calls, resumes, total;
    uint32_t active; /* frames of this pair open on the stack */
    uint32_t pad;
} ulma_edge_stats;

#define ULMA_EDGE_CACHE 4096u /* power of two */
typedef struct {
    uint32_t caller, callee, edge; /* edge + 1; 0 = empty */
} ulma_edge_cache_entry;

typedef struct {
    uint32_t id;
    uint32_t edge;   /* index into edges, or UINT32_MAX at the stack's root */
    uint64_t start;  /* tick the frame (re)entered */
    uint64_t child;  /* ticks spent in direct callees */
} ulma_frame;

typedef struct {
    /* per function id */
    ulma_func_stats *funcs;
    uint32_t *active; /* open frames per id, for counting recursion once */
    ulma_edge_cache_entry *edge_cache; /* ULMA_EDGE_CACHE recent edges */
    size_t nfuncs;
    /* per caller->callee pair: dense array plus an open-addressing index */
    ulma_edge_stats *edges;
    size_t nedges, edges_cap;
    uint32_t *index; /* edge number + 1, 0 = empty */
    size_t index_cap;
    /* the thread's shadow stack */
    ulma_frame *stack;
    size_t depth, stack_cap;
    /* a SYNC group being read */
    uint32_t *sync_ids;
    uint32_t sync_want, sync_have, sync_flags;
    uint64_t sync_ticks;
    /* bookkeeping */
    uint64_t first_tick, last_tick;
    uint64_t events;
    uint64_t lost_ticks;       /* gaps around drops, credited to nobody */
    uint64_t unmatched;        /* returns with no matching frame */
    uint64_t clock_backwards;  /* ticks that went back, clamped */
    uint64_t syncs;
    int failed;                /* out of memory: stats stop growing */
} ulma_thread_agg;

void ulma_agg_init(ulma_thread_agg *a);
void ulma_agg_free(ulma_thread_agg *a);
/* Replays n events; returns 0, or -1 if memory ran out. */
int ulma_agg_feed(ulma_thread_agg *a, const ulma_event *ev, size_t n);
/* Closes every open frame at the last tick seen (end of a thread). */
void ulma_agg_close(ulma_thread_agg *a);
/* Adds src's totals (and, if now != 0, its open frames up to now) to dst. */
int ulma_agg_merge(ulma_thread_agg *dst, const ulma_thread_agg *src, uint64_t now);
/* Forgets all totals; keeps the stack, restarting its frames at `now`. */
void ulma_agg_clear(ulma_thread_agg *a, uint64_t now);

#endif
