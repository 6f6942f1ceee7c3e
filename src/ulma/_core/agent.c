/*
 * agent.c -- the profiled process's session: mapping it, claiming a ring per
 * thread, the rare paths of the writer (full ring, stack restatement, a CPU
 * reading due) and the probe's calibration.  Hot code is in agent.h; names
 * and ids are in symbols.c, CPU readings in readings.c.
 */
#define _GNU_SOURCE
#include "agent.h"
#include "tasks.h"
#include "readings.h"
#include "symbols.h"
#include "objtrace.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "frames.h"
#include "ringwrite.h"
#include "scopes.h"

ulma_session_header *g_session = NULL;
static const uint64_t g_no_tstates;
const volatile uint64_t *g_tstates_counter = &g_no_tstates; /* frames.h */
uint32_t g_clock = ULMA_CLOCK_MONOTONIC;
uint32_t g_generation = 0;
uint32_t g_code_gen = 0;
Py_ssize_t g_extra_index = -1;
__thread ulma_tls_writer tls_hot __attribute__((tls_model("initial-exec"))) = {NULL, 0};
int g_native_calls = 0;

static ulma_control *g_ctl; /* the control channel; NULL: none (another version, or no session) */
static int g_bell_running;  /* its waiter thread (below) runs */
static int g_bell_paused;   /* stopped for a fork() of the program, to start again after */
static __thread ulma_writer *tls_writer_keep; /* this thread's writer, across sessions */
static __thread int tls_ignored;              /* ulma's own threads are never traced */
static size_t g_head_bytes;   /* header, free queue and symbol table: mapped at start */
static int g_engine;
static ulma_writer **g_writers;     /* by ring slot, for the final flush */
static uint32_t g_writers_len;
/* Rings are mapped a chunk at a time, when a thread first needs one: our
 * own descriptor of the memfd, and what it was (the program may close it
 * and reuse the number: then no more chunks, and threads go untraced,
 * counted). */
static int g_fd = -1;
static uint64_t g_fd_dev, g_fd_ino;
static char **g_chunks;
static uint32_t g_chunk_slots, g_nchunks;
static uint64_t g_stride, g_rings_offset, g_ring_events, g_freeq_offset;
static uint32_t g_freeq_slots;
/* Threads that found no ring write into this private one, which nobody
 * reads: its writer counts their events (session's unringed_events) every
 * UNTRACED_EVENTS.  Shared by all such threads, under the GIL. */
#define UNTRACED_EVENTS 64u
static ulma_writer g_untraced;
static _Alignas(64) char g_untraced_ring[ULMA_RING_HEADER_BYTES + UNTRACED_EVENTS * sizeof(ulma_event)];
static pthread_key_t g_thread_key;
static int g_thread_key_ready;
static const _PyInterpreterFrame *g_boundary; /* bootstrap frame: stacks stop here */
static int g_boot_frames; /* frames of ulma's bootstrap under the program */
static PyThreadState *g_boot_thread;
/* Orders a thread's exit (which runs without the GIL) against unmapping. */
static pthread_mutex_t g_exit_lock = PTHREAD_MUTEX_INITIALIZER;
/* In a forked child: the parent's session, detached at the fork, whose hooks
 * and mapping ulma_agent_stop still has to take down. */
static ulma_session_header *g_forked_from;
static int g_atfork_ready;

/*
 * pthread_atfork child handler: runs inside fork(), in the child, before any
 * Python code there (the interpreter's own after-fork work and os.register_at_fork
 * handlers come later).  The rings, and each ring's writer cursors, are the
 * parent's: the child detaches at once, so no event of its own reaches them.
 * Only this thread survives the fork; a lock another thread held at that
 * moment stays held forever, so this takes none: it counts the child, makes
 * every writer stale (a new generation; g_session NULL, so no thread claims a
 * ring) and re-initialises g_exit_lock.  The hooks stay installed until
 * ulma_agent_stop (needs the GIL); meanwhile they find no writer and return.
 */
/* A new session generation: every writer and code id of the last one goes
 * stale.  Never 0, the generation of a thread with no writer (agent.h). */
static void next_generation(void)
{
    if (++g_generation >= ULMA_GEN_SLOW)
        g_generation = 1;
    if (++g_code_gen >= ULMA_GEN_SLOW)
        g_code_gen = 1;
}

/* What is traced changed: every code object finds its id again. */
static void next_code_gen(void)
{
    if (++g_code_gen >= ULMA_GEN_SLOW)
        g_code_gen = 1;
}

static void at_fork_child(void)
{
    ulma_session_header *h = g_session;
    pthread_mutex_init(&g_exit_lock, NULL);
    if (!h)
        return;
    ulma_scopes_after_fork(); /* the child's native scopes: one branch, as untraced */
    ulma_objects_after_fork();
    atomic_fetch_add_explicit(&h->forked_children, 1, memory_order_relaxed);
    g_forked_from = h;
    g_session = NULL;
    g_ctl = NULL;
    g_bell_running = 0; /* only this thread survived the fork */
    g_bell_paused = 0;
    next_generation();
}

/* Publishes what the writer wrote and marks its ring finished. */
static void writer_finish(ulma_writer *w)
{
    ulma_ring_finish(w->ring);
}

/* pthread key destructor: runs when a thread exits, without the GIL.  Once
 * its ring is FINISHED the monitor may give the slot to another thread, so
 * the slot's entry is cleared first. */
static void on_thread_exit(void *p)
{
    ulma_writer *w = p;
    pthread_mutex_lock(&g_exit_lock);
    if (w && w->generation == g_generation && g_session) {
        if (w->slot < g_writers_len && g_writers[w->slot] == w)
            g_writers[w->slot] = NULL;
        writer_finish(w);
    }
    pthread_mutex_unlock(&g_exit_lock);
    free(w);
}

/* The writer's copy of where the monitor has read up to (the ring's
 * tail_cache), and with it the hot path's room_end. */
static inline void set_tail(ulma_writer *w, ulma_ring_header *r, uint64_t tail)
{
    r->tail_cache = tail;
    w->room_end = tail + w->mask + 1;
}

/* Adds the untraced writer's events since the last count (and the event
 * that brought it here, `with_event`) to the session's unringed_events. */
static void untraced_count(ulma_writer *w, uint64_t with_event)
{
    ulma_ring_header *r = w->ring;
    uint64_t n = r->write_pos - r->tail_cache + with_event;
    set_tail(w, r, r->write_pos);
    if (g_session && n)
        atomic_fetch_add_explicit(&g_session->unringed_events, n, memory_order_relaxed);
}

static void untraced_setup(void)
{
    memset(g_untraced_ring, 0, sizeof g_untraced_ring);
    memset(&g_untraced, 0, sizeof g_untraced);
    g_untraced.ring = (ulma_ring_header *)g_untraced_ring;
    g_untraced.events = ulma_ring_events(g_untraced.ring);
    g_untraced.mask = UNTRACED_EVENTS - 1;
    g_untraced.room_end = UNTRACED_EVENTS; /* tail 0 */
    g_untraced.next_reading = UINT64_MAX; /* no readings, no restatement */
    g_untraced.generation = g_generation;
    g_untraced.slot = UINT32_MAX;
    g_untraced.shared = 1;
}

static uint32_t take_slot(ulma_session_header *h)
{
    return ulma_ring_take_slot(h, g_freeq_offset, g_freeq_slots, g_writers_len);
}

/* Is our descriptor still the memfd we duplicated? */
static int own_fd_intact(void)
{
    struct stat st;
    return g_fd >= 0 && fstat(g_fd, &st) == 0 && (uint64_t)st.st_dev == g_fd_dev &&
           (uint64_t)st.st_ino == g_fd_ino;
}

/* The ring of `slot`, mapping its chunk if this is the chunk's first
 * thread; NULL if it cannot be mapped. */
