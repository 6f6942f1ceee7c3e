/* aggregate.c -- see aggregate.h for the accounting rules. */
#include "aggregate.h"
#include "grow.h"

#include <stdlib.h>
#include <string.h>

#define MAX_FUNC_ID ULMA_MAX_FUNC_ID /* walk.h */
#define ROOT UINT32_MAX
#define ULMA_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define ULMA_LIKELY(x) __builtin_expect(!!(x), 1)
#define VALUE_MASK ((1ULL << ULMA_CPU_VALUE_BITS) - 1)
#define READING_COST_MAX_NS 50000.0

static inline void split_add_diff(ulma_split *dst, const ulma_split *now, const ulma_split *then)
{
    dst->wait += now->wait - then->wait;
    dst->runnable += now->runnable - then->runnable;
    dst->probe += now->probe - then->probe;
    dst->dispatch += now->dispatch - then->dispatch;
    dst->unmeasured += now->unmeasured - then->unmeasured;
    dst->segs += now->segs - then->segs;
    dst->bsegs += now->bsegs - then->bsegs;
    dst->esegs += now->esegs - then->esegs;
    dst->wait_cpu += now->wait_cpu - then->wait_cpu;
    dst->runnable_cpu += now->runnable_cpu - then->runnable_cpu;
    dst->runnable_ns += now->runnable_ns - then->runnable_ns;
}

static inline void split_add(ulma_split *dst, const ulma_split *src)
{
    dst->wait += src->wait;
    dst->runnable += src->runnable;
    dst->probe += src->probe;
    dst->dispatch += src->dispatch;
    dst->unmeasured += src->unmeasured;
    dst->segs += src->segs;
    dst->bsegs += src->bsegs;
    dst->esegs += src->esegs;
    dst->wait_cpu += src->wait_cpu;
    dst->runnable_cpu += src->runnable_cpu;
    dst->runnable_ns += src->runnable_ns;
}

void ulma_agg_wait(const ulma_split *s, double ns_per_tick, uint64_t *wait, uint64_t *runnable)
{
    double k = ns_per_tick > 0 ? ns_per_tick : 1.0;
    double w = (double)s->wait - (double)s->wait_cpu / k;
    double r = (double)s->runnable - ((double)s->runnable_cpu - (double)s->runnable_ns) / k;
    *wait = w > 0 ? (uint64_t)(w + 0.5) : 0;
    *runnable = r > 0 ? (uint64_t)(r + 0.5) : 0;
}

void ulma_agg_init(ulma_thread_agg *a)
{
    memset(a, 0, sizeof *a);
}

void ulma_agg_free(ulma_thread_agg *a)
{
    free(a->funcs);
    free(a->active);
    free(a->func_ids);
    for (size_t i = 0; i < a->npages; i++)
        free(a->pages[i]);
    free(a->pages);
    free(a->edge_cache);
    free(a->edges);
    free(a->index);
    free(a->stack);
    free(a->blocks);
    ulma_counters_free(&a->counters);
    ulma_objstats_release(&a->objects);
    ulma_walk_free(&a->w);
    memset(a, 0, sizeof *a);
}

void ulma_agg_release_funcs(ulma_thread_agg *a)
{
    if (a->depth)
        return; /* open frames point into the totals */
    free(a->funcs);
    free(a->active);
    free(a->func_ids);
    for (size_t i = 0; i < a->npages; i++)
        free(a->pages[i]);
    free(a->pages);
    a->funcs = NULL;
    a->active = a->func_ids = NULL;
    a->pages = NULL;
    a->nfuncs = a->funcs_cap = a->npages = 0;
    a->last_target = ROOT; /* a slot that is gone */
}

void ulma_agg_release(ulma_thread_agg *a)
{
    if (a->depth)
        return;
    ulma_agg_release_funcs(a);
    free(a->edge_cache);
    free(a->edges);
    free(a->index);
    a->edge_cache = NULL;
    a->edges = NULL;
    a->index = NULL;
    a->nedges = a->edges_cap = a->index_cap = 0;
    free(a->stack); /* empty */
    a->stack = NULL;
    a->stack_cap = 0;
    ulma_counters_free(&a->counters);
    ulma_objstats_release(&a->objects);
    if (!a->w.sync_want) /* not inside a SYNC group cut by a chunk's end */
        ulma_walk_free(&a->w);
}

int ulma_agg_hand_over(ulma_thread_agg *dst, ulma_thread_agg *src)
{
    if (src->depth || dst->nfuncs || dst->nedges) {
        if (ulma_agg_merge(dst, src, 0, 0) < 0)
            return -1;
        ulma_agg_release(src);
        return 0;
    }
    /* (a thread may set counters or make objects and run no function) */
    ulma_counters kept = dst->counters;
    ulma_objstats kept_objects = dst->objects;
    memset(&dst->counters, 0, sizeof dst->counters);
    memset(&dst->objects, 0, sizeof dst->objects);
    ulma_agg_release(dst); /* empty, but may hold arrays */
    dst->counters = kept;
    dst->objects = kept_objects;
    if (ulma_counters_merge(&dst->counters, &src->counters) < 0 ||
        ulma_objstats_merge(&dst->objects, &src->objects) < 0)
        return -1;
    ulma_counters_free(&src->counters);
    ulma_objstats_release(&src->objects);
    dst->funcs = src->funcs;
    dst->active = src->active;
    dst->func_ids = src->func_ids;
    dst->nfuncs = src->nfuncs;
    dst->funcs_cap = src->funcs_cap;
    dst->pages = src->pages;
    dst->npages = src->npages;
    dst->edge_cache = src->edge_cache;
    dst->edges = src->edges;
    dst->nedges = src->nedges;
    dst->edges_cap = src->edges_cap;
    dst->index = src->index;
    dst->index_cap = src->index_cap;
    dst->cpu_readings += src->cpu_readings;
    src->funcs = NULL;
    src->active = src->func_ids = NULL;
    src->pages = NULL;
    src->edge_cache = NULL;
    src->edges = NULL;
    src->index = NULL;
    src->nfuncs = src->funcs_cap = src->npages = src->nedges = src->edges_cap = src->index_cap = 0;
    return 0;
}

