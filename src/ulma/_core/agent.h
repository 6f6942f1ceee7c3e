/*
 * agent.h -- the profiled process's side: per-thread ring writers, code-object
 * interning and the hot `ulma_emit`.  Everything here runs inside the
 * interpreter's hooks, holding the GIL; none of it blocks, raises or waits.
 */
#ifndef ULMA_AGENT_H
#define ULMA_AGENT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include "records.h"
#include "clock.h"

/* Everything declared below is the extension's own (setup.py builds with
 * -fvisibility=hidden): the hot path reads these globals directly, not
 * through the GOT. */
#pragma GCC visibility push(hidden)

#define ULMA_LIKELY(x) __builtin_expect(!!(x), 1)
#define ULMA_UNLIKELY(x) __builtin_expect(!!(x), 0)

#define ULMA_SCOPE_STACK 64u

typedef struct {
    ulma_ring_header *ring;
    ulma_event *events;
    uint64_t mask;       /* ring_events - 1 */
    uint64_t room_end;   /* the ring's tail_cache + ring_events: room while write_pos is below
                            (one compare on the hot path; agent.c set_tail keeps it) */
    uint64_t next_reading; /* tick at which the next event reads the CPU clock;
                              0 while the stack must be restated */
    uint64_t retry_tick; /* after a drop: events before this tick are only counted */
    uint32_t generation; /* the agent session this writer belongs to */
    uint32_t in_slow;    /* re-entrancy guard for the sync path */
    uint32_t slot;       /* its ring in the session */
    uint64_t reading_tick, reading_cpu_ns; /* the last CPU reading */
    uint64_t nvcsw;        /* voluntary context switches at the last run-delay read */
    /* native calls: the Python function a CALL is about to enter */
    void *call_code;
    uint64_t call_tick;
    /* the thread's own state (its frames: tasks.c), valid while no thread
     * state was made since tstate_made (frames.h ulma_tstates_made); NULL
     * for the shared writers (no ring, calibration) */
    PyThreadState *tstate;
    uint64_t tstate_made;
    /* native scopes (scopes.c): the thread's open scopes, innermost last,
     * each with the Python frame that was current when it opened (NULL:
     * opened without the GIL, or on a thread Python never saw); deeper
     * ones are counted in scope_depth only */
    uint32_t shared;      /* 1: a writer of several threads (no ring, calibration): no scopes */
    uint32_t py_resync;   /* a restatement made without the GIL left the Python frames out:
                             the next event with the GIL restates them */
    uint32_t scope_depth;
    uint32_t scope_ids[ULMA_SCOPE_STACK];
    const void *scope_frames[ULMA_SCOPE_STACK];
} ulma_writer;

/* The agent's ids carry two bits the records do not: an excluded function
 * (written as ULMA_EVF_UNMEASURED) and ulma's own code (native calls made
 * from it are not reported).  Ids themselves stay below 2^24. */
#define ULMA_ID_UNMEASURED 0x80000000u
#define ULMA_ID_HIDDEN 0x40000000u
/* A function not traced now (--only, --exclude, or switched off through the
 * control channel): none of its events is written.  Its code objects' slots
 * carry ULMA_GEN_SLOW, so the hot paths never see this bit. */
#define ULMA_ID_OFF 0x20000000u
/* A coroutine's code (CO_COROUTINE, or a generator made one by
 * types.coroutine): its every record carries ULMA_EVF_AWAIT, so a YIELD of
 * it is a suspension in `await` (aggregate.c counts it as waiting) and not a
 * generator handing out a value.  Free on the hot path: ulma_id_word's rare
 * branch, taken by coroutines' events only.  An async generator's code has
 * no such bit: its suspensions in `await` are told from its yields one by
 * one (agen.h) and written with the bit added. */
