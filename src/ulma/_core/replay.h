/*
 * replay.h -- the exporters' replay of a trace's event stream: the stack
 * rules of walk.h (the aggregator's own), turned into what exporters write:
 *   - frames: every frame that starts or ends, and every gap left by
 *     dropped events, as packed transitions the caller takes in batches
 *     (and, if asked, every value a native counter was set to);
 *   - a tree of distinct stacks with self time, entries and objects made
 *     (--objects) per stack (shared by all threads, or one root per thread),
 *     for collapsed stacks and pprof;
 *   - cProfile's figures per function and per caller->callee pair (entries,
 *     recursive entries, self, cumulative), for pstats.
 * Times are ns since `start_ticks` (ticks * scale >> 48; ticks before the
 * start are taken as the start).  Frames of hidden functions (ulma's own
 * code) are walked but not reported: their callees hang below the frame
 * under them, and their time is in no one's self time.
 *
 * Memory: per thread, its stack and a count of open frames per function it
 * ran; overall, the distinct stacks or functions and pairs; the transitions
 * of one feed.  Never by the length of the stream or the size of an id.
 */
#ifndef ULMA_REPLAY_H
#define ULMA_REPLAY_H

#include <stddef.h>
#include <stdint.h>
#include "records.h"
#include "walk.h"
#include "map.h"

enum { ULMA_TR_ENTER = 1, ULMA_TR_LEAVE = 2, ULMA_TR_GAP = 3, ULMA_TR_COUNTER = 4 };

/* One transition, 40 bytes little-endian (Python reads them with struct
 * "<qqqIiIBBH"): enter (t, fid, parent, kind), leave (t, start, self_ns,
 * fid, parent), gap (t = start, `start` = end) and, with
 * ULMA_REPLAY_COUNTERS, a counter's value (t, fid = its site, `start` = the
 * value). */
typedef struct {
    int64_t t;
    int64_t start;
    int64_t self_ns;
    uint32_t fid;
    int32_t parent; /* id of the frame below (may be hidden), -1 at the bottom */
    uint32_t thread;
    uint8_t op;
    uint8_t kind;   /* CALL, RESUME, THROW, C_CALL, or 0: restated by SYNC */
    uint16_t pad;
} ulma_transition;
_Static_assert(sizeof(ulma_transition) == 40, "transitions are 40 bytes");

typedef struct {
    uint32_t id;
    uint32_t node;   /* its stack in the tree (the node below it when hidden or cut) */
    int64_t start;   /* ns */
    int64_t child;   /* ns spent in callees */
    uint8_t hidden;
    ulma_map_ref open;      /* its count in the thread's `open` */
    /* pstats: its function's and its edge's figures (edge UINT32_MAX: none,
     * at the bottom or over a hidden frame), and its edge's open count */
    uint32_t func, edge;
    ulma_map_ref edge_open;
} ulma_rframe;

typedef struct {
    ulma_walk w;
    uint32_t thread;
    uint32_t root;     /* its root in the tree, UINT32_MAX before its first frame */
    ulma_rframe *stack;
    size_t depth, cap;
    ulma_map open;     /* id -> open frames */
    ulma_map edge_open;/* caller << 32 | callee -> open frames (pstats) */
    struct ulma_replay *r;
    int failed;
} ulma_replay_thread;

/* Stacks deeper than this are cut in the tree: deeper frames count as part
 * of the frame at this depth (a collapsed line or a pprof sample holds every
 * frame of its stack, so a crafted stack 300 000 deep would make an output
 * quadratic in the depth).  The agent restates at most as many frames. */
#define ULMA_TREE_MAX_DEPTH ULMA_MAX_SYNC_FRAMES

/* what a replay makes */
#define ULMA_REPLAY_FRAMES 0x1u
#define ULMA_REPLAY_TREE 0x2u
#define ULMA_REPLAY_TREE_PER_THREAD 0x4u
#define ULMA_REPLAY_PSTATS 0x8u
/* with FRAMES: no enter transitions, only leaves and gaps (for writers that
 * write a frame once, when it ends) */
#define ULMA_REPLAY_ENDS_ONLY 0x10u
/* with FRAMES: native counters' values as ULMA_TR_COUNTER transitions */
#define ULMA_REPLAY_COUNTERS 0x20u

typedef struct {
    uint64_t entries, recursive, self, cum;
} ulma_pstat;

typedef struct ulma_replay {
    uint32_t what;
    uint64_t start_ticks;
    uint64_t scale;          /* ns per tick << 48 */
    ulma_map hidden;         /* ids of hidden functions */
    ulma_replay_thread **threads; /* in order of first feed */
    size_t nthreads, threads_cap;
    ulma_map thread_index;   /* thread -> index + 1 */
    /* frames: the transitions not yet taken */
    ulma_transition *out;
    size_t nout, out_cap;
    /* tree: node 0 is the shared root; fid -1 - thread for a thread's root */
    int32_t *node_parent;
    int64_t *node_fid;
    uint64_t *node_self, *node_calls;
    uint64_t *node_objects;  /* objects made with the stack on top (--objects) */
    uint64_t *node_bytes;    /* their bytes, where the records tell sizes */
    size_t nnodes, nodes_cap;
    ulma_map children;       /* node << 32 | fid -> node */
    uint64_t cut_frames;     /* frames past ULMA_TREE_MAX_DEPTH */
    /* pstats, in order of first entry */
    uint32_t *func_ids;
    ulma_pstat *funcs;
    size_t nfuncs, funcs_cap;
    ulma_map func_index;
    uint64_t *edge_keys;     /* caller << 32 | callee */
    ulma_pstat *edges;
    size_t nedges, edges_cap;
    ulma_map edge_index;
} ulma_replay;

/* scale: ns per tick as a fixed-point number with 48 fraction bits */
int ulma_replay_init(ulma_replay *r, uint32_t what, uint64_t start_ticks, uint64_t scale);
void ulma_replay_free(ulma_replay *r);
int ulma_replay_hide(ulma_replay *r, uint32_t id);
/* Replays n records of `thread`; 0, or -1 if memory ran out. */
int ulma_replay_feed(ulma_replay *r, uint32_t thread, const ulma_event *ev, size_t n);
/* The end of the stream: every open frame ends at its thread's last tick. */
void ulma_replay_close(ulma_replay *r);

#endif