#define FUNC_PAGE (1u << ULMA_FUNC_PAGE_BITS)

/* Capacity for one more slot.  The tails are not zeroed: each slot is set
 * when it is made, so capacity never used is never touched either. */
static int funcs_reserve(ulma_thread_agg *a)
{
    if (a->nfuncs < a->funcs_cap)
        return 0;
    size_t cap = a->funcs_cap ? a->funcs_cap * 2 : 64;
    ulma_func_stats *f = realloc(a->funcs, cap * sizeof *f);
    if (!f)
        return -1;
    a->funcs = f;
    uint32_t *act = realloc(a->active, cap * sizeof *act);
    if (!act)
        return -1;
    a->active = act;
    uint32_t *ids = realloc(a->func_ids, cap * sizeof *ids);
    if (!ids)
        return -1;
    a->func_ids = ids;
    a->funcs_cap = cap;
    return 0;
}

uint32_t ulma_agg_find(const ulma_thread_agg *a, uint32_t id)
{
    size_t p = id >> ULMA_FUNC_PAGE_BITS;
    uint32_t s = p < a->npages && a->pages[p] ? a->pages[p][id & (FUNC_PAGE - 1)] : 0;
    return s ? s - 1 : ROOT;
}

/* A new slot for `id` (below MAX_FUNC_ID); ROOT if memory ran out. */
static uint32_t func_slot_new(ulma_thread_agg *a, uint32_t id)
{
    size_t p = id >> ULMA_FUNC_PAGE_BITS;
    if (p >= a->npages) {
        size_t n = a->npages ? a->npages : 16;
        while (n <= p)
            n *= 2;
        uint32_t **pages = realloc(a->pages, n * sizeof *pages);
        if (!pages)
            return ROOT;
        memset(pages + a->npages, 0, (n - a->npages) * sizeof *pages);
        a->pages = pages;
        a->npages = n;
    }
    if (!a->pages[p] && !(a->pages[p] = calloc(FUNC_PAGE, sizeof **a->pages)))
        return ROOT;
    if (funcs_reserve(a) < 0)
        return ROOT;
    if (!a->edge_cache && !(a->edge_cache = calloc(ULMA_EDGE_CACHE, sizeof *a->edge_cache)))
        return ROOT;
    uint32_t s = (uint32_t)a->nfuncs++;
    memset(&a->funcs[s], 0, sizeof a->funcs[s]);
    a->active[s] = 0;
    a->func_ids[s] = id;
    a->pages[p][id & (FUNC_PAGE - 1)] = s + 1;
    return s;
}

/* The slot of function `id`, made if new; ROOT if memory ran out. */
static inline uint32_t func_slot(ulma_thread_agg *a, uint32_t id)
{
    size_t p = id >> ULMA_FUNC_PAGE_BITS;
    if (ULMA_LIKELY(p < a->npages) && ULMA_LIKELY(a->pages[p] != NULL)) {
        uint32_t s = a->pages[p][id & (FUNC_PAGE - 1)];
        if (ULMA_LIKELY(s != 0))
            return s - 1;
    }
    return func_slot_new(a, id);
}

static inline uint64_t mix(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
}

static int rehash(ulma_thread_agg *a, size_t cap)
{
    uint32_t *idx = calloc(cap, sizeof *idx);
    if (!idx)
        return -1;
    for (size_t e = 0; e < a->nedges; e++) {
        uint64_t key = ((uint64_t)a->edges[e].caller << 32) | a->edges[e].callee;
        size_t i = mix(key) & (cap - 1);
        while (idx[i])
            i = (i + 1) & (cap - 1);
        idx[i] = (uint32_t)e + 1;
    }
    free(a->index);
    a->index = idx;
    a->index_cap = cap;
    return 0;
}

/* The edge caller->callee, created if new; ROOT if memory ran out. */
static uint32_t edge_get(ulma_thread_agg *a, uint32_t caller, uint32_t callee)
{
    if (a->index_cap == 0 && rehash(a, 256) < 0)
        return ROOT;
    uint64_t key = ((uint64_t)caller << 32) | callee;
    size_t mask = a->index_cap - 1;
    size_t i = mix(key) & mask;
    for (uint32_t slot; (slot = a->index[i]) != 0; i = (i + 1) & mask) {
        ulma_edge_stats *e = &a->edges[slot - 1];
        if (e->caller == caller && e->callee == callee)
            return slot - 1;
    }
    if (ulma_grow((void **)&a->edges, &a->edges_cap, a->nedges + 1, sizeof *a->edges, 1) < 0)
        return ROOT;
    uint32_t n = (uint32_t)a->nedges++;
    a->edges[n].caller = caller;
    a->edges[n].callee = callee;
    a->index[i] = n + 1;
    if (a->nedges * 2 > a->index_cap && rehash(a, a->index_cap * 2) < 0)
        return ROOT;
    return n;
}

