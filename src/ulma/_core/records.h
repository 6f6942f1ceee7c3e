/*
 * records.h -- the one place that defines ulma's shared-memory session layout
 * and its 16-byte event record.  Python never re-declares these numbers: the
 * extension exports them (see module.c, `_core.LAYOUT`) and ulma.format.records
 * reads them from there; a test checks the pure-Python decoder against them.
 *
 * Session (one memfd, mapped by the agent and by the monitor):
 *
 *   offset 0                 ulma_session_header   (4 KiB, versioned)
 *   ULMA_CONTROL_OFFSET      ulma_control          (in the header's page)
 *   freeq_offset             free-ring queue       (freeq_slots uint32 slot numbers)
 *   symtab_offset            symbol table          (append-only entries)
 *   rings_offset + i*stride  ring i: ulma_ring_header (256 B) + events
 *
 * Rings come in chunks of chunk_slots; each process maps a chunk the first
 * time it needs one of its rings.  The memfd is sized for max_threads rings
 * from the start, but it is sparse: a page costs memory only once touched,
 * and the monitor gives a finished thread's ring back (PUNCH_HOLE) before it
 * offers the slot for reuse.
 *
 * Ring slots are reused.  A thread claims the slot at the free queue's tail
 * if there is one, else the next never-used slot (rings_used).  When a
 * thread ends it marks its ring FINISHED; the monitor replays the ring to its
 * end, closes that thread's totals, zeroes the ring (FREE again, positions
 * 0) and pushes the slot at the queue's head.  The queue has one producer
 * (the monitor) and consumers that claim a slot by compare-and-swap on the
 * tail.  The monitor keeps its own copy of every layout field and of its
 * read positions: the program can write the whole session.
 *
 * Event record (little-endian, 16 bytes):
 *
 *   0       8          12     13      14      16
 *   | ticks | id       | kind | flags | aux   |
 *
 * Ring protocol (single producer = one thread of the profiled program,
 * single consumer = the monitor):
 *   - the producer writes events at write_pos, release-stores write_pos+1 (its
 *     own cache line; a plain store on x86) and, every ULMA_PUBLISH_EVERY
 *     events, release-stores `published`; it reads the consumer's `read_pos`
 *     only when its cached copy says the ring is full.
 *   - the consumer acquire-loads `published`, replays [read_pos, published),
 *     then release-stores `read_pos`.
 *   - after the producer's process is gone the consumer may read `write_pos`
 *     directly: every event the program wrote is recovered ("post-mortem").
 *   - a full ring drops the event and counts it (`dropped`: the producer
 *     alone writes it); while it stays full, events are only counted, and
 *     room is looked for again at most every 50 us; the first event that
 *     finds room is preceded by a SYNC group that restates the thread's stack.
 */
#ifndef ULMA_RECORDS_H
#define ULMA_RECORDS_H

#include <stdint.h>
#include <stdatomic.h>
#include <assert.h>

#define ULMA_SESSION_MAGIC 0x31534553414d4c55ULL /* "ULMASES1" */
#define ULMA_FORMAT_VERSION 5u /* 2: CPU readings, native calls, probe cost; 3: reused rings in chunks;
                                  4: the control channel; 5: asyncio tasks */
#define ULMA_HEADER_BYTES 4096u
#define ULMA_RING_HEADER_BYTES 256u
#define ULMA_PUBLISH_EVERY 32u /* power of two */
#define ULMA_MAX_SYNC_FRAMES 4096u

