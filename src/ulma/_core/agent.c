/*
 * agent.c -- the profiled process's session: mapping it, claiming a ring per
 * thread, interning code objects into the symbol table, and the rare paths
 * of the writer (full ring, stack restatement).  Hot code is in agent.h.
 */
#define _GNU_SOURCE
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define Py_BUILD_CORE 1
#include "internal/pycore_frame.h"
#undef Py_BUILD_CORE

ulma_session_header *g_session = NULL;
uint32_t g_clock = ULMA_CLOCK_MONOTONIC;
uint32_t g_generation = 0;
Py_ssize_t g_extra_index = -1;
__thread ulma_writer *tls_writer __attribute__((tls_model("initial-exec"))) = NULL;
__thread uint32_t tls_writer_gen __attribute__((tls_model("initial-exec"))) = 0;
int g_native_calls = 0;

/* CPU readings: at most every g_reading_ticks; the run delay is read too
 * after the thread was off CPU at least RUN_DELAY_AFTER_NS (a read costs
 * ~1 us, so only where a wait already cost much more). */
#define RUN_DELAY_AFTER_NS 20000.0
static uint64_t g_reading_ticks;   /* 0: no readings */
static double g_ns_per_tick = 1.0; /* the monitor's quick calibration */
/* --exclude patterns (fnmatch), matched against file and qualified name */
static char **g_exclude;
static size_t g_exclude_len;

static __thread ulma_writer *tls_writer_keep; /* this thread's writer, across sessions */
static __thread int tls_ignored;              /* ulma's own threads are never traced */
static size_t g_map_bytes;
static int g_engine;
static ulma_writer **g_writers;     /* by ring slot, for the final flush */
static uint32_t g_writers_len;
static pthread_key_t g_thread_key;
static int g_thread_key_ready;
static const _PyInterpreterFrame *g_boundary; /* bootstrap frame: stacks stop here */
static int g_boot_frames; /* frames of ulma's bootstrap under the program */
static PyThreadState *g_boot_thread;
static char *g_hidden_prefix;
static size_t g_hidden_prefix_len;
/* Orders a thread's exit (which runs without the GIL) against unmapping. */
static pthread_mutex_t g_exit_lock = PTHREAD_MUTEX_INITIALIZER;

/* Publishes what the writer wrote and marks its ring finished. */
static void writer_finish(ulma_writer *w)
{
    ulma_ring_header *r = w->ring;
    atomic_store_explicit(&r->published, r->write_pos, memory_order_release);
    atomic_store_explicit(&r->state, ULMA_RING_FINISHED, memory_order_release);
}

/* pthread key destructor: runs when a thread exits, without the GIL. */
static void on_thread_exit(void *p)
{
    ulma_writer *w = p;
    pthread_mutex_lock(&g_exit_lock);
    if (w && w->generation == g_generation && g_session) {
        writer_finish(w);
        if (w->slot < g_writers_len && g_writers[w->slot] == w)
            g_writers[w->slot] = NULL;
    }
    pthread_mutex_unlock(&g_exit_lock);
    if (w && w->sched_fd >= 0)
        close(w->sched_fd);
    free(w);
}

ulma_writer *ulma_writer_claim(void)
{
    ulma_session_header *h = g_session;
    tls_writer_gen = g_generation;
    tls_writer = NULL;
    if (!h || tls_ignored)
        return NULL;
    uint32_t slot = atomic_fetch_add_explicit(&h->rings_used, 1, memory_order_acq_rel);
    if (slot >= h->max_threads) {
        atomic_fetch_add_explicit(&h->threads_overflow, 1, memory_order_relaxed);
        return NULL;
    }
    /* A thread's writer lives as long as the thread (threads exit without
     * the GIL, and may hold the pointer after a session ended); the next
     * session reuses it, so attaching again and again costs no memory. */
    ulma_writer *w = tls_writer_keep;
    if (!w) {
        if (!(w = tls_writer_keep = calloc(1, sizeof *w)))
            return NULL;
        w->sched_fd = -2;
    }
    ulma_ring_header *r = ulma_ring_at(h, slot);
    w->ring = r;
    w->events = ulma_ring_events(r);
    w->mask = h->ring_events - 1;
    w->generation = g_generation;
    w->slot = slot;
    w->next_reading = 0; /* need_sync: the slow path */
    w->reading_tick = 0;
    w->call_code = NULL;
    r->os_tid = (uint32_t)syscall(SYS_gettid);
    r->py_thread_ident = (uint64_t)PyThread_get_thread_ident();
    r->need_sync = 1; /* a thread's first event states its stack */
    atomic_store_explicit(&r->state, ULMA_RING_ACTIVE, memory_order_release);
    g_writers[slot] = w;
    if (g_thread_key_ready)
        pthread_setspecific(g_thread_key, w);
    tls_writer = w;
    if (g_native_calls && g_engine == ULMA_ENGINE_PEP523)
        ulma_engine_pep523_thread_claimed();
    return w;
}

