/*
 * stack.h -- running the default frame evaluator with enough C stack.
 *
 * Without ulma, CPython 3.11+ runs a Python-to-Python call inside the same C
 * function; under a PEP 523 evaluator every Python call is a C call, and deep
 * recursion that Python allows (a raised recursion limit) would overflow the
 * thread's C stack and crash.  When the stack runs low, the next frame is
 * evaluated on a fresh, lazily-committed stack segment instead, so the
 * program reaches exactly the depth it reaches unprofiled.
 */
#ifndef ULMA_STACK_H
#define ULMA_STACK_H

#include "agent.h"

extern __thread uintptr_t tls_stack_limit __attribute__((tls_model("initial-exec")));

PyObject *ulma_stack_switch_eval(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag);

static inline PyObject *ulma_stack_guarded_eval(PyThreadState *ts, struct _PyInterpreterFrame *f,
                                                int throwflag)
{
    char here;
    if (ULMA_LIKELY((uintptr_t)&here > tls_stack_limit))
        return _PyEval_EvalFrameDefault(ts, f, throwflag);
    return ulma_stack_switch_eval(ts, f, throwflag);
}

#endif