#define ULMA_ID_AWAIT 0x10000000u
#define ULMA_ID_MASK 0x0fffffffu
/* the id bits that records carry, as flags (bit 24 + k -> flag bit k) */
#define ULMA_ID_RECORDED (ULMA_ID_UNMEASURED | ULMA_ID_AWAIT)

/* Agent globals (agent.c).  g_session is NULL while no session is active. */
extern ulma_session_header *g_session;
extern uint32_t g_clock;
extern uint32_t g_generation;
/* The generation code objects' slots are tagged with: a new session, or a
 * function switched off or on, makes a new one, and every code object then
 * finds its id (and whether it is traced) again on its next event. */
extern uint32_t g_code_gen;
extern Py_ssize_t g_extra_index;
/* The calling thread's writer and the session it was claimed for, side by
 * side: one thread-pointer offset reaches both (initial-exec: in a shared
 * object each TLS variable costs a GOT load of its offset).  A thread with
 * no writer (ulma's own, or no session) has gen 0, which no session has:
 * gen == g_generation means a writer is there (the hot path tests one). */
typedef struct {
    ulma_writer *writer;
    uint32_t gen;
} ulma_tls_writer;
extern __thread ulma_tls_writer tls_hot __attribute__((tls_model("initial-exec")));
#define tls_writer (tls_hot.writer)
#define tls_writer_gen (tls_hot.gen)
extern int g_native_calls;

ulma_writer *ulma_writer_claim(void);
/* The calling thread (ulma's own: the attach listener) is never traced. */
void ulma_agent_ignore_thread(void);
uint32_t ulma_code_intern(PyCodeObject *co);
void ulma_emit_slow(ulma_writer *w, uint64_t t, uint32_t idv, uint8_t kind, uint8_t flags,
                    uint16_t aux, int top_is_event);
/* ulma_emit with a record that states no frame right before the event, the
 * two written together or not at all: `note` is its id | flags << 32, kind
 * ULMA_TASK (tasks.h).  0: the event alone. */
void ulma_emit_noted(ulma_writer *w, uint64_t t, uint32_t idv, uint8_t kind, uint8_t flags, uint16_t aux,
                     int top_is_event, uint64_t note);
/* ulma_emit_slow for a thread that does not hold the GIL (native scopes):
 * the same rules, but no control poll, and a restatement states its open
 * scopes only (ULMA_SYNC_TRUNCATED if it has Python frames, which the
 * thread's next event with the GIL restates). */
void ulma_emit_nogil(ulma_writer *w, uint64_t t, uint32_t idv, uint8_t kind, uint8_t flags, uint16_t aux);
/* A writer for a thread that does not hold the GIL (maybe one Python never
 * saw); NULL if none (no session, no ring left: counted). */
ulma_writer *ulma_writer_claim_nogil(void);
/* Set once a native scope was named this session: its threads may write
 * without the GIL, so ulma_agent_stop leaves the mappings' ranges in place. */
extern _Atomic int g_nogil_used;
/* The id of a C function (native calls), interned on first sight. */
uint32_t ulma_native_id(PyObject *callable);

/* The calling thread's writer, claiming a ring on the thread's first event. */
static inline ulma_writer *ulma_writer_get(void)
{
    if (ULMA_LIKELY(tls_writer_gen == g_generation))
        return tls_writer;
    return ulma_writer_claim();
}

/* co_extra is an array {size, slots[]}; CPython's own accessor is a call into
 * libpython, so the hot path reads the slot directly and falls back to the
 * API only to intern.  The slot holds (id << 32 | generation): the
 * generation is compared as it is, the id shifted down once. */
typedef struct {
    Py_ssize_t size;
    void *slots[1];
} ulma_code_extra;

/* A slot's generation with this bit (symbols.c): the code takes the
 * engine's general path, as its generation differs from g_code_gen -- a
 * function not traced now (both engines), and on PEP 523 sessions a
 * generator's or an excluded C-unmeasured one's.  Generations stay below it. */
