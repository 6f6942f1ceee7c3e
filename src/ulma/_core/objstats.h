/*
 * objstats.h -- what the replay keeps of the object lifecycle records
 * (records.h, --objects): per (function, type), the objects the function
 * made, those of them destroyed (wherever that happened), and the objects
 * of the type the function destroyed itself (whoever made them).  Creator
 * ULMA_OBJ_NO_CREATOR stands for objects made before tracing began or not
 * kept by the agent.  One table a thread in the aggregator, added up across
 * threads like its other totals; memory follows the pairs seen, up to
 * ULMA_OBJ_MAX_ROWS a table.
 */
#ifndef ULMA_OBJSTATS_H
#define ULMA_OBJSTATS_H

#include <stddef.h>
#include <stdint.h>
#include "map.h"
#include "records.h"

/* ULMA_OBJ_NO_CREATOR, ULMA_OBJ_MAX_ROWS, ULMA_OBJ_PAST_ROWS: records.h (the layout's one source) */

typedef struct {
    uint32_t function;
    uint16_t type;
    uint16_t pad;
    uint64_t created, freed, freed_here;
    /* bytes of the objects made, and of those of them destroyed, where the
     * records tell sizes (records.h ULMA_OBJF_SIZE_MASK; else 0) */
    uint64_t bytes_made, bytes_freed;
} ulma_obj_row;

typedef struct {
    ulma_obj_row *rows; /* in the order first seen */
    size_t n, cap;
    ulma_map index;     /* function << 16 | type -> row */
} ulma_objstats;

/* An object of `type` (`bytes` of it, 0: not told) made by `creator`; 0, or
 * -1 if memory ran out. */
int ulma_objstats_new(ulma_objstats *s, uint32_t creator, uint16_t type, uint64_t bytes);
/* One destroyed in function `freer`, made by `creator`. */
int ulma_objstats_free(ulma_objstats *s, uint32_t creator, uint16_t type, uint32_t freer, uint64_t bytes);
int ulma_objstats_merge(ulma_objstats *dst, const ulma_objstats *src);
void ulma_objstats_release(ulma_objstats *s);

#endif
