/*
 * clock.h -- event timestamps.  The cycle counter (rdtsc / cntvct_el0) where
 * the kernel trusts it, CLOCK_MONOTONIC otherwise; the session header says
 * which, and the monitor calibrates ticks to nanoseconds.
 */
#ifndef ULMA_CLOCK_H
#define ULMA_CLOCK_H

#include <stdint.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif
#include "records.h"

static inline uint64_t ulma_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t ulma_real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Hot: one instruction on the cycle-counter paths. */
static inline uint64_t ulma_ticks(uint32_t source)
{
#if defined(__x86_64__) || defined(__i386__)
    if (source == ULMA_CLOCK_TSC)
        return __rdtsc();
#elif defined(__aarch64__)
    if (source == ULMA_CLOCK_CNTVCT) {
        uint64_t v;
        __asm__ volatile("mrs %0, cntvct_el0" : "=r"(v));
        return v;
    }
#endif
    return ulma_mono_ns();
}

/* The tick in *t and 1 when `source` is read without a call (TSC, CNTVCT);
 * else 0 and the caller goes the long way (ulma_ticks). */
static inline int ulma_ticks_inline(uint32_t source, uint64_t *t)
{
#if defined(__x86_64__) || defined(__i386__)
    if (source == ULMA_CLOCK_TSC) {
        *t = __rdtsc();
        return 1;
    }
#elif defined(__aarch64__)
    if (source == ULMA_CLOCK_CNTVCT) {
        __asm__ volatile("mrs %0, cntvct_el0" : "=r"(*t));
        return 1;
    }
#endif
    (void)source;
    (void)t;
    return 0;
}

/* The machine's cycle counter, where ulma reads one (x86 TSC, arm64
 * CNTVCT): ULMA_COUNTER_SOURCE is its clock source.  For code chosen once
 * the session's source is known to be it (no check per read). */
#if defined(__x86_64__) || defined(__i386__)
#define ULMA_COUNTER_SOURCE ULMA_CLOCK_TSC
static inline uint64_t ulma_counter_ticks(void)
{
    return __rdtsc();
}
#elif defined(__aarch64__)
#define ULMA_COUNTER_SOURCE ULMA_CLOCK_CNTVCT
static inline uint64_t ulma_counter_ticks(void)
{
    uint64_t v;
    __asm__ volatile("mrs %0, cntvct_el0" : "=r"(v));
    return v;
}
#endif

/* A tick reading and the CLOCK_MONOTONIC time it was taken at, known to
 * within width_ns: the tick is read between two monotonic reads, and the
 * tightest of several such brackets is kept, so a preemption between the
 * reads (which can last milliseconds on a busy machine) cannot pair a tick
 * with the wrong time. */
typedef struct {
    uint64_t ticks;
    uint64_t mono_ns;  /* the middle of the bracket */
    uint64_t width_ns; /* the bracket's width: the pairing's uncertainty */
} ulma_clock_pair;

ulma_clock_pair ulma_clock_pair_read(uint32_t source);
/* ns per tick over at least `window_ns` between two tight pairs (the first
 * returned in *start if not NULL); 1.0 for CLOCK_MONOTONIC.  `from`, if not
 * NULL, is the first pair, read earlier from the same source: the window
 * then runs from it, and is often over already.  See clock.c. */
double ulma_clock_calibrate(uint32_t source, uint64_t window_ns, ulma_clock_pair *start,
                            const ulma_clock_pair *from);

/* Which source this machine can trust (see clock.c). */
uint32_t ulma_clock_choose(void);
const char *ulma_clock_name(uint32_t source);

#endif