void ulma_agent_ignore_thread(void)
{
    tls_ignored = 1;
    tls_writer = NULL;
    tls_writer_gen = g_generation;
}

/* ---- symbols --------------------------------------------------------- */

static void symbol_append(uint32_t id, uint16_t kind, uint16_t flags, uint32_t line,
                          const char *name, size_t nlen, const char *file, size_t flen)
{
    ulma_session_header *h = g_session;
    uint64_t size = (sizeof(ulma_symbol) + nlen + flen + 7) & ~(uint64_t)7;
    uint64_t off = atomic_fetch_add_explicit(&h->symtab_reserved, size, memory_order_relaxed);
    if (off + size > h->symtab_bytes) {
        atomic_fetch_add_explicit(&h->symtab_overflow, 1, memory_order_relaxed);
        return;
    }
    ulma_symbol *s = (ulma_symbol *)((char *)h + h->symtab_offset + off);
    s->id = id;
    s->kind = kind;
    s->flags = flags;
    s->line = line;
    s->name_len = (uint32_t)nlen;
    s->file_len = (uint32_t)flen;
    memcpy((char *)(s + 1), name, nlen);
    memcpy((char *)(s + 1) + nlen, file, flen);
    atomic_store_explicit(&s->size, (uint32_t)size, memory_order_release);
}

/* Does an --exclude pattern match this qualified name or file? */
static int excluded(const char *name, const char *file)
{
    for (size_t i = 0; i < g_exclude_len; i++)
        if (fnmatch(g_exclude[i], name, 0) == 0 || (file && fnmatch(g_exclude[i], file, 0) == 0))
            return 1;
    return 0;
}

static void exclude_free(void)
{
    for (size_t i = 0; i < g_exclude_len; i++)
        free(g_exclude[i]);
    free(g_exclude);
    g_exclude = NULL;
    g_exclude_len = 0;
}

/* ---- native (C) functions ------------------------------------------- */

/* PyMethodDef pointer -> id, for this session (open addressing; under the
 * GIL).  Builtins bound to different objects share their PyMethodDef, so a
 * method like list.append is one row whatever list it is called on. */
typedef struct {
    const void *key;
    uint32_t id;
} native_slot;
static native_slot *g_native;
static size_t g_native_cap, g_native_len;

static void native_free(void)
{
    free(g_native);
    g_native = NULL;
    g_native_cap = g_native_len = 0;
}

static int native_grow(void)
{
    size_t cap = g_native_cap ? g_native_cap * 2 : 1024;
    native_slot *tab = calloc(cap, sizeof *tab);
    if (!tab)
        return -1;
    for (size_t i = 0; i < g_native_cap; i++) {
        if (!g_native[i].key)
            continue;
        size_t j = ((uintptr_t)g_native[i].key >> 4) & (cap - 1);
        while (tab[j].key)
            j = (j + 1) & (cap - 1);
        tab[j] = g_native[i];
    }
    free(g_native);
    g_native = tab;
    g_native_cap = cap;
    return 0;
}

/* The type among type(self)'s bases that defines the method `ml`: the
 * first list subclass to call append must not name list.append for all. */
static const char *defining_type(PyObject *self, const PyMethodDef *ml)
{
    PyObject *mro = Py_TYPE(self)->tp_mro;
    for (Py_ssize_t i = 0; mro && PyTuple_Check(mro) && i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *t = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        for (const PyMethodDef *d = t->tp_methods; d && d->ml_name; d++)
            if (d == ml)
                return t->tp_name;
    }
    return Py_TYPE(self)->tp_name;
}

/* "module.name" or "type.name" of a builtin, into buf. */
static void native_name(PyObject *c, const PyMethodDef *ml, char *buf, size_t size)
{
    const char *owner = NULL;
    if (PyCFunction_Check(c)) {
        PyObject *self = PyCFunction_GET_SELF(c);
        if (self && PyModule_Check(self)) {
            owner = PyModule_GetName(self);
            if (!owner)
                PyErr_Clear();
        } else if (self) {
            owner = defining_type(self, ml);
        }
    } else {
        owner = ((PyMethodDescrObject *)c)->d_common.d_type->tp_name;
    }
    snprintf(buf, size, "%s%s%s", owner ? owner : "", owner ? "." : "", ml->ml_name);
}

