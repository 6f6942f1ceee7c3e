/* session.c -- see session.h. */
#define _GNU_SOURCE
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "clock.h"

#define PAGE 4096u

/* The replay compares CPU nanoseconds with ticks from the first reading on,
 * and the agent spaces its readings in ticks: both need a rate at once.  A
 * 2 ms calibration between two tight clock pairs (clock.c) gives ~1e-4 even
 * on a busy machine; the monitor refines it over the whole run from the same
 * start pair, and converts the replay's sums with the refined rate.  `ulma
 * run` reads the start pair when it starts the program's interpreter
 * (ulma.monitor.prestart), so by the time the session is made the 2 ms are
 * over and nothing waits for them. */
#define QUICK_CALIBRATION_NS 2000000u

static uint64_t round_up(uint64_t v, uint64_t to)
{
    return (v + to - 1) / to * to;
}

/* Rings per chunk: a chunk is mapped whole, so a program with one thread
 * maps CHUNK_SLOTS rings of address space (touching only what it writes). */
#define CHUNK_SLOTS 32u

int ulma_monitor_create(ulma_monitor *m, int fd, uint64_t ring_bytes, uint32_t max_threads,
                        uint64_t symtab_bytes, const ulma_clock_pair *clock_start)
{
    memset(m, 0, sizeof *m);
    m->fd = -1;
    uint64_t events = 64;
    while (events < ULMA_MAX_RING_EVENTS && events * 2 * sizeof(ulma_event) <= ring_bytes)
        events *= 2;
    if (max_threads == 0)
        max_threads = 1;
    if (max_threads > ULMA_MAX_THREADS)
        max_threads = ULMA_MAX_THREADS;
    uint32_t freeq_slots = 1;
    while (freeq_slots < max_threads)
        freeq_slots *= 2;
    uint64_t stride = round_up(ULMA_RING_HEADER_BYTES + events * sizeof(ulma_event), PAGE);
    symtab_bytes = round_up(symtab_bytes < PAGE ? PAGE : symtab_bytes, PAGE);
    uint64_t freeq_offset = ULMA_HEADER_BYTES;
    uint64_t symtab_offset = freeq_offset + round_up((uint64_t)freeq_slots * sizeof(uint32_t), PAGE);
    uint64_t rings_offset = symtab_offset + symtab_bytes;
    /* Sized for every ring at once, but sparse: pages cost memory when touched. */
    uint64_t total = rings_offset + stride * max_threads;
    uint32_t chunk_slots = max_threads < CHUNK_SLOTS ? max_threads : CHUNK_SLOTS;
    uint32_t nchunks = (max_threads + chunk_slots - 1) / chunk_slots;
    if (ftruncate(fd, (off_t)total) < 0)
        return -errno;
    /* Its size is fixed from now on: a program that truncated it would make
     * every reader of the rings die of SIGBUS.  (A memfd made without
     * MFD_ALLOW_SEALING refuses the seals: then it is only not sealed.) */
    (void)fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    /* Our own descriptor: chunks are mapped as threads need them, and the
     * caller may close its own once the program has one. */
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (own < 0)
        return -errno;
    void *base = mmap(NULL, rings_offset, PROT_READ | PROT_WRITE, MAP_SHARED, own, 0);
    if (base == MAP_FAILED) {
        int e = errno;
        close(own);
        return -e;
    }
    m->fd = own;
    m->head_bytes = rings_offset;
    m->chunks = calloc(nchunks, sizeof *m->chunks);
    m->slots = calloc(max_threads, sizeof *m->slots);
    if (!m->chunks || !m->slots) {
        free(m->chunks);
        free(m->slots);
        munmap(base, rings_offset);
        close(own);
        m->fd = -1;
        return -ENOMEM;
    }
    for (uint32_t s = 0; s < max_threads; s++)
        m->slots[s].thread = ULMA_NO_THREAD;
    ulma_agg_init(&m->ended);
    ulma_tasks_init(&m->tasks);
    ulma_session_header *h = base;
    h->version = ULMA_FORMAT_VERSION;
    h->header_bytes = ULMA_HEADER_BYTES;
    h->max_threads = max_threads;
    h->clock_source = ulma_clock_choose();
    h->ring_events = events;
    h->ring_stride = stride;
    h->symtab_offset = symtab_offset;
    h->symtab_bytes = symtab_bytes;
    h->rings_offset = rings_offset;
    h->total_bytes = total;
    h->chunk_slots = chunk_slots;
    h->freeq_slots = freeq_slots;
    h->freeq_offset = freeq_offset;
    h->creator_pid = (uint32_t)getpid();
    h->creator_uid = (uint32_t)getuid();
    ulma_clock_pair start;
    /* real time at the start pair: read now, less the monotonic time since */
    uint64_t real_now = ulma_real_ns(), mono_now = ulma_mono_ns();
    h->ns_per_tick_hint = ulma_clock_calibrate(h->clock_source, QUICK_CALIBRATION_NS, &start, clock_start);
    h->start_real_ns = real_now - (mono_now > start.mono_ns ? mono_now - start.mono_ns : 0);
    h->start_ticks = start.ticks;
    h->start_mono_ns = start.mono_ns;
    atomic_store_explicit(&h->next_symbol_id, 1, memory_order_relaxed);
    ulma_control *ctl = ulma_session_control(h);
    ctl->version = ULMA_CONTROL_VERSION;
    ctl->slots = ULMA_CONTROL_SLOTS;
    /* our copies: what the program writes into the header later never
     * changes how we read the session */
    m->max_threads = max_threads;
    m->chunk_slots = chunk_slots;
    m->freeq_slots = freeq_slots;
    m->clock_source = h->clock_source;
    m->ring_events = events;
    m->ring_stride = stride;
    m->rings_offset = rings_offset;
    m->symtab_offset = symtab_offset;
    m->symtab_bytes = symtab_bytes;
    m->freeq_offset = freeq_offset;
    m->start_ticks = h->start_ticks;
    m->start_mono_ns = h->start_mono_ns;
    m->start_real_ns = h->start_real_ns;
    m->ns_per_tick_hint = h->ns_per_tick_hint;
    /* the magic last: an agent never sees a half-written header */
    atomic_thread_fence(memory_order_release);
    h->magic = ULMA_SESSION_MAGIC;
    m->h = h;
    return 0;
}

