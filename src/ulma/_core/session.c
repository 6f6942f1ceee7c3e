/* session.c -- see session.h. */
#define _GNU_SOURCE
#include "session.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "clock.h"

#define PAGE 4096u

/* ns per tick over a 2 ms spin: the monitor refines its calibration over the
 * whole run, but the replay must compare CPU nanoseconds with ticks from the
 * first reading on, and 2 ms already gives ~1e-5. */
static double quick_calibration(uint32_t source)
{
    if (source == ULMA_CLOCK_MONOTONIC)
        return 1.0;
    uint64_t n0 = ulma_mono_ns(), t0 = ulma_ticks(source), n1, t1;
    do {
        t1 = ulma_ticks(source);
        n1 = ulma_mono_ns();
    } while (n1 - n0 < 2000000u);
    return t1 > t0 ? (double)(n1 - n0) / (double)(t1 - t0) : 1.0;
}

static uint64_t round_up(uint64_t v, uint64_t to)
{
    return (v + to - 1) / to * to;
}

int ulma_monitor_create(ulma_monitor *m, int fd, uint64_t ring_bytes, uint32_t max_threads,
                        uint64_t symtab_bytes)
{
    memset(m, 0, sizeof *m);
    uint64_t events = 64;
    while (events * 2 * sizeof(ulma_event) <= ring_bytes)
        events *= 2;
    if (max_threads == 0)
        max_threads = 1;
    uint64_t stride = round_up(ULMA_RING_HEADER_BYTES + events * sizeof(ulma_event), PAGE);
    symtab_bytes = round_up(symtab_bytes < PAGE ? PAGE : symtab_bytes, PAGE);
    uint64_t rings_offset = ULMA_HEADER_BYTES + symtab_bytes;
    uint64_t total = rings_offset + stride * max_threads;
    if (ftruncate(fd, (off_t)total) < 0)
        return -errno;
    void *base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED)
        return -errno;
    m->aggs = calloc(max_threads, sizeof *m->aggs);
    m->closed = calloc(max_threads, 1);
    m->last_published = calloc(max_threads, sizeof *m->last_published);
    m->quiet_since = calloc(max_threads, sizeof *m->quiet_since);
    if (!m->aggs || !m->closed || !m->last_published || !m->quiet_since) {
        free(m->aggs);
        free(m->closed);
        free(m->last_published);
        free(m->quiet_since);
        munmap(base, total);
        return -ENOMEM;
    }
    ulma_session_header *h = base;
    h->version = ULMA_FORMAT_VERSION;
    h->header_bytes = ULMA_HEADER_BYTES;
    h->max_threads = max_threads;
    h->clock_source = ulma_clock_choose();
    h->ring_events = events;
    h->ring_stride = stride;
    h->symtab_offset = ULMA_HEADER_BYTES;
    h->symtab_bytes = symtab_bytes;
    h->rings_offset = rings_offset;
    h->total_bytes = total;
    h->start_real_ns = ulma_real_ns();
    h->start_mono_ns = ulma_mono_ns();
    h->start_ticks = ulma_ticks(h->clock_source);
    h->creator_pid = (uint32_t)getpid();
    h->creator_uid = (uint32_t)getuid();
    h->ns_per_tick_hint = quick_calibration(h->clock_source);
    atomic_store_explicit(&h->next_symbol_id, 1, memory_order_relaxed);
    /* the magic last: an agent never sees a half-written header */
    atomic_thread_fence(memory_order_release);
    h->magic = ULMA_SESSION_MAGIC;
    m->h = h;
    m->map_bytes = total;
    return 0;
}

void ulma_monitor_free(ulma_monitor *m)
{
    if (!m->h)
        return;
    for (uint32_t i = 0; i < m->h->max_threads; i++)
        ulma_agg_free(&m->aggs[i]);
    free(m->aggs);
    free(m->closed);
    free(m->last_published);
    free(m->quiet_since);
    munmap(m->h, m->map_bytes);
    memset(m, 0, sizeof *m);
}

uint32_t ulma_monitor_slots(const ulma_monitor *m)
{
    uint32_t used = atomic_load_explicit(&m->h->rings_used, memory_order_acquire);
    return used < m->h->max_threads ? used : m->h->max_threads;
}

