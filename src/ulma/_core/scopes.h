/*
 * scopes.h -- the runtime of the public header ulma.h inside a Python
 * process (scopes.c): what the agent calls as it starts and stops.
 */
#ifndef ULMA_SCOPES_H
#define ULMA_SCOPES_H

#include <Python.h>

#define ULMA_TYPES_ONLY
#include "../include/ulma/ulma.h"

#pragma GCC visibility push(hidden)

/* The agent traces: every known hook (and those of modules loaded before
 * ulma, found now) points at the runtime. */
void ulma_scopes_start(void);
/* It stops: every hook is cleared, so no scope begins. */
void ulma_scopes_stop(void);
/* In a forked child, inside fork(): the same, taking no lock. */
void ulma_scopes_after_fork(void);
/* _core was loaded: its runtime symbol is made global for ulma.h's lookup.
 * 0, or -1 (dlopen failed: scopes then find no runtime). */
int ulma_scopes_export(void);
/* What native scope records cost the program (ns), as the gaps between
 * records hold it: *begin_ns a gap closed by a begin (a scope's end, then
 * the next one's begin), *end_ns one closed by an end (a begin, then its
 * end).  Begin/end pairs written into the calibration's scratch ring, the
 * median gaps of the best rounds.  Under the GIL, the agent running; 0, or
 * -1 if it cannot be measured. */
int ulma_scopes_calibrate(double *begin_ns, double *end_ns);
/* _core.Site: a native scope's site for Python code (a context manager). */
int ulma_scopes_add_site_type(PyObject *mod);
/* The runtime's table (ulma.h's ulma_runtime), exported. */
extern __attribute__((visibility("default"))) const ulma_runtime ulma_runtime_v1;

/*
 * The monitor monitoring itself: _core's own phases (drain, snapshot,
 * replay, ...) as native scopes, through the same runtime and a hook of
 * _core's own, which the agent points at the runtime while it traces this
 * very process (an `ulma attach` to a monitor, `ulma run --self-profile`).
 * Otherwise one predictable branch.
 */
extern const ulma_runtime *g_core_hook;

static inline ulma_scope ulma_core_begin(ulma_site *site)
{
    ulma_scope s = {0, site};
    const ulma_runtime *rt = __atomic_load_n(&g_core_hook, __ATOMIC_ACQUIRE);
    if (__builtin_expect(rt != 0, 0))
        s.rt = rt->begin(site);
    return s;
}

static inline void ulma_core_end(ulma_scope *s)
{
    if (__builtin_expect(s->rt != 0, 0))
        s->rt->end(s->site);
}

#define ULMA_CORE_CAT2(a, b) a##b
#define ULMA_CORE_CAT(a, b) ULMA_CORE_CAT2(a, b)
/* A scope of _core's own until the end of the block. */
#define ULMA_CORE_SCOPE(name)                                                                              \
    static ulma_site ULMA_CORE_CAT(core_site_, __LINE__) = {(name), __FILE__, __LINE__, ULMA_SITE_SCOPE, 0}; \
    __attribute__((cleanup(ulma_core_end), unused)) ulma_scope ULMA_CORE_CAT(core_scope_, __LINE__) =       \
        ulma_core_begin(&ULMA_CORE_CAT(core_site_, __LINE__))

#pragma GCC visibility pop

#endif
