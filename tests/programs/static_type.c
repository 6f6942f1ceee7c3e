/* An extension module with a static type (as older C extensions have: not made by PyType_FromSpec,
 * only readied when the module is imported): static_type.Widget, an object that holds nothing. */
#include <Python.h>

static PyTypeObject WidgetType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "static_type.Widget",
    .tp_basicsize = sizeof(PyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_doc = "a static type readied at import",
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "static_type", NULL, -1, NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_static_type(void)
{
    if (PyType_Ready(&WidgetType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddObjectRef(m, "Widget", (PyObject *)&WidgetType) < 0)
        Py_CLEAR(m);
    return m;
}
