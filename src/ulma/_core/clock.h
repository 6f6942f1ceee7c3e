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

/* Which source this machine can trust (see clock.c). */
uint32_t ulma_clock_choose(void);
const char *ulma_clock_name(uint32_t source);

#endif