static size_t chunk_bytes(const ulma_monitor *m, uint32_t k)
{
    uint32_t first = k * m->chunk_slots;
    uint32_t n = m->max_threads - first < m->chunk_slots ? m->max_threads - first : m->chunk_slots;
    return (size_t)n * m->ring_stride;
}

void ulma_monitor_free(ulma_monitor *m)
{
    if (!m->h)
        return;
    for (uint32_t i = 0; i < m->nthreads; i++)
        ulma_agg_free(&m->aggs[i]);
    ulma_agg_free(&m->ended);
    ulma_tasks_free(&m->tasks);
    free(m->aggs);
    free(m->closed);
    free(m->info);
    uint32_t nchunks = (m->max_threads + m->chunk_slots - 1) / m->chunk_slots;
    for (uint32_t k = 0; k < nchunks; k++)
        if (m->chunks[k])
            munmap(m->chunks[k], chunk_bytes(m, k));
    free(m->chunks);
    free(m->slots);
    munmap(m->h, m->head_bytes);
    if (m->fd >= 0)
        close(m->fd);
    memset(m, 0, sizeof *m);
    m->fd = -1;
}

uint32_t ulma_monitor_threads(const ulma_monitor *m)
{
    return m->nthreads;
}

uint32_t ulma_monitor_slots_used(const ulma_monitor *m)
{
    uint32_t used = atomic_load_explicit(&m->h->rings_used, memory_order_acquire);
    return used < m->max_threads ? used : m->max_threads;
}

ulma_ring_header *ulma_monitor_ring(ulma_monitor *m, uint32_t slot)
{
    if (slot >= m->max_threads)
        return NULL;
    uint32_t k = slot / m->chunk_slots;
    if (!m->chunks[k]) {
        uint64_t off = ulma_ring_file_offset(m->rings_offset, m->ring_stride, k * m->chunk_slots);
        void *p = mmap(NULL, chunk_bytes(m, k), PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, (off_t)off);
        if (p == MAP_FAILED) {
            m->chunk_failures++;
            return NULL;
        }
        m->chunks[k] = p;
    }
    return (ulma_ring_header *)(m->chunks[k] + (uint64_t)(slot % m->chunk_slots) * m->ring_stride);
}