/* A program's hot edges are few: a small direct-mapped cache in front of the
 * hash table answers most lookups with one load and one compare. */
static inline uint32_t edge_get_cached(ulma_thread_agg *a, uint32_t caller, uint32_t callee)
{
    uint32_t slot = ((caller * 0x9E3779B1u) ^ callee) & (ULMA_EDGE_CACHE - 1);
    ulma_edge_cache_entry *c = &a->edge_cache[slot];
    if (c->edge && c->caller == caller && c->callee == callee)
        return c->edge - 1;
    uint32_t e = edge_get(a, caller, callee);
    if (e != ROOT) {
        c->caller = caller;
        c->callee = callee;
        c->edge = e + 1;
    }
    return e;
}

/* kind: ULMA_CALL, ULMA_C_CALL, ULMA_RESUME/ULMA_THROW, or 0 for a frame
 * restated by SYNC. */
static inline int push(ulma_thread_agg *a, uint32_t id, uint64_t t, uint8_t kind, int unmeasured)
{
    uint32_t slot = func_slot(a, id);
    if (slot == ROOT)
        return -1;
    if (ULMA_UNLIKELY(a->depth == a->stack_cap) &&
        ulma_grow((void **)&a->stack, &a->stack_cap, a->depth + 1, sizeof *a->stack, 1) < 0)
        return -1;
    ulma_frame *f = &a->stack[a->depth];
    f->id = id;
    f->slot = slot;
    f->start = t;
    f->child = 0;
    f->edge = ROOT;
    f->unmeasured = unmeasured;
    f->at = a->sums;
    if (a->depth > 0) {
        f->edge = edge_get_cached(a, a->stack[a->depth - 1].id, id);
        if (f->edge != ROOT) {
            ulma_edge_stats *e = &a->edges[f->edge];
            e->active++;
            if (kind == ULMA_CALL || kind == ULMA_C_CALL)
                e->calls++;
            else if (kind)
                e->resumes++;
        }
    }
    a->depth++;
    a->active[slot]++;
    if (kind == ULMA_CALL || kind == ULMA_C_CALL)
        a->funcs[slot].calls++;
    else if (kind)
        a->funcs[slot].resumes++;
    return 0;
}

static void watch_snap(ulma_thread_agg *a)
{
    size_t from = a->watch_depth - 1, n = a->depth - from;
    if (n > ULMA_BLOCK_FRAMES) /* the innermost frames say most */
        from = a->depth - ULMA_BLOCK_FRAMES, n = ULMA_BLOCK_FRAMES;
    a->pending.depth = (uint32_t)n;
    for (size_t i = 0; i < n; i++)
        a->pending.ids[i] = a->stack[from + i].id;
    a->watch_snapped = 1;
}

/* The watched frame ended at t (popped already: the stack is no deeper
 * than the frame under it). */
static void watch_end(ulma_thread_agg *a, uint64_t t)
{
    a->watch_depth = 0;
    uint64_t el = t - a->watch_start;
    if (el <= a->watch->ticks)
        return;
    if (!a->watch_snapped) { /* no record came past the limit: the frame alone */
        a->pending.depth = 1;
        a->pending.ids[0] = a->watch_frame;
    }
    if (a->nblocks >= ULMA_MAX_BLOCKS) {
        a->blocks_over++;
        return;
    }
    if (!a->blocks && !(a->blocks = malloc(ULMA_MAX_BLOCKS * sizeof *a->blocks))) {
        a->blocks_over++;
        return;
    }
    ulma_block *b = &a->blocks[a->nblocks++];
    *b = a->pending;
    b->start = a->watch_start;
    b->ticks = el;
}

uint32_t ulma_agg_take_blocks(ulma_thread_agg *a, ulma_block **out)
{
    uint32_t n = a->nblocks;
    *out = n ? a->blocks : NULL;
    if (n) {
        a->blocks = NULL;
        a->nblocks = 0;
    }
    return n;
}

static inline void pop(ulma_thread_agg *a, uint64_t t)
{
    ulma_frame *f = &a->stack[--a->depth];
    uint64_t el = t - f->start;
    ulma_func_stats *s = &a->funcs[f->slot];
    uint64_t own = el > f->child ? el - f->child : 0;
    s->self += own;
    if (f->unmeasured)
        a->sums.unmeasured += own; /* before the inclusive sums are taken */
    if (--a->active[f->slot] == 0) {
        s->total += el;
        split_add_diff(&s->total_split, &a->sums, &f->at);
    }
    if (f->edge != ROOT) {
        ulma_edge_stats *e = &a->edges[f->edge];
        if (--e->active == 0)
            e->total += el;
    }
    if (a->depth > 0)
        a->stack[a->depth - 1].child += el;
}

