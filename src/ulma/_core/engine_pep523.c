/*
 * engine_pep523.c -- sees calls and returns by wrapping the interpreter's
 * frame evaluator (PEP 523).  It chains to any evaluator installed before it
 * and puts that one back when profiling stops -- unless the program installed
 * its own evaluator after ulma's: that one stays (ulma's, if it chains to
 * it, goes on passing frames through), and the report says so.
 *
 * Its price: every Python call now goes through a C function, so it uses C
 * stack per Python frame (see stack.c for how 3.11 keeps deep recursion
 * working) and, on 3.12+, counts against CPython's C recursion limit -- which
 * is why it is not the default there.
 *
 * Generators: calling a generator function runs a short frame that only
 * builds the generator; it is not a call in cProfile's or sys.monitoring's
 * sense and is not reported.  The generator's own frame is reported as a
 * call the first time it runs and as a resume (or throw) after that.
 */
#include "agent.h"
#include "tasks.h"

#include "agen.h"
#include "stack.h"
#include "symbols.h"

static _PyFrameEvalFunction g_prev_eval;
static int g_installed;
static _PyFrameEvalFunction g_current; /* the wrapper installed */
/* a stop found the program's evaluator in front of g_current and left both
 * in place: g_current may still be called (it chains to g_prev_eval) */
static int g_left_behind;

#define C_COUNTS_PER_CALL 2
#define GEN_FLAGS (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)

/* The code a frame the evaluator is given runs (always a code object). */
static inline PyCodeObject *frame_code(struct _PyInterpreterFrame *f)
{
#if PY_VERSION_HEX >= 0x030D0000
    return (PyCodeObject *)f->f_executable;
#else
    return f->f_code;
#endif
}

/* Has this generator frame not run its first instruction yet?  (The
 * generator's state says "executing" by the time the evaluator is called.) */
static inline int gen_not_started(struct _PyInterpreterFrame *f, PyCodeObject *co)
{
#if PY_VERSION_HEX >= 0x030D0000
    return f->instr_ptr <= _PyCode_CODE(co) + co->_co_firsttraceable;
#else
    return f->prev_instr < _PyCode_CODE(co) + co->_co_firsttraceable;
#endif
}

/* The default evaluator (no other was installed before ulma's). */
static inline __attribute__((always_inline)) PyObject *eval_default(PyThreadState *ts,
                                                                    struct _PyInterpreterFrame *f,
                                                                    int throwflag)
{
#if PY_VERSION_HEX >= 0x030C0000
    /* 3.12+ counts each Python call made through an evaluator function
     * against its C recursion limit (two counts per call, measured), where a
     * plain Python-to-Python call counts nothing.  Give them back: the C
     * stack that limit guards is protected by the stack guard instead. */
    ts->c_recursion_remaining += C_COUNTS_PER_CALL;
    PyObject *res = ulma_stack_guarded_eval(ts, f, throwflag);
    ts->c_recursion_remaining -= C_COUNTS_PER_CALL;
    return res;
#else
    return ulma_stack_guarded_eval(ts, f, throwflag);
#endif
}

/* The evaluator ulma chains to. */
static inline PyObject *eval_next(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag)
{
    if (g_prev_eval)
        return g_prev_eval(ts, f, throwflag);
    return eval_default(ts, f, throwflag);
}

/* One event of `co`: the common case inline, the rest out of line.
 * EVENT_KNOWN and the code's id in *idp if the id was known (the return
 * reuses it); EVENT_WRITTEN if written the general way; EVENT_OFF if the
 * function is not traced now: nothing written, and its exit must not be. */
