/*
 * objtrace.c -- --objects: each object's creation and destruction as a
 * record on its thread's ring (objtrace.h, records.h "Object lifecycle
 * records").
 *
 * Python 3.13+: a ref tracer.  It runs inside CPython's object creation and
 * deallocation, with the GIL held: it allocates no Python object on the
 * common path, and keeps whatever exception is in flight.  Per object made
 * it finds the thread's innermost Python frame (the maker), the type's id (a
 * table by type pointer) and writes one record; it keeps the maker per live
 * object in a table by address (bounded: ULMA_OBJECTS_LIVE_MAX, past which an
 * object is counted as untracked and its destruction has no known maker).
 * Per object destroyed it looks the address up, forgets it and writes one
 * record.
 *
 * CPython 3.13.0's eval loop frees objects without telling the ref tracer
 * (its own Py_DECREF calls tp_dealloc directly: an object dropped by
 * STORE_FAST or POP_TOP gets no DESTROY).  Start checks whether this
 * interpreter tells of every destruction; where it does not, an object
 * still kept when its address is taken by a new one is counted destroyed
 * then (ULMA_OBJF_LATE), and the mechanism says so.  There, the object
 * allocator's frees are hooked too: an object freed untold gives its block
 * back, and is counted destroyed then, exactly; only objects CPython keeps
 * in its free lists (list, dict, tuple, float, ...) give none back and are
 * found late.  (Wrapping the types' tp_dealloc or tp_free to see the rest
 * was tried: it defeats CPython's trashcan, which compares tp_dealloc,
 * recurses in a subtype's dealloc that calls its base's slot, and makes
 * __class__ assignment refuse.)
 *
 * Python 3.11 and 3.12 have no ref tracer: the object allocator's blocks
 * stand in (ULMA_OBJECTS_ALLOCATOR; "Allocator" below).
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

static int g_on;                 /* records are written */
static int g_installed;          /* ulma's hook is (or was left) set */
static __thread int tls_inside;  /* the hook's own allocations are not traced */

/* ---- live objects by address: their maker and type ---- */
typedef struct {
    uintptr_t addr; /* 0: empty */
    uint32_t creator;
    uint16_t type;
    uint16_t size_class; /* records.h ULMA_OBJF_SIZE_MASK (0: not known) */
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
static int map_put(addr_map *m, uintptr_t addr, uint32_t creator, uint16_t type, uint16_t size_class)
{
    if ((m->n + 1) * 2 > m->cap && map_grow(m) < 0)
        return -1;
    size_t i = mix(addr, m->cap);
    while (m->slots[i].addr && m->slots[i].addr != addr)
        i = (i + 1) & (m->cap - 1);
    if (!m->slots[i].addr)
        m->n++;
    m->slots[i] = (addr_slot){addr, creator, type, size_class};
    return 0;
}

/* Is `addr` kept? */
static inline int map_has(const addr_map *m, uintptr_t addr)
{
    if (!m->n)
        return 0;
    for (size_t i = mix(addr, m->cap); m->slots[i].addr; i = (i + 1) & (m->cap - 1))
        if (m->slots[i].addr == addr)
            return 1;
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

#if PY_VERSION_HEX < 0x030D0000
static PyObject *g_str_module; /* "__module__", made at start (not inside the allocator) */
#endif

/* Type `t`'s "module.qualname" in `buf` (builtins and __main__ bare, as
 * __fully_qualified_name__ says it); its length. */
static size_t full_name(PyTypeObject *t, char *buf, size_t cap)
{
    const char *name = t->tp_name;
    size_t n = 0;
#if PY_VERSION_HEX >= 0x030D0000
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
    n = strlen(name);
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, name, n);
    Py_XDECREF(full);
#else
    /* Called from inside the object allocator: nothing here may allocate,
     * run Python code or raise.  A heap type's module is its dict's
     * __module__, its qualname ht_qualname; read only where they are ASCII
     * strings (their bytes are then in the object), else tp_name stands. */
    if (t->tp_flags & Py_TPFLAGS_HEAPTYPE) {
        PyObject *mod = t->tp_dict ? PyDict_GetItem(t->tp_dict, g_str_module) : NULL;
        PyObject *qual = ((PyHeapTypeObject *)t)->ht_qualname;
        if (qual && PyUnicode_Check(qual) && PyUnicode_IS_READY(qual) && PyUnicode_IS_COMPACT_ASCII(qual)) {
            if (mod && PyUnicode_Check(mod) && PyUnicode_IS_READY(mod) && PyUnicode_IS_COMPACT_ASCII(mod) &&
                strcmp((const char *)PyUnicode_DATA(mod), "builtins") != 0 &&
                strcmp((const char *)PyUnicode_DATA(mod), "__main__") != 0) {
                n = (size_t)snprintf(buf, cap, "%s.%s", (const char *)PyUnicode_DATA(mod),
                                     (const char *)PyUnicode_DATA(qual));
                return n >= cap ? cap - 1 : n;
            }
            name = (const char *)PyUnicode_DATA(qual);
        }
    }
    n = strlen(name);
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, name, n);
#endif
    buf[n] = 0;
    return n;
}