uint32_t ulma_native_id(PyObject *c)
{
    const PyMethodDef *ml = PyCFunction_Check(c) ? ((PyCFunctionObject *)c)->m_ml
                                                 : ((PyMethodDescrObject *)c)->d_method;
    if (g_native_cap) {
        size_t j = ((uintptr_t)ml >> 4) & (g_native_cap - 1);
        for (; g_native[j].key; j = (j + 1) & (g_native_cap - 1))
            if (g_native[j].key == ml)
                return g_native[j].id;
    }
    ulma_session_header *h = g_session;
    if (!h || ((g_native_len + 1) * 2 > g_native_cap && native_grow() < 0))
        return 0;
    char name[256];
    native_name(c, ml, name, sizeof name);
    uint32_t id = atomic_fetch_add_explicit(&h->next_symbol_id, 1, memory_order_relaxed);
    static const char file[] = "<built-in>";
    uint16_t flags = excluded(name, NULL) ? ULMA_SYMF_UNMEASURED : 0;
    symbol_append(id, ULMA_SYM_CFUNC, flags, 0, name, strlen(name), file, sizeof file - 1);
    if (flags)
        id |= ULMA_ID_UNMEASURED;
    size_t j = ((uintptr_t)ml >> 4) & (g_native_cap - 1);
    while (g_native[j].key)
        j = (j + 1) & (g_native_cap - 1);
    g_native[j].key = ml;
    g_native[j].id = id;
    g_native_len++;
    return id;
}

uint32_t ulma_code_intern(PyCodeObject *co)
{
    ulma_session_header *h = g_session;
    if (!h)
        return 0;
    uint32_t id = atomic_fetch_add_explicit(&h->next_symbol_id, 1, memory_order_relaxed);
    Py_ssize_t nlen = 0, flen = 0;
    const char *name = PyUnicode_AsUTF8AndSize(co->co_qualname, &nlen);
    if (!name) {
        PyErr_Clear();
        name = "?";
        nlen = 1;
    }
    const char *file = PyUnicode_AsUTF8AndSize(co->co_filename, &flen);
    if (!file) {
        PyErr_Clear();
        file = "?";
        flen = 1;
    }
    uint16_t flags = 0;
    if (g_hidden_prefix_len && (size_t)flen >= g_hidden_prefix_len &&
        memcmp(file, g_hidden_prefix, g_hidden_prefix_len) == 0)
        flags |= ULMA_SYMF_HIDDEN;
    else if (excluded(name, file))
        flags |= ULMA_SYMF_UNMEASURED;
    symbol_append(id, ULMA_SYM_PYFUNC, flags, (uint32_t)co->co_firstlineno, name, (size_t)nlen,
                  file, (size_t)flen);
    if (flags & ULMA_SYMF_UNMEASURED)
        id |= ULMA_ID_UNMEASURED;
    if (flags & ULMA_SYMF_HIDDEN)
        id |= ULMA_ID_HIDDEN;
    uintptr_t v = ((uintptr_t)g_generation << 32) | id;
#if PY_VERSION_HEX >= 0x030C0000
    if (PyUnstable_Code_SetExtra((PyObject *)co, g_extra_index, (void *)v) < 0)
#else
    if (_PyCode_SetExtra((PyObject *)co, g_extra_index, (void *)v) < 0)
#endif
        PyErr_Clear(); /* re-interned next time; the definition repeats */
    return id;
}

/* ---- the rare paths of the writer ----------------------------------- */

static PyCodeObject *frame_code(const _PyInterpreterFrame *f)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyCode_Check(f->f_executable) ? (PyCodeObject *)f->f_executable : NULL;
#else
    return f->f_code;
#endif
}

/* Collects the ids of the thread's Python frames, innermost first, without
 * allocating (frame objects are not materialised).  Returns the count. */