static ulma_ring_header *ring_of(uint32_t slot)
{
    uint32_t k = slot / g_chunk_slots;
    if (!g_chunks[k]) {
        if (!own_fd_intact())
            return NULL; /* the program closed our descriptor */
        if (!(g_chunks[k] = ulma_ring_chunk_map(g_fd, k, g_chunk_slots, g_writers_len, g_stride, g_rings_offset)))
            return NULL;
    }
    return (ulma_ring_header *)(g_chunks[k] + (uint64_t)(slot % g_chunk_slots) * g_stride);
}

/* This thread goes untraced: its events are counted, not written. */
static ulma_writer *untraced(ulma_session_header *h)
{
    atomic_fetch_add_explicit(&h->threads_overflow, 1, memory_order_relaxed);
    tls_writer = &g_untraced;
    tls_writer_gen = g_generation;
    if (g_native_calls && g_engine == ULMA_ENGINE_PEP523)
        ulma_engine_pep523_thread_claimed(); /* its C calls are counted too */
    return &g_untraced;
}

/* Some thread wrote without the GIL this session (native scopes): its
 * writes may race ulma_agent_stop, which then leaves the mappings' address
 * ranges in place (as private zero pages) instead of unmapping them. */
_Atomic int g_nogil_used;

/* `ts`: the calling thread's state (it holds the GIL), or NULL (it does
 * not: a thread without the GIL, under g_exit_lock; no ring left gives no
 * writer then, as the untraced one is shared under the GIL). */
static ulma_writer *claim(PyThreadState *ts)
{
    ulma_session_header *h = g_session;
    tls_writer_gen = 0; /* no writer (yet): asked again at the next event */
    tls_writer = NULL;
    if (!h || tls_ignored)
        return NULL;
    /* A thread's writer lives as long as the thread (threads exit without
     * the GIL, and may hold the pointer after a session ended); the next
     * session reuses it, so attaching again and again costs no memory. */
    ulma_writer *w = tls_writer_keep;
    if (!w && !(w = tls_writer_keep = calloc(1, sizeof *w)))
        goto none;
    uint32_t slot = take_slot(h);
    ulma_ring_header *r = slot == UINT32_MAX ? NULL : ring_of(slot);
    if (!r)
        goto none; /* (a slot whose chunk could not be mapped stays unused) */
    w->ring = r;
    w->events = ulma_ring_events(r);
    w->mask = g_ring_events - 1;
    w->generation = g_generation;
    w->slot = slot;
    w->next_reading = 0; /* need_sync: the slow path */
    w->retry_tick = 0;
    w->reading_tick = 0;
    w->call_code = NULL;
    w->shared = 0;
    w->py_resync = 0;
    w->scope_depth = 0;
    w->tstate_made = ulma_tstates_made();
    w->tstate = ts;
    w->room_end = w->mask + 1; /* the tail ulma_ring_claim sets: 0 */
    ulma_ring_claim(r, (uint32_t)syscall(SYS_gettid), (uint64_t)PyThread_get_thread_ident());
    g_writers[slot] = w;
    if (g_thread_key_ready)
        pthread_setspecific(g_thread_key, w);
    tls_writer = w;
    tls_writer_gen = g_generation;
    if (ts && g_native_calls && g_engine == ULMA_ENGINE_PEP523)
        ulma_engine_pep523_thread_claimed();
    if (!ts)
        atomic_store_explicit(&g_nogil_used, 1, memory_order_relaxed);
    return w;

none:
    if (ts)
        return untraced(h);
    atomic_fetch_add_explicit(&h->threads_overflow, 1, memory_order_relaxed);
    return NULL;
}

ulma_writer *ulma_writer_claim(void)
{
    return claim(PyThreadState_GET());
}

ulma_writer *ulma_writer_claim_nogil(void)
{
    pthread_mutex_lock(&g_exit_lock); /* against ulma_agent_stop and other such claims */
    ulma_writer *w = claim(NULL);
    pthread_mutex_unlock(&g_exit_lock);
    return w;
}

void ulma_agent_ignore_thread(void)
{
    tls_ignored = 1;
    tls_writer = NULL;
    tls_writer_gen = 0;
}

/* ---- the rare paths of the writer ----------------------------------- */

/* Collects the ids of the thread's Python frames, innermost first, without
 * allocating (frame objects are not materialised), with w's open native
 * scopes among them: a scope right inside the frame it was opened in (one
 * opened without the GIL, inside every frame; none if w is NULL).  Returns
 * the count. */
static uint32_t walk_stack(const ulma_writer *w, uint32_t *ids, uint32_t cap, int *truncated)
{
    const _PyInterpreterFrame *f = ulma_current_frame(PyThreadState_GET());
    uint32_t n = 0;
    int64_t j = !w ? -1 : (int64_t)(w->scope_depth < ULMA_SCOPE_STACK ? w->scope_depth : ULMA_SCOPE_STACK) - 1;
    *truncated = 0;
    for (; f != NULL; f = f->previous) {
        if (f == g_boundary)
            break;
        for (; j >= 0 && (w->scope_frames[j] == NULL || w->scope_frames[j] == f); j--) {
            if (n == cap) {
                *truncated = 1;
                return n;
            }
            ids[n++] = w->scope_ids[j];
        }
        if (!ulma_frame_counts(f))
            continue;
        PyCodeObject *co = ulma_frame_code(f);
        if (!co)
            continue;
        uint32_t idv = ulma_code_id(co);
        if (idv & ULMA_ID_OFF)
            continue; /* not traced now: none of its events is written */
        if (n == cap) {
            *truncated = 1;
            break;
        }
        ids[n++] = idv;
    }
    for (; j >= 0 && n < cap; j--) /* opened in frames not seen now (a damaged pairing) */
        ids[n++] = w->scope_ids[j];
    if (j >= 0)
        *truncated = 1;
    return n;
}

int ulma_code_event_noted(PyCodeObject *co, uint8_t kind, int top_is_event, int force, uint32_t id_bits,
                          uint64_t note)
{
    ulma_writer *w = ulma_writer_get();
    if (ULMA_UNLIKELY(w == NULL) && co == ulma_probe_code)
        ulma_probe_seen = 1; /* (reached from a thread ulma does not trace: its listener's detach) */
    if (ULMA_LIKELY(w != NULL)) {
        uint64_t t = ulma_ticks(g_clock);
        uint32_t idv = ulma_code_id(co) | id_bits;
        if (ULMA_UNLIKELY(idv & ULMA_ID_OFF)) {
            if (!force)
                return 1;
            idv &= ~ULMA_ID_OFF;
        }
        if (ULMA_UNLIKELY(note))
            ulma_emit_noted(w, t, idv, kind, 0, 0, top_is_event, note);
        else
            ulma_emit(w, t, idv, kind, top_is_event);
    }
    return 0;
}

int ulma_code_event_slow(PyCodeObject *co, uint8_t kind, int top_is_event, int force, uint32_t id_bits)
{
    return ulma_code_event_noted(co, kind, top_is_event, force, id_bits, 0);
}

static inline int is_entering(uint8_t kind)
{
    return kind == ULMA_CALL || kind == ULMA_RESUME || kind == ULMA_THROW;
}

/* A record of id `idv`: the id's own bits become its flags (agent.h). */
static inline void put(ulma_writer *w, uint64_t pos, uint64_t t, uint32_t idv, uint8_t kind,
                       uint8_t flags, uint16_t aux)
{
    ulma_record_put(w->events, w->mask, pos, t, idv & ULMA_ID_MASK, kind,
                    flags | (uint8_t)((idv & ULMA_ID_RECORDED) >> 24), aux);
}


/* ---- single-step (records.h "Single-step") ----------------------------- */

/* What the agent steps to, under the GIL.  Anything but STEP_IDLE makes
 * every event of the stepping thread take the slow path (next_reading = 0,
 * the mechanism CPU readings use), where step_event decides whether it
 * stops: the hot path gains nothing. */
