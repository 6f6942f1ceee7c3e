/* replay.c -- see replay.h. */
#include "replay.h"

#include "grow.h"

#include <stdlib.h>
#include <string.h>

#define NONE UINT32_MAX
#define SCALE_BITS 48

/* ---- the replay ---- */

static inline int64_t ns_of(const ulma_replay *r, uint64_t t)
{
    /* t >= start_ticks: the walk's floor */
    unsigned __int128 v = (unsigned __int128)(t - r->start_ticks) * r->scale >> SCALE_BITS;
    return v > (unsigned __int128)INT64_MAX ? INT64_MAX : (int64_t)v;
}

static ulma_transition *emit(ulma_replay *r)
{
    if (r->nout == r->out_cap &&
        ulma_grow((void **)&r->out, &r->out_cap, r->nout + 1, sizeof *r->out, 0) < 0)
        return NULL;
    ulma_transition *x = &r->out[r->nout++];
    memset(x, 0, sizeof *x);
    return x;
}

static uint32_t node_new(ulma_replay *r, int32_t parent, int64_t fid)
{
    size_t cap = r->nodes_cap;
    if (r->nnodes == cap) {
        size_t c = cap;
        if (ulma_grow((void **)&r->node_parent, &c, cap + 1, sizeof *r->node_parent, 0) < 0)
            return NONE;
        c = cap;
        if (ulma_grow((void **)&r->node_fid, &c, cap + 1, sizeof *r->node_fid, 0) < 0)
            return NONE;
        c = cap;
        if (ulma_grow((void **)&r->node_self, &c, cap + 1, sizeof *r->node_self, 0) < 0)
            return NONE;
        c = cap;
        if (ulma_grow((void **)&r->node_calls, &c, cap + 1, sizeof *r->node_calls, 0) < 0)
            return NONE;
        c = cap;
        if (ulma_grow((void **)&r->node_objects, &c, cap + 1, sizeof *r->node_objects, 0) < 0)
            return NONE;
        c = cap;
        if (ulma_grow((void **)&r->node_bytes, &c, cap + 1, sizeof *r->node_bytes, 0) < 0)
            return NONE;
        r->nodes_cap = c;
    }
    uint32_t n = (uint32_t)r->nnodes++;
    r->node_parent[n] = parent;
    r->node_fid[n] = fid;
    r->node_self[n] = r->node_calls[n] = r->node_objects[n] = r->node_bytes[n] = 0;
    return n;
}

/* The index of key's figures, made if new; NONE if memory ran out. */
static uint32_t pstat_of(ulma_map *index, uint64_t key, ulma_pstat **arr, size_t *n, size_t *cap,
                         void **keys, size_t key_size)
{
    int made;
    uint32_t *v = ulma_map_get(index, key, (uint32_t)*n, &made);
    if (!v)
        return NONE;
    if (made) {
        size_t c = *cap;
        if (ulma_grow((void **)arr, &c, *n + 1, sizeof **arr, 0) < 0)
            return NONE;
        c = *cap;
        if (ulma_grow(keys, &c, *n + 1, key_size, 0) < 0)
            return NONE;
        *cap = c;
        memset(&(*arr)[*n], 0, sizeof **arr);
        if (key_size == sizeof(uint32_t))
            ((uint32_t *)*keys)[*n] = (uint32_t)key;
        else
            ((uint64_t *)*keys)[*n] = key;
        (*n)++;
    }
    return *v;
}