static uint32_t walk_stack(uint32_t *ids, uint32_t cap, int *truncated)
{
    PyThreadState *ts = PyThreadState_GET();
#if PY_VERSION_HEX >= 0x030D0000
    const _PyInterpreterFrame *f = ts->current_frame;
#else
    const _PyInterpreterFrame *f = ts->cframe ? ts->cframe->current_frame : NULL;
#endif
    uint32_t n = 0;
    *truncated = 0;
    for (; f != NULL; f = f->previous) {
        if (f == g_boundary)
            break;
#if PY_VERSION_HEX >= 0x030C0000
        if (f->owner == FRAME_OWNED_BY_CSTACK)
            continue;
#endif
        if (_PyFrame_IsIncomplete((_PyInterpreterFrame *)f))
            continue;
        PyCodeObject *co = frame_code(f);
        if (!co)
            continue;
        if (n == cap) {
            *truncated = 1;
            break;
        }
        ids[n++] = ulma_code_id(co);
    }
    return n;
}

static inline int is_entering(uint8_t kind)
{
    return kind == ULMA_CALL || kind == ULMA_RESUME || kind == ULMA_THROW;
}

static inline void put(ulma_writer *w, uint64_t pos, uint64_t t, uint32_t idv, uint8_t kind,
                       uint8_t flags, uint16_t aux)
{
    ulma_event *e = &w->events[pos & w->mask];
    e->ticks = t;
    e->id = idv & ULMA_ID_MASK;
    e->kind = kind;
    e->flags = flags | ((idv & ULMA_ID_UNMEASURED) ? ULMA_EVF_UNMEASURED : 0);
    e->aux = aux;
}

/* ---- CPU readings ---------------------------------------------------- */

/* The run-queue delay (ns) from /proc/thread-self/schedstat, kept open per
 * thread.  If the program closed our descriptor (some close every fd they
 * do not know), reads fail or stop parsing, and we stop reading. */
static int read_run_delay(ulma_writer *w, uint64_t *out)
{
    if (w->sched_fd == -2)
        w->sched_fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
    if (w->sched_fd < 0)
        return 0;
    char buf[96];
    ssize_t n = pread(w->sched_fd, buf, sizeof buf - 1, 0);
    if (n < 0 && errno == EINTR) /* a signal: once more */
        n = pread(w->sched_fd, buf, sizeof buf - 1, 0);
    if (n <= 0) {
        w->sched_fd = -1; /* not ours any more: never close it */
        return 0;
    }
    buf[n] = 0;
    /* "<on-cpu ns> <run-delay ns> <timeslices>\n" */
    char *end;
    strtoull(buf, &end, 10);
    if (end == buf || *end != ' ') {
        w->sched_fd = -1;
        return 0;
    }
    char *start = end + 1;
    *out = strtoull(start, &end, 10);
    if (end == start || *end != ' ') {
        w->sched_fd = -1;
        return 0;
    }
    atomic_fetch_or_explicit(&g_session->agent_flags, ULMA_AGENT_SCHEDSTAT, memory_order_relaxed);
    return 1;
}

static inline ulma_event reading_record(uint64_t t, uint64_t ns, uint8_t flags)
{
    ulma_event e = {.ticks = t, .id = (uint32_t)ns, .kind = ULMA_CPU_SAMPLE, .flags = flags,
                    .aux = (uint16_t)(ns >> 32)};
    return e;
}

/* Reads the thread's CPU clock into out[0] and, on a baseline or after a
 * while off CPU, its run delay into out[1].  Returns the record count. */
static uint32_t take_reading(ulma_writer *w, uint64_t t, int baseline, ulma_event *out)
{
    struct timespec ts;
    w->next_reading = t + g_reading_ticks;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    uint64_t cpu = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    uint32_t n = 0;
    out[n++] = reading_record(t, cpu, 0);
    int want = baseline || !w->reading_tick;
    if (!want) {
        double off = (double)(t - w->reading_tick) * g_ns_per_tick - (double)(cpu - w->reading_cpu_ns);
        want = off >= RUN_DELAY_AFTER_NS;
    }
    uint64_t delay;
    if (want && read_run_delay(w, &delay))
        out[n++] = reading_record(t, delay, ULMA_CPU_RUN_DELAY);
    w->reading_tick = t;
    w->reading_cpu_ns = cpu;
    return n;
}

/*
 * The rare paths: a full ring, a stack to restate (the thread's first event,
 * or the first event after drops), or a CPU reading due.  A restatement is a
 * SYNC group giving the stack as it was just before `kind`, so the monitor
 * rebuilds it and goes on; it always comes with a reading (a new baseline).
 * The event after a reading is stamped anew, so the gap is the reading's cost.
 */
