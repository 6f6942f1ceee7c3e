/*
 * tasks.h -- the agent's TASK records (tasks.c; records.h "TASK records").
 * The engines call these for coroutines' events only; they write the
 * record with the event (agent.h ulma_emit_noted).
 */
#ifndef ULMA_TASKS_H
#define ULMA_TASKS_H

#include "agent.h"

#include "agen.h"
#include "frames.h"

/* Is `op`, the instruction a generator's or coroutine's frame is at, an
 * await (or `yield from`): SEND running the awaited one, or the frame
 * suspended in it (its YIELD_VALUE or RESUME) passing it a throw or a close?
 * An instruction another tool instrumented (a line event) is not read: taken
 * as an await. */
static inline int ulma_op_awaits(int op)
{
    return op == SEND || ulma_op_is_yield(op) || ulma_op_is_resume(op)
#ifdef SEND_GEN
           || op == SEND_GEN
#endif
#ifdef INSTRUMENTED_LINE
           || op == INSTRUMENTED_LINE
#endif
#if PY_VERSION_HEX < 0x030C0000
           || op == JUMP_BACKWARD_NO_INTERRUPT /* 3.11: a throw, past the RESUME (agen.h) */
#endif
        ;
}

/* The instruction frame `f` is at (running or suspended). */
static inline int ulma_frame_op(const _PyInterpreterFrame *f)
{
#if PY_VERSION_HEX >= 0x030D0000
    return ULMA_UNIT_OP(*f->instr_ptr);
#else
    return ULMA_UNIT_OP(*f->prev_instr);
#endif
}

/* Can a coroutine whose frame's caller is `below` (its frame's `previous`,
 * or the thread's current frame as the frame is entered, PEP 523) be a
 * task's own?  Not if the first frame from `below` down that counts is a
 * generator's or coroutine's at an await: that is its awaiter.  One that is
 * at a call instead started it otherwise: 3.12's eager tasks run their
 * first step inside create_task(), called from their creator's coroutine. */
static inline int ulma_task_candidate(const _PyInterpreterFrame *below)
{
    below = ulma_frame_counting(below);
    return below == NULL || !ulma_frame_gen_family(below) || !ulma_op_awaits(ulma_frame_op(below));
}
/* The TASK record due before event `kind` of coroutine `coro` (a candidate),
 * if it is an asyncio task's own coroutine, as a note for ulma_emit_noted
 * (the task's number | flags << 32); 0 if none.  Keeps the map of
 * coroutines up to date whatever is written: the engines call it for every
 * event of a candidate, its ends included.  Keeps any exception in flight. */
uint64_t ulma_task_note(PyObject *coro, uint8_t kind);
/* sys.monitoring: the same for the coroutine whose frame is current on
 * writer w's thread, if it is a candidate (and w's thread state refreshed).
 * The engine tested already that the frame right below is not a generator's
 * or coroutine's (the common case of an awaited coroutine, told without a
 * call). */
uint64_t ulma_task_note_current(ulma_writer *w, uint8_t kind);
/* Forgets every task (a session's end). */
void ulma_tasks_reset(void);

/* w's thread's state, kept by the writer, if it is still that thread's:
 * NULL if it may be gone (frames.h ulma_tstates_made). */
static inline PyThreadState *ulma_writer_tstate(const ulma_writer *w)
{
    return w->tstate_made == ulma_tstates_made() ? w->tstate : NULL;
}

#endif