#define EVENT_WRITTEN 0
#define EVENT_KNOWN 1
#define EVENT_OFF 2
static inline __attribute__((always_inline)) int code_event(PyCodeObject *co, uint8_t kind, uint32_t *idp)
{
    ulma_writer *w;
    uint64_t t;
    int how = ulma_code_event_fast(co, kind, &w, &t, idp);
    if (ULMA_UNLIKELY(how == ULMA_FAST_EMIT))
        ulma_emit_slow(w, t, *idp, kind, 0, 0, 0);
    else if (ULMA_UNLIKELY(how == ULMA_FAST_NONE))
        return ulma_code_event_slow(co, kind, 0, 0, 0) ? EVENT_OFF : EVENT_WRITTEN;
    return EVENT_KNOWN;
}

/* The return (or yield, unwind) of a call whose entry found `co`'s id `idv`
 * in session `gen`: while that session goes on, the id is the same, so it
 * is not looked up again.  Otherwise (the entry's writer or id was not at
 * hand, or the session changed) the whole event goes out of line. */
static inline __attribute__((always_inline)) void code_exit(PyCodeObject *co, uint8_t kind, int known,
                                                            uint32_t gen, uint32_t idv)
{
    ulma_writer *w = tls_writer;
    uint64_t t;
    if (ULMA_LIKELY(known && gen == g_generation && tls_writer_gen == gen && w != NULL &&
                    ulma_ticks_inline(g_clock, &t))) {
        if (ULMA_UNLIKELY(!ulma_emit_fast(w, t, idv, kind)))
            ulma_emit_slow(w, t, idv, kind, 0, 0, 0);
        return;
    }
    ulma_code_event_slow(co, kind, 0, 1, 0); /* rare: not worth inlining the lookup again */
}

/* Is a code object whose co_extra slot holds `v` a function not traced now
 * (--only, --exclude, switched off)?  Such a frame goes straight to the
 * next evaluator: no clock read, no record, no exit. */
static inline int slot_off(uintptr_t v)
{
    return ((uint32_t)v & ~ULMA_GEN_SLOW) == g_code_gen && ((uint64_t)v >> 32) & ULMA_ID_OFF;
}

static inline int code_off(PyCodeObject *co)
{
    ulma_code_extra *x = (ulma_code_extra *)co->co_extra;
    return x != NULL && g_extra_index < x->size && slot_off((uintptr_t)x->slots[g_extra_index]);
}

/* the session whose native_profile this thread runs, or 0 (initial-exec: read per call) */
static __thread uint32_t tls_native_gen __attribute__((tls_model("initial-exec")));
static void native_displaced(void);
static int native_profile(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg);

static PyObject *traced_gen_eval(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag);

/* An async generator's frame, suspended or about to go on: ULMA_ID_AWAIT if
 * at an await (agen.h), else 0. */
static inline uint32_t agen_await_bits(struct _PyInterpreterFrame *f, PyCodeObject *co)
{
    if (!(co->co_flags & CO_ASYNC_GENERATOR))
        return 0;
#if PY_VERSION_HEX >= 0x030D0000
    const _Py_CODEUNIT *at = f->instr_ptr;
#else
    const _Py_CODEUNIT *at = f->prev_instr;
#endif
    return ulma_agen_awaits(co, at - (const _Py_CODEUNIT *)co->co_code_adaptive) ? ULMA_ID_AWAIT : 0;
}

/* `gens`: 0 in the evaluators (a generator's frame goes to traced_gen_eval, so
 * the common path carries nothing of generators), 1 in traced_gen_eval. */
