/*
 * interp.c -- the one place that reads the interpreter's own state
 * (PyInterpreterState, opaque outside CPython), built as CPython's own code
 * is (Py_BUILD_CORE before Python.h, as its internal headers need).
 */
#define Py_BUILD_CORE 1
#include <Python.h>
#include "internal/pycore_interp.h"
#include "internal/pycore_runtime.h"

#include "frames.h"

const volatile uint64_t *ulma_tstates_counter(void)
{
    PyInterpreterState *interp = _PyRuntime.interpreters.main;
    return interp ? (const volatile uint64_t *)&interp->threads.next_unique_id : NULL;
}
