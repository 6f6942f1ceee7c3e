/*
 * module.c -- the Python face of the C core: `ulma._core`.
 *
 *   agent_start / agent_stop    in the profiled process
 *   Session                     in the monitor: drain, symbols, snapshots
 *   Aggregator, Replay          replays of trace files: totals; frames, stacks (exporters)
 *   LAYOUT                      records.h's numbers, for ulma.format.records
 *   bench_drain                 the monitor's replay rate on a synthetic ring
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "agent.h"
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "clock.h"
#include "records.h"
#include "replay.h"
#include "objstats.h"
#include "scopes.h"
#include "session.h"
#include "symbols.h"
#include "tasktable.h"
#include "threadnames.h"

static int set_int(PyObject *d, const char *name, long v);

/* ---- agent ---------------------------------------------------------- */

static PyObject *py_agent_start(PyObject *self, PyObject *args, PyObject *kw)
{
    (void)self;
    static char *names[] = {"fd", "engine", "empty", "hidden_prefix", "boundary", "recursion_adjust",
                            "native_calls", "cpu_interval_us", "exclude", "only", "objects", NULL};
    int fd, empty = 0, adjust = 0, native = 0;
    unsigned int interval = 100;
    const char *engine;
    PyObject *hidden = Py_None, *boundary = Py_None, *exclude = Py_None, *only = Py_None, *objects = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "is|iOOipIOOO", names, &fd, &engine, &empty, &hidden,
                                     &boundary, &adjust, &native, &interval, &exclude, &only, &objects))
        return NULL;
    if (boundary != Py_None && !PyFrame_Check(boundary))
        return PyErr_Format(PyExc_TypeError, "boundary must be a frame or None");
    int e;
    if (strcmp(engine, "monitoring") == 0)
        e = ULMA_ENGINE_MONITORING;
    else if (strcmp(engine, "pep523") == 0)
        e = ULMA_ENGINE_PEP523;
    else
        return PyErr_Format(PyExc_ValueError, "unknown engine %s", engine);
    ulma_agent_options o = {.engine = e, .empty = empty, .native_calls = native,
                            .recursion_adjust = adjust, .cpu_interval_us = interval,
                            .hidden_prefix = hidden, .boundary = boundary, .exclude = exclude,
                            .only = only, .objects = objects};
    if (ulma_agent_start(fd, &o) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* fn(truth of arg): the calibration switches, agent_scratch and agent_pause. */
static PyObject *call_with_flag(PyObject *arg, int (*fn)(int))
{
    int flag = PyObject_IsTrue(arg);
    if (flag < 0 || fn(flag) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_agent_scratch(PyObject *self, PyObject *arg)
{
    (void)self;
    return call_with_flag(arg, ulma_agent_scratch);
}

static PyObject *py_agent_pause(PyObject *self, PyObject *arg)
{
    (void)self;
    return call_with_flag(arg, ulma_agent_pause);
}

static PyObject *py_agent_id_limit(PyObject *self, PyObject *arg)
{
    (void)self;
    unsigned long n = PyLong_AsUnsignedLong(arg);
    if (n == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    ulma_symbols_set_id_limit(n > ULMA_ID_LIMIT ? ULMA_ID_LIMIT : (uint32_t)n);
    Py_RETURN_NONE;
}

static PyObject *py_agent_set_probe_cost(PyObject *self, PyObject *arg)
{
    (void)self;
    double ns = PyFloat_AsDouble(arg);
    if (ns == -1.0 && PyErr_Occurred())
        return NULL;
    if (!(ns >= 0) || ns > 4e6)
        return PyErr_Format(PyExc_ValueError, "probe cost out of range");
    ulma_agent_set_probe_ps((uint32_t)(ns * 1000.0 + 0.5));
    /* native scopes' records cost less than a Python callback: their own figure (scopes.c) */
    double begin_ns, end_ns;
    if (ulma_scopes_calibrate(&begin_ns, &end_ns) == 0 && begin_ns <= 4e6 && end_ns <= 4e6)
        ulma_agent_set_scope_probe_ps((uint32_t)(begin_ns * 1000.0 + 0.5), (uint32_t)(end_ns * 1000.0 + 0.5));
    Py_RETURN_NONE;
}

/* compile(source, filename, "exec", dont_inherit=True) for the bootstrap,
 * without the builtin's first-call cost: compile() first asks whether its
 * source is an AST, which builds the ast module's node types (~2 ms), work
 * plain python never does to run a script.  Same flags and parser as the
 * builtin given bytes (the coding cookie is honoured); a NUL byte is
 * refused, the caller leaves such a source to the builtin and its error. */
static PyObject *py_compile_program(PyObject *self, PyObject *args)
{
    (void)self;
    const char *source;
    Py_ssize_t len;
    PyObject *filename;
    if (!PyArg_ParseTuple(args, "y#U", &source, &len, &filename))
        return NULL;
    if ((Py_ssize_t)strlen(source) != len)
        return PyErr_Format(PyExc_ValueError, "source code contains a null byte");
    PyCompilerFlags flags = _PyCompilerFlags_INIT;
    flags.cf_flags = PyCF_SOURCE_IS_UTF8;
    return Py_CompileStringObject(source, filename, Py_file_input, &flags, -1);
}

static PyObject *py_agent_stop(PyObject *self, PyObject *args, PyObject *kw)
{
    (void)self;
    static char *names[] = {"flush", NULL};
    int flush = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|p", names, &flush))
        return NULL;
    ulma_agent_stop(flush);
    Py_RETURN_NONE;
}

static PyObject *py_agent_fork_prepare(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    ulma_agent_fork_prepare();
    Py_RETURN_NONE;
}

static PyObject *py_agent_fork_parent(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    ulma_agent_fork_parent();
    Py_RETURN_NONE;
}

static PyObject *py_agent_ignore_thread(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    ulma_agent_ignore_thread();
    Py_RETURN_NONE;
}

static PyObject *py_agent_thread_name(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned long long tid;
    const char *name;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "Ks#", &tid, &name, &n))
        return NULL;
    return PyBool_FromLong(ulma_thread_name(tid, name, (size_t)n));
}

/* ---- monitor session ------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    ulma_monitor m;
} SessionObject;

static int session_init(SessionObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"fd", "ring_bytes", "max_threads", "symtab_bytes", "hint_scale", "clock_start",
                            NULL};
    int fd;
    unsigned long long symtab_bytes = 16u << 20;
    PyObject *ring_obj, *threads_obj = NULL, *start_obj = Py_None;
    double hint_scale = 1.0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iO|OKdO", names, &fd, &ring_obj, &threads_obj,
                                     &symtab_bytes, &hint_scale, &start_obj))
        return -1;
    /* clock_start: a clock_pair() of this process, of the last minute */
    ulma_clock_pair start, *from = NULL;
    if (start_obj != Py_None) {
        unsigned long long t, mono, width;
        if (!PyTuple_Check(start_obj)) {
            PyErr_SetString(PyExc_TypeError, "clock_start must be a clock_pair() tuple");
            return -1;
        }
        if (!PyArg_ParseTuple(start_obj, "KKK", &t, &mono, &width))
            return -1;
        ulma_clock_pair now = ulma_clock_pair_read(ulma_clock_choose());
        if (mono > now.mono_ns || now.mono_ns - mono > 60000000000ull || t > now.ticks ||
            width > 1000000u) {
            PyErr_SetString(PyExc_ValueError, "clock_start must be a clock_pair() of the last minute");
            return -1;
        }
        start = (ulma_clock_pair){t, mono, width};
        from = &start;
    }
    /* out of range is an error, never wrapped or clamped */
    unsigned long long ring_bytes = PyLong_AsUnsignedLongLong(ring_obj);
    if (ring_bytes == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    unsigned long long max_threads = threads_obj ? PyLong_AsUnsignedLongLong(threads_obj) : 4096;
    if (max_threads == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    if (ring_bytes > ULMA_MAX_RING_EVENTS * sizeof(ulma_event)) {
        PyErr_Format(PyExc_ValueError, "ring_bytes must be at most %llu",
                     (unsigned long long)(ULMA_MAX_RING_EVENTS * sizeof(ulma_event)));
        return -1;
    }
    if (max_threads < 1 || max_threads > ULMA_MAX_THREADS) {
        PyErr_Format(PyExc_ValueError, "max_threads must be between 1 and %u", ULMA_MAX_THREADS);
        return -1;
    }
    if (!(hint_scale > 0)) {
        PyErr_SetString(PyExc_ValueError, "hint_scale must be positive");
        return -1;
    }
    if (self->m.h) {
        PyErr_SetString(PyExc_RuntimeError, "session already created");
        return -1;
    }
    int rc = ulma_monitor_create(&self->m, fd, ring_bytes, (uint32_t)max_threads, symtab_bytes, from);
    if (rc < 0) {
        errno = -rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    /* tests: the replay starts from a skewed rate, which no figure may depend
     * on (the agent still spaces its readings by the true one) */
    self->m.ns_per_tick_hint *= hint_scale;
    return 0;
}

static void session_dealloc(SessionObject *self)
{
    ulma_monitor_free(&self->m);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int check_open(SessionObject *self)
{
    if (!self->m.h) {
        PyErr_SetString(PyExc_ValueError, "session is closed");
        return -1;
    }
    return 0;
}

/* Records drained per thread, kept for the caller (a trace file). */
typedef struct {
    char **data;
    size_t *len, *cap;
    uint32_t slots; /* threads the arrays cover */
} copy_buffers;

/* Covers threads [0, n); 0 or -1. */
static int copy_reserve(copy_buffers *c, uint32_t n)
{
    if (n <= c->slots)
        return 0;
    uint32_t want = c->slots ? c->slots : 64;
    while (want < n)
        want *= 2;
    char **data = realloc(c->data, want * sizeof *data);
    if (!data)
        return -1;
    c->data = data;
    size_t *len = realloc(c->len, want * sizeof *len);
    if (!len)
        return -1;
    c->len = len;
    size_t *cap = realloc(c->cap, want * sizeof *cap);
    if (!cap)
        return -1;
    c->cap = cap;
    for (uint32_t i = c->slots; i < want; i++) {
        data[i] = NULL;
        len[i] = cap[i] = 0;
    }
    c->slots = want;
    return 0;
}

static int copy_sink(void *ctx, uint32_t slot, const ulma_event *ev, size_t n)
{
    copy_buffers *c = ctx;
    size_t bytes = n * sizeof *ev;
    if (copy_reserve(c, slot + 1) < 0)
        return -1;
    if (c->len[slot] + bytes > c->cap[slot]) {
        size_t cap = c->cap[slot] ? c->cap[slot] : 1u << 16;
        while (cap < c->len[slot] + bytes)
            cap *= 2;
        char *p = realloc(c->data[slot], cap);
        if (!p)
            return -1;
        c->data[slot] = p;
        c->cap[slot] = cap;
    }
    memcpy(c->data[slot] + c->len[slot], ev, bytes);
    c->len[slot] += bytes;
    return 0;
}

static void copy_free(copy_buffers *c)
{
    for (uint32_t i = 0; c->data && i < c->slots; i++)
        free(c->data[i]);
    free(c->data);
    free(c->len);
    free(c->cap);
}

/* drain(postmortem=False, copy=False) -> events, or (events, [(thread, records)])
 * with copy=True: the raw records replayed, for a trace file. */
static PyObject *session_drain(SessionObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"postmortem", "copy", NULL};
    int postmortem = 0, copy = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|pp", names, &postmortem, &copy) ||
        check_open(self) < 0)
        return NULL;
    copy_buffers c = {0};
    if (copy && copy_reserve(&c, ulma_monitor_threads(&self->m) + 1) < 0) {
        copy_free(&c);
        return PyErr_NoMemory();
    }
    int64_t n;
    Py_BEGIN_ALLOW_THREADS
    ULMA_CORE_SCOPE("drain");
    n = ulma_monitor_drain(&self->m, postmortem, copy ? copy_sink : NULL, &c);
    Py_END_ALLOW_THREADS
    if (n < 0) {
        copy_free(&c);
        return PyErr_NoMemory();
    }
    if (!copy)
        return PyLong_FromLongLong(n);
    PyObject *chunks = PyList_New(0);
    for (uint32_t i = 0; chunks && i < c.slots; i++) {
        if (!c.len[i])
            continue;
        PyObject *t = Py_BuildValue("(Iy#)", i, c.data[i], (Py_ssize_t)c.len[i]);
        if (!t || PyList_Append(chunks, t) < 0)
            Py_CLEAR(chunks);
        Py_XDECREF(t);
    }
    copy_free(&c);
    if (!chunks)
        return NULL;
    PyObject *res = Py_BuildValue("(LN)", (long long)n, chunks);
    return res;
}

/* New symbol definitions: [(id, kind, flags, name, file, line)]. */
static PyObject *session_symbols(SessionObject *self, PyObject *unused)
{
    (void)unused;
    if (check_open(self) < 0)
        return NULL;
    PyObject *out = PyList_New(0);
    const ulma_symbol *s;
    while (out && (s = ulma_monitor_next_symbol(&self->m)) != NULL) {
        const char *name = (const char *)(s + 1);
        PyObject *t = Py_BuildValue("(IHHs#s#I)", s->id, s->kind, s->flags, name,
                                    (Py_ssize_t)s->name_len, name + s->name_len,
                                    (Py_ssize_t)s->file_len, s->line);
        if (!t) { /* undecodable bytes: keep going with a replacement */
            PyErr_Clear();
            t = Py_BuildValue("(IHHssI)", s->id, s->kind, s->flags, "?", "?", s->line);
        }
        if (!t || PyList_Append(out, t) < 0) {
            Py_XDECREF(t);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(t);
    }
    return out;
}

/* Appends Py_BuildValue(fmt, ...) to list; 0, or -1 with an exception set. */
static int append_built(PyObject *list, const char *fmt, ...)
{
    va_list va;
    va_start(va, fmt);
    PyObject *t = Py_VaBuildValue(fmt, va);
    va_end(va);
    if (!t)
        return -1;
    int rc = PyList_Append(list, t);
    Py_DECREF(t);
    return rc;
}

/* (functions, edges, counters, objects) of the merged aggregators, as Python lists; open frames
 * of unclosed threads count up to `now` when it is not 0.  now_cpu[slot], if
 * given and not 0, is that thread's CPU time now (ns).  split=1 adds the
 * four-way figures to each function (the order of monitor/profile.py's _split). */
static PyObject *snapshot_of(ulma_thread_agg *aggs, const uint8_t *closed, uint32_t n, long only,
                             uint64_t now, const uint64_t *now_cpu, int split, double rate, int final,
                             ulma_thread_agg *ended)
{
    ulma_thread_agg sum;
    ulma_agg_init(&sum);
    /* ended: the folded totals of ended threads (a session), merged unless
     * one thread is asked for */
    if (ended && only < 0 &&
        (final ? ulma_agg_hand_over(&sum, ended) : ulma_agg_merge(&sum, ended, 0, 0)) < 0) {
        ulma_agg_free(&sum);
        return PyErr_NoMemory();
    }
    for (uint32_t s = 0; s < n; s++) {
        if (only >= 0 && (uint32_t)only != s)
            continue;
        /* final: the totals are handed over, so a program that made many
         * functions never has them twice in the monitor */
        if ((final ? ulma_agg_hand_over(&sum, &aggs[s])
                   : ulma_agg_merge(&sum, &aggs[s], closed[s] ? 0 : now, now_cpu ? now_cpu[s] : 0)) < 0) {
            ulma_agg_free(&sum);
            return PyErr_NoMemory();
        }
    }
    PyObject *funcs = PyList_New(0), *edges = PyList_New(0), *counters = NULL, *objects = NULL, *res = NULL;
    if (!funcs || !edges)
        goto done;
    for (size_t i = 0; i < sum.nfuncs; i++) {
        ulma_func_stats *f = &sum.funcs[i];
        /* a coroutine's time suspended in await: waiting, in its self time
         * (but what it spent awaiting another coroutine) and its total */
        uint64_t aw = ulma_agg_await(&f->await_all, now), aw_self = ulma_agg_await(&f->await_self, now);
        if (aw_self > aw)
            aw_self = aw;
        if (!f->calls && !f->resumes && !f->total && !f->self && !aw)
            continue;
        const ulma_split *a = &f->self_split, *b = &f->total_split;
        uint64_t a_wait, a_run, b_wait, b_run; /* at the rate given now (aggregate.h) */
        ulma_agg_wait(a, rate, &a_wait, &a_run);
        ulma_agg_wait(b, rate, &b_wait, &b_run);
        if ((split ? append_built(funcs, "(IKKKKKKKKKKKKKKKKKKKKKKK)", sum.func_ids[i], f->calls, f->resumes,
                                  f->self + aw_self, f->total + aw, a_wait + aw_self, a_run, a->probe,
                                  a->dispatch, a->segs, b_wait + aw, b_run, b->probe, b->dispatch, b->segs,
                                  b->unmeasured, f->dispatch_in, aw_self, aw, f->coro_calls, a->bsegs,
                                  a->esegs, b->bsegs, b->esegs)
                   : append_built(funcs, "(IKKKK)", sum.func_ids[i], f->calls, f->resumes, f->self + aw_self,
                                  f->total + aw)) < 0)
            goto done;
    }
    if (final) /* the function rows are made: their totals can go */
        ulma_agg_release_funcs(&sum);
    for (size_t i = 0; i < sum.nedges; i++) {
        ulma_edge_stats *e = &sum.edges[i];
        uint64_t aw = ulma_agg_await(&e->await_all, now);
        if (!e->calls && !e->resumes && !e->total && !aw)
            continue;
        if (append_built(edges, "(IIKKK)", e->caller, e->callee, e->calls, e->resumes, e->total + aw) < 0)
            goto done;
    }
    counters = PyList_New(0);
    if (!counters)
        goto done;
    for (size_t i = 0; i < sum.counters.n; i++) {
        const ulma_counter_stats *c = &sum.counters.rows[i];
        if (c->samples && append_built(counters, "(IKLLLdK)", c->id, c->samples, (long long)c->last,
                                       (long long)c->min, (long long)c->max,
                                       (double)c->sum / (double)c->samples, c->last_tick) < 0)
            goto done;
    }
    objects = PyList_New(0);
    if (!objects)
        goto done;
    for (size_t i = 0; i < sum.objects.n; i++) {
        const ulma_obj_row *o = &sum.objects.rows[i];
        if (append_built(objects, "(IIKKKKK)", o->function, (unsigned)o->type, o->created, o->freed,
                         o->freed_here, o->bytes_made, o->bytes_freed) < 0)
            goto done;
    }
    res = PyTuple_Pack(4, funcs, edges, counters, objects);
done:
    Py_XDECREF(funcs);
    Py_XDECREF(edges);
    Py_XDECREF(counters);
    Py_XDECREF(objects);
    ulma_agg_free(&sum);
    return res;
}

/* watch(id, ticks, steps=False): frames of function `id` longer than
 * `ticks` are kept (with their stack) until take_blocks(); id 0 watches no
 * function; with steps, asyncio tasks' steps too (aggregate.h ulma_watch). */
static PyObject *set_watch(ulma_watch *w, ulma_thread_agg *aggs, uint32_t n, PyObject *args)
{
    unsigned int id;
    unsigned long long ticks;
    int steps = 0;
    if (!PyArg_ParseTuple(args, "IK|p", &id, &ticks, &steps))
        return NULL;
    w->id = id;
    w->ticks = ticks;
    w->steps = (uint32_t)steps;
    for (uint32_t i = 0; i < n; i++) /* a frame open now is timed from its next entry */
        ulma_agg_set_watch(&aggs[i], w);
    Py_RETURN_NONE;
}

/* ([(thread, start, ticks, (ids...))], over): the long frames of the watched
 * function every thread kept since the last call (stack outermost first),
 * and how many more were only counted. */
static PyObject *take_blocks(ulma_thread_agg *aggs, uint32_t n)
{
    PyObject *out = PyList_New(0);
    unsigned long long over = 0;
    for (uint32_t t = 0; out && t < n; t++) {
        over += aggs[t].blocks_over;
        aggs[t].blocks_over = 0;
        ulma_block *b;
        uint32_t k = ulma_agg_take_blocks(&aggs[t], &b);
        for (uint32_t i = 0; out && i < k; i++) {
            PyObject *ids = PyTuple_New(b[i].depth);
            for (uint32_t j = 0; ids && j < b[i].depth; j++) {
                PyObject *v = PyLong_FromUnsignedLong(b[i].ids[j]);
                if (!v)
                    Py_CLEAR(ids);
                else
                    PyTuple_SET_ITEM(ids, j, v);
            }
            if (!ids || append_built(out, "(IKKN)", t, b[i].start, b[i].ticks, ids) < 0)
                Py_CLEAR(out);
        }
        free(b);
    }
    return out ? Py_BuildValue("(NK)", out, over) : NULL;
}

/* One task as (number, coro, thread, state, first, since, steps, running,
 * waiting, (awaiting ids, innermost first)); ticks. */
static int append_task(PyObject *list, const ulma_task *t)
{
    uint32_t n = t->nawait < ULMA_TASK_AWAIT_FRAMES ? t->nawait : ULMA_TASK_AWAIT_FRAMES;
    PyObject *ids = PyTuple_New(n);
    for (uint32_t j = 0; ids && j < n; j++) {
        PyObject *v = PyLong_FromUnsignedLong(t->awaiting[j]);
        if (!v)
            Py_CLEAR(ids);
        else
            PyTuple_SET_ITEM(ids, j, v);
    }
    if (!ids)
        return -1;
    return append_built(list, "(IIIIKKKKKN)", t->number, t->coro, t->thread, t->state, t->first, t->since,
                        t->steps, t->running, t->waiting, ids);
}

/* take_tasks(live, limit) -> (done, going, over, going_total): the tasks
 * done since the last call (handed over: the table forgets them), with
 * live=True the first `limit` still going (copied; the table keeps them in
 * the order of their first step: the longest-lived first), the tasks not
 * kept so far, and how many are going. */
static PyObject *take_tasks(ulma_tasks *k, PyObject *args)
{
    int live = 0;
    unsigned long long limit = ULLONG_MAX;
    if (!PyArg_ParseTuple(args, "|pK", &live, &limit))
        return NULL;
    ulma_task *done;
    size_t n = ulma_tasks_take_done(k, &done);
    PyObject *a = PyList_New(0), *b = PyList_New(0);
    for (size_t i = 0; a && i < n; i++)
        if (append_task(a, &done[i]) < 0)
            Py_CLEAR(a);
    free(done);
    /* (after a take none is done: compacted) */
    for (size_t i = 0; live && a && b && i < k->n && i < limit; i++)
        if (append_task(b, &k->tasks[i]) < 0)
            Py_CLEAR(b);
    if (!a || !b) {
        Py_XDECREF(a);
        Py_XDECREF(b);
        return NULL;
    }
    return Py_BuildValue("(NNKn)", a, b, (unsigned long long)k->over, (Py_ssize_t)k->n);
}

/* The per-thread replay figures shared by Session.threads and Aggregator.threads. */
static PyObject *agg_figures(const ulma_thread_agg *a)
{
    return Py_BuildValue("{s:K,s:n,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K}", "events",
                         a->w.events, "depth", (Py_ssize_t)a->depth, "lost_ticks", a->w.lost_ticks,
                         "unmatched", a->w.unmatched, "syncs", a->w.syncs, "clock_backwards",
                         a->w.clock_backwards, "first_tick", a->w.first_tick, "last_tick", a->w.last_tick,
                         "cpu_readings", a->cpu_readings, "cpu_tick", a->have_cpu ? a->cpu_tick : 0);
}

/* {thread: cpu_ns} -> an array over the threads (0 = unknown); NULL on error. */
static uint64_t *cpu_array(PyObject *now_cpu, uint32_t slots)
{
    uint64_t *arr = PyMem_Calloc(slots + 1, sizeof *arr);
    if (!arr)
        return (uint64_t *)PyErr_NoMemory();
    if (now_cpu == Py_None)
        return arr;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    if (!PyDict_Check(now_cpu)) {
        PyMem_Free(arr);
        PyErr_SetString(PyExc_TypeError, "now_cpu must be a dict {thread: cpu_ns}");
        return NULL;
    }
    while (PyDict_Next(now_cpu, &pos, &key, &value)) {
        long slot = PyLong_AsLong(key);
        unsigned long long ns = PyLong_AsUnsignedLongLong(value);
        if (PyErr_Occurred()) {
            PyMem_Free(arr);
            return NULL;
        }
        if (slot >= 0 && (unsigned long)slot < slots)
            arr[slot] = ns & ((1ULL << ULMA_CPU_VALUE_BITS) - 1);
    }
    return arr;
}

/* (functions, edges): functions = [(id, calls, resumes, self, total)] (split
 * figures after them with split=True), edges = [(caller, callee, calls,
 * resumes, total)], times in ticks.  live=True counts open frames up to now;
 * thread=None merges all threads; waiting is formed at `rate` ns per tick
 * (default: the session's first calibration). */
static PyObject *session_snapshot(SessionObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"live", "thread", "split", "now_cpu", "rate", "final", NULL};
    int live = 0, split = 0, final = 0;
    double rate = 0;
    PyObject *thread = Py_None, *now_cpu = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|pOpOdp", names, &live, &thread, &split, &now_cpu,
                                     &rate, &final) ||
        check_open(self) < 0)
        return NULL;
    if (!(rate > 0))
        rate = self->m.ns_per_tick_hint;
    long only = -1;
    if (thread != Py_None && (only = PyLong_AsLong(thread)) < 0)
        return PyErr_Occurred() ? NULL : PyErr_Format(PyExc_ValueError, "bad thread index");
    uint32_t threads = ulma_monitor_threads(&self->m);
    uint64_t *cpu = cpu_array(now_cpu, threads);
    if (!cpu)
        return NULL;
    uint64_t now = live ? ulma_ticks(self->m.clock_source) : 0;
    ULMA_CORE_SCOPE("snapshot");
    PyObject *res = snapshot_of(self->m.aggs, self->m.closed, threads, only, now, cpu, split, rate, final,
                                &self->m.ended);
    PyMem_Free(cpu);
    return res;
}

/* One dict per thread seen, in order: identity, progress and anomalies.
 * `thread` is the monitor's number for it; `slot` the ring it used (a slot
 * serves one thread after another).  open_only: the threads still running. */
static PyObject *session_threads(SessionObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"open_only", NULL};
    int open_only = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|p", names, &open_only) || check_open(self) < 0)
        return NULL;
    ulma_monitor *m = &self->m;
    uint32_t n = ulma_monitor_threads(m);
    PyObject *out = PyList_New(0);
    for (uint32_t t = 0; out && t < n; t++) {
        if (open_only && m->closed[t])
            continue;
        const ulma_thread_info *in = &m->info[t];
        uint32_t state = ULMA_RING_FINISHED;
        double fill = 0.0;
        if (!m->closed[t]) { /* still in its ring */
            ulma_ring_header *r = ulma_monitor_ring(m, in->slot);
            if (r) {
                uint64_t pub = atomic_load_explicit(&r->published, memory_order_acquire);
                uint64_t rd = m->slots[in->slot].tail;
                state = atomic_load_explicit(&r->state, memory_order_relaxed);
                fill = (int64_t)(pub - rd) > 0 ? (double)(pub - rd) / (double)m->ring_events : 0.0;
                if (fill > 1.0)
                    fill = 1.0;
            }
        }
        PyObject *d = agg_figures(&m->aggs[t]);
        PyObject *ring = d ? Py_BuildValue(
            "{s:I,s:I,s:I,s:K,s:I,s:K,s:d,s:i,s:O}", "thread", t, "slot", in->slot, "os_tid",
            in->os_tid, "ident", (unsigned long long)in->ident, "state", state, "dropped",
            (unsigned long long)in->dropped, "fill", fill, "closed", m->closed[t] != 0, "folded",
            m->closed[t] == ULMA_THREAD_FOLDED ? Py_True : Py_False) : NULL;
        if (!ring || PyDict_Update(d, ring) < 0)
            Py_CLEAR(d);
        Py_XDECREF(ring);
        if (!d || PyList_Append(out, d) < 0) {
            Py_XDECREF(d);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(d);
    }
    return out;
}

static PyObject *session_counters(SessionObject *self, PyObject *unused)
{
    (void)unused;
    if (check_open(self) < 0)
        return NULL;
    ulma_monitor *m = &self->m;
    ulma_session_header *h = m->h;
    PyObject *res = Py_BuildValue(
        "{s:I,s:s,s:K,s:K,s:K,s:K,s:I,s:I,s:I,s:I,s:K,s:K,s:K,s:I,s:I,s:I,s:K,s:K,s:I,s:K,s:I,s:I,s:I,s:I}",
        "version", ULMA_FORMAT_VERSION, "clock", ulma_clock_name(m->clock_source), "start_ticks",
        m->start_ticks, "start_mono_ns", m->start_mono_ns, "start_real_ns", m->start_real_ns,
        "ring_events", m->ring_events, "max_threads", m->max_threads, "rings_used",
        ulma_monitor_slots_used(m), "agent_state",
        atomic_load_explicit(&h->agent_state, memory_order_acquire), "agent_pid",
        atomic_load_explicit(&h->agent_pid, memory_order_relaxed), "threads_overflow",
        atomic_load_explicit(&h->threads_overflow, memory_order_relaxed), "symtab_overflow",
        atomic_load_explicit(&h->symtab_overflow, memory_order_relaxed), "corrupt", self->m.corrupt,
        "engine", atomic_load_explicit(&h->engine, memory_order_relaxed), "tool_id",
        atomic_load_explicit(&h->tool_id, memory_order_relaxed), "symbols",
        atomic_load_explicit(&h->next_symbol_id, memory_order_relaxed) - 1,
        "unringed_events", atomic_load_explicit(&h->unringed_events, memory_order_relaxed),
        "chunk_failures", m->chunk_failures, "threads_seen", ulma_monitor_threads(m),
        "ring_stride", m->ring_stride, "hooks_displaced",
        atomic_load_explicit(&h->hooks_displaced, memory_order_relaxed), "ids_overflow",
        atomic_load_explicit(&h->ids_overflow, memory_order_relaxed), "forked_children",
        atomic_load_explicit(&h->forked_children, memory_order_relaxed), "tasks_untold",
        atomic_load_explicit(&h->tasks_untold, memory_order_relaxed));
    if (res && (set_int(res, "objects_mechanism", (long)atomic_load_explicit(&h->objects_mechanism,
                                                                              memory_order_relaxed)) < 0 ||
                set_int(res, "types_overflow", (long)atomic_load_explicit(&h->types_overflow,
                                                                          memory_order_relaxed)) < 0 ||
                set_int(res, "objects_untracked", (long)atomic_load_explicit(&h->objects_untracked,
                                                                             memory_order_relaxed)) < 0 ||
                set_int(res, "objects_displaced", (long)atomic_load_explicit(&h->objects_displaced,
                                                                             memory_order_relaxed)) < 0))
        Py_CLEAR(res);
    return res;
}

/* What the agent measures: its flags, calibrated probe cost, CPU interval. */
static PyObject *session_agent_info(SessionObject *self, PyObject *unused)
{
    (void)unused;
    if (check_open(self) < 0)
        return NULL;
    ulma_session_header *h = self->m.h;
    uint32_t flags = atomic_load_explicit(&h->agent_flags, memory_order_acquire);
    /* the start first (acquire): once it is set, the probe cost stored before it is seen too
     * (read inside the call below, in an unspecified order, it could be read before it was set) */
    unsigned long long start =
        atomic_load_explicit(&h->program_start_ticks, memory_order_acquire);
    double probe_ns = atomic_load_explicit(&h->probe_ps, memory_order_relaxed) / 1000.0;
    double scope_probe_ns = atomic_load_explicit(&h->scope_probe_ps, memory_order_relaxed) / 1000.0;
    double scope_end_ns = atomic_load_explicit(&h->scope_end_probe_ps, memory_order_relaxed) / 1000.0;
    return Py_BuildValue("{s:O,s:O,s:O,s:d,s:d,s:d,s:I,s:d,s:K}", "cpu_samples",
                         (flags & ULMA_AGENT_CPU_SAMPLES) ? Py_True : Py_False, "native_calls",
                         (flags & ULMA_AGENT_NATIVE_CALLS) ? Py_True : Py_False, "schedstat",
                         (flags & ULMA_AGENT_SCHEDSTAT) ? Py_True : Py_False, "probe_ns", probe_ns,
                         "scope_probe_ns", scope_probe_ns, "scope_end_probe_ns", scope_end_ns, "cpu_interval_us",
                         atomic_load_explicit(&h->cpu_interval_us, memory_order_relaxed),
                         "ns_per_tick_hint", self->m.ns_per_tick_hint, "program_start_ticks", start);
}

/* (ticks, monotonic ns) taken together (a tight pair, see clock.h), for calibration. */
static PyObject *session_clock(SessionObject *self, PyObject *unused)
{
    (void)unused;
    if (check_open(self) < 0)
        return NULL;
    ulma_clock_pair p = ulma_clock_pair_read(self->m.clock_source);
    return Py_BuildValue("(KK)", p.ticks, p.mono_ns);
}

static PyObject *session_clear(SessionObject *self, PyObject *unused)
{
    (void)unused;
    if (check_open(self) < 0)
        return NULL;
    uint64_t now = ulma_ticks(self->m.clock_source);
    uint32_t threads = ulma_monitor_threads(&self->m);
    for (uint32_t t = 0; t < threads; t++)
        ulma_agg_clear(&self->m.aggs[t], now);
    ulma_agg_clear(&self->m.ended, now);
    ulma_tasks_clear(&self->m.tasks, now);
    Py_RETURN_NONE;
}

/* End of run: every stack still open closes at its thread's last event. */
static PyObject *session_close_all(SessionObject *self, PyObject *unused)
{
    (void)unused;
    if (check_open(self) < 0)
        return NULL;
    uint32_t threads = ulma_monitor_threads(&self->m);
    for (uint32_t t = 0; t < threads; t++) {
        ulma_agg_close(&self->m.aggs[t]);
        if (!self->m.closed[t])
            self->m.closed[t] = ULMA_THREAD_CLOSED;
    }
    Py_RETURN_NONE;
}


/* ---- the control channel (records.h), the monitor's side ----------------- */

/* post(op, arg): writes one command; its number, or 0 if the channel holds
 * ULMA_CONTROL_SLOTS commands the agent has not acknowledged yet. */
static PyObject *session_post(SessionObject *self, PyObject *args)
{
    unsigned int op, arg;
    if (!PyArg_ParseTuple(args, "II", &op, &arg))
        return NULL;
    if (check_open(self) < 0)
        return NULL;
    ulma_monitor *m = &self->m;
    ulma_control *c = ulma_session_control(m->h);
    uint64_t acked = atomic_load_explicit(&c->acked, memory_order_acquire);
    /* (the program could write acked: our own count bounds what we believe) */
    if (acked > m->ctl_posted)
        acked = m->ctl_posted;
    if (m->ctl_posted - acked >= ULMA_CONTROL_SLOTS)
        return PyLong_FromLong(0);
    uint64_t k = ++m->ctl_posted;
    ulma_control_cmd *cmd = &c->cmd[(k - 1) & (ULMA_CONTROL_SLOTS - 1)];
    cmd->op = op;
    cmd->arg = arg;
    atomic_store_explicit(&cmd->status, ULMA_CTL_PENDING, memory_order_relaxed);
    atomic_store_explicit(&cmd->done_ticks, 0, memory_order_relaxed);
    atomic_store_explicit(&cmd->seq, k, memory_order_release);
    atomic_store_explicit(&c->posted, k, memory_order_release);
    /* the agent's waiter: for a program whose traced functions do not run */
    atomic_fetch_add_explicit(&c->doorbell, 1, memory_order_release);
    syscall(SYS_futex, &c->doorbell, FUTEX_WAKE, 1, NULL, NULL, 0);
    return PyLong_FromUnsignedLongLong(k);
}

/* command(k): (status, done_ticks) of command k while its slot still holds
 * it, else None.  status: "pending", "applied" or "refused". */
static PyObject *session_command(SessionObject *self, PyObject *arg)
{
    unsigned long long k = PyLong_AsUnsignedLongLong(arg);
    if (k == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (check_open(self) < 0)
        return NULL;
    ulma_monitor *m = &self->m;
    if (k == 0 || k > m->ctl_posted || m->ctl_posted - k >= ULMA_CONTROL_SLOTS)
        Py_RETURN_NONE;
    ulma_control *c = ulma_session_control(m->h);
    uint64_t acked = atomic_load_explicit(&c->acked, memory_order_acquire);
    ulma_control_cmd *cmd = &c->cmd[(k - 1) & (ULMA_CONTROL_SLOTS - 1)];
    if (acked < k || acked > m->ctl_posted)
        return Py_BuildValue("(sK)", "pending", 0ULL);
    uint32_t st = atomic_load_explicit(&cmd->status, memory_order_relaxed);
    const char *name = st == ULMA_CTL_APPLIED ? "applied" : st == ULMA_CTL_REFUSED ? "refused" : "pending";
    return Py_BuildValue("(sK)", name,
                         (unsigned long long)atomic_load_explicit(&cmd->done_ticks, memory_order_relaxed));
}

/* control(): the channel's counters. */
static PyObject *session_control(SessionObject *self, PyObject *unused)
{
    (void)unused;
    if (check_open(self) < 0)
        return NULL;
    ulma_control *c = ulma_session_control(self->m.h);
    return Py_BuildValue("{s:I,s:K,s:K,s:K}", "version", ULMA_CONTROL_VERSION, "posted",
                         (unsigned long long)self->m.ctl_posted, "acked",
                         (unsigned long long)atomic_load_explicit(&c->acked, memory_order_acquire),
                         "refused",
                         (unsigned long long)atomic_load_explicit(&c->refused, memory_order_relaxed));
}

/* scribble(offset, data) (tests: a hostile writer): writes raw bytes into
 * the control block, as a program holding the memfd could. */
static PyObject *session_scribble(SessionObject *self, PyObject *args)
{
    unsigned int off;
    Py_buffer b;
    if (!PyArg_ParseTuple(args, "Iy*", &off, &b))
        return NULL;
    if (check_open(self) < 0 || off > sizeof(ulma_control) || (size_t)b.len > sizeof(ulma_control) - off) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "outside the control block");
        PyBuffer_Release(&b);
        return NULL;
    }
    memcpy((char *)ulma_session_control(self->m.h) + off, b.buf, (size_t)b.len);
    PyBuffer_Release(&b);
    Py_RETURN_NONE;
}

