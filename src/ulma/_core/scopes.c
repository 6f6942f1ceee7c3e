/*
 * scopes.c -- the runtime behind the public header ulma.h in a Python
 * process: native scopes, marks and counters on the calling thread's ring.
 *
 * Finding each other.  ulma.h gives every shared object that uses it one
 * hook (`ulma_hook_v1`, weak, exported), which starts at a resolver: the
 * first scope looks up `ulma_runtime_v1` (this file's table, made global by
 * ulma_scopes_export when _core loads) and registers the hook here.  While
 * the agent traces, every registered hook points at the table; otherwise it
 * is NULL and a scope costs the caller one branch.  Objects whose scopes ran
 * before ulma was loaded (an attach) cleared their hook then; the agent's
 * start finds them among the loaded objects (dl_iterate_phdr, then dlsym
 * of each) and registers them too.
 *
 * Writing.  A scope is a SCOPE_BEGIN and a SCOPE_END record of its site's id
 * (a symbol of kind ULMA_SYM_SCOPE, named once per session) on the calling
 * thread's own ring, through agent.h's fast path; the thread keeps its open
 * scopes (ulma_writer's scope stack) so that a restatement states them
 * where they were opened among its Python frames.  Scopes run with or
 * without the GIL, on threads Python never saw: such a thread claims a ring
 * under g_exit_lock, and its rare paths (a full ring, a restatement, a CPU
 * reading) are ulma_emit_nogil's, which touch nothing shared but its ring.
 * Whether the caller holds the GIL is asked on the rare paths only.
 */
#define _GNU_SOURCE
#include "agent.h"
#include "frames.h"
#include "scopes.h"
#include "symbols.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


/* Hooks registered (each a module's; modules are never unloaded by Python). */
#define MAX_HOOKS 4096u
static const ulma_runtime **g_hooks[MAX_HOOKS];
static uint32_t g_nhooks;
static int g_tracing; /* hooks point at the runtime */
static pthread_mutex_t g_hooks_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_site_lock = PTHREAD_MUTEX_INITIALIZER;
const ulma_runtime *g_core_hook; /* _core's own scopes (scopes.h) */

static const ulma_runtime *rt_begin(ulma_site *site);
static void rt_end(ulma_site *site);
static void rt_mark(ulma_site *site);
static void rt_counter(ulma_site *site, int64_t value);
static const ulma_runtime *rt_attach(const ulma_runtime **hook);

__attribute__((visibility("default"))) const ulma_runtime ulma_runtime_v1 = {
    ULMA_API_VERSION, sizeof(ulma_runtime), rt_begin, rt_end, rt_mark, rt_counter, rt_attach};

/* ---- hooks ---------------------------------------------------------------- */

static void hook_set(const ulma_runtime **hook, const ulma_runtime *to)
{
    __atomic_store_n(hook, to, __ATOMIC_RELEASE);
}

/* Under g_hooks_lock.  0 if known or added, -1 if there is no room. */
static int hook_add(const ulma_runtime **hook)
{
    for (uint32_t i = 0; i < g_nhooks; i++)
        if (g_hooks[i] == hook)
            return 0;
    if (g_nhooks == MAX_HOOKS)
        return -1;
    g_hooks[g_nhooks++] = hook;
    return 0;
}

static const ulma_runtime *rt_attach(const ulma_runtime **hook)
{
    if (!hook)
        return NULL;
    pthread_mutex_lock(&g_hooks_lock);
    /* known from now on, for this session and the next (a full table: its scopes stay off) */
    int known = hook_add(hook) == 0;
    const ulma_runtime *to = g_tracing && known ? &ulma_runtime_v1 : NULL;
    hook_set(hook, to);
    pthread_mutex_unlock(&g_hooks_lock);
    return to;
}

typedef struct {
    char **names;
    size_t n, cap;
} object_names;

static int collect_name(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    object_names *o = data;
    if (!info->dlpi_name || !info->dlpi_name[0])
        return 0; /* the program itself (a Python program's is python, which has no hook) */
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 64;
        char **names = realloc(o->names, cap * sizeof *names);
        if (!names)
            return 1;
        o->names = names;
        o->cap = cap;
    }
    char *copy = strdup(info->dlpi_name);
    if (copy)
        o->names[o->n++] = copy;
    return 0;
}

/* Registers the hooks of the objects loaded now (under g_hooks_lock).  The
 * names are collected first: dlopen is not called inside the loader's walk. */
static void find_hooks(void)
{
    object_names o = {NULL, 0, 0};
    dl_iterate_phdr(collect_name, &o);
    for (size_t i = 0; i < o.n; i++) {
        void *h = dlopen(o.names[i], RTLD_LAZY | RTLD_NOLOAD);
        if (h) {
            const ulma_runtime **hook = dlsym(h, "ulma_hook_v1");
            if (hook)
                hook_add(hook);
            dlclose(h);
        }
        free(o.names[i]);
    }
    free(o.names);
}

