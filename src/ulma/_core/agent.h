/*
 * agent.h -- the profiled process's side: per-thread ring writers, code-object
 * interning and the hot `ulma_emit`.  Everything here runs inside the
 * interpreter's hooks, holding the GIL; none of it blocks, raises or waits.
 */
#ifndef ULMA_AGENT_H
#define ULMA_AGENT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "records.h"
#include "clock.h"

#define ULMA_LIKELY(x) __builtin_expect(!!(x), 1)
#define ULMA_UNLIKELY(x) __builtin_expect(!!(x), 0)

typedef struct {
    ulma_ring_header *ring;
    ulma_event *events;
    uint64_t mask;       /* ring_events - 1 */
    uint32_t generation; /* the agent session this writer belongs to */
    uint32_t in_slow;    /* re-entrancy guard for the sync path */
    uint32_t slot;       /* its ring in the session */
} ulma_writer;

/* Agent globals (agent.c).  g_session is NULL while no session is active. */
extern ulma_session_header *g_session;
extern uint32_t g_clock;
extern uint32_t g_generation;
extern Py_ssize_t g_extra_index;
extern __thread ulma_writer *tls_writer __attribute__((tls_model("initial-exec")));
extern __thread uint32_t tls_writer_gen __attribute__((tls_model("initial-exec")));

ulma_writer *ulma_writer_claim(void);
/* The calling thread (ulma's own: the attach listener) is never traced. */
void ulma_agent_ignore_thread(void);
uint32_t ulma_code_intern(PyCodeObject *co);
void ulma_emit_slow(ulma_writer *w, uint64_t t, uint32_t id, uint8_t kind, int top_is_event);

/* The calling thread's writer, claiming a ring on the thread's first event. */
static inline ulma_writer *ulma_writer_get(void)
{
    if (ULMA_LIKELY(tls_writer_gen == g_generation))
        return tls_writer;
    return ulma_writer_claim();
}

/* co_extra is an array {size, slots[]}; CPython's own accessor is a call into
 * libpython, so the hot path reads the slot directly and falls back to the
 * API only to intern.  The slot holds (generation << 32 | id). */
typedef struct {
    Py_ssize_t size;
    void *slots[1];
} ulma_code_extra;

static inline uint32_t ulma_code_id(PyCodeObject *co)
{
    ulma_code_extra *x = (ulma_code_extra *)co->co_extra;
    if (ULMA_LIKELY(x != NULL && g_extra_index < x->size)) {
        uintptr_t v = (uintptr_t)x->slots[g_extra_index];
        if (ULMA_LIKELY((uint32_t)(v >> 32) == g_generation))
            return (uint32_t)v;
    }
    return ulma_code_intern(co);
}

/*
 * Append one event.  `top_is_event` tells the sync path whether the
 * interpreter's current frame already is the event's own frame
 * (sys.monitoring) or still the caller's (PEP 523).
 */
static inline void ulma_emit(ulma_writer *w, uint64_t t, uint32_t id, uint8_t kind, int top_is_event)
{
    ulma_ring_header *r = w->ring;
    uint64_t pos = r->write_pos;
    if (ULMA_UNLIKELY(r->need_sync || pos - r->tail_cache > w->mask)) {
        ulma_emit_slow(w, t, id, kind, top_is_event);
        return;
    }
    ulma_event *e = &w->events[pos & w->mask];
    e->ticks = t;
    e->id = id;
    e->kind = kind;
    e->flags = 0;
    e->aux = 0;
    r->write_pos = ++pos;
    /* Batch the shared store: the monitor's cache line is touched once per
     * ULMA_PUBLISH_EVERY events, not once per event. */
    if ((pos & (ULMA_PUBLISH_EVERY - 1)) == 0)
        atomic_store_explicit(&r->published, pos, memory_order_release);
}

/* Engines (engine_monitoring.c, engine_pep523.c). */
int ulma_engine_monitoring_start(int empty);
void ulma_engine_monitoring_stop(void);
int ulma_engine_pep523_start(int empty);
void ulma_engine_pep523_stop(void);

/* The agent's session lifecycle (agent.c). */
/* recursion_adjust: recursion budget the bootstrap uses beyond its frames
 * (on 3.11 its exec() of a script is one more evaluator entry than plain
 * python's; the bootstrap knows and says so). */
int ulma_agent_start(int fd, int engine, int empty, PyObject *hidden_prefix, PyObject *boundary,
                     int recursion_adjust);
/* flush=0 in a forked child: unhook and unmap without touching the rings. */
void ulma_agent_stop(int flush);

#define ULMA_ENGINE_MONITORING 1
#define ULMA_ENGINE_PEP523 2

#endif
