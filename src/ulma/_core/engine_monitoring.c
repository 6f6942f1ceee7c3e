/*
 * engine_monitoring.c -- sees calls and returns through sys.monitoring
 * (PEP 669, Python 3.12+), with C callables as callbacks.  It adds no C frame
 * to Python calls, so recursion behaves exactly as without ulma.
 *
 * The tool id: 3, else 4 -- the two ids no standard tool expects.  DEBUGGER_ID
 * 0, COVERAGE_ID 1, PROFILER_ID 2 (cProfile) and OPTIMIZER_ID 5 stay free for
 * the program's own tools, and no tool is ever evicted.  (3.12 walks the
 * tool bits from 0 up for every event: 3 costs ~3 instructions less than 4.)
 */
#include "agent.h"
#include "agen.h"
#include "tasks.h"

#include <string.h>

#if PY_VERSION_HEX >= 0x030C0000

static int g_tool_id = -1;
static long g_mask; /* the events we asked for */
static PyObject *g_disable; /* sys.monitoring.DISABLE */

/* A function not traced now (--only, --exclude, switched off): its event
 * is disabled where it fired, so the interpreter stops calling us there
 * (until restart_events).  PY_THROW and PY_UNWIND cannot be disabled
 * (sys.monitoring refuses): they are rare, and only not written. */
static inline PyObject *not_traced(uint8_t kind)
{
    if (kind == ULMA_THROW || kind == ULMA_UNWIND || !g_disable)
        Py_RETURN_NONE;
    return Py_NewRef(g_disable);
}

/* Is the current frame of w's thread awaited by the one right below it
 * (a generator's or coroutine's, no C in between)?  Then it is no task's own
 * coroutine (tasks.c): the common case, told inline. */
static inline int awaited(const ulma_writer *w)
{
    const PyThreadState *ts = ulma_writer_tstate(w);
    const _PyInterpreterFrame *f = ts ? ulma_current_frame(ts) : NULL;
    const _PyInterpreterFrame *below = f ? f->previous : NULL;
    if (!below || below->owner == FRAME_OWNED_BY_CSTACK)
        return 0;
    return ulma_frame_gen_family(below);
}

/* The TASK record due before a coroutine's event on w's thread (tasks.h). */
static inline uint64_t task_note(ulma_writer *w, uint8_t kind)
{
    return awaited(w) ? 0 : ulma_task_note_current(w, kind);
}

static __attribute__((noinline)) PyObject *emit_slow(ulma_writer *w, uint64_t t, uint32_t idv, uint8_t kind);

/* A coroutine's event (its code's slot carries ULMA_GEN_SLOW, symbols.c):
 * a TASK record first if it is a task's own coroutine (tasks.c). */
static __attribute__((noinline)) PyObject *coroutine_event_slow(PyCodeObject *co, uint8_t kind)
{
    ulma_writer *w = tls_writer;
    ulma_code_extra *x = (ulma_code_extra *)co->co_extra;
    if (ULMA_LIKELY(tls_writer_gen == g_generation && w != NULL && x != NULL && g_extra_index < x->size)) {
        uintptr_t v = (uintptr_t)x->slots[g_extra_index];
        uint32_t idv = (uint32_t)(v >> 32);
        if (ULMA_LIKELY(((uint32_t)v & ~ULMA_GEN_SLOW) == g_code_gen && !(idv & ULMA_ID_OFF))) {
            uint64_t note = task_note(w, kind);
            uint64_t t = ulma_ticks(g_clock);
            if (note)
                ulma_emit_noted(w, t, idv, kind, 0, 0, 1, note);
            else if (!ulma_emit_fast(w, t, idv, kind))
                ulma_emit_slow(w, t, idv, kind, 0, 0, 1);
            Py_RETURN_NONE;
        }
    }
    /* the general way: a new thread or code, or a function not traced now */
    uint32_t idv = ulma_code_id(co);
    if (idv & ULMA_ID_OFF)
        return not_traced(kind);
    w = ulma_writer_get();
    if (ULMA_LIKELY(w != NULL)) {
        uint64_t note = task_note(w, kind);
        ulma_emit_noted(w, ulma_ticks(g_clock), idv, kind, 0, 0, 1, note);
    }
    Py_RETURN_NONE;
}

