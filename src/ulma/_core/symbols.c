/*
 * symbols.c -- naming things by small ids: a definition record is appended to
 * the session's symbol table the first time the agent sees a code object or
 * a C function (native calls), and the id is cached (on the code object's
 * co_extra slot, or in a table keyed by the C function's PyMethodDef).  The
 * --exclude patterns and ulma's own files are decided here, once per thing.
 *
 * Code objects are interned by definition, (name, file, first line): a
 * program that makes the same function again and again (exec, a closure
 * compiled per call, a reloaded module) gets one id and one row, not one per
 * code object.  Ids stay below g_id_limit (2^24, what the replay accepts):
 * things seen once every id is taken share the last id, a row named
 * OVERFLOW_NAME, and are counted in the header's ids_overflow.
 * Cold paths, under the GIL.
 */
#define _GNU_SOURCE
#include "symbols.h"
#include "threadnames.h"
#include "ringwrite.h"

#include <fnmatch.h>

#include "frames.h"
#include <stdlib.h>
#include <string.h>
#include "grow.h"

static char *g_hidden_prefix;      /* ulma's own files: not reported */
static size_t g_hidden_prefix_len;
/* --exclude patterns (fnmatch), matched against file and qualified name */
static char **g_exclude;
static size_t g_exclude_len;
/* --only patterns (fnmatch), matched against the module (a package's
 * pattern also matches its submodules: g_only_sub holds "pattern.*"), the
 * qualified name and the file; none: everything is traced */
static char **g_only, **g_only_sub;
static size_t g_only_len;
/* ids of the functions off now (bit set): --only, --exclude, commands */
static uint8_t *g_off_ids;
static size_t g_off_ids_bytes;
/* ids are 1 .. g_id_limit - 2; g_id_limit - 1 is the overflow row */
static uint32_t g_id_limit = ULMA_ID_LIMIT;
static int g_overflow_named; /* the overflow row's definition was written */
static const char OVERFLOW_NAME[] = "<functions past the id limit>";

void ulma_symbols_set_id_limit(uint32_t limit)
{
    g_id_limit = limit < ULMA_MIN_ID_LIMIT ? ULMA_MIN_ID_LIMIT : limit > ULMA_ID_LIMIT ? ULMA_ID_LIMIT : limit;
}

/* A new id, or the overflow id (counted) once every id is taken. */
static uint32_t new_id(ulma_session_header *h)
{
    uint32_t last = g_id_limit - 1;
    if (atomic_load_explicit(&h->next_symbol_id, memory_order_relaxed) < last) {
        uint32_t id = atomic_fetch_add_explicit(&h->next_symbol_id, 1, memory_order_relaxed);
        if (id < last)
            return id;
    }
    atomic_fetch_add_explicit(&h->ids_overflow, 1, memory_order_relaxed);
    if (!g_overflow_named) {
        g_overflow_named = 1;
        static const char file[] = "<ulma>";
        ulma_symbol_append(last, ULMA_SYM_PYFUNC, 0, 0, OVERFLOW_NAME, sizeof OVERFLOW_NAME - 1,
                           file, sizeof file - 1);
    }
    return last;
}


uint32_t ulma_symbols_new_id(void)
{
    return g_session ? new_id(g_session) : 0;
}

void ulma_symbol_append(uint32_t id, uint16_t kind, uint16_t flags, uint32_t line,
                          const char *name, size_t nlen, const char *file, size_t flen)
{
    ulma_symbol_write(g_session, id, kind, flags, line, name, nlen, file, flen);
}

/* Does an --exclude pattern match this qualified name or file? */
static int excluded(const char *name, const char *file)
{
    for (size_t i = 0; i < g_exclude_len; i++)
        if (fnmatch(g_exclude[i], name, 0) == 0 || (file && fnmatch(g_exclude[i], file, 0) == 0))
            return 1;
    return 0;
}