/* Names type `t` (a symbol) and gives slot `s` the next id. */
static void type_name(type_slot *s, PyTypeObject *t)
{
    char buf[512];
    size_t n = full_name(t, buf, sizeof buf);
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

static inline PyThreadState *ulma_tstate_unchecked(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyThreadState_GetUnchecked();
#else
    return _PyThreadState_UncheckedGet();
#endif
}

/* The function of the thread's innermost Python frame (0: none). */
static uint32_t creator_now(void)
{
    PyThreadState *ts = ulma_tstate_unchecked(); /* (an allocation may come with none) */
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

static PyInterpreterState *g_interp; /* the interpreter whose objects are counted */

static inline int recording(void)
{
    if (!g_on || tls_inside || !g_session)
        return 0;
    /* not another interpreter's objects (3.12's subinterpreters may run under
     * a GIL of their own: the tables have no lock), nor an allocation with no
     * thread state at all */
    PyThreadState *ts = ulma_tstate_unchecked();
    return ts && ts->interp == g_interp;
}

static void patterns_free(void)
{
    for (size_t i = 0; i < g_npatterns; i++)
        free(g_patterns[i]);
    free(g_patterns);
    g_patterns = NULL;
    g_npatterns = 0;
}

/* A session's start, either mechanism: its type patterns, and new type ids
 * (every type is named again) and no live object; 0, or -1 with an
 * exception. */
static int tables_anew(PyObject *types)
{
    patterns_free();
    if (ulma_patterns_copy(types, &g_patterns, NULL, &g_npatterns) < 0) {
        patterns_free();
        return -1;
    }
    free(g_types);
    g_types = NULL;
    g_types_cap = g_types_n = 0;
    g_next_type = 1;
    map_clear(&g_live);
    g_interp = PyInterpreterState_Get();
    return 0;
}

/* ---- ulma's object allocator in front of the domain's (Python 3.11 and
 * 3.12: the mechanism; 3.13: the frees the ref tracer is not told of) ---- */
static PyMemAllocatorEx g_base; /* the object domain's allocator before ulma's */

/* Sets `mine` in front, unless ulma's is still set from before (`*set`): a
 * stop another allocator stood in front of leaves it where it is, still
 * called; set in front again, it would call that one, which calls it. */
static void allocator_in_front(const PyMemAllocatorEx *mine, int *set)
{
    if (*set)
        return;
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &g_base);
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, (PyMemAllocatorEx *)mine);
    *set = 1;
}

/* Puts the one before back if ulma's (`free`) is still in front; 0 if
 * another stands there (calling ulma's, which stays and passes on). */
static int allocator_taken_out(void (*mine_free)(void *, void *), int *set)
{
    PyMemAllocatorEx now;
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &now);
    if (now.free != mine_free)
        return 0;
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &g_base);
    *set = 0;
    return 1;
}

#if PY_VERSION_HEX >= 0x030D0000

static PyRefTracer g_prev; /* the tracer ulma's chains to */
static void *g_prev_data;

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
            if (map_put(&g_live, (uintptr_t)op, creator, s->id, 0) < 0)
                atomic_fetch_add_explicit(&g_session->objects_untracked, 1, memory_order_relaxed);
            record(ULMA_OBJ_NEW, creator, 0, s->id);
        }
    } else if (event == PyRefTracer_DESTROY) {
        gone(op);
    }
    tls_inside = 0;
    return 0;
}

/* ---- where the tracer is not told of every destruction: the object
 * allocator's frees.  An object the eval loop frees untold still gives its
 * block back (objects CPython keeps in a free list do not: those stay
 * found late).  Its object lies at the block's start, after the 16-byte GC
 * header, or after a 16-byte pre-header and the GC header; the live table
 * has it under that address, unless the tracer was told of it. ---- */
static int g_free_hooked;        /* ulma's is (or was left) set */
static int g_free_on;