static inline __attribute__((always_inline)) PyObject *
traced_eval(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag, int native, int gens)
{
    PyCodeObject *co = frame_code(f);
    if (native && ULMA_UNLIKELY(tls_native_gen) && ts->c_profilefunc != native_profile)
        native_displaced();
    PyGenObject *gen = NULL;
    uint8_t kind = ULMA_CALL;
    if (ULMA_UNLIKELY(code_off(co)))
        return eval_next(ts, f, throwflag);
    if (!gens && ULMA_UNLIKELY(co->co_flags & GEN_FLAGS))
        return traced_gen_eval(ts, f, throwflag);
    if (gens && (co->co_flags & GEN_FLAGS)) {
        if (f->owner != FRAME_OWNED_BY_GENERATOR)
            return eval_next(ts, f, throwflag); /* the frame that builds the generator */
        gen = _PyFrame_GetGenerator(f);
        if (throwflag)
            kind = ULMA_THROW;
        else if (!gen_not_started(f, co))
            kind = ULMA_RESUME;
        Py_INCREF(gen); /* read its state after it ran */
    }
    Py_INCREF(co); /* a finished generator drops its frame's reference */

    uint32_t gen0 = g_generation, id0 = 0;
    /* an async generator going on after an await (the generator paths only) */
    uint32_t awaits = gens && kind != ULMA_CALL ? agen_await_bits(f, co) : 0;
    /* a coroutine that may be a task's own (tasks.h): its caller is the
     * thread's current frame (3.12+ link f->previous only once f runs;
     * 3.11's generators link it before) */
#if PY_VERSION_HEX >= 0x030C0000
    const _PyInterpreterFrame *caller = ulma_current_frame(ts);
#else
    const _PyInterpreterFrame *caller = f->previous;
#endif
    int candidate = gens && (co->co_flags & (CO_COROUTINE | CO_ITERABLE_COROUTINE)) &&
                    ulma_task_candidate(caller);
    uint64_t note = candidate ? ulma_task_note((PyObject *)gen, kind) : 0;
    g_intern_frame = f; /* its module, should the code be new (--only) */
    int known = ULMA_LIKELY(!awaits && !note) ? code_event(co, kind, &id0)
                : ulma_code_event_noted(co, kind, 0, 0, awaits, note) ? EVENT_OFF : EVENT_WRITTEN;
    g_intern_frame = NULL;

    PyObject *res = eval_next(ts, f, throwflag);
    /* (profiling may have stopped or restarted meanwhile: both paths look) */
    uint8_t out = ULMA_RETURN;
    if (res == NULL)
        out = ULMA_UNWIND;
    else if (gen && gen->gi_frame_state < FRAME_EXECUTING)
        out = ULMA_YIELD;
    note = candidate ? ulma_task_note((PyObject *)gen, out) : 0; /* (its map entry goes at its end) */
    if (ULMA_UNLIKELY(known == EVENT_OFF)) {
        /* not traced now: its exit is not either, whatever happens meanwhile */
        Py_DECREF(co);
        Py_XDECREF(gen);
        return res;
    }

    if (gens && out == ULMA_YIELD && (awaits = agen_await_bits(f, co)) != 0)
        ulma_code_event_slow(co, out, 0, 1, awaits); /* suspended in an await (gen holds f) */
    else if (ULMA_UNLIKELY(note))
        ulma_code_event_noted(co, out, 0, 1, 0, note);
    else
        code_exit(co, out, known == EVENT_KNOWN, gen0, id0);
    Py_DECREF(co);
    Py_XDECREF(gen);
    return res;
}

/* Any frame, by the general path: generators, a clock read by a call, a
 * code not yet known in this session, a thread with no writer yet. */
static __attribute__((noinline)) PyObject *traced_any_eval(PyThreadState *ts, struct _PyInterpreterFrame *f,
                                                           int throwflag)
{
    return traced_eval(ts, f, throwflag, 0, 0);
}

#ifdef ULMA_COUNTER_SOURCE
/* ulma_emit_slow of a record word (ulma_id_word, no kind): out of line, so
 * the hot path keeps no id beside the word. */
static __attribute__((noinline)) void put_slow(ulma_writer *w, uint64_t t, uint64_t word, uint8_t kind)
{
    uint32_t idv = (uint32_t)word | (uint32_t)((word >> 16) & ULMA_ID_RECORDED);
    ulma_emit_slow(w, t, idv, kind, 0, 0, 0);
}