/*
 * What a session may be asked for (ulma's options refuse anything outside,
 * naming the bound; ulma.cli.bounds reads these through `_core.LIMITS`).
 *
 * Rings: the monitor, when a drain found little, waits ULMA_DRAIN_WAIT_US
 * before the next.  A ring must hold what one thread writes meanwhile: a
 * Python call and return with their probes come at most about every 32 ns
 * per event (seen here at best 55 ns, a loop of empty calls, 3.12), so 2 ms
 * is at most 62 500 events: 2^16 (1 MiB).  bench/ring_sizes.py (1 M empty
 * calls, medians of 3, 2 cores at load 11): 1 KiB dropped 99.4 % of the
 * events and ran 2.1x as long as 1 MiB, 64 KiB 81 %, 256 KiB 41 %; 1 MiB
 * 1.3 %, 8 MiB none.
 * Half the minimum also holds a whole stack restatement (below that the
 * agent cuts restatements short: agent.c, ulma_emit_slow).  The maximum,
 * 2^26 events (1 GiB), holds seconds of a thread at full speed, longer than
 * any pause of the monitor; a larger ring only pins memory, as the writer
 * goes round all of its pages.  Session() itself still takes rings down to
 * 64 events (tests force drops with them).
 */
#define ULMA_DRAIN_WAIT_US 2000u
#define ULMA_FASTEST_EVENT_NS 32u
#define ULMA_MIN_RING_EVENTS (1ull << 16)
#define ULMA_MAX_RING_EVENTS (1ull << 26)
/* Ring slots: more would only make the monitor's bookkeeping big. */
#define ULMA_MAX_THREADS 65536u
/* CPU readings at most every 10 s: rarer ones would split no run's time. */
#define ULMA_MAX_CPU_INTERVAL_US 10000000u

/* Event kinds.  Values are part of the trace format: append, never renumber. */
enum ulma_kind {
    ULMA_CALL = 1,       /* a Python function starts (PY_START)            */
    ULMA_RETURN = 2,     /* it returns (PY_RETURN)                          */
    ULMA_UNWIND = 3,     /* it exits by an exception (PY_UNWIND)            */
    ULMA_YIELD = 4,      /* a generator/coroutine suspends (PY_YIELD)       */
    ULMA_RESUME = 5,     /* it is resumed (PY_RESUME)                       */
    ULMA_THROW = 6,      /* it is resumed with an exception (PY_THROW)      */
    ULMA_C_CALL = 7,
    ULMA_C_RETURN = 8,
    ULMA_SCOPE_BEGIN = 9, /* a native scope opens (ulma.h's ULMA_SCOPE)     */
    ULMA_SCOPE_END = 10,  /* and closes                                      */
    ULMA_OBJ_NEW = 11,
    ULMA_OBJ_FREE = 12,
    ULMA_CPU_SAMPLE = 13,
    ULMA_SYNC = 14,      /* stack restatement, see ULMA_SYNC_* flags        */
    ULMA_MARK = 15,      /* an instant (ULMA_MARK): id its site's           */
    ULMA_TASK = 16,      /* the next event is a step of an asyncio task     */
    ULMA_COUNTER = 17,   /* a counter's value (ULMA_COUNTER), two records    */
    ULMA_KIND_MAX = 17
};

/*
 * Native scopes (ulma.h, scopes.c).  A site (a place in C or C++ code) is
 * named once per session by a symbol of kind ULMA_SYM_SCOPE, ULMA_SYM_MARK
 * or ULMA_SYM_COUNTER (name, file, line), from the functions' id space.  A
 * scope is a SCOPE_BEGIN and a SCOPE_END record of its site's id on the
 * thread's own ring; the replay takes them as a native function's entry and
 * exit, so a scope nests under the Python function that opened it and a
 * Python function called inside it nests under the scope.  A restatement
 * states open scopes among the Python frames, where they were opened.  A
 * MARK record is an instant.  A counter's value (60 bits, two's complement:
 * ULMA_COUNTER clamps to that) is two records with the same ticks: COUNTER
 * (id the site, aux the value's bits 44..59), then COUNTER with
 * ULMA_COUNTER_VALUE (id bits 0..27, aux bits 28..43).
 */
#define ULMA_COUNTER_VALUE 0x01u

