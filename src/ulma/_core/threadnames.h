/*
 * threadnames.h -- Python threads' names in the session (records.h "Thread
 * names").  A thread is named as it starts: ulma.agent.threadnames puts a
 * starter from here in front of each of _thread's thread starters; given a
 * Thread's bound _bootstrap, it starts the thread on a trampoline that names
 * it and then calls _bootstrap.  Both are C, so no frame and no call of
 * theirs is seen by the tracer, and the Thread's name is read from its
 * instance dict (_name), never through its property: the program's profile
 * gains no call it did not make.
 */
#ifndef ULMA_THREADNAMES_H
#define ULMA_THREADNAMES_H

#include <Python.h>
#include <stddef.h>
#include <stdint.h>

/* Names OS thread `tid` in the session; 1 if written, 0 if no session is
 * active, the id is out of range or names took their share of the table. */
int ulma_thread_name(uint64_t tid, const char *name, size_t nlen);
/* A new session: names take their share of its table afresh. */
void ulma_thread_names_reset(void);
/* thread_starter(start) -> a callable like `start` that names the threads
 * of threading.Thread objects it starts (the module's function). */
PyObject *ulma_thread_starter(PyObject *module, PyObject *start);
/* Readies the two types; 0 or -1. */
int ulma_thread_names_ready(void);

#endif
