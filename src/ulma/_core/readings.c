/*
 * readings.c -- the thread's CPU clock, read at most every cpu-interval and
 * carried in cpu_sample records (see records.h), so the monitor can tell CPU
 * time from waiting; after a wait, the kernel's run delay as well, which
 * splits waiting into blocked and runnable-but-not-scheduled.
 */
#define _GNU_SOURCE
#include "readings.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* The run delay is read too after the thread was off CPU at least this long.
 * A read opens, reads and closes /proc/thread-self/schedstat (~5 us of CPU:
 * no descriptor is kept per thread), so only after a wait 20 times longer;
 * shorter waits are not split into blocked and runnable (counted blocked). */
#define RUN_DELAY_AFTER_NS 100000.0

uint64_t g_reading_ticks;          /* 0: no readings */
static double g_ns_per_tick = 1.0; /* the monitor's quick calibration */

/* 0: the run delay can be read; 1: it cannot (no schedstat in this
 * kernel, or not the file we expect): we stop trying. */
static int g_no_run_delay;

void ulma_readings_configure(double ns_per_tick, uint32_t interval_us)
{
    g_ns_per_tick = ns_per_tick > 0 ? ns_per_tick : 1.0;
    g_reading_ticks = 0;
    g_no_run_delay = 0;
    if (interval_us) {
        g_reading_ticks = (uint64_t)((double)interval_us * 1000.0 / g_ns_per_tick);
        if (!g_reading_ticks)
            g_reading_ticks = 1;
    }
}

int ulma_readings_interval(uint32_t interval_us)
{
    if (!g_reading_ticks || !interval_us)
        return -1;
    uint64_t ticks = (uint64_t)((double)interval_us * 1000.0 / g_ns_per_tick);
    g_reading_ticks = ticks ? ticks : 1;
    return 0;
}

/* The run-queue delay (ns) from /proc/thread-self/schedstat.  No descriptor
 * is kept: one per thread would count against the program's open-file limit
 * (and stay open in it after a detach).  Opened, read and closed each time
 * (a few us, after a wait of at least RUN_DELAY_AFTER_NS). */
static int read_run_delay(uint64_t *out)
{
    if (g_no_run_delay)
        return 0;
    int fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        /* at the program's descriptor limit, or a signal: skip this one */
        if (errno != EMFILE && errno != ENFILE && errno != EINTR && errno != ENOMEM)
            g_no_run_delay = 1;
        return 0;
    }
    char buf[96];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0 && errno == EINTR) /* a signal: once more */
        n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    /* "<on-cpu ns> <run-delay ns> <timeslices>\n" */
    char *end;
    strtoull(buf, &end, 10);
    if (end == buf || *end != ' ') {
        g_no_run_delay = 1;
        return 0;
    }
    char *start = end + 1;
    *out = strtoull(start, &end, 10);
    if (end == start || *end != ' ') {
        g_no_run_delay = 1;
        return 0;
    }
    ulma_session_header *h = g_session; /* (a thread without the GIL may read after the session) */
    if (h)
        atomic_fetch_or_explicit(&h->agent_flags, ULMA_AGENT_SCHEDSTAT, memory_order_relaxed);
    return 1;
}

static inline ulma_event reading_record(uint64_t t, uint64_t ns, uint8_t flags)
{
    ulma_event e = {.ticks = t, .id = (uint32_t)ns, .kind = ULMA_CPU_SAMPLE, .flags = flags,
                    .aux = (uint16_t)(ns >> 32)};
    return e;
}

/* A reading that took longer than this (the thread lost the CPU in it) is
 * followed by another (ulma_take_reading_for); the aggregator takes no more
 * than this as a reading's own cost (aggregate.c READING_COST_MAX_NS). */
#define READING_LATE_NS 50000.0

/* The run delay at tick t into *out, with ULMA_CPU_NO_BLOCK if the thread
 * made no voluntary context switch since the last one read; 1, or 0 if it
 * cannot be read. */
static uint32_t run_delay_record(ulma_writer *w, uint64_t t, int baseline, ulma_event *out)
{
    uint64_t delay;
    if (!read_run_delay(&delay))
        return 0;
    uint8_t flags = ULMA_CPU_RUN_DELAY;
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) == 0) {
        uint64_t nv = (uint64_t)ru.ru_nvcsw;
        if (!baseline && w->reading_tick && nv == w->nvcsw)
            flags |= ULMA_CPU_NO_BLOCK;
        w->nvcsw = nv;
    }
    *out = reading_record(t, delay, flags);
    return 1;
}

uint32_t ulma_take_reading_for(ulma_writer *w, uint64_t t, int baseline, ulma_event *out, uint64_t *t_event)
{
    uint32_t n = ulma_take_reading(w, t, baseline, out);
    uint64_t te = ulma_ticks(g_clock);
    struct timespec ts;
    if (n && (double)(te - t) * g_ns_per_tick > READING_LATE_NS &&
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0) {
        uint64_t cpu = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        out[n++] = reading_record(te, cpu, 0);
        /* The thread lost the CPU in the reading: the CPU clock is a system
         * call, and a thread whose time slice ran out is switched at a system
         * call's return, so under load most of its waits for a CPU fall
         * here.  Whether it waited for one (runnable) or blocked is the run
         * delay's to tell, as after any wait this long. */
        n += run_delay_record(w, te, 0, &out[n]);
        w->reading_tick = te;
        w->reading_cpu_ns = cpu;
        w->next_reading = te + g_reading_ticks;
        te = ulma_ticks(g_clock);
    }
    *t_event = te;
    return n;
}

/* Reads the thread's CPU clock into out[0] and, on a baseline or after a
 * while off CPU, its run delay into out[1].  Returns the record count. */
uint32_t ulma_take_reading(ulma_writer *w, uint64_t t, int baseline, ulma_event *out)
{
    struct timespec ts;
    w->next_reading = t + g_reading_ticks;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    uint64_t cpu = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    uint32_t n = 0;
    out[n++] = reading_record(t, cpu, 0);
    int want = baseline || !w->reading_tick;
    if (!want) {
        double off = (double)(t - w->reading_tick) * g_ns_per_tick - (double)(cpu - w->reading_cpu_ns);
        want = off >= RUN_DELAY_AFTER_NS;
    }
    if (want)
        n += run_delay_record(w, t, baseline, &out[n]);
    w->reading_tick = t;
    w->reading_cpu_ns = cpu;
    return n;
}