/*
 * TASK records (tasks.c).  An asyncio task runs its coroutine one step at a
 * time; the agent writes a TASK record right before the event that starts a
 * step of a task's own coroutine (its CALL, RESUME or THROW) and right before
 * the one that ends it (YIELD, RETURN or UNWIND, with ULMA_TASKF_END): id =
 * the task's number (1, 2, ... in the order the agent first saw the tasks of
 * the process; below 2^31), flags ULMA_TASKF_NEW on its first record.  Its
 * name is a symbol of kind ULMA_SYM_TASK and id ULMA_TASK_SYMBOL_BASE +
 * number, appended before that record -- unless task names already took
 * ULMA_TASK_NAMES_SHARE of the symbol table, which is the functions': then
 * it is counted (tasks_unnamed) and the task goes by its number.  The record
 * and its event are written together or not at all (a full ring drops both,
 * counted as one event lost): nothing comes between them, and a TASK record
 * followed by anything but a coroutine's event of its direction is damage.
 * Tasks past the agent's own bound (tasks.c TASK_MAP_MAX coroutines kept at
 * once) get no number and no records: counted (tasks_untold).
 */
/*
 * Object lifecycle records (objtrace.c, --objects).  OBJ_NEW: an object of
 * type `aux` was made while function `id` was the thread's innermost Python
 * frame (0: none); OBJ_FREE: one was destroyed, `id` the function that made
 * it, or ULMA_OBJF_UNKNOWN in flags when the agent does not know (made
 * before tracing began, or not kept: objects_untracked); the function that
 * destroyed it is the one on top of the replayed stack.  Types have their
 * own ids, 1 .. ULMA_MAX_TYPES - 1 (ULMA_MAX_TYPES - 1 stands for every type
 * past the limit: types_overflow), named by symbols of kind ULMA_SYM_TYPE
 * and id ULMA_TYPE_SYMBOL_BASE + type id ("module.qualname").  Neither
 * record closes a gap or moves the stack.
 */
#define ULMA_OBJF_UNKNOWN 0x01u
/* an OBJ_FREE the ref tracer was not told of (CPython 3.13.0's eval loop
 * frees some objects without telling it), written when the object's
 * address was taken by a new one: it went earlier, in a function unknown */
#define ULMA_OBJF_LATE 0x02u
/* Flags bits 2..7 of both records: the object's size class where the agent
 * knows its bytes (the object allocator told them: mechanism ALLOCATOR), 0
 * where it does not (the ref tracer is told no size).  Class c 1..32 stands
 * for 16 * c bytes (pymalloc's own steps: exact for the blocks it hands out),
 * 33..63 for 2^(c - 23) bytes (1 KiB .. 1 TiB: a bound, rounded up). */
#define ULMA_OBJF_SIZE_SHIFT 2
#define ULMA_OBJF_SIZE_MASK 0xFCu
static inline unsigned ulma_obj_size_class(uint64_t bytes)
{
    if (bytes <= 512)
        return bytes ? (unsigned)((bytes + 15) / 16) : 1u;
    unsigned c = 33; /* 2^10 */
    while (c < 63 && (1ull << (c - 23)) < bytes)
        c++;
    return c;
}
static inline uint64_t ulma_obj_class_bytes(unsigned c)
{
    return c == 0 ? 0 : c <= 32 ? 16ull * c : 1ull << (c - 23);
}
#define ULMA_TYPE_SYMBOL_BASE 0x40000000u
#define ULMA_MAX_TYPES 0x10000u
/* The replay's per (function, type) tables (objstats.h): the maker of objects
 * made before tracing began or not kept by the agent, and the one row of a
 * table that holds the objects of pairs past its ULMA_OBJ_MAX_ROWS (a real
 * program makes far fewer pairs; a crafted trace cannot make a row per
 * record). */
#define ULMA_OBJ_NO_CREATOR 0xFFFFFFFFu
/* A table keeps at most ULMA_OBJ_MAX_ROWS pairs (a real program makes far
 * fewer: functions that make objects times the types each makes); counts
 * of pairs past it go to one row (ULMA_OBJ_PAST_ROWS, type
 * ULMA_OBJ_PAST_ROWS_TYPE), so nothing is lost and a crafted trace cannot
 * make a row for each of its records. */
