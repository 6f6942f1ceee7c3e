/*
 * tasktable.c -- the monitor's table of asyncio tasks (tasktable.h).
 */
#include "tasktable.h"

#include <stdlib.h>
#include <string.h>

void ulma_tasks_init(ulma_tasks *k)
{
    memset(k, 0, sizeof *k);
}

void ulma_tasks_free(ulma_tasks *k)
{
    free(k->tasks);
    free(k->index);
    memset(k, 0, sizeof *k);
}

static inline size_t home(uint32_t number, size_t cap)
{
    return (size_t)(((uint64_t)number * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

static int reindex(ulma_tasks *k, size_t cap)
{
    uint32_t *index = calloc(cap, sizeof *index);
    if (!index)
        return -1;
    for (size_t i = 0; i < k->n; i++) {
        size_t h = home(k->tasks[i].number, cap);
        while (index[h])
            h = (h + 1) & (cap - 1);
        index[h] = (uint32_t)i + 1;
    }
    free(k->index);
    k->index = index;
    k->index_cap = cap;
    return 0;
}

ulma_task *ulma_tasks_get(ulma_tasks *k, uint32_t number, int first)
{
    if (k->index_cap) {
        for (size_t h = home(number, k->index_cap); k->index[h]; h = (h + 1) & (k->index_cap - 1))
            if (k->tasks[k->index[h] - 1].number == number)
                return &k->tasks[k->index[h] - 1];
    }
    if (k->failed || k->n >= ULMA_MAX_TASKS) {
        k->over += first != 0;
        return NULL;
    }
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 64;
        ulma_task *tasks = realloc(k->tasks, cap * sizeof *tasks);
        if (!tasks) {
            k->failed = 1;
            k->over += first != 0;
            return NULL;
        }
        k->tasks = tasks;
        k->cap = cap;
    }
    if ((k->n + 1) * 2 > k->index_cap && reindex(k, k->index_cap ? k->index_cap * 2 : 128) < 0) {
        k->failed = 1;
        k->over += first != 0;
        return NULL;
    }
    ulma_task *t = &k->tasks[k->n];
    memset(t, 0, sizeof *t);
    t->number = number;
    size_t h = home(number, k->index_cap);
    while (k->index[h])
        h = (h + 1) & (k->index_cap - 1);
    k->index[h] = (uint32_t)++k->n;
    return t;
}

static inline int is_done(const ulma_task *t)
{
    return t->state == ULMA_TASK_DONE || t->state == ULMA_TASK_FAILED;
}

/* Keeps the tasks not done, in their order, and indexes them again. */
static void compact(ulma_tasks *k, ulma_task *done)
{
    size_t kept = 0, nd = 0;
    for (size_t i = 0; i < k->n; i++) {
        if (is_done(&k->tasks[i])) {
            if (done)
                done[nd++] = k->tasks[i];
        } else {
            k->tasks[kept++] = k->tasks[i];
        }
    }
    k->n = kept;
    k->ndone = 0;
    memset(k->index, 0, k->index_cap * sizeof *k->index);
    for (size_t i = 0; i < k->n; i++) {
        size_t h = home(k->tasks[i].number, k->index_cap);
        while (k->index[h])
            h = (h + 1) & (k->index_cap - 1);
        k->index[h] = (uint32_t)i + 1;
    }
}

size_t ulma_tasks_take_done(ulma_tasks *k, ulma_task **out)
{
    *out = NULL;
    if (!k->ndone)
        return 0;
    ulma_task *done = malloc(k->ndone * sizeof *done);
    if (!done)
        return 0; /* taken next time */
    size_t n = k->ndone;
    compact(k, done);
    *out = done;
    return n;
}

void ulma_tasks_clear(ulma_tasks *k, uint64_t now)
{
    if (k->ndone)
        compact(k, NULL);
    for (size_t i = 0; i < k->n; i++) {
        ulma_task *t = &k->tasks[i];
        t->steps = t->running = t->waiting = 0;
        t->first = t->since = now;
    }
    k->over = 0;
}
