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
/* ulma's own files (hidden) and the --exclude patterns for a new session;
 * 0, or -1 with an exception. */
int ulma_symbols_configure(PyObject *hidden_prefix, PyObject *exclude);
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
/* Forgets all of it, the C function ids too (ids are per session). */
void ulma_symbols_reset(void);

#endif