#define ULMA_OBJ_MAX_ROWS 0x40000u /* 2^18 */
#define ULMA_OBJ_PAST_ROWS 0xFFFFFFFEu
#define ULMA_OBJ_PAST_ROWS_TYPE 0xFFFFu
/* objects_mechanism: the ref tracer, told of every destruction (checked at
 * start), or told of some only (LATE: the rest found when addresses are
 * taken again; an object gone unseen and its address never reused stays
 * counted live) */
/* ALLOCATOR (Python 3.11, 3.12: no ref tracer): the object allocator's
 * blocks (PyMem_SetAllocator, PYMEM_DOMAIN_OBJ), each typed by the type
 * pointer its object header holds once made; objects CPython reuses from a
 * free list (float, tuple, list, dict, ...) are not seen made or destroyed,
 * and a block kept in one counts as live */
enum { ULMA_OBJECTS_OFF = 0, ULMA_OBJECTS_REFTRACER = 1, ULMA_OBJECTS_REFTRACER_LATE = 3,
       ULMA_OBJECTS_ALLOCATOR = 4 };

#define ULMA_TASKF_NEW 0x01u
#define ULMA_TASKF_END 0x02u /* the step ends (else it starts) */
#define ULMA_TASK_SYMBOL_BASE 0x80000000u
/*
 * Thread names.  A Python thread's name (threading.Thread.name) is a symbol
 * of kind ULMA_SYM_THREAD and id ULMA_THREAD_SYMBOL_BASE + its OS thread id
 * (Linux's are below 2^22), written when the thread starts and, for those
 * already running, when the session starts (symbols.c ulma_thread_name); a
 * later name of the same thread is a later symbol of the same id (the last
 * one read wins).  Names take at most 1 / ULMA_THREAD_NAMES_SHARE of the
 * symbol table: past that a thread goes by its id.
 */
#define ULMA_THREAD_SYMBOL_BASE 0x60000000u
#define ULMA_THREAD_ID_MAX 0x10000000u
#define ULMA_THREAD_NAMES_SHARE 8u
#define ULMA_TASK_NAMES_SHARE 4u /* at most a quarter of the table */

/* flags of a SYNC record: a group is one BEGIN record (aux = frame count)
 * followed by `aux` FRAME records, outermost frame first, all with the same
 * ticks.  The group states the stack just before the event that follows it. */
#define ULMA_SYNC_BEGIN 0x01u
#define ULMA_SYNC_FRAME 0x02u
#define ULMA_SYNC_TRUNCATED 0x04u /* outer frames were left out */
#define ULMA_SYNC_AFTER_DROP 0x08u /* events were lost before this group */
/* a restatement after what is traced changed (a function switched off or on
 * through the control channel): nothing was lost, the old stack ran until
 * the group's tick, and frames the group leaves out are not traced now */
#define ULMA_SYNC_RESTATE 0x10u

/* flags of an entering record (CALL, RESUME, THROW, C_CALL) or a SYNC FRAME:
 * the function is excluded (a filter): its time is unmeasured for its
 * callers and it gets no row. */
#define ULMA_EVF_UNMEASURED 0x80u
/* flag of a CALL record: aux = ticks from the caller's CALL instruction to
 * this first instruction (saturated at 65535), seen with native calls. */
#define ULMA_EVF_DISPATCH 0x40u
/* flag of any CALL, RESUME, THROW, YIELD, RETURN or UNWIND record of a
 * coroutine (async def, or types.coroutine): a YIELD of it suspends it in
 * `await`, until its next RESUME or THROW; a generator's YIELD hands out a
 * value and has no such flag.  (Async generators have none either: their
 * YIELD is both.) */
#define ULMA_EVF_AWAIT 0x10u

/* A CPU reading (kind ULMA_CPU_SAMPLE) carries a 48-bit nanosecond value,
 * modulo 2^48, in id (low 32 bits) and aux (high 16); its ticks are those of
 * the event that follows it, which is stamped after the reading, so the gap
 * is the reading's own cost.  flags 0: the thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID); ULMA_CPU_RUN_DELAY: its run-queue wait from
 * /proc/thread-self/schedstat (read after the thread was off CPU a while). */
