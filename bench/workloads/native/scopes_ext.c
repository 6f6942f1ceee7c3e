/*
 * scopes_ext -- bench/scopes.py's extension: empty native scopes (ulma.h) in
 * a loop, and the floor any timed scope pays (two clock reads), each timed
 * in the thread's CPU time.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#include <ulma/ulma.h>

static long long cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* n empty scopes; the CPU ns they took */
static PyObject *spin(PyObject *self, PyObject *arg)
{
    (void)self;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    long long a = cpu_ns();
    for (long i = 0; i < n; i++) {
        ULMA_SCOPE("spin");
        __asm__ volatile("" ::: "memory");
    }
    return PyLong_FromLongLong(cpu_ns() - a);
}

static volatile unsigned long long g_sink;

/* n pairs of cycle-counter reads stored to memory (what a timed scope cannot do without) */
static PyObject *clock_pairs(PyObject *self, PyObject *arg)
{
    (void)self;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    long long a = cpu_ns();
    for (long i = 0; i < n; i++) {
#if defined(__x86_64__) || defined(__i386__)
        g_sink = __rdtsc();
        g_sink = __rdtsc();
#else
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        g_sink = (unsigned long long)ts.tv_nsec;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        g_sink = (unsigned long long)ts.tv_nsec;
#endif
    }
    return PyLong_FromLongLong(cpu_ns() - a);
}

static PyMethodDef methods[] = {
    {"spin", spin, METH_O, NULL},
    {"clock_pairs", clock_pairs, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "scopes_ext", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_scopes_ext(void)
{
    return PyModule_Create(&module);
}