/* A writer publishes every ULMA_PUBLISH_EVERY events, so a thread that
 * blocks right after a call would hide that call until it wakes.  Once its
 * `published` has not moved for QUIET_NS, the records below its private
 * write_pos were written that long ago: they are read too (the writer
 * release-stores write_pos after the records, this acquire-loads it; see
 * ulma_emit_ex). */
#define QUIET_NS 20000000u

static uint64_t head_of(ulma_monitor *m, uint32_t s, const ulma_ring_header *r, uint64_t tail,
                        uint64_t now)
{
    uint64_t pub = atomic_load_explicit(&((ulma_ring_header *)r)->published, memory_order_acquire);
    if (pub != m->last_published[s]) {
        m->last_published[s] = pub;
        m->quiet_since[s] = now;
    } else if (now - m->quiet_since[s] >= QUIET_NS) {
        uint64_t wp = atomic_load_explicit(&((ulma_ring_header *)r)->write_pos, memory_order_acquire);
        if ((int64_t)(wp - pub) > 0 && wp - tail <= m->h->ring_events)
            pub = wp;
    }
    /* after reading ahead of `published`, it may lag behind what we read */
    return (int64_t)(pub - tail) < 0 ? tail : pub;
}

int64_t ulma_monitor_drain(ulma_monitor *m, int postmortem, ulma_sink sink, void *ctx)
{
    ulma_session_header *h = m->h;
    uint32_t slots = ulma_monitor_slots(m);
    uint64_t cap = h->ring_events, mask = cap - 1;
    int64_t total = 0;
    uint64_t now = ulma_mono_ns();
    for (uint32_t s = 0; s < slots; s++) {
        ulma_ring_header *r = ulma_ring_at(h, s);
        uint32_t state = atomic_load_explicit(&r->state, memory_order_acquire);
        if (state == ULMA_RING_FREE || m->closed[s])
            continue;
        uint64_t tail = atomic_load_explicit(&r->read_pos, memory_order_relaxed);
        uint64_t head = postmortem ? atomic_load_explicit(&r->write_pos, memory_order_acquire)
                                   : head_of(m, s, r, tail, now);
        if (head - tail > cap) { /* cannot happen with a well-behaved writer */
            m->corrupt++;
            tail = head - cap;
        }
        const ulma_event *ev = ulma_ring_events(r);
        ulma_thread_agg *a = &m->aggs[s];
        if (a->ns_per_tick == 0)
            a->ns_per_tick = h->ns_per_tick_hint;
        while (tail != head) {
            uint64_t at = tail & mask;
            uint64_t n = head - tail;
            if (n > cap - at)
                n = cap - at; /* up to the end of the buffer, then wrap */
            if (ulma_agg_feed(a, ev + at, (size_t)n) < 0)
                return -1;
            if (sink && sink(ctx, s, ev + at, (size_t)n) < 0)
                return -1;
            tail += n;
            total += (int64_t)n;
        }
        atomic_store_explicit(&r->read_pos, tail, memory_order_release);
        if (state == ULMA_RING_FINISHED || postmortem) {
            /* finished: its last events were published before the state */
            uint64_t last = postmortem ? atomic_load_explicit(&r->write_pos, memory_order_acquire)
                                       : atomic_load_explicit(&r->published, memory_order_acquire);
            if (last == tail || (int64_t)(last - tail) < 0) {
                ulma_agg_close(a);
                m->closed[s] = 1;
            }
        }
    }
    return total;
}

const ulma_symbol *ulma_monitor_next_symbol(ulma_monitor *m)
{
    ulma_session_header *h = m->h;
    if (m->symtab_cursor + sizeof(ulma_symbol) > h->symtab_bytes)
        return NULL;
    const ulma_symbol *s = (const ulma_symbol *)((char *)h + h->symtab_offset + m->symtab_cursor);
    uint32_t size = atomic_load_explicit(&((ulma_symbol *)s)->size, memory_order_acquire);
    if (size == 0)
        return NULL;
    if (size < sizeof *s || m->symtab_cursor + size > h->symtab_bytes ||
        sizeof *s + (uint64_t)s->name_len + s->file_len > size) {
        m->corrupt++;
        m->symtab_cursor = h->symtab_bytes; /* stop reading a table that makes no sense */
        return NULL;
    }
    m->symtab_cursor += size;
    return s;
}