static void exclude_free(void)
{
    for (size_t i = 0; i < g_exclude_len; i++)
        free(g_exclude[i]);
    free(g_exclude);
    g_exclude = NULL;
    g_exclude_len = 0;
    for (size_t i = 0; i < g_only_len; i++) {
        free(g_only[i]);
        free(g_only_sub[i]);
    }
    free(g_only);
    free(g_only_sub);
    g_only = g_only_sub = NULL;
    g_only_len = 0;
}

/* ---- the module of a code object (for --only) ----------------------- */

const void *g_intern_frame; /* the frame a PEP 523 evaluator is entering */

static const char *globals_name(PyObject *globals)
{
    if (!globals || !PyDict_Check(globals))
        return NULL;
    PyObject *n = PyDict_GetItemString(globals, "__name__"); /* borrowed; no error set */
    if (!n || !PyUnicode_Check(n))
        return NULL;
    const char *s = PyUnicode_AsUTF8(n);
    if (!s)
        PyErr_Clear();
    return s;
}

/* The module a code object runs in: its frame's globals' __name__, from
 * the frame being entered (PEP 523) or one of the thread's frames (the
 * event's own on sys.monitoring, the walked one in a restatement); NULL if
 * no frame of it is at hand (then only the name and file are matched). */
static const char *module_name(PyCodeObject *co)
{
    const _PyInterpreterFrame *f = g_intern_frame;
    if (f && ulma_frame_code(f) == co)
        return globals_name(f->f_globals);
    f = ulma_current_frame(PyThreadState_GET());
    for (int i = 0; f && i < 256; f = f->previous, i++)
        if (ulma_frame_code(f) == co)
            return globals_name(f->f_globals);
    return NULL;
}

/* ---- functions off now ---------------------------------------------- */

int ulma_id_off(uint32_t id)
{
    return id / 8 < g_off_ids_bytes && (g_off_ids[id / 8] >> (id % 8)) & 1;
}

/* 0, or -1 if memory ran out (the function then stays as it was). */
int ulma_symbols_set_off(uint32_t id, int off)
{
    size_t byte = id / 8;
    if (byte >= g_off_ids_bytes) {
        if (!off)
            return 0;
        if (ulma_grow((void **)&g_off_ids, &g_off_ids_bytes, byte + 1, 1, 1) < 0)
            return -1;
    }
    if (off)
        g_off_ids[byte] |= (uint8_t)(1u << (id % 8));
    else
        g_off_ids[byte] &= (uint8_t)~(1u << (id % 8));
    return 0;
}

/* Does the module `mod` (may be NULL), qualified name or file match an --only pattern? */
static int only_matches(const char *mod, const char *name, const char *file)
{
    for (size_t i = 0; i < g_only_len; i++)
        if ((mod && (fnmatch(g_only[i], mod, 0) == 0 || fnmatch(g_only_sub[i], mod, 0) == 0)) ||
            fnmatch(g_only[i], name, 0) == 0 || fnmatch(g_only[i], file, 0) == 0)
            return 1;
    return 0;
}

/* ---- native (C) functions ------------------------------------------- */

/* PyMethodDef pointer -> id, for this session (open addressing; under the
 * GIL).  Builtins bound to different objects share their PyMethodDef, so a
 * method like list.append is one row whatever list it is called on. */
typedef struct {
    const void *key;
    uint32_t id;
} native_slot;
static native_slot *g_native;
static size_t g_native_cap, g_native_len;

static void native_free(void)
{
    free(g_native);
    g_native = NULL;
    g_native_cap = g_native_len = 0;
}

static int native_grow(void)
{
    size_t cap = g_native_cap ? g_native_cap * 2 : 1024;
    native_slot *tab = calloc(cap, sizeof *tab);
    if (!tab)
        return -1;
    for (size_t i = 0; i < g_native_cap; i++) {
        if (!g_native[i].key)
            continue;
        size_t j = ((uintptr_t)g_native[i].key >> 4) & (cap - 1);
        while (tab[j].key)
            j = (j + 1) & (cap - 1);
        tab[j] = g_native[i];
    }
    free(g_native);
    g_native = tab;
    g_native_cap = cap;
    return 0;
}

