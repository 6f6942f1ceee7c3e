/*
 * walk.h -- the stack rules of every replay of an event stream, written
 * once.  The aggregator (aggregate.c: totals, live and for `ulma report`)
 * and the exporters' replay (replay.c: frames and stacks) both run
 * ulma_walk_feed with their own hooks; what the rules decide is the same for
 * both:
 *   - ticks never go back within a thread: a tick below the last one, or
 *     ULMA_MAX_SPAN_TICKS past the thread's first, is taken as the last one
 *     (and counted); the first tick is taken as at least `floor_tick`;
 *   - CALL, C_CALL, RESUME, THROW and SCOPE_BEGIN push a frame (a scope's
 *     as a C function's call); ids at or above
 *     ULMA_MAX_FUNC_ID are corruption: counted as unmatched, never pushed;
 *   - RETURN, C_RETURN, YIELD, UNWIND and SCOPE_END pop the frame of their id; frames
 *     above it pop with it (their exits were not seen); an id with no open
 *     frame is counted as unmatched and changes nothing.  The hooks say in
 *     O(1) whether an id has an open frame, so such a record costs O(1), and
 *     a search down the stack is paid for by the frames it pops;
 *   - a SYNC group (a BEGIN record, then `aux` FRAME records; anything else
 *     in between drops the group) closes the old stack at the last tick seen
 *     and pushes the stated frames, outermost first, at the group's tick
 *     (never before the last tick); after drops, the time between is lost;
 *     a restatement (ULMA_SYNC_RESTATE) closes the old stack at its own tick;
 *   - a MARK record (an instant of ulma.h) is a frame of no length: its site
 *     pushed and popped at its tick, so it is counted where it happened;
 *   - CPU readings go to the `cpu` hook, TASK records to `task`; COUNTER
 *     records to `record` (they close a gap, change no stack), and a
 *     counter's value, put together from its two records (records.h), to
 *     `counter`: a second record with no first one before it, or a site
 *     past ULMA_MAX_FUNC_ID, is damage, counted as unmatched; OBJ_NEW and
 *     OBJ_FREE records to `object` (nothing else: an object's record closes
 *     no gap); other kinds are skipped.
 * The functions are inline and the hooks constant, so each user gets its own
 * copy of the loop with its hooks inlined: no call per event.
 */
#ifndef ULMA_WALK_H
#define ULMA_WALK_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "records.h"

/* A corrupt stream must not make a replay allocate by the id: ids at or
 * above this are counted as unmatched. */
#define ULMA_MAX_FUNC_ID (1u << 24)
/* A thread's records span at most this many ticks (48 years of a 3 GHz
 * counter); beyond, a tick is taken as damage (ulma_walk_feed). */
#define ULMA_MAX_SPAN_TICKS (1ull << 62)
/* sync_ids keep a frame's unmeasured flag in their top bit */
#define ULMA_SYNC_ID_UNMEASURED 0x80000000u

typedef struct {
    uint64_t floor_tick;       /* the first tick is taken as at least this */
    uint64_t first_tick, last_tick;
    uint64_t events;
    uint64_t lost_ticks;       /* gaps around drops, credited to nobody */
    uint64_t unmatched;        /* exits with no open frame; ids past the limit */
    uint64_t clock_backwards;  /* ticks that went back, clamped */
    uint64_t syncs;
    /* a SYNC group being read */
    uint32_t *sync_ids;
    uint32_t sync_want, sync_have, sync_flags;
    uint64_t sync_ticks;
    /* a counter's first record (site + 1, 0: none) and its high bits */
    uint32_t counter_site;
    uint32_t counter_high;
} ulma_walk;

/* What a replay does at each step.  ctx is the replay's own state. */
typedef struct {
    /* before a CALL-like or RETURN-like record (t clamped, last_tick still
     * the previous record's); may be NULL */
    void (*record)(void *ctx, const ulma_event *e, uint64_t t);
    /* pushes a frame; kind is the record's, or 0 for a frame a SYNC group
     * restates; -1 if memory ran out */
    int (*push)(void *ctx, uint32_t id, uint64_t t, uint8_t kind, int unmeasured);
    /* pops the top frame at t */
    void (*pop)(void *ctx, uint64_t t);
    size_t (*depth)(const void *ctx);
    uint32_t (*id_at)(const void *ctx, size_t i); /* id of frame i, 0 = bottom */
    int (*on_stack)(const void *ctx, uint32_t id); /* some frame of id is open (O(1)) */
    /* a SYNC group was applied: the stack closed at close_at and restarts at
     * `at` (frames not pushed yet); may be NULL */
    void (*synced)(void *ctx, uint64_t close_at, uint64_t at, uint32_t flags);
    /* a CPU reading; may be NULL */
    void (*cpu)(void *ctx, const ulma_event *e, uint64_t t);
    /* a TASK record (records.h): the next event is a task's; may be NULL */
    void (*task)(void *ctx, const ulma_event *e, uint64_t t);
    /* a counter's value (60 bits, sign-extended) at site `id`; may be NULL */
    void (*counter)(void *ctx, uint32_t id, int64_t value, uint64_t t);
    /* an OBJ_NEW or OBJ_FREE record (records.h); may be NULL */
    void (*object)(void *ctx, const ulma_event *e);
} ulma_walk_hooks;

