/*
 * tasks.c -- which asyncio task a coroutine's events belong to (the agent's
 * side of records.h "TASK records").
 *
 * A task is told by its own coroutine: the object the task sends into at
 * each of its steps.  Only a coroutine whose caller (the first frame below
 * its own that counts) is not a generator or coroutine can be one: a task's
 * step is C, called from the event loop's Handle._run, while an awaited
 * coroutine's caller is its awaiter.  For such a coroutine the agent looks it
 * up in a map (coroutine address -> task number, 0 for "not a task"), and
 * on a miss asks asyncio: `_asyncio.current_task()` (on 3.11, where that one
 * is Python, `_asyncio._current_tasks[get_running_loop()]`), whose
 * `get_coro()` must be this very coroutine.  That is once per task (and once
 * per coroutine started by other means outside any await); an entry goes
 * when its coroutine returns or unwinds, and a coroutine starting anew at an
 * address replaces whatever was kept there.  Everything else a coroutine's
 * event pays is the look at its caller's code flags (and, for a caller
 * that is a coroutine, at the instruction it is at: tasks.h).
 *
 * The map's entries are the program's own live top-level coroutines; it
 * stops growing at TASK_MAP_MAX (ULMA_TEST_TASK_MAP_MAX in the environment
 * sets a lower bound, for tests): a task that starts with the map full gets
 * no number and is counted (tasks_untold).  From then on a coroutine not in
 * the map is asked about only at its start, so a task is never counted
 * there and numbered later too.
 *
 * The engines write the record with the event (ulma_emit_noted): both or
 * neither.
 *
 * A task created eagerly (3.12's eager_task_factory) runs its first step
 * inside create_task(), called from its creator's coroutine: that coroutine
 * is at a call, not an await, so the step is looked up too (tasks.h
 * ulma_task_candidate).  Not seen: a task type that
 * overrides get_coro() is not followed (the agent never runs the program's
 * Python code from its hooks); one that overrides get_name() is named by its
 * type.  Coroutines of a sub-interpreter are not followed.
 */
#include "tasks.h"
#include "symbols.h"

#include <stdlib.h>
#include <string.h>

#define TASK_MAP_MAX (1u << 22)
#define TASK_NUMBER_MAX 0x7fffffffu

typedef struct {
    uintptr_t key; /* the coroutine's address; 0 = empty */
    uint32_t number;
} task_slot;

static task_slot *g_slots;
static size_t g_cap, g_n; /* g_cap a power of two, or 0 */
static size_t g_max;      /* TASK_MAP_MAX, or lower for tests; 0: not read yet */
static int g_untold;      /* a task got no number (the map was full) */
static unsigned g_shift;
static uint32_t g_last_number;
static uint64_t g_name_bytes;     /* symbol-table bytes task names took */
static PyObject *g_current_task;  /* _asyncio.current_task (3.12+), once _asyncio is imported */
static PyObject *g_running_loop, *g_current_tasks; /* 3.11: get_running_loop, _current_tasks */
static PyObject *g_task_get_coro, *g_task_get_name; /* _asyncio.Task's own methods */

static inline size_t slot_of(uintptr_t key)
{
    return (size_t)(((uint64_t)(key >> 4) * 0x9E3779B97F4A7C15ull) >> g_shift);
}

static task_slot *find(uintptr_t key)
{
    if (!g_cap)
        return NULL;
    for (size_t i = slot_of(key);; i = (i + 1) & (g_cap - 1)) {
        if (g_slots[i].key == key)
            return &g_slots[i];
        if (g_slots[i].key == 0)
            return NULL;
    }
}

static int grow(void)
{
    size_t cap = g_cap ? g_cap * 2 : 256;
    task_slot *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -1;
    unsigned shift = 64 - (unsigned)__builtin_ctzll(cap);
    task_slot *old = g_slots;
    size_t old_cap = g_cap;
    g_slots = slots;
    g_cap = cap;
    g_shift = shift;
    for (size_t k = 0; k < old_cap; k++) {
        if (!old[k].key)
            continue;
        size_t i = slot_of(old[k].key);
        while (g_slots[i].key)
            i = (i + 1) & (cap - 1);
        g_slots[i] = old[k];
    }
    free(old);
    return 0;
}