#define ULMA_CPU_RUN_DELAY 0x01u
/* with ULMA_CPU_RUN_DELAY: the thread made no voluntary context switch since
 * the previous run-delay record (getrusage's ru_nvcsw), so it never blocked:
 * all its off-CPU time was waiting for a CPU, including time a hypervisor
 * took (steal), which no run delay counts. */
#define ULMA_CPU_NO_BLOCK 0x02u
#define ULMA_CPU_VALUE_BITS 48

typedef struct {
    uint64_t ticks;
    uint32_t id;
    uint8_t kind;
    uint8_t flags;
    uint16_t aux;
} ulma_event;
static_assert(sizeof(ulma_event) == 16, "event records are 16 bytes");
static_assert(ULMA_MIN_RING_EVENTS >= ULMA_DRAIN_WAIT_US * 1000ull / ULMA_FASTEST_EVENT_NS,
              "the smallest ring holds what a thread writes while the monitor waits");
static_assert(ULMA_MIN_RING_EVENTS / 2 >= ULMA_MAX_SYNC_FRAMES + 4u,
              "half the smallest ring holds a whole stack restatement");

/* Symbol kinds and flags. */
enum ulma_symbol_kind { ULMA_SYM_PYFUNC = 1, ULMA_SYM_CFUNC = 2, ULMA_SYM_SCOPE = 3, ULMA_SYM_TYPE = 4,
                        ULMA_SYM_TASK = 5, ULMA_SYM_MARK = 6, ULMA_SYM_COUNTER = 7, ULMA_SYM_THREAD = 8 };
#define ULMA_SYMF_HIDDEN 0x01u     /* ulma's own bootstrap code: not reported */
#define ULMA_SYMF_UNMEASURED 0x02u /* excluded by a filter: time unmeasured */
/* not traced from the start (--exclude, or outside every --only pattern):
 * no event of it is ever written; its time is its callers' self time */
#define ULMA_SYMF_OFF 0x04u

/* agent_flags in the session header: what the agent measures */
#define ULMA_AGENT_CPU_SAMPLES 0x01u
#define ULMA_AGENT_NATIVE_CALLS 0x02u
#define ULMA_AGENT_SCHEDSTAT 0x04u

/* One symbol-table entry; `size` is written last (release) and is the
 * entry's total length rounded up to 8.  name and file bytes (UTF-8, no NUL)
 * follow the fixed part. */
typedef struct {
    _Atomic uint32_t size;
    uint32_t id;
    uint16_t kind;
    uint16_t flags;
    uint32_t line;
    uint32_t name_len;
    uint32_t file_len;
} ulma_symbol;
static_assert(sizeof(ulma_symbol) == 24, "symbol entry header is 24 bytes");

enum ulma_clock_source { ULMA_CLOCK_MONOTONIC = 1, ULMA_CLOCK_TSC = 2, ULMA_CLOCK_CNTVCT = 3 };
/* FREE (never used, or zeroed by the monitor after a thread) -> ACTIVE (a
 * thread claimed it) -> FINISHED (the thread ended) -> FREE */
enum ulma_ring_state { ULMA_RING_FREE = 0, ULMA_RING_ACTIVE = 1, ULMA_RING_FINISHED = 2 };
enum ulma_agent_state { ULMA_AGENT_NONE = 0, ULMA_AGENT_RUNNING = 1, ULMA_AGENT_STOPPED = 2 };

