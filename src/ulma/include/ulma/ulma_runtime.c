/*
 * ulma_runtime.c -- ulma's runtime for a program without Python: compile
 * this one file into a C or C++ program that uses ulma.h, and
 *
 *     ulma run ./prog args            (or: ulma record -o t.ulma -- ./prog args)
 *
 * profiles its scopes as ulma profiles a Python program's functions: the
 * monitor makes the session (a memfd: header, symbol table, one ring per
 * thread; records.h) and starts the program with its descriptor in
 * ULMA_SESSION_FD; at start-up (a constructor, before main) this maps it,
 * points the program's hook at the runtime below and says it runs.  Without
 * that variable it does nothing, and every scope costs one branch.
 *
 *     cc -O2 -pthread $(python -m ulma.include --cflags) prog.c \
 *        $(python -m ulma.include)/ulma/ulma_runtime.c -o prog
 *
 * What it does for each thread is what the agent does for a Python thread:
 * a ring of its own (claimed on its first record, given back when the
 * thread exits), 16-byte records, drops counted when the ring is full, the
 * open scopes restated when room comes back, the thread's CPU clock read
 * every 100 us.  Sites are named once per session (symbols of kind
 * ULMA_SYM_SCOPE, ULMA_SYM_MARK, ULMA_SYM_COUNTER).  Linux; C11 atomics.
 *
 * Idle, for `ulma attach PID`: started with ULMA_LISTEN=1 (or by `ulma run
 * --wait-attach ./prog`), the runtime listens on an abstract Unix socket
 * (@ulma-agent-<pid>-<random>, the Python agent's protocol, ulma/agent/
 * listener.py): a monitor of the same user sends ATTACH with the session's
 * memfd, the runtime maps it and answers OK; on DETACH (or the connection
 * closing) the hook is cleared, every ring finished, and it answers BYE.
 * While nobody is attached, scopes cost one branch.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ulma.h"

#include "../../_core/clock.h"     /* records.h too: the layout has one source ... */
#include "../../_core/ringwrite.h" /* ... and the writer's side of it */

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define URT_ENV_FD "ULMA_SESSION_FD"
#define URT_STACK 64u              /* open scopes a thread restates */
#define URT_READING_US 100u        /* CPU readings this often (ulma's default) */
#define URT_RETRY_NS 50000u        /* after a drop: look for room again this often */
#define URT_ENGINE_NATIVE 3u       /* the session header's engine: a program without Python */

typedef struct {
    ulma_ring_header *ring;
    ulma_event *events;
    uint64_t mask, room_end, next_reading, retry_tick, reading_tick;
    uint32_t gen, depth;
    uint32_t ids[URT_STACK];
} urt_writer;

static ulma_session_header *g_h;
static size_t g_head_bytes;
static int g_fd = -1;
static uint32_t g_clock, g_gen, g_max_threads, g_chunk_slots, g_freeq_slots;
static uint64_t g_ring_events, g_stride, g_rings_offset, g_freeq_offset, g_reading_ticks, g_retry_ticks;
static uint64_t g_reading_late_ticks; /* a reading this long: the thread lost the CPU in it */
static char **g_chunks;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t g_key;
static int g_key_made;
static __thread urt_writer *tls_w;
static urt_writer **g_writers; /* by ring slot: what a detach finishes */

/* ---- session -------------------------------------------------------------- */

static int urt_layout_fits(const ulma_session_header *p, uint64_t size)
{
    uint64_t total = p->total_bytes;
    return p->magic == ULMA_SESSION_MAGIC && p->version == ULMA_FORMAT_VERSION &&
           p->header_bytes == ULMA_HEADER_BYTES && total <= size && p->rings_offset <= total &&
           p->symtab_offset <= total && p->symtab_bytes <= total && p->freeq_offset <= total &&
           p->ring_stride <= total && p->max_threads != 0 && p->chunk_slots != 0 && p->ring_events >= 2 &&
           !(p->ring_events & (p->ring_events - 1)) && p->freeq_slots >= p->max_threads &&
           !(p->freeq_slots & (p->freeq_slots - 1)) && p->rings_offset % 4096 == 0 &&
           p->ring_stride >= ULMA_RING_HEADER_BYTES + p->ring_events * sizeof(ulma_event) &&
           p->rings_offset + (uint64_t)p->max_threads * p->ring_stride <= total &&
           p->symtab_offset + p->symtab_bytes <= p->rings_offset;
}