void ulma_scopes_start(void)
{
    pthread_mutex_lock(&g_hooks_lock);
    find_hooks();
    g_tracing = 1;
    for (uint32_t i = 0; i < g_nhooks; i++)
        hook_set(g_hooks[i], &ulma_runtime_v1);
    /* _core's own phases, if this process is a monitor another process watches; not when it
     * drains its own session (a test's in-process session): its drains would record themselves */
    ulma_session_header *h = g_session;
    if (h && h->creator_pid != (uint32_t)getpid())
        hook_set(&g_core_hook, &ulma_runtime_v1);
    pthread_mutex_unlock(&g_hooks_lock);
}

void ulma_scopes_after_fork(void)
{
    /* inside fork(), in the child: only this thread is left, and a lock another thread
     * held stays held, so none is taken; the child is not traced, its scopes cost a branch */
    pthread_mutex_init(&g_hooks_lock, NULL);
    pthread_mutex_init(&g_site_lock, NULL);
    g_tracing = 0;
    for (uint32_t i = 0; i < g_nhooks; i++)
        hook_set(g_hooks[i], NULL);
    hook_set(&g_core_hook, NULL);
}

void ulma_scopes_stop(void)
{
    pthread_mutex_lock(&g_hooks_lock);
    g_tracing = 0;
    for (uint32_t i = 0; i < g_nhooks; i++)
        hook_set(g_hooks[i], NULL);
    hook_set(&g_core_hook, NULL);
    pthread_mutex_unlock(&g_hooks_lock);
}

int ulma_scopes_export(void)
{
    Dl_info info;
    if (!dladdr(&ulma_runtime_v1, &info) || !info.dli_fname)
        return -1;
    /* the object is loaded (we run in it): this only widens its symbols' scope */
    void *h = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
    return h ? 0 : -1; /* (the handle is kept: _core is never unloaded) */
}

/* ---- writing -------------------------------------------------------------- */

/* Does the calling thread hold the GIL?  (3.12+: the thread state in this
 * thread's TLS is set only while it does; 3.11: the GIL holder's, which
 * must be this thread's.) */
static inline PyThreadState *gil_tstate(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyThreadState *ts = PyThreadState_GetUnchecked();
#else
    PyThreadState *ts = _PyThreadState_UncheckedGet();
#endif
#if PY_VERSION_HEX < 0x030C0000
    if (ts && ts->thread_id != PyThread_get_thread_ident())
        return NULL;
#endif
    return ts;
}

