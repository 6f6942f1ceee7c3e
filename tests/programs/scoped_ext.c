/*
 * scoped_ext -- a C extension that uses ulma's public header (ulma.h) and
 * nothing else of ulma's: built by the tests with setuptools, imported by
 * tests/programs/scoped.py.  Each function knows what it did.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <time.h>

#include <ulma/ulma.h>

/* outer() once; inside it `n` inner() scopes, each calling `callback(i)`
 * (if not None) inside the scope. */
static PyObject *nested(PyObject *self, PyObject *args)
{
    (void)self;
    Py_ssize_t n;
    PyObject *callback;
    if (!PyArg_ParseTuple(args, "nO", &n, &callback))
        return NULL;
    ULMA_SCOPE("outer");
    for (Py_ssize_t i = 0; i < n; i++) {
        ULMA_SCOPE("inner");
        if (callback != Py_None) {
            PyObject *r = PyObject_CallFunction(callback, "n", i);
            if (!r)
                return NULL;
            Py_DECREF(r);
        }
    }
    Py_RETURN_NONE;
}

static volatile uint64_t g_sink;

static void busy(long iters)
{
    uint64_t x = g_sink;
    for (long i = 0; i < iters; i++)
        x = x * 6364136223846793005u + 1442695040888963407u;
    g_sink = x;
}

typedef struct {
    long n, work;
} job;

static void *thread_main(void *arg)
{
    const job *j = arg;
    ULMA_SCOPE("thread_main");
    for (long i = 0; i < j->n; i++) {
        ULMA_SCOPE("thread_work");
        busy(j->work);
    }
    return NULL;
}

/* A thread Python never sees: `n` thread_work scopes under thread_main. */
static PyObject *in_thread(PyObject *self, PyObject *args)
{
    (void)self;
    job j;
    if (!PyArg_ParseTuple(args, "ll", &j.n, &j.work))
        return NULL;
    pthread_t t;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pthread_create(&t, NULL, thread_main, &j);
    if (rc == 0)
        pthread_join(t, NULL);
    Py_END_ALLOW_THREADS
    if (rc != 0)
        return PyErr_Format(PyExc_OSError, "pthread_create: %d", rc);
    Py_RETURN_NONE;
}

/* `n` nogil_work scopes on this thread with the GIL released. */
static PyObject *nogil(PyObject *self, PyObject *args)
{
    (void)self;
    long n, work;
    if (!PyArg_ParseTuple(args, "ll", &n, &work))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    for (long i = 0; i < n; i++) {
        ULMA_SCOPE("nogil_work");
        busy(work);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static long long cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* `n` timed_work scopes of `work` iterations each, the GIL released; the
 * thread's CPU ns inside them, read inside each scope (the ground truth of
 * the scopes' CPU time). */
static PyObject *timed(PyObject *self, PyObject *args)
{
    (void)self;
    long n, work;
    if (!PyArg_ParseTuple(args, "ll", &n, &work))
        return NULL;
    long long inside = 0;
    Py_BEGIN_ALLOW_THREADS
    for (long i = 0; i < n; i++) {
        ULMA_SCOPE("timed_work");
        long long a = cpu_ns();
        busy(work);
        inside += cpu_ns() - a;
    }
    Py_END_ALLOW_THREADS
    return PyLong_FromLongLong(inside);
}

/* `n` marks and counter values 0, 1, ..., n - 2, then -1; and "wide": -(2^50) * (i + 1),
 * values past 32 bits each way. */
static PyObject *marks(PyObject *self, PyObject *args)
{
    (void)self;
    long n;
    if (!PyArg_ParseTuple(args, "l", &n))
        return NULL;
    for (long i = 0; i < n; i++) {
        ULMA_MARK("tick");
        ULMA_COUNTER("level", i + 1 < n ? (int64_t)i : -1);
        ULMA_COUNTER("wide", -((int64_t)1 << 50) * (i + 1));
    }
    Py_RETURN_NONE;
}

/* `n` empty scopes; the CPU ns they took (the thread's clock). */
static PyObject *spin(PyObject *self, PyObject *args)
{
    (void)self;
    long n;
    if (!PyArg_ParseTuple(args, "l", &n))
        return NULL;
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    for (long i = 0; i < n; i++) {
        ULMA_SCOPE("spin");
        __asm__ volatile("" ::: "memory");
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    return PyLong_FromLongLong((long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
}

static PyMethodDef methods[] = {
    {"nested", nested, METH_VARARGS, NULL},
    {"in_thread", in_thread, METH_VARARGS, NULL},
    {"nogil", nogil, METH_VARARGS, NULL},
    {"marks", marks, METH_VARARGS, NULL},
    {"timed", timed, METH_VARARGS, NULL},
    {"spin", spin, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "scoped_ext", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_scoped_ext(void)
{
    return PyModule_Create(&module);
}