/* Keeps key -> number (replacing an entry of the key); 0 if it could not. */
static int put(uintptr_t key, uint32_t number)
{
    task_slot *s = find(key);
    if (s) {
        s->number = number;
        return 1;
    }
    if (g_n >= g_max || ((g_n + 1) * 2 > g_cap && grow() < 0))
        return 0;
    size_t i = slot_of(key);
    while (g_slots[i].key)
        i = (i + 1) & (g_cap - 1);
    g_slots[i].key = key;
    g_slots[i].number = number;
    g_n++;
    return 1;
}

/* Removes the entry at s, moving later entries of its run back (no tombstones). */
static void forget(task_slot *s)
{
    size_t i = (size_t)(s - g_slots), mask = g_cap - 1;
    for (size_t j = (i + 1) & mask; g_slots[j].key; j = (j + 1) & mask) {
        size_t home = slot_of(g_slots[j].key);
        /* j's entry may fill the hole at i if its home is not in (i, j] */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            g_slots[i] = g_slots[j];
            i = j;
        }
    }
    g_slots[i].key = 0;
    g_slots[i].number = 0;
    g_n--;
}

static PyObject *lookup_in_type(PyTypeObject *type, const char *name)
{
    PyObject *s = PyUnicode_InternFromString(name);
    if (!s)
        return NULL;
    PyObject *v = _PyType_Lookup(type, s); /* borrowed */
    Py_DECREF(s);
    return v;
}

/* _asyncio's current_task and Task methods, once the program imported it. */
static int load_asyncio(void)
{
    PyObject *name = PyUnicode_FromString("_asyncio");
    if (!name)
        return 0;
    PyObject *mod = PyImport_GetModule(name); /* only if the program imported it */
    Py_DECREF(name);
    if (!mod)
        return 0;
    /* 3.12+: current_task is C; 3.11: it is Python, made of these two (C) */
    PyObject *ct = PyObject_GetAttrString(mod, "current_task");
    PyObject *loop = NULL, *tasks = NULL;
    if (!ct) {
        PyErr_Clear();
        loop = PyObject_GetAttrString(mod, "get_running_loop");
        tasks = PyObject_GetAttrString(mod, "_current_tasks");
    }
    PyObject *task = PyObject_GetAttrString(mod, "Task");
    Py_DECREF(mod);
    if ((!ct && (!loop || !tasks || !PyDict_Check(tasks))) || !task || !PyType_Check(task)) {
        PyErr_Clear();
        Py_XDECREF(ct);
        Py_XDECREF(loop);
        Py_XDECREF(tasks);
        Py_XDECREF(task);
        return 0;
    }
    PyObject *coro = lookup_in_type((PyTypeObject *)task, "get_coro");
    PyObject *nm = lookup_in_type((PyTypeObject *)task, "get_name");
    Py_DECREF(task);
    if (!coro || !nm) {
        Py_XDECREF(ct);
        Py_XDECREF(loop);
        Py_XDECREF(tasks);
        return 0;
    }
    g_current_task = ct;
    g_running_loop = loop;
    g_current_tasks = tasks;
    g_task_get_coro = Py_NewRef(coro);
    g_task_get_name = Py_NewRef(nm);
    return 1;
}

/* The name a task goes by: get_name() if its type has Task's own, else its
 * type's name.  NULL if none could be had. */
static PyObject *task_name(PyObject *task)
{
    PyTypeObject *type = Py_TYPE(task);
    if (lookup_in_type(type, "get_name") == g_task_get_name)
        return PyObject_CallMethod(task, "get_name", NULL);
    return PyUnicode_FromString(type->tp_name);
}

/* The running task if its own coroutine is `coro`, else NULL (new reference). */
static PyObject *task_running(PyObject *coro)
{
    if (!g_task_get_coro && !load_asyncio())
        return NULL;
    PyObject *task;
    if (g_current_task) {
        task = PyObject_CallNoArgs(g_current_task);
    } else {
        PyObject *loop = PyObject_CallNoArgs(g_running_loop);
        task = loop ? Py_XNewRef(PyDict_GetItemWithError(g_current_tasks, loop)) : NULL;
        Py_XDECREF(loop);
    }
    if (!task || task == Py_None) {
        Py_XDECREF(task);
        return NULL;
    }
    PyObject *mine = NULL;
    if (lookup_in_type(Py_TYPE(task), "get_coro") == g_task_get_coro)
        mine = PyObject_CallMethod(task, "get_coro", NULL);
    int same = mine == coro;
    Py_XDECREF(mine);
    if (!same) {
        Py_DECREF(task);
        return NULL;
    }
    return task;
}