/* A thread seen for the first time in `slot`. */
static int new_thread(ulma_monitor *m, uint32_t slot, const ulma_ring_header *r)
{
    if (m->nthreads == m->threads_cap) {
        uint32_t cap = m->threads_cap ? m->threads_cap * 2 : 64;
        ulma_thread_agg *aggs = realloc(m->aggs, cap * sizeof *aggs);
        if (!aggs)
            return -1;
        m->aggs = aggs;
        uint8_t *closed = realloc(m->closed, cap);
        if (!closed)
            return -1;
        m->closed = closed;
        ulma_thread_info *info = realloc(m->info, cap * sizeof *info);
        if (!info)
            return -1;
        m->info = info;
        m->threads_cap = cap;
    }
    uint32_t t = m->nthreads++;
    ulma_agg_init(&m->aggs[t]);
    m->aggs[t].ns_per_tick = m->ns_per_tick_hint;
    ulma_agg_set_watch(&m->aggs[t], &m->watch);
    ulma_agg_set_tasks(&m->aggs[t], &m->tasks, t);
    m->closed[t] = ULMA_THREAD_OPEN;
    /* the claiming thread wrote its identity before it published the state */
    m->info[t] = (ulma_thread_info){.slot = slot, .os_tid = r->os_tid, .ident = r->py_thread_ident};
    ulma_slot_state *st = &m->slots[slot];
    *st = (ulma_slot_state){.thread = t, .tail = 0};
    return 0;
}

/* The thread in `slot` ended and was replayed to its end: its ring is given
 * back (zeroed: state FREE, positions 0; its pages returned to the system)
 * and offered to the next thread. */
static void release_slot(ulma_monitor *m, uint32_t slot, ulma_ring_header *r)
{
    uint64_t off = ulma_ring_file_offset(m->rings_offset, m->ring_stride, slot);
    if (fallocate(m->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                  (off_t)m->ring_stride) != 0)
        memset((void *)r, 0, ULMA_RING_HEADER_BYTES); /* the pages stay, the ring is fresh */
    m->slots[slot] = (ulma_slot_state){.thread = ULMA_NO_THREAD};
    _Atomic uint32_t *q = ulma_freeq(m->h, m->freeq_offset);
    atomic_store_explicit(&q[m->freeq_head & (m->freeq_slots - 1)], slot, memory_order_relaxed);
    m->freeq_head++;
    atomic_store_explicit(&m->h->freeq_head, m->freeq_head, memory_order_release);
}

/* Thread t ended.  Past the first ULMA_KEEP_ENDED ended threads its totals
 * move into `ended`; its own figures (events, lost time...) stay. */
static void retire(ulma_monitor *m, uint32_t t)
{
    if (m->kept_ended < ULMA_KEEP_ENDED) {
        m->kept_ended++;
        return;
    }
    ulma_thread_agg *a = &m->aggs[t];
    if (ulma_agg_merge(&m->ended, a, 0, 0) < 0)
        return; /* out of memory: it keeps its own */
    ulma_thread_agg keep = *a;
    a->blocks = NULL; /* the long frames not taken yet stay */
    ulma_agg_free(a);
    ulma_agg_init(a);
    a->ns_per_tick = keep.ns_per_tick;
    if (keep.watch)
        ulma_agg_set_watch(a, keep.watch);
    ulma_agg_set_tasks(a, keep.tasks, keep.task_thread);
    a->blocks = keep.blocks;
    a->nblocks = keep.nblocks;
    a->blocks_over = keep.blocks_over;
    a->w = keep.w; /* the stack rules' counters (walk.h); its SYNC buffer was freed */
    a->w.sync_ids = NULL;
    a->w.sync_want = a->w.sync_have = 0;
    a->cpu_readings = keep.cpu_readings;
    m->closed[t] = ULMA_THREAD_FOLDED;
}

/* A writer publishes every ULMA_PUBLISH_EVERY events, so a thread that
 * blocks right after a call would hide that call until it wakes.  Once its
 * `published` has not moved for QUIET_NS, the records below its private
 * write_pos were written that long ago: they are read too (the writer
 * release-stores write_pos after the records, this acquire-loads it; see
 * ulma_emit_ex). */
#define QUIET_NS 20000000u

