/*
 * readings.h -- CPU readings (readings.c): the thread's CPU clock and, after
 * a wait, its run delay, as cpu_sample records.
 */
#ifndef ULMA_READINGS_H
#define ULMA_READINGS_H

#include "agent.h"

/* Ticks between readings (0: none); set by ulma_readings_configure. */
extern uint64_t g_reading_ticks;

/* ns_per_tick: the session's quick calibration; interval_us 0 turns readings off. */
void ulma_readings_configure(double ns_per_tick, uint32_t interval_us);
/* A new interval while readings are on (the control channel's INTERVAL);
 * -1 if they are off or `interval_us` is 0. */
int ulma_readings_interval(uint32_t interval_us);
/* Reads the CPU clock into out[0] and, on a baseline or after a while off
 * CPU, the run delay into out[1]; schedules the next reading.  Returns the
 * record count (0 if the clock could not be read). */
uint32_t ulma_take_reading(ulma_writer *w, uint64_t t, int baseline, ulma_event *out);
/* ulma_take_reading at tick t for the event that follows, whose tick it
 * returns in *t_event (read after the reading: the gap is its cost).  A
 * thread that lost the CPU while it read (the run delay's file, under load)
 * would leave that time for the next reading, made maybe after the event,
 * with another function on top: then the CPU clock is read once more at
 * *t_event, so the time off CPU is this interval's, with the run delay
 * then.  out holds ULMA_READINGS_MAX records. */
uint32_t ulma_take_reading_for(ulma_writer *w, uint64_t t, int baseline, ulma_event *out, uint64_t *t_event);
#define ULMA_READINGS_MAX 4

#endif
