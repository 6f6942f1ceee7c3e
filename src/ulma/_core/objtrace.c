/*
 * objtrace.c -- --objects: each object's creation and destruction as a
 * record on its thread's ring (objtrace.h, records.h "Object lifecycle
 * records").
 *
 * The tracer runs inside CPython's object creation and deallocation, with
 * the GIL held: it allocates no Python object on the common path, and keeps
 * whatever exception is in flight.  Per object made it finds the thread's
 * innermost Python frame (the maker), the type's id (a table by type
 * pointer) and writes one record; it keeps the maker per live object in a
 * table by address (bounded: ULMA_OBJECTS_LIVE_MAX, past which an object is
 * counted as untracked and its destruction has no known maker).  Per object
 * destroyed it looks the address up, forgets it and writes one record.
 *
 * CPython 3.13.0's eval loop frees objects without telling the ref tracer
 * (its own Py_DECREF calls tp_dealloc directly: an object dropped by
 * STORE_FAST or POP_TOP gets no DESTROY).  Start checks whether this
 * interpreter tells of every destruction; where it does not, an object
 * still kept when its address is taken by a new one is counted destroyed
 * then (ULMA_OBJF_LATE), and the mechanism says so.  (Wrapping the types'
 * tp_dealloc or tp_free to see the rest was tried: it defeats CPython's
 * trashcan, which compares tp_dealloc, recurses in a subtype's dealloc
 * that calls its base's slot, and makes __class__ assignment refuse.)
 */
#include "objtrace.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "frames.h"
#include "records.h"
#include "symbols.h"

#define ULMA_OBJECTS_LIVE_MAX (1u << 22) /* slots: at most half of them used (64 MiB) */

#if PY_VERSION_HEX >= 0x030D0000

static int g_on;                 /* records are written */
static int g_installed;          /* ulma's tracer is (or was left) set */
static PyRefTracer g_prev;       /* the tracer ulma's chains to */
static void *g_prev_data;
static __thread int tls_inside;  /* the tracer's own allocations are not traced */

/* ---- live objects by address: their maker and type ---- */
typedef struct {
    uintptr_t addr; /* 0: empty */
    uint32_t creator;
    uint16_t type;
    uint16_t pad;
} addr_slot;
typedef struct {
    addr_slot *slots;
    size_t cap, n;
} addr_map;
static addr_map g_live;

static inline size_t mix(uintptr_t k, size_t cap)
{
    return (size_t)(((uint64_t)k * 0x9E3779B97F4A7C15ull) >> 29) & (cap - 1);
}

static int map_grow(addr_map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1u << 12;
    if (cap > ULMA_OBJECTS_LIVE_MAX)
        return -1;
    addr_slot *fresh = calloc(cap, sizeof *fresh);
    if (!fresh)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].addr)
            continue;
        size_t j = mix(m->slots[i].addr, cap);
        while (fresh[j].addr)
            j = (j + 1) & (cap - 1);
        fresh[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = fresh;
    m->cap = cap;
    return 0;
}

/* Keeps `addr` (with its creator and type); 0, or -1 if there is no room. */
static int map_put(addr_map *m, uintptr_t addr, uint32_t creator, uint16_t type)
{
    if ((m->n + 1) * 2 > m->cap && map_grow(m) < 0)
        return -1;
    size_t i = mix(addr, m->cap);
    while (m->slots[i].addr && m->slots[i].addr != addr)
        i = (i + 1) & (m->cap - 1);
    if (!m->slots[i].addr)
        m->n++;
    m->slots[i] = (addr_slot){addr, creator, type, 0};
    return 0;
}