static void *hook_malloc(void *ctx, size_t size)
{
    (void)ctx;
    return g_base.malloc(g_base.ctx, size);
}

static void *hook_calloc(void *ctx, size_t nelem, size_t elsize)
{
    (void)ctx;
    return g_base.calloc(g_base.ctx, nelem, elsize);
}

static void *hook_realloc(void *ctx, void *ptr, size_t size)
{
    (void)ctx; /* (an object moved is told to the tracer: gone, then made) */
    return g_base.realloc(g_base.ctx, ptr, size);
}

static void hook_free(void *ctx, void *ptr)
{
    (void)ctx;
    if (ptr && g_free_on && recording() && g_live.n) {
        tls_inside = 1;
        for (size_t at = 0; at <= 4 * sizeof(void *); at += 2 * sizeof(void *)) {
            addr_slot got = map_take(&g_live, (uintptr_t)ptr + at);
            if (got.addr) {
                record(ULMA_OBJ_FREE, got.creator, 0, got.type);
                break;
            }
        }
        tls_inside = 0;
    }
    g_base.free(g_base.ctx, ptr);
}

static void free_hook_start(void)
{
    static const PyMemAllocatorEx mine = {NULL, hook_malloc, hook_calloc, hook_realloc, hook_free};
    allocator_in_front(&mine, &g_free_hooked);
    g_free_on = 1;
}

static void free_hook_stop(void)
{
    g_free_on = 0;
    if (g_free_hooked)
        allocator_taken_out(hook_free, &g_free_hooked);
}

int ulma_objects_start(PyObject *types)
{
    if (tables_anew(types) < 0)
        return -1;
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
    int exact = check_exact();
    if (!exact)
        free_hook_start();
    atomic_store_explicit(&g_session->objects_mechanism,
                          exact ? ULMA_OBJECTS_REFTRACER : ULMA_OBJECTS_REFTRACER_LATE, memory_order_relaxed);
    return 0;
}

