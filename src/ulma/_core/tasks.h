/*
 * tasks.h -- the agent's TASK records (tasks.c; records.h "TASK records").
 * The engines call these for coroutines' events only.
 */
#ifndef ULMA_TASKS_H
#define ULMA_TASKS_H

#include "agent.h"

struct _PyInterpreterFrame;

/* GEN_FAMILY: code whose frame can await (or yield to) the frame above it */
#define ULMA_GEN_FAMILY (CO_GENERATOR | CO_COROUTINE | CO_ITERABLE_COROUTINE | CO_ASYNC_GENERATOR)

/* Can the coroutine running in `frame` be a task's own?  Its caller (the
 * first real frame below) is not a generator's or coroutine's: an awaited
 * coroutine's caller is its awaiter. */
int ulma_task_candidate(const struct _PyInterpreterFrame *frame);
/* The event `kind` of coroutine `coro` (a candidate) is about to be written:
 * if `coro` is an asyncio task's own coroutine, a TASK record goes first.
 * Returns the task's number, or 0.  Keeps any exception in flight. */
uint32_t ulma_task_event(PyObject *coro, uint8_t kind);
/* sys.monitoring: the same for the coroutine whose frame is current on
 * writer w's thread, if it is a candidate.  The engine tested already that
 * the frame right below is not a generator's or coroutine's (the common
 * case of an awaited coroutine, told without a call). */
void ulma_task_current(ulma_writer *w, uint8_t kind);
/* Forgets every task (a session's end). */
void ulma_tasks_reset(void);

/* agent.c: a record that states no frame, see there */
void ulma_emit_note(ulma_writer *w, uint64_t t, uint32_t id, uint8_t kind, uint8_t flags);

#endif