/* Takes `addr` out; its slot's copy, or addr 0 if it was not kept. */
static addr_slot map_take(addr_map *m, uintptr_t addr)
{
    addr_slot none = {0, 0, 0, 0};
    if (!m->n)
        return none;
    size_t i = mix(addr, m->cap);
    while (m->slots[i].addr != addr) {
        if (!m->slots[i].addr)
            return none;
        i = (i + 1) & (m->cap - 1);
    }
    addr_slot got = m->slots[i];
    /* backward-shift deletion: no tombstones */
    size_t hole = i, cap = m->cap;
    for (size_t j = (i + 1) & (cap - 1); m->slots[j].addr; j = (j + 1) & (cap - 1)) {
        size_t home = mix(m->slots[j].addr, cap);
        /* j's entry may fill the hole unless its home lies in (hole, j] */
        if ((j > hole && (home <= hole || home > j)) || (j < hole && home <= hole && home > j)) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole].addr = 0;
    m->n--;
    return got;
}

static void map_clear(addr_map *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->n = 0;
}

/* ---- types: by pointer; a type object freed and another made at the same
 * address has another tp_name pointer, so it is looked up anew ---- */
typedef struct {
    PyTypeObject *type;
    const char *tp_name;
    uint16_t id;
    uint8_t off; /* left out by --objects-types */
} type_slot;
static type_slot *g_types;
static size_t g_types_cap, g_types_n;
static uint32_t g_next_type;
static char **g_patterns;
static size_t g_npatterns;

static int matches(const char *name)
{
    if (!g_npatterns)
        return 1;
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; i < g_npatterns; i++)
        if (fnmatch(g_patterns[i], name, 0) == 0 || (dot && fnmatch(g_patterns[i], dot + 1, 0) == 0))
            return 1;
    return 0;
}

/* Names type `t` (a symbol) and gives slot `s` the next id. */
static void type_name(type_slot *s, PyTypeObject *t)
{
    char buf[512];
    const char *name = t->tp_name;
    PyObject *full = NULL;
    if (t->tp_flags & Py_TPFLAGS_HEAPTYPE) { /* tp_name has no module */
        PyObject *exc = PyErr_GetRaisedException();
        full = PyType_GetFullyQualifiedName(t);
        const char *u = full ? PyUnicode_AsUTF8(full) : NULL;
        if (u)
            name = u;
        PyErr_Clear();
        PyErr_SetRaisedException(exc);
    }
    size_t n = strlen(name);
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    memcpy(buf, name, n);
    buf[n] = 0;
    Py_XDECREF(full);
    if (g_next_type >= ULMA_MAX_TYPES - 1) { /* the row of every type past the limit */
        s->id = (uint16_t)(ULMA_MAX_TYPES - 1);
        s->off = 0;
        atomic_fetch_add_explicit(&g_session->types_overflow, 1, memory_order_relaxed);
        if (g_next_type == ULMA_MAX_TYPES - 1) {
            static const char over[] = "<types past the limit>";
            ulma_symbol_append(ULMA_TYPE_SYMBOL_BASE + ULMA_MAX_TYPES - 1, ULMA_SYM_TYPE, 0, 0, over,
                               sizeof over - 1, "", 0);
            g_next_type++;
        }
        return;
    }
    s->id = (uint16_t)g_next_type++;
    s->off = !matches(buf);
    ulma_symbol_append(ULMA_TYPE_SYMBOL_BASE + s->id, ULMA_SYM_TYPE, 0, 0, buf, n, "", 0);
}

/* Type `t`'s slot, named if new; NULL if memory ran out. */
static type_slot *type_of(PyTypeObject *t)
{
    if (g_types_cap) {
        for (size_t i = mix((uintptr_t)t, g_types_cap);; i = (i + 1) & (g_types_cap - 1)) {
            type_slot *s = &g_types[i];
            if (!s->type)
                break;
            if (s->type == t && s->tp_name == t->tp_name)
                return s;
        }
    }
    if ((g_types_n + 1) * 2 > g_types_cap) {
        size_t cap = g_types_cap ? g_types_cap * 2 : 256;
        type_slot *fresh = calloc(cap, sizeof *fresh);
        if (!fresh)
            return NULL;
        for (size_t i = 0; i < g_types_cap; i++) {
            if (!g_types[i].type)
                continue;
            size_t j = mix((uintptr_t)g_types[i].type, cap);
            while (fresh[j].type)
                j = (j + 1) & (cap - 1);
            fresh[j] = g_types[i];
        }
        free(g_types);
        g_types = fresh;
        g_types_cap = cap;
    }
    size_t i = mix((uintptr_t)t, g_types_cap);
    while (g_types[i].type && g_types[i].type != t)
        i = (i + 1) & (g_types_cap - 1);
    type_slot *s = &g_types[i];
    if (!s->type)
        g_types_n++;
    s->type = t;
    s->tp_name = t->tp_name;
    type_name(s, t);
    return s;
}