/* The function on top of the stack, if its time is measured. */
static inline ulma_func_stats *measured_top(ulma_thread_agg *a)
{
    if (a->depth == 0)
        return NULL;
    ulma_frame *f = &a->stack[a->depth - 1];
    return f->unmeasured ? NULL : &a->funcs[f->slot];
}

/* Every record but CPU readings and SYNC parts closes a gap between records
 * that holds one probe's cost, or, right after a CPU reading, the reading's
 * own measured cost. */
/* native: 0 a Python record's, 1 a native scope's begin (mark, counter), 2 its end */
static inline void end_gap(ulma_thread_agg *a, uint64_t t, int native)
{
    ulma_func_stats *top = measured_top(a);
    if (ULMA_UNLIKELY(a->after_reading)) {
        a->after_reading = 0;
        /* a reading is a few system calls: a longer gap means the thread lost
         * the CPU meanwhile, which the next reading counts as waiting */
        uint64_t cost = t - a->w.last_tick;
        double cap = a->ns_per_tick > 0 ? READING_COST_MAX_NS / a->ns_per_tick : READING_COST_MAX_NS;
        if ((double)cost > cap)
            cost = (uint64_t)cap;
        if (top) {
            top->self_split.probe += cost;
            a->sums.probe += cost;
        }
        return;
    }
    if (ULMA_UNLIKELY(native)) {
        if (top && native == 2) {
            top->self_split.esegs++;
            a->sums.esegs++;
        } else if (top) {
            top->self_split.bsegs++;
            a->sums.bsegs++;
        }
        return;
    }
    if (top) {
        top->self_split.segs++;
        a->sums.segs++;
    }
}

/* A CPU reading: the interval since the previous one had wall W and CPU C;
 * W - C off CPU goes to the function on top (see aggregate.h). */
static void on_cpu_reading(ulma_thread_agg *a, const ulma_event *e, uint64_t t)
{
    uint64_t v = (uint64_t)e->id | ((uint64_t)e->aux << 32);
    if (e->flags & ULMA_CPU_RUN_DELAY) {
        /* the interval's wait at the rate known now: only to compare it with
         * the run delay (which of the two counts), never kept */
        double off_ns = (double)a->last_wall * a->ns_per_tick - (double)a->last_cpu;
        if (a->have_run_delay && off_ns > 0 && a->ns_per_tick > 0 && a->last_target != ROOT) {
            uint64_t d_ns = (v - a->run_delay_ns) & VALUE_MASK;
            ulma_split *own = &a->funcs[a->last_target].self_split;
            if ((double)d_ns >= off_ns || (e->flags & ULMA_CPU_NO_BLOCK)) {
                /* never blocked: all of it; more: earlier waits' share */
                own->runnable += a->last_wall;
                own->runnable_cpu += a->last_cpu;
                a->sums.runnable += a->last_wall;
                a->sums.runnable_cpu += a->last_cpu;
            } else {
                own->runnable_ns += d_ns;
                a->sums.runnable_ns += d_ns;
            }
        }
        a->run_delay_ns = v;
        a->have_run_delay = 1;
        return;
    }
    a->cpu_readings++;
    a->after_reading = 1;
    a->last_wall = a->last_cpu = 0;
    a->last_target = ROOT;
    if (a->have_cpu) {
        a->last_wall = t - a->cpu_tick;
        a->last_cpu = (v - a->cpu_ns) & VALUE_MASK;
        if (a->depth > 0 && !a->stack[a->depth - 1].unmeasured) {
            a->last_target = a->stack[a->depth - 1].slot;
            ulma_split *own = &a->funcs[a->last_target].self_split;
            own->wait += a->last_wall;
            own->wait_cpu += a->last_cpu;
            a->sums.wait += a->last_wall;
            a->sums.wait_cpu += a->last_cpu;
        }
    }
    a->cpu_tick = t;
    a->cpu_ns = v;
    a->have_cpu = 1;
}

/* ---- coroutines suspended in await (aggregate.h) ---- */

static inline void await_begin(ulma_await *w, uint64_t t)
{
    w->sum -= t;
    w->n++;
}

/* a resumption pairs with a suspension this thread saw, or counts nothing */
static inline void await_end(ulma_await *w, uint64_t t)
{
    if (w->n) {
        w->sum += t;
        w->n--;
    }
}

uint64_t ulma_agg_await(const ulma_await *w, uint64_t now)
{
    if (w->n && !now)
        return 0; /* still suspended at an end no one gave: never a sum of bare ticks */
    uint64_t v = w->sum + w->n * now;
    return (int64_t)v < 0 ? 0 : v; /* only in a damaged stream */
}

/* The coroutine resumed by the previous record: if this record resumes a
 * coroutine on top of it, it was suspended awaiting that one (its edge gets
 * the time), else awaiting something else (its own waiting). */
static void await_settle(ulma_thread_agg *a, const ulma_event *e)
{
    uint32_t slot = a->resumed - 1;
    uint64_t t = a->resumed_tick;
    a->resumed = 0;
    a->rare &= (uint8_t)~ULMA_RARE_RESUMED;
    if (a->depth == 0 || a->stack[a->depth - 1].slot != slot)
        return; /* it left already: nothing to pair */
    if ((e->flags & ULMA_EVF_AWAIT) && (e->kind == ULMA_RESUME || e->kind == ULMA_THROW) &&
        e->id < MAX_FUNC_ID) {
        uint32_t edge = edge_get_cached(a, a->stack[a->depth - 1].id, e->id);
        if (edge != ROOT)
            await_end(&a->edges[edge].await_all, t);
    } else {
        await_end(&a->funcs[slot].await_self, t);
    }
}