/* The common case, with no call in it (the rest is a tail call): a known
 * coroutine awaited by the frame below (no task's own), room in the ring,
 * no reading due. */
static inline __attribute__((always_inline)) PyObject *coroutine_event(PyCodeObject *co, uint8_t kind)
{
    ulma_writer *w = tls_writer;
    ulma_code_extra *x = (ulma_code_extra *)co->co_extra;
    uint64_t t;
    if (ULMA_LIKELY(tls_writer_gen == g_generation && w != NULL && x != NULL && g_extra_index < x->size)) {
        uintptr_t v = (uintptr_t)x->slots[g_extra_index];
        uint32_t idv = (uint32_t)(v >> 32);
        if (ULMA_LIKELY(((uint32_t)v & ~ULMA_GEN_SLOW) == g_code_gen && !(idv & ULMA_ID_OFF) && awaited(w) &&
                        ulma_ticks_inline(g_clock, &t))) {
            if (ULMA_LIKELY(ulma_emit_fast(w, t, idv, kind)))
                Py_RETURN_NONE;
            return emit_slow(w, t, idv, kind); /* a full ring, a reading due */
        }
    }
    return coroutine_event_slow(co, kind);
}

static __attribute__((noinline)) PyObject *code_event_slow(PyObject *code, uint8_t kind)
{
    if (((PyCodeObject *)code)->co_flags & (CO_COROUTINE | CO_ITERABLE_COROUTINE))
        return coroutine_event((PyCodeObject *)code, kind);
    if (ulma_code_event_slow((PyCodeObject *)code, kind, 1, 0, 0))
        return not_traced(kind);
    Py_RETURN_NONE;
}

static __attribute__((noinline)) PyObject *emit_slow(ulma_writer *w, uint64_t t, uint32_t idv, uint8_t kind)
{
    ulma_emit_slow(w, t, idv, kind, 0, 0, 1);
    Py_RETURN_NONE;
}

/* The common case makes no call (a leaf: nothing saved); the rest are tail calls. */
static inline __attribute__((always_inline)) PyObject *code_event(PyObject *code, uint8_t kind)
{
    ulma_writer *w;
    uint64_t t;
    uint32_t idv;
    int how = ulma_code_event_fast((PyCodeObject *)code, kind, &w, &t, &idv);
    if (ULMA_LIKELY(how == ULMA_FAST_DONE))
        Py_RETURN_NONE;
    if (how == ULMA_FAST_EMIT)
        return emit_slow(w, t, idv, kind);
    return code_event_slow(code, kind);
}

#define CALLBACK(fn, kind)                                                         \
    static PyObject *fn(PyObject *self, PyObject *const *args, Py_ssize_t nargs)   \
    {                                                                              \
        (void)self;                                                                \
        (void)nargs;                                                               \
        return code_event(args[0], kind);                                          \
    }
/* Builtins and method descriptors: what cProfile reports as C calls. */
static inline int is_native(PyObject *c)
{
    return PyCFunction_Check(c) || Py_IS_TYPE(c, &PyMethodDescr_Type);
}

/* Native calls: CALL(code, offset, callable, arg0).  A C callee gets a
 * C_CALL record; a Python callee is remembered, so its PY_START can say how
 * long getting into it took.  Calls made by ulma's own code are skipped. */
static PyObject *on_call(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    ulma_writer *w = ulma_writer_get();
    if (ULMA_LIKELY(w != NULL) && nargs >= 3) {
        PyObject *c = args[2];
        if (is_native(c)) {
            uint64_t t = ulma_ticks(g_clock);
            w->call_code = NULL;
            if (!(ulma_code_id((PyCodeObject *)args[0]) & ULMA_ID_HIDDEN))
                ulma_emit(w, t, ulma_native_id(c), ULMA_C_CALL, 1);
        } else {
            PyObject *fn = PyMethod_Check(c) ? PyMethod_GET_FUNCTION(c) : c;
            if (PyFunction_Check(fn)) {
                w->call_code = PyFunction_GET_CODE(fn);
                w->call_tick = ulma_ticks(g_clock);
            }
        }
    }
    Py_RETURN_NONE;
}