/* The type among type(self)'s bases that defines the method `ml`: the
 * first list subclass to call append must not name list.append for all. */
static const char *defining_type(PyObject *self, const PyMethodDef *ml)
{
    PyObject *mro = Py_TYPE(self)->tp_mro;
    for (Py_ssize_t i = 0; mro && PyTuple_Check(mro) && i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *t = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        for (const PyMethodDef *d = t->tp_methods; d && d->ml_name; d++)
            if (d == ml)
                return t->tp_name;
    }
    return Py_TYPE(self)->tp_name;
}

/* "module.name" or "type.name" of a builtin, into buf. */
static void native_name(PyObject *c, const PyMethodDef *ml, char *buf, size_t size)
{
    const char *owner = NULL;
    if (PyCFunction_Check(c)) {
        PyObject *self = PyCFunction_GET_SELF(c);
        if (self && PyModule_Check(self)) {
            owner = PyModule_GetName(self);
            if (!owner)
                PyErr_Clear();
        } else if (self) {
            owner = defining_type(self, ml);
        }
    } else {
        owner = ((PyMethodDescrObject *)c)->d_common.d_type->tp_name;
    }
    snprintf(buf, size, "%s%s%s", owner ? owner : "", owner ? "." : "", ml->ml_name);
}

static uint32_t native_intern(PyObject *c, const PyMethodDef *ml)
{
    ulma_session_header *h = g_session;
    if (!h || ((g_native_len + 1) * 2 > g_native_cap && native_grow() < 0))
        return 0;
    char name[256];
    native_name(c, ml, name, sizeof name);
    uint32_t id = new_id(h);
    static const char file[] = "<built-in>";
    uint16_t flags = excluded(name, NULL) ? ULMA_SYMF_UNMEASURED : 0;
    if (id != g_id_limit - 1)
        ulma_symbol_append(id, ULMA_SYM_CFUNC, flags, 0, name, strlen(name), file, sizeof file - 1);
    if (flags)
        id |= ULMA_ID_UNMEASURED;
    size_t j = ((uintptr_t)ml >> 4) & (g_native_cap - 1);
    while (g_native[j].key)
        j = (j + 1) & (g_native_cap - 1);
    g_native[j].key = ml;
    g_native[j].id = id;
    g_native_len++;
    return id;
}

/* ---- definitions: (kind, line, name, file) -> id ------------------------ */

/* Open addressing over entries whose key bytes (name then file) live in
 * g_def_arena blocks.  The value is the full id, flag bits included. */
typedef struct {
    uint64_t hash;
    const char *key; /* name bytes then file bytes; NULL: empty */
    uint32_t nlen, flen, line, idv;
} def_slot;
static def_slot *g_defs;
static size_t g_defs_cap, g_defs_len;
typedef struct arena_block {
    struct arena_block *next;
    size_t used, size;
    char data[];
} arena_block;
static arena_block *g_def_arena;

static void defs_free(void)
{
    free(g_defs);
    g_defs = NULL;
    g_defs_cap = g_defs_len = 0;
    while (g_def_arena) {
        arena_block *next = g_def_arena->next;
        free(g_def_arena);
        g_def_arena = next;
    }
    g_overflow_named = 0;
}

static uint64_t def_hash(uint32_t kind, uint32_t line, const char *name, size_t nlen, const char *file,
                         size_t flen)
{
    uint64_t x = 0xcbf29ce484222325ULL ^ ((uint64_t)kind << 32 | line);
    for (size_t i = 0; i < nlen; i++)
        x = (x ^ (unsigned char)name[i]) * 0x100000001b3ULL;
    x = (x ^ 0xff) * 0x100000001b3ULL; /* "ab"+"c" is not "a"+"bc" */
    for (size_t i = 0; i < flen; i++)
        x = (x ^ (unsigned char)file[i]) * 0x100000001b3ULL;
    return x ^ (x >> 29);
}