/* A record of a coroutine (ULMA_EVF_AWAIT), before it is applied. */
static void await_record(ulma_thread_agg *a, const ulma_event *e, uint64_t t)
{
    int after_yield = (a->rare & ULMA_RARE_AFTER_YIELD) != 0;
    a->rare &= (uint8_t)~ULMA_RARE_AFTER_YIELD;
    if (e->id >= MAX_FUNC_ID)
        return;
    if (e->kind == ULMA_CALL) {
        uint32_t slot = func_slot(a, e->id);
        if (slot != ROOT)
            a->funcs[slot].coro_calls++;
    } else if (e->kind == ULMA_RESUME || e->kind == ULMA_THROW) {
        uint32_t slot = func_slot(a, e->id);
        if (slot == ROOT || !a->funcs[slot].await_all.n)
            return;
        await_end(&a->funcs[slot].await_all, t);
        a->resumed = slot + 1;
        a->resumed_tick = t;
        a->rare |= ULMA_RARE_RESUMED;
    } else if (e->kind == ULMA_YIELD) {
        if (a->depth == 0 || a->stack[a->depth - 1].id != e->id)
            return; /* not the frame on top: the stack rules drop or cut it */
        uint32_t slot = a->stack[a->depth - 1].slot;
        await_begin(&a->funcs[slot].await_all, t);
        if (!after_yield)
            a->chain_n = 0;
        if (a->chain_n < ULMA_TASK_AWAIT_FRAMES)
            a->chain[a->chain_n++] = e->id;
        if (after_yield) {
            /* the coroutine that yielded just before, on top of this one */
            uint32_t edge = edge_get_cached(a, e->id, a->await_child);
            if (edge != ROOT)
                await_begin(&a->edges[edge].await_all, t);
        } else {
            await_begin(&a->funcs[slot].await_self, t);
        }
        a->rare |= ULMA_RARE_AFTER_YIELD;
        a->await_child = e->id;
    }
}

static inline int is_entry(uint8_t kind)
{
    return kind == ULMA_CALL || kind == ULMA_RESUME || kind == ULMA_THROW;
}

/* A TASK record still pending is ignored: what came after it was not its
 * event (a damaged stream). */
static inline void task_dropped(ulma_thread_agg *a)
{
    a->rare &= (uint8_t)~ULMA_RARE_TASK;
    a->task_pending = 0;
}

/* The record after a TASK record: a step of that task starts or ends. */
static void task_step(ulma_thread_agg *a, const ulma_event *e, uint64_t t)
{
    uint32_t number = a->task_pending;
    int ends = (a->task_pending_flags & ULMA_TASKF_END) != 0;
    a->task_pending = 0;
    a->rare &= (uint8_t)~ULMA_RARE_TASK;
    if (!a->tasks || !(e->flags & ULMA_EVF_AWAIT) || e->id >= MAX_FUNC_ID || ends == is_entry(e->kind)) {
        return; /* not the coroutine event it was written for: a damaged stream */
    }
    ulma_task *k = ulma_tasks_get(a->tasks, number, (a->task_pending_flags & ULMA_TASKF_NEW) != 0);
    if (!k)
        return;
    if (k->state == ULMA_TASK_DONE || k->state == ULMA_TASK_FAILED)
        return; /* a number is never given twice: a damaged stream */
    k->thread = a->task_thread;
    if (!k->coro)
        k->coro = e->id;
    if (!ends) {
        if (k->state == ULMA_TASK_RUNNING)
            return; /* its step's end was lost */
        if (k->state == ULMA_TASK_WAITING && t > k->since)
            k->waiting += t - k->since;
        if (!k->steps)
            k->first = t;
        k->steps++;
        k->state = ULMA_TASK_RUNNING;
        k->since = t;
        return;
    }
    if (k->state == ULMA_TASK_RUNNING && t > k->since)
        k->running += t - k->since;
    k->since = t;
    if (e->kind == ULMA_YIELD) {
        /* the coroutines that yielded right before it: what it awaits */
        uint32_t n = (a->rare & ULMA_RARE_AFTER_YIELD) ? a->chain_n : 0;
        memcpy(k->awaiting, a->chain, n * sizeof *k->awaiting);
        k->nawait = n;
        k->state = ULMA_TASK_WAITING;
    } else {
        k->nawait = 0;
        k->state = e->kind == ULMA_RETURN ? ULMA_TASK_DONE : ULMA_TASK_FAILED;
        a->tasks->ndone++;
    }
}

/* What a record does beyond the common case: a watched function's frame
 * (ULMA_RARE_WATCH while one is watched at all), a coroutine's record, or
 * one right after a coroutine's.  Called before the record is applied. */