static int rpush(ulma_replay_thread *th, uint32_t id, uint64_t ticks, uint8_t kind)
{
    ulma_replay *r = th->r;
    if (th->depth == th->cap &&
        ulma_grow((void **)&th->stack, &th->cap, th->depth + 1, sizeof *th->stack, 0) < 0)
        return -1;
    uint32_t *open = ulma_map_get(&th->open, id, 0, NULL);
    if (!open)
        return -1;
    uint32_t level = (*open)++;
    int64_t t = ns_of(r, ticks);
    int32_t parent = th->depth ? (int32_t)th->stack[th->depth - 1].id : -1;
    int parent_hidden = th->depth ? th->stack[th->depth - 1].hidden : 0;
    ulma_rframe *f = &th->stack[th->depth++];
    f->id = id;
    f->start = t;
    f->child = 0;
    f->hidden = r->hidden.n && ulma_map_find(&r->hidden, id) != NULL;
    f->node = f > th->stack ? f[-1].node : th->root;
    f->open = ulma_map_ref_of(&th->open, open);
    f->func = f->edge = NONE;
    if (f->hidden)
        return 0;
    if ((r->what & (ULMA_REPLAY_FRAMES | ULMA_REPLAY_ENDS_ONLY)) == ULMA_REPLAY_FRAMES) {
        ulma_transition *x = emit(r);
        if (!x)
            return -1;
        x->op = ULMA_TR_ENTER;
        x->t = t;
        x->fid = id;
        x->parent = parent;
        x->thread = th->thread;
        x->kind = kind;
    }
    if ((r->what & ULMA_REPLAY_TREE) && th->depth > ULMA_TREE_MAX_DEPTH && f->node != NONE) {
        r->cut_frames++; /* its time stays with the frame at the limit */
    } else if (r->what & ULMA_REPLAY_TREE) {
        if (f->node == NONE) { /* the thread's first frame */
            if (r->what & ULMA_REPLAY_TREE_PER_THREAD) {
                th->root = node_new(r, -1, -1 - (int64_t)th->thread);
                if (th->root == NONE)
                    return -1;
            } else {
                th->root = 0;
            }
            for (size_t i = 0; i + 1 < th->depth; i++) /* hidden frames below it */
                th->stack[i].node = th->root;
            f->node = th->root;
        }
        int made;
        uint32_t *child = ulma_map_get(&r->children, (uint64_t)f->node << 32 | id, (uint32_t)r->nnodes, &made);
        if (!child)
            return -1;
        if (made && node_new(r, (int32_t)f->node, id) == NONE)
            return -1;
        f->node = *child;
        if (kind)
            r->node_calls[f->node]++;
    }
    if (r->what & ULMA_REPLAY_PSTATS) {
        f->func = pstat_of(&r->func_index, id, &r->funcs, &r->nfuncs, &r->funcs_cap,
                           (void **)&r->func_ids, sizeof *r->func_ids);
        if (f->func == NONE)
            return -1;
        ulma_pstat *p = &r->funcs[f->func];
        if (kind) {
            p->entries++;
            p->recursive += level != 0;
        }
        if (parent >= 0 && !parent_hidden) {
            uint64_t key = (uint64_t)(uint32_t)parent << 32 | id;
            uint32_t *eo = ulma_map_get(&th->edge_open, key, 0, NULL);
            if (!eo)
                return -1;
            uint32_t edge = pstat_of(&r->edge_index, key, &r->edges, &r->nedges, &r->edges_cap,
                                     (void **)&r->edge_keys, sizeof *r->edge_keys);
            if (edge == NONE)
                return -1;
            f->edge = edge;
            f->edge_open = ulma_map_ref_of(&th->edge_open, eo);
            p = &r->edges[edge];
            if (kind) {
                p->entries++;
                p->recursive += *eo != 0;
            }
            (*eo)++;
        }
    }
    return 0;
}

static void rpop(ulma_replay_thread *th, uint64_t ticks)
{
    ulma_replay *r = th->r;
    ulma_rframe *f = &th->stack[--th->depth];
    int64_t t = ns_of(r, ticks);
    int64_t el = t - f->start;
    int64_t own = el - f->child;
    if (th->depth)
        th->stack[th->depth - 1].child += el;
    uint32_t left = --*ulma_map_at(&th->open, f->open, f->id);
    if (f->hidden)
        return;
    int32_t parent = th->depth ? (int32_t)th->stack[th->depth - 1].id : -1;
    if (r->what & ULMA_REPLAY_FRAMES) {
        ulma_transition *x = emit(r);
        if (!x) {
            th->failed = 1;
            return;
        }
        x->op = ULMA_TR_LEAVE;
        x->t = t;
        x->start = f->start;
        x->self_ns = own;
        x->fid = f->id;
        x->parent = parent;
        x->thread = th->thread;
    }
    if (r->what & ULMA_REPLAY_TREE)
        r->node_self[f->node] += (uint64_t)own;
    if (r->what & ULMA_REPLAY_PSTATS) {
        ulma_pstat *p = &r->funcs[f->func];
        p->self += (uint64_t)own;
        if (!left)
            p->cum += (uint64_t)el;
        if (f->edge != NONE) {
            uint64_t key = (uint64_t)(uint32_t)parent << 32 | f->id;
            ulma_pstat *e = &r->edges[f->edge];
            e->self += (uint64_t)own;
            if (!--*ulma_map_at(&th->edge_open, f->edge_open, key))
                e->cum += (uint64_t)el;
        }
    }
}

/* ---- the hooks of the stack rules (walk.h) ---- */

static int hook_push(void *ctx, uint32_t id, uint64_t t, uint8_t kind, int unmeasured)
{
    (void)unmeasured; /* exporters show excluded frames as the trace has them */
    return rpush(ctx, id, t, kind);
}

static void hook_pop(void *ctx, uint64_t t)
{
    rpop(ctx, t);
}

static size_t hook_depth(const void *ctx)
{
    return ((const ulma_replay_thread *)ctx)->depth;
}

static uint32_t hook_id_at(const void *ctx, size_t i)
{
    return ((const ulma_replay_thread *)ctx)->stack[i].id;
}

static int hook_on_stack(const void *ctx, uint32_t id)
{
    const uint32_t *open = ulma_map_find(&((const ulma_replay_thread *)ctx)->open, id);
    return open && *open;
}

static void hook_synced(void *ctx, uint64_t close_at, uint64_t at, uint32_t flags)
{
    ulma_replay_thread *th = ctx;
    if (!(flags & ULMA_SYNC_AFTER_DROP) || !(th->r->what & ULMA_REPLAY_FRAMES))
        return;
    ulma_transition *x = emit(th->r);
    if (!x) {
        th->failed = 1;
        return;
    }
    x->op = ULMA_TR_GAP;
    x->t = ns_of(th->r, close_at);
    x->start = ns_of(th->r, at);
    x->thread = th->thread;
}

