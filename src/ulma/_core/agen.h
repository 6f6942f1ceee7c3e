/*
 * agen.h -- whether an async generator's suspension is an `await`.
 *
 * A coroutine suspends only in `await`, so all its records carry
 * ULMA_EVF_AWAIT (symbols.c, ULMA_ID_AWAIT).  An async generator suspends in
 * two ways: `yield value` hands a value to its consumer (not waiting, as a
 * generator's yield), `await x` waits.  The compiler says which: the RESUME
 * the frame goes on at has oparg 1 after a yield and 3 after an await (the
 * low two bits, CPython 3.11-3.13).  A suspended frame points at that RESUME
 * or at the YIELD_VALUE just before it, as do the offsets sys.monitoring
 * gives PY_YIELD, PY_RESUME and PY_THROW; so one test serves both engines.
 * 3.11 only: a throw whose awaited object raised it comes in with the frame
 * moved on to the end of its await loop (genobject.c, _gen_throw), the
 * JUMP_BACKWARD_NO_INTERRUPT right after that RESUME.
 * An instruction another tool instrumented (a line event) is not read: that
 * suspension is taken as a yield, as before this test existed.
 * Only async generators' YIELD, RESUME and THROW come here (the engines'
 * generator paths): no other event pays for it.
 */
#ifndef ULMA_AGEN_H
#define ULMA_AGEN_H

#include <Python.h>
#if PY_VERSION_HEX >= 0x030D0000
#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE 1
#define ULMA_AGEN_CORE
#endif
#include "internal/pycore_code.h" /* _Py_CODEUNIT (public up to 3.12) */
#ifdef ULMA_AGEN_CORE
#undef Py_BUILD_CORE
#undef ULMA_AGEN_CORE
#endif
#include "opcode_ids.h"
#else
#include "opcode.h"
#endif

#if PY_VERSION_HEX >= 0x030C0000
#define ULMA_UNIT_OP(u) ((u).op.code)
#define ULMA_UNIT_ARG(u) ((u).op.arg)
#else
#define ULMA_UNIT_OP(u) _Py_OPCODE(u)
#define ULMA_UNIT_ARG(u) _Py_OPARG(u)
#endif

static inline int ulma_op_is_resume(int op)
{
    return op == RESUME
#ifdef RESUME_QUICK
           || op == RESUME_QUICK
#endif
#ifdef RESUME_CHECK
           || op == RESUME_CHECK
#endif
#ifdef INSTRUMENTED_RESUME
           || op == INSTRUMENTED_RESUME
#endif
        ;
}

static inline int ulma_op_is_yield(int op)
{
    return op == YIELD_VALUE
#ifdef INSTRUMENTED_YIELD_VALUE
           || op == INSTRUMENTED_YIELD_VALUE
#endif
        ;
}

/* The instruction at index `at` of `co`'s code (its RESUME, or the
 * YIELD_VALUE before it): does the frame go on after an await? */
static inline int ulma_agen_awaits(PyCodeObject *co, Py_ssize_t at)
{
    const _Py_CODEUNIT *code = (const _Py_CODEUNIT *)co->co_code_adaptive;
    Py_ssize_t n = Py_SIZE(co);
    if (at < 0 || at >= n)
        return 0;
    int op = ULMA_UNIT_OP(code[at]);
    if (ulma_op_is_yield(op) && ++at >= n)
        return 0;
#if PY_VERSION_HEX < 0x030C0000
    if (op == JUMP_BACKWARD_NO_INTERRUPT && --at < 0)
        return 0;
#endif
    return ulma_op_is_resume(ULMA_UNIT_OP(code[at])) && (ULMA_UNIT_ARG(code[at]) & 3) == 3;
}

#endif
