/*
 * tasktable.h -- the monitor's table of asyncio tasks (tasktable.c): what
 * the replay learns from TASK records (records.h), for a whole process.
 * Its owner (a Session, an Aggregator) holds one; every thread's aggregator
 * writes into it (aggregate.c, "Tasks").  Times are in ticks.
 *
 * A task is kept from its first step; once it is done it waits for its
 * owner to take it (ulma_tasks_take_done).  At most ULMA_MAX_TASKS are kept
 * at once: the tasks past that are counted (`over`), not followed.
 */
#ifndef ULMA_TASKTABLE_H
#define ULMA_TASKTABLE_H

#include <stddef.h>
#include <stdint.h>

enum ulma_task_state { ULMA_TASK_RUNNING = 1, ULMA_TASK_WAITING = 2, ULMA_TASK_DONE = 3, ULMA_TASK_FAILED = 4 };
#define ULMA_TASK_AWAIT_FRAMES 8u
#define ULMA_MAX_TASKS (1u << 18) /* 24 MiB of them */

typedef struct {
    uint32_t number;  /* the agent's (a TASK record's id) */
    uint32_t coro;    /* its coroutine function's id */
    uint32_t thread;  /* the thread that ran its last step */
    uint32_t state;   /* ULMA_TASK_* */
    uint64_t first;   /* its first step began */
    uint64_t since;   /* its state began (a step, a suspension, its end) */
    uint64_t steps;
    uint64_t running; /* in its steps, ended ones */
    uint64_t waiting; /* suspended between steps, ended suspensions */
    uint32_t nawait;  /* where it was suspended last: the coroutines (and */
    uint32_t pad;     /* generators) above its own, innermost first */
    uint32_t awaiting[ULMA_TASK_AWAIT_FRAMES];
} ulma_task;

typedef struct {
    ulma_task *tasks;   /* kept, done or not, in order of first step */
    size_t n, cap;
    uint32_t *index;    /* open addressing by number: position + 1, 0 = empty */
    size_t index_cap;
    size_t ndone;       /* of them done */
    uint64_t over;      /* tasks not kept: ULMA_MAX_TASKS were */
    int failed;         /* out of memory once: tasks are counted as over */
} ulma_tasks;

void ulma_tasks_init(ulma_tasks *k);
void ulma_tasks_free(ulma_tasks *k);
/* Task `number`, made if new (NULL: past ULMA_MAX_TASKS or out of memory;
 * counted in `over` if `first`, its first record, so once a task).  A
 * pointer holds until the next ulma_tasks_get or take. */
ulma_task *ulma_tasks_get(ulma_tasks *k, uint32_t number, int first);
/* Moves the tasks done out (the caller frees *out); their number. */
size_t ulma_tasks_take_done(ulma_tasks *k, ulma_task **out);
/* Forgets the tasks done; those still going count from `now` on. */
void ulma_tasks_clear(ulma_tasks *k, uint64_t now);

#endif