/* The session changed while the frame ran: its return goes the general way. */
#if PY_VERSION_HEX >= 0x030C0000
static __attribute__((noinline)) void return_in_new_session(PyCodeObject *co, PyObject *res)
{
    ulma_code_event_slow(co, res ? ULMA_RETURN : ULMA_UNWIND, 0, 1, 0);
}
#else
static __attribute__((noinline)) void return_in_new_session(struct _PyInterpreterFrame *f, PyObject *res)
{
    ulma_code_event_slow(frame_code(f), res ? ULMA_RETURN : ULMA_UNWIND, 0, 1, 0);
}
#endif

/* The call's evaluation and its return, once the call's record is made:
 * the return reuses the call's writer and record word while the session
 * goes on (the writer's ring stays mapped as long as its generation lasts;
 * w->generation is the session's when the call was recorded). */
static inline __attribute__((always_inline)) PyObject *
counter_rest(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag, PyCodeObject *co,
             ulma_writer *w, uint64_t word, int chain)
{
#if PY_VERSION_HEX >= 0x030C0000
    /* 3.12+ clears the frame inside the evaluator: the code object might go
     * with it (its function's __code__ replaced meanwhile), and a return in
     * a new session needs it.  3.11 clears the frame after we return. */
    Py_INCREF(co);
#endif
    PyObject *res = chain ? eval_next(ts, f, throwflag) : eval_default(ts, f, throwflag);
    if (ULMA_LIKELY(w->generation == g_generation)) {
        uint64_t t = ulma_counter_ticks();
        /* RETURN's bits are in UNWIND's */
        uint64_t rest = word | (uint64_t)ULMA_RETURN << 32;
        if (ULMA_UNLIKELY(res == NULL))
            rest |= (uint64_t)ULMA_UNWIND << 32;
        if (ULMA_UNLIKELY(!ulma_put_fast(w, t, rest)))
            put_slow(w, t, word, res ? ULMA_RETURN : ULMA_UNWIND);
    } else {
#if PY_VERSION_HEX >= 0x030C0000
        return_in_new_session(co, res);
#else
        return_in_new_session(f, res); /* (f, not co, is kept across the call) */
#endif
    }
#if PY_VERSION_HEX >= 0x030C0000
    Py_DECREF(co);
#else
    (void)co;
#endif
    return res;
}

/* The call's record went the slow way (ring full, a reading or restatement
 * due); the rest as usual. */
static __attribute__((noinline)) PyObject *counter_eval_slow_call(PyThreadState *ts,
                                                                  struct _PyInterpreterFrame *f,
                                                                  int throwflag, ulma_writer *w,
                                                                  uint64_t t, uint64_t word, int chain)
{
    put_slow(w, t, word, ULMA_CALL);
    if (chain)
        return counter_rest(ts, f, throwflag, frame_code(f), w, word, 1);
    return counter_rest(ts, f, throwflag, frame_code(f), w, word, 0);
}

/*
 * The hot path, installed when the session's clock is the cycle counter:
 * a plain function's frame whose code already has its id in this session,
 * on a thread that has its writer; anything else goes the general way.
 * Nothing before the evaluator's call is a call (rare ones are tail
 * calls), so the arguments stay in their registers.
 */
