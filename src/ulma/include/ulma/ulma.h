/*
 * ulma.h -- native scopes for ulma: C and C++ code reporting into the same
 * stream as the Python functions around it.
 *
 *     #include <ulma/ulma.h>          (cc $(python -m ulma.include --cflags))
 *
 *     void work(void) {
 *         ULMA_SCOPE("work");               // until the end of the block
 *         ...
 *         ULMA_MARK("checkpoint");          // an instant
 *         ULMA_COUNTER("queue", depth);     // a value over time
 *     }
 *
 * C99 or later (the scope ends through GCC's and Clang's cleanup attribute)
 * and C++11 or later (an RAII object; ulma.hpp adds ulma::Scope).  No
 * Python.h, and nothing to link: inside a Python process that ulma
 * profiles, the first use of a scope finds ulma's runtime in the process
 * (its symbol `ulma_runtime_v1`, which the ulma._core extension makes
 * global when it loads) and registers this module's hook with it; ulma
 * points the hook at its runtime while it traces and clears it otherwise.
 * A scope then costs one predictable branch when ulma is not loaded or not
 * tracing, and two records on the calling thread's ring when it is.
 *
 * With -DULMA_DISABLE everything here compiles to nothing.
 *
 * Counters take int64_t values and keep 60 bits of them (beyond +-2^59, the
 * nearest value that fits).  Names are string literals: a site (one use of a macro) is named once per
 * session, by its name, file and line.  Threads that Python never saw get
 * rings of their own.  Linux (ELF, glibc or musl).
 */
#ifndef ULMA_H_INCLUDED
#define ULMA_H_INCLUDED

#include <stdint.h>

#define ULMA_API_VERSION 1