static def_slot *def_find(uint64_t hash, uint32_t line, const char *name, size_t nlen, const char *file,
                          size_t flen)
{
    size_t mask = g_defs_cap - 1;
    for (size_t i = hash & mask; g_defs[i].key; i = (i + 1) & mask) {
        def_slot *d = &g_defs[i];
        if (d->hash == hash && d->line == line && d->nlen == nlen && d->flen == flen &&
            memcmp(d->key, name, nlen) == 0 && memcmp(d->key + nlen, file, flen) == 0)
            return d;
    }
    return NULL;
}

static int defs_grow(void)
{
    size_t cap = g_defs_cap ? g_defs_cap * 2 : 4096;
    def_slot *tab = calloc(cap, sizeof *tab);
    if (!tab)
        return -1;
    for (size_t i = 0; i < g_defs_cap; i++) {
        if (!g_defs[i].key)
            continue;
        size_t j = g_defs[i].hash & (cap - 1);
        while (tab[j].key)
            j = (j + 1) & (cap - 1);
        tab[j] = g_defs[i];
    }
    free(g_defs);
    g_defs = tab;
    g_defs_cap = cap;
    return 0;
}

/* Copies the key into the arena; NULL if memory ran out. */
static const char *arena_copy(const char *name, size_t nlen, const char *file, size_t flen)
{
    size_t need = nlen + flen;
    if (!g_def_arena || g_def_arena->size - g_def_arena->used < need) {
        size_t size = need > 65536 ? need : 65536;
        arena_block *b = malloc(sizeof *b + size);
        if (!b)
            return NULL;
        b->next = g_def_arena;
        b->used = 0;
        b->size = size;
        g_def_arena = b;
    }
    char *p = g_def_arena->data + g_def_arena->used;
    memcpy(p, name, nlen);
    memcpy(p + nlen, file, flen);
    g_def_arena->used += need;
    return p;
}

/* Remembers a definition's id (if memory allows: else it is made again). */
static void def_add(uint64_t hash, uint32_t line, const char *name, size_t nlen, const char *file,
                    size_t flen, uint32_t idv)
{
    if ((g_defs_len + 1) * 2 > g_defs_cap && defs_grow() < 0)
        return;
    const char *key = arena_copy(name, nlen, file, flen);
    if (!key)
        return;
    size_t j = hash & (g_defs_cap - 1);
    while (g_defs[j].key)
        j = (j + 1) & (g_defs_cap - 1);
    g_defs[j] = (def_slot){hash, key, (uint32_t)nlen, (uint32_t)flen, line, idv};
    g_defs_len++;
}

/* The id of a definition, made (and its record written) if new. */
static uint32_t definition_id(ulma_session_header *h, const char *name, size_t nlen, const char *file,
                              size_t flen, uint32_t line, PyCodeObject *co)
{
    uint64_t hash = def_hash(ULMA_SYM_PYFUNC, line, name, nlen, file, flen);
    if (g_defs_cap) {
        def_slot *d = def_find(hash, line, name, nlen, file, flen);
        if (d)
            return d->idv;
    }
    uint16_t flags = 0;
    if ((g_hidden_prefix_len && flen >= g_hidden_prefix_len &&
         memcmp(file, g_hidden_prefix, g_hidden_prefix_len) == 0) || co == ulma_probe_code)
        flags |= ULMA_SYMF_HIDDEN;
    else if (excluded(name, file) || (g_only_len && !only_matches(module_name(co), name, file)))
        flags |= ULMA_SYMF_OFF; /* names and files are NUL-terminated (CPython's UTF-8 cache) */
    uint32_t id = new_id(h);
    if (id != g_id_limit - 1)
        ulma_symbol_append(id, ULMA_SYM_PYFUNC, flags, line, name, nlen, file, flen);
    /* (the overflow row is never off: it stands for many functions) */
    if ((flags & ULMA_SYMF_OFF) && id != g_id_limit - 1 && ulma_symbols_set_off(id, 1) < 0)
        flags &= (uint16_t)~ULMA_SYMF_OFF;
    if (flags & ULMA_SYMF_HIDDEN)
        id |= ULMA_ID_HIDDEN;
    def_add(hash, line, name, nlen, file, flen, id);
    return id;
}