#define ULMA_GEN_SLOW 0x80000000u

static inline uint32_t ulma_code_id(PyCodeObject *co)
{
    ulma_code_extra *x = (ulma_code_extra *)co->co_extra;
    if (ULMA_LIKELY(x != NULL && g_extra_index < x->size)) {
        uintptr_t v = (uintptr_t)x->slots[g_extra_index];
        if (ULMA_LIKELY(((uint32_t)v & ~ULMA_GEN_SLOW) == g_code_gen))
            return (uint32_t)(v >> 32);
    }
    return ulma_code_intern(co);
}

/*
 * Append one event.  `idv` is an id, with ULMA_ID_UNMEASURED for an excluded
 * function.  `top_is_event` tells the sync path whether the interpreter's
 * current frame already is the event's own frame (sys.monitoring) or still
 * the caller's (PEP 523).  Every CPU-interval the slow path also reads the
 * thread's CPU clock (one compare here).
 */
static_assert((ULMA_ID_UNMEASURED >> 24) == ULMA_EVF_UNMEASURED, "the id bit becomes the flag");
static_assert((ULMA_ID_AWAIT >> 24) == ULMA_EVF_AWAIT, "the id bit becomes the flag");
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ulma's records are little-endian, written as such"
#endif

static inline void ulma_emit_ex(ulma_writer *w, uint64_t t, uint32_t idv, uint8_t kind, uint8_t flags,
                                uint16_t aux, int top_is_event)
{
    ulma_ring_header *r = w->ring;
    uint64_t pos = atomic_load_explicit(&r->write_pos, memory_order_relaxed);
    /* next_reading is 0 while the stack must be restated (need_sync): one
     * compare covers both */
    if (ULMA_UNLIKELY((pos >= w->room_end) | (t >= w->next_reading))) {
        ulma_emit_slow(w, t, idv, kind, flags, aux, top_is_event);
        return;
    }
    ulma_event *e = &w->events[pos & w->mask];
    /* id | kind | flags | aux in one store */
    uint64_t rest = (uint64_t)(idv & ULMA_ID_MASK) | (uint64_t)kind << 32 |
                    (uint64_t)(flags | ((idv & ULMA_ID_RECORDED) >> 24)) << 40 | (uint64_t)aux << 48;
    e->ticks = t;
    memcpy((char *)e + 8, &rest, sizeof rest);
    /* the record before write_pos: the monitor reads write_pos ahead of
     * `published` for a thread quiet for 20 ms (session.c head_of).  A plain
     * store on x86; an ordered store (stlr) on arm64. */
    atomic_store_explicit(&r->write_pos, ++pos, memory_order_release);
    /* Batch the shared store: the monitor's cache line is touched once per
     * ULMA_PUBLISH_EVERY events, not once per event. */
    if ((pos & (ULMA_PUBLISH_EVERY - 1)) == 0)
        atomic_store_explicit(&r->published, pos, memory_order_release);
}

static inline void ulma_emit(ulma_writer *w, uint64_t t, uint32_t idv, uint8_t kind, int top_is_event)
{
    ulma_emit_ex(w, t, idv, kind, 0, 0, top_is_event);
}

/* The second word of a record (id, kind, flags, aux) for id `idv` with
 * kind 0, flags 0 (but an excluded function's or a coroutine's) and aux 0: OR the kind in at
 * bit 32.  The id's own bits (excluded, hidden, coroutine) are rare. */
static inline __attribute__((always_inline)) uint64_t ulma_id_word(uint32_t idv)
{
    if (ULMA_LIKELY(!(idv & ~ULMA_ID_MASK)))
        return idv;
    return (uint64_t)(idv & ULMA_ID_MASK) | (uint64_t)(idv & ULMA_ID_RECORDED) << 16;
}
static_assert((uint64_t)ULMA_ID_UNMEASURED << 16 == (uint64_t)ULMA_EVF_UNMEASURED << 40,
              "the id's bit lands on the flag");
