/*
 * objtrace.h -- object lifecycle records for --objects (records.h "Object
 * lifecycle records"): on Python 3.13+ a ref tracer (PyRefTracer_SetTracer),
 * with the object allocator's frees where the interpreter does not tell it
 * of every destruction; on 3.11 and 3.12 the object allocator's blocks
 * (PyMem_SetAllocator), typed by their objects' headers.  Each object's
 * creation and destruction is one OBJ_NEW or OBJ_FREE record on the
 * thread's ring.  Not installed at all unless asked for: without --objects
 * it costs nothing.
 */
#ifndef ULMA_OBJTRACE_H
#define ULMA_OBJTRACE_H

#include <Python.h>

/* Starts the records, for the types whose name matches one of `types`
 * (fnmatch patterns on "qualname" or "module.qualname"; NULL or empty: all
 * types).  Another ref tracer already set is chained to (called first, with
 * its own data).  0, or -1 with an exception. */
int ulma_objects_start(PyObject *types);
/* Checks (once a process, running a few lines of Python) whether the
 * interpreter tells the ref tracer of every destruction: call it before
 * any hook is on, so that nothing of it is recorded. */
void ulma_objects_check(void);
/* Stops them: ulma's tracer comes out if it is still the one set (the one
 * it chained to goes back); if the program set its own since, both stay and
 * ulma's records nothing more (counted: objects_displaced). */
void ulma_objects_stop(void);
/* A forked child: the tables are its parent's copy; forget them (no lock). */
void ulma_objects_after_fork(void);

#endif