/* C_RETURN and C_RAISE: the same callables as on_call, so calls pair up. */
static PyObject *on_c_return(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    ulma_writer *w = ulma_writer_get();
    if (ULMA_LIKELY(w != NULL) && nargs >= 3 && is_native(args[2])) {
        uint64_t t = ulma_ticks(g_clock);
        if (!(ulma_code_id((PyCodeObject *)args[0]) & ULMA_ID_HIDDEN))
            ulma_emit(w, t, ulma_native_id(args[2]), ULMA_C_RETURN, 1);
    }
    Py_RETURN_NONE;
}

/* PY_START with native calls: the dispatch since the caller's CALL. */
static PyObject *on_start_native(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    (void)nargs;
    ulma_writer *w = ulma_writer_get();
    if (ULMA_LIKELY(w != NULL)) {
        uint64_t t = ulma_ticks(g_clock);
        uint8_t flags = 0;
        uint16_t aux = 0;
        if (w->call_code == (void *)args[0]) {
            uint64_t d = t - w->call_tick;
            flags = ULMA_EVF_DISPATCH;
            aux = d > 0xffff ? 0xffff : (uint16_t)d;
        }
        w->call_code = NULL;
        uint32_t idv = ulma_code_id((PyCodeObject *)args[0]);
        if (idv & ULMA_ID_OFF)
            return not_traced(ULMA_CALL);
        /* a coroutine's first step: a task's, perhaps (tasks.h) */
        uint64_t note = ((PyCodeObject *)args[0])->co_flags & (CO_COROUTINE | CO_ITERABLE_COROUTINE)
                            ? task_note(w, ULMA_CALL)
                            : 0;
        if (ULMA_UNLIKELY(note))
            ulma_emit_noted(w, t, idv, ULMA_CALL, flags, aux, 1, note);
        else
            ulma_emit_ex(w, t, idv, ULMA_CALL, flags, aux, 1);
    }
    Py_RETURN_NONE;
}

CALLBACK(on_start, ULMA_CALL)
CALLBACK(on_return, ULMA_RETURN)
CALLBACK(on_unwind, ULMA_UNWIND)
#undef CALLBACK

/* An async generator's YIELD, RESUME or THROW at an await (agen.h): the
 * event's offset (bytes) is its YIELD_VALUE or RESUME. */
static __attribute__((noinline)) PyObject *agen_event(PyObject *const *args, Py_ssize_t nargs, uint8_t kind)
{
    PyCodeObject *co = (PyCodeObject *)args[0];
    Py_ssize_t offset = nargs >= 2 && PyLong_CheckExact(args[1]) ? PyLong_AsSsize_t(args[1]) : -1;
    if (offset < 0 && PyErr_Occurred())
        PyErr_Clear();
    if (offset < 0 || !ulma_agen_awaits(co, offset / (Py_ssize_t)sizeof(_Py_CODEUNIT)))
        return code_event(args[0], kind);
    if (ulma_code_event_slow(co, kind, 1, 0, ULMA_ID_AWAIT))
        return not_traced(kind);
    Py_RETURN_NONE;
}

/* Generators' and coroutines' events: an async generator's go through agen_event. */
#define GEN_CALLBACK(fn, kind)                                                     \
    static PyObject *fn(PyObject *self, PyObject *const *args, Py_ssize_t nargs)   \
    {                                                                              \
        (void)self;                                                                \
        if (ULMA_UNLIKELY(((PyCodeObject *)args[0])->co_flags & CO_ASYNC_GENERATOR)) \
            return agen_event(args, nargs, kind);                                  \
        return code_event(args[0], kind);                                          \
    }
GEN_CALLBACK(on_resume, ULMA_RESUME)
GEN_CALLBACK(on_throw, ULMA_THROW)
GEN_CALLBACK(on_yield, ULMA_YIELD)
#undef GEN_CALLBACK

/* The floor: the same dispatch into C, doing nothing. */
static PyObject *on_empty(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    (void)args;
    (void)nargs;
    Py_RETURN_NONE;
}

/* The recording floor (benchmarks): what any recorder pays -- the dispatch, a
 * clock read and one 16-byte store -- with nothing else ulma does. */
/* volatile: nothing reads the slot, and without it the compiler drops the
 * stores (it did: the floor measured no store at all) */