static __attribute__((noinline, cold)) void rare_record(ulma_thread_agg *a, const ulma_event *e, uint64_t t)
{
    if (a->rare & ULMA_RARE_WATCH) {
        if (a->watch_depth && a->depth < a->watch_depth)
            watch_end(a, a->w.last_tick); /* the previous record left it */
        if (!a->watch_depth) {
            /* the watched function's frame, or a task's step (its TASK record came) */
            if ((e->kind == ULMA_CALL || e->kind == ULMA_RESUME || e->kind == ULMA_THROW) &&
                (e->id == a->watch_id ||
                 ((a->rare & ULMA_RARE_TASK) && a->watch->steps && (e->flags & ULMA_EVF_AWAIT)))) {
                a->watch_depth = a->depth + 1; /* the frame this record pushes */
                a->watch_frame = e->id;
                a->watch_start = t;
                a->watch_snapped = 0;
            }
        } else if (!a->watch_snapped && t - a->watch_start > a->watch->ticks) {
            watch_snap(a); /* the stack as the frame passes the limit */
        }
    }
    if (a->rare & ULMA_RARE_RESUMED)
        await_settle(a, e);
    if (a->rare & ULMA_RARE_TASK)
        task_step(a, e, t);
    if (e->flags & ULMA_EVF_AWAIT)
        await_record(a, e, t);
    else
        a->rare &= (uint8_t)~ULMA_RARE_AFTER_YIELD;
}

void ulma_agg_set_watch(ulma_thread_agg *a, const ulma_watch *w)
{
    a->watch = w;
    a->watch_id = w->id;
    if (w->id)
        a->rare |= ULMA_RARE_WATCH;
    else
        a->rare &= (uint8_t)~ULMA_RARE_WATCH;
}

void ulma_agg_set_tasks(ulma_thread_agg *a, ulma_tasks *k, uint32_t thread)
{
    a->tasks = k;
    a->task_thread = thread;
}

/* The stack closed at `at` (a SYNC group, the end): a watched frame ends too. */
static void watch_close(ulma_thread_agg *a, uint64_t at)
{
    if (a->watch_depth)
        watch_end(a, at);
}

/* ---- the hooks of the stack rules (walk.h) ---- */

/* With native calls, the ticks from the caller's CALL to this first
 * instruction (ULMA_EVF_DISPATCH): the caller's. */
static void dispatch_record(ulma_thread_agg *a, const ulma_event *e, uint64_t t)
{
    if (!(e->kind == ULMA_CALL || e->kind == ULMA_RESUME || e->kind == ULMA_THROW || e->kind == ULMA_C_CALL))
        return;
    uint64_t d = e->aux, gap = t - a->w.last_tick;
    if (d > gap)
        d = gap; /* it happened within the caller's last gap */
    ulma_func_stats *top = measured_top(a);
    uint32_t callee = top && e->id < MAX_FUNC_ID ? func_slot(a, e->id) : ROOT;
    if (callee != ROOT) {
        top = measured_top(a); /* funcs may have moved */
        top->self_split.dispatch += d;
        a->sums.dispatch += d;
        a->funcs[callee].dispatch_in += d;
    }
}

static void hook_record(void *ctx, const ulma_event *e, uint64_t t)
{
    ulma_thread_agg *a = ctx;
    /* (a counter's second record has its first one's ticks: no gap) */
    if (ULMA_LIKELY(e->kind != ULMA_COUNTER || !(e->flags & ULMA_COUNTER_VALUE)))
        end_gap(a, t, e->kind < ULMA_SCOPE_BEGIN ? 0 : e->kind == ULMA_SCOPE_END ? 2 : 1);
    /* one test for what most records have none of */
    if (ULMA_UNLIKELY(a->rare | (e->flags & (ULMA_EVF_AWAIT | ULMA_EVF_DISPATCH)))) {
        if (e->flags & ULMA_EVF_DISPATCH)
            dispatch_record(a, e, t);
        if (a->rare | (e->flags & ULMA_EVF_AWAIT))
            rare_record(a, e, t);
    }
}

static int hook_push(void *ctx, uint32_t id, uint64_t t, uint8_t kind, int unmeasured)
{
    return push(ctx, id, t, kind, unmeasured);
}

/* An object's record: made by e->id, or destroyed (made by e->id, or by no
 * one known) in the function on top now. */
static void hook_object(void *ctx, const ulma_event *e)
{
    ulma_thread_agg *a = ctx;
    int rc;
    uint64_t bytes = ulma_obj_class_bytes((e->flags & ULMA_OBJF_SIZE_MASK) >> ULMA_OBJF_SIZE_SHIFT);
    if (e->kind == ULMA_OBJ_NEW) {
        rc = ulma_objstats_new(&a->objects, e->id, e->aux, bytes);
    } else {
        /* (one found late went earlier, in a function unknown) */
        uint32_t freer = e->flags & ULMA_OBJF_LATE ? ULMA_OBJ_NO_CREATOR
                         : a->depth                ? a->stack[a->depth - 1].id
                                                   : 0;
        rc = ulma_objstats_free(&a->objects, e->flags & ULMA_OBJF_UNKNOWN ? ULMA_OBJ_NO_CREATOR : e->id,
                                e->aux, freer, bytes);
    }
    if (rc < 0)
        a->failed = 1;
}

static void hook_counter(void *ctx, uint32_t id, int64_t value, uint64_t t)
{
    ulma_thread_agg *a = ctx;
    if (ulma_counters_add(&a->counters, id, value, t) < 0)
        a->failed = 1;
}

