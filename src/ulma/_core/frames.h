/*
 * frames.h -- reading CPython's own frames (3.11-3.13, internal API): the
 * code a frame runs, a thread's current frame, the frames that count (not C
 * entry frames, not frames still being set up), and whether a thread state
 * kept from earlier may be gone.  One place for what the agent, the engines
 * and the task lookup read of the interpreter.
 */
#ifndef ULMA_FRAMES_H
#define ULMA_FRAMES_H

#include <Python.h>

#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE 1
#define ULMA_FRAMES_CORE
#endif
#include "internal/pycore_frame.h"
#ifdef ULMA_FRAMES_CORE
#undef Py_BUILD_CORE
#undef ULMA_FRAMES_CORE
#endif

/* GEN_FAMILY: code whose frame can await (or yield to) the frame above it */
#define ULMA_GEN_FAMILY (CO_GENERATOR | CO_COROUTINE | CO_ITERABLE_COROUTINE | CO_ASYNC_GENERATOR)

/* The code object `f` runs; NULL if it runs none (3.13: a frame may run
 * something else). */
static inline PyCodeObject *ulma_frame_code(const _PyInterpreterFrame *f)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyCode_Check(f->f_executable) ? (PyCodeObject *)f->f_executable : NULL;
#else
    return f->f_code;
#endif
}

/* The innermost frame of thread state `ts` (NULL: none). */
static inline _PyInterpreterFrame *ulma_current_frame(const PyThreadState *ts)
{
#if PY_VERSION_HEX >= 0x030D0000
    return ts->current_frame;
#else
    return ts->cframe ? ts->cframe->current_frame : NULL;
#endif
}

/* Is `f` a frame of the program's: not a C call's entry frame (3.12+), not
 * one still being set up (its first instruction not begun)? */
static inline int ulma_frame_counts(const _PyInterpreterFrame *f)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (f->owner == FRAME_OWNED_BY_CSTACK)
        return 0;
#endif
    return !_PyFrame_IsIncomplete((_PyInterpreterFrame *)f);
}

/* `f` or the first frame below it that counts; NULL if none. */
static inline const _PyInterpreterFrame *ulma_frame_counting(const _PyInterpreterFrame *f)
{
    while (f != NULL && !ulma_frame_counts(f))
        f = f->previous;
    return f;
}

/* Does `f` (a frame that counts) run a generator's or coroutine's code? */
static inline int ulma_frame_gen_family(const _PyInterpreterFrame *f)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyCodeObject *co = ulma_frame_code(f);
    return co != NULL && (co->co_flags & ULMA_GEN_FAMILY) != 0;
#else
    return (f->f_code->co_flags & ULMA_GEN_FAMILY) != 0; /* never NULL */
#endif
}

/*
 * How many thread states the main interpreter has made so far.  A thread
 * state kept from earlier is that thread's still if none was made since:
 * a thread's state is freed only while it runs no Python, and it runs
 * Python again only with a new one (a thread not made by Python, say, takes
 * one in PyGILState_Ensure and frees it in PyGILState_Release, each time).
 * One load, where PyThreadState_Get is a call into libpython and a
 * __tls_get_addr (3.12+).  The counter is the interpreter's own
 * (interp.c); g_tstates_counter is set as the agent starts.
 */
const volatile uint64_t *ulma_tstates_counter(void); /* NULL: none (no interpreter) */
/* the counter, or a zero that stays zero: never NULL (agent.c) */
extern __attribute__((visibility("hidden"))) const volatile uint64_t *g_tstates_counter;
static inline uint64_t ulma_tstates_made(void)
{
    return *g_tstates_counter;
}

#endif