static __thread struct {
    volatile uint64_t ticks;
    const void *volatile what;
} tls_floor_slot __attribute__((tls_model("initial-exec")));

static PyObject *on_floor(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    (void)nargs;
    tls_floor_slot.ticks = ulma_ticks(g_clock);
    tls_floor_slot.what = args[0];
    Py_RETURN_NONE;
}

static PyMethodDef g_callbacks[] = {
    {"PY_START", (PyCFunction)(void (*)(void))on_start, METH_FASTCALL, NULL},
    {"PY_RESUME", (PyCFunction)(void (*)(void))on_resume, METH_FASTCALL, NULL},
    {"PY_THROW", (PyCFunction)(void (*)(void))on_throw, METH_FASTCALL, NULL},
    {"PY_RETURN", (PyCFunction)(void (*)(void))on_return, METH_FASTCALL, NULL},
    {"PY_YIELD", (PyCFunction)(void (*)(void))on_yield, METH_FASTCALL, NULL},
    {"PY_UNWIND", (PyCFunction)(void (*)(void))on_unwind, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};
static PyMethodDef g_native_callbacks[] = {
    {"CALL", (PyCFunction)(void (*)(void))on_call, METH_FASTCALL, NULL},
    {"C_RETURN", (PyCFunction)(void (*)(void))on_c_return, METH_FASTCALL, NULL},
    {"C_RAISE", (PyCFunction)(void (*)(void))on_c_return, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};
static PyMethodDef g_start_native_def = {"PY_START", (PyCFunction)(void (*)(void))on_start_native,
                                         METH_FASTCALL, NULL};
static PyMethodDef g_empty_def = {"empty", (PyCFunction)(void (*)(void))on_empty, METH_FASTCALL, NULL};
static PyMethodDef g_floor_def = {"floor", (PyCFunction)(void (*)(void))on_floor, METH_FASTCALL, NULL};
static int g_registered_native;

static PyObject *monitoring_module(void)
{
    PyObject *sys = PyImport_ImportModule("sys");
    if (!sys)
        return NULL;
    PyObject *mon = PyObject_GetAttrString(sys, "monitoring");
    Py_DECREF(sys);
    return mon;
}

/* Claims id 3, else 4; -1 with an exception if both are taken. */
static int claim_tool_id(PyObject *mon)
{
    static const int order[] = {3, 4};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        PyObject *owner = PyObject_CallMethod(mon, "get_tool", "i", order[i]);
        if (!owner)
            return -1;
        int taken = owner != Py_None;
        Py_DECREF(owner);
        if (taken)
            continue;
        PyObject *r = PyObject_CallMethod(mon, "use_tool_id", "is", order[i], "ulma");
        if (!r)
            return -1;
        Py_DECREF(r);
        return order[i];
    }
    PyErr_SetString(PyExc_RuntimeError,
                    "sys.monitoring tool ids 3 and 4 are both taken by the program's own tools; ulma "
                    "leaves 0, 1, 2 and 5 to the tools that expect them, so it cannot attach");
    return -1;
}

static int set_events(PyObject *mon, int tool, long mask)
{
    PyObject *r = PyObject_CallMethod(mon, "set_events", "il", tool, mask);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* Registers each callback of `defs` (PY_START replaced by `start` if not
 * NULL) and ORs its event bit into *mask. */
static int register_all(PyObject *mon, PyObject *events, int tool, PyMethodDef *defs, int empty,
                        PyMethodDef *start, long *mask)
{
    for (PyMethodDef *d = defs; d->ml_name; d++) {
        PyObject *bit = PyObject_GetAttrString(events, d->ml_name);
        if (!bit)
            return -1;
        long b = PyLong_AsLong(bit);
        Py_DECREF(bit);
        PyMethodDef *def = empty == ULMA_HOOKS_FLOOR ? &g_floor_def
                           : empty                   ? &g_empty_def
                           : (start && strcmp(d->ml_name, "PY_START") == 0) ? start
                                                                             : d;
        PyObject *fn = PyCFunction_New(def, NULL);
        if (!fn)
            return -1;
        PyObject *r = PyObject_CallMethod(mon, "register_callback", "ilO", tool, b, fn);
        Py_DECREF(fn);
        if (!r)
            return -1;
        Py_DECREF(r);
        *mask |= b;
    }
    return 0;
}

int ulma_engine_monitoring_start(int empty, int native_calls)
{
    PyObject *mon = monitoring_module();
    if (!mon)
        return -1;
    PyObject *events = PyObject_GetAttrString(mon, "events");
    int tool = events ? claim_tool_id(mon) : -1;
    long mask = 0;
    if (tool < 0)
        goto fail;
    if (register_all(mon, events, tool, g_callbacks, empty, native_calls ? &g_start_native_def : NULL,
                     &mask) < 0)
        goto fail_tool;
    if (native_calls && register_all(mon, events, tool, g_native_callbacks, empty, NULL, &mask) < 0)
        goto fail_tool;
    g_registered_native = native_calls;
    if (set_events(mon, tool, mask) < 0)
        goto fail_tool;
    g_tool_id = tool;
    g_mask = mask;
    Py_XSETREF(g_disable, PyObject_GetAttrString(mon, "DISABLE"));
    if (!g_disable)
        PyErr_Clear(); /* events of functions not traced are then only not written */
    if (g_session)
        atomic_store_explicit(&g_session->tool_id, (uint32_t)tool, memory_order_relaxed);
    Py_DECREF(events);
    Py_DECREF(mon);
    return 0;

fail_tool: {
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *r = PyObject_CallMethod(mon, "free_tool_id", "i", tool);
    Py_XDECREF(r);
    PyErr_SetRaisedException(exc);
}
fail:
    Py_XDECREF(events);
    Py_DECREF(mon);
    return -1;
}

void ulma_engine_monitoring_restart(void)
{
    if (g_tool_id < 0)
        return;
    PyObject *exc = PyErr_GetRaisedException(); /* an event on the unwind path */
    PyObject *mon = monitoring_module();
    PyObject *r = mon ? PyObject_CallMethod(mon, "restart_events", NULL) : NULL;
    Py_XDECREF(r);
    Py_XDECREF(mon);
    PyErr_Clear();
    PyErr_SetRaisedException(exc);
}

/* Calibration: the callbacks off and on again, without giving up the tool. */
int ulma_engine_monitoring_pause(int paused)
{
    if (g_tool_id < 0)
        return 0;
    PyObject *mon = monitoring_module();
    if (!mon)
        return -1;
    int rc = set_events(mon, g_tool_id, paused ? 0 : g_mask);
    Py_DECREF(mon);
    return rc;
}

void ulma_engine_monitoring_stop(void)
{
    if (g_tool_id < 0)
        return;
    PyObject *exc = PyErr_GetRaisedException(); /* stop may run while one is set */
    PyObject *mon = monitoring_module();
    if (mon) {
        set_events(mon, g_tool_id, 0);
        static const char *names[] = {"PY_START", "PY_RESUME", "PY_THROW", "PY_RETURN",
                                      "PY_YIELD", "PY_UNWIND", "CALL", "C_RETURN", "C_RAISE"};
        size_t count = g_registered_native ? 9 : 6;
        PyObject *events = PyObject_GetAttrString(mon, "events");
        for (size_t i = 0; events && i < count; i++) {
            PyObject *bit = PyObject_GetAttrString(events, names[i]);
            if (!bit)
                break;
            PyObject *r = PyObject_CallMethod(mon, "register_callback", "iOO", g_tool_id, bit, Py_None);
            Py_XDECREF(r);
            Py_DECREF(bit);
        }
        Py_XDECREF(events);
        PyObject *r = PyObject_CallMethod(mon, "free_tool_id", "i", g_tool_id);
        Py_XDECREF(r);
        Py_DECREF(mon);
    }
    PyErr_Clear();
    PyErr_SetRaisedException(exc);
    g_tool_id = -1;
}

#else /* Python 3.11: no sys.monitoring */

int ulma_engine_monitoring_start(int empty, int native_calls)
{
    (void)empty;
    (void)native_calls;
    PyErr_SetString(PyExc_RuntimeError, "the sys.monitoring engine needs Python 3.12 or newer");
    return -1;
}

void ulma_engine_monitoring_stop(void) {}

int ulma_engine_monitoring_pause(int paused)
{
    (void)paused;
    return 0;
}

void ulma_engine_monitoring_restart(void) {}

#endif