enum { STEP_IDLE = 0, STEP_ANY, STEP_NEXT, STEP_OVER };
static int g_step_mode;
static ulma_writer *g_step_w;        /* the thread that steps; NULL: the first to come */
static int64_t g_step_depth;         /* STEP_OVER: stop at an event this deep or less */
static int64_t g_step_cur;           /* the stepping thread's depth after its last event */
static int g_step_blocked;           /* a thread is stopped */
static _Atomic uint32_t g_step_token; /* futex word (this process's): + 1 releases it */
#define STEP_WAIT_NS 50000000L        /* the stopped thread looks around this often */

static void step_state(uint32_t state)
{
    if (g_session)
        atomic_store_explicit(&ulma_session_step(g_session)->state, state, memory_order_release);
}

/* The next event of every thread takes the slow path. */
static void step_force_slow(void)
{
    for (uint32_t i = 0; i < g_writers_len; i++) {
        ulma_writer *o = g_writers[i];
        if (o && o->generation == g_generation)
            o->next_reading = 0;
    }
}

static void step_release(void)
{
    atomic_fetch_add_explicit(&g_step_token, 1, memory_order_release);
    syscall(SYS_futex, &g_step_token, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

static void step_reset(void)
{
    g_step_mode = STEP_IDLE;
    g_step_w = NULL;
    step_release();
}

/* A step command from the channel (under the GIL).  1: applied. */
static int control_step(uint32_t op)
{
    switch (op) {
    case ULMA_CTL_STEP_STOP:
    case ULMA_CTL_STEP_NEXT:
    case ULMA_CTL_STEP_OVER:
        if (!g_step_blocked) {
            /* nothing stopped: stop at the next event (of the stepping thread, if one was) */
            if (g_step_mode == STEP_IDLE || op == ULMA_CTL_STEP_STOP)
                g_step_w = NULL;
            g_step_mode = g_step_w ? STEP_NEXT : STEP_ANY;
            step_state(ULMA_STEP_ARMED);
            step_force_slow();
            return 1;
        }
        if (op == ULMA_CTL_STEP_STOP)
            return 1; /* stopped already */
        g_step_mode = op == ULMA_CTL_STEP_OVER ? STEP_OVER : STEP_NEXT;
        step_state(ULMA_STEP_RUNNING);
        step_release();
        return 1;
    case ULMA_CTL_STEP_CONTINUE:
        step_reset();
        step_state(ULMA_STEP_IDLE);
        return 1;
    default:
        return -1;
    }
}

/* Is the monitor that made the session gone? */
static int monitor_gone(ulma_session_header *h)
{
    pid_t pid = (pid_t)h->creator_pid;
    return pid > 0 && kill(pid, 0) < 0 && errno == ESRCH;
}

/*
 * Stops the calling thread at this event: says where in the step block (the
 * ring already published), then waits without the GIL, on a futex of this
 * process (the session may be unmapped meanwhile), until a command releases
 * it.  Every STEP_WAIT_NS, and on a signal, it takes the GIL and looks: a
 * session ended (detach, exit: return at once, touching nothing of it), a
 * signal for the program (step mode ends, so its handler runs as under
 * python: KeyboardInterrupt for Ctrl-C), a monitor gone (step mode ends).
 */
static void step_block(ulma_writer *w, uint32_t idv, uint8_t kind, int top_is_event)
{
    ulma_session_header *h = g_session;
    ulma_step *s = ulma_session_step(h);
    uint32_t ids[ULMA_STEP_FRAMES];
    uint32_t n = 0;
    int truncated = 0;
    if (!top_is_event) /* PEP 523: the interpreter's top frame is still (again) the caller */
        ids[n++] = idv;
    n += walk_stack(NULL, ids + n, ULMA_STEP_FRAMES - n, &truncated); /* Python frames: stepping counts those */
    g_step_depth = n;
    g_step_cur = is_entering(kind) ? (int64_t)n : (int64_t)n - 1;
    ulma_ring_header *r = w->ring;
    uint64_t pos = atomic_load_explicit(&r->write_pos, memory_order_relaxed);
    atomic_store_explicit(&r->published, pos, memory_order_release); /* the monitor sees the event */
    for (uint32_t i = 0; i < n; i++)
        s->frames[i] = ids[i] & ULMA_ID_MASK;
    s->slot = w->slot;
    s->os_tid = r->os_tid;
    s->kind = kind;
    s->id = idv & ULMA_ID_MASK;
    s->nframes = n;
    s->truncated = (uint32_t)truncated;
    s->ticks = ulma_ticks(g_clock);
    s->ring_pos = pos;
    atomic_fetch_add_explicit(&s->seq, 1, memory_order_release);
    atomic_store_explicit(&s->state, ULMA_STEP_STOPPED, memory_order_release);

    uint32_t token = atomic_load_explicit(&g_step_token, memory_order_acquire);
    g_step_blocked = 1;
    for (;;) {
        int intr = 0;
        Py_BEGIN_ALLOW_THREADS
        struct timespec ts = {0, STEP_WAIT_NS};
        if (syscall(SYS_futex, &g_step_token, FUTEX_WAIT_PRIVATE, token, &ts, NULL, 0) < 0 && errno == EINTR)
            intr = 1;
        Py_END_ALLOW_THREADS
        if (g_session != h)
            return; /* the session ended: agent_stop reset the step state */
        if (atomic_load_explicit(&g_step_token, memory_order_acquire) != token)
            break; /* released: a command */
        /* a signal: one handled on this thread woke us (its Python handler is
         * pending), or a Ctrl-C the main thread must handle (taken here, so
         * set again for the interpreter) */
        if (intr || (PyOS_InterruptOccurred() && (PyErr_SetInterruptEx(SIGINT), 1))) {
            step_reset();
            step_state(ULMA_STEP_SIGNALED);
            break;
        }
        if (monitor_gone(h)) {
            step_reset();
            step_state(ULMA_STEP_IDLE);
            break;
        }
    }
    g_step_blocked = 0;
}

/* After every slow-path event while stepping (under the GIL). */
static void step_event(ulma_writer *w, uint32_t idv, uint8_t kind, int top_is_event)
{
    if (g_step_w && w != g_step_w)
        return; /* another thread: it runs on */
    w->next_reading = 0; /* the stepping thread's every event comes here */
    uint32_t id = idv & ULMA_ID_MASK;
    if (kind < ULMA_CALL || kind > ULMA_THROW || (idv & ULMA_ID_HIDDEN) || ulma_id_off(id) ||
        ulma_symbols_hidden(id))
        return; /* calls and returns of the program's Python functions traced now */
    int64_t depth = is_entering(kind) ? ++g_step_cur : g_step_cur--;
    if (g_step_mode == STEP_OVER && depth > g_step_depth)
        return;
    g_step_w = w;
    step_block(w, idv, kind, top_is_event);
    if (g_session && g_step_mode != STEP_IDLE && g_step_w == w)
        w->next_reading = 0;
}


/* ---- the control channel (records.h) ---------------------------------- */

/* our own count (what the header says is not trusted); written under the
 * GIL, read by the doorbell thread too */
static _Atomic uint64_t g_ctl_acked;
static uint64_t g_poll_ticks = UINT64_MAX; /* without CPU readings: the slow path this often */

/* Switches function `id` off or on.  1 if it changed, 0 if it already was
 * so, -1 if refused (no such id, or memory ran out). */
static int control_switch(uint32_t id, int off)
{
    uint32_t known = atomic_load_explicit(&g_session->next_symbol_id, memory_order_relaxed);
    if (id == 0 || id >= known || id >= ULMA_ID_MASK || ulma_symbols_hidden(id))
        return -1;
    if (ulma_id_off(id) == off)
        return 0;
    return ulma_symbols_set_off(id, off) < 0 ? -1 : 1;
}

/* INTERVAL: the CPU clock read every `us` from now on, by every thread (each
 * takes its slow path at its next event, where the new spacing starts).
 * 0 if applied, -1 if refused (out of range, or no readings in this run). */
static int control_interval(uint32_t us)
{
    if (us > ULMA_MAX_CPU_INTERVAL_US || ulma_readings_interval(us) < 0)
        return -1;
    atomic_store_explicit(&g_session->cpu_interval_us, us, memory_order_relaxed);
    for (uint32_t i = 0; i < g_writers_len; i++) {
        ulma_writer *o = g_writers[i];
        if (o && o->generation == g_generation)
            o->next_reading = 0;
    }
    return 0;
}

/*
 * Applies the commands posted since the last poll, in the slow path of the
 * thread that polls (under the GIL).  What "off" means:
 *   - every code object of the function finds, at its next event, that it is
 *     off (a new g_code_gen: all slots go stale and are interned again), and
 *     writes nothing from then on; on sys.monitoring its callbacks return
 *     DISABLE, so the interpreter stops calling them (an ON restarts them:
 *     sys.monitoring.restart_events, which also re-arms what other tools
 *     disabled -- they disable it again at its next event);
 *   - sys.monitoring: a return is not tied to its call, so every thread
 *     restates its stack at its next event (a SYNC group with
 *     ULMA_SYNC_RESTATE) without the frames that are off now: no frame is
 *     left open in the replay, none is closed twice;
 *   - PEP 523: a frame's exit is written if and only if its entry was (the
 *     evaluator keeps the decision on its C stack), so frames open at the
 *     switch end as they began and nothing is restated.
 * Returns whether something changed.
 */
static int control_apply(uint64_t t)
{
    ulma_control *c = g_ctl;
    uint64_t posted = atomic_load_explicit(&c->posted, memory_order_acquire);
    int changed = 0, restart = 0;
    uint64_t acked = atomic_load_explicit(&g_ctl_acked, memory_order_relaxed);
    uint64_t todo = posted - acked;
    if (todo > ULMA_CONTROL_SLOTS) {
        /* more than the channel holds, or `posted` went back: garbage */
        atomic_fetch_add_explicit(&c->refused, 1, memory_order_relaxed);
        atomic_store_explicit(&g_ctl_acked, posted, memory_order_relaxed);
        atomic_store_explicit(&c->acked, posted, memory_order_release);
        return 0;
    }
    for (uint64_t k = acked + 1; k <= posted; k++) {
        ulma_control_cmd *cmd = &c->cmd[(k - 1) & (ULMA_CONTROL_SLOTS - 1)];
        uint64_t seq = atomic_load_explicit(&cmd->seq, memory_order_acquire);
        uint32_t op = cmd->op, arg = cmd->arg;
        int rc = -1;
        if (seq == k && (op == ULMA_CTL_OFF || op == ULMA_CTL_ON))
            rc = control_switch(arg, op == ULMA_CTL_OFF);
        else if (seq == k && op == ULMA_CTL_INTERVAL)
            rc = control_interval(arg);
        else if (seq == k)
            rc = control_step(op) < 0 ? -1 : 0; /* single-step: nothing to restate */
        if (rc > 0) {
            changed = 1;
            restart |= op == ULMA_CTL_ON;
        }
        atomic_store_explicit(&cmd->done_ticks, t, memory_order_relaxed);
        atomic_store_explicit(&cmd->status, rc < 0 ? ULMA_CTL_REFUSED : ULMA_CTL_APPLIED,
                              memory_order_relaxed);
        if (rc < 0)
            atomic_fetch_add_explicit(&c->refused, 1, memory_order_relaxed);
        atomic_store_explicit(&g_ctl_acked, k, memory_order_relaxed);
        atomic_store_explicit(&c->acked, k, memory_order_release);
    }
    if (!changed)
        return 0;
    next_code_gen();
    if (g_engine == ULMA_ENGINE_MONITORING) {
        if (restart)
            ulma_engine_monitoring_restart();
        /* every thread restates its stack at its next event */
        for (uint32_t i = 0; i < g_writers_len; i++) {
            ulma_writer *o = g_writers[i];
            if (o && o->generation == g_generation && !o->ring->need_sync) {
                o->ring->need_sync = 1;
                o->ring->sync_flags = ULMA_SYNC_RESTATE;
                o->next_reading = 0;
                o->retry_tick = 0;
            }
        }
    }
    return 1;
}

/* The slow path's look at the channel: one load when nothing is posted. */
static inline int control_poll(uint64_t t)
{
    ulma_control *c = g_ctl;
    if (ULMA_LIKELY(!c || atomic_load_explicit(&c->posted, memory_order_relaxed) ==
                                  atomic_load_explicit(&g_ctl_acked, memory_order_relaxed)))
        return 0;
    return control_apply(t);
}

/* ---- the doorbell: commands applied while no traced function runs ------ */

static pthread_t g_bell_thread;
static atomic_int g_bell_stop;
static _Atomic pid_t g_bell_tid; /* its kernel thread id, once it runs */

static int finalizing(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing();
#else
    return _Py_IsFinalizing();
#endif
}

/* The waiter: woken by the monitor after it posted, it takes the GIL (the
 * program's threads give it up every switch interval) and applies the
 * commands, as a slow path would.  It runs no Python code and is never
 * traced (ulma_agent_ignore_thread). */
static void *bell_main(void *arg)
{
    ulma_control *c = arg;
    int ignored = 0;
    atomic_store_explicit(&g_bell_tid, (pid_t)syscall(SYS_gettid), memory_order_release);
    for (;;) {
        uint32_t seen = atomic_load_explicit(&c->doorbell, memory_order_acquire);
        if (atomic_load_explicit(&g_bell_stop, memory_order_acquire))
            return NULL;
        if (atomic_load_explicit(&c->posted, memory_order_acquire) !=
                atomic_load_explicit(&g_ctl_acked, memory_order_relaxed) &&
            !finalizing()) {
            PyGILState_STATE st = PyGILState_Ensure();
            if (!ignored) {
                ulma_agent_ignore_thread();
                ignored = 1;
            }
            if (g_session && g_ctl && !atomic_load_explicit(&g_bell_stop, memory_order_acquire))
                control_poll(ulma_ticks(g_clock));
            PyGILState_Release(st);
        }
        /* a shared futex (the monitor is another process); at most 1 s asleep,
         * so a stop or a lost wake-up is seen anyway */
        struct timespec ts = {1, 0};
        syscall(SYS_futex, &c->doorbell, FUTEX_WAIT, seen, &ts, NULL, 0);
    }
}

/* Starts the waiter, every signal blocked in it: they stay the program's. */
static void bell_start(ulma_control *c)
{
    sigset_t all, old;
    sigfillset(&all);
    atomic_store(&g_bell_stop, 0);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    g_bell_running = pthread_create(&g_bell_thread, NULL, bell_main, c) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void bell_stop(ulma_control *c)
{
    if (!g_bell_running)
        return;
    atomic_store_explicit(&g_bell_stop, 1, memory_order_release);
    atomic_fetch_add_explicit(&c->doorbell, 1, memory_order_release);
    syscall(SYS_futex, &c->doorbell, FUTEX_WAKE, 1, NULL, NULL, 0);
    Py_BEGIN_ALLOW_THREADS
    pthread_join(g_bell_thread, NULL);
    Py_END_ALLOW_THREADS
    g_bell_running = 0;
}

/*
 * Around the program's fork() (os.register_at_fork before / after_in_parent,
 * under the GIL): the waiter is not there while the process forks.  Python
 * 3.12+ warns "This process is multi-threaded, use of fork() may lead to
 * deadlocks" when /proc/self/stat counts more than one thread at a fork: a
 * program with one thread must not get that warning because ulma's waiter
 * runs.  pthread_join returns when the thread cleared its tid, a little
 * before the kernel stops counting it: wait (at most ~10 ms) until its
 * /proc/self/task entry is gone.  after_in_parent starts the waiter again,
 * but not at once: 3.13 warns after the after_in_parent handlers, 3.12
 * before them.  It marks when (1 ms on), and the slow path of the first
 * event after that starts it (bell_resume_if_due).  Until then commands
 * wait for a slow path.
 */
static uint64_t g_bell_due = UINT64_MAX; /* while paused: the tick after which it starts again */

void ulma_agent_fork_prepare(void)
{
    if (!g_bell_running || !g_ctl)
        return;
    pid_t tid = atomic_load_explicit(&g_bell_tid, memory_order_acquire);
    bell_stop(g_ctl);
    g_bell_paused = 1;
    g_bell_due = UINT64_MAX;
    if (tid <= 0)
        return;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d", (int)tid);
    struct stat st;
    for (int i = 0; i < 1000 && stat(path, &st) == 0; i++) {
        struct timespec pause = {0, 10000};
        nanosleep(&pause, NULL);
    }
}

void ulma_agent_fork_parent(void)
{
    if (!g_bell_paused || !g_session)
        return;
    double ns_per_tick = g_session->ns_per_tick_hint > 0 ? g_session->ns_per_tick_hint : 1.0;
    g_bell_due = ulma_ticks(g_clock) + (uint64_t)(1e6 / ns_per_tick);
}

/* From the slow path (under the GIL), once paused: the waiter again when due. */
static void bell_resume_if_due(uint64_t t)
{
    if (t < g_bell_due)
        return;
    g_bell_paused = 0;
    g_bell_due = UINT64_MAX;
    if (g_session && g_ctl && g_engine)
        bell_start(g_ctl);
}

/* While a ring stays full (a monitor stopped or slow), each event is only
 * counted: no CPU reading, no stack walk, no store the monitor reads.  Room
 * is looked for again at most this often (a restatement needs at least
 * ULMA_MIN_RESTATEMENT records: SYNC begin, two readings, the event). */
#define ULMA_DROP_RETRY_NS 50000.0
#define ULMA_MIN_RESTATEMENT 4u
static uint64_t g_retry_ticks = 1;

/* The ring's drop count: its producer alone writes it, so no atomic add. */
static inline void count_drop(ulma_ring_header *r)
{
    atomic_store_explicit(&r->dropped, atomic_load_explicit(&r->dropped, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/*
 * The rare paths: a full ring, a stack to restate (the thread's first event,
 * or the first event after drops), or a CPU reading due.  A restatement is a
 * SYNC group giving the stack as it was just before `kind`, so the monitor
 * rebuilds it and goes on; it always comes with a reading (a new baseline).
 * The event after a reading is stamped anew, so the gap is the reading's cost.
 */
/* (inlined in its two callers: the common one, with no note, pays nothing for notes) */
static inline __attribute__((always_inline)) void emit_slow(ulma_writer *w, uint64_t t, uint32_t idv,
                                                            uint8_t kind, uint8_t flags, uint16_t aux,
                                                            int top_is_event, uint64_t note);
static ulma_writer g_scratch; /* calibration's writer (below): never stops */

/* Is there room for `need` records at pos?  The monitor's read position is
 * read again only when the cached one says no. */
static inline int room_for(ulma_writer *w, ulma_ring_header *r, uint64_t pos, uint64_t need)
{
    uint64_t cap = w->mask + 1;
    if (pos - r->tail_cache + need > cap)
        set_tail(w, r, atomic_load_explicit(&r->read_pos, memory_order_acquire));
    return pos - r->tail_cache + need <= cap;
}

/* After drops (need_sync), what becomes of an event: AFTER_DROPS_GO (room
 * for a restatement came back), _COUNTED (not yet time to look for room:
 * counted, nothing else) or _FULL (still no room: drop it). */
enum { AFTER_DROPS_GO, AFTER_DROPS_COUNTED, AFTER_DROPS_FULL };
static inline int after_drops(ulma_writer *w, ulma_ring_header *r, uint64_t t, uint64_t pos)
{
    if (!r->need_sync)
        return AFTER_DROPS_GO;
    if (t < w->retry_tick) {
        count_drop(r);
        return AFTER_DROPS_COUNTED;
    }
    set_tail(w, r, atomic_load_explicit(&r->read_pos, memory_order_acquire));
    return pos - r->tail_cache + ULMA_MIN_RESTATEMENT > w->mask + 1 ? AFTER_DROPS_FULL : AFTER_DROPS_GO;
}

/* A full ring: the event is counted as dropped, the thread's next events
 * are only counted for a while, and the first one to find room restates
 * the stack. */
static void drop_event(ulma_writer *w, ulma_ring_header *r, uint64_t t, uint64_t pos)
{
    count_drop(r);
    r->need_sync = 1;
    w->next_reading = 0; /* the next events take the slow path ... */
    w->retry_tick = t + g_retry_ticks; /* ... and are only counted until then */
    r->sync_flags = ULMA_SYNC_AFTER_DROP;
    /* Let the monitor see everything written so far, so it frees room. */
    atomic_store_explicit(&r->published, pos, memory_order_release);
}

void ulma_emit_slow(ulma_writer *w, uint64_t t, uint32_t idv, uint8_t kind, uint8_t flags,
                    uint16_t aux, int top_is_event)
{
    emit_slow(w, t, idv, kind, flags, aux, top_is_event, 0);
    if (ULMA_UNLIKELY(g_step_mode != STEP_IDLE) && w != &g_untraced && w != &g_scratch && g_session &&
        kind <= ULMA_C_RETURN) /* native scopes are not stepped */
        step_event(w, idv, kind, top_is_event); /* after the event is written */
}

/* Rare (a task's step starts or ends): the slow path, which writes the note
 * and the event side by side or neither. */
void ulma_emit_noted(ulma_writer *w, uint64_t t, uint32_t idv, uint8_t kind, uint8_t flags, uint16_t aux,
                     int top_is_event, uint64_t note)
{
    emit_slow(w, t, idv, kind, flags, aux, top_is_event, note);
    if (ULMA_UNLIKELY(g_step_mode != STEP_IDLE) && w != &g_untraced && w != &g_scratch && g_session)
        step_event(w, idv, kind, top_is_event);
}

/* The event at pos, with its note (if any) right before it; the next position. */
static inline uint64_t put_event(ulma_writer *w, uint64_t pos, uint64_t t, uint32_t idv, uint8_t kind,
                                 uint8_t flags, uint16_t aux, uint64_t note)
{
    if (note)
        put(w, pos++, t, (uint32_t)note, ULMA_TASK, (uint8_t)(note >> 32), 0);
    put(w, pos++, t, idv, kind, flags, aux);
    return pos;
}

static inline __attribute__((always_inline)) void emit_slow(ulma_writer *w, uint64_t t, uint32_t idv,
                                                            uint8_t kind, uint8_t flags, uint16_t aux,
                                                            int top_is_event, uint64_t note)
{
    if (ULMA_UNLIKELY(w == &g_untraced)) { /* a thread with no ring: counted only */
        untraced_count(w, 1);
        return;
    }
    if (ULMA_UNLIKELY(g_bell_paused))
        bell_resume_if_due(t);
    static uint32_t ids[ULMA_MAX_SYNC_FRAMES + 1];
    ulma_ring_header *r = w->ring;
    uint64_t pos = atomic_load_explicit(&r->write_pos, memory_order_relaxed);
    if (ULMA_UNLIKELY(w->py_resync)) { /* the Python frames a restatement without the GIL left out */
        w->py_resync = 0;
        r->need_sync = 1;
    }
    uint64_t cap = w->mask + 1;
    ulma_event reading[ULMA_READINGS_MAX];
    uint32_t nread = 0;
    uint64_t t_event = t;
    int after = after_drops(w, r, t, pos);
    if (after == AFTER_DROPS_COUNTED) /* still dropping: not yet time to look for room */
        return;
    if (after == AFTER_DROPS_FULL)
        goto drop; /* still full: no reading, no walk */
    /* the control channel, while the ring has room (its waiter thread
     * applies commands meanwhile); may set need_sync (a restatement) */
    if (ULMA_UNLIKELY(control_poll(t)) && g_engine == ULMA_ENGINE_MONITORING &&
        ulma_id_off(idv & ULMA_ID_MASK) && kind < ULMA_C_CALL)
        return; /* its function was just switched off: the next event restates the stack */
    if (g_reading_ticks && (r->need_sync || t >= w->next_reading))
        nread = ulma_take_reading_for(w, t, r->need_sync, reading, &t_event);

    if (!r->need_sync) {
        if (!room_for(w, r, pos, (uint64_t)nread + 1 + (note != 0)))
            goto drop;
        for (uint32_t i = 0; i < nread; i++)
            w->events[pos++ & w->mask] = reading[i];
        pos = put_event(w, pos, t_event, idv, kind, flags, aux, note);
        atomic_store_explicit(&r->write_pos, pos, memory_order_release);
        atomic_store_explicit(&r->published, pos, memory_order_release);
        if (!g_reading_ticks && t >= w->next_reading) /* a poll of the channel was due */
            w->next_reading = g_poll_ticks == UINT64_MAX ? UINT64_MAX : t + g_poll_ticks;
        return;
    }
    if (w->in_slow)
        goto drop; /* an event from inside our own stack walk (cannot happen today) */
    w->in_slow = 1;

    /* Under the GIL, so the static buffer is not shared between threads. */
    uint32_t limit = ULMA_MAX_SYNC_FRAMES;
    if (cap / 2 < (uint64_t)limit + 4)
        limit = cap / 2 > 4 ? (uint32_t)(cap / 2 - 4) : 0;
    int truncated = 0;
    uint32_t n = walk_stack(w, ids, limit, &truncated);
    /* Make the walk describe the stack *before* this event.  A C function
     * has no interpreter frame: before its call the top is its caller, before
     * its return it is on top of what the walk sees. */
    if (kind == ULMA_C_CALL) {
        /* the walk is right as it is */
    } else if (kind == ULMA_C_RETURN || (!top_is_event && !is_entering(kind))) {
        memmove(ids + 1, ids, (size_t)n * sizeof ids[0]);
        ids[0] = idv;
        n++;
    } else if (top_is_event && is_entering(kind) && n > 0) {
        memmove(ids, ids + 1, (size_t)(n - 1) * sizeof ids[0]);
        n--;
    }
    w->in_slow = 0;

    if (!room_for(w, r, pos, (uint64_t)n + 2 + nread + (note != 0)))
        goto drop;
    /* (frames through put: an excluded function's id bit becomes its frame's flag) */
    uint8_t gflags = ULMA_SYNC_BEGIN | (truncated ? ULMA_SYNC_TRUNCATED : 0) | r->sync_flags;
    put(w, pos++, t, 0, ULMA_SYNC, gflags, (uint16_t)n);
    for (uint32_t i = n; i-- > 0;) /* outermost first */
        put(w, pos++, t, ids[i], ULMA_SYNC, ULMA_SYNC_FRAME, 0);
    for (uint32_t i = 0; i < nread; i++)
        w->events[pos++ & w->mask] = reading[i];
    pos = put_event(w, pos, t_event, idv, kind, flags, aux, note);
    atomic_store_explicit(&r->write_pos, pos, memory_order_release);
    r->need_sync = 0;
    r->sync_flags = 0;
    if (!g_reading_ticks)
        w->next_reading = g_poll_ticks == UINT64_MAX ? UINT64_MAX : t + g_poll_ticks; /* else take_reading set it */
    atomic_store_explicit(&r->published, pos, memory_order_release);
    return;

drop:
    drop_event(w, r, t, pos);
}

/* ---- without the GIL (native scopes) ---------------------------------- */

/* The deepest restatement written without the GIL: the scopes' stack. */
#define NOGIL_SYNC_MAX ULMA_SCOPE_STACK

void ulma_emit_nogil(ulma_writer *w, uint64_t t, uint32_t idv, uint8_t kind, uint8_t flags, uint16_t aux)
{
    ulma_ring_header *r = w->ring;
    uint64_t pos = atomic_load_explicit(&r->write_pos, memory_order_relaxed);
    ulma_event reading[ULMA_READINGS_MAX];
    uint32_t nread = 0;
    uint64_t t_event = t;
    int after = after_drops(w, r, t, pos);
    if (after == AFTER_DROPS_COUNTED)
        return;
    if (after == AFTER_DROPS_FULL)
        goto drop;
    /* (while py_resync holds next_reading at 0, a reading is due by its own interval) */
    if (g_reading_ticks && (r->need_sync || (w->py_resync ? t >= w->reading_tick + g_reading_ticks
                                                             : t >= w->next_reading)))
        nread = ulma_take_reading_for(w, t, r->need_sync, reading, &t_event);
    int sync = r->need_sync != 0;
    /* a restatement states the open scopes, outermost first (the Python frames need the GIL) */
    uint32_t n = !sync ? 0 : w->scope_depth < NOGIL_SYNC_MAX ? w->scope_depth : NOGIL_SYNC_MAX;
    if (!room_for(w, r, pos, (sync ? (uint64_t)n + 1 : 0) + nread + 1))
        goto drop;
    if (sync) {
        int py = w->tstate != NULL; /* a Python thread: its frames are left out until it has the GIL */
        pos = ulma_ring_put_sync(w->events, w->mask, pos, t, r->sync_flags | (py ? ULMA_SYNC_TRUNCATED : 0),
                                 w->scope_ids, n);
        r->need_sync = 0;
        r->sync_flags = 0;
        if (py)
            w->py_resync = 1;
    }
    for (uint32_t i = 0; i < nread; i++)
        w->events[pos++ & w->mask] = reading[i];
    put(w, pos++, t_event, idv, kind, flags, aux);
    atomic_store_explicit(&r->write_pos, pos, memory_order_release);
    atomic_store_explicit(&r->published, pos, memory_order_release);
    if (w->py_resync)
        w->next_reading = 0; /* every event takes the slow path until one with the GIL restates */
    else if (!g_reading_ticks && t >= w->next_reading)
        w->next_reading = g_poll_ticks == UINT64_MAX ? UINT64_MAX : t + g_poll_ticks;
    return;

drop:
    drop_event(w, r, t, pos);
}

/* ---- calibration ------------------------------------------------------ */

/* A private ring the calibration writes into: the probe's full cost is paid
 * (clock, record, publish) and nothing reaches the session. */
#define SCRATCH_EVENTS (1u << 18)
static ulma_writer g_scratch;
static ulma_ring_header *g_scratch_ring;
static ulma_writer *g_saved_writer;
static uint32_t g_saved_gen;
static int g_scratch_on;

int ulma_agent_scratch(int on)
{
    if (on) {
        if (!g_session) {
            PyErr_SetString(PyExc_RuntimeError, "the agent is not running");
            return -1;
        }
        if (g_scratch_on)
            return 0;
        if (!g_scratch_ring &&
            !(g_scratch_ring = aligned_alloc(64, ULMA_RING_HEADER_BYTES + SCRATCH_EVENTS * sizeof(ulma_event)))) {
            PyErr_NoMemory();
            return -1;
        }
        memset(g_scratch_ring, 0, sizeof *g_scratch_ring);
        memset(&g_scratch, 0, sizeof g_scratch);
        g_scratch.ring = g_scratch_ring;
        g_scratch.events = ulma_ring_events(g_scratch_ring);
        g_scratch.mask = SCRATCH_EVENTS - 1;
        g_scratch.room_end = SCRATCH_EVENTS; /* tail 0 */
        g_scratch.next_reading = UINT64_MAX; /* readings are measured on their own */
        g_scratch.shared = 0; /* one thread's (the calibrating one): native scopes too */
        g_scratch.generation = g_generation;
        g_saved_writer = tls_writer;
        g_saved_gen = tls_writer_gen;
        tls_writer = &g_scratch;
        tls_writer_gen = g_generation;
        g_scratch_on = 1;
        if (g_native_calls && g_engine == ULMA_ENGINE_PEP523)
            ulma_engine_pep523_thread_claimed(); /* calibrate with the profile function on */
    } else if (g_scratch_on) {
        tls_writer = g_saved_writer;
        tls_writer_gen = g_saved_gen;
        g_scratch_on = 0;
    }
    return 0;
}

int ulma_agent_pause(int paused)
{
    if (!g_session)
        return 0;
    if (g_engine == ULMA_ENGINE_MONITORING)
        return ulma_engine_monitoring_pause(paused);
    if (g_engine == ULMA_ENGINE_PEP523)
        return ulma_engine_pep523_pause(paused);
    return 0;
}

/* Published once the calibration is done: the program's own code starts
 * now, which is where its run time starts too. */
void ulma_agent_set_scope_probe_ps(uint32_t begin_ps, uint32_t end_ps)
{
    if (g_session) {
        atomic_store_explicit(&g_session->scope_probe_ps, begin_ps, memory_order_relaxed);
        atomic_store_explicit(&g_session->scope_end_probe_ps, end_ps, memory_order_relaxed);
    }
}

void ulma_agent_set_probe_ps(uint32_t ps)
{
    if (g_session) {
        atomic_store_explicit(&g_session->probe_ps, ps, memory_order_relaxed);
        /* release: a monitor that sees the start sees the probe cost (module.c agent_info) */
        atomic_store_explicit(&g_session->program_start_ticks, ulma_ticks(g_clock),
                              memory_order_release);
    }
}

/* ---- lifecycle ---------------------------------------------------- */

static void recursion_budget(PyThreadState *ts, int delta)
{
#if PY_VERSION_HEX >= 0x030C0000
    ts->py_recursion_remaining += delta;
#else
    ts->recursion_remaining += delta;
#endif
}

/* Unmaps the session and closes our descriptor (if it still is ours). */
/* munmap, or -- if a thread without the GIL may still be writing there
 * (g_nogil_used) -- private zero pages over the same range, so that its
 * last writes land nowhere; the range stays reserved, the memfd is let go. */
static void unmap_or_void(void *p, size_t len)
{
    if (atomic_load_explicit(&g_nogil_used, memory_order_relaxed) &&
        mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) !=
            MAP_FAILED)
        return;
    munmap(p, len);
}

static void session_unmap(void *base)
{
    for (uint32_t k = 0; g_chunks && k < g_nchunks; k++)
        if (g_chunks[k]) {
            uint32_t first = k * g_chunk_slots;
            uint32_t n = g_writers_len - first < g_chunk_slots ? g_writers_len - first : g_chunk_slots;
            unmap_or_void(g_chunks[k], (size_t)n * g_stride);
        }
    free(g_chunks);
    g_chunks = NULL;
    g_nchunks = 0;
    free(g_writers);
    g_writers = NULL;
    g_writers_len = 0;
    if (own_fd_intact())
        close(g_fd);
    g_fd = -1;
    if (base)
        unmap_or_void(base, g_head_bytes);
    g_head_bytes = 0;
    atomic_store_explicit(&g_nogil_used, 0, memory_order_relaxed);
}

/* Does the layout in `p` fit in `size` bytes?  Every offset and size is
 * first bounded by total_bytes (itself at most the file's size, below 2**63),
 * so no sum or product below can wrap around. */
static int layout_fits(const ulma_session_header *p, uint64_t size)
{
    uint64_t page = 4096, total = p->total_bytes;
    if (total > size || p->rings_offset > total || p->symtab_offset > total || p->symtab_bytes > total ||
        p->freeq_offset > total || p->ring_stride > total)
        return 0;
    return p->max_threads != 0 && p->chunk_slots != 0 && p->ring_events >= 2 &&
           !(p->ring_events & (p->ring_events - 1)) && p->freeq_slots >= p->max_threads &&
           !(p->freeq_slots & (p->freeq_slots - 1)) && p->rings_offset % page == 0 &&
           p->ring_stride % page == 0 && p->freeq_offset >= ULMA_HEADER_BYTES && p->freeq_offset % 8 == 0 &&
           p->ring_stride >= ULMA_RING_HEADER_BYTES &&
           (p->ring_stride - ULMA_RING_HEADER_BYTES) / sizeof(ulma_event) >= p->ring_events &&
           p->freeq_offset + (uint64_t)p->freeq_slots * sizeof(uint32_t) <= p->symtab_offset &&
           p->symtab_offset + p->symtab_bytes <= p->rings_offset &&
           (total - p->rings_offset) / p->max_threads >= p->ring_stride;
}

/* Checks the session's layout, keeps our own descriptor of it and maps
 * its header, free queue and symbol table (rings come later, by chunk).
 * Whoever handed the memfd over also holds it: were it shrunk under our
 * mappings, the program's next event would die of SIGBUS.  So it must be
 * sealed against shrinking (the monitor seals it at creation, session.c)
 * and, sealed, hold every byte its header describes, before anything is
 * mapped.  Returns the header, or NULL with an exception. */
static ulma_session_header *session_map(int fd, const ulma_session_header *p)
{
    /* a descriptor above the program's usual numbers: its own first
     * descriptors are numbered as under plain python */
    struct rlimit rl;
    int low = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? (int)(rl.rlim_cur / 2) : 512;
    if (low > 512)
        low = 512;
    if (low < 3)
        low = 3;
    int own = fcntl(fd, F_DUPFD_CLOEXEC, low);
    if (own < 0)
        own = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    struct stat st;
    int seals = own < 0 ? -1 : fcntl(own, F_GET_SEALS);
    if (own < 0 || fstat(own, &st) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        if (own >= 0)
            close(own);
        return NULL;
    }
    const char *refused = NULL;
    if (seals < 0 || !(seals & F_SEAL_SHRINK))
        refused = "the ulma session is not a memfd sealed against shrinking";
    else if (st.st_size < 0 || !layout_fits(p, (uint64_t)st.st_size))
        refused = "the ulma session header makes no sense (or describes more than its memfd holds)";
    if (refused) {
        PyErr_SetString(PyExc_RuntimeError, refused);
        close(own);
        return NULL;
    }
    g_fd = own;
    g_fd_dev = (uint64_t)st.st_dev;
    g_fd_ino = (uint64_t)st.st_ino;
    g_writers_len = p->max_threads;
    g_chunk_slots = p->chunk_slots;
    g_nchunks = (p->max_threads + p->chunk_slots - 1) / p->chunk_slots;
    g_stride = p->ring_stride;
    g_rings_offset = p->rings_offset;
    g_ring_events = p->ring_events;
    g_freeq_offset = p->freeq_offset;
    g_freeq_slots = p->freeq_slots;
    g_head_bytes = p->rings_offset;
    g_writers = calloc(g_writers_len, sizeof *g_writers);
    g_chunks = calloc(g_nchunks, sizeof *g_chunks);
    void *base = g_writers && g_chunks
                     ? mmap(NULL, g_head_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, own, 0)
                     : MAP_FAILED;
    if (base == MAP_FAILED) {
        if (g_writers && g_chunks)
            PyErr_SetFromErrno(PyExc_OSError);
        else
            PyErr_NoMemory();
        session_unmap(NULL);
        return NULL;
    }
    return base;
}

int ulma_agent_start(int fd, const ulma_agent_options *o)
{
    int engine = o->engine, empty = o->empty, recursion_adjust = o->recursion_adjust;
    PyObject *hidden_prefix = o->hidden_prefix, *boundary = o->boundary;
    if (g_session) {
        PyErr_SetString(PyExc_RuntimeError, "ulma agent is already running");
        return -1;
    }
    ulma_agent_stop(0); /* the hooks of a session detached by a fork, if any */
    if (engine == ULMA_ENGINE_MONITORING && !empty && ulma_engine_pep523_buried())
        engine = ULMA_ENGINE_PEP523;
    if (!g_atfork_ready && pthread_atfork(NULL, NULL, at_fork_child) == 0)
        g_atfork_ready = 1;
    ulma_session_header probe;
    if (pread(fd, &probe, sizeof probe, 0) != (ssize_t)sizeof probe) {
        PyErr_SetString(PyExc_RuntimeError, "cannot read the ulma session header");
        return -1;
    }
    if (probe.magic != ULMA_SESSION_MAGIC || probe.version != ULMA_FORMAT_VERSION) {
        PyErr_Format(PyExc_RuntimeError,
                     "the ulma session is from another ulma version (format %u, this agent reads %u)",
                     probe.magic == ULMA_SESSION_MAGIC ? probe.version : 0u, ULMA_FORMAT_VERSION);
        return -1;
    }
    ulma_session_header *h = session_map(fd, &probe);
    if (!h)
        return -1;
    if (g_extra_index < 0) {
        #if PY_VERSION_HEX >= 0x030C0000
        g_extra_index = PyUnstable_Eval_RequestCodeExtraIndex(NULL);
#else
        g_extra_index = _PyEval_RequestCodeExtraIndex(NULL);
#endif
        if (g_extra_index < 0) {
            session_unmap(h);
            PyErr_SetString(PyExc_RuntimeError, "no free co_extra slot for ulma");
            return -1;
        }
    }
    if (!g_thread_key_ready && pthread_key_create(&g_thread_key, on_thread_exit) == 0)
        g_thread_key_ready = 1;
    if (ulma_symbols_configure(hidden_prefix, o->exclude, o->only) < 0) {
        session_unmap(h);
        return -1;
    }
    ulma_symbols_slot_marks(engine == ULMA_ENGINE_PEP523 && !empty);
    /* ulma's bootstrap frame bounds every stack we restate.  It is executing
     * (and stays so during the run), so its interpreter frame is live.  Its
     * frames sit under the program, where plain python has none: their count
     * goes back to the recursion budget so the program hits RecursionError
     * at exactly the depth it would unprofiled.  Attaching to a running
     * program has no boundary: whole stacks are restated. */
    g_boundary = NULL;
    g_boot_frames = 0;
    g_boot_thread = NULL;
    if (boundary && boundary != Py_None) {
        g_boundary = ((PyFrameObject *)boundary)->f_frame;
        for (const _PyInterpreterFrame *f = g_boundary; f; f = f->previous)
            if (!_PyFrame_IsIncomplete((_PyInterpreterFrame *)f))
                g_boot_frames++;
        g_boot_frames += recursion_adjust;
        g_boot_thread = PyThreadState_GET();
        recursion_budget(g_boot_thread, g_boot_frames);
    }
    g_native_calls = o->native_calls && !empty;
    ulma_readings_configure(h->ns_per_tick_hint, empty ? 0 : o->cpu_interval_us);
    g_retry_ticks = h->ns_per_tick_hint > 0 ? (uint64_t)(ULMA_DROP_RETRY_NS / h->ns_per_tick_hint) : 1;
    if (!g_retry_ticks)
        g_retry_ticks = 1;
    atomic_store_explicit(&h->cpu_interval_us, g_reading_ticks ? o->cpu_interval_us : 0,
                          memory_order_relaxed);
    atomic_store_explicit(&h->agent_flags,
                          (g_reading_ticks ? ULMA_AGENT_CPU_SAMPLES : 0u) |
                              (g_native_calls ? ULMA_AGENT_NATIVE_CALLS : 0u),
                          memory_order_relaxed);
    /* the channel, if the monitor made one this agent reads; we poll it
     * every CPU reading, or every ULMA_CONTROL_POLL_US without them */
    ulma_control *ctl = ulma_session_control(h);
    g_ctl = ctl->version == ULMA_CONTROL_VERSION && !empty ? ctl : NULL;
    atomic_store_explicit(&g_ctl_acked, g_ctl ? atomic_load_explicit(&ctl->acked, memory_order_acquire) : 0,
                          memory_order_relaxed);
    g_poll_ticks = UINT64_MAX;
    if (g_ctl && !g_reading_ticks && h->ns_per_tick_hint > 0) {
        g_poll_ticks = (uint64_t)(ULMA_CONTROL_POLL_US * 1000.0 / h->ns_per_tick_hint);
        if (!g_poll_ticks)
            g_poll_ticks = 1;
    }
    g_clock = h->clock_source;
    g_tstates_counter = ulma_tstates_counter();
    if (!g_tstates_counter)
        g_tstates_counter = &g_no_tstates;
    g_session = h;
    next_generation();
    untraced_setup();
    atomic_store_explicit(&h->agent_pid, (uint32_t)getpid(), memory_order_relaxed);
    atomic_store_explicit(&h->engine, (uint32_t)engine, memory_order_relaxed);
    atomic_store_explicit(&h->agent_state, ULMA_AGENT_RUNNING, memory_order_release);

    if (!empty && o->objects && o->objects != Py_None)
        ulma_objects_check(); /* (before the hooks: it runs a few lines of Python) */
    int rc = engine == ULMA_ENGINE_MONITORING ? ulma_engine_monitoring_start(empty, g_native_calls)
                                              : ulma_engine_pep523_start(empty, g_native_calls);
    if (rc < 0) {
        g_engine = 0;
        ulma_agent_stop(1);
        return -1;
    }
    g_engine = engine;
    if (!empty && o->objects && o->objects != Py_None && ulma_objects_start(o->objects) < 0) {
        ulma_agent_stop(1);
        return -1;
    }
    if (g_ctl)
        bell_start(g_ctl);
    if (!empty)
        ulma_scopes_start(); /* native scopes' hooks point at the runtime */
    return 0;
}

void ulma_agent_stop(int flush)
{
    ulma_session_header *h = g_session;
    if (!h) {
        /* a forked child: unhook and unmap what at_fork_child detached */
        if (!(h = g_forked_from))
            return;
        flush = 0;
    }
    g_forked_from = NULL;
    ulma_scopes_stop(); /* native scopes' hooks cleared: no new scope begins */
    ulma_objects_stop();
    step_reset(); /* a stopped thread goes (it finds the session gone) */
    g_step_blocked = 0;
    if (g_ctl)
        bell_stop(g_ctl);
    g_bell_paused = 0;
    if (g_engine == ULMA_ENGINE_MONITORING)
        ulma_engine_monitoring_stop();
    else if (g_engine == ULMA_ENGINE_PEP523)
        ulma_engine_pep523_stop();
    g_engine = 0;
    /* Hooks are off and we hold the GIL: no writer is mid-event.  A forked
     * child does not flush: the rings belong to its parent (and it never
     * gets here with g_session set: at_fork_child detached it). */
    pthread_mutex_lock(&g_exit_lock); /* threads may be exiting meanwhile */
    if (flush) {
        for (uint32_t i = 0; i < g_writers_len; i++)
            if (g_writers[i])
                writer_finish(g_writers[i]);
        untraced_count(&g_untraced, 0);
        atomic_store_explicit(&h->agent_state, ULMA_AGENT_STOPPED, memory_order_release);
    }
    g_session = NULL;
    g_ctl = NULL;
    next_generation();
    pthread_mutex_unlock(&g_exit_lock);
    ulma_agent_scratch(0);
    ulma_symbols_reset();
    ulma_tasks_reset();
    g_native_calls = 0;
    ulma_readings_configure(1.0, 0);
    if (g_boot_thread == PyThreadState_GET())
        recursion_budget(g_boot_thread, -g_boot_frames);
    g_boot_thread = NULL;
    g_boot_frames = 0;
    g_boundary = NULL;
    session_unmap(h);
}