#ifdef __cplusplus
extern "C" {
#endif

enum { ULMA_SITE_SCOPE = 1, ULMA_SITE_MARK = 2, ULMA_SITE_COUNTER = 3 };

/* One per site, static.  `state` is the runtime's (the site's id in the
 * session that named it); zero-initialised. */
typedef struct ulma_site {
    const char *name;
    const char *file;
    uint32_t line;
    uint32_t kind;
    uint64_t state;
} ulma_site;

struct ulma_runtime;
/* What ulma_scope_begin gives and ulma_scope_end takes. */
typedef struct ulma_scope {
    const struct ulma_runtime *rt; /* NULL: nothing was begun */
    ulma_site *site;
} ulma_scope;

/* The runtime's entry points (ulma._core, or a standalone runtime). */
typedef struct ulma_runtime {
    uint32_t version; /* ULMA_API_VERSION it implements */
    uint32_t size;    /* sizeof(ulma_runtime) it was built with */
    /* opens a scope on the calling thread; the runtime to end it with, or NULL */
    const struct ulma_runtime *(*begin)(ulma_site *site);
    void (*end)(ulma_site *site);
    void (*mark)(ulma_site *site);
    void (*counter)(ulma_site *site, int64_t value);
    /* registers a module's hook: the runtime sets it while it traces and
     * clears it otherwise; returns what it holds now */
    const struct ulma_runtime *(*attach)(const struct ulma_runtime **hook);
} ulma_runtime;

#define ULMA_SITE_INIT(name, kind) {(name), __FILE__, (uint32_t)__LINE__, (kind), 0}

#if defined(ULMA_DISABLE)

static inline ulma_scope ulma_scope_begin(ulma_site *site)
{
    ulma_scope s = {0, site};
    return s;
}
static inline void ulma_scope_end(ulma_scope scope)
{
    (void)scope;
}
static inline void ulma_mark(ulma_site *site)
{
    (void)site;
}
static inline void ulma_counter(ulma_site *site, int64_t value)
{
    (void)site;
    (void)value;
}
#define ULMA_SCOPE(name) ((void)0)
#define ULMA_MARK(name) ((void)0)
#define ULMA_COUNTER(name, value) ((void)0)

#elif defined(ULMA_TYPES_ONLY) /* a runtime's own sources: the types alone */

#else /* !ULMA_DISABLE */

#include <dlfcn.h>

#if !defined(__GNUC__)
#error "ulma.h needs GCC or Clang (the cleanup attribute, weak symbols); build with -DULMA_DISABLE elsewhere"
#endif

/* This module's hook (one per shared object: weak, merged across its
 * translation units; exported so that ulma finds it when it attaches to a
 * process where scopes ran before it).  It starts at a resolver, which
 * looks the runtime up on first use. */
__attribute__((weak, visibility("default"))) extern const ulma_runtime *ulma_hook_v1;

static inline const ulma_runtime *ulma__hook(void)
{
    return __atomic_load_n(&ulma_hook_v1, __ATOMIC_ACQUIRE);
}

/* The first use in this module: the runtime, if one is in the process. */
static inline const ulma_runtime *ulma__resolve(void)
{
    const ulma_runtime *rt = (const ulma_runtime *)dlsym((void *)0 /* RTLD_DEFAULT */, "ulma_runtime_v1");
    if (rt && rt->version >= 1 && rt->attach)
        return rt->attach(&ulma_hook_v1);
    __atomic_store_n(&ulma_hook_v1, (const ulma_runtime *)0, __ATOMIC_RELEASE);
    return 0;
}
static const ulma_runtime *ulma__resolve_begin(ulma_site *site)
{
    const ulma_runtime *rt = ulma__resolve();
    return rt ? rt->begin(site) : 0;
}
static void ulma__resolve_end(ulma_site *site)
{
    (void)site; /* nothing was begun through the resolver that the runtime does not end */
}
static void ulma__resolve_mark(ulma_site *site)
{
    const ulma_runtime *rt = ulma__resolve();
    if (rt)
        rt->mark(site);
}
static void ulma__resolve_counter(ulma_site *site, int64_t value)
{
    const ulma_runtime *rt = ulma__resolve();
    if (rt)
        rt->counter(site, value);
}
static const ulma_runtime ulma__resolver = {ULMA_API_VERSION, sizeof(ulma_runtime), ulma__resolve_begin,
                                            ulma__resolve_end, ulma__resolve_mark, ulma__resolve_counter, 0};
__attribute__((weak, visibility("default"))) const ulma_runtime *ulma_hook_v1 = &ulma__resolver;

static inline ulma_scope ulma_scope_begin(ulma_site *site)
{
    ulma_scope s = {0, site};
    const ulma_runtime *rt = ulma__hook();
    if (__builtin_expect(rt != 0, 0))
        s.rt = rt->begin(site);
    return s;
}
static inline void ulma_scope_end(ulma_scope scope)
{
    if (__builtin_expect(scope.rt != 0, 0))
        scope.rt->end(scope.site);
}
static inline void ulma_mark(ulma_site *site)
{
    const ulma_runtime *rt = ulma__hook();
    if (__builtin_expect(rt != 0, 0))
        rt->mark(site);
}
static inline void ulma_counter(ulma_site *site, int64_t value)
{
    const ulma_runtime *rt = ulma__hook();
    if (__builtin_expect(rt != 0, 0))
        rt->counter(site, value);
}
static inline void ulma__scope_cleanup(ulma_scope *scope)
{
    ulma_scope_end(*scope);
}

#define ULMA__CAT2(a, b) a##b
#define ULMA__CAT(a, b) ULMA__CAT2(a, b)
#define ULMA__SITE ULMA__CAT(ulma__site_, __LINE__)

#ifdef __cplusplus
} /* extern "C" */
namespace ulma {
namespace detail {
class ScopeGuard {
  public:
    explicit ScopeGuard(ulma_site *site) : scope_(ulma_scope_begin(site)) {}
    ~ScopeGuard() { ulma_scope_end(scope_); }
    ScopeGuard(const ScopeGuard &) = delete;
    ScopeGuard &operator=(const ScopeGuard &) = delete;

  private:
    ulma_scope scope_;
};
} // namespace detail
} // namespace ulma
extern "C" {
#define ULMA_SCOPE(name)                                                                                 \
    static ulma_site ULMA__SITE = ULMA_SITE_INIT(name, ULMA_SITE_SCOPE);                                 \
    ::ulma::detail::ScopeGuard ULMA__CAT(ulma__scope_, __LINE__)(&ULMA__SITE)
#else
#define ULMA_SCOPE(name)                                                                                 \
    static ulma_site ULMA__SITE = ULMA_SITE_INIT(name, ULMA_SITE_SCOPE);                                 \
    __attribute__((cleanup(ulma__scope_cleanup), unused)) ulma_scope ULMA__CAT(ulma__scope_, __LINE__) = \
        ulma_scope_begin(&ULMA__SITE)
#endif

#define ULMA_MARK(name)                                                                                  \
    do {                                                                                                 \
        static ulma_site ulma__site_m = ULMA_SITE_INIT(name, ULMA_SITE_MARK);                            \
        ulma_mark(&ulma__site_m);                                                                        \
    } while (0)
#define ULMA_COUNTER(name, value)                                                                        \
    do {                                                                                                 \
        static ulma_site ulma__site_c = ULMA_SITE_INIT(name, ULMA_SITE_COUNTER);                         \
        ulma_counter(&ulma__site_c, (int64_t)(value));                                                   \
    } while (0)

#endif /* ULMA_DISABLE */

#ifdef __cplusplus
}
#endif

#endif /* ULMA_H_INCLUDED */
