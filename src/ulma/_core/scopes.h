/*
 * scopes.h -- the runtime of the public header ulma.h inside a Python
 * process (scopes.c): what the agent calls as it starts and stops.
 */
#ifndef ULMA_SCOPES_H
#define ULMA_SCOPES_H

#pragma GCC visibility push(hidden)

/* The agent traces: every known hook (and those of modules loaded before
 * ulma, found now) points at the runtime. */
void ulma_scopes_start(void);
/* It stops: every hook is cleared, so no scope begins. */
void ulma_scopes_stop(void);
/* _core was loaded: its runtime symbol is made global for ulma.h's lookup.
 * 0, or -1 (dlopen failed: scopes then find no runtime). */
int ulma_scopes_export(void);
/* What native scope records cost the program (ns), as the gaps between
 * records hold it: *begin_ns a gap closed by a begin (a scope's end, then
 * the next one's begin), *end_ns one closed by an end (a begin, then its
 * end).  Begin/end pairs written into the calibration's scratch ring, the
 * median gaps of the best rounds.  Under the GIL, the agent running; 0, or
 * -1 if it cannot be measured. */
int ulma_scopes_calibrate(double *begin_ns, double *end_ns);
/* The runtime's table (ulma.h's ulma_runtime), exported. */
extern __attribute__((visibility("default"))) const struct ulma_runtime ulma_runtime_v1;

#pragma GCC visibility pop

#endif