static void urt_symbol(uint32_t id, uint16_t kind, uint32_t line, const char *name, const char *file)
{
    ulma_symbol_write(g_h, id, kind, 0, line, name, strnlen(name, 512), file, strnlen(file, 4096));
}

/* The site's id in this session, naming it on first sight; 0: none left. */
static uint32_t urt_site_id(ulma_site *site, uint16_t kind)
{
    uint64_t st = __atomic_load_n(&site->state, __ATOMIC_ACQUIRE);
    if ((uint32_t)(st >> 32) == g_gen && (uint32_t)st)
        return (uint32_t)st;
    pthread_mutex_lock(&g_lock);
    st = __atomic_load_n(&site->state, __ATOMIC_ACQUIRE);
    uint32_t id = (uint32_t)(st >> 32) == g_gen ? (uint32_t)st : 0;
    if (!id) {
        id = atomic_fetch_add_explicit(&g_h->next_symbol_id, 1, memory_order_relaxed);
        if (id >= (1u << 24) - 1) {
            atomic_fetch_add_explicit(&g_h->ids_overflow, 1, memory_order_relaxed);
            id = 0;
        } else {
            urt_symbol(id, kind, site->line, site->name ? site->name : "<scope>", site->file ? site->file : "?");
            __atomic_store_n(&site->state, (uint64_t)g_gen << 32 | id, __ATOMIC_RELEASE);
        }
    }
    pthread_mutex_unlock(&g_lock);
    return id;
}

/* ---- rings ---------------------------------------------------------------- */

static uint32_t urt_take_slot(void)
{
    return ulma_ring_take_slot(g_h, g_freeq_offset, g_freeq_slots, g_max_threads);
}

static ulma_ring_header *urt_ring_of(uint32_t slot) /* under g_lock */
{
    uint32_t k = slot / g_chunk_slots;
    if (!g_chunks[k]) {
        if (!(g_chunks[k] = ulma_ring_chunk_map(g_fd, k, g_chunk_slots, g_max_threads, g_stride, g_rings_offset)))
            return NULL;
    }
    return (ulma_ring_header *)(g_chunks[k] + (uint64_t)(slot % g_chunk_slots) * g_stride);
}

static void urt_finish(urt_writer *w)
{
    ulma_ring_finish(w->ring);
}

static void urt_thread_exit(void *p)
{
    urt_writer *w = p;
    pthread_mutex_lock(&g_lock);
    if (g_h && w->gen == g_gen)
        urt_finish(w);
    for (uint32_t i = 0; g_writers && i < g_max_threads; i++)
        if (g_writers[i] == w)
            g_writers[i] = NULL;
    pthread_mutex_unlock(&g_lock);
    free(w);
}

/* The calling thread's writer, claiming a ring on its first record; NULL if
 * no ring is left (its records are counted, as unringed). */
static urt_writer *urt_writer_get(void)
{
    urt_writer *w = tls_w;
    if (__builtin_expect(w != NULL && w->gen == g_gen, 1))
        return w;
    if (!w && !(w = tls_w = calloc(1, sizeof *w)))
        return NULL;
    pthread_mutex_lock(&g_lock);
    uint32_t slot = g_h ? urt_take_slot() : UINT32_MAX;
    ulma_ring_header *r = slot == UINT32_MAX ? NULL : urt_ring_of(slot);
    if (!r) {
        if (g_h)
            atomic_fetch_add_explicit(&g_h->threads_overflow, 1, memory_order_relaxed);
        pthread_mutex_unlock(&g_lock);
        return NULL;
    }
    w->ring = r;
    w->events = ulma_ring_events(r);
    w->mask = g_ring_events - 1;
    w->room_end = g_ring_events;
    w->next_reading = 0; /* the first record states the (empty) stack */
    w->retry_tick = 0;
    w->reading_tick = 0;
    w->gen = g_gen;
    w->depth = 0;
    ulma_ring_claim(r, (uint32_t)syscall(SYS_gettid), (uint64_t)pthread_self());
    if (g_writers)
        g_writers[slot] = w;
    pthread_mutex_unlock(&g_lock);
    pthread_setspecific(g_key, w);
    return w;
}