/* ulma_symbols_slot_marks: on, and the ids of ulma's own functions (a
 * bitmap, grown to the largest one). */
static int g_slot_marks;
static uint8_t *g_hidden_ids;
static size_t g_hidden_ids_bytes;

void ulma_symbols_slot_marks(int on)
{
    g_slot_marks = on;
}

/* 0, or -1 if memory ran out (the id's C calls are then reported). */
static int hidden_ids_add(uint32_t id)
{
    size_t byte = id / 8;
    if (ulma_grow((void **)&g_hidden_ids, &g_hidden_ids_bytes, byte + 1, 1, 1) < 0)
        return -1;
    g_hidden_ids[byte] |= (uint8_t)(1u << (id % 8));
    return 0;
}

int ulma_symbols_hidden(uint32_t idv)
{
    if (idv & ULMA_ID_HIDDEN)
        return 1;
    uint32_t id = idv & ULMA_ID_MASK;
    return id / 8 < g_hidden_ids_bytes && (g_hidden_ids[id / 8] >> (id % 8)) & 1;
}

PyCodeObject *ulma_probe_code;
int ulma_probe_seen;

static uint32_t code_intern(PyCodeObject *co)
{
    ulma_session_header *h = g_session;
    if (!h)
        return 0;
    if (co == ulma_probe_code)
        ulma_probe_seen = 1;
    Py_ssize_t nlen = 0, flen = 0;
    const char *name = PyUnicode_AsUTF8AndSize(co->co_qualname, &nlen);
    if (!name) {
        PyErr_Clear();
        name = "?";
        nlen = 1;
    }
    const char *file = PyUnicode_AsUTF8AndSize(co->co_filename, &flen);
    if (!file) {
        PyErr_Clear();
        file = "?";
        flen = 1;
    }
    uint32_t id = definition_id(h, name, (size_t)nlen, file, (size_t)flen, (uint32_t)co->co_firstlineno, co);
    if (ulma_id_off(id & ULMA_ID_MASK))
        id |= ULMA_ID_OFF;
    if (co->co_flags & (CO_COROUTINE | CO_ITERABLE_COROUTINE))
        id |= ULMA_ID_AWAIT;
    uint32_t slot_id = id, tag = g_code_gen;
    /* never the hot path: the engines' slow paths see the bit; a
     * coroutine's events look for its task there (tasks.c) */
    if (id & (ULMA_ID_OFF | ULMA_ID_AWAIT))
        tag |= ULMA_GEN_SLOW;
    if (g_slot_marks) {
        if ((id & ULMA_ID_HIDDEN) && hidden_ids_add(id & ULMA_ID_MASK) == 0)
            slot_id &= ~ULMA_ID_HIDDEN;
        /* (an excluded function's bit, or ulma's own if the bitmap could not grow) */
        if ((co->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR)) || (slot_id & ~ULMA_ID_MASK))
            tag |= ULMA_GEN_SLOW;
    }
    uintptr_t v = ((uintptr_t)slot_id << 32) | tag; /* agent.h */
#if PY_VERSION_HEX >= 0x030C0000
    if (PyUnstable_Code_SetExtra((PyObject *)co, g_extra_index, (void *)v) < 0)
#else
    if (_PyCode_SetExtra((PyObject *)co, g_extra_index, (void *)v) < 0)
#endif
        PyErr_Clear(); /* looked up again next time */
    return id;
}

/* Interning runs on the unwind path too (an exception in flight) and clears
 * what its own calls fail at: the exception being raised is kept aside
 * meanwhile, so it reaches the program as it was. */
#if PY_VERSION_HEX >= 0x030C0000
#define KEEP_ERROR(call)                                                                           \
    do {                                                                                           \
        PyObject *exc_ = PyErr_GetRaisedException();                                               \
        id = call;                                                                                 \
        PyErr_Clear();                                                                             \
        PyErr_SetRaisedException(exc_);                                                            \
    } while (0)