/* The function of the thread's innermost Python frame (0: none). */
static uint32_t creator_now(void)
{
    PyThreadState *ts = PyThreadState_GET();
    const _PyInterpreterFrame *f = ts ? ulma_frame_counting(ulma_current_frame(ts)) : NULL;
    PyCodeObject *co = f ? ulma_frame_code(f) : NULL;
    return co ? ulma_code_id(co) & ULMA_ID_MASK : 0;
}

static void record(uint8_t kind, uint32_t id, uint8_t flags, uint16_t type)
{
    ulma_writer *w = ulma_writer_get();
    if (w)
        ulma_emit_ex(w, ulma_ticks(g_clock), id, kind, flags, type, 1);
}

/* Object `op` goes: its record, made by whom the live table says (or by no
 * one known: made before tracing, or not kept). */
static void gone(PyObject *op)
{
    addr_slot got = map_take(&g_live, (uintptr_t)op);
    if (got.addr) {
        record(ULMA_OBJ_FREE, got.creator, 0, got.type);
        return;
    }
    type_slot *s = type_of(Py_TYPE(op));
    if (s && !s->off)
        record(ULMA_OBJ_FREE, 0, ULMA_OBJF_UNKNOWN, s->id);
}

static inline int recording(void)
{
    return g_on && !tls_inside && g_session;
}

/* ---- does this interpreter tell the tracer of every destruction? ---- */
static int g_exact = -1; /* -1: not checked yet */
static long g_probe_made, g_probe_gone;
static PyThreadState *g_probe_ts;   /* the thread checking: other threads' lists do not count */
static PyRefTracer g_probe_next;    /* the tracer set before: it goes on seeing everything */
static void *g_probe_next_data;

static int probe_tracer(PyObject *op, PyRefTracerEvent event, void *data)
{
    (void)data;
    if (g_probe_next)
        g_probe_next(op, event, g_probe_next_data);
    if (op && Py_TYPE(op) == &PyList_Type && PyThreadState_GetUnchecked() == g_probe_ts)
        ++*(event == PyRefTracer_CREATE ? &g_probe_made : &g_probe_gone);
    return 0;
}

/* Runs 100 lists made and dropped by the eval loop under a counting tracer
 * (before any hook is on: nothing of it is recorded), which passes every
 * event on to the tracer set before (another thread may run meanwhile). */
static int check_exact(void)
{
    if (g_exact >= 0)
        return g_exact;
    static const char src[] = "def _f():\n    for i in range(100):\n        x = [i]\n    x = None\n_f()\n";
    PyObject *exc = PyErr_GetRaisedException();
    void *data = NULL;
    PyRefTracer before = PyRefTracer_GetTracer(&data);
    PyObject *code = Py_CompileString(src, "<ulma: objects check>", Py_file_input);
    PyObject *ns = code ? PyDict_New() : NULL;
    int exact = 0;
    if (ns && PyDict_SetItemString(ns, "__builtins__", PyEval_GetBuiltins()) == 0) {
        g_probe_made = g_probe_gone = 0;
        g_probe_ts = PyThreadState_Get();
        g_probe_next = before;
        g_probe_next_data = data;
        PyRefTracer_SetTracer(probe_tracer, NULL);
        PyObject *res = PyEval_EvalCode(code, ns, ns);
        PyRefTracer_SetTracer(before, data);
        exact = res && g_probe_made >= 100 && g_probe_gone == g_probe_made;
        Py_XDECREF(res);
    }
    Py_XDECREF(ns);
    Py_XDECREF(code);
    PyErr_Clear();
    PyErr_SetRaisedException(exc);
    return g_exact = exact;
}