static void urt_put(urt_writer *w, uint64_t pos, uint64_t t, uint32_t id, uint8_t kind, uint8_t flags, uint16_t aux)
{
    ulma_record_put(w->events, w->mask, pos, t, id, kind, flags, aux);
}

static void urt_set_tail(urt_writer *w, ulma_ring_header *r)
{
    r->tail_cache = atomic_load_explicit(&r->read_pos, memory_order_acquire);
    w->room_end = r->tail_cache + w->mask + 1;
}

/* A full ring, a restatement due or a CPU reading due (records.h "Ring protocol"). */
static void urt_emit_slow(urt_writer *w, uint64_t t, uint32_t id, uint8_t kind, uint8_t flags, uint16_t aux)
{
    ulma_ring_header *r = w->ring;
    uint64_t pos = atomic_load_explicit(&r->write_pos, memory_order_relaxed), cap = w->mask + 1;
    if (r->need_sync && t < w->retry_tick)
        goto count; /* still dropping */
    ulma_event reading[2];
    int have_reading = 0;
    uint64_t t_event = t;
    if (g_reading_ticks && (r->need_sync || t >= w->reading_tick + g_reading_ticks)) {
        struct timespec ts;
        if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0) {
            uint64_t ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
            reading[have_reading++] = (ulma_event){t, (uint32_t)ns, ULMA_CPU_SAMPLE, 0, (uint16_t)(ns >> 32)};
            t_event = ulma_ticks(g_clock); /* the gap is the reading's cost */
            /* the thread lost the CPU while it read: read again, so that time is this interval's */
            if (t_event - t > g_reading_late_ticks && clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0) {
                ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
                reading[have_reading++] =
                    (ulma_event){t_event, (uint32_t)ns, ULMA_CPU_SAMPLE, 0, (uint16_t)(ns >> 32)};
                t_event = ulma_ticks(g_clock);
            }
        }
        w->reading_tick = have_reading ? reading[have_reading - 1].ticks : t;
    }
    uint32_t n = r->need_sync ? (w->depth < URT_STACK ? w->depth : URT_STACK) : 0;
    uint64_t need = (r->need_sync ? n + 1u : 0u) + (uint64_t)have_reading + 1u;
    if (pos - r->tail_cache + need > cap)
        urt_set_tail(w, r);
    if (pos - r->tail_cache + need > cap) {
        r->need_sync = 1;
        r->sync_flags = ULMA_SYNC_AFTER_DROP;
        w->retry_tick = t + g_retry_ticks;
        w->next_reading = 0;
        atomic_store_explicit(&r->published, pos, memory_order_release);
        goto count;
    }
    if (r->need_sync) { /* the open scopes, outermost first */
        pos = ulma_ring_put_sync(w->events, w->mask, pos, t,
                                 r->sync_flags | (w->depth > URT_STACK ? ULMA_SYNC_TRUNCATED : 0), w->ids, n);
        r->need_sync = 0;
        r->sync_flags = 0;
    }
    for (int i = 0; i < have_reading; i++)
        w->events[pos++ & w->mask] = reading[i];
    urt_put(w, pos++, t_event, id, kind, flags, aux);
    atomic_store_explicit(&r->write_pos, pos, memory_order_release);
    atomic_store_explicit(&r->published, pos, memory_order_release);
    w->next_reading = g_reading_ticks ? w->reading_tick + g_reading_ticks : UINT64_MAX;
    return;