static inline __attribute__((always_inline)) PyObject *
counter_eval(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag, int native, int chain)
{
    PyCodeObject *co = frame_code(f);
    if (native && ULMA_UNLIKELY(tls_native_gen) && ts->c_profilefunc != native_profile)
        native_displaced();
    ulma_code_extra *x = (ulma_code_extra *)co->co_extra;
    Py_ssize_t index = g_extra_index;
    uint32_t gen = tls_writer_gen;
    if (ULMA_UNLIKELY(x == NULL || index >= x->size))
        return traced_any_eval(ts, f, throwflag); /* (no id yet) */
    uintptr_t v = (uintptr_t)x->slots[index];
    /* the code's id and the thread's writer are this session's (a writer
     * is there: agent.h), and the code is not a generator's nor off
     * (ULMA_GEN_SLOW): its id is written as it is (symbols.h) */
    if (ULMA_UNLIKELY(((uint32_t)v != g_code_gen) | (gen != g_generation))) {
        if (slot_off(v)) /* not traced now: straight on */
            return chain ? eval_next(ts, f, throwflag) : eval_default(ts, f, throwflag);
        return traced_any_eval(ts, f, throwflag);
    }
    ulma_writer *w = tls_writer;
    uint64_t word = v >> 32;
    uint64_t t = ulma_counter_ticks();
    if (ULMA_UNLIKELY(!ulma_put_fast(w, t, word | (uint64_t)ULMA_CALL << 32)))
        return counter_eval_slow_call(ts, f, throwflag, w, t, word, chain);
    return counter_rest(ts, f, throwflag, co, w, word, chain);
}
static_assert((ULMA_UNWIND & ULMA_RETURN) == ULMA_RETURN, "RETURN's bits are in UNWIND's");

/* The evaluators of the hot path: `chain` when another evaluator was there
 * before ulma's (chosen at start, so the common case does not look). */
static PyObject *ulma_eval_counter(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag)
{
    return counter_eval(ts, f, throwflag, 0, 0);
}

static PyObject *ulma_eval_counter_chain(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag)
{
    return counter_eval(ts, f, throwflag, 0, 1);
}

static PyObject *ulma_eval_counter_native(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag)
{
    return counter_eval(ts, f, throwflag, 1, 0);
}

static PyObject *ulma_eval_counter_native_chain(PyThreadState *ts, struct _PyInterpreterFrame *f,
                                                int throwflag)
{
    return counter_eval(ts, f, throwflag, 1, 1);
}
#endif

/* The general path as the evaluator (a clock read by a call). */
static PyObject *ulma_eval(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag)
{
    return traced_eval(ts, f, throwflag, 0, 0);
}

/* With native calls: also notices the program's profile function taking over. */
static PyObject *ulma_eval_native(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag)
{
    return traced_eval(ts, f, throwflag, 1, 0);
}

/* Generators' frames (the native check was made by the caller). */
static __attribute__((noinline)) PyObject *traced_gen_eval(PyThreadState *ts, struct _PyInterpreterFrame *f,
                                                           int throwflag)
{
    return traced_eval(ts, f, throwflag, 0, 1);
}

/* The floor: the wrapper's cost with nothing recorded. */
static PyObject *ulma_eval_empty(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag)
{
    return eval_next(ts, f, throwflag);
}

/* The recording floor: the wrapper, a clock read and one 16-byte store at
 * each end -- what any recorder pays, with nothing else ulma does. */
/* volatile: nothing reads the slot, and without it the compiler drops the
 * stores (it did: the floor measured no store at all) */
static __thread struct {
    volatile uint64_t ticks;
    const void *volatile what;
} tls_floor_slot __attribute__((tls_model("initial-exec")));

static PyObject *ulma_eval_floor(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag)
{
    PyCodeObject *co = frame_code(f);
    tls_floor_slot.ticks = ulma_ticks(g_clock);
    tls_floor_slot.what = co;
    PyObject *res = eval_next(ts, f, throwflag);
    tls_floor_slot.ticks = ulma_ticks(g_clock);
    tls_floor_slot.what = co;
    return res;
}

/* ---- native calls: a C profile function per thread ----------------------
 * PEP 523 sees Python frames only; calls into C are seen by a profile
 * function (PyTrace_C_CALL / C_RETURN / C_EXCEPTION), which each thread gets
 * when it claims its ring.  Python calls and returns also reach it (the
 * interpreter's tracing path): it ignores them, but they make this mode dearer
 * than native calls on sys.monitoring.  Dispatch time is not measured here. */