void ulma_objects_check(void)
{
    check_exact();
}

static int tracer(PyObject *op, PyRefTracerEvent event, void *data)
{
    (void)data;
    if (g_prev)
        g_prev(op, event, g_prev_data);
    if (!recording() || !op)
        return 0;
    tls_inside = 1;
    if (event == PyRefTracer_CREATE) {
        /* an object kept at this address went unreported (CPython 3.13.0's
         * eval loop frees some objects without telling the tracer): it is
         * gone by now, its memory taken again */
        addr_slot owed = map_take(&g_live, (uintptr_t)op);
        if (owed.addr)
            record(ULMA_OBJ_FREE, owed.creator, ULMA_OBJF_LATE, owed.type);
        type_slot *s = type_of(Py_TYPE(op));
        if (s && !s->off) {
            uint32_t creator = creator_now();
            if (map_put(&g_live, (uintptr_t)op, creator, s->id) < 0)
                atomic_fetch_add_explicit(&g_session->objects_untracked, 1, memory_order_relaxed);
            record(ULMA_OBJ_NEW, creator, 0, s->id);
        }
    } else if (event == PyRefTracer_DESTROY) {
        gone(op);
    }
    tls_inside = 0;
    return 0;
}

static void patterns_free(void)
{
    for (size_t i = 0; i < g_npatterns; i++)
        free(g_patterns[i]);
    free(g_patterns);
    g_patterns = NULL;
    g_npatterns = 0;
}

int ulma_objects_start(PyObject *types)
{
    patterns_free();
    if (ulma_patterns_copy(types, &g_patterns, NULL, &g_npatterns) < 0) {
        patterns_free();
        return -1;
    }
    /* new ids: every type is named again in this session */
    free(g_types);
    g_types = NULL;
    g_types_cap = g_types_n = 0;
    g_next_type = 1;
    map_clear(&g_live);
    void *data = NULL;
    PyRefTracer now = PyRefTracer_GetTracer(&data);
    /* ulma's, left set by a stop the program's stood in front of, is still
     * called where it is (the program's may chain to it): put in front
     * again, it would chain to the program's, which chains to it, round and
     * round */
    if (now != tracer && (!g_installed || !now)) {
        g_prev = now;
        g_prev_data = data;
        if (PyRefTracer_SetTracer(tracer, NULL) < 0)
            return -1;
    }
    g_installed = 1;
    g_on = 1;
    atomic_store_explicit(&g_session->objects_mechanism,
                          check_exact() ? ULMA_OBJECTS_REFTRACER : ULMA_OBJECTS_REFTRACER_LATE,
                          memory_order_relaxed);
    return 0;
}

void ulma_objects_stop(void)
{
    if (!g_installed)
        return;
    g_on = 0;
    void *data = NULL;
    if (PyRefTracer_GetTracer(&data) == tracer) {
        PyRefTracer_SetTracer(g_prev, g_prev_data);
        g_prev = NULL;
        g_prev_data = NULL;
        g_installed = 0;
    } else if (g_session) {
        atomic_fetch_add_explicit(&g_session->objects_displaced, 1, memory_order_relaxed);
    }
    map_clear(&g_live); /* what was live then is made before the next session */
}

void ulma_objects_after_fork(void)
{
    g_on = 0; /* its parent's tables: a session of its own starts afresh */
}

#else /* before 3.13: no ref tracer */

void ulma_objects_check(void)
{
}

int ulma_objects_start(PyObject *types)
{
    (void)types;
    PyErr_SetString(PyExc_RuntimeError, "--objects needs Python 3.13 or later (PyRefTracer)");
    return -1;
}

void ulma_objects_stop(void)
{
}

void ulma_objects_after_fork(void)
{
}

#endif
