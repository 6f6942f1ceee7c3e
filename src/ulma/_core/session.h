/*
 * session.h -- the monitor's side of a session: creating the shared memory,
 * draining every thread's ring into its aggregator, reading new symbols.
 * No Python API here; module.c wraps it.
 *
 * Threads and ring slots: a ring slot serves one thread after another (see
 * records.h), so the monitor numbers threads itself, in the order it first
 * sees them, and keeps each thread's totals and identity after its slot
 * went to another thread.  The aggregates of ended threads beyond the first
 * ULMA_KEEP_ENDED are folded into one (`ended`): function totals stay exact,
 * only a per-thread view of those threads is gone; memory then follows the
 * threads alive, not all the threads a program ever ran.
 */
#ifndef ULMA_SESSION_H
#define ULMA_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include "records.h"
#include "aggregate.h"
#include "clock.h"

#define ULMA_KEEP_ENDED 256u
#define ULMA_NO_THREAD UINT32_MAX

/* closed[] of a thread */
#define ULMA_THREAD_OPEN 0
#define ULMA_THREAD_CLOSED 1
#define ULMA_THREAD_FOLDED 2 /* closed, its totals moved into `ended` */

/* What the monitor keeps of a thread beyond its aggregate. */
typedef struct {
    uint32_t slot;     /* the ring it was traced in */
    uint32_t os_tid;
    uint64_t ident;    /* threading.get_ident() */
    uint64_t dropped;  /* its ring's drops (final once the thread ended) */
} ulma_thread_info;

/* The monitor's state of one ring slot. */
typedef struct {
    uint32_t thread;   /* the thread it serves, or ULMA_NO_THREAD */
    uint32_t pad;
    uint64_t tail;     /* our read position in it */
    uint64_t last_published; /* `published` at the last drain ... */
    uint64_t quiet_since;    /* ... and since when (monotonic ns) it has not moved */
} ulma_slot_state;

typedef struct {
    ulma_session_header *h; /* the header, free queue and symbol table */
    size_t head_bytes;
    int fd;                 /* our own descriptor of the memfd (chunks are mapped late) */
    /* layout, our own copies: the program can write the header */
    uint32_t max_threads, chunk_slots, freeq_slots, clock_source;
    uint64_t ring_events, ring_stride, rings_offset, symtab_offset, symtab_bytes, freeq_offset;
    uint64_t start_ticks, start_mono_ns, start_real_ns;
    double ns_per_tick_hint;
    uint64_t freeq_head;    /* our copy of the queue's head */
    char **chunks;          /* chunk k: slots [k * chunk_slots, (k + 1) * chunk_slots) */
    ulma_slot_state *slots; /* max_threads of them */
    /* threads, in the order first seen */
    ulma_thread_agg *aggs;
    uint8_t *closed;        /* ULMA_THREAD_* */
    ulma_thread_info *info;
    uint32_t nthreads, threads_cap;
    uint32_t kept_ended;    /* ended threads that kept their own aggregate */
    ulma_thread_agg ended;  /* the totals of the other ended threads */
    uint64_t symtab_cursor; /* bytes of the symbol table already read */
    uint64_t corrupt;       /* ring positions that made no sense */
    uint64_t chunk_failures; /* chunks we could not map: their threads are not read */
    uint64_t ctl_posted;    /* control commands written (our own count) */
    ulma_watch watch;       /* long frames every thread's aggregator keeps */
    ulma_tasks tasks;       /* the program's asyncio tasks (tasktable.h) */
} ulma_monitor;

/* Sizes the memfd, maps it and writes the header.  `clock_start`, if not
 * NULL, is a pair read earlier (ulma_clock_pair_read of
 * ulma_clock_choose()'s source): the session starts from it, and its quick
 * calibration runs from it (see session.c).  0 or -errno. */
int ulma_monitor_create(ulma_monitor *m, int fd, uint64_t ring_bytes, uint32_t max_threads,
                        uint64_t symtab_bytes, const ulma_clock_pair *clock_start);
void ulma_monitor_free(ulma_monitor *m);
/* Sees each run of records as it is replayed (a trace file writer), by the
 * monitor's thread number; returns 0, or -1 to stop (out of memory). */
typedef int (*ulma_sink)(void *ctx, uint32_t thread, const ulma_event *ev, size_t n);

/* Replays what every ring published (or, post-mortem, everything the dead
 * writer wrote), passing the records to `sink` too when it is not NULL;
 * returns the number of events, or -1 if memory ran out.  A ring whose
 * thread ended and was replayed to its end is zeroed and offered for reuse
 * (not post-mortem: nobody will claim it). */
int64_t ulma_monitor_drain(ulma_monitor *m, int postmortem, ulma_sink sink, void *ctx);
/* Next complete symbol-table entry, or NULL. */
const ulma_symbol *ulma_monitor_next_symbol(ulma_monitor *m);
/* Threads seen so far (the length of aggs, closed, info). */
uint32_t ulma_monitor_threads(const ulma_monitor *m);
/* Ring slots handed out so far (bounded by max_threads). */
uint32_t ulma_monitor_slots_used(const ulma_monitor *m);
/* The ring of `slot`, its chunk mapped if need be; NULL if it cannot be. */
ulma_ring_header *ulma_monitor_ring(ulma_monitor *m, uint32_t slot);

#endif