static void hook_pop(void *ctx, uint64_t t)
{
    pop(ctx, t);
}

static size_t hook_depth(const void *ctx)
{
    return ((const ulma_thread_agg *)ctx)->depth;
}

static uint32_t hook_id_at(const void *ctx, size_t i)
{
    return ((const ulma_thread_agg *)ctx)->stack[i].id;
}

/* active[] counts a function's open frames (for recursion): the O(1) test */
static int hook_on_stack(const void *ctx, uint32_t id)
{
    const ulma_thread_agg *a = ctx;
    uint32_t slot = ulma_agg_find(a, id);
    return slot != ROOT && a->active[slot] != 0;
}

static void hook_synced(void *ctx, uint64_t close_at, uint64_t at, uint32_t flags)
{
    (void)at, (void)flags;
    ulma_thread_agg *a = ctx;
    watch_close(a, close_at);
    task_dropped(a); /* a TASK record's event comes right after it */
    /* the next CPU reading is a new baseline: the gap held lost events */
    a->have_cpu = a->have_run_delay = 0;
    a->after_reading = 0;
}

static void hook_task(void *ctx, const ulma_event *e, uint64_t t)
{
    (void)t;
    ulma_thread_agg *a = ctx;
    if (a->tasks) {
        task_dropped(a); /* two in a row: the first had no event */
        a->task_pending = e->id;
        a->task_pending_flags = e->flags;
        a->task_seen = 1;
        a->rare |= ULMA_RARE_TASK;
    }
    if (a->watch && a->watch->steps && a->watch->ticks)
        a->rare |= ULMA_RARE_WATCH; /* its steps are watched from now on */
}

static void hook_cpu(void *ctx, const ulma_event *e, uint64_t t)
{
    ulma_thread_agg *a = ctx;
    task_dropped(a);
    if (!(e->flags & ULMA_CPU_RUN_DELAY))
        end_gap(a, t, 0); /* the gap before the reading held a probe */
    on_cpu_reading(a, e, t);
}

static const ulma_walk_hooks AGG_HOOKS = {
    .record = hook_record,
    .push = hook_push,
    .pop = hook_pop,
    .depth = hook_depth,
    .id_at = hook_id_at,
    .on_stack = hook_on_stack,
    .synced = hook_synced,
    .cpu = hook_cpu,
    .task = hook_task,
    .counter = hook_counter,
    .object = hook_object,
};

__attribute__((flatten)) int ulma_agg_feed(ulma_thread_agg *a, const ulma_event *ev, size_t n)
{
    if (a->failed)
        return -1;
    if (ulma_walk_feed(&a->w, &AGG_HOOKS, a, ev, n) < 0 || a->failed) {
        a->failed = 1;
        return -1;
    }
    return 0;
}

/* a suspension still open ends at t */
static inline void await_close(ulma_await *w, uint64_t t)
{
    w->sum += w->n * t;
    w->n = 0;
}

void ulma_agg_close(ulma_thread_agg *a)
{
    while (a->depth > 0)
        pop(a, a->w.last_tick);
    watch_close(a, a->w.last_tick);
    /* coroutines still suspended: until the thread's end */
    uint64_t end = a->w.last_tick;
    for (size_t i = 0; i < a->nfuncs; i++) {
        await_close(&a->funcs[i].await_all, end);
        await_close(&a->funcs[i].await_self, end);
    }
    for (size_t i = 0; i < a->nedges; i++)
        await_close(&a->edges[i].await_all, end);
    a->resumed = 0;
    a->rare &= (uint8_t)~(ULMA_RARE_RESUMED | ULMA_RARE_AFTER_YIELD | ULMA_RARE_TASK);
    a->task_pending = 0;
    /* a task in a step of this thread: its step ends with the thread */
    ulma_tasks *k = a->task_seen ? a->tasks : NULL;
    for (size_t i = 0; k && i < k->n; i++) {
        ulma_task *t = &k->tasks[i];
        if (t->state == ULMA_TASK_RUNNING && t->thread == a->task_thread) {
            if (end > t->since)
                t->running += end - t->since;
            t->since = end;
            t->state = ULMA_TASK_WAITING;
        }
    }
}

void ulma_agg_clear(ulma_thread_agg *a, uint64_t now)
{
    if (now < a->w.last_tick)
        now = a->w.last_tick;
    /* coroutines still suspended count from now on */
    for (size_t i = 0; i < a->nfuncs; i++) {
        ulma_func_stats *f = &a->funcs[i];
        uint64_t n_all = f->await_all.n, n_self = f->await_self.n;
        memset(f, 0, sizeof *f);
        f->await_all = (ulma_await){0 - n_all * now, n_all};
        f->await_self = (ulma_await){0 - n_self * now, n_self};
    }
    for (size_t i = 0; i < a->nedges; i++) {
        ulma_edge_stats *e = &a->edges[i];
        e->calls = e->resumes = e->total = 0;
        e->await_all.sum = 0 - e->await_all.n * now;
    }
    for (size_t i = 0; i < a->depth; i++) {
        a->stack[i].start = now;
        a->stack[i].child = 0;
        a->stack[i].at = a->sums;
    }
    a->w.lost_ticks = 0;
    ulma_counters_free(&a->counters);
    /* (objects stay: how many are live is a state, not a total since) */
}

