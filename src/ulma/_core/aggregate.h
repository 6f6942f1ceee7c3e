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
 *
 * The four-way split ("Time, split four ways" in DESIGN.md).  Each function's
 * self time is CPU + waiting + overhead; its total time adds the unmeasured
 * time of excluded callees.  What the replay keeps, per function, self and
 * inclusive (outermost frame only, like total):
 *   - wait: at each CPU reading, the interval since the previous reading
 *     has wall W and CPU C; W - C was spent off CPU.  The agent reads only
 *     when an event comes more than an interval after the last reading, so
 *     a long block always ends an interval and is its last segment: the
 *     off-CPU time goes to the function on top at the reading.  (Off-CPU
 *     time earlier in the interval, at most one interval long, goes there
 *     too: the bound on the error.)  `runnable` is the part of it the kernel
 *     says the thread spent runnable but not scheduled (run delay).
 *     W is in ticks and C in ns, so waiting is kept as its two parts, W
 *     (`wait`, ticks) and C (`wait_cpu`, ns), and W - C is formed only when
 *     a snapshot is taken, with the rate known then (ulma_agg_wait): the
 *     sums are linear in the rate, so a calibration refined over the run
 *     applies to everything replayed before it.  Runnable likewise:
 *     `runnable` ticks - `runnable_cpu` ns (whole intervals) + `runnable_ns`
 *     (run delays smaller than the interval's wait).
 *   - segs: the gaps between records each hold one probe's cost (the tail
 *     of one callback and the head of the next); the monitor multiplies by
 *     the calibrated probe cost.  bsegs, esegs: those closed by a native
 *     scope's begin (or a mark's, a counter's) and end record, which cost
 *     what the scope probe's calibration says (scopes.c: the tail of one
 *     record and the head of the next, each way).  probe: the measured cost of CPU readings.
 *   - dispatch: with native calls, the ticks from a caller's CALL to the
 *     callee's first instruction (the caller pays; the callee's dispatch_in
 *     says what getting into it cost).
 *   - unmeasured: the self time of excluded frames under this one.
 * CPU is what remains of self once waiting and overhead are taken out.
 *
 * Coroutines (records flagged ULMA_EVF_AWAIT).  A coroutine that YIELDs is
 * suspended in `await` until its next RESUME or THROW: that time is its
 * waiting, in its total and (unless it was awaiting another coroutine, whose
 * waiting it then is) its self time.  Instances are not told apart, and need
 * not be: per function, the time suspended is the sum of its resumption ticks
 * less the sum of its suspension ticks, plus, at `now`, now times the number
 * still suspended (ulma_agg_await) -- sums linear in the ticks (mod 2^64),
 * which add across threads and snapshots like the others.  A resumption is
 * counted only against a suspension this thread saw (a coroutine resumed in
 * another thread, or after its YIELD was dropped, adds nothing); one still
 * suspended when its thread ends counts until then.  Which suspensions were
 * awaiting another coroutine: the YIELD right after a coroutine's YIELD is
 * its awaiter's (the await chain unwinds innermost first), and the record
 * right after a resumption says how it was suspended (a coroutine resumed on
 * top of it: it was awaiting that one).  The awaiter -> awaited edge gets the
 * awaiter's suspended time in its total.
 *
 * Tasks (asyncio's; records.h "TASK records").  A TASK record says that the
 * record right after it, a coroutine's event (ULMA_EVF_AWAIT) of the
 * direction its flags say, starts or ends a step of task `id` (any other
 * record after it means a damaged stream: the TASK record is ignored):
 * a CALL, RESUME or THROW starts one (the time since its last step ended is
 * its waiting), a YIELD, RETURN or UNWIND ends it (the step's time is its
 * running; after a YIELD it is suspended, in the coroutines that yielded
 * just before it, innermost first; after a RETURN or UNWIND it is done).
 * The tasks live in the owner's table (tasktable.h): a task may run its
 * steps on any thread of the process.
 */
#ifndef ULMA_AGGREGATE_H
#define ULMA_AGGREGATE_H

#include <stddef.h>
#include <stdint.h>
#include "records.h"
#include "walk.h"
#include "tasktable.h"
#include "counters.h"
#include "objstats.h"

/* Running per-thread sums; a frame keeps their values at its entry, and its
 * inclusive share is the difference at its exit. */
typedef struct {
    uint64_t wait, runnable, probe, dispatch, unmeasured, segs;
    uint64_t bsegs, esegs; /* the gaps closed by a native scope's begin (mark, counter) or end */
    uint64_t wait_cpu, runnable_cpu, runnable_ns; /* ns: see wait above */
} ulma_split;

/* A time suspended, kept as sum + n * now (see Coroutines above). */
typedef struct {
    uint64_t sum, n;
} ulma_await;

typedef struct {
    uint64_t calls, resumes, self, total;
    ulma_split self_split; /* unmeasured stays 0: excluded time is a callee's */
    ulma_split total_split;
    uint64_t dispatch_in;  /* ticks callers spent calling into it */
    ulma_await await_all;  /* a coroutine's time suspended in await */
    ulma_await await_self; /* the part of it not awaiting another coroutine */
    uint64_t coro_calls;   /* its calls flagged ULMA_EVF_AWAIT: it is a coroutine */
} ulma_func_stats;

typedef struct {
    uint32_t caller, callee;
    uint64_t calls, resumes, total;
    uint32_t active; /* frames of this pair open on the stack */
    uint32_t pad;
    ulma_await await_all; /* the caller's time suspended awaiting the callee */
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
    uint32_t unmeasured; /* an excluded function's frame */
    uint32_t slot;   /* the function's slot in funcs */
    ulma_split at;   /* the thread's sums when it entered */
} ulma_frame;

/* Long frames of one watched function (asyncio's Handle._run: a callback or
 * a task's step holding the event loop): set by the owner, shared by its
 * threads' aggregators; id 0 watches nothing.  With `steps`, a task's step
 * (the frame its TASK record starts) is watched too where no watched frame
 * is open under it: an event loop whose Handle._run is not Python (uvloop)
 * is seen blocked by its tasks' steps.  A thread pays for it from its first
 * TASK record only. */
typedef struct {
    uint32_t id;
    uint32_t steps;
    uint64_t ticks; /* longer than this is kept */
} ulma_watch;

/* One such frame: when it started, how long it lasted, and the stack from
 * it up (outermost first, at most ULMA_BLOCK_FRAMES, innermost kept) at the
 * first record past the limit, or at its end if none came before. */
#define ULMA_BLOCK_FRAMES 32u
#define ULMA_MAX_BLOCKS 256u /* kept per thread until the owner takes them */
typedef struct {
    uint64_t start, ticks;
    uint32_t depth, pad;
    uint32_t ids[ULMA_BLOCK_FRAMES];
} ulma_block;

#define ULMA_RARE_WATCH 0x1u /* a function is watched (ulma_agg_set_watch) */
#define ULMA_RARE_RESUMED 0x2u
#define ULMA_RARE_AFTER_YIELD 0x4u
#define ULMA_RARE_TASK 0x8u /* a TASK record came: the next event is a task's */

/* Function ids index a two-level table of pages of this many slots. */
#define ULMA_FUNC_PAGE_BITS 8u

typedef struct {
    /* per function, sparse: only the functions this thread ran have a slot,
     * numbered in the order first seen; memory follows what the thread ran,
     * not how many functions the program made */
    ulma_func_stats *funcs;  /* by slot */
    uint32_t *active;        /* by slot: open frames, for counting recursion once */
    uint32_t *func_ids;      /* by slot: the function's id */
    size_t nfuncs, funcs_cap;
    uint32_t **pages;        /* id >> ULMA_FUNC_PAGE_BITS -> page of slot + 1 (0: none) */
    size_t npages;
    ulma_edge_cache_entry *edge_cache; /* ULMA_EDGE_CACHE recent edges */
    /* per caller->callee pair: dense array plus an open-addressing index */
    ulma_edge_stats *edges;
    size_t nedges, edges_cap;
    uint32_t *index; /* edge number + 1, 0 = empty */
    size_t index_cap;
    /* the thread's shadow stack */
    ulma_frame *stack;
    size_t depth, stack_cap;
    /* the stack rules' own state (walk.h): ticks, counts, a SYNC group */
    ulma_walk w;
    /* CPU readings */
    double ns_per_tick;        /* set by the owner before feeding; 0 = no split */
    ulma_split sums;           /* running sums, see ulma_split */
    uint64_t cpu_tick, cpu_ns; /* the last CPU reading */
    uint64_t run_delay_ns;     /* the last run-delay reading */
    uint64_t last_wall, last_cpu; /* the interval just read: wall ticks, CPU ns */
    uint32_t last_target;      /* the slot that got them, or UINT32_MAX */
    uint8_t have_cpu, have_run_delay, after_reading, pad8;
    /* what the next record must look at, besides its own kind (ULMA_RARE_*):
     * one test per record while none of it is going on */
    uint8_t rare;
    /* coroutines: the previous record was a coroutine's YIELD, of id
     * await_child (ULMA_RARE_AFTER_YIELD); a coroutine just resumed (slot +
     * 1, 0: none) whose kind of suspension the next record tells, resumed at
     * resumed_tick (ULMA_RARE_RESUMED) */
    uint32_t await_child, resumed;
    uint64_t resumed_tick;
    /* long frames of the watched function (ulma_agg_set_watch; NULL: none
     * watched; watch_id is its id, copied: 0 none) */
    const ulma_watch *watch;
    uint32_t watch_id;
    size_t watch_depth;       /* its open frame's depth + 1, 0: none */
    uint32_t watch_frame;     /* that frame's function */
    uint64_t watch_start;
    ulma_block pending;       /* its stack, taken once past the limit */
    uint8_t watch_snapped;
    ulma_block *blocks;       /* kept, ULMA_MAX_BLOCKS at most ... */
    uint32_t nblocks;
    uint64_t blocks_over;     /* ... and those past it, counted */
    uint64_t cpu_readings;
    /* asyncio tasks (records.h "TASK records"): the owner's table (NULL:
     * none kept), this thread's number there, the task of the next event
     * (ULMA_RARE_TASK), and the coroutines that yielded in a row just now,
     * innermost first (where a task is suspended) */
    ulma_tasks *tasks;
    uint32_t task_thread, task_pending, task_pending_flags;
    uint32_t task_seen;        /* a TASK record came (its close looks at the tasks) */
    uint32_t chain_n;
    uint32_t chain[ULMA_TASK_AWAIT_FRAMES];
    ulma_counters counters;    /* native counters' values, per site */
    ulma_objstats objects;     /* objects made and destroyed, per (function, type) */
    int failed;                /* out of memory: stats stop growing */
} ulma_thread_agg;

void ulma_agg_init(ulma_thread_agg *a);
void ulma_agg_free(ulma_thread_agg *a);
/* Replays n events; returns 0, or -1 if memory ran out. */
int ulma_agg_feed(ulma_thread_agg *a, const ulma_event *ev, size_t n);
/* Closes every open frame at the last tick seen (end of a thread). */
void ulma_agg_close(ulma_thread_agg *a);
/* Adds src's totals (and, if now != 0, its open frames up to now) to dst.
 * now_cpu_ns, if not 0, is the thread's CPU time at `now`: the interval
 * still open is then split too (a function blocked right now shows as
 * waiting, not as CPU, in a live view). */
int ulma_agg_merge(ulma_thread_agg *dst, const ulma_thread_agg *src, uint64_t now, uint64_t now_cpu_ns);
/* A split's waiting and runnable in ticks, at `ns_per_tick`: W - C and the
 * run delays, never below 0 (noise can make C exceed W at one rate). */
void ulma_agg_wait(const ulma_split *s, double ns_per_tick, uint64_t *wait, uint64_t *runnable);
/* Watches `w` (kept by the caller; its id 0: nothing), from the next record. */
void ulma_agg_set_watch(ulma_thread_agg *a, const ulma_watch *w);
/* Keeps the tasks this thread runs in `k` (the caller's; NULL: none), as
 * thread number `thread`. */
void ulma_agg_set_tasks(ulma_thread_agg *a, ulma_tasks *k, uint32_t thread);
/* Hands the long frames kept over (the caller frees *out); their number. */
uint32_t ulma_agg_take_blocks(ulma_thread_agg *a, ulma_block **out);
/* A time suspended at `now` (ticks; `now` 0: all ended). */
uint64_t ulma_agg_await(const ulma_await *w, uint64_t now);
/* The slot of function `id` in a->funcs, or UINT32_MAX if it has none. */
uint32_t ulma_agg_find(const ulma_thread_agg *a, uint32_t id);
/* Frees the per-function and per-edge totals (and the empty stack) of a
 * thread whose stack is closed (after the last snapshot, or folded); its
 * counters stay. */
void ulma_agg_release(ulma_thread_agg *a);
/* The same for the per-function totals only. */
void ulma_agg_release_funcs(ulma_thread_agg *a);
/* The last snapshot: src's totals go to dst and src keeps none; moved
 * without a copy when dst has none yet.  0, or -1 if memory ran out. */
int ulma_agg_hand_over(ulma_thread_agg *dst, ulma_thread_agg *src);
/* Forgets all totals; keeps the stack, restarting its frames at `now`. */
void ulma_agg_clear(ulma_thread_agg *a, uint64_t now);

#endif