#define ULMA_WALK_INLINE static inline __attribute__((always_inline))

static inline void ulma_walk_free(ulma_walk *w)
{
    free(w->sync_ids);
    w->sync_ids = NULL;
    w->sync_want = w->sync_have = 0;
}

ULMA_WALK_INLINE int ulma_walk_push(ulma_walk *w, const ulma_walk_hooks *h, void *ctx, uint32_t id,
                                    uint64_t t, uint8_t kind, int unmeasured)
{
    if (id >= ULMA_MAX_FUNC_ID) {
        w->unmatched++;
        return 0;
    }
    return h->push(ctx, id, t, kind, unmeasured);
}

/* Frames above a match are popped too: their exits were not seen. */
ULMA_WALK_INLINE void ulma_walk_exit(ulma_walk *w, const ulma_walk_hooks *h, void *ctx, uint32_t id,
                                     uint64_t t)
{
    size_t d = h->depth(ctx);
    if (__builtin_expect(d > 0 && h->id_at(ctx, d - 1) == id, 1)) {
        h->pop(ctx, t);
        return;
    }
    if (id >= ULMA_MAX_FUNC_ID || !h->on_stack(ctx, id)) {
        w->unmatched++;
        return;
    }
    size_t i = d;
    while (i > 0 && h->id_at(ctx, i - 1) != id)
        i--;
    while (h->depth(ctx) >= i && h->depth(ctx) > 0)
        h->pop(ctx, t);
}

ULMA_WALK_INLINE int ulma_walk_apply_sync(ulma_walk *w, const ulma_walk_hooks *h, void *ctx)
{
    uint64_t close_at = w->last_tick;
    /* a restatement after a switch lost nothing: the old stack ran until then */
    if ((w->sync_flags & ULMA_SYNC_RESTATE) && w->sync_ticks > close_at)
        close_at = w->sync_ticks;
    while (h->depth(ctx) > 0)
        h->pop(ctx, close_at);
    if (w->sync_ticks < close_at) /* only in a damaged stream */
        w->sync_ticks = close_at;
    if (w->sync_flags & ULMA_SYNC_AFTER_DROP)
        w->lost_ticks += w->sync_ticks - close_at;
    w->syncs++;
    if (h->synced)
        h->synced(ctx, close_at, w->sync_ticks, w->sync_flags);
    for (uint32_t i = 0; i < w->sync_have; i++)
        if (ulma_walk_push(w, h, ctx, w->sync_ids[i] & ~ULMA_SYNC_ID_UNMEASURED, w->sync_ticks, 0,
                           (w->sync_ids[i] & ULMA_SYNC_ID_UNMEASURED) != 0) < 0)
            return -1;
    w->sync_want = w->sync_have = 0;
    return 0;
}

/* A counter's two records (records.h): the first keeps the site and the
 * value's bits 44..59, the second gives the rest and the value. */
ULMA_WALK_INLINE void ulma_walk_counter(ulma_walk *w, const ulma_walk_hooks *h, void *ctx,
                                        const ulma_event *e, uint64_t t)
{
    if (!(e->flags & ULMA_COUNTER_VALUE)) {
        if (e->id >= ULMA_MAX_FUNC_ID) {
            w->unmatched++;
            w->counter_site = 0;
            return;
        }
        w->counter_site = e->id + 1;
        w->counter_high = e->aux;
        return;
    }
    if (!w->counter_site) {
        w->unmatched++;
        return;
    }
    uint64_t bits = (uint64_t)(w->counter_high & 0xffffu) << 44 | (uint64_t)(e->aux & 0xffffu) << 28 |
                    (e->id & 0xfffffffu);
    /* 60 bits, two's complement */
    int64_t value = (int64_t)(bits << 4) >> 4;
    uint32_t site = w->counter_site - 1;
    w->counter_site = 0;
    if (h->counter)
        h->counter(ctx, site, value, t);
}