/* a + b, at most UINT64_MAX: times added up across threads (each below
 * 2^62 ticks, walk.h) stay ordered (self <= total) however many there are */
static inline uint64_t sat_add(uint64_t a, uint64_t b)
{
    uint64_t s = a + b;
    return s < a ? UINT64_MAX : s;
}

static void func_add(ulma_func_stats *d, const ulma_func_stats *s)
{
    d->calls += s->calls;
    d->resumes += s->resumes;
    d->self = sat_add(d->self, s->self);
    d->total = sat_add(d->total, s->total);
    split_add(&d->self_split, &s->self_split);
    split_add(&d->total_split, &s->total_split);
    d->dispatch_in += s->dispatch_in;
    d->await_all.sum += s->await_all.sum;
    d->await_all.n += s->await_all.n;
    d->await_self.sum += s->await_self.sum;
    d->await_self.n += s->await_self.n;
    d->coro_calls += s->coro_calls;
}

/* Adds src's totals into dst (a container, never fed).  With now != 0 the
 * frames still open in src count as if they returned at `now`, so a live
 * view shows time as it accrues; src itself is not changed. */
int ulma_agg_merge(ulma_thread_agg *dst, const ulma_thread_agg *src, uint64_t now, uint64_t now_cpu_ns)
{
    for (size_t i = 0; i < src->nfuncs; i++) {
        uint32_t d = func_slot(dst, src->func_ids[i]);
        if (d == ROOT)
            return -1;
        func_add(&dst->funcs[d], &src->funcs[i]);
    }
    for (size_t i = 0; i < src->nedges; i++) {
        const ulma_edge_stats *e = &src->edges[i];
        uint32_t d = edge_get(dst, e->caller, e->callee);
        if (d == ROOT)
            return -1;
        dst->edges[d].calls += e->calls;
        dst->edges[d].resumes += e->resumes;
        dst->edges[d].total = sat_add(dst->edges[d].total, e->total);
        dst->edges[d].await_all.sum += e->await_all.sum;
        dst->edges[d].await_all.n += e->await_all.n;
    }
    dst->cpu_readings += src->cpu_readings;
    if (ulma_counters_merge(&dst->counters, &src->counters) < 0 ||
        ulma_objstats_merge(&dst->objects, &src->objects) < 0)
        return -1;
    if (!now || src->depth == 0)
        return 0;
    if (now < src->w.last_tick)
        now = src->w.last_tick;
    /* Open frames: self from the top down, totals for outermost occurrences
     * only (first seen walking from the bottom). */
    uint8_t *seen_f = calloc(src->nfuncs, 1);
    uint8_t *seen_e = calloc(src->nedges + 1, 1);
    uint64_t *unm_above = calloc(src->depth + 1, sizeof *unm_above);
    if (!seen_f || !seen_e || !unm_above) {
        free(seen_f);
        free(seen_e);
        free(unm_above);
        return -1;
    }
    /* The open interval since the last CPU reading, if the caller read the
     * thread's CPU clock: its off-CPU time goes to the top, as a reading
     * now would give it. */
    uint64_t pending_wall = 0, pending_cpu = 0;
    if (now_cpu_ns && src->have_cpu && now > src->cpu_tick &&
        !src->stack[src->depth - 1].unmeasured) {
        pending_wall = now - src->cpu_tick;
        pending_cpu = (now_cpu_ns - src->cpu_ns) & VALUE_MASK;
        ulma_split *own = &dst->funcs[ulma_agg_find(dst, src->stack[src->depth - 1].id)].self_split;
        own->wait += pending_wall;
        own->wait_cpu += pending_cpu;
    }
    uint64_t above = 0;
    for (size_t i = src->depth; i-- > 0;) {
        const ulma_frame *f = &src->stack[i];
        uint64_t el = now - f->start;
        uint64_t busy = f->child + above;
        uint64_t own = el > busy ? el - busy : 0;
        uint64_t *self_sum = &dst->funcs[ulma_agg_find(dst, f->id)].self;
        *self_sum = sat_add(*self_sum, own);
        unm_above[i] = unm_above[i + 1] + (f->unmeasured ? own : 0);
        above = el;
    }
    for (size_t i = 0; i < src->depth; i++) {
        const ulma_frame *f = &src->stack[i];
        uint64_t el = now - f->start;
        if (!seen_f[f->slot]) {
            seen_f[f->slot] = 1;
            ulma_func_stats *d = &dst->funcs[ulma_agg_find(dst, f->id)];
            d->total = sat_add(d->total, el);
            split_add_diff(&d->total_split, &src->sums, &f->at);
            d->total_split.unmeasured += unm_above[i + 1];
            d->total_split.wait += pending_wall;
            d->total_split.wait_cpu += pending_cpu;
        }
        if (f->edge != ROOT && !seen_e[f->edge]) {
            seen_e[f->edge] = 1;
            const ulma_edge_stats *e = &src->edges[f->edge];
            uint32_t d = edge_get(dst, e->caller, e->callee);
            if (d != ROOT)
                dst->edges[d].total = sat_add(dst->edges[d].total, el);
        }
    }
    free(seen_f);
    free(seen_e);
    free(unm_above);
    return 0;
}