typedef struct {
    /* written once by the creator (the monitor) */
    uint64_t magic;
    uint32_t version;
    uint32_t header_bytes;
    uint32_t max_threads;
    uint32_t clock_source;
    uint64_t ring_events;     /* capacity of each ring, a power of two */
    uint64_t ring_stride;     /* bytes from one ring header to the next */
    uint64_t symtab_offset;
    uint64_t symtab_bytes;
    uint64_t rings_offset;
    uint64_t total_bytes;
    uint64_t start_ticks;     /* clock reading at creation ...        */
    uint64_t start_mono_ns;   /* ... and CLOCK_MONOTONIC beside it    */
    uint64_t start_real_ns;   /* ... and CLOCK_REALTIME               */
    uint32_t creator_pid;
    uint32_t creator_uid;
    double ns_per_tick_hint;  /* a quick calibration at creation (2 ms),
                                 enough to compare CPU ns with ticks */
    _Atomic uint64_t program_start_ticks; /* set by the agent when its start-up
                                             (calibration) is done and the
                                             program's own code begins; 0 before */
    uint32_t chunk_slots;     /* rings per mapped chunk */
    uint32_t freeq_slots;     /* free queue capacity, a power of two >= max_threads */
    uint64_t freeq_offset;
    uint8_t reserved0[8];
    /* shared, atomics */
    _Atomic uint32_t rings_used;     /* ring slots ever handed out (may pass max_threads) */
    _Atomic uint32_t agent_state;
    _Atomic uint32_t agent_pid;
    _Atomic uint32_t next_symbol_id; /* ids start at 1 */
    _Atomic uint64_t symtab_reserved;  /* bytes reserved by writers */
    _Atomic uint64_t symtab_overflow;  /* definitions that did not fit */
    _Atomic uint64_t threads_overflow; /* threads that found no free ring: untraced */
    _Atomic uint64_t unringed_events;  /* their events, lost (counted by the agent) */
    _Atomic uint32_t engine;           /* 1 sys.monitoring, 2 pep523 */
    _Atomic uint32_t tool_id;          /* sys.monitoring tool id in use */
    _Atomic uint32_t agent_flags;      /* ULMA_AGENT_* */
    _Atomic uint32_t probe_ps;         /* calibrated cost of one probe, ps */
    _Atomic uint32_t cpu_interval_us;  /* CPU readings at most this often */
    _Atomic uint32_t hooks_displaced;  /* the program's own profile function or frame
                                          evaluator took over from ulma's (PEP 523) */
    _Atomic uint32_t ids_overflow;     /* functions seen once every id was taken */
    _Atomic uint64_t freeq_head;       /* free queue: the monitor pushes here ... */
    _Atomic uint64_t freeq_tail;       /* ... threads claim here (CAS) */
    _Atomic uint32_t forked_children;  /* children forked while profiling: unprofiled */
    _Atomic uint32_t tasks_unnamed;    /* tasks whose name found no room (ULMA_TASK_NAMES_SHARE) */
    _Atomic uint32_t tasks_seen;       /* asyncio tasks numbered (the last number given) */
    _Atomic uint32_t tasks_untold;     /* asyncio tasks given no number (TASK records) */
    /* calibrated cost of a gap closed by a native scope's begin (a mark's,
     * a counter's) record, and by its end record, ps (scopes.c) */
    _Atomic uint32_t scope_probe_ps;
    _Atomic uint32_t scope_end_probe_ps;
    /* --objects (objtrace.c): how the agent sees objects (ULMA_OBJECTS_*),
     * types past ULMA_MAX_TYPES, objects whose creator found no room in the
     * agent's table (their destruction has no known creator), and whether
     * another ref tracer stood in ulma's way */
    _Atomic uint32_t objects_mechanism;
    _Atomic uint32_t types_overflow;
    _Atomic uint64_t objects_untracked;
    _Atomic uint32_t objects_displaced;
} ulma_session_header;
static_assert(sizeof(ulma_session_header) <= ULMA_HEADER_BYTES, "header fits its page");