/* Replays n records; 0, or -1 if memory ran out (the caller stops then). */
ULMA_WALK_INLINE int ulma_walk_feed(ulma_walk *w, const ulma_walk_hooks *h, void *ctx,
                                    const ulma_event *ev, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        const ulma_event *e = &ev[k];
        uint64_t t = e->ticks;
        if (w->events == 0) {
            if (t < w->floor_tick)
                t = w->floor_tick;
            w->first_tick = w->last_tick = t;
        }
        /* a tick ULMA_MAX_SPAN_TICKS past the thread's first is damage too (a
         * crafted trace): taken as the last one, so no duration reaches 2^62
         * ticks and no sum of a thread's wraps around */
        if (t < w->last_tick || t - w->first_tick > ULMA_MAX_SPAN_TICKS) {
            w->clock_backwards++;
            t = w->last_tick;
        }
        w->events++;
        int rc = 0;
        /* A SYNC group is contiguous; anything else inside one means damage:
         * the group is dropped rather than applied half-read. */
        if (w->sync_want && !(e->kind == ULMA_SYNC && (e->flags & ULMA_SYNC_FRAME)))
            w->sync_want = w->sync_have = 0;
        switch (e->kind) {
        case ULMA_CALL:
        case ULMA_RESUME:
        case ULMA_THROW:
        case ULMA_C_CALL:
            if (h->record)
                h->record(ctx, e, t);
            rc = ulma_walk_push(w, h, ctx, e->id, t, e->kind, (e->flags & ULMA_EVF_UNMEASURED) != 0);
            break;
        case ULMA_SCOPE_BEGIN: /* a native scope: entered as a C function is */
            if (h->record)
                h->record(ctx, e, t);
            rc = ulma_walk_push(w, h, ctx, e->id, t, ULMA_C_CALL, 0);
            break;
        case ULMA_RETURN:
        case ULMA_YIELD:
        case ULMA_UNWIND:
        case ULMA_C_RETURN:
        case ULMA_SCOPE_END:
            if (h->record)
                h->record(ctx, e, t);
            ulma_walk_exit(w, h, ctx, e->id, t);
            break;
        case ULMA_MARK:
            if (h->record)
                h->record(ctx, e, t);
            rc = ulma_walk_push(w, h, ctx, e->id, t, ULMA_C_CALL, 0);
            if (rc == 0)
                ulma_walk_exit(w, h, ctx, e->id, t);
            break;
        case ULMA_COUNTER:
            if (h->record)
                h->record(ctx, e, t);
            ulma_walk_counter(w, h, ctx, e, t);
            break;
        case ULMA_CPU_SAMPLE:
            if (h->cpu)
                h->cpu(ctx, e, t);
            break;
        case ULMA_OBJ_NEW:
        case ULMA_OBJ_FREE:
            if (h->object)
                h->object(ctx, e);
            break;
        case ULMA_TASK:
            if (h->task)
                h->task(ctx, e, t);
            break;
        case ULMA_SYNC:
            if (e->flags & ULMA_SYNC_BEGIN) {
                uint32_t *ids = realloc(w->sync_ids, ((size_t)e->aux + 1) * sizeof *ids);
                if (!ids) {
                    rc = -1;
                    break;
                }
                w->sync_ids = ids;
                w->sync_want = e->aux;
                w->sync_have = 0;
                w->sync_flags = e->flags;
                w->sync_ticks = t;
                /* the old stack closes at the tick before the group (a
                 * restatement: at the group's own, which it then reached) */
                t = w->last_tick;
                if (e->aux == 0) {
                    rc = ulma_walk_apply_sync(w, h, ctx);
                    if (e->flags & ULMA_SYNC_RESTATE)
                        t = w->sync_ticks;
                }
            } else if ((e->flags & ULMA_SYNC_FRAME) && w->sync_have < w->sync_want) {
                /* an id past the limit stays one (it is not pushed) */
                uint32_t id = e->id < ULMA_MAX_FUNC_ID ? e->id : ULMA_MAX_FUNC_ID;
                w->sync_ids[w->sync_have++] =
                    id | ((e->flags & ULMA_EVF_UNMEASURED) ? ULMA_SYNC_ID_UNMEASURED : 0);
                t = w->last_tick;
                if (w->sync_have == w->sync_want) {
                    rc = ulma_walk_apply_sync(w, h, ctx);
                    t = w->sync_ticks;
                }
            }
            break;
        default:
            break; /* kinds no replay reads yet */
        }
        if (rc < 0)
            return -1;
        w->last_tick = t;
    }
    return 0;
}

#endif
