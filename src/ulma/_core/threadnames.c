/* threadnames.c -- Python threads' names in the session (threadnames.h). */
#include "threadnames.h"

#include <sys/syscall.h>
#include <unistd.h>
#include "agent.h"
#include "records.h"
#include "symbols.h"

static uint64_t g_name_bytes; /* of the session's table, taken by thread names */

int ulma_thread_name(uint64_t tid, const char *name, size_t nlen)
{
    ulma_session_header *h = g_session;
    uint64_t size = (sizeof(ulma_symbol) + nlen + 7) & ~(uint64_t)7;
    if (!h || tid >= ULMA_THREAD_ID_MAX || g_name_bytes + size > h->symtab_bytes / ULMA_THREAD_NAMES_SHARE)
        return 0;
    g_name_bytes += size;
    ulma_symbol_append(ULMA_THREAD_SYMBOL_BASE + (uint32_t)tid, ULMA_SYM_THREAD, 0, 0, name, nlen, "", 0);
    return 1;
}

void ulma_thread_names_reset(void)
{
    g_name_bytes = 0;
}

/* The trampoline a named thread starts on: names it, then calls `function`. */
typedef struct {
    PyObject_HEAD
    PyObject *function;
    PyObject *name; /* str */
} named_start;

static void named_dealloc(named_start *self)
{
    Py_XDECREF(self->function);
    Py_XDECREF(self->name);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *named_call(named_start *self, PyObject *args, PyObject *kwargs)
{
    Py_ssize_t n;
    const char *text = PyUnicode_AsUTF8AndSize(self->name, &n);
    if (!text)
        PyErr_Clear(); /* (a name that is no UTF-8: the thread goes by its id) */
    else
        ulma_thread_name((uint64_t)syscall(SYS_gettid), text, (size_t)n);
    return PyObject_Call(self->function, args, kwargs);
}

static PyTypeObject NamedStartType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ulma._core._NamedStart",
    .tp_basicsize = sizeof(named_start),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)named_dealloc,
    .tp_call = (ternaryfunc)named_call,
    .tp_doc = "a thread's first callable: names the thread in ulma's session, then runs its own",
};

/* A starter: `start` (one of _thread's), naming the threads of Thread objects. */
typedef struct {
    PyObject_HEAD
    PyObject *start;
} thread_starter;

static void starter_dealloc(thread_starter *self)
{
    Py_XDECREF(self->start);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The name of the Thread whose bound _bootstrap `function` is (a new
 * reference), or NULL with no error: read from its dict, so no code of the
 * program's runs. */
static PyObject *thread_name_of(PyObject *function)
{
    if (!PyMethod_Check(function))
        return NULL;
    PyObject *func = PyMethod_GET_FUNCTION(function), *owner = PyMethod_GET_SELF(function);
    if (!PyFunction_Check(func))
        return NULL;
    PyObject *fname = ((PyFunctionObject *)func)->func_name;
    if (!PyUnicode_Check(fname) || PyUnicode_CompareWithASCIIString(fname, "_bootstrap") != 0)
        return NULL;
    PyObject **dictp = _PyObject_GetDictPtr(owner);
    PyObject *dict = dictp ? *dictp : NULL;
    if (!dict) {
        dict = PyObject_GenericGetDict(owner, NULL); /* (a managed dict: 3.12+) */
        if (!dict) {
            PyErr_Clear();
            return NULL;
        }
    } else {
        Py_INCREF(dict);
    }
    PyObject *name = PyDict_Check(dict) ? PyDict_GetItemString(dict, "_name") : NULL; /* borrowed */
    if (name && PyUnicode_Check(name))
        Py_INCREF(name);
    else
        name = NULL;
    Py_DECREF(dict);
    return name;
}

static PyObject *starter_call(thread_starter *self, PyObject *args, PyObject *kwargs)
{
    PyObject *name = PyTuple_GET_SIZE(args) ? thread_name_of(PyTuple_GET_ITEM(args, 0)) : NULL;
    if (!name)
        return PyObject_Call(self->start, args, kwargs);
    PyObject *result = NULL, *changed = NULL;
    named_start *named = PyObject_New(named_start, &NamedStartType);
    if (!named) {
        Py_DECREF(name);
        return NULL;
    }
    named->function = Py_NewRef(PyTuple_GET_ITEM(args, 0));
    named->name = name;
    /* a new tuple (GetSlice of the whole would hand back `args` itself) */
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    changed = PyTuple_New(n);
    if (changed) {
        PyTuple_SET_ITEM(changed, 0, (PyObject *)named);
        named = NULL;
        for (Py_ssize_t i = 1; i < n; i++)
            PyTuple_SET_ITEM(changed, i, Py_NewRef(PyTuple_GET_ITEM(args, i)));
        result = PyObject_Call(self->start, changed, kwargs);
        Py_DECREF(changed);
    }
    Py_XDECREF(named);
    return result;
}

static PyObject *starter_wrapped(thread_starter *self, void *closure)
{
    (void)closure;
    return Py_NewRef(self->start);
}

static PyGetSetDef starter_getset[] = {
    {"__wrapped__", (getter)starter_wrapped, NULL, "the starter this one names threads for", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ThreadStarterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "ulma._core._ThreadStarter",
    .tp_basicsize = sizeof(thread_starter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)starter_dealloc,
    .tp_call = (ternaryfunc)starter_call,
    .tp_getset = starter_getset,
    .tp_doc = "one of _thread's thread starters, naming the threads of threading.Thread objects",
};

PyObject *ulma_thread_starter(PyObject *module, PyObject *start)
{
    (void)module;
    if (!PyCallable_Check(start)) {
        PyErr_SetString(PyExc_TypeError, "thread_starter() needs a callable");
        return NULL;
    }
    thread_starter *s = PyObject_New(thread_starter, &ThreadStarterType);
    if (!s)
        return NULL;
    s->start = Py_NewRef(start);
    return (PyObject *)s;
}

int ulma_thread_names_ready(void)
{
    return PyType_Ready(&NamedStartType) < 0 || PyType_Ready(&ThreadStarterType) < 0 ? -1 : 0;
}
