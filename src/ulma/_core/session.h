/*
 * session.h -- the monitor's side of a session: creating the shared memory,
 * draining every thread's ring into its aggregator, reading new symbols.
 * No Python API here; module.c wraps it.
 */
#ifndef ULMA_SESSION_H
#define ULMA_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include "records.h"
#include "aggregate.h"

typedef struct {
    ulma_session_header *h;
    size_t map_bytes;
    ulma_thread_agg *aggs;  /* one per ring slot */
    uint8_t *closed;        /* slot's thread ended and its stack was closed */
    uint64_t *last_published; /* per slot: `published` at the last drain ... */
    uint64_t *quiet_since;    /* ... and since when (monotonic ns) it has not moved */
    uint64_t symtab_cursor; /* bytes of the symbol table already read */
    uint64_t corrupt;       /* ring positions that made no sense */
} ulma_monitor;

/* Sizes the memfd, maps it and writes the header.  0 or -errno. */
int ulma_monitor_create(ulma_monitor *m, int fd, uint64_t ring_bytes, uint32_t max_threads,
                        uint64_t symtab_bytes);
void ulma_monitor_free(ulma_monitor *m);
/* Sees each run of records as it is replayed (a trace file writer); returns
 * 0, or -1 to stop (out of memory). */
typedef int (*ulma_sink)(void *ctx, uint32_t slot, const ulma_event *ev, size_t n);

/* Replays what every ring published (or, post-mortem, everything the dead
 * writer wrote), passing the records to `sink` too when it is not NULL;
 * returns the number of events, or -1 if memory ran out. */
int64_t ulma_monitor_drain(ulma_monitor *m, int postmortem, ulma_sink sink, void *ctx);
/* Next complete symbol-table entry, or NULL. */
const ulma_symbol *ulma_monitor_next_symbol(ulma_monitor *m);
uint32_t ulma_monitor_slots(const ulma_monitor *m);

#endif
