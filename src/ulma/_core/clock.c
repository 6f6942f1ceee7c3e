/* clock.c -- choosing a trustworthy tick source (cold path). */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include "clock.h"

#if defined(__x86_64__) || defined(__i386__)
/* The TSC is usable as a clock only if it ticks at a constant rate, keeps
 * ticking in deep C-states, and the kernel itself chose it as clocksource
 * (the kernel checks cross-CPU synchronisation before doing so). */
static int tsc_trusted(void)
{
    char line[4096];
    int constant = 0, nonstop = 0, kernel = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "flags", 5) == 0) {
                constant = strstr(line, " constant_tsc") != NULL;
                nonstop = strstr(line, " nonstop_tsc") != NULL;
                break;
            }
        }
        fclose(f);
    }
    f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (f) {
        if (fgets(line, sizeof line, f))
            kernel = strncmp(line, "tsc", 3) == 0;
        fclose(f);
    }
    return constant && nonstop && kernel;
}
#endif

uint32_t ulma_clock_choose(void)
{
#if defined(__x86_64__) || defined(__i386__)
    if (tsc_trusted())
        return ULMA_CLOCK_TSC;
#elif defined(__aarch64__)
    return ULMA_CLOCK_CNTVCT; /* architecturally constant-rate and synchronised */
#endif
    return ULMA_CLOCK_MONOTONIC;
}

const char *ulma_clock_name(uint32_t source)
{
    switch (source) {
    case ULMA_CLOCK_TSC: return "tsc";
    case ULMA_CLOCK_CNTVCT: return "cntvct";
    case ULMA_CLOCK_MONOTONIC: return "monotonic";
    default: return "unknown";
    }
}

/* Brackets per pair: a few hundred ns in all unless the thread is
 * preempted, which spoils one bracket, not the tightest of 16. */
#define PAIR_TRIES 16
/* An end pair wider than this many times the start's (or than
 * PAIR_SLACK_NS) is read again: the window only grows, the error shrinks. */
#define PAIR_WIDER 4
#define PAIR_SLACK_NS 500u
/* ... but calibration gives up waiting for a tight pair after this long */
#define CALIBRATE_MAX_NS 100000000u

ulma_clock_pair ulma_clock_pair_read(uint32_t source)
{
    ulma_clock_pair best = {0, 0, UINT64_MAX};
    for (int i = 0; i < PAIR_TRIES; i++) {
        uint64_t m0 = ulma_mono_ns();
        uint64_t t = ulma_ticks(source);
        uint64_t m1 = ulma_mono_ns();
        if (m1 - m0 < best.width_ns) {
            best.ticks = t;
            best.mono_ns = m0 + (m1 - m0) / 2;
            best.width_ns = m1 - m0;
        }
    }
    return best;
}

/* The error of the result is at most (start width + end width) / 2 over
 * the window: ~1e-4 over 2 ms on an ordinary machine, loaded or not, where
 * one unbracketed pair was off by up to the length of a preemption. */
double ulma_clock_calibrate(uint32_t source, uint64_t window_ns, ulma_clock_pair *start,
                            const ulma_clock_pair *from)
{
    ulma_clock_pair a = from ? *from : ulma_clock_pair_read(source), b;
    if (start)
        *start = a;
    if (source == ULMA_CLOCK_MONOTONIC)
        return 1.0;
    uint64_t limit = a.width_ns * PAIR_WIDER > PAIR_SLACK_NS ? a.width_ns * PAIR_WIDER : PAIR_SLACK_NS;
    for (;;) {
        while (ulma_mono_ns() - a.mono_ns < window_ns)
            ;
        b = ulma_clock_pair_read(source);
        if (b.width_ns <= limit || b.mono_ns - a.mono_ns >= CALIBRATE_MAX_NS)
            break;
    }
    return b.ticks > a.ticks ? (double)(b.mono_ns - a.mono_ns) / (double)(b.ticks - a.ticks) : 1.0;
}