static void hook_counter(void *ctx, uint32_t id, int64_t value, uint64_t t)
{
    ulma_replay_thread *th = ctx;
    if (!(th->r->what & ULMA_REPLAY_COUNTERS))
        return;
    ulma_transition *x = emit(th->r);
    if (!x) {
        th->failed = 1;
        return;
    }
    x->op = ULMA_TR_COUNTER;
    x->t = ns_of(th->r, t);
    x->start = value;
    x->fid = id;
    x->parent = -1;
    x->thread = th->thread;
}

/* An object made: counted on the stack on top (the tree's). */
static void hook_object(void *ctx, const ulma_event *e)
{
    ulma_replay_thread *th = ctx;
    if (e->kind != ULMA_OBJ_NEW || !(th->r->what & ULMA_REPLAY_TREE) || !th->depth)
        return;
    uint32_t node = th->stack[th->depth - 1].node;
    if (node != NONE && node < th->r->nnodes) {
        th->r->node_objects[node]++;
        th->r->node_bytes[node] += ulma_obj_class_bytes((e->flags & ULMA_OBJF_SIZE_MASK) >> ULMA_OBJF_SIZE_SHIFT);
    }
}

static const ulma_walk_hooks REPLAY_HOOKS = {
    .counter = hook_counter,
    .object = hook_object,
    .push = hook_push,
    .pop = hook_pop,
    .depth = hook_depth,
    .id_at = hook_id_at,
    .on_stack = hook_on_stack,
    .synced = hook_synced,
};

int ulma_replay_init(ulma_replay *r, uint32_t what, uint64_t start_ticks, uint64_t scale)
{
    memset(r, 0, sizeof *r);
    r->what = what;
    r->start_ticks = start_ticks;
    r->scale = scale;
    if ((what & ULMA_REPLAY_TREE) && node_new(r, -1, -1) == NONE)
        return -1;
    return 0;
}

void ulma_replay_free(ulma_replay *r)
{
    for (size_t i = 0; i < r->nthreads; i++) {
        ulma_replay_thread *th = r->threads[i];
        ulma_walk_free(&th->w);
        free(th->stack);
        ulma_map_free(&th->open);
        ulma_map_free(&th->edge_open);
        free(th);
    }
    free(r->threads);
    ulma_map_free(&r->thread_index);
    ulma_map_free(&r->hidden);
    free(r->out);
    free(r->node_parent);
    free(r->node_fid);
    free(r->node_self);
    free(r->node_calls);
    free(r->node_objects);
    free(r->node_bytes);
    ulma_map_free(&r->children);
    free(r->func_ids);
    free(r->funcs);
    ulma_map_free(&r->func_index);
    free(r->edge_keys);
    free(r->edges);
    ulma_map_free(&r->edge_index);
    memset(r, 0, sizeof *r);
}

int ulma_replay_hide(ulma_replay *r, uint32_t id)
{
    return ulma_map_get(&r->hidden, id, 1, NULL) ? 0 : -1;
}

static ulma_replay_thread *thread_of(ulma_replay *r, uint32_t thread)
{
    int made;
    uint32_t *v = ulma_map_get(&r->thread_index, thread, (uint32_t)r->nthreads, &made);
    if (!v)
        return NULL;
    if (!made)
        return r->threads[*v];
    ulma_replay_thread *th = calloc(1, sizeof *th);
    if (!th || ulma_grow((void **)&r->threads, &r->threads_cap, r->nthreads + 1, sizeof *r->threads, 0) < 0) {
        free(th);
        return NULL;
    }
    th->thread = thread;
    th->root = NONE;
    th->r = r;
    th->w.floor_tick = r->start_ticks;
    r->threads[r->nthreads++] = th;
    return th;
}

__attribute__((flatten)) int ulma_replay_feed(ulma_replay *r, uint32_t thread, const ulma_event *ev, size_t n)
{
    ulma_replay_thread *th = thread_of(r, thread);
    if (!th)
        return -1;
    if (th->failed || ulma_walk_feed(&th->w, &REPLAY_HOOKS, th, ev, n) < 0 || th->failed) {
        th->failed = 1;
        return -1;
    }
    if (th->depth == 0 && !th->w.sync_want) {
        /* idle or ended: nothing is open, so its stack and counts can go (a
         * trace of many short threads then costs little per thread) */
        free(th->stack);
        th->stack = NULL;
        th->cap = 0;
        ulma_map_free(&th->open);
        ulma_map_free(&th->edge_open);
        ulma_walk_free(&th->w);
    }
    return 0;
}

void ulma_replay_close(ulma_replay *r)
{
    for (size_t i = 0; i < r->nthreads; i++) {
        ulma_replay_thread *th = r->threads[i];
        while (th->depth)
            rpop(th, th->w.last_tick);
    }
}