/*
 * The control channel: monitor -> agent, in the session header's page at
 * ULMA_CONTROL_OFFSET.  Both `ulma run` and `ulma attach` map the session,
 * so both have it; it is as private as the memfd (only the monitor and the
 * program hold it).  One writer (the monitor), one reader (the agent).
 *
 *   - the monitor writes command k (k = 1, 2, ...) into cmd[(k - 1) %
 *     ULMA_CONTROL_SLOTS] -- op, arg, then seq = k with release -- and then
 *     release-stores posted = k.  It never has more than ULMA_CONTROL_SLOTS
 *     commands unacknowledged.
 *   - the agent polls in its slow path (ulma_emit_slow, taken every CPU
 *     interval, or every ULMA_CONTROL_POLL_US without CPU readings): one
 *     load of `posted` against its own private count.  As a program whose
 *     traced functions do not run takes no slow path (everything switched
 *     off, say), the monitor also rings `doorbell`: an agent thread waiting
 *     on it (a futex, no GIL) asks the interpreter for a pending call, and
 *     the main thread polls at its next safe point.  For each new
 *     command it checks seq == k, the op and the argument, applies it (or
 *     refuses it: status REFUSED, `refused` + 1), writes status and the tick
 *     it took effect (done_ticks), then release-stores acked = k.
 *   - the agent trusts nothing it reads here: its own copy of acked decides
 *     what is new, at most ULMA_CONTROL_SLOTS commands are read per poll, and
 *     a command it cannot make sense of is refused and counted, never
 *     followed.  A channel whose version is not ULMA_CONTROL_VERSION is
 *     never read.
 *
 * Ops: OFF and ON switch the Python function of id `arg` off or on (see
 * agent.c control_apply for what "off" means on each engine).  INTERVAL
 * sets how often the threads read their CPU clock: every `arg` microseconds
 * (1 to ULMA_MAX_CPU_INTERVAL_US; refused when the run reads none, as with
 * --cpu-interval 0); the header's cpu_interval_us says the one in effect.
 */
#define ULMA_CONTROL_VERSION 1u
#define ULMA_CONTROL_OFFSET 1024u
#define ULMA_CONTROL_SLOTS 64u /* power of two */
#define ULMA_CONTROL_POLL_US 10000u
enum ulma_control_op { ULMA_CTL_OFF = 1, ULMA_CTL_ON = 2, ULMA_CTL_INTERVAL = 7 }; /* 3-6: single-step */
enum ulma_control_status { ULMA_CTL_PENDING = 0, ULMA_CTL_APPLIED = 1, ULMA_CTL_REFUSED = 2 };

typedef struct {
    _Atomic uint64_t seq;        /* monitor: the command's number, stored last */
    uint32_t op;                 /* monitor: ULMA_CTL_* */
    uint32_t arg;                /* monitor: a function id */
    _Atomic uint64_t done_ticks; /* agent: when it took effect (session clock) */
    _Atomic uint32_t status;     /* agent: ULMA_CTL_APPLIED or ULMA_CTL_REFUSED */
    uint32_t pad;
} ulma_control_cmd;
static_assert(sizeof(ulma_control_cmd) == 32, "a control command is 32 bytes");

typedef struct {
    uint32_t version;          /* written once by the creator */
    uint32_t slots;
    _Atomic uint64_t posted;   /* monitor: commands written */
    _Atomic uint64_t acked;    /* agent: commands applied or refused */
    _Atomic uint64_t refused;  /* agent: commands refused (garbage, unknown op or id) */
    _Atomic uint32_t doorbell; /* monitor: + 1 and FUTEX_WAKE after posting (a futex word) */
    uint8_t pad[28];
    ulma_control_cmd cmd[ULMA_CONTROL_SLOTS];
} ulma_control;
static_assert(sizeof(ulma_control) == 2112, "control block layout: 64 bytes, then the slots");
static_assert(64 + sizeof(ulma_control_cmd) * ULMA_CONTROL_SLOTS == sizeof(ulma_control), "control block layout");

typedef struct {
    /* line 0: the producer's cursors.  The consumer reads write_pos only
     * post-mortem and for a thread quiet for 20 ms (acquire; the producer
     * stores it with release, after the records); the rest is the producer's. */
    _Atomic uint64_t write_pos;
    uint64_t tail_cache;
    uint32_t need_sync;
    uint32_t sync_flags;
    uint8_t pad0[40];
    /* line 1: producer -> consumer */
    _Atomic uint64_t published;
    _Atomic uint64_t dropped;
    uint8_t pad1[48];
    /* line 2: consumer -> producer */
    _Atomic uint64_t read_pos;
    uint8_t pad2[56];
    /* line 3: identity, written by the thread that claims the slot */
    _Atomic uint32_t state;
    uint32_t os_tid;
    uint64_t py_thread_ident;
    uint8_t pad3[48];
} ulma_ring_header;
static_assert(sizeof(ulma_ring_header) == ULMA_RING_HEADER_BYTES, "ring header is 4 cache lines");

