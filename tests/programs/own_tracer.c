/* A program's own ref tracer (PyRefTracer_SetTracer, 3.13): counts the lists made while it is
 * set.  on() sets it, off() takes it out and returns the count; is_set() says whether the tracer
 * in place is this one. */
#include <Python.h>

static long lists;

static int tracer(PyObject *op, PyRefTracerEvent event, void *data)
{
    (void)data;
    if (event == PyRefTracer_CREATE && Py_TYPE(op) == &PyList_Type)
        lists++;
    return 0;
}

static PyObject *on(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    lists = 0;
    if (PyRefTracer_SetTracer(tracer, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *off(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    if (PyRefTracer_SetTracer(NULL, NULL) < 0)
        return NULL;
    return PyLong_FromLong(lists);
}

static PyObject *count(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    return PyLong_FromLong(lists);
}

static PyObject *in_front(PyObject *self, PyObject *unused)
{
    (void)self, (void)unused;
    void *data;
    return PyBool_FromLong(PyRefTracer_GetTracer(&data) == tracer);
}

static PyMethodDef methods[] = {
    {"on", on, METH_NOARGS, NULL},
    {"off", off, METH_NOARGS, NULL},
    {"count", count, METH_NOARGS, NULL},
    {"in_front", in_front, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "own_tracer", NULL, -1, methods, NULL, NULL, NULL, NULL};
PyMODINIT_FUNC PyInit_own_tracer(void) { return PyModule_Create(&def); }