static int g_native;
#if PY_VERSION_HEX >= 0x030D0000
/* exported, but declared only in the internal headers from 3.13 on */
PyAPI_FUNC(int) _PyEval_SetProfile(PyThreadState *tstate, Py_tracefunc func, PyObject *arg);
#endif

static int native_profile(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    (void)obj;
    if (what != PyTrace_C_CALL && what != PyTrace_C_RETURN && what != PyTrace_C_EXCEPTION)
        return 0;
    if (!arg || !(PyCFunction_Check(arg) || Py_IS_TYPE(arg, &PyMethodDescr_Type)))
        return 0;
    ulma_writer *w = ulma_writer_get();
    if (ULMA_UNLIKELY(w == NULL))
        return 0;
    uint64_t t = ulma_ticks(g_clock);
    if (frame && ulma_symbols_hidden(ulma_code_id(frame_code(frame->f_frame))))
        return 0; /* ulma's own calls */
    ulma_emit(w, t, ulma_native_id(arg), what == PyTrace_C_CALL ? ULMA_C_CALL : ULMA_C_RETURN, 0);
    return 0;
}

static void count_displaced(void)
{
    if (g_session)
        atomic_fetch_add_explicit(&g_session->hooks_displaced, 1, memory_order_relaxed);
}

/* The program's sys.setprofile (or cProfile on 3.11) replaced ulma's profile
 * function in this thread: its calls into C are not seen from now on. */
static void native_displaced(void)
{
    if (g_native && tls_native_gen == g_generation)
        count_displaced();
    tls_native_gen = 0;
}

/* A thread gets ulma's profile function, unless the program's own is there:
 * that one is never replaced (and the thread's calls into C go unseen). */
void ulma_engine_pep523_thread_claimed(void)
{
    if (!g_native)
        return;
    PyThreadState *ts = PyThreadState_Get();
    if (ts->c_profilefunc && ts->c_profilefunc != native_profile) {
        tls_native_gen = 0;
        count_displaced();
        return;
    }
    PyObject *type, *value, *tb; /* a thread may claim its ring while an exception unwinds */
    PyErr_Fetch(&type, &value, &tb);
    PyEval_SetProfile(native_profile, NULL); /* reports its own failures (an audit hook) */
    PyErr_Restore(type, value, tb);
    tls_native_gen = ts->c_profilefunc == native_profile ? g_generation : 0;
}

static void native_off_everywhere(void)
{
    PyObject *type, *value, *tb; /* stop may run while an exception is set */
    PyErr_Fetch(&type, &value, &tb);
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts; ts = PyThreadState_Next(ts))
        if (ts->c_profilefunc == native_profile)
            _PyEval_SetProfile(ts, NULL, NULL);
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
}

static int is_ours(_PyFrameEvalFunction e)
{
#ifdef ULMA_COUNTER_SOURCE
    if (e == ulma_eval_counter || e == ulma_eval_counter_native || e == ulma_eval_counter_chain ||
        e == ulma_eval_counter_native_chain)
        return 1;
#endif
    return e == ulma_eval || e == ulma_eval_native || e == ulma_eval_empty || e == ulma_eval_floor;
}

int ulma_engine_pep523_buried(void)
{
    if (!g_left_behind)
        return 0;
    PyInterpreterState *interp = PyInterpreterState_Get();
    if (is_ours(_PyInterpreterState_GetEvalFrameFunc(interp))) {
        /* the program took its own out since: ulma's, on top again, goes */
        _PyInterpreterState_SetEvalFrameFunc(interp, g_prev_eval ? g_prev_eval : _PyEval_EvalFrameDefault);
        g_prev_eval = NULL;
        g_left_behind = 0;
        return 0;
    }
    return 1;
}