void ulma_objects_stop(void)
{
    free_hook_stop();
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

#else /* 3.11, 3.12: no ref tracer */

/* ---- Allocator ----
 *
 * Every block of the object domain (PyObject_Malloc and the rest: every
 * object CPython allocates, and some buffers) goes through ulma's
 * allocator, which calls the one set before (`g_base`).  Every call of this
 * domain comes with the GIL held: the tables need no lock.
 *
 * A block made is zeroed where an object header can lie (its first 48
 * bytes) and waits in `g_pending`, with the function that asked for it,
 * until its object is made: at each later call into the allocator the
 * oldest are read where an object header holds its type -- at the block's
 * start (an object without GC), after the 16-byte GC header, or after a
 * 16-byte pre-header and the GC header (an object with a managed dict).
 * Only a pointer to a type ulma knows counts (`g_known`: every type
 * object.__subclasses__() reaches at start, each type object made since,
 * and a walk again, at most every ULMA_WALK_GAP_NS, when an unknown pointer
 * shows: a static type readied later).  A block with none there is no
 * object (dict keys, buffers) and is forgotten; one still all zeros waits
 * (its type is set after its allocation: a GC object's allocation may run
 * a collection first).  All reads stay inside the block.
 *
 * A block freed is looked up by address in the live table: its maker and
 * type, and its size class.  The objects the garbage collector tracks when
 * the records start are put there too, made before (their destruction is
 * counted apart); other blocks made before are not read (their size is not
 * known).  Objects CPython takes from and gives back to its free lists
 * (float, tuple, list, dict, ...) pass no block: neither made nor destroyed
 * is seen, and a block a free list keeps counts as live.
 */
#include <time.h>

#define ULMA_PENDING_MAX 64
#define ULMA_OBJ_HEADER_BYTES (6 * sizeof(void *)) /* where the three headers may hold a type */
#define ULMA_WALK_GAP_NS 200000000ull
#define ULMA_MADE_BEFORE 0xFFFFFFFFu /* creator of an object made before the records began */
#if PY_VERSION_HEX >= 0x030C0000
#define ULMA_PREHEADER_FLAGS (Py_TPFLAGS_MANAGED_DICT | Py_TPFLAGS_MANAGED_WEAKREF)
#else
#define ULMA_PREHEADER_FLAGS Py_TPFLAGS_MANAGED_DICT
#endif

static addr_map g_known;        /* type objects, by address */
static PyObject *g_subclasses;  /* type.__subclasses__ */
static uint64_t g_walked_ns;    /* when types were last walked */
static int g_walk_asked;

typedef struct {
    uintptr_t block;
    size_t size;
    uint32_t creator;
} pending_block;
static pending_block g_pending[ULMA_PENDING_MAX]; /* oldest first */
static unsigned g_pending_n;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Puts every type reachable from `object` by __subclasses__ in g_known: the
 * whole tree each time (a type readied since hangs under one known long
 * since), each type once a walk. */
static void learn_types(void)
{
    addr_map seen = {NULL, 0, 0};
    PyObject *todo = PyList_New(0);
    if (!todo || PyList_Append(todo, (PyObject *)&PyBaseObject_Type) < 0) {
        Py_XDECREF(todo);
        PyErr_Clear();
        return;
    }
    Py_ssize_t n;
    while ((n = PyList_GET_SIZE(todo)) > 0) {
        PyObject *t = Py_NewRef(PyList_GET_ITEM(todo, n - 1));
        if (PyList_SetSlice(todo, n - 1, n, NULL) < 0)
            break;
        if (PyType_Check(t) && !map_has(&seen, (uintptr_t)t) && map_put(&seen, (uintptr_t)t, 0, 0, 0) == 0) {
            map_put(&g_known, (uintptr_t)t, 0, 0, 0);
            PyObject *subs = PyObject_CallOneArg(g_subclasses, t);
            if (!subs || PyList_SetSlice(todo, PY_SSIZE_T_MAX, PY_SSIZE_T_MAX, subs) < 0)
                PyErr_Clear();
            Py_XDECREF(subs);
        }
        Py_DECREF(t);
    }
    PyErr_Clear();
    Py_DECREF(todo);
    map_clear(&seen);
    g_walked_ns = now_ns();
}

/* The exception in flight, taken (and put back). */
static PyObject *raised_take(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value && tb)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

static void raised_put(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

/* A pending call (the main thread, between bytecodes): the walk again. */
static int walk_again(void *arg)
{
    (void)arg;
    g_walk_asked = 0;
    if (g_on && !tls_inside) {
        PyObject *exc = PyErr_Occurred() ? raised_take() : NULL;
        tls_inside = 1;
        learn_types();
        tls_inside = 0;
        if (exc)
            raised_put(exc);
    }
    return 0;
}

enum { NOT_MADE, NO_OBJECT, TYPED };

/* What block `b` (`size` bytes) holds: its object's type (TYPED), nothing
 * made yet (all zeros where a header's type would be), or no object of a
 * type ulma knows. */
static int block_type(uintptr_t b, size_t size, PyTypeObject **type, uintptr_t *object)
{
    static const size_t header_at[3] = {0, 2 * sizeof(void *), 4 * sizeof(void *)};
    int made = 0;
    for (int i = 0; i < 3 && header_at[i] + 2 * sizeof(void *) <= size; i++) {
        uintptr_t v;
        memcpy(&v, (const void *)(b + header_at[i] + sizeof(void *)), sizeof v);
        if (v < 4096) /* zero, or a GC header's flags */
            continue;
        made = 1;
        if (map_has(&g_known, v)) {
            *type = (PyTypeObject *)v;
            *object = b + header_at[i];
            return TYPED;
        }
    }
    return made ? NO_OBJECT : NOT_MADE;
}

/* Block `b` of `size`, asked for by `creator`, holds an object of `t`: the
 * record, and the block kept. */
static void block_made(uintptr_t b, size_t size, uint32_t creator, PyTypeObject *t, uintptr_t object)
{
    /* a type in the making: its instances will point at it */
    if (PyType_FastSubclass(t, Py_TPFLAGS_TYPE_SUBCLASS))
        map_put(&g_known, object, 0, 0, 0);
    type_slot *s = type_of(t);
    if (!s || s->off)
        return;
    uint16_t size_class = (uint16_t)ulma_obj_size_class(size);
    if (map_put(&g_live, b, creator, s->id, size_class) < 0)
        atomic_fetch_add_explicit(&g_session->objects_untracked, 1, memory_order_relaxed);
    record(ULMA_OBJ_NEW, creator, (uint8_t)(size_class << ULMA_OBJF_SIZE_SHIFT), s->id);
}

/* The pending block at `i`: typed now (or forgotten) and taken out. */
static void settle_one(unsigned i, int got, PyTypeObject *t, uintptr_t object)
{
    pending_block pb = g_pending[i];
    memmove(&g_pending[i], &g_pending[i + 1], (g_pending_n - i - 1) * sizeof *g_pending);
    g_pending_n--;
    if (got == TYPED) {
        block_made(pb.block, pb.size, pb.creator, t, object);
    } else if (got == NO_OBJECT) {
        /* no object, or one of a type readied since the last walk (a block
         * still all zeros when ULMA_PENDING_MAX blocks more were made, or
         * when the records end, holds none: an object gets its type as soon
         * as its block is made, or at the latest after the collection its
         * allocation ran) */
        if (!g_walk_asked && now_ns() - g_walked_ns > ULMA_WALK_GAP_NS && Py_AddPendingCall(walk_again, NULL) == 0)
            g_walk_asked = 1;
    }
}

/* The oldest pending blocks whose objects are made by now; with `all`
 * (the records end), every one: a block still all zeros holds no object. */
static void settle(int all)
{
    while (g_pending_n) {
        PyTypeObject *t = NULL;
        uintptr_t object = 0;
        int got = block_type(g_pending[0].block, g_pending[0].size, &t, &object);
        if (got == NOT_MADE && !all)
            return;
        settle_one(0, got == NOT_MADE ? NO_OBJECT : got, t, object);
    }
}

/* Block `b` of `size` bytes is new (`zero`: zero where a header lies). */
static void block_new(uintptr_t b, size_t size, int zero)
{
    /* kept still: freed while ulma was not looking (a collection run from
     * inside ulma's own allocation), gone by now */
    addr_slot owed = map_take(&g_live, b);
    if (owed.addr)
        record(ULMA_OBJ_FREE, owed.creator == ULMA_MADE_BEFORE ? 0 : owed.creator,
               (uint8_t)(ULMA_OBJF_LATE | (owed.creator == ULMA_MADE_BEFORE ? ULMA_OBJF_UNKNOWN : 0) |
                         owed.size_class << ULMA_OBJF_SIZE_SHIFT),
               owed.type);
    if (size < 2 * sizeof(void *)) /* too small for any object */
        return;
    if (zero)
        memset((void *)b, 0, size < ULMA_OBJ_HEADER_BYTES ? size : ULMA_OBJ_HEADER_BYTES);
    if (g_pending_n == ULMA_PENDING_MAX) {
        PyTypeObject *t = NULL;
        uintptr_t object = 0;
        int got = block_type(g_pending[0].block, g_pending[0].size, &t, &object);
        settle_one(0, got == NOT_MADE ? NO_OBJECT : got, t, object);
    }
    g_pending[g_pending_n++] = (pending_block){b, size, creator_now()};
}

/* Block `b` goes. */
static void block_gone(uintptr_t b)
{
    for (unsigned i = 0; i < g_pending_n; i++) {
        if (g_pending[i].block != b)
            continue;
        PyTypeObject *t = NULL;
        uintptr_t object = 0;
        int got = block_type(b, g_pending[i].size, &t, &object);
        settle_one(i, got == NOT_MADE ? NO_OBJECT : got, t, object); /* (made and gone unmade: none) */
        break;
    }
    addr_slot got = map_take(&g_live, b);
    if (got.addr) {
        int before = got.creator == ULMA_MADE_BEFORE;
        record(ULMA_OBJ_FREE, before ? 0 : got.creator,
               (uint8_t)((before ? ULMA_OBJF_UNKNOWN : 0) | got.size_class << ULMA_OBJF_SIZE_SHIFT), got.type);
    }
    /* a type object (GC, no pre-header) gone: no instance can point at it */
    if (g_known.n) {
        map_take(&g_known, b + 2 * sizeof(void *));
        map_take(&g_known, b + 4 * sizeof(void *));
    }
}

/* Block `b`, pending, freed from inside ulma's own work (a collection its
 * allocation ran): forgotten, never read again. */
static void pending_forget(uintptr_t b)
{
    for (unsigned i = 0; i < g_pending_n; i++)
        if (g_pending[i].block == b) {
            memmove(&g_pending[i], &g_pending[i + 1], (g_pending_n - i - 1) * sizeof *g_pending);
            g_pending_n--;
            return;
        }
}

static void *hook_malloc(void *ctx, size_t size)
{
    (void)ctx;
    void *b = g_base.malloc(g_base.ctx, size);
    if (b && recording()) {
        tls_inside = 1;
        settle(0);
        block_new((uintptr_t)b, size, 1);
        tls_inside = 0;
    }
    return b;
}

static void *hook_calloc(void *ctx, size_t nelem, size_t elsize)
{
    (void)ctx;
    void *b = g_base.calloc(g_base.ctx, nelem, elsize);
    if (b && recording()) {
        tls_inside = 1;
        settle(0);
        block_new((uintptr_t)b, nelem * elsize, 0);
        tls_inside = 0;
    }
    return b;
}

static void *hook_realloc(void *ctx, void *ptr, size_t size)
{
    if (!ptr)
        return hook_malloc(ctx, size);
    void *b = g_base.realloc(g_base.ctx, ptr, size);
    if (b && b != ptr && !recording() && g_on && g_pending_n)
        pending_forget((uintptr_t)ptr); /* (moved from inside ulma's own work) */
    if (b && recording()) {
        tls_inside = 1;
        /* the object moves with its block (the size it was made with stays
         * its size: its records add up); the pending entry first: the old
         * block is freed memory now */
        int moved = 0;
        for (unsigned i = 0; i < g_pending_n; i++)
            if (g_pending[i].block == (uintptr_t)ptr) {
                g_pending[i].block = (uintptr_t)b;
                g_pending[i].size = size;
                moved = 1;
                break;
            }
        if (!moved && b != ptr) {
            addr_slot got = map_take(&g_live, (uintptr_t)ptr);
            if (got.addr && map_put(&g_live, (uintptr_t)b, got.creator, got.type, got.size_class) < 0)
                atomic_fetch_add_explicit(&g_session->objects_untracked, 1, memory_order_relaxed);
        }
        settle(0);
        tls_inside = 0;
    }
    return b;
}

static void hook_free(void *ctx, void *ptr)
{
    (void)ctx;
    if (ptr && recording()) {
        tls_inside = 1;
        settle(0);
        block_gone((uintptr_t)ptr);
        tls_inside = 0;
    } else if (ptr && g_on && g_pending_n) {
        pending_forget((uintptr_t)ptr);
    }
    g_base.free(g_base.ctx, ptr);
}

/* The objects the collector tracks now: kept as made before (their
 * destructions are counted apart, their type known). */
static void adopt_existing(void)
{
    PyObject *gc = PyImport_ImportModule("gc");
    PyObject *all = gc ? PyObject_CallMethod(gc, "get_objects", NULL) : NULL;
    Py_XDECREF(gc);
    if (!all || !PyList_Check(all)) {
        Py_XDECREF(all);
        PyErr_Clear();
        return;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(all); i++) {
        PyObject *o = PyList_GET_ITEM(all, i);
        PyTypeObject *t = Py_TYPE(o);
        if (o == all || !PyType_IS_GC(t))
            continue;
        size_t pre = 2 * sizeof(void *) + ((t->tp_flags & ULMA_PREHEADER_FLAGS) ? 2 * sizeof(void *) : 0);
        type_slot *s = type_of(t);
        if (s && !s->off && map_put(&g_live, (uintptr_t)o - pre, ULMA_MADE_BEFORE, s->id, 0) < 0)
            break; /* (the table is full: the rest go unseen, as other blocks made before) */
    }
    Py_DECREF(all);
}

void ulma_objects_check(void)
{
}

int ulma_objects_start(PyObject *types)
{
    if (tables_anew(types) < 0)
        return -1;
    if (!g_str_module && !(g_str_module = PyUnicode_InternFromString("__module__")))
        return -1;
    if (!g_subclasses && !(g_subclasses = PyObject_GetAttrString((PyObject *)&PyType_Type, "__subclasses__")))
        return -1;
    map_clear(&g_known);
    g_pending_n = 0;
    tls_inside = 1;
    learn_types();
    adopt_existing();
    tls_inside = 0;
    static const PyMemAllocatorEx mine = {NULL, hook_malloc, hook_calloc, hook_realloc, hook_free};
    allocator_in_front(&mine, &g_installed);
    g_on = 1;
    atomic_store_explicit(&g_session->objects_mechanism, ULMA_OBJECTS_ALLOCATOR, memory_order_relaxed);
    return 0;
}

void ulma_objects_stop(void)
{
    if (!g_installed)
        return;
    if (g_on && g_session) {
        tls_inside = 1;
        settle(1);
        tls_inside = 0;
    }
    g_on = 0;
    if (!allocator_taken_out(hook_free, &g_installed) && g_session)
        atomic_fetch_add_explicit(&g_session->objects_displaced, 1, memory_order_relaxed);
    map_clear(&g_live);
    map_clear(&g_known);
    g_pending_n = 0;
}

void ulma_objects_after_fork(void)
{
    g_on = 0; /* its parent's tables: a session of its own starts afresh */
    g_pending_n = 0;
}

#endif