/* A new task's number and name (its definition appended if there is room). */
static uint32_t number_task(PyObject *task)
{
    if (g_last_number >= TASK_NUMBER_MAX)
        return 0;
    uint32_t number = ++g_last_number;
    ulma_session_header *h = g_session;
    atomic_store_explicit(&h->tasks_seen, number, memory_order_relaxed);
    PyObject *name = task_name(task);
    Py_ssize_t n = 0;
    const char *text = name && PyUnicode_Check(name) ? PyUnicode_AsUTF8AndSize(name, &n) : NULL;
    uint64_t size = (sizeof(ulma_symbol) + (uint64_t)(text ? n : 0) + 7) & ~(uint64_t)7;
    if (text && g_name_bytes + size <= h->symtab_bytes / ULMA_TASK_NAMES_SHARE) {
        g_name_bytes += size;
        ulma_symbol_append(ULMA_TASK_SYMBOL_BASE + number, ULMA_SYM_TASK, 0, 0, text, (size_t)n, "", 0);
    } else {
        atomic_fetch_add_explicit(&h->tasks_unnamed, 1, memory_order_relaxed);
    }
    Py_XDECREF(name);
    return number;
}

static size_t map_max(void)
{
    const char *v = getenv("ULMA_TEST_TASK_MAP_MAX");
    long n = v ? strtol(v, NULL, 10) : 0;
    return n > 0 && n < TASK_MAP_MAX ? (size_t)n : TASK_MAP_MAX;
}

static inline uint64_t note(uint32_t number, uint8_t flags)
{
    return (uint64_t)number | (uint64_t)flags << 32;
}

uint64_t ulma_task_note(PyObject *coro, uint8_t kind)
{
    if (!g_session || !coro)
        return 0;
    uintptr_t key = (uintptr_t)coro;
    task_slot *s = find(key);
    int entering = kind == ULMA_CALL || kind == ULMA_RESUME || kind == ULMA_THROW;
    if (!entering) {
        if (!s)
            return 0; /* the end of a coroutine never seen to start */
        uint32_t number = s->number;
        if (kind != ULMA_YIELD)
            forget(s); /* returned or unwound: its address may serve another */
        return number ? note(number, ULMA_TASKF_END) : 0;
    }
    if (s && kind != ULMA_CALL)
        return s->number ? note(s->number, 0) : 0;
    /* (a CALL starts a coroutine anew: what was kept at its address is stale) */
    if (!g_max)
        g_max = map_max();
    if (!s && kind != ULMA_CALL && (g_n >= g_max || g_untold))
        return 0; /* not remembered: counted at its start if a task */
    /* asyncio's calls must not see or lose an exception in flight (a THROW) */
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
#else
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
#endif
    PyObject *task = task_running(coro);
    uint32_t number = 0;
    if (!s && !put(key, 0)) {
        /* no room: a task is not numbered (it would be again at each step) */
        if (task && kind == ULMA_CALL) {
            g_untold = 1;
            atomic_fetch_add_explicit(&g_session->tasks_untold, 1, memory_order_relaxed);
        }
    } else {
        if (task)
            number = number_task(task);
        /* found again: put may have moved the entries, and naming the task
         * (C calls that may free objects, whose coroutines' ends come here)
         * may have removed this one */
        task_slot *at = find(key);
        if (at)
            at->number = number;
    }
    Py_XDECREF(task);
    if (PyErr_Occurred())
        PyErr_Clear();
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(et, ev, tb);
#endif
    return number ? note(number, ULMA_TASKF_NEW) : 0;
}

void ulma_tasks_reset(void)
{
    free(g_slots);
    g_slots = NULL;
    g_cap = g_n = g_max = 0;
    g_untold = 0;
    g_last_number = 0;
    g_name_bytes = 0;
    Py_CLEAR(g_current_task);
    Py_CLEAR(g_running_loop);
    Py_CLEAR(g_current_tasks);
    Py_CLEAR(g_task_get_coro);
    Py_CLEAR(g_task_get_name);
}

uint64_t ulma_task_note_current(ulma_writer *w, uint8_t kind)
{
    PyThreadState *ts = PyThreadState_GET();
    w->tstate_made = ulma_tstates_made();
    w->tstate = ts;
    _PyInterpreterFrame *f = ulma_current_frame(ts);
    if (f && f->owner == FRAME_OWNED_BY_GENERATOR && ulma_task_candidate(f->previous))
        return ulma_task_note((PyObject *)_PyFrame_GetGenerator(f), kind);
    return 0;
}