#else
#define KEEP_ERROR(call)                                                                           \
    do {                                                                                           \
        PyObject *type_, *value_, *tb_;                                                            \
        PyErr_Fetch(&type_, &value_, &tb_);                                                        \
        id = call;                                                                                 \
        PyErr_Clear();                                                                             \
        PyErr_Restore(type_, value_, tb_);                                                         \
    } while (0)
#endif

uint32_t ulma_native_id(PyObject *c)
{
    const PyMethodDef *ml = PyCFunction_Check(c) ? ((PyCFunctionObject *)c)->m_ml
                                                 : ((PyMethodDescrObject *)c)->d_method;
    if (g_native_cap) {
        size_t j = ((uintptr_t)ml >> 4) & (g_native_cap - 1);
        for (; g_native[j].key; j = (j + 1) & (g_native_cap - 1))
            if (g_native[j].key == ml)
                return g_native[j].id;
    }
    uint32_t id;
    KEEP_ERROR(native_intern(c, ml));
    return id;
}

uint32_t ulma_code_intern(PyCodeObject *co)
{
    uint32_t id;
    KEEP_ERROR(code_intern(co));
    return id;
}

int ulma_patterns_copy(PyObject *patterns, char ***out, char ***sub, size_t *len)
{
    if (!patterns || patterns == Py_None)
        return 0;
    PyObject *seq = PySequence_Fast(patterns, "patterns must be a sequence of str");
    if (!seq)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    *out = calloc((size_t)n + 1, sizeof **out);
    if (sub)
        *sub = calloc((size_t)n + 1, sizeof **sub);
    for (Py_ssize_t i = 0; *out && (!sub || *sub) && i < n; i++) {
        const char *p = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(seq, i));
        size_t plen = p ? strlen(p) : 0;
        if (!p || !((*out)[i] = strdup(p)) || (sub && !((*sub)[i] = malloc(plen + 3)))) {
            if (p && (*out)[i])
                (*len)++; /* freed with the rest */
            Py_DECREF(seq);
            if (!PyErr_Occurred())
                PyErr_NoMemory();
            return -1;
        }
        if (sub)
            memcpy((*sub)[i], p, plen), memcpy((*sub)[i] + plen, ".*", 3);
        (*len)++;
    }
    Py_DECREF(seq);
    if (!*out || (sub && !*sub)) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Copies the --exclude and --only patterns; 0, or -1 with an exception. */
static int exclude_set(PyObject *exclude, PyObject *only)
{
    exclude_free();
    if (ulma_patterns_copy(exclude, &g_exclude, NULL, &g_exclude_len) < 0 ||
        ulma_patterns_copy(only, &g_only, &g_only_sub, &g_only_len) < 0) {
        exclude_free();
        return -1;
    }
    return 0;
}

int ulma_symbols_configure(PyObject *hidden_prefix, PyObject *exclude, PyObject *only)
{
    ulma_symbols_reset();
    if (hidden_prefix && hidden_prefix != Py_None) {
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(hidden_prefix, &len);
        if (!s)
            return -1;
        if (!(g_hidden_prefix = malloc((size_t)len + 1))) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(g_hidden_prefix, s, (size_t)len + 1);
        g_hidden_prefix_len = (size_t)len;
    }
    if (exclude_set(exclude, only) < 0) {
        ulma_symbols_reset();
        return -1;
    }
    return 0;
}

void ulma_symbols_reset(void)
{
    ulma_thread_names_reset();
    free(g_off_ids);
    g_off_ids = NULL;
    g_off_ids_bytes = 0;
    free(g_hidden_prefix);
    g_hidden_prefix = NULL;
    g_hidden_prefix_len = 0;
    exclude_free();
    native_free();
    defs_free();
    free(g_hidden_ids);
    g_hidden_ids = NULL;
    g_hidden_ids_bytes = 0;
    g_slot_marks = 0;
}