/* The site's id in this session, naming it on first sight (0: none). */
static __attribute__((noinline)) uint32_t site_name(ulma_site *site, uint16_t kind)
{
    uint32_t id = 0;
    pthread_mutex_lock(&g_site_lock);
    uint64_t st = __atomic_load_n(&site->state, __ATOMIC_ACQUIRE);
    if ((uint32_t)(st >> 32) == g_generation && (uint32_t)st) {
        id = (uint32_t)st;
    } else if (g_session && (id = ulma_symbols_new_id()) != 0) {
        atomic_store_explicit(&g_nogil_used, 1, memory_order_relaxed);
        const char *name = site->name ? site->name : "<scope>";
        const char *file = site->file ? site->file : "?";
        ulma_symbol_append(id, kind, 0, site->line, name, strnlen(name, 512), file, strnlen(file, 4096));
        __atomic_store_n(&site->state, (uint64_t)g_generation << 32 | id, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&g_site_lock);
    return id;
}

static inline uint32_t site_id(ulma_site *site, uint16_t kind)
{
    uint64_t st = __atomic_load_n(&site->state, __ATOMIC_ACQUIRE);
    if (ULMA_LIKELY((uint32_t)(st >> 32) == g_generation && (uint32_t)st))
        return (uint32_t)st;
    return site_name(site, kind);
}

/* The calling thread's writer (claimed on its first record); NULL if none. */
static inline ulma_writer *writer(void)
{
    ulma_writer *w = tls_writer;
    if (ULMA_UNLIKELY(tls_writer_gen != g_generation || w == NULL)) {
        w = gil_tstate() ? ulma_writer_claim() : ulma_writer_claim_nogil();
        if (!w)
            return NULL;
    }
    if (ULMA_UNLIKELY(w->shared)) { /* no ring for this thread: counted as unringed */
        ulma_session_header *h = g_session;
        if (h)
            atomic_fetch_add_explicit(&h->unringed_events, 1, memory_order_relaxed);
        return NULL;
    }
    return w;
}

static __attribute__((noinline)) void emit_rare(ulma_writer *w, uint64_t t, uint32_t id, uint8_t kind,
                                                uint8_t flags, uint16_t aux)
{
    if (gil_tstate())
        ulma_emit_slow(w, t, id, kind, flags, aux, 1); /* restates Python frames and scopes */
    else
        ulma_emit_nogil(w, t, id, kind, flags, aux);
}

static inline void emit(ulma_writer *w, uint64_t t, uint32_t id, uint8_t kind)
{
    if (!ulma_emit_fast(w, t, id, kind))
        emit_rare(w, t, id, kind, 0, 0);
}

static const ulma_runtime *rt_begin(ulma_site *site)
{
    ulma_writer *w = writer();
    uint32_t id = w ? site_id(site, ULMA_SYM_SCOPE) : 0;
    if (!id)
        return NULL;
    /* the Python frame it opens in, where that is known without the GIL's help */
    PyThreadState *ts = gil_tstate();
    const void *frame = ts ? ulma_current_frame(ts) : NULL;
    emit(w, ulma_ticks(g_clock), id, ULMA_SCOPE_BEGIN);
    uint32_t d = w->scope_depth++;
    if (d < ULMA_SCOPE_STACK) {
        w->scope_ids[d] = id;
        w->scope_frames[d] = frame;
    }
    return &ulma_runtime_v1;
}

static void rt_end(ulma_site *site)
{
    ulma_writer *w = tls_writer;
    uint64_t st = __atomic_load_n(&site->state, __ATOMIC_ACQUIRE);
    /* begun in this session, on this writer (else the session changed meanwhile) */
    if (ULMA_UNLIKELY(tls_writer_gen != g_generation || w == NULL || w->shared || w->scope_depth == 0 ||
                      (uint32_t)(st >> 32) != g_generation))
        return;
    emit(w, ulma_ticks(g_clock), (uint32_t)st, ULMA_SCOPE_END);
    w->scope_depth--;
}

static void rt_mark(ulma_site *site)
{
    ulma_writer *w = writer();
    uint32_t id = w ? site_id(site, ULMA_SYM_MARK) : 0;
    if (id)
        emit(w, ulma_ticks(g_clock), id, ULMA_MARK);
}

static void rt_counter(ulma_site *site, int64_t value)
{
    ulma_writer *w = writer();
    uint32_t id = w ? site_id(site, ULMA_SYM_COUNTER) : 0;
    if (!id)
        return;
    /* 60 bits, two's complement (records.h): beyond, the nearest that fits */
    const int64_t most = ((int64_t)1 << 59) - 1;
    int64_t c = value > most ? most : value < -most - 1 ? -most - 1 : value;
    uint64_t v = (uint64_t)c, t = ulma_ticks(g_clock);
    /* two records with the same ticks (records.h); each may take the rare path alone */
    uint16_t hi = (uint16_t)(v >> 44);
    if (!ulma_put_fast(w, t, (uint64_t)id | (uint64_t)ULMA_COUNTER << 32 | (uint64_t)hi << 48))
        emit_rare(w, t, id, ULMA_COUNTER, 0, hi);
    uint32_t lo = (uint32_t)(v & ULMA_ID_MASK);
    uint16_t mid = (uint16_t)(v >> 28);
    if (!ulma_put_fast(w, t, (uint64_t)lo | (uint64_t)ULMA_COUNTER << 32 | (uint64_t)ULMA_COUNTER_VALUE << 40 |
                                 (uint64_t)mid << 48))
        emit_rare(w, t, lo, ULMA_COUNTER, ULMA_COUNTER_VALUE, mid);
}

/* ---- calibration ---------------------------------------------------------- */

#define CALIBRATE_PAIRS 4000u /* 8000 records a round: well inside the scratch ring */
#define CALIBRATE_ROUNDS 7u

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The median gap closed by records of `kind` in the scratch ring's first n records. */
static uint64_t median_gap(const ulma_event *ev, uint32_t n, uint8_t kind, uint64_t *buf)
{
    uint32_t m = 0;
    for (uint32_t i = 1; i < n; i++)
        if (ev[i].kind == kind && ev[i].ticks >= ev[i - 1].ticks)
            buf[m++] = ev[i].ticks - ev[i - 1].ticks;
    if (!m)
        return 0;
    qsort(buf, m, sizeof *buf, cmp_u64);
    return buf[m / 2];
}

int ulma_scopes_calibrate(double *begin_ns, double *end_ns)
{
    ulma_session_header *h = g_session;
    *begin_ns = *end_ns = 0;
    if (!h || !(h->ns_per_tick_hint > 0))
        return -1;
    uint64_t *gaps = malloc(2 * CALIBRATE_PAIRS * sizeof *gaps);
    if (!gaps)
        return -1;
    uint64_t best_b = UINT64_MAX, best_e = UINT64_MAX;
    for (uint32_t r = 0; r < CALIBRATE_ROUNDS; r++) {
        if (ulma_agent_scratch(1) < 0) { /* a fresh scratch ring each round */
            PyErr_Clear();
            free(gaps);
            return -1;
        }
        ulma_writer *w = tls_writer;
        /* named already: nothing reaches the session's symbol table */
        ulma_site site = {"calibration", "", 0, ULMA_SITE_SCOPE, (uint64_t)g_generation << 32 | 1u};
        for (uint32_t i = 0; i < CALIBRATE_PAIRS; i++) {
            const ulma_runtime *rt = ulma_runtime_v1.begin(&site);
            __asm__ volatile("" ::: "memory");
            if (rt)
                rt->end(&site);
        }
        uint64_t n = w ? atomic_load_explicit(&w->ring->write_pos, memory_order_relaxed) : 0;
        if (n > 2 * CALIBRATE_PAIRS)
            n = 2 * CALIBRATE_PAIRS;
        uint64_t b = n ? median_gap(w->events, (uint32_t)n, ULMA_SCOPE_BEGIN, gaps) : 0;
        uint64_t e = n ? median_gap(w->events, (uint32_t)n, ULMA_SCOPE_END, gaps) : 0;
        ulma_agent_scratch(0);
        if (b && b < best_b)
            best_b = b;
        if (e && e < best_e)
            best_e = e;
    }
    free(gaps);
    if (best_b == UINT64_MAX || best_e == UINT64_MAX)
        return -1;
    *begin_ns = (double)best_b * h->ns_per_tick_hint;
    *end_ns = (double)best_e * h->ns_per_tick_hint;
    return 0;
}

/* ---- Site: scopes for Python code ------------------------------------------ */

/* A site named from Python (`_core.Site(name, file, line)`), used as a
 * context manager: `with SITE:` is a scope of it on the calling thread,
 * through the runtime's hook of _core's own (scopes.h) -- so a program's
 * Python code, and ulma's monitor itself, can mark phases that are no one
 * function.  Scopes of one site nest (recursion): each __enter__ is paired
 * with the innermost open __exit__. */
typedef struct {
    PyObject_HEAD
    ulma_site site;
    PyObject *name, *file; /* the strings site.name and site.file point into */
    const ulma_runtime *open[ULMA_SCOPE_STACK]; /* per nesting level: what __enter__ began */
    uint32_t depth;
} SiteObject;

static int site_init(SiteObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"name", "file", "line", NULL};
    PyObject *name, *file = NULL;
    unsigned int line = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "U|UI", names, &name, &file, &line))
        return -1;
    const char *n = PyUnicode_AsUTF8(name);
    const char *f = file ? PyUnicode_AsUTF8(file) : "<python>";
    if (!n || !f)
        return -1;
    Py_XSETREF(self->name, Py_NewRef(name));
    Py_XSETREF(self->file, file ? Py_NewRef(file) : NULL);
    self->site = (ulma_site){n, f, line, ULMA_SITE_SCOPE, 0};
    self->depth = 0;
    return 0;
}

