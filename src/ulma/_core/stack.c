/* stack.c -- stack segments for deep recursion under the PEP 523 engine.
 *
 * Sizes.  Without ulma a Python-to-Python call uses no C stack, so however
 * deep the Python recursion, C recursion started from the deepest frame
 * (repr or json.dumps of nested containers) has the whole thread stack.  A
 * frame is therefore started on the current stack only while MARGIN bytes
 * are left below it: as much as CPython's own C recursion limit lets one
 * chain of C calls use (3.12+: Py_C_RECURSION_LIMIT levels, which CPython
 * sizes to fit its 8 MiB default stack; 3.11 has no separate limit, so the
 * default stack itself).  A segment holds FRAMES_BYTES of Python frames
 * above that margin, and a PROT_NONE guard page below it, so an overflow
 * faults at once instead of writing over other memory.
 *
 * The switch.  A few instructions that move the stack pointer, call, and
 * move it back (x86-64, aarch64): the signal mask is not touched, so a
 * pthread_sigmask made deep down stays in force when the frame returns, as
 * it does without ulma.  Elsewhere makecontext/swapcontext, with the mask of
 * the moment copied into the context resumed on the way back.
 */
#define _GNU_SOURCE
#include "stack.h"
#include "stack_switch.h"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#if PY_VERSION_HEX >= 0x030D0000
#define C_LIMIT_LEVELS Py_C_RECURSION_LIMIT
#elif PY_VERSION_HEX >= 0x030C0000
#define C_LIMIT_LEVELS C_RECURSION_LIMIT
#endif
#ifdef C_LIMIT_LEVELS
#define LEVEL_BYTES ((size_t)832) /* 10 000 levels in 8 MiB, CPython's own sizing */
#define MARGIN_BYTES ((size_t)C_LIMIT_LEVELS * LEVEL_BYTES + ((size_t)256 << 10))
#else
#define MARGIN_BYTES ((size_t)8 << 20)
#endif
#define FRAMES_BYTES ((size_t)8 << 20) /* Python frames per segment */
#define SEGMENT_BYTES (MARGIN_BYTES + FRAMES_BYTES)

/* Lowest address the evaluator may start at on the current segment; 0 until
 * the thread's stack bounds are read, UINTPTR_MAX-safe since the first
 * comparison then takes the slow path once. */
__thread uintptr_t tls_stack_limit __attribute__((tls_model("initial-exec"))) = UINTPTR_MAX;
static __thread char *tls_spare; /* one cached segment: recursion often bounces at a boundary */
static size_t g_guard_bytes;      /* one page */

struct call {
    PyThreadState *ts;
    struct _PyInterpreterFrame *f;
    int throwflag;
    PyObject *result;
};

static void on_segment(void *arg)
{
    struct call *c = arg;
    c->result = _PyEval_EvalFrameDefault(c->ts, c->f, c->throwflag);
}

#ifdef ULMA_ON_STACK /* x86-64, aarch64: stack_switch.h */
static void run_on(char *lo, size_t size, struct call *c)
{
    ulma_on_stack(c, on_segment, (void *)(((uintptr_t)lo + size) & ~(uintptr_t)15));
}

#else /* other machines: ucontext, keeping the mask set on the segment */
#include <ucontext.h>

static __thread ucontext_t *tls_back;
static __thread struct call *tls_call;

static void on_context(void)
{
    ucontext_t *back = tls_back;
    on_segment(tls_call);
    pthread_sigmask(SIG_SETMASK, NULL, &back->uc_sigmask); /* uc_link restores this one */
}

static void run_on(char *lo, size_t size, struct call *c)
{
    ucontext_t back, run;
    ucontext_t *outer_back = tls_back;
    struct call *outer_call = tls_call;
    getcontext(&run);
    run.uc_stack.ss_sp = lo;
    run.uc_stack.ss_size = size;
    run.uc_link = &back;
    makecontext(&run, on_context, 0);
    tls_back = &back;
    tls_call = c;
    swapcontext(&back, &run);
    tls_back = outer_back;
    tls_call = outer_call;
}
#endif

static pthread_key_t g_spare_key;
static pthread_once_t g_spare_once = PTHREAD_ONCE_INIT;
static void free_spare(void *p)
{
    if (p)
        munmap(p, g_guard_bytes + SEGMENT_BYTES);
}
static void setup(void)
{
    long page = sysconf(_SC_PAGESIZE);
    g_guard_bytes = page > 0 ? (size_t)page : 4096;
    (void)pthread_key_create(&g_spare_key, free_spare);
}

/* A segment: guard page at the bottom, the rest committed page by page as
 * used.  NULL if the address space is exhausted. */
static char *segment_new(void)
{
    size_t total = g_guard_bytes + SEGMENT_BYTES;
    char *p = mmap(NULL, total, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (mprotect(p, g_guard_bytes, PROT_NONE) != 0) {
        munmap(p, total);
        return NULL;
    }
    return p;
}

static uintptr_t thread_stack_limit(void)
{
    pthread_attr_t attr;
    void *lo = NULL;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) != 0)
        return 0;
    pthread_attr_getstack(&attr, &lo, &size);
    pthread_attr_destroy(&attr);
    return (uintptr_t)lo + MARGIN_BYTES;
}

PyObject *ulma_stack_switch_eval(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag)
{
    char here;
    pthread_once(&g_spare_once, setup);
    if (tls_stack_limit == UINTPTR_MAX) {
        tls_stack_limit = thread_stack_limit();
        if ((uintptr_t)&here > tls_stack_limit)
            return _PyEval_EvalFrameDefault(ts, f, throwflag);
    }
    char *seg = tls_spare;
    tls_spare = NULL;
    if (!seg && !(seg = segment_new())) /* no memory: behave as the unguarded evaluator would */
        return _PyEval_EvalFrameDefault(ts, f, throwflag);
    struct call c = {ts, f, throwflag, NULL};
    uintptr_t outer_limit = tls_stack_limit;
    char *lo = seg + g_guard_bytes;
    tls_stack_limit = (uintptr_t)lo + MARGIN_BYTES;
    run_on(lo, SEGMENT_BYTES, &c);
    tls_stack_limit = outer_limit;
    if (tls_spare) {
        munmap(seg, g_guard_bytes + SEGMENT_BYTES);
    } else {
        tls_spare = seg;
        pthread_setspecific(g_spare_key, seg);
    }
    return c.result;
}