count:
    atomic_store_explicit(&r->dropped, atomic_load_explicit(&r->dropped, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static inline void urt_emit(urt_writer *w, uint64_t t, uint32_t id, uint8_t kind, uint8_t flags, uint16_t aux)
{
    ulma_ring_header *r = w->ring;
    uint64_t pos = atomic_load_explicit(&r->write_pos, memory_order_relaxed);
    if (__builtin_expect((pos >= w->room_end) | (t >= w->next_reading), 0)) {
        urt_emit_slow(w, t, id, kind, flags, aux);
        return;
    }
    urt_put(w, pos, t, id, kind, flags, aux);
    atomic_store_explicit(&r->write_pos, ++pos, memory_order_release);
    if ((pos & (ULMA_PUBLISH_EVERY - 1)) == 0)
        atomic_store_explicit(&r->published, pos, memory_order_release);
}

/* ---- the runtime's entry points (ulma.h's ulma_runtime) -------------------- */

extern const ulma_runtime ulma_runtime_v1;

static const ulma_runtime *urt_begin(ulma_site *site)
{
    urt_writer *w = urt_writer_get();
    uint32_t id = w ? urt_site_id(site, ULMA_SYM_SCOPE) : 0;
    if (!id) {
        if (g_h)
            atomic_fetch_add_explicit(&g_h->unringed_events, 1, memory_order_relaxed);
        return NULL;
    }
    urt_emit(w, ulma_ticks(g_clock), id, ULMA_SCOPE_BEGIN, 0, 0);
    if (w->depth < URT_STACK)
        w->ids[w->depth] = id;
    w->depth++;
    return &ulma_runtime_v1;
}

static void urt_end(ulma_site *site)
{
    urt_writer *w = tls_w;
    uint64_t st = __atomic_load_n(&site->state, __ATOMIC_ACQUIRE);
    if (!w || w->gen != g_gen || !w->depth || (uint32_t)(st >> 32) != g_gen)
        return;
    urt_emit(w, ulma_ticks(g_clock), (uint32_t)st, ULMA_SCOPE_END, 0, 0);
    w->depth--;
}

static void urt_mark(ulma_site *site)
{
    urt_writer *w = urt_writer_get();
    uint32_t id = w ? urt_site_id(site, ULMA_SYM_MARK) : 0;
    if (id)
        urt_emit(w, ulma_ticks(g_clock), id, ULMA_MARK, 0, 0);
}

static void urt_counter(ulma_site *site, int64_t value)
{
    urt_writer *w = urt_writer_get();
    uint32_t id = w ? urt_site_id(site, ULMA_SYM_COUNTER) : 0;
    if (!id)
        return;
    const int64_t most = ((int64_t)1 << 59) - 1; /* 60 bits (records.h) */
    uint64_t v = (uint64_t)(value > most ? most : value < -most - 1 ? -most - 1 : value);
    uint64_t t = ulma_ticks(g_clock);
    urt_emit(w, t, id, ULMA_COUNTER, 0, (uint16_t)(v >> 44));
    urt_emit(w, t, (uint32_t)(v & 0x0fffffffu), ULMA_COUNTER, ULMA_COUNTER_VALUE, (uint16_t)(v >> 28));
}

static const ulma_runtime *urt_attach(const ulma_runtime **hook)
{
    const ulma_runtime *to = g_h ? &ulma_runtime_v1 : NULL;
    __atomic_store_n(hook, to, __ATOMIC_RELEASE);
    return to;
}

const ulma_runtime ulma_runtime_v1 = {ULMA_API_VERSION, sizeof(ulma_runtime), urt_begin, urt_end,
                                      urt_mark, urt_counter, urt_attach};

/* ---- start and end ----------------------------------------------------------- */

/* What a scope costs (scope_probe_ps in the header): begin/end pairs on this
 * thread into a private ring nobody reads, their records' gaps (the median
 * of each way). */
static void urt_calibrate(void)
{
    enum { PAIRS = 2000, EVENTS = 4096 };
    static ulma_site site = {"calibration", "", 0, ULMA_SITE_SCOPE, 0};
    ulma_ring_header *ring = aligned_alloc(64, ULMA_RING_HEADER_BYTES + EVENTS * sizeof(ulma_event));
    urt_writer *w = calloc(1, sizeof *w);
    if (!ring || !w) {
        free(ring);
        free(w);
        return;
    }
    memset(ring, 0, ULMA_RING_HEADER_BYTES);
    w->ring = ring;
    w->events = ulma_ring_events(ring);
    w->mask = EVENTS - 1;
    w->room_end = EVENTS;
    w->next_reading = UINT64_MAX;
    w->gen = g_gen;
    tls_w = w;
    site.state = (uint64_t)g_gen << 32 | 1u; /* named already: no symbol */
    for (int i = 0; i < PAIRS; i++) {
        urt_begin(&site);
        __asm__ volatile("" ::: "memory");
        urt_end(&site);
    }
    uint64_t gaps[2][PAIRS];
    uint32_t nb = 0, ne = 0;
    for (uint32_t i = 1; i < 2 * PAIRS; i++) {
        ulma_event *e = &w->events[i], *p = &w->events[i - 1];
        if (e->ticks < p->ticks)
            continue;
        if (e->kind == ULMA_SCOPE_BEGIN && nb < PAIRS)
            gaps[0][nb++] = e->ticks - p->ticks;
        else if (e->kind == ULMA_SCOPE_END && ne < PAIRS)
            gaps[1][ne++] = e->ticks - p->ticks;
    }
    /* medians, by a partial selection sort's middle (a few thousand values, once) */
    uint32_t counts[2] = {nb, ne};
    double ns[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        uint32_t m = counts[k];
        for (uint32_t i = 0; m && i <= m / 2; i++) {
            uint32_t lo = i;
            for (uint32_t j = i + 1; j < m; j++)
                if (gaps[k][j] < gaps[k][lo])
                    lo = j;
            uint64_t x = gaps[k][i];
            gaps[k][i] = gaps[k][lo];
            gaps[k][lo] = x;
        }
        if (m)
            ns[k] = (double)gaps[k][m / 2] * g_h->ns_per_tick_hint;
    }
    tls_w = NULL; /* the thread's own ring comes with its first record */
    free(w);
    free(ring);
    if (ns[0] > 0 && ns[1] > 0 && ns[0] < 4e6 && ns[1] < 4e6) {
        atomic_store_explicit(&g_h->scope_probe_ps, (uint32_t)(ns[0] * 1000.0 + 0.5), memory_order_relaxed);
        atomic_store_explicit(&g_h->scope_end_probe_ps, (uint32_t)(ns[1] * 1000.0 + 0.5), memory_order_relaxed);
    }
}

/* Maps the session in `fd` (a memfd the monitor made) and turns the hook on:
 * 0, or -1 with nothing changed (not a session of this version, or not ours).
 * Under g_lock, no session mapped. */
static int urt_map(int fd)
{
    struct stat st;
    ulma_session_header probe;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
        pread(fd, &probe, sizeof probe, 0) != (ssize_t)sizeof probe || !urt_layout_fits(&probe, (uint64_t)st.st_size))
        return -1;
    void *base = mmap(NULL, (size_t)probe.rings_offset, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED)
        return -1;
    char **chunks = calloc((probe.max_threads + probe.chunk_slots - 1) / probe.chunk_slots, sizeof *chunks);
    urt_writer **writers = calloc(probe.max_threads, sizeof *writers);
    if (!chunks || !writers || (!g_key_made && pthread_key_create(&g_key, urt_thread_exit) != 0)) {
        free(chunks);
        free(writers);
        munmap(base, (size_t)probe.rings_offset);
        return -1;
    }
    g_key_made = 1;
    g_head_bytes = (size_t)probe.rings_offset;
    g_chunks = chunks;
    g_writers = writers;
    g_fd = fd;
    g_max_threads = probe.max_threads;
    g_chunk_slots = probe.chunk_slots;
    g_clock = probe.clock_source;
    g_ring_events = probe.ring_events;
    g_stride = probe.ring_stride;
    g_rings_offset = probe.rings_offset;
    g_freeq_offset = probe.freeq_offset;
    g_freeq_slots = probe.freeq_slots;
    double tick_ns = probe.ns_per_tick_hint > 0 ? probe.ns_per_tick_hint : 1.0;
    g_reading_ticks = (uint64_t)(URT_READING_US * 1000.0 / tick_ns);
    g_retry_ticks = (uint64_t)(URT_RETRY_NS / tick_ns) + 1;
    g_reading_late_ticks = (uint64_t)(50000.0 / tick_ns);
    g_gen++; /* every thread claims a ring of this session at its next record */
    g_h = base;
    atomic_store_explicit(&g_h->agent_pid, (uint32_t)getpid(), memory_order_relaxed);
    atomic_store_explicit(&g_h->engine, URT_ENGINE_NATIVE, memory_order_relaxed);
    atomic_store_explicit(&g_h->cpu_interval_us, URT_READING_US, memory_order_relaxed);
    atomic_fetch_or_explicit(&g_h->agent_flags, ULMA_AGENT_CPU_SAMPLES, memory_order_relaxed);
    return 0;
}

/* The hook on: calibrated, started (after urt_map, outside g_lock). */
static void urt_go(void)
{
    urt_calibrate();
    __atomic_store_n(&ulma_hook_v1, &ulma_runtime_v1, __ATOMIC_RELEASE);
    atomic_store_explicit(&g_h->program_start_ticks, ulma_ticks(g_clock), memory_order_release);
    atomic_store_explicit(&g_h->agent_state, ULMA_AGENT_RUNNING, memory_order_release);
}

/* The hook off, every ring finished, the session let go: a thread still in
 * a scope writes into private zero pages laid over the mappings (their
 * address ranges stay reserved), never into a monitor's next session. */
static void urt_unmap(void)
{
    __atomic_store_n(&ulma_hook_v1, (const ulma_runtime *)0, __ATOMIC_RELEASE);
    pthread_mutex_lock(&g_lock);
    if (g_h) {
        for (uint32_t i = 0; i < g_max_threads; i++)
            if (g_writers[i] && g_writers[i]->gen == g_gen)
                urt_finish(g_writers[i]);
        atomic_store_explicit(&g_h->agent_state, ULMA_AGENT_STOPPED, memory_order_release);
        g_gen++; /* every writer goes stale */
        for (uint32_t k = 0; k * g_chunk_slots < g_max_threads; k++)
            if (g_chunks[k]) {
                uint32_t n = g_max_threads - k * g_chunk_slots;
                size_t len = (size_t)(n < g_chunk_slots ? n : g_chunk_slots) * g_stride;
                mmap(g_chunks[k], len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
            }
        mmap(g_h, g_head_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        free(g_chunks);
        g_chunks = NULL;
        free(g_writers);
        g_writers = NULL;
        close(g_fd);
        g_fd = -1;
        g_h = NULL;
    }
    pthread_mutex_unlock(&g_lock);
}

/* ---- idle: ulma attach ------------------------------------------------------ */

#define URT_MAX_LINE 4096
#define URT_REQUEST_SECONDS 5

static void urt_say(int conn, const char *text)
{
    size_t n = strlen(text);
    while (n) {
        ssize_t k = send(conn, text, n, MSG_NOSIGNAL);
        if (k <= 0)
            return;
        text += k;
        n -= (size_t)k;
    }
}

/* One line (at most URT_MAX_LINE bytes) and the descriptors that came with it. */
static ssize_t urt_read_line(int conn, char *line, int *fds, int *nfds)
{
    size_t got = 0;
    *nfds = 0;
    while (got < URT_MAX_LINE - 1 && !memchr(line, '\n', got)) {
        char control[CMSG_SPACE(4 * sizeof(int))];
        struct iovec io = {line + got, URT_MAX_LINE - 1 - got};
        struct msghdr msg = {0};
        msg.msg_iov = &io;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        ssize_t k = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); k >= 0 && c; c = CMSG_NXTHDR(&msg, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                    int fd;
                    memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                    if (*nfds < 4)
                        fds[(*nfds)++] = fd;
                    else
                        close(fd);
                }
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    line[got] = 0;
    return (ssize_t)got;
}

static void urt_session(int conn)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != getuid()) {
        urt_say(conn, "ERR attaching needs the same user\n");
        return;
    }
    struct timeval tv = {URT_REQUEST_SECONDS, 0};
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char line[URT_MAX_LINE];
    int fds[4], nfds;
    urt_read_line(conn, line, fds, &nfds);
    int ok = nfds == 1 && strncmp(line, "ATTACH ULMA2 ", 13) == 0 && strchr(line, '\n');
    pthread_mutex_lock(&g_lock);
    int mapped = ok && !g_h && urt_map(fds[0]) == 0;
    pthread_mutex_unlock(&g_lock);
    for (int i = 0; i < nfds; i++)
        if (!mapped || fds[i] != g_fd)
            close(fds[i]);
    if (!mapped) {
        urt_say(conn, ok ? "ERR not a session this runtime can map\n"
                         : "ERR bad request (is the monitor another ulma version?)\n");
        return;
    }
    urt_go();
    char reply[64];
    snprintf(reply, sizeof reply, "OK %d\n", (int)getpid());
    urt_say(conn, reply);
    struct timeval forever = {0, 0};
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &forever, sizeof forever);
    urt_read_line(conn, line, fds, &nfds); /* DETACH, the connection closing, or anything: detach */
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    urt_unmap();
    urt_say(conn, "BYE\n");
}

