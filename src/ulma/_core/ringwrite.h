/*
 * ringwrite.h -- the writer's side of records.h that needs no Python: a ring
 * slot claimed from the session, a ring finished, a symbol appended.  The
 * agent (agent.c, symbols.c) and the standalone runtime of a program
 * without Python (include/ulma/ulma_runtime.c) both write sessions through
 * these, so the protocol is written once.
 */
#ifndef ULMA_RINGWRITE_H
#define ULMA_RINGWRITE_H

#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "records.h"

/* A ring slot: the oldest one the monitor gave back (a finished thread's,
 * zeroed), else the next never used; UINT32_MAX if none below `limit` is
 * left.  The free queue has one producer (the monitor) and consumers that
 * claim by compare-and-swap on its tail. */
static inline uint32_t ulma_ring_take_slot(ulma_session_header *h, uint64_t freeq_offset, uint32_t freeq_slots,
                                           uint32_t limit)
{
    _Atomic uint32_t *q = ulma_freeq(h, freeq_offset);
    uint64_t tail = atomic_load_explicit(&h->freeq_tail, memory_order_relaxed);
    for (;;) {
        uint64_t head = atomic_load_explicit(&h->freeq_head, memory_order_acquire);
        if (tail == head || head - tail > freeq_slots)
            break; /* empty (or nonsense) */
        uint32_t slot = atomic_load_explicit(&q[tail & (freeq_slots - 1)], memory_order_relaxed);
        if (atomic_compare_exchange_weak_explicit(&h->freeq_tail, &tail, tail + 1, memory_order_acq_rel,
                                                  memory_order_relaxed) &&
            slot < limit)
            return slot;
    }
    uint32_t slot = atomic_fetch_add_explicit(&h->rings_used, 1, memory_order_acq_rel);
    return slot < limit ? slot : UINT32_MAX;
}

/* Chunk k of the rings (chunk_slots rings, fewer in the last of `slots`),
 * mapped from the session's memfd; NULL if it cannot be. */
static inline char *ulma_ring_chunk_map(int fd, uint32_t k, uint32_t chunk_slots, uint32_t slots,
                                        uint64_t stride, uint64_t rings_offset)
{
    uint32_t first = k * chunk_slots;
    uint32_t n = slots - first < chunk_slots ? slots - first : chunk_slots;
    void *p = mmap(NULL, (size_t)n * stride, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                   (off_t)ulma_ring_file_offset(rings_offset, stride, first));
    return p == MAP_FAILED ? NULL : (char *)p;
}

/* A ring just claimed by the calling thread (os_tid, ident): empty (a reused
 * one was zeroed by the monitor; said anyway), its first record to restate
 * the thread's stack, ACTIVE last (release). */
static inline void ulma_ring_claim(ulma_ring_header *r, uint32_t os_tid, uint64_t ident)
{
    r->write_pos = 0;
    r->tail_cache = 0;
    r->sync_flags = 0;
    atomic_store_explicit(&r->published, 0, memory_order_relaxed);
    atomic_store_explicit(&r->dropped, 0, memory_order_relaxed);
    r->os_tid = os_tid;
    r->py_thread_ident = ident;
    r->need_sync = 1;
    atomic_store_explicit(&r->state, ULMA_RING_ACTIVE, memory_order_release);
}

/* One record at pos of a ring of mask + 1 records. */
static inline void ulma_record_put(ulma_event *events, uint64_t mask, uint64_t pos, uint64_t t, uint32_t id,
                                   uint8_t kind, uint8_t flags, uint16_t aux)
{
    ulma_event *e = &events[pos & mask];
    e->ticks = t;
    e->id = id;
    e->kind = kind;
    e->flags = flags;
    e->aux = aux;
}

/* A SYNC group at pos (records.h) stating a stack of plain ids (no flag
 * bits), outermost first: its BEGIN record (flags added to ULMA_SYNC_BEGIN),
 * then the n frames.  The position after it. */
static inline uint64_t ulma_ring_put_sync(ulma_event *events, uint64_t mask, uint64_t pos, uint64_t t,
                                          uint8_t flags, const uint32_t *ids, uint32_t n)
{
    ulma_record_put(events, mask, pos++, t, 0, ULMA_SYNC, ULMA_SYNC_BEGIN | flags, (uint16_t)n);
    for (uint32_t i = 0; i < n; i++)
        ulma_record_put(events, mask, pos++, t, ids[i], ULMA_SYNC, ULMA_SYNC_FRAME, 0);
    return pos;
}

/* Publishes what the ring's writer wrote and marks the ring finished. */
static inline void ulma_ring_finish(ulma_ring_header *r)
{
    atomic_store_explicit(&r->published, atomic_load_explicit(&r->write_pos, memory_order_relaxed),
                          memory_order_release);
    atomic_store_explicit(&r->state, ULMA_RING_FINISHED, memory_order_release);
}

/* Appends one definition to h's symbol table (or counts it as overflow);
 * `size` is stored last, with release.  Writers reserve by atomic add, so
 * any thread may append. */
static inline void ulma_symbol_write(ulma_session_header *h, uint32_t id, uint16_t kind, uint16_t flags,
                                     uint32_t line, const char *name, size_t nlen, const char *file,
                                     size_t flen)
{
    uint64_t size = (sizeof(ulma_symbol) + nlen + flen + 7) & ~(uint64_t)7;
    uint64_t off = atomic_fetch_add_explicit(&h->symtab_reserved, size, memory_order_relaxed);
    if (off + size > h->symtab_bytes) {
        atomic_fetch_add_explicit(&h->symtab_overflow, 1, memory_order_relaxed);
        return;
    }
    ulma_symbol *s = (ulma_symbol *)((char *)h + h->symtab_offset + off);
    s->id = id;
    s->kind = kind;
    s->flags = flags;
    s->line = line;
    s->name_len = (uint32_t)nlen;
    s->file_len = (uint32_t)flen;
    memcpy((char *)(s + 1), name, nlen);
    memcpy((char *)(s + 1) + nlen, file, flen);
    atomic_store_explicit(&s->size, (uint32_t)size, memory_order_release);
}

#endif
