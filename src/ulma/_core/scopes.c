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

#define ULMA_TYPES_ONLY
#include "../include/ulma/ulma.h"

/* Hooks registered (each a module's; modules are never unloaded by Python). */
#define MAX_HOOKS 4096u
static const ulma_runtime **g_hooks[MAX_HOOKS];
static uint32_t g_nhooks;
static int g_tracing; /* hooks point at the runtime */
static pthread_mutex_t g_hooks_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_site_lock = PTHREAD_MUTEX_INITIALIZER;

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
    const ulma_runtime *to = g_tracing && hook_add(hook) == 0 ? &ulma_runtime_v1 : NULL;
    if (!g_tracing)
        hook_add(hook); /* for the next session (a full table: its scopes stay off) */
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
    pthread_mutex_unlock(&g_hooks_lock);
}

void ulma_scopes_stop(void)
{
    pthread_mutex_lock(&g_hooks_lock);
    g_tracing = 0;
    for (uint32_t i = 0; i < g_nhooks; i++)
        hook_set(g_hooks[i], NULL);
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
static uint32_t site_id(ulma_site *site, uint16_t kind)
{
    uint64_t st = __atomic_load_n(&site->state, __ATOMIC_ACQUIRE);
    uint32_t gen = g_generation;
    if (ULMA_LIKELY((uint32_t)(st >> 32) == gen && (uint32_t)st))
        return (uint32_t)st;
    uint32_t id = 0;
    pthread_mutex_lock(&g_site_lock);
    st = __atomic_load_n(&site->state, __ATOMIC_ACQUIRE);
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
    uint64_t v = (uint64_t)value, t = ulma_ticks(g_clock);
    /* two records with the same ticks (records.h: the value's bits 0..27 and
     * 28..43 in the second, 44..59 and 60..63 in the first); each may take
     * the rare path alone */
    uint16_t hi = (uint16_t)(v >> 44);
    uint8_t top = (uint8_t)((v >> 60) << 4);
    if (!ulma_put_fast(w, t, (uint64_t)id | (uint64_t)ULMA_COUNTER << 32 | (uint64_t)top << 40 | (uint64_t)hi << 48))
        emit_rare(w, t, id, ULMA_COUNTER, top, hi);
    uint32_t lo = (uint32_t)(v & ULMA_ID_MASK);
    uint16_t mid = (uint16_t)(v >> 28);
    if (!ulma_put_fast(w, t, (uint64_t)lo | (uint64_t)ULMA_COUNTER << 32 | (uint64_t)ULMA_COUNTER_VALUE << 40 |
                                 (uint64_t)mid << 48))
        emit_rare(w, t, lo, ULMA_COUNTER, ULMA_COUNTER_VALUE, mid);
}