static_assert((uint64_t)ULMA_ID_AWAIT << 16 == (uint64_t)ULMA_EVF_AWAIT << 40, "the id's bit lands on the flag");

/*
 * The common case of ulma_emit, with no call in it: room in the ring and no
 * reading due.  `rest` is the record's second word (ulma_id_word | kind <<
 * 32).  1 if written; 0 if nothing was done and the caller must call
 * ulma_emit_slow.
 */
static inline __attribute__((always_inline)) int ulma_put_fast(ulma_writer *w, uint64_t t, uint64_t rest)
{
    ulma_ring_header *r = w->ring;
    uint64_t pos = atomic_load_explicit(&r->write_pos, memory_order_relaxed);
    if (ULMA_UNLIKELY((pos >= w->room_end) | (t >= w->next_reading)))
        return 0;
    ulma_event *e = &w->events[pos & w->mask];
    e->ticks = t;
    memcpy((char *)e + 8, &rest, sizeof rest);
    atomic_store_explicit(&r->write_pos, ++pos, memory_order_release); /* as ulma_emit_ex */
    if ((pos & (ULMA_PUBLISH_EVERY - 1)) == 0)
        atomic_store_explicit(&r->published, pos, memory_order_release);
    return 1;
}

/* ulma_put_fast of an event with flags 0 (but an excluded function's) and
 * aux 0; else ulma_emit_slow(w, t, idv, kind, 0, 0, top_is_event). */
static inline __attribute__((always_inline)) int ulma_emit_fast(ulma_writer *w, uint64_t t, uint32_t idv,
                                                                uint8_t kind)
{
    return ulma_put_fast(w, t, ulma_id_word(idv) | (uint64_t)kind << 32);
}

/*
 * One event of a Python code object, the common case only, with no call in
 * it (so the engines' hooks need no saved registers): the writer current,
 * the code's id known for this session, a clock read inline, room in the
 * ring and no reading due.  Returns
 *   ULMA_FAST_DONE  written; *idp is the code's id;
 *   ULMA_FAST_EMIT  writer, tick and id are in *wp, *tp, *idp: the ring is
 *                   full or a reading/restatement is due (ulma_emit_slow);
 *   ULMA_FAST_NONE  nothing done: the caller takes ulma_code_event_slow (the
 *                   same event through ulma_writer_get, ulma_code_id, ulma_emit).
 */
#define ULMA_FAST_DONE 0
#define ULMA_FAST_EMIT 1
#define ULMA_FAST_NONE 2
static inline __attribute__((always_inline)) int ulma_code_event_fast(PyCodeObject *co, uint8_t kind,
                                                                      ulma_writer **wp, uint64_t *tp,
                                                                      uint32_t *idp)
{
    uint32_t gen = g_generation;
    ulma_writer *w = tls_writer;
    ulma_code_extra *x = (ulma_code_extra *)co->co_extra;
    if (ULMA_UNLIKELY(tls_writer_gen != gen || w == NULL || x == NULL))
        return ULMA_FAST_NONE;
    Py_ssize_t index = g_extra_index;
    if (ULMA_UNLIKELY(index >= x->size))
        return ULMA_FAST_NONE;
    uintptr_t v = (uintptr_t)x->slots[index];
    uint64_t t;
    if (ULMA_UNLIKELY((uint32_t)v != g_code_gen || !ulma_ticks_inline(g_clock, &t)))
        return ULMA_FAST_NONE;
    *idp = (uint32_t)(v >> 32);
    if (ULMA_LIKELY(ulma_emit_fast(w, t, (uint32_t)(v >> 32), kind)))
        return ULMA_FAST_DONE;
    *wp = w;
    *tp = t;
    return ULMA_FAST_EMIT;
}
/* Everything ulma_code_event_fast leaves (out of line).  Returns 1 if the
 * code's function is not traced now (nothing written; sys.monitoring may
 * disable the event), else 0.  `force` (PEP 523, an exit whose entry was
 * written): written even if the function was switched off meanwhile.
 * `id_bits`: added to the code's id (ULMA_ID_AWAIT: an async generator's
 * await, agen.h). */