static uint64_t head_of(ulma_monitor *m, ulma_slot_state *st, const ulma_ring_header *r,
                        uint64_t tail, uint64_t now)
{
    uint64_t pub = atomic_load_explicit(&((ulma_ring_header *)r)->published, memory_order_acquire);
    if (pub != st->last_published) {
        st->last_published = pub;
        st->quiet_since = now;
    } else if (now - st->quiet_since >= QUIET_NS) {
        uint64_t wp = atomic_load_explicit(&((ulma_ring_header *)r)->write_pos, memory_order_acquire);
        if ((int64_t)(wp - pub) > 0 && wp - tail <= m->ring_events)
            pub = wp;
    }
    /* after reading ahead of `published`, it may lag behind what we read */
    return (int64_t)(pub - tail) < 0 ? tail : pub;
}

int64_t ulma_monitor_drain(ulma_monitor *m, int postmortem, ulma_sink sink, void *ctx)
{
    uint32_t used = ulma_monitor_slots_used(m);
    uint64_t cap = m->ring_events, mask = cap - 1;
    int64_t total = 0;
    uint64_t now = ulma_mono_ns();
    for (uint32_t s = 0; s < used; s++) {
        ulma_slot_state *st = &m->slots[s];
        ulma_ring_header *r = ulma_monitor_ring(m, s);
        if (!r)
            continue;
        uint32_t state = atomic_load_explicit(&r->state, memory_order_acquire);
        if (st->thread == ULMA_NO_THREAD) {
            if (state != ULMA_RING_ACTIVE && state != ULMA_RING_FINISHED)
                continue;
            if (new_thread(m, s, r) < 0)
                return -1;
        }
        uint32_t t = st->thread;
        if (m->closed[t])
            continue;
        uint64_t tail = st->tail;
        uint64_t head = postmortem ? atomic_load_explicit(&r->write_pos, memory_order_acquire)
                                   : head_of(m, st, r, tail, now);
        if (head - tail > cap) { /* cannot happen with a well-behaved writer */
            m->corrupt++;
            tail = head - cap;
        }
        const ulma_event *ev = ulma_ring_events(r);
        ulma_thread_agg *a = &m->aggs[t];
        while (tail != head) {
            uint64_t at = tail & mask;
            uint64_t n = head - tail;
            if (n > cap - at)
                n = cap - at; /* up to the end of the buffer, then wrap */
            if (ulma_agg_feed(a, ev + at, (size_t)n) < 0)
                return -1;
            if (sink && sink(ctx, t, ev + at, (size_t)n) < 0)
                return -1;
            tail += n;
            total += (int64_t)n;
        }
        st->tail = tail;
        atomic_store_explicit(&r->read_pos, tail, memory_order_release);
        m->info[t].dropped = atomic_load_explicit(&r->dropped, memory_order_relaxed);
        if (state == ULMA_RING_FINISHED || postmortem) {
            /* finished: its last events were published before the state */
            uint64_t last = postmortem ? atomic_load_explicit(&r->write_pos, memory_order_acquire)
                                       : atomic_load_explicit(&r->published, memory_order_acquire);
            if (last == tail || (int64_t)(last - tail) < 0) {
                ulma_agg_close(a);
                m->closed[t] = ULMA_THREAD_CLOSED;
                if (!postmortem && state == ULMA_RING_FINISHED) {
                    release_slot(m, s, r);
                    retire(m, t);
                }
            }
        }
    }
    return total;
}

const ulma_symbol *ulma_monitor_next_symbol(ulma_monitor *m)
{
    if (m->symtab_cursor + sizeof(ulma_symbol) > m->symtab_bytes)
        return NULL;
    const ulma_symbol *s = (const ulma_symbol *)((char *)m->h + m->symtab_offset + m->symtab_cursor);
    uint32_t size = atomic_load_explicit(&((ulma_symbol *)s)->size, memory_order_acquire);
    if (size == 0)
        return NULL;
    if (size < sizeof *s || m->symtab_cursor + size > m->symtab_bytes ||
        sizeof *s + (uint64_t)s->name_len + s->file_len > size) {
        m->corrupt++;
        m->symtab_cursor = m->symtab_bytes; /* stop reading a table that makes no sense */
        return NULL;
    }
    m->symtab_cursor += size;
    return s;
}
