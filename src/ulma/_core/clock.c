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