/* step(): where the stepped thread stopped (records.h "Single-step"):
 * (state, seq, slot, os_tid, kind, id, ticks, [frame ids: the event's
 * function first, then its callers], truncated).  Read as the agent wrote it
 * (seq, fields, seq again); nframes is bounded. */
static PyObject *session_step(SessionObject *self, PyObject *unused)
{
    (void)unused;
    if (check_open(self) < 0)
        return NULL;
    ulma_step *s = ulma_session_step(self->m.h);
    ulma_step copy;
    uint32_t state = 0;
    for (int tries = 0; tries < 100; tries++) {
        uint32_t seq = atomic_load_explicit(&s->seq, memory_order_acquire);
        state = atomic_load_explicit(&s->state, memory_order_acquire);
        memcpy(&copy, s, sizeof copy);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&s->seq, memory_order_relaxed) == seq) {
            copy.seq = seq;
            break;
        }
    }
    uint32_t n = copy.nframes < ULMA_STEP_FRAMES ? copy.nframes : ULMA_STEP_FRAMES;
    PyObject *frames = PyList_New(n);
    if (!frames)
        return NULL;
    for (uint32_t i = 0; i < n; i++) {
        PyObject *v = PyLong_FromUnsignedLong(copy.frames[i]);
        if (!v) {
            Py_DECREF(frames);
            return NULL;
        }
        PyList_SET_ITEM(frames, i, v);
    }
    return Py_BuildValue("(IIIIIIKNO)", state, (unsigned int)copy.seq, copy.slot, copy.os_tid, copy.kind,
                         copy.id, (unsigned long long)copy.ticks, frames,
                         copy.truncated ? Py_True : Py_False);
}