void ulma_emit_slow(ulma_writer *w, uint64_t t, uint32_t idv, uint8_t kind, uint8_t flags,
                    uint16_t aux, int top_is_event)
{
    static uint32_t ids[ULMA_MAX_SYNC_FRAMES + 1];
    ulma_ring_header *r = w->ring;
    uint64_t pos = r->write_pos;
    uint64_t cap = w->mask + 1;
    ulma_event reading[2];
    uint32_t nread = 0;
    uint64_t t_event = t;
    if (g_reading_ticks && (r->need_sync || t >= w->next_reading)) {
        nread = take_reading(w, t, r->need_sync, reading);
        t_event = ulma_ticks(g_clock);
    }

    if (!r->need_sync) {
        uint64_t need = (uint64_t)nread + 1;
        if (pos - r->tail_cache + need > cap)
            r->tail_cache = atomic_load_explicit(&r->read_pos, memory_order_acquire);
        if (pos - r->tail_cache + need > cap)
            goto drop;
        for (uint32_t i = 0; i < nread; i++)
            w->events[pos++ & w->mask] = reading[i];
        put(w, pos++, t_event, idv, kind, flags, aux);
        r->write_pos = pos;
        atomic_store_explicit(&r->published, pos, memory_order_release);
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
    uint32_t n = walk_stack(ids, limit, &truncated);
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

    uint64_t need = (uint64_t)n + 2 + nread;
    r->tail_cache = atomic_load_explicit(&r->read_pos, memory_order_acquire);
    if (pos - r->tail_cache + need > cap)
        goto drop;
    uint8_t gflags = ULMA_SYNC_BEGIN | (truncated ? ULMA_SYNC_TRUNCATED : 0) | r->sync_flags;
    put(w, pos++, t, 0, ULMA_SYNC, gflags, (uint16_t)n);
    for (uint32_t i = n; i-- > 0;) /* outermost first */
        put(w, pos++, t, ids[i], ULMA_SYNC, ULMA_SYNC_FRAME, 0);
    for (uint32_t i = 0; i < nread; i++)
        w->events[pos++ & w->mask] = reading[i];
    put(w, pos++, t_event, idv, kind, flags, aux);
    r->write_pos = pos;
    r->need_sync = 0;
    r->sync_flags = 0;
    if (!g_reading_ticks)
        w->next_reading = UINT64_MAX; /* else take_reading set it */
    atomic_store_explicit(&r->published, pos, memory_order_release);
    return;

drop:
    atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
    r->need_sync = 1;
    w->next_reading = 0; /* the next event takes the slow path */
    r->sync_flags = ULMA_SYNC_AFTER_DROP;
    /* Let the monitor see everything written so far, so it frees room. */
    atomic_store_explicit(&r->published, pos, memory_order_release);
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
        g_scratch.next_reading = UINT64_MAX; /* readings are measured on their own */
        g_scratch.generation = g_generation;
        g_scratch.sched_fd = -1;
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

void ulma_agent_set_probe_ps(uint32_t ps)
{
    if (g_session)
        atomic_store_explicit(&g_session->probe_ps, ps, memory_order_relaxed);
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

/* Copies the --exclude patterns; 0, or -1 with an exception. */
static int exclude_set(PyObject *patterns)
{
    exclude_free();
    if (!patterns || patterns == Py_None)
        return 0;
    PyObject *seq = PySequence_Fast(patterns, "exclude must be a sequence of str");
    if (!seq)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    g_exclude = calloc((size_t)n + 1, sizeof *g_exclude);
    for (Py_ssize_t i = 0; g_exclude && i < n; i++) {
        const char *p = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(seq, i));
        if (!p || !(g_exclude[i] = strdup(p))) {
            Py_DECREF(seq);
            exclude_free();
            if (!PyErr_Occurred())
                PyErr_NoMemory();
            return -1;
        }
        g_exclude_len++;
    }
    Py_DECREF(seq);
    if (!g_exclude) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

int ulma_agent_start(int fd, const ulma_agent_options *o)
{
    int engine = o->engine, empty = o->empty, recursion_adjust = o->recursion_adjust;
    PyObject *hidden_prefix = o->hidden_prefix, *boundary = o->boundary;
    if (g_session) {
        PyErr_SetString(PyExc_RuntimeError, "ulma agent is already running");
        return -1;
    }
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
    void *base = mmap(NULL, probe.total_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (g_extra_index < 0) {
        #if PY_VERSION_HEX >= 0x030C0000
        g_extra_index = PyUnstable_Eval_RequestCodeExtraIndex(NULL);
#else
        g_extra_index = _PyEval_RequestCodeExtraIndex(NULL);
#endif
        if (g_extra_index < 0) {
            munmap(base, probe.total_bytes);
            PyErr_SetString(PyExc_RuntimeError, "no free co_extra slot for ulma");
            return -1;
        }
    }
    if (!g_thread_key_ready && pthread_key_create(&g_thread_key, on_thread_exit) == 0)
        g_thread_key_ready = 1;
    ulma_session_header *h = base;
    g_writers = calloc(h->max_threads, sizeof *g_writers);
    if (!g_writers) {
        munmap(base, probe.total_bytes);
        PyErr_NoMemory();
        return -1;
    }
    g_writers_len = h->max_threads;
    free(g_hidden_prefix);
    g_hidden_prefix = NULL;
    g_hidden_prefix_len = 0;
    if (hidden_prefix && hidden_prefix != Py_None) {
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(hidden_prefix, &len);
        if (!s || !(g_hidden_prefix = malloc((size_t)len + 1))) {
            free(g_writers);
            g_writers = NULL;
            munmap(base, probe.total_bytes);
            return -1;
        }
        memcpy(g_hidden_prefix, s, (size_t)len + 1);
        g_hidden_prefix_len = (size_t)len;
    }
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
    if (exclude_set(o->exclude) < 0) {
        free(g_writers);
        g_writers = NULL;
        munmap(base, probe.total_bytes);
        return -1;
    }
    native_free();
    g_native_calls = o->native_calls && !empty;
    g_ns_per_tick = h->ns_per_tick_hint > 0 ? h->ns_per_tick_hint : 1.0;
    g_reading_ticks = 0;
    if (o->cpu_interval_us && !empty) {
        g_reading_ticks = (uint64_t)((double)o->cpu_interval_us * 1000.0 / g_ns_per_tick);
        if (!g_reading_ticks)
            g_reading_ticks = 1;
    }
    atomic_store_explicit(&h->cpu_interval_us, g_reading_ticks ? o->cpu_interval_us : 0,
                          memory_order_relaxed);
    atomic_store_explicit(&h->agent_flags,
                          (g_reading_ticks ? ULMA_AGENT_CPU_SAMPLES : 0u) |
                              (g_native_calls ? ULMA_AGENT_NATIVE_CALLS : 0u),
                          memory_order_relaxed);
    g_map_bytes = probe.total_bytes;
    g_clock = h->clock_source;
    g_session = h;
    g_generation++;
    atomic_store_explicit(&h->agent_pid, (uint32_t)getpid(), memory_order_relaxed);
    atomic_store_explicit(&h->engine, (uint32_t)engine, memory_order_relaxed);
    atomic_store_explicit(&h->agent_state, ULMA_AGENT_RUNNING, memory_order_release);

    int rc = engine == ULMA_ENGINE_MONITORING ? ulma_engine_monitoring_start(empty, g_native_calls)
                                              : ulma_engine_pep523_start(empty, g_native_calls);
    if (rc < 0) {
        g_engine = 0;
        ulma_agent_stop(1);
        return -1;
    }
    g_engine = engine;
    return 0;
}

void ulma_agent_stop(int flush)
{
    ulma_session_header *h = g_session;
    if (!h)
        return;
    if (g_engine == ULMA_ENGINE_MONITORING)
        ulma_engine_monitoring_stop();
    else if (g_engine == ULMA_ENGINE_PEP523)
        ulma_engine_pep523_stop();
    g_engine = 0;
    /* Hooks are off and we hold the GIL: no writer is mid-event.  A forked
     * child does not flush: the rings belong to its parent. */
    pthread_mutex_lock(&g_exit_lock); /* threads may be exiting meanwhile */
    if (flush) {
        for (uint32_t i = 0; i < g_writers_len; i++)
            if (g_writers[i])
                writer_finish(g_writers[i]);
        atomic_store_explicit(&h->agent_state, ULMA_AGENT_STOPPED, memory_order_release);
    }
    g_session = NULL;
    g_generation++;
    pthread_mutex_unlock(&g_exit_lock);
    ulma_agent_scratch(0);
    native_free();
    exclude_free();
    g_native_calls = 0;
    g_reading_ticks = 0;
    if (g_boot_thread == PyThreadState_GET())
        recursion_budget(g_boot_thread, -g_boot_frames);
    g_boot_thread = NULL;
    g_boot_frames = 0;
    g_boundary = NULL;
    free(g_writers);
    g_writers = NULL;
    g_writers_len = 0;
    munmap(h, g_map_bytes);
}