static void site_dealloc(SiteObject *self)
{
    Py_XDECREF(self->name);
    Py_XDECREF(self->file);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *site_enter(SiteObject *self, PyObject *unused)
{
    (void)unused;
    if (!self->name)
        return PyErr_Format(PyExc_ValueError, "Site not initialised");
    ulma_scope s = ulma_core_begin(&self->site);
    if (self->depth < ULMA_SCOPE_STACK)
        self->open[self->depth] = s.rt;
    self->depth++;
    return Py_NewRef(self);
}

static PyObject *site_exit(SiteObject *self, PyObject *const *args, Py_ssize_t n)
{
    (void)args, (void)n;
    if (self->depth) {
        self->depth--;
        if (self->depth < ULMA_SCOPE_STACK) {
            ulma_scope s = {self->open[self->depth], &self->site};
            ulma_core_end(&s);
        }
    }
    Py_RETURN_FALSE;
}

static PyObject *site_repr(SiteObject *self)
{
    return PyUnicode_FromFormat("<ulma Site %R>", self->name ? self->name : Py_None);
}

static PyMethodDef site_methods[] = {
    {"__enter__", (PyCFunction)site_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))site_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SiteType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ulma._core.Site",
    .tp_basicsize = sizeof(SiteObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Site(name, file='<python>', line=0): a native scope's site; `with site:` is a scope of it",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)site_init,
    .tp_dealloc = (destructor)site_dealloc,
    .tp_methods = site_methods,
    .tp_repr = (reprfunc)site_repr,
};

int ulma_scopes_add_site_type(PyObject *mod)
{
    if (PyType_Ready(&SiteType) < 0)
        return -1;
    return PyModule_AddObjectRef(mod, "Site", (PyObject *)&SiteType);
}
