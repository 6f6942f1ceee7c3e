/*
 * symbols.h -- ids and definition records for code objects and C functions
 * (symbols.c).  The hot lookup of a code object's id is ulma_code_id in
 * agent.h; these are its slow paths.
 */
#ifndef ULMA_SYMBOLS_H
#define ULMA_SYMBOLS_H

#include "agent.h"

/* Appends one definition to the session's symbol table (or counts it as
 * overflow); `size` is stored last, with release. */
void ulma_symbol_append(uint32_t id, uint16_t kind, uint16_t flags, uint32_t line, const char *name,
                        size_t nlen, const char *file, size_t flen);
/* A new function id of the session (native scopes' sites), 0 if none. */
uint32_t ulma_symbols_new_id(void);
/* ulma's own files (hidden), the --exclude and the --only patterns for a
 * new session; 0, or -1 with an exception.  A Python function that an
 * --exclude pattern matches, or (with --only) no --only pattern does, is off
 * from its first sight: ULMA_SYMF_OFF in its definition. */
int ulma_symbols_configure(PyObject *hidden_prefix, PyObject *exclude, PyObject *only);
/* Switches function `id` off (1) or on (0) for the code objects interned
 * from now on (the caller makes a new g_code_gen); 0, or -1 (out of memory). */
int ulma_symbols_set_off(uint32_t id, int off);
/* A PEP 523 evaluator's frame being entered (an _PyInterpreterFrame), so
 * that interning it finds its module without walking; may be stale. */
extern const void *g_intern_frame;
/* Ids a session may use (what the replay accepts); fewer for tests. */
#define ULMA_ID_LIMIT (1u << 24)
/* the fewest: id 1 and the overflow row's id 2 (0 is no function) */
#define ULMA_MIN_ID_LIMIT 3u
void ulma_symbols_set_id_limit(uint32_t limit);
/* PEP 523 sessions (on=1): a code object's slot sends generators and
 * excluded functions to the engine's general path (ULMA_GEN_SLOW) and
 * holds ulma's own functions' ids without ULMA_ID_HIDDEN, so that the hot
 * path writes any id it finds as it is; ulma_symbols_hidden still knows
 * them.  Until the session ends. */
void ulma_symbols_slot_marks(int on);
/* Is `idv` (an id as a slot or ulma_code_intern gives it) ulma's own? */
int ulma_symbols_hidden(uint32_t idv);
/* Copies a sequence of patterns (str; None: none) into *out, NULL-ended
 * (and, if `sub`, each pattern followed by ".*" into *sub), counting the
 * strings made in *len; 0, or -1 with an exception (what was made is the
 * caller's to free, *len of it). */
int ulma_patterns_copy(PyObject *patterns, char ***out, char ***sub, size_t *len);
/* Forgets all of it, the C function ids too (ids are per session). */
void ulma_symbols_reset(void);
/* A code object run once to see whether ulma's evaluator is reached (the
 * PEP 523 engine's stop, under another evaluator): interned as ulma's own
 * (hidden), and ulma_probe_seen set when it is.  NULL: none. */
extern PyCodeObject *ulma_probe_code;
extern int ulma_probe_seen;

#endif