static_assert(sizeof(ulma_session_header) <= ULMA_CONTROL_OFFSET &&
                  ULMA_CONTROL_OFFSET + sizeof(ulma_control) <= ULMA_HEADER_BYTES,
              "the control block sits in the header's page, after the header");

static inline ulma_control *ulma_session_control(ulma_session_header *h)
{
    return (ulma_control *)((char *)h + ULMA_CONTROL_OFFSET);
}

/*
 * Single-step (agent -> monitor), in the header's page after the control
 * block.  The monitor asks through the control channel (ops STEP_*, below);
 * the agent says here where the stepped thread stopped.  Only one thread
 * steps: the first whose event comes after a STEP_STOP; the others run on.
 * The agent writes the fields, then release-stores seq + 1 and state; the
 * monitor reads seq, the fields, seq again (a torn read is retried), and
 * trusts nothing (nframes is bounded, ids are looked up).  The stopped
 * thread blocks in the agent without the GIL; a command, a signal, the
 * session's end or the monitor's death (its pid gone) releases it.
 *   STEP_STOP      stop at the next call or return event of any thread
 *   STEP_NEXT      let the stopped thread go to its next event
 *   STEP_OVER      ... to its next event at the same depth or lower
 *   STEP_CONTINUE  leave step mode: every thread runs free
 */
#define ULMA_STEP_OFFSET 3200u
#define ULMA_STEP_FRAMES 192u
enum ulma_control_step_op { ULMA_CTL_STEP_STOP = 3, ULMA_CTL_STEP_NEXT = 4, ULMA_CTL_STEP_OVER = 5,
                            ULMA_CTL_STEP_CONTINUE = 6 };
enum ulma_step_state { ULMA_STEP_IDLE = 0, ULMA_STEP_ARMED = 1, ULMA_STEP_STOPPED = 2,
                       ULMA_STEP_RUNNING = 3, ULMA_STEP_SIGNALED = 4 };

typedef struct {
    _Atomic uint32_t state; /* ULMA_STEP_* */
    _Atomic uint32_t seq;   /* + 1 at every stop, stored after the fields */
    uint32_t slot;          /* the stopped thread's ring */
    uint32_t os_tid;
    uint32_t kind;          /* the event (ULMA_CALL, ...) */
    uint32_t id;            /* its function */
    uint32_t nframes;       /* frames[0] the event's own function, then its callers */
    uint32_t truncated;
    uint64_t ticks;
    uint64_t ring_pos;      /* the ring's write_pos once the event was published */
    uint8_t pad[16];
    uint32_t frames[ULMA_STEP_FRAMES];
} ulma_step;
static_assert(sizeof(ulma_step) == 64 + 4 * ULMA_STEP_FRAMES, "step block layout");
static_assert(ULMA_CONTROL_OFFSET + sizeof(ulma_control) <= ULMA_STEP_OFFSET &&
                  ULMA_STEP_OFFSET + sizeof(ulma_step) <= ULMA_HEADER_BYTES,
              "the step block sits in the header's page, after the control block");

static inline ulma_step *ulma_session_step(ulma_session_header *h)
{
    return (ulma_step *)((char *)h + ULMA_STEP_OFFSET);
}

/* Where slot's ring starts in the memfd. */
static inline uint64_t ulma_ring_file_offset(uint64_t rings_offset, uint64_t stride, uint32_t slot)
{
    return rings_offset + (uint64_t)slot * stride;
}

static inline _Atomic uint32_t *ulma_freeq(ulma_session_header *h, uint64_t freeq_offset)
{
    return (_Atomic uint32_t *)((char *)h + freeq_offset);
}

static inline ulma_event *ulma_ring_events(ulma_ring_header *r)
{
    return (ulma_event *)((char *)r + ULMA_RING_HEADER_BYTES);
}

#endif