static PyObject *session_close(SessionObject *self, PyObject *unused)
{
    (void)unused;
    ulma_monitor_free(&self->m);
    Py_RETURN_NONE;
}

static PyObject *session_watch(SessionObject *self, PyObject *args)
{
    if (check_open(self) < 0)
        return NULL;
    return set_watch(&self->m.watch, self->m.aggs, ulma_monitor_threads(&self->m), args);
}

static PyObject *session_take_tasks(SessionObject *self, PyObject *args)
{
    if (check_open(self) < 0)
        return NULL;
    return take_tasks(&self->m.tasks, args);
}

static PyObject *session_take_blocks(SessionObject *self, PyObject *unused)
{
    (void)unused;
    if (check_open(self) < 0)
        return NULL;
    return take_blocks(self->m.aggs, ulma_monitor_threads(&self->m));
}

static PyMethodDef session_methods[] = {
    {"watch", (PyCFunction)session_watch, METH_VARARGS,
     "watch(id, ticks, steps=False): frames of function id (0: none) longer than ticks are kept; with steps, "
     "asyncio tasks' steps too"},
    {"take_tasks", (PyCFunction)session_take_tasks, METH_VARARGS,
     "take_tasks(live=False, limit=all) -> (done, going, over, going_total): asyncio tasks (number, coro, "
     "thread, state, first, since, steps, running, waiting, awaiting)"},
    {"take_blocks", (PyCFunction)session_take_blocks, METH_NOARGS,
     "take_blocks() -> ([(thread, start, ticks, (ids, outermost first))], more_counted) since the last call"},
    {"drain", (PyCFunction)(void (*)(void))session_drain, METH_VARARGS | METH_KEYWORDS,
     "drain(postmortem=False, copy=False) -> events replayed from every ring, or (events, "
     "[(thread, records)]) with copy=True"},
    {"symbols", (PyCFunction)session_symbols, METH_NOARGS, "new symbol definitions"},
    {"snapshot", (PyCFunction)(void (*)(void))session_snapshot, METH_VARARGS | METH_KEYWORDS,
     "snapshot(live=False, thread=None, split=False, now_cpu=None, rate=hint, final=False) -> "
     "(functions, edges, counters, objects) in ticks; split adds the four-way figures, waiting formed at `rate` ns "
     "per tick; now_cpu {thread: ns} splits open intervals; final hands the totals over"},
    {"threads", (PyCFunction)(void (*)(void))session_threads, METH_VARARGS | METH_KEYWORDS,
     "threads(open_only=False): per thread seen (the monitor's thread numbers): identity, ring "
     "and replay figures"},
    {"counters", (PyCFunction)session_counters, METH_NOARGS, "session-wide counters"},
    {"agent_info", (PyCFunction)session_agent_info, METH_NOARGS,
     "what the agent measures: cpu_samples, native_calls, schedstat, probe_ns, cpu_interval_us, "
     "ns_per_tick_hint, program_start_ticks"},
    {"clock", (PyCFunction)session_clock, METH_NOARGS, "(ticks, monotonic_ns) now"},
    {"clear", (PyCFunction)session_clear, METH_NOARGS, "forget all totals, keep stacks"},
    {"close_all", (PyCFunction)session_close_all, METH_NOARGS, "close every open stack"},
    {"close", (PyCFunction)session_close, METH_NOARGS, "unmap the session"},
    {"post", (PyCFunction)session_post, METH_VARARGS,
     "post(op, arg): a command to the agent; its number, or 0 if the channel is full"},
    {"command", (PyCFunction)session_command, METH_O,
     "command(k): (status, done_ticks) of command k, or None once its slot was reused"},
    {"control", (PyCFunction)session_control, METH_NOARGS, "the control channel's counters"},
    {"step", (PyCFunction)session_step, METH_NOARGS,
     "step(): (state, seq, slot, os_tid, kind, id, ticks, frames, truncated) of single-step"},
    {"scribble", (PyCFunction)session_scribble, METH_VARARGS,
     "scribble(offset, data): raw bytes into the control block (tests: a hostile writer)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject SessionType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ulma._core.Session",
    .tp_basicsize = sizeof(SessionObject),
    .tp_dealloc = (destructor)session_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Session(fd, ring_bytes, max_threads=4096, symtab_bytes=16 MiB, hint_scale=1.0, "
              "clock_start=None): the "
              "monitor's side of a shared-memory session created in the memfd `fd` (max_threads: "
              "rings in use at once, 1 to LIMITS['MAX_THREADS']; a finished thread's ring is reused; "
              "ring_bytes at most LIMITS['MAX_RING_BYTES']; hint_scale skews the rate "
              "the replay starts from, for tests; clock_start: a clock_pair() of the last minute the "
              "session starts from, its first calibration running from it)",
    .tp_methods = session_methods,
    .tp_init = (initproc)session_init,
    .tp_new = PyType_GenericNew,
};


/* ---- offline replay ------------------------------------------------- */

/* Aggregator(): the same replay as a live session, fed with event records
 * from anywhere (a trace file, a test).  Threads are small integers. */
typedef struct {
    PyObject_HEAD
    ulma_thread_agg *aggs;
    uint8_t *closed;
    uint32_t n;
    double rate; /* ns per tick for new threads; 0 until set_rate */
    ulma_thread_agg ended; /* totals folded out of idle threads (fold) */
    ulma_watch watch;
    ulma_tasks tasks;
} AggregatorObject;

#define MAX_OFFLINE_THREADS 65536u

static void aggregator_dealloc(AggregatorObject *self)
{
    for (uint32_t i = 0; i < self->n; i++)
        ulma_agg_free(&self->aggs[i]);
    ulma_agg_free(&self->ended);
    ulma_tasks_free(&self->tasks);
    PyMem_Free(self->aggs);
    PyMem_Free(self->closed);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static ulma_thread_agg *aggregator_thread(AggregatorObject *self, long thread)
{
    if (thread < 0 || (unsigned long)thread >= MAX_OFFLINE_THREADS) {
        PyErr_Format(PyExc_ValueError, "thread must be in [0, %u)", MAX_OFFLINE_THREADS);
        return NULL;
    }
    if ((uint32_t)thread >= self->n) {
        uint32_t n = (uint32_t)thread + 1;
        ulma_thread_agg *aggs = PyMem_Realloc(self->aggs, n * sizeof *aggs);
        if (!aggs)
            return (ulma_thread_agg *)PyErr_NoMemory();
        self->aggs = aggs;
        uint8_t *closed = PyMem_Realloc(self->closed, n);
        if (!closed)
            return (ulma_thread_agg *)PyErr_NoMemory();
        self->closed = closed;
        for (uint32_t i = self->n; i < n; i++) {
            ulma_agg_init(&aggs[i]);
            aggs[i].ns_per_tick = self->rate;
            ulma_agg_set_watch(&aggs[i], &self->watch);
            ulma_agg_set_tasks(&aggs[i], &self->tasks, i);
            closed[i] = 0;
        }
        self->n = n;
    }
    return &self->aggs[thread];
}

/* Hands the records in buf (a whole number of them) to fn(ctx, records, n):
 * all at once when they are aligned (as in bytes, the usual case), else
 * copied in pieces.  fn's result: 0, or -1 to stop. */
typedef int (*records_fn)(void *ctx, const ulma_event *ev, size_t n);

static int feed_records(const Py_buffer *buf, records_fn fn, void *ctx)
{
    const char *p = buf->buf;
    size_t left = (size_t)buf->len / sizeof(ulma_event);
    if ((uintptr_t)p % _Alignof(ulma_event) == 0)
        return left ? fn(ctx, (const ulma_event *)(const void *)p, left) : 0;
    ulma_event piece[512];
    while (left) {
        size_t k = left < 512 ? left : 512;
        memcpy(piece, p, k * sizeof(ulma_event));
        if (fn(ctx, piece, k) < 0)
            return -1;
        p += k * sizeof(ulma_event);
        left -= k;
    }
    return 0;
}

static int agg_records(void *ctx, const ulma_event *ev, size_t n)
{
    return ulma_agg_feed(ctx, ev, n);
}

static PyObject *aggregator_feed(AggregatorObject *self, PyObject *args)
{
    long thread;
    Py_buffer buf;
    if (!PyArg_ParseTuple(args, "ly*", &thread, &buf))
        return NULL;
    PyObject *res = NULL;
    ulma_thread_agg *a = aggregator_thread(self, thread);
    if (!a)
        goto out;
    if (buf.len % (Py_ssize_t)sizeof(ulma_event)) {
        PyErr_Format(PyExc_ValueError, "records are %zu bytes; got %zd bytes", sizeof(ulma_event),
                     buf.len);
        goto out;
    }
    if (self->closed[thread]) {
        PyErr_Format(PyExc_ValueError, "thread %ld was closed", thread);
        goto out;
    }
    int rc;
    {
        ULMA_CORE_SCOPE("aggregate");
        rc = feed_records(&buf, agg_records, a);
    }
    if (rc < 0) {
        PyErr_NoMemory();
        goto out;
    }
    res = Py_NewRef(Py_None);
out:
    PyBuffer_Release(&buf);
    return res;
}

static PyObject *aggregator_close(AggregatorObject *self, PyObject *unused)
{
    (void)unused;
    for (uint32_t i = 0; i < self->n; i++) {
        ulma_agg_close(&self->aggs[i]);
        self->closed[i] = 1;
    }
    Py_RETURN_NONE;
}

static PyObject *aggregator_snapshot(AggregatorObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"now", "thread", "split", "rate", NULL};
    unsigned long long now = 0;
    long only = -1;
    int split = 0;
    double rate = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|Klpd", names, &now, &only, &split, &rate))
        return NULL;
    if (!(rate > 0))
        rate = self->rate > 0 ? self->rate : 1.0;
    return snapshot_of(self->aggs, self->closed, self->n, only, now, NULL, split, rate, 0, &self->ended);
}

/* fold(thread): a thread with no open frame gives its totals to the folded
 * ones and frees them (its counters stay): memory then follows the threads
 * running, not all the threads a trace ever had.  Exact, as nothing of its
 * is open; a later event of it starts new totals.  True if it folded. */
static PyObject *aggregator_fold(AggregatorObject *self, PyObject *arg)
{
    long thread = PyLong_AsLong(arg);
    if (thread == -1 && PyErr_Occurred())
        return NULL;
    if (thread < 0 || (unsigned long)thread >= self->n)
        Py_RETURN_FALSE;
    ulma_thread_agg *a = &self->aggs[thread];
    if (a->depth || (!a->nfuncs && !a->nedges))
        Py_RETURN_FALSE;
    uint64_t readings = a->cpu_readings;
    if (ulma_agg_merge(&self->ended, a, 0, 0) < 0)
        return PyErr_NoMemory();
    self->ended.cpu_readings -= readings; /* they stay the thread's own figure */
    ulma_agg_release(a);
    Py_RETURN_TRUE;
}

/* The ns-per-tick the replay uses to compare CPU readings with ticks. */
static PyObject *aggregator_set_rate(AggregatorObject *self, PyObject *arg)
{
    double r = PyFloat_AsDouble(arg);
    if (r == -1.0 && PyErr_Occurred())
        return NULL;
    if (!(r > 0))
        return PyErr_Format(PyExc_ValueError, "ns per tick must be positive");
    self->rate = r;
    for (uint32_t i = 0; i < self->n; i++)
        self->aggs[i].ns_per_tick = r;
    Py_RETURN_NONE;
}

static PyObject *aggregator_threads(AggregatorObject *self, PyObject *unused)
{
    (void)unused;
    PyObject *out = PyList_New(0);
    for (uint32_t i = 0; out && i < self->n; i++) {
        PyObject *d = agg_figures(&self->aggs[i]);
        if (!d || PyList_Append(out, d) < 0)
            Py_CLEAR(out);
        Py_XDECREF(d);
    }
    return out;
}

static PyObject *aggregator_watch(AggregatorObject *self, PyObject *args)
{
    return set_watch(&self->watch, self->aggs, self->n, args);
}

static PyObject *aggregator_take_tasks(AggregatorObject *self, PyObject *args)
{
    return take_tasks(&self->tasks, args);
}

static PyObject *aggregator_take_blocks(AggregatorObject *self, PyObject *unused)
{
    (void)unused;
    return take_blocks(self->aggs, self->n);
}

static PyMethodDef aggregator_methods[] = {
    {"watch", (PyCFunction)aggregator_watch, METH_VARARGS,
     "watch(id, ticks, steps=False): frames of function id (0: none) longer than ticks are kept; with steps, "
     "asyncio tasks' steps too"},
    {"take_tasks", (PyCFunction)aggregator_take_tasks, METH_VARARGS,
     "take_tasks(live=False, limit=all) -> (done, going, over, going_total): asyncio tasks (number, coro, "
     "thread, state, first, since, steps, running, waiting, awaiting)"},
    {"take_blocks", (PyCFunction)aggregator_take_blocks, METH_NOARGS,
     "take_blocks() -> ([(thread, start, ticks, (ids, outermost first))], more_counted) since the last call"},
    {"feed", (PyCFunction)aggregator_feed, METH_VARARGS,
     "feed(thread, records): replay 16-byte event records of one thread"},
    {"close", (PyCFunction)aggregator_close, METH_NOARGS, "close every open stack (end of data)"},
    {"snapshot", (PyCFunction)(void (*)(void))aggregator_snapshot, METH_VARARGS | METH_KEYWORDS,
     "snapshot(now=0, thread=-1, split=False, rate=set_rate's) -> (functions, edges, counters, objects), as "
     "Session.snapshot"},
    {"set_rate", (PyCFunction)aggregator_set_rate, METH_O,
     "set_rate(ns_per_tick): a first rate, before feed (run delays and readings' cost are "
     "compared at it); snapshots form waiting at the rate given to them"},
    {"threads", (PyCFunction)aggregator_threads, METH_NOARGS, "per-thread replay figures"},
    {"fold", (PyCFunction)aggregator_fold, METH_O,
     "fold(thread) -> bool: an idle thread's totals join the folded ones (memory per running thread)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject AggregatorType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ulma._core.Aggregator",
    .tp_basicsize = sizeof(AggregatorObject),
    .tp_dealloc = (destructor)aggregator_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Aggregator(): replays event records fed per thread into the same totals as a session.",
    .tp_methods = aggregator_methods,
    .tp_new = PyType_GenericNew,
};

/* ---- the exporters' replay ------------------------------------------ */

/* Replay(start_ticks, scale, what, hidden=()): replay.h's replay of a
 * trace's records, fed per thread; scale is ns per tick << 48 (runinfo.Run's);
 * what is a sum of REPLAY_* flags. */
typedef struct {
    char *p;
    size_t n, cap;
} text_buf;

/* A take's text buffer keeps its room for the next take up to this size. */
#define TEXT_KEEP_BYTES ((size_t)4 << 20)

typedef struct {
    uint32_t thread;
    int64_t first, last; /* first enter, last leave of the text held; -1: none */
    text_buf text;
} thread_text;

typedef struct {
    PyObject_HEAD
    ulma_replay r;
    int ready;
    int taking;         /* in take_chrome or take_speedscope */
    text_buf chrome;    /* take_chrome's text */
    thread_text *tt;    /* take_speedscope's text per thread, in order of first appearance */
    size_t ntt, tt_cap;
} ReplayObject;

static int replay_init(ReplayObject *self, PyObject *args, PyObject *kw)
{
    static char *names[] = {"start_ticks", "scale", "what", "hidden", NULL};
    unsigned long long start, scale;
    unsigned int what;
    PyObject *hidden = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "KKI|O", names, &start, &scale, &what, &hidden))
        return -1;
    if (self->taking) {
        PyErr_SetString(PyExc_RuntimeError, "a take is running");
        return -1;
    }
    if (self->ready)
        ulma_replay_free(&self->r);
    self->ready = 0;
    for (size_t i = 0; i < self->ntt; i++) /* text of the replay before */
        PyMem_Free(self->tt[i].text.p);
    self->ntt = 0;
    self->chrome.n = 0;
    if (ulma_replay_init(&self->r, what, start, scale) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    self->ready = 1;
    if (!hidden)
        return 0;
    PyObject *it = PyObject_GetIter(hidden), *item;
    if (!it)
        return -1;
    while ((item = PyIter_Next(it))) {
        unsigned long id = PyLong_AsUnsignedLong(item);
        Py_DECREF(item);
        if (PyErr_Occurred())
            break;
        if (id < ULMA_MAX_FUNC_ID && ulma_replay_hide(&self->r, (uint32_t)id) < 0) {
            PyErr_NoMemory();
            break;
        }
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 0;
}

static void replay_dealloc(ReplayObject *self)
{
    if (self->ready)
        ulma_replay_free(&self->r);
    PyMem_Free(self->chrome.p);
    for (size_t i = 0; i < self->ntt; i++)
        PyMem_Free(self->tt[i].text.p);
    PyMem_Free(self->tt);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

struct replay_feed_ctx {
    ulma_replay *r;
    uint32_t thread;
};

static int replay_records(void *ctx, const ulma_event *ev, size_t n)
{
    struct replay_feed_ctx *c = ctx;
    return ulma_replay_feed(c->r, c->thread, ev, n);
}

static PyObject *replay_feed(ReplayObject *self, PyObject *args)
{
    unsigned int thread;
    Py_buffer buf;
    if (!self->ready)
        return PyErr_Format(PyExc_ValueError, "Replay not initialised");
    if (!PyArg_ParseTuple(args, "Iy*", &thread, &buf))
        return NULL;
    PyObject *res = NULL;
    if (buf.len % (Py_ssize_t)sizeof(ulma_event)) {
        PyErr_Format(PyExc_ValueError, "records are %zu bytes; got %zd bytes", sizeof(ulma_event),
                     buf.len);
        goto out;
    }
    struct replay_feed_ctx ctx = {&self->r, thread};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    ULMA_CORE_SCOPE("replay");
    rc = feed_records(&buf, replay_records, &ctx);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        PyErr_NoMemory();
        goto out;
    }
    res = Py_NewRef(Py_None);
out:
    PyBuffer_Release(&buf);
    return res;
}

static PyObject *replay_close(ReplayObject *self, PyObject *unused)
{
    (void)unused;
    if (self->ready)
        ulma_replay_close(&self->r);
    Py_RETURN_NONE;
}

/* The transitions made since the last take, packed (replay.h), as bytes. */
static PyObject *replay_take(ReplayObject *self, PyObject *unused)
{
    (void)unused;
    if (!self->ready)
        return PyBytes_FromStringAndSize(NULL, 0);
    PyObject *b = PyBytes_FromStringAndSize((const char *)self->r.out,
                                            (Py_ssize_t)(self->r.nout * sizeof(ulma_transition)));
    self->r.nout = 0;
    if (self->r.out_cap > 65536) { /* one feed made many: give the room back */
        free(self->r.out);
        self->r.out = NULL;
        self->r.out_cap = 0;
    }
    return b;
}

static PyObject *replay_tree(ReplayObject *self, PyObject *unused)
{
    (void)unused;
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out && self->ready && i < self->r.nnodes; i++) {
        if (append_built(out, "(iLKKKK)", self->r.node_parent[i], (long long)self->r.node_fid[i],
                         self->r.node_self[i], self->r.node_calls[i], self->r.node_objects[i],
                         self->r.node_bytes[i]) < 0)
            Py_CLEAR(out);
    }
    return out;
}

static PyObject *replay_tree_max_depth(ReplayObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    return PyLong_FromUnsignedLong(ULMA_TREE_MAX_DEPTH);
}

static PyObject *replay_cut_frames(ReplayObject *self, PyObject *unused)
{
    (void)unused;
    return PyLong_FromUnsignedLongLong(self->ready ? self->r.cut_frames : 0);
}

static PyObject *replay_pstats(ReplayObject *self, PyObject *unused)
{
    (void)unused;
    PyObject *funcs = PyList_New(0), *edges = PyList_New(0), *res = NULL;
    if (!funcs || !edges)
        goto done;
    for (size_t i = 0; self->ready && i < self->r.nfuncs; i++) {
        const ulma_pstat *p = &self->r.funcs[i];
        if (append_built(funcs, "(IKKKK)", self->r.func_ids[i], p->entries, p->recursive, p->self,
                         p->cum) < 0)
            goto done;
    }
    for (size_t i = 0; self->ready && i < self->r.nedges; i++) {
        const ulma_pstat *p = &self->r.edges[i];
        uint64_t k = self->r.edge_keys[i];
        if (append_built(edges, "(IIKKKK)", (unsigned int)(k >> 32), (unsigned int)(k & 0xffffffffu),
                         p->entries, p->recursive, p->self, p->cum) < 0)
            goto done;
    }
    res = PyTuple_Pack(2, funcs, edges);
done:
    Py_XDECREF(funcs);
    Py_XDECREF(edges);
    return res;
}

static PyObject *replay_threads(ReplayObject *self, PyObject *unused)
{
    (void)unused;
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out && self->ready && i < self->r.nthreads; i++) {
        const ulma_replay_thread *th = self->r.threads[i];
        if (append_built(out, "{s:I,s:K,s:K,s:K,s:n}", "thread", th->thread, "events", th->w.events,
                         "unmatched", th->w.unmatched, "lost_ticks", th->w.lost_ticks, "depth",
                         (Py_ssize_t)th->depth) < 0)
            Py_CLEAR(out);
    }
    return out;
}

/* ---- chrome lines ---- */

/* Room for `more` bytes past b->n; -1 (MemoryError set) if memory ran out. */
static int text_reserve(text_buf *b, size_t more)
{
    if (b->n + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more)
        cap *= 2;
    char *q = PyMem_Realloc(b->p, cap);
    if (!q) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = q;
    b->cap = cap;
    return 0;
}

static int text_put(text_buf *b, const char *s, size_t n)
{
    if (text_reserve(b, n) < 0)
        return -1;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

/* The buffer emptied; its room kept unless it grew past what a take usually needs. */
static void text_clear(text_buf *b)
{
    b->n = 0;
    if (b->cap > TEXT_KEEP_BYTES) {
        PyMem_Free(b->p);
        b->p = NULL;
        b->cap = 0;
    }
}

static const char DIGIT_PAIRS[] = "0001020304050607080910111213141516171819202122232425262728293031323334353637383940"
                                  "4142434445464748495051525354555657585960616263646566676869707172737475767778798081"
                                  "828384858687888990919293949596979899";

/* The decimal digits of v, two at a time in 32-bit arithmetic, ending just before `end`;
 * returns the first. */
static inline char *digits_u32(char *end, uint32_t v)
{
    char *q = end;
    while (v >= 100) {
        uint32_t d = v % 100 * 2;
        v /= 100;
        q -= 2;
        memcpy(q, DIGIT_PAIRS + d, 2);
    }
    if (v >= 10) {
        q -= 2;
        memcpy(q, DIGIT_PAIRS + v * 2, 2);
    } else {
        *--q = (char)('0' + v);
    }
    return q;
}

/* The decimal digits of v ending just before `end`; returns the first.  Eight
 * digits at a time are cut off in 64 bits, the rest written in 32. */
static inline char *digits_u64(char *end, uint64_t v)
{
    char *q = end;
    while (v > UINT32_MAX) {
        uint32_t low = (uint32_t)(v % 100000000u);
        v /= 100000000u;
        for (int i = 0; i < 4; i++) { /* exactly eight digits, leading zeros kept */
            q -= 2;
            memcpy(q, DIGIT_PAIRS + low % 100 * 2, 2);
            low /= 100;
        }
    }
    return digits_u32(q, (uint32_t)v);
}

/* Longest text of put_us / put_int: a sign, 20 digits and a point. */
#define NUMBER_TEXT_MAX 24

/* How many decimal digits v has. */
static inline unsigned decimal_digits(uint64_t v)
{
    static const uint64_t pow10[20] = {
        1u, 10u, 100u, 1000u, 10000u, 100000u, 1000000u, 10000000u, 100000000u, 1000000000u,
        10000000000u, 100000000000u, 1000000000000u, 10000000000000u, 100000000000000u,
        1000000000000000u, 10000000000000000u, 100000000000000000u, 1000000000000000000u,
        10000000000000000000u};
    /* bits * log10(2) rounded down is the count or one short; v | 1 has v's
     * digits (10^k is even), and one for 0 */
    uint64_t w = v | 1;
    unsigned n = (unsigned)(64 - __builtin_clzll(w)) * 1233 >> 12;
    return n + (w >= pow10[n]);
}

/* v in decimal at q; returns the end. */
static inline char *put_u64(char *q, uint64_t v)
{
    q += decimal_digits(v);
    digits_u64(q, v);
    return q;
}

/* ns as microseconds with exactly three decimals ("12.345", "-0.007") at q,
 * which has room for NUMBER_TEXT_MAX bytes; returns the end. */
static inline char *put_us(char *q, int64_t ns)
{
    uint64_t v = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
    uint64_t frac = v % 1000;
    if (ns < 0)
        *q++ = '-';
    q = put_u64(q, v / 1000);
    q[0] = '.';
    q[1] = (char)('0' + frac / 100);
    q[2] = (char)('0' + frac / 10 % 10);
    q[3] = (char)('0' + frac % 10);
    return q + 4;
}

/* v in decimal at q (room for NUMBER_TEXT_MAX bytes); returns the end. */
static inline char *put_int(char *q, int64_t v)
{
    if (v < 0)
        *q++ = '-';
    return put_u64(q, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v);
}

static inline char *put_lit(char *q, const char *s, size_t n)
{
    memcpy(q, s, n);
    return q + n;
}
#define PUT_LIT(q, s) put_lit((q), (s), sizeof(s) - 1)

/* Hands b's text to write(memoryview) and empties b.  The view is released
 * after the call, so a writer that kept it holds nothing that dangles. */
static int text_write(text_buf *b, PyObject *write)
{
    if (!b->n)
        return 0;
    PyObject *view = PyMemoryView_FromMemory(b->p, (Py_ssize_t)b->n, PyBUF_READ);
    if (!view)
        return -1;
    PyObject *r = PyObject_CallOneArg(write, view);
    PyObject *released = PyObject_CallMethod(view, "release", NULL);
    Py_DECREF(view);
    int rc = r && released ? 0 : -1;
    Py_XDECREF(r);
    Py_XDECREF(released);
    if (rc == 0)
        text_clear(b);
    return rc;
}

/* Refuses a take inside a take (a callback calling back): the buffers are shared. */
static int take_begin(ReplayObject *self)
{
    if (self->taking) {
        PyErr_SetString(PyExc_RuntimeError, "a take is already running");
        return -1;
    }
    self->taking = 1;
    return 0;
}

/* take_chrome(prefixes, make_prefix, gap_line, write): the transitions made
 * since the last take, as chrome "X" events, handed to write() as one
 * memoryview (valid during the call only): one per frame that ended,
 * `prefix + ts + ',"dur":' + dur + '}'`, prefixes[(thread << 32) | fid]
 * (bytes) made by make_prefix(thread, fid, 0) when missing; one per value a
 * native counter was set to, `prefix + ts + ',"args":{"value":' + value +
 * '}}'`, prefixes[1 << 63 | (thread << 32) | fid] made by make_prefix(thread,
 * fid, 1); a gap's text comes from gap_line(thread, start, end) (str). */
static PyObject *replay_take_chrome(ReplayObject *self, PyObject *args)
{
    PyObject *prefixes, *make_prefix, *gap_line, *write;
    if (!PyArg_ParseTuple(args, "O!OOO", &PyDict_Type, &prefixes, &make_prefix, &gap_line, &write))
        return NULL;
    if (take_begin(self) < 0)
        return NULL;
    text_buf *b = &self->chrome;
    PyObject *res = NULL;
    /* prefixes by key, saving a dict lookup per frame (strong references) */
    enum { CACHE = 256 };
    struct { uint64_t key; PyObject *prefix; } cache[CACHE];
    memset(cache, 0, sizeof cache);
    b->n = 0;
    for (size_t i = 0; self->ready && i < self->r.nout; i++) {
        const ulma_transition *x = &self->r.out[i];
        if (x->op == ULMA_TR_GAP) {
            PyObject *line = PyObject_CallFunction(gap_line, "ILL", x->thread, (long long)x->t,
                                                   (long long)x->start);
            Py_ssize_t n;
            const char *s = line ? PyUnicode_AsUTF8AndSize(line, &n) : NULL;
            int rc = s ? text_put(b, s, (size_t)n) : -1;
            Py_XDECREF(line);
            if (rc < 0)
                goto done;
            continue;
        }
        if (x->op != ULMA_TR_LEAVE && x->op != ULMA_TR_COUNTER)
            continue;
        int counter = x->op == ULMA_TR_COUNTER;
        uint64_t k = (uint64_t)counter << 63 | (uint64_t)x->thread << 32 | x->fid;
        size_t slot = (size_t)((k ^ k >> 29) * 0x9E3779B97F4A7C15u >> 56) % CACHE;
        PyObject *prefix = cache[slot].prefix && cache[slot].key == k ? cache[slot].prefix : NULL;
        if (!prefix) {
            PyObject *key = PyLong_FromUnsignedLongLong(k);
            if (!key)
                goto done;
            prefix = PyDict_GetItemWithError(prefixes, key); /* borrowed */
            if (!prefix && !PyErr_Occurred()) {
                prefix = PyObject_CallFunction(make_prefix, "IIi", x->thread, x->fid, counter);
                if (prefix && PyDict_SetItem(prefixes, key, prefix) < 0)
                    Py_CLEAR(prefix);
                Py_XDECREF(prefix); /* the dict holds it */
            }
            Py_DECREF(key);
            if (!prefix)
                goto done;
            if (!PyBytes_Check(prefix)) {
                PyErr_SetString(PyExc_TypeError, "a prefix must be bytes");
                goto done;
            }
            Py_INCREF(prefix);
            Py_XSETREF(cache[slot].prefix, prefix);
            cache[slot].key = k;
        }
        size_t plen = (size_t)PyBytes_GET_SIZE(prefix);
        if (text_reserve(b, plen + 2 * NUMBER_TEXT_MAX + 16) < 0)
            goto done;
        char *q = put_lit(b->p + b->n, PyBytes_AS_STRING(prefix), plen);
        if (counter) {
            q = put_us(q, x->t);
            q = PUT_LIT(q, ",\"args\":{\"value\":");
            q = put_int(q, x->start);
            *q++ = '}';
        } else {
            q = put_us(q, x->start);
            q = PUT_LIT(q, ",\"dur\":");
            q = put_us(q, x->t - x->start);
        }
        *q++ = '}';
        b->n = (size_t)(q - b->p);
    }
    if (text_write(b, write) < 0)
        goto done;
    if (self->ready)
        self->r.nout = 0;
    res = Py_NewRef(Py_None);
done:
    for (size_t i = 0; i < CACHE; i++)
        Py_XDECREF(cache[i].prefix);
    if (!res)
        text_clear(b);
    self->taking = 0;
    return res;
}

/* ---- speedscope events ---- */

/* The thread's text in self->threads_text, made if new; NULL if memory ran out. */
static thread_text *thread_text_of(ReplayObject *self, uint32_t thread, size_t *hint)
{
    size_t i = *hint;
    if (i < self->ntt && self->tt[i].thread == thread)
        return &self->tt[i];
    for (i = 0; i < self->ntt && self->tt[i].thread != thread; i++)
        ;
    if (i == self->ntt) {
        if (self->ntt == self->tt_cap) {
            size_t c = self->tt_cap ? self->tt_cap * 2 : 8;
            thread_text *q = PyMem_Realloc(self->tt, c * sizeof *q);
            if (!q) {
                PyErr_NoMemory();
                return NULL;
            }
            self->tt = q;
            self->tt_cap = c;
        }
        self->tt[self->ntt++] = (thread_text){.thread = thread, .first = -1, .last = -1};
    }
    *hint = i;
    return &self->tt[i];
}

/* A speedscope event, `,\n{"type":"O","frame":N,"at":T}` ("C" when it closes),
 * at q, which has room for SPEEDSCOPE_TEXT_MAX bytes; returns the end. */
#define SPEEDSCOPE_TEXT_MAX (2 * NUMBER_TEXT_MAX + 32)
static inline char *put_speedscope(char *q, int closes, int64_t frame, int64_t at)
{
    q = closes ? PUT_LIT(q, ",\n{\"type\":\"C\",\"frame\":") : PUT_LIT(q, ",\n{\"type\":\"O\",\"frame\":");
    q = put_int(q, frame);
    q = PUT_LIT(q, ",\"at\":");
    q = put_int(q, at);
    *q++ = '}';
    return q;
}

/* An event kept packed (take_speedscope's `direct`) until speedscope_text formats it:
 * 12 bytes, the time (i64) then frame << 1 | closes (u32), native byte order: they
 * go to a temporary file and come back to this process only.  Frame indexes stay
 * under 2^31. */
#define SPEEDSCOPE_PACKED_BYTES 12

/* take_speedscope(frame_index, flush_bytes, write, direct=None): the transitions made
 * since the last take as speedscope "O"/"C" events, each as put_speedscope
 * writes it, kept per thread until a thread has flush_bytes of them (0: all
 * are handed out now); frame_index (id -> index) gets new ids in order of
 * first entry.  A thread's events not handed out before go to
 * write(thread, data, first, last), data a memoryview valid during the call
 * only, first the time of its first enter among them and last of its last
 * leave (-1 if none), threads in order of first appearance.  data is text
 * when direct is None; else only thread `direct`'s is (none's when it is
 * negative), and every other thread's events come packed
 * (SPEEDSCOPE_PACKED_BYTES each), for speedscope_text to format once they are
 * read back: a third of the text's bytes to keep aside. */
static PyObject *replay_take_speedscope(ReplayObject *self, PyObject *args)
{
    PyObject *frame_index, *write, *direct_obj = Py_None;
    Py_ssize_t flush_bytes;
    if (!PyArg_ParseTuple(args, "O!nO|O", &PyDict_Type, &frame_index, &flush_bytes, &write, &direct_obj))
        return NULL;
    int all_text = direct_obj == Py_None;
    long long direct = all_text ? -1 : PyLong_AsLongLong(direct_obj); /* -1 (any < 0): none */
    if (direct == -1 && PyErr_Occurred())
        return NULL;
    if (take_begin(self) < 0)
        return NULL;
    size_t hit = 0;
    PyObject *res = NULL;
    /* frame indexes by id (an id's index never changes once given), saving a dict lookup */
    enum { CACHE = 256 };
    struct { uint32_t fid; long long frame; } cache[CACHE];
    for (size_t i = 0; i < CACHE; i++)
        cache[i].frame = -1;
    for (size_t i = 0; self->ready && i < self->r.nout; i++) {
        const ulma_transition *x = &self->r.out[i];
        if (x->op != ULMA_TR_ENTER && x->op != ULMA_TR_LEAVE)
            continue;
        thread_text *th = thread_text_of(self, x->thread, &hit);
        if (!th)
            goto done;
        size_t slot = (size_t)(x->fid * 0x9E3779B1u >> 24) % CACHE;
        long long frame = cache[slot].frame >= 0 && cache[slot].fid == x->fid ? cache[slot].frame : -1;
        if (frame < 0) {
            PyObject *key = PyLong_FromUnsignedLong(x->fid);
            if (!key)
                goto done;
            PyObject *index = PyDict_GetItemWithError(frame_index, key); /* borrowed */
            if (!index && !PyErr_Occurred()) {
                index = PyLong_FromSsize_t(PyDict_GET_SIZE(frame_index));
                if (index && PyDict_SetItem(frame_index, key, index) < 0)
                    Py_CLEAR(index);
                Py_XDECREF(index); /* the dict holds it */
            }
            Py_DECREF(key);
            frame = index ? PyLong_AsLongLong(index) : -1;
            if (frame == -1 && PyErr_Occurred())
                goto done;
            if (frame >= 0) {
                cache[slot].fid = x->fid;
                cache[slot].frame = frame;
            }
        }
        if (x->op == ULMA_TR_ENTER) {
            if (th->first < 0)
                th->first = x->t;
        } else {
            th->last = x->t;
        }
        if (text_reserve(&th->text, SPEEDSCOPE_TEXT_MAX) < 0)
            goto done;
        char *q = th->text.p + th->text.n;
        if (all_text || (long long)x->thread == direct) {
            q = put_speedscope(q, x->op == ULMA_TR_LEAVE, frame, x->t);
        } else {
            if (frame > INT32_MAX) {
                PyErr_SetString(PyExc_OverflowError, "more than 2**31 frames");
                goto done;
            }
            uint32_t word = (uint32_t)frame << 1 | (x->op == ULMA_TR_LEAVE);
            int64_t t = x->t;
            memcpy(q, &t, 8);
            memcpy(q + 8, &word, 4);
            q += SPEEDSCOPE_PACKED_BYTES;
        }
        th->text.n = (size_t)(q - th->text.p);
    }
    if (self->ready)
        self->r.nout = 0;
    for (size_t i = 0; i < self->ntt; i++) {
        thread_text *th = &self->tt[i];
        if (!th->text.n || (flush_bytes && th->text.n < (size_t)flush_bytes))
            continue;
        PyObject *view = PyMemoryView_FromMemory(th->text.p, (Py_ssize_t)th->text.n, PyBUF_READ);
        if (!view)
            goto done;
        PyObject *r = PyObject_CallFunction(write, "IOLL", th->thread, view, (long long)th->first,
                                            (long long)th->last);
        PyObject *released = PyObject_CallMethod(view, "release", NULL);
        Py_DECREF(view);
        int ok = r && released;
        Py_XDECREF(r);
        Py_XDECREF(released);
        if (!ok)
            goto done;
        text_clear(&th->text);
        th->first = th->last = -1;
    }
    res = Py_NewRef(Py_None);
done:
    self->taking = 0;
    return res;
}

static PyMethodDef replay_methods[] = {
    {"feed", (PyCFunction)replay_feed, METH_VARARGS, "feed(thread, records): replay one thread's 16-byte records"},
    {"close", (PyCFunction)replay_close, METH_NOARGS, "end of the stream: open frames end at their thread's last tick"},
    {"take", (PyCFunction)replay_take, METH_NOARGS, "the transitions made since the last take, packed (40 bytes each)"},
    {"take_speedscope", (PyCFunction)replay_take_speedscope, METH_VARARGS,
     "take_speedscope(frame_index, flush_bytes, write, direct=None): speedscope events, per thread, to "
     "write(thread, data, first, last); with direct, other threads' packed for speedscope_text"},
    {"take_chrome", (PyCFunction)replay_take_chrome, METH_VARARGS,
     "take_chrome(prefixes, make_prefix, gap_line, write): the frames that ended, as chrome events"},
    {"tree", (PyCFunction)replay_tree, METH_NOARGS, "the stack tree: [(parent, fid, self_ns, entries, objects made)] by node"},
    {"pstats", (PyCFunction)replay_pstats, METH_NOARGS,
     "([(fid, entries, recursive, self_ns, cum_ns)], [(caller, callee, entries, recursive, self_ns, cum_ns)])"},
    {"threads", (PyCFunction)replay_threads, METH_NOARGS, "per-thread figures, in order of first feed"},
    {"cut_frames", (PyCFunction)replay_cut_frames, METH_NOARGS,
     "frames deeper than the tree keeps (their time went to the frame at the limit)"},
    {"tree_max_depth", (PyCFunction)replay_tree_max_depth, METH_NOARGS, "the depth the tree keeps"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReplayType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ulma._core.Replay",
    .tp_basicsize = sizeof(ReplayObject),
    .tp_dealloc = (destructor)replay_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Replay(start_ticks, scale, what, hidden=()): the exporters' replay (replay.h).",
    .tp_methods = replay_methods,
    .tp_init = (initproc)replay_init,
    .tp_new = PyType_GenericNew,
};

/* ---- benchmark of the monitor's replay ------------------------------ */

/* Fills ring 0 of a private session with synthetic calls and returns and
 * times the real drain path over it; returns events per second.  Pattern
 * "fib": one recursive function (every call has the same caller, like fib);
 * "random": a random walk over 30 functions, each called from any other
 * (the worst case for the edge table). */
static PyObject *py_bench_drain(PyObject *self, PyObject *args, PyObject *kw)
{
    (void)self;
    static char *names[] = {"events", "pattern", NULL};
    long long want;
    const char *pattern = "random";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "L|s", names, &want, &pattern))
        return NULL;
    if (want <= 0)
        return PyErr_Format(PyExc_ValueError, "need a positive count");
    uint32_t nfuncs = strcmp(pattern, "fib") == 0 ? 1 : strcmp(pattern, "random") == 0 ? 30 : 0;
    if (!nfuncs)
        return PyErr_Format(PyExc_ValueError, "pattern is 'fib' or 'random'");
    int fd = memfd_create("ulma-bench", MFD_CLOEXEC);
    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    ulma_monitor m;
    int rc = ulma_monitor_create(&m, fd, 4u << 20, 1, 1u << 16, NULL);
    close(fd);
    if (rc < 0) {
        errno = -rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    ulma_session_header *h = m.h;
    ulma_ring_header *r = ulma_monitor_ring(&m, 0);
    if (!r) {
        ulma_monitor_free(&m);
        return PyErr_NoMemory();
    }
    ulma_event *ev = ulma_ring_events(r);
    uint64_t cap = m.ring_events, mask = cap - 1;
    atomic_store(&r->state, ULMA_RING_ACTIVE);
    atomic_store(&h->rings_used, 1);
    /* depth wanders between 1 and 25 */
    uint64_t pos = 0, tick = 1000, done = 0, elapsed = 0;
    uint32_t depth = 0, stack[64];
    uint64_t rng = 88172645463325252ULL;
    Py_BEGIN_ALLOW_THREADS
    while (done < (uint64_t)want) {
        uint64_t chunk = cap / 2;
        for (uint64_t i = 0; i < chunk; i++, pos++) {
            ulma_event *e = &ev[pos & mask];
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
            int call = depth == 0 || (depth < 25 && (rng & 1));
            e->ticks = (tick += 37);
            if (call) {
                stack[depth] = 1 + (uint32_t)((rng >> 8) % nfuncs);
                e->id = stack[depth++];
                e->kind = ULMA_CALL;
            } else {
                e->id = stack[--depth];
                e->kind = ULMA_RETURN;
            }
            e->flags = 0;
            e->aux = 0;
        }
        atomic_store_explicit(&r->published, pos, memory_order_release);
        uint64_t t0 = ulma_mono_ns();
        int64_t n = ulma_monitor_drain(&m, 0, NULL, NULL);
        elapsed += ulma_mono_ns() - t0;
        if (n <= 0)
            break;
        done += (uint64_t)n;
    }
    Py_END_ALLOW_THREADS
    ulma_monitor_free(&m);
    return PyFloat_FromDouble(elapsed ? (double)done * 1e9 / (double)elapsed : 0.0);
}

/* ---- clock calibration ---------------------------------------------- */

/* The calibration a session starts with, on its own, so a test can run it
 * under load many times. */
static PyObject *py_calibrate_clock(PyObject *self, PyObject *args, PyObject *kw)
{
    (void)self;
    static char *names[] = {"window_ns", NULL};
    unsigned long long window = 2000000u;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|K", names, &window))
        return NULL;
    if (window > 10000000000ull)
        return PyErr_Format(PyExc_ValueError, "window_ns is at most 10 s");
    double r;
    Py_BEGIN_ALLOW_THREADS
    r = ulma_clock_calibrate(ulma_clock_choose(), window, NULL, NULL);
    Py_END_ALLOW_THREADS
    return PyFloat_FromDouble(r);
}

static PyObject *py_clock_pair(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    ulma_clock_pair p = ulma_clock_pair_read(ulma_clock_choose());
    return Py_BuildValue("(KKK)", p.ticks, p.mono_ns, p.width_ns);
}

/* ---- text export lines ---- */

/* Decimal digits of v (any unsigned 128-bit value) into b. */
static int text_u128(text_buf *b, unsigned __int128 v)
{
    char tmp[48];
    char *e = tmp + sizeof tmp, *q = e;
    while (v > UINT64_MAX) {
        *--q = (char)('0' + (int)(v % 10));
        v /= 10;
    }
    q = digits_u64(q, (uint64_t)v);
    return text_put(b, q, (size_t)(e - q));
}

/* text_lines(records, last, start_ticks, scale_hi, scale_lo, tails, make_tail) -> (bytes, last):
 * one thread's 16-byte records as `--format text` lines, `ns + tail`, where ns
 * is ((tick clamped never to go backwards) - start_ticks) * scale >> 48, exactly,
 * scale = scale_hi << 64 | scale_lo (scale_hi < 2^40: ns_per_tick may pass 2^16)
 * (the first tick of a thread, `last` None, is also clamped to start_ticks), and
 * tail is tails[record's second word: id | kind << 32 | flags << 40 | aux << 48]
 * (bytes), made by make_tail(word) when missing (which may store it in tails);
 * an empty tail leaves the record out.  Returns the text and the last tick. */
static PyObject *text_lines(PyObject *mod, PyObject *args);

/* text_lines(records, last, t0, scale_hi, scale_lo, tails, make_tail): see text_lines below */
static PyObject *py_text_lines(PyObject *mod, PyObject *args)
{
    ULMA_CORE_SCOPE("text lines");
    return text_lines(mod, args);
}

static PyObject *text_lines(PyObject *mod, PyObject *args)
{
    (void)mod;
    Py_buffer view;
    PyObject *last_obj, *tails, *make_tail;
    unsigned long long t0, scale_hi, scale_lo;
    if (!PyArg_ParseTuple(args, "y*OKKKO!O", &view, &last_obj, &t0, &scale_hi, &scale_lo,
                          &PyDict_Type, &tails, &make_tail))
        return NULL;
    text_buf b = {0};
    PyObject *res = NULL;
    size_t n = (size_t)view.len / 16;
    const unsigned char *p = view.buf;
    uint64_t prev = 0;
    /* tails found in the dict, by word: saves a lookup per record (strong references) */
    enum { CACHE = 256 };
    struct { uint64_t word; PyObject *tail; } cache[CACHE];
    memset(cache, 0, sizeof cache);
    if ((size_t)view.len % 16) {
        PyErr_SetString(PyExc_ValueError, "records must be whole 16-byte records");
        goto done;
    }
    if (scale_hi >> 40) {
        PyErr_SetString(PyExc_OverflowError, "scale out of range");
        goto done;
    }
    if (last_obj == Py_None) {
        if (n) {
            memcpy(&prev, p, 8);
            prev = le64toh(prev);
            if (prev < t0)
                prev = t0;
        }
    } else {
        prev = PyLong_AsUnsignedLongLong(last_obj);
        if (prev == (uint64_t)-1 && PyErr_Occurred())
            goto done;
    }
    for (size_t i = 0; i < n; i++, p += 16) {
        uint64_t tick, word;
        memcpy(&tick, p, 8);
        memcpy(&word, p + 8, 8);
        tick = le64toh(tick);
        word = le64toh(word);
        if (tick > prev)
            prev = tick;
        size_t slot = (size_t)((word ^ word >> 29) * 0x9E3779B97F4A7C15u >> 56) % CACHE;
        PyObject *tail = cache[slot].tail && cache[slot].word == word ? cache[slot].tail : NULL;
        PyObject *made = NULL;
        if (!tail) {
            PyObject *key = PyLong_FromUnsignedLongLong(word);
            if (!key)
                goto done;
            tail = PyDict_GetItemWithError(tails, key); /* borrowed */
            if (tail) {
                Py_INCREF(tail);
                Py_XSETREF(cache[slot].tail, tail);
                cache[slot].word = word;
            } else if (!PyErr_Occurred()) {
                tail = made = PyObject_CallOneArg(make_tail, key);
            }
            Py_DECREF(key);
            if (!tail)
                goto done;
        }
        int rc = 0;
        if (!PyBytes_Check(tail)) {
            PyErr_SetString(PyExc_TypeError, "a tail must be bytes");
            rc = -1;
        } else if (PyBytes_GET_SIZE(tail)) {
            /* (d * (hi << 64 | lo)) >> 48 = (d * hi) << 16 + (d * lo) >> 48, exactly */
            uint64_t d = prev - t0;
            unsigned __int128 ns = ((unsigned __int128)d * scale_hi << 16) +
                                   ((unsigned __int128)d * scale_lo >> 48);
            rc = text_u128(&b, ns) < 0 ||
                 text_put(&b, PyBytes_AS_STRING(tail), (size_t)PyBytes_GET_SIZE(tail)) < 0 ? -1 : 0;
        }
        Py_XDECREF(made);
        if (rc < 0)
            goto done;
    }
    res = Py_BuildValue("(y#K)", b.p ? b.p : "", (Py_ssize_t)b.n, (unsigned long long)prev);
done:
    for (size_t i = 0; i < CACHE; i++)
        Py_XDECREF(cache[i].tail);
    PyMem_Free(b.p);
    PyBuffer_Release(&view);
    return res;
}

/* ---- module --------------------------------------------------------- */

/* speedscope_text(packed, out) -> int: events packed by take_speedscope (its
 * `direct`) as the text it writes for a thread read directly, into the
 * bytearray `out` (grown if it is short: a reader that passes the same one
 * each time reuses its memory); returns the length of the text. */
static PyObject *py_speedscope_text(PyObject *mod, PyObject *args)
{
    (void)mod;
    Py_buffer view;
    PyObject *out;
    if (!PyArg_ParseTuple(args, "y*O!", &view, &PyByteArray_Type, &out))
        return NULL;
    PyObject *res = NULL;
    size_t n = (size_t)view.len / SPEEDSCOPE_PACKED_BYTES;
    if ((size_t)view.len % SPEEDSCOPE_PACKED_BYTES) {
        PyErr_Format(PyExc_ValueError, "packed events are %d bytes; got %zd bytes", SPEEDSCOPE_PACKED_BYTES,
                     view.len);
        goto done;
    }
    if (n > (size_t)PY_SSIZE_T_MAX / SPEEDSCOPE_TEXT_MAX) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t room = (Py_ssize_t)(n * SPEEDSCOPE_TEXT_MAX);
    if (PyByteArray_GET_SIZE(out) < room && PyByteArray_Resize(out, room) < 0)
        goto done;
    char *text = PyByteArray_AS_STRING(out), *q = text;
    const char *p = view.buf;
    for (size_t i = 0; i < n; i++, p += SPEEDSCOPE_PACKED_BYTES) {
        int64_t t;
        uint32_t word;
        memcpy(&t, p, 8);
        memcpy(&word, p + 8, 4);
        q = put_speedscope(q, (int)(word & 1), word >> 1, t);
    }
    res = PyLong_FromSsize_t(q - text);
done:
    PyBuffer_Release(&view);
    return res;
}

/* reserve(fd, length) -> bool: the file's blocks up to `length` allocated now
 * (fallocate(2), mode 0: the file grows to it, reading zeros past what was
 * written), so the writes that fill them skip the filesystem's allocation
 * step.  False, and nothing changed, where the filesystem cannot (no
 * emulation: a pipe, a device, NFS) or the disk has no room. */
static PyObject *py_reserve(PyObject *mod, PyObject *args)
{
    (void)mod;
    int fd;
    long long length;
    if (!PyArg_ParseTuple(args, "iL", &fd, &length))
        return NULL;
    int rc = -1;
    if (length > 0) {
        Py_BEGIN_ALLOW_THREADS
        rc = fallocate(fd, 0, 0, (off_t)length);
        Py_END_ALLOW_THREADS
    }
    return PyBool_FromLong(rc == 0);
}

static PyMethodDef module_methods[] = {
    {"reserve", py_reserve, METH_VARARGS,
     "reserve(fd, length) -> bool: the file's blocks up to length allocated now (fallocate, the file "
     "grows to it); False where that cannot be done"},
    {"speedscope_text", py_speedscope_text, METH_VARARGS,
     "speedscope_text(packed, out) -> int: events take_speedscope packed, as its text, into the "
     "bytearray out (grown if short); the text's length"},
    {"text_lines", py_text_lines, METH_VARARGS,
     "text_lines(records, last, start_ticks, scale, tails, make_tail) -> (bytes, last): one "
     "thread's records as `--format text` lines (see module.c)"},
    {"agent_start", (PyCFunction)(void (*)(void))py_agent_start, METH_VARARGS | METH_KEYWORDS,
     "agent_start(fd, engine, empty=0, hidden_prefix=None, boundary=None, recursion_adjust=0, "
     "native_calls=False, cpu_interval_us=100, exclude=None): hook this "
     "interpreter and write events into the session in memfd `fd`; restated stacks stop at the "
     "executing frame `boundary` (default: the caller's)"},
    {"agent_stop", (PyCFunction)(void (*)(void))py_agent_stop, METH_VARARGS | METH_KEYWORDS,
     "agent_stop(flush=True): unhook, publish every ring (unless flush=False), unmap"},
    {"agent_fork_prepare", py_agent_fork_prepare, METH_NOARGS,
     "agent_fork_prepare(): before the program's fork(), the agent's own thread stopped"},
    {"agent_fork_parent", py_agent_fork_parent, METH_NOARGS,
     "agent_fork_parent(): after it, in the parent: that thread started again"},
    {"agent_ignore_thread", py_agent_ignore_thread, METH_NOARGS,
     "never trace the calling thread (ulma's own threads)"},
    {"agent_thread_name", py_agent_thread_name, METH_VARARGS,
     "agent_thread_name(native_id, name) -> written: names an OS thread in the session (False: no "
     "session, or thread names took their share of the symbol table)"},
    {"thread_starter", ulma_thread_starter, METH_O,
     "thread_starter(start) -> a callable like _thread's `start` that names, in the session, each "
     "thread it starts for a threading.Thread"},
    {"agent_id_limit", py_agent_id_limit, METH_O,
     "agent_id_limit(n): sessions started after this use ids below n (at most 2**24); the "
     "functions seen once they are taken share the last one, counted as ids_overflow"},
    {"agent_scratch", py_agent_scratch, METH_O,
     "agent_scratch(on): this thread's events go to a private scratch ring (calibration)"},
    {"agent_pause", py_agent_pause, METH_O,
     "agent_pause(paused): hooks off or on again, the session kept (calibration before a run)"},
    {"agent_set_probe_cost", py_agent_set_probe_cost, METH_O,
     "agent_set_probe_cost(ns): publish the calibrated cost of one probe to the monitor"},
    {"compile_program", py_compile_program, METH_VARARGS,
     "compile_program(source: bytes, filename) -> code: compile(source, filename, 'exec', "
     "dont_inherit=True) without building the ast types (the bootstrap's, see module.c)"},
    {"calibrate_clock", (PyCFunction)(void (*)(void))py_calibrate_clock, METH_VARARGS | METH_KEYWORDS,
     "calibrate_clock(window_ns=2000000) -> ns per tick of this machine's tick clock, as a "
     "session measures it at creation"},
    {"clock_pair", py_clock_pair, METH_NOARGS,
     "clock_pair() -> (ticks, monotonic ns, uncertainty ns): a tight pair of readings"},
    {"bench_drain", (PyCFunction)(void (*)(void))py_bench_drain, METH_VARARGS | METH_KEYWORDS,
     "bench_drain(events, pattern='random'|'fib') -> events/s of the monitor's drain and replay"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "ulma._core", "ulma's C core: agent hooks, rings, monitor replay.", -1,
    module_methods, NULL, NULL, NULL, NULL,
};

/* PyModule_Add exists only from 3.13: add and drop our reference. */
static int add_owned(PyObject *mod, const char *name, PyObject *obj)
{
    if (!obj)
        return -1;
    int rc = PyModule_AddObjectRef(mod, name, obj);
    Py_DECREF(obj);
    return rc;
}

static int set_int(PyObject *d, const char *name, long v)
{
    PyObject *o = PyLong_FromLong(v);
    int rc = o ? PyDict_SetItemString(d, name, o) : -1;
    Py_XDECREF(o);
    return rc;
}

static int add_layout(PyObject *mod)
{
    PyObject *d = Py_BuildValue(
        "{s:K,s:I,s:I,s:I,s:I,s:I,s:I,"
        "s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,"
        "s:I,s:I,s:I,s:I,s:I,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i}",
        "SESSION_MAGIC", ULMA_SESSION_MAGIC, "FORMAT_VERSION", ULMA_FORMAT_VERSION,
        "EVENT_BYTES", (unsigned)sizeof(ulma_event), "SYMBOL_BYTES", (unsigned)sizeof(ulma_symbol),
        "HEADER_BYTES", ULMA_HEADER_BYTES, "RING_HEADER_BYTES", ULMA_RING_HEADER_BYTES,
        "PUBLISH_EVERY", ULMA_PUBLISH_EVERY, "CALL", ULMA_CALL, "RETURN", ULMA_RETURN, "UNWIND",
        ULMA_UNWIND, "YIELD", ULMA_YIELD, "RESUME", ULMA_RESUME, "THROW", ULMA_THROW, "C_CALL",
        ULMA_C_CALL, "C_RETURN", ULMA_C_RETURN, "SCOPE_BEGIN", ULMA_SCOPE_BEGIN, "SCOPE_END",
        ULMA_SCOPE_END, "OBJ_NEW", ULMA_OBJ_NEW, "OBJ_FREE", ULMA_OBJ_FREE, "CPU_SAMPLE",
        ULMA_CPU_SAMPLE, "SYNC", ULMA_SYNC, "MARK", ULMA_MARK, "SYNC_BEGIN", ULMA_SYNC_BEGIN,
        "SYNC_FRAME", ULMA_SYNC_FRAME, "SYNC_TRUNCATED", ULMA_SYNC_TRUNCATED, "SYNC_AFTER_DROP",
        ULMA_SYNC_AFTER_DROP, "SYMF_HIDDEN", ULMA_SYMF_HIDDEN, "SYM_PYFUNC", ULMA_SYM_PYFUNC,
        "SYM_CFUNC", ULMA_SYM_CFUNC, "SYMF_UNMEASURED", ULMA_SYMF_UNMEASURED, "EVF_UNMEASURED",
        ULMA_EVF_UNMEASURED, "EVF_DISPATCH", ULMA_EVF_DISPATCH, "CPU_RUN_DELAY", ULMA_CPU_RUN_DELAY,
        "CPU_NO_BLOCK", ULMA_CPU_NO_BLOCK,
        "CPU_VALUE_BITS", ULMA_CPU_VALUE_BITS);
    /* the control channel and what came with it */
    if (d && (set_int(d, "SYNC_RESTATE", ULMA_SYNC_RESTATE) < 0 || set_int(d, "SYMF_OFF", ULMA_SYMF_OFF) < 0 ||
              set_int(d, "EVF_AWAIT", ULMA_EVF_AWAIT) < 0 ||
              set_int(d, "CTL_OFF", ULMA_CTL_OFF) < 0 || set_int(d, "CTL_ON", ULMA_CTL_ON) < 0 ||
              set_int(d, "CTL_INTERVAL", ULMA_CTL_INTERVAL) < 0 ||
              set_int(d, "CONTROL_VERSION", ULMA_CONTROL_VERSION) < 0 ||
              set_int(d, "CONTROL_SLOTS", ULMA_CONTROL_SLOTS) < 0 ||
              set_int(d, "CONTROL_BYTES", (long)sizeof(ulma_control)) < 0 ||
              set_int(d, "CONTROL_CMD_BYTES", (long)sizeof(ulma_control_cmd)) < 0 ||
              set_int(d, "CONTROL_POLL_US", ULMA_CONTROL_POLL_US) < 0)) {
        Py_DECREF(d);
        d = NULL;
    }
    /* asyncio tasks */
    if (d && (set_int(d, "TASK", ULMA_TASK) < 0 || set_int(d, "TASKF_NEW", ULMA_TASKF_NEW) < 0 ||
              set_int(d, "TASKF_END", ULMA_TASKF_END) < 0 ||
              set_int(d, "SYM_TASK", ULMA_SYM_TASK) < 0 ||
              set_int(d, "TASK_SYMBOL_BASE", (long)ULMA_TASK_SYMBOL_BASE) < 0)) {
        Py_DECREF(d);
        d = NULL;
    }
    /* object lifecycle */
    if (d && (set_int(d, "SYM_TYPE", ULMA_SYM_TYPE) < 0 || set_int(d, "OBJF_UNKNOWN", ULMA_OBJF_UNKNOWN) < 0 ||
              set_int(d, "TYPE_SYMBOL_BASE", (long)ULMA_TYPE_SYMBOL_BASE) < 0 ||
              set_int(d, "MAX_TYPES", (long)ULMA_MAX_TYPES) < 0 ||
              set_int(d, "OBJECTS_REFTRACER", ULMA_OBJECTS_REFTRACER) < 0 ||
              set_int(d, "OBJECTS_REFTRACER_LATE", ULMA_OBJECTS_REFTRACER_LATE) < 0 ||
              set_int(d, "OBJF_LATE", ULMA_OBJF_LATE) < 0 ||
              set_int(d, "OBJECTS_ALLOCATOR", ULMA_OBJECTS_ALLOCATOR) < 0 ||
              set_int(d, "OBJF_SIZE_SHIFT", ULMA_OBJF_SIZE_SHIFT) < 0 ||
              set_int(d, "OBJF_SIZE_MASK", ULMA_OBJF_SIZE_MASK) < 0 ||
              set_int(d, "OBJ_NO_CREATOR", (long)ULMA_OBJ_NO_CREATOR) < 0 ||
              set_int(d, "OBJ_MAX_ROWS", (long)ULMA_OBJ_MAX_ROWS) < 0 ||
              set_int(d, "OBJ_PAST_ROWS", (long)ULMA_OBJ_PAST_ROWS) < 0 ||
              set_int(d, "SYM_THREAD", ULMA_SYM_THREAD) < 0 ||
              set_int(d, "THREAD_SYMBOL_BASE", (long)ULMA_THREAD_SYMBOL_BASE) < 0)) {
        Py_DECREF(d);
        d = NULL;
    }
    /* native scopes */
    if (d && (set_int(d, "COUNTER", ULMA_COUNTER) < 0 || set_int(d, "COUNTER_VALUE", ULMA_COUNTER_VALUE) < 0 ||
              set_int(d, "SYM_SCOPE", ULMA_SYM_SCOPE) < 0 || set_int(d, "SYM_MARK", ULMA_SYM_MARK) < 0 ||
              set_int(d, "SYM_COUNTER", ULMA_SYM_COUNTER) < 0 || set_int(d, "KIND_MAX", ULMA_KIND_MAX) < 0)) {
        Py_DECREF(d);
        d = NULL;
    }
    /* single-step */
    if (d && (set_int(d, "CTL_STEP_STOP", ULMA_CTL_STEP_STOP) < 0 ||
              set_int(d, "CTL_STEP_NEXT", ULMA_CTL_STEP_NEXT) < 0 ||
              set_int(d, "CTL_STEP_OVER", ULMA_CTL_STEP_OVER) < 0 ||
              set_int(d, "CTL_STEP_CONTINUE", ULMA_CTL_STEP_CONTINUE) < 0 ||
              set_int(d, "STEP_IDLE", ULMA_STEP_IDLE) < 0 || set_int(d, "STEP_ARMED", ULMA_STEP_ARMED) < 0 ||
              set_int(d, "STEP_STOPPED", ULMA_STEP_STOPPED) < 0 ||
              set_int(d, "STEP_RUNNING", ULMA_STEP_RUNNING) < 0 ||
              set_int(d, "STEP_SIGNALED", ULMA_STEP_SIGNALED) < 0)) {
        Py_DECREF(d);
        d = NULL;
    }
    return add_owned(mod, "LAYOUT", d);
}

/* The bounds of what a session and the agent may be asked for (records.h,
 * symbols.h): ulma.cli.bounds gives every option its range from these. */
static int add_limits(PyObject *mod)
{
    PyObject *d = Py_BuildValue(
        "{s:K,s:K,s:I,s:I,s:I,s:I,s:I,s:I}",
        "MIN_RING_BYTES", (unsigned long long)(ULMA_MIN_RING_EVENTS * sizeof(ulma_event)),
        "MAX_RING_BYTES", (unsigned long long)(ULMA_MAX_RING_EVENTS * sizeof(ulma_event)),
        "DRAIN_WAIT_US", ULMA_DRAIN_WAIT_US, "MAX_THREADS", ULMA_MAX_THREADS,
        "MAX_CPU_INTERVAL_US", ULMA_MAX_CPU_INTERVAL_US, "ID_LIMIT", ULMA_ID_LIMIT,
        "MIN_ID_LIMIT", ULMA_MIN_ID_LIMIT, "MAX_TASKS", ULMA_MAX_TASKS);
    return add_owned(mod, "LIMITS", d);
}

PyMODINIT_FUNC PyInit__core(void)
{
    if (PyType_Ready(&SessionType) < 0 || PyType_Ready(&AggregatorType) < 0 ||
        PyType_Ready(&ReplayType) < 0 || ulma_thread_names_ready() < 0)
        return NULL;
    PyObject *mod = PyModule_Create(&module_def);
    if (!mod)
        return NULL;
    /* native scopes (ulma.h): the runtime's table, global for the header's
     * lookup, and as a capsule for code that asks through Python */
    ulma_scopes_export();
    PyObject *api = PyCapsule_New((void *)&ulma_runtime_v1, "ulma._core.scopes_api", NULL);
    if (!api || PyModule_AddObject(mod, "scopes_api", api) < 0) {
        Py_XDECREF(api);
        Py_DECREF(mod);
        return NULL;
    }
    if (ulma_scopes_add_site_type(mod) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    Py_INCREF(&SessionType);
    if (PyModule_AddObject(mod, "Session", (PyObject *)&SessionType) < 0) {
        Py_DECREF(&SessionType);
        Py_DECREF(mod);
        return NULL;
    }
    if (PyModule_AddObjectRef(mod, "Aggregator", (PyObject *)&AggregatorType) < 0 ||
        PyModule_AddObjectRef(mod, "Replay", (PyObject *)&ReplayType) < 0 ||
        PyModule_AddIntConstant(mod, "REPLAY_FRAMES", ULMA_REPLAY_FRAMES) < 0 ||
        PyModule_AddIntConstant(mod, "REPLAY_TREE", ULMA_REPLAY_TREE) < 0 ||
        PyModule_AddIntConstant(mod, "REPLAY_TREE_PER_THREAD", ULMA_REPLAY_TREE_PER_THREAD) < 0 ||
        PyModule_AddIntConstant(mod, "REPLAY_PSTATS", ULMA_REPLAY_PSTATS) < 0 ||
        PyModule_AddIntConstant(mod, "REPLAY_ENDS_ONLY", ULMA_REPLAY_ENDS_ONLY) < 0 ||
        PyModule_AddIntConstant(mod, "REPLAY_COUNTERS", ULMA_REPLAY_COUNTERS) < 0 ||
        PyModule_AddIntConstant(mod, "TRANSITION_BYTES", (long)sizeof(ulma_transition)) < 0 ||
        PyModule_AddIntConstant(mod, "SPEEDSCOPE_PACKED_BYTES", SPEEDSCOPE_PACKED_BYTES) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    PyObject *engines = PY_VERSION_HEX >= 0x030C0000 ? Py_BuildValue("(ss)", "monitoring", "pep523")
                                                     : Py_BuildValue("(s)", "pep523");
    if (add_layout(mod) < 0 || add_limits(mod) < 0 || add_owned(mod, "ENGINES", engines) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