int ulma_engine_pep523_start(int empty, int native_calls)
{
    g_native = native_calls && !empty;
    PyInterpreterState *interp = PyInterpreterState_Get();
    _PyFrameEvalFunction cur = _PyInterpreterState_GetEvalFrameFunc(interp);
    /* ulma's own, left by a session whose stop found the program's evaluator
     * in front (which the program took out since): keep what it chained to */
    if (g_left_behind && !is_ours(cur)) {
        /* The program's evaluator is still in front of the one ulma left:
         * a new one in front of it would chain to the program's, which
         * chains to the old one, which chains to g_prev_eval: round and
         * round.  The old one (a wrapper of ulma's that reads the session
         * as it goes) works again instead, where it is. */
        g_installed = 1;
        return 0;
    }
    g_left_behind = 0;
    if (!is_ours(cur))
        g_prev_eval = cur == _PyEval_EvalFrameDefault ? NULL : cur;
    g_current = empty == ULMA_HOOKS_FLOOR ? ulma_eval_floor
                : empty                   ? ulma_eval_empty
                : g_native                ? ulma_eval_native
                                          : ulma_eval;
#ifdef ULMA_COUNTER_SOURCE
    if (!empty && g_clock == ULMA_COUNTER_SOURCE) /* the clock read inline, unchecked */
        g_current = g_native ? (g_prev_eval ? ulma_eval_counter_native_chain : ulma_eval_counter_native)
                             : (g_prev_eval ? ulma_eval_counter_chain : ulma_eval_counter);
#endif
    _PyInterpreterState_SetEvalFrameFunc(interp, g_current);
    g_installed = 1;
    return 0;
}

/* Calibration: the previous evaluator back for a while, then ours again --
 * only while the one in place is the one ulma put there. */
int ulma_engine_pep523_pause(int paused)
{
    if (!g_installed)
        return 0;
    PyInterpreterState *interp = PyInterpreterState_Get();
    _PyFrameEvalFunction prev = g_prev_eval ? g_prev_eval : _PyEval_EvalFrameDefault;
    if (_PyInterpreterState_GetEvalFrameFunc(interp) == (paused ? g_current : prev))
        _PyInterpreterState_SetEvalFrameFunc(interp, paused ? prev : g_current);
    return 0;
}

/* Another evaluator is in front of ulma's: does it pass frames on to ulma's?
 * A code object never seen runs once through the interpreter's evaluator; if
 * ulma's is reached, the code is interned (symbols.c notes the probe and
 * hides it).  Nothing of the program's state changes: a fresh namespace, and
 * an exception in flight kept. */
static int reaches_ulma(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *code = Py_CompileString("None", "<ulma: evaluator probe>", Py_eval_input);
    PyObject *ns = code ? PyDict_New() : NULL;
    int seen = 0;
    if (ns && PyDict_SetItemString(ns, "__builtins__", PyEval_GetBuiltins()) == 0) {
        ulma_probe_code = (PyCodeObject *)code;
        ulma_probe_seen = 0;
        PyObject *res = PyEval_EvalCode(code, ns, ns);
        seen = ulma_probe_seen;
        ulma_probe_code = NULL;
        Py_XDECREF(res);
    }
    Py_XDECREF(ns);
    Py_XDECREF(code);
    PyErr_Clear(); /* the probe's own failure, if any: counted as not reached */
    PyErr_Restore(type, value, tb);
    return seen;
}

void ulma_engine_pep523_stop(void)
{
    if (!g_installed)
        return;
    PyInterpreterState *interp = PyInterpreterState_Get();
    if (_PyInterpreterState_GetEvalFrameFunc(interp) == g_current) {
        _PyInterpreterState_SetEvalFrameFunc(interp, g_prev_eval ? g_prev_eval : _PyEval_EvalFrameDefault);
        g_prev_eval = NULL;
    } else if (reaches_ulma()) {
        g_left_behind = 1; /* kept behind the program's, and still called: it chains to g_prev_eval */
    } else {
        count_displaced(); /* the program's passes nothing on: ulma's is never called again */
    }
    g_installed = 0;
    if (g_native)
        native_off_everywhere();
    g_native = 0;
}