int ulma_code_event_slow(PyCodeObject *co, uint8_t kind, int top_is_event, int force, uint32_t id_bits);
/* The same, with a note written right before the event (ulma_emit_noted). */
int ulma_code_event_noted(PyCodeObject *co, uint8_t kind, int top_is_event, int force, uint32_t id_bits,
                          uint64_t note);
/* Is the function of id `id` (no flag bits) off now? */
int ulma_id_off(uint32_t id);

/* Engines (engine_monitoring.c, engine_pep523.c). */
/* `empty` (benchmarks): 0 full tracing, 1 hooks that do nothing, ULMA_HOOKS_FLOOR
 * hooks that read the clock and make one 16-byte store (the recording floor). */
#define ULMA_HOOKS_FLOOR 2
int ulma_engine_monitoring_start(int empty, int native_calls);
void ulma_engine_monitoring_stop(void);
int ulma_engine_monitoring_pause(int paused);
/* sys.monitoring.restart_events(): events a callback disabled fire again
 * (a function switched on).  Keeps any exception in flight. */
void ulma_engine_monitoring_restart(void);
int ulma_engine_pep523_pause(int paused);
/* The calling thread just claimed its ring (native calls on PEP 523). */
void ulma_engine_pep523_thread_claimed(void);
int ulma_engine_pep523_start(int empty, int native_calls);
/* Is an evaluator of ulma's, left by an earlier session behind the
 * program's, still in the program's evaluator chain?  It would record a
 * sys.monitoring session's calls again: such a session runs on it instead
 * (PEP 523).  One the program has put back on top is taken out (0). */
int ulma_engine_pep523_buried(void);
void ulma_engine_pep523_stop(void);

/* The agent's session lifecycle (agent.c). */
/* recursion_adjust: recursion budget the bootstrap uses beyond its frames
 * (on 3.11 its exec() of a script is one more evaluator entry than plain
 * python's; the bootstrap knows and says so). */
typedef struct {
    int engine, empty, native_calls, recursion_adjust;
    uint32_t cpu_interval_us; /* 0: no CPU readings */
    PyObject *hidden_prefix;  /* str or None */
    PyObject *boundary;       /* frame or None */
    PyObject *exclude;        /* sequence of fnmatch patterns, or None */
    PyObject *only;           /* sequence of fnmatch patterns, or None: trace only these */
    PyObject *objects;        /* None: no object records; a sequence of type patterns (empty: all) */
} ulma_agent_options;

int ulma_agent_start(int fd, const ulma_agent_options *o);
/* Calibration: this thread's events go to a private scratch ring (on=1)
 * or back to the session (on=0).  Returns 0, or -1 with an exception. */
int ulma_agent_scratch(int on);
void ulma_agent_set_probe_ps(uint32_t ps);
void ulma_agent_set_scope_probe_ps(uint32_t begin_ps, uint32_t end_ps);
/* Calibration at start-up, before the program runs: hooks off (1) or on (0)
 * while the session stays.  Events of other threads would be lost meanwhile,
 * so an attach does not use it.  0, or -1 with an exception. */
int ulma_agent_pause(int paused);
/* flush=0 in a forked child: unhook and unmap without touching the rings. */
void ulma_agent_stop(int flush);
/* Around the program's fork(), in its parent: the doorbell thread stopped, then started again. */
void ulma_agent_fork_prepare(void);
void ulma_agent_fork_parent(void);

#define ULMA_ENGINE_MONITORING 1
#define ULMA_ENGINE_PEP523 2

#pragma GCC visibility pop

#endif