static void *urt_listen(void *arg)
{
    int sock = (int)(intptr_t)arg;
    for (;;) {
        int conn = accept4(sock, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE ||
                errno == ENOBUFS || errno == ENOMEM) {
                usleep(100000);
                continue;
            }
            return NULL;
        }
        urt_session(conn);
        close(conn);
    }
}

/* ULMA_LISTEN=1: an idle runtime, listening for `ulma attach`. */
static void urt_start_idle(void)
{
    unsigned char rnd[8];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        return;
    struct sockaddr_un addr = {0};
    addr.sun_family = AF_UNIX;
    int n = snprintf(addr.sun_path + 1, sizeof addr.sun_path - 1,
                     "ulma-agent-%d-%02x%02x%02x%02x%02x%02x%02x%02x", (int)getpid(), rnd[0], rnd[1], rnd[2],
                     rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0)
        return;
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    pthread_t t;
    pthread_attr_t attr;
    if (bind(sock, (struct sockaddr *)&addr, len) != 0 || listen(sock, 4) != 0 || pthread_attr_init(&attr) != 0) {
        close(sock);
        return;
    }
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, urt_listen, (void *)(intptr_t)sock) != 0)
        close(sock);
    pthread_attr_destroy(&attr);
}

static void urt_stop(void)
{
    urt_unmap();
}

__attribute__((constructor)) static void urt_start(void)
{
    __atomic_store_n(&ulma_hook_v1, (const ulma_runtime *)0, __ATOMIC_RELEASE); /* no session: off */
    const char *listen_text = getenv("ULMA_LISTEN");
    if (listen_text && strcmp(listen_text, "1") == 0) {
        urt_start_idle();
        return;
    }
    const char *fd_text = getenv(URT_ENV_FD);
    if (!fd_text || !*fd_text)
        return;
    char *end;
    long fd = strtol(fd_text, &end, 10);
    if (*end || fd < 0 || fd > 1 << 20)
        return;
    pthread_mutex_lock(&g_lock);
    int mapped = urt_map((int)fd) == 0;
    pthread_mutex_unlock(&g_lock);
    if (!mapped)
        return;
    urt_go();
    atexit(urt_stop);
}
