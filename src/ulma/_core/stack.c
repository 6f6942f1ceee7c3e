/* stack.c -- stack segments for deep recursion under the PEP 523 engine. */
#define _GNU_SOURCE
#include "stack.h"

#include <pthread.h>
#include <sys/mman.h>
#include <ucontext.h>

#define SEGMENT_BYTES ((size_t)8 << 20)  /* committed page by page, as used */
#define MARGIN_BYTES ((size_t)256 << 10) /* room for one Python frame's C calls */

/* Lowest address the evaluator may start at on the current segment; 0 until
 * the thread's stack bounds are read, UINTPTR_MAX-safe since the first
 * comparison then takes the slow path once. */
__thread uintptr_t tls_stack_limit __attribute__((tls_model("initial-exec"))) = UINTPTR_MAX;
static __thread void *tls_spare; /* one cached segment: recursion often bounces at a boundary */

struct call {
    PyThreadState *ts;
    struct _PyInterpreterFrame *f;
    int throwflag;
    PyObject *result;
};
static __thread struct call *tls_call;

static void on_segment(void)
{
    struct call *c = tls_call;
    c->result = _PyEval_EvalFrameDefault(c->ts, c->f, c->throwflag);
}

static pthread_key_t g_spare_key;
static pthread_once_t g_spare_once = PTHREAD_ONCE_INIT;
static void free_spare(void *p)
{
    if (p)
        munmap(p, SEGMENT_BYTES);
}
static void make_key(void)
{
    (void)pthread_key_create(&g_spare_key, free_spare);
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
    if (tls_stack_limit == UINTPTR_MAX) {
        tls_stack_limit = thread_stack_limit();
        if ((uintptr_t)&here > tls_stack_limit)
            return _PyEval_EvalFrameDefault(ts, f, throwflag);
    }
    void *seg = tls_spare;
    tls_spare = NULL;
    if (!seg) {
        seg = mmap(NULL, SEGMENT_BYTES, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (seg == MAP_FAILED) /* no memory: behave as the unguarded evaluator would */
            return _PyEval_EvalFrameDefault(ts, f, throwflag);
    }
    struct call c = {ts, f, throwflag, NULL};
    struct call *outer_call = tls_call;
    uintptr_t outer_limit = tls_stack_limit;
    ucontext_t back, run;
    getcontext(&run);
    run.uc_stack.ss_sp = seg;
    run.uc_stack.ss_size = SEGMENT_BYTES;
    run.uc_link = &back;
    makecontext(&run, on_segment, 0);
    tls_call = &c;
    tls_stack_limit = (uintptr_t)seg + MARGIN_BYTES;
    swapcontext(&back, &run);
    tls_stack_limit = outer_limit;
    tls_call = outer_call;
    if (tls_spare) {
        munmap(seg, SEGMENT_BYTES);
    } else {
        tls_spare = seg;
        pthread_once(&g_spare_once, make_key);
        pthread_setspecific(g_spare_key, seg);
    }
    return c.result;
}
