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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The run delay is read too after the thread was off CPU at least this long:
 * a read costs ~1 us, so only where a wait already cost much more. */
#define RUN_DELAY_AFTER_NS 20000.0

uint64_t g_reading_ticks;          /* 0: no readings */
static double g_ns_per_tick = 1.0; /* the monitor's quick calibration */

void ulma_readings_configure(double ns_per_tick, uint32_t interval_us)
{
    g_ns_per_tick = ns_per_tick > 0 ? ns_per_tick : 1.0;
    g_reading_ticks = 0;
    if (interval_us) {
        g_reading_ticks = (uint64_t)((double)interval_us * 1000.0 / g_ns_per_tick);
        if (!g_reading_ticks)
            g_reading_ticks = 1;
    }
}

/* The run-queue delay (ns) from /proc/thread-self/schedstat, kept open per
 * thread.  If the program closed our descriptor (some close every fd they
 * do not know), reads fail or stop parsing, and we stop reading. */
static int read_run_delay(ulma_writer *w, uint64_t *out)
{
    if (w->sched_fd == -2) {
        struct stat st;
        w->sched_fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
        if (w->sched_fd >= 0 && fstat(w->sched_fd, &st) == 0) {
            w->sched_dev = (uint64_t)st.st_dev;
            w->sched_ino = (uint64_t)st.st_ino;
        }
    }
    if (w->sched_fd < 0)
        return 0;
    char buf[96];
    ssize_t n = pread(w->sched_fd, buf, sizeof buf - 1, 0);
    if (n < 0 && errno == EINTR) /* a signal: once more */
        n = pread(w->sched_fd, buf, sizeof buf - 1, 0);
    if (n <= 0) {
        w->sched_fd = -1; /* not ours any more: never close it */
        return 0;
    }
    buf[n] = 0;
    /* "<on-cpu ns> <run-delay ns> <timeslices>\n" */
    char *end;
    strtoull(buf, &end, 10);
    if (end == buf || *end != ' ') {
        w->sched_fd = -1;
        return 0;
    }
    char *start = end + 1;
    *out = strtoull(start, &end, 10);
    if (end == start || *end != ' ') {
        w->sched_fd = -1;
        return 0;
    }
    atomic_fetch_or_explicit(&g_session->agent_flags, ULMA_AGENT_SCHEDSTAT, memory_order_relaxed);
    return 1;
}

static inline ulma_event reading_record(uint64_t t, uint64_t ns, uint8_t flags)
{
    ulma_event e = {.ticks = t, .id = (uint32_t)ns, .kind = ULMA_CPU_SAMPLE, .flags = flags,
                    .aux = (uint16_t)(ns >> 32)};
    return e;
}

/* Reads the thread's CPU clock into out[0] and, on a baseline or after a
 * while off CPU, its run delay into out[1].  Returns the record count. */
void ulma_readings_thread_exit(ulma_writer *w)
{
    /* The program may have closed our descriptor and opened something of its
     * own under the same number: close it only if it still is our file. */
    struct stat st;
    if (w->sched_fd >= 0 && fstat(w->sched_fd, &st) == 0 && (uint64_t)st.st_dev == w->sched_dev &&
        (uint64_t)st.st_ino == w->sched_ino)
        close(w->sched_fd);
    w->sched_fd = -1;
}

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
    uint64_t delay;
    if (want && read_run_delay(w, &delay)) {
        uint8_t flags = ULMA_CPU_RUN_DELAY;
        struct rusage ru;
        if (getrusage(RUSAGE_THREAD, &ru) == 0) {
            uint64_t nv = (uint64_t)ru.ru_nvcsw;
            if (!baseline && w->reading_tick && nv == w->nvcsw)
                flags |= ULMA_CPU_NO_BLOCK;
            w->nvcsw = nv;
        }
        out[n++] = reading_record(t, delay, flags);
    }
    w->reading_tick = t;
    w->reading_cpu_ns = cpu;
    return n;
}

