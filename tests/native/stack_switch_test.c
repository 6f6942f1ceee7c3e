/* stack_switch_test.c -- the PEP 523 engine's stack switch (ulma_on_stack,
 * src/ulma/_core/stack_switch.h) on its own, for x86-64 and aarch64 (the
 * latter cross-compiled and run under qemu-aarch64: tests/native/test_stack_switch.py).
 *
 * Checks, against values this program sets itself:
 *   - fn runs on the other stack (its locals lie inside the segment), with
 *     the stack aligned as the ABI wants, and can use that stack deeply;
 *   - its argument arrives and its result is seen after the switch back;
 *   - every callee-saved register (x86-64: rbx rbp r12-r15 rsp; aarch64:
 *     x19-x28 d8-d15 fp sp, and lr through the return) holds after the
 *     switch what it held before, while fn clobbers every caller-saved
 *     register it may (so a switch that keeps anything there is caught);
 *   - an unwinder walks from fn through the switch back to its caller (CFI).
 * Prints one line per check; exits 0 if all pass, 1 otherwise.  An alarm
 * ends a switch that never returns. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <unwind.h>

#include "stack_switch.h"

#ifndef ULMA_ON_STACK
#error "stack_switch.h has no switch for this machine"
#endif

#define SEGMENT_BYTES (1u << 20)
#define DEPTH 2000 /* x ~300 bytes a level: ~600 KiB, more than fits below fn's entry by chance */

static int failures;

static void check(int ok, const char *what)
{
    printf("%s: %s\n", ok ? "ok" : "FAIL", what);
    failures += !ok;
}

/* ---- fn: the work, with stack depth, on whatever stack it is given ---- */

struct job {
    uintptr_t lo, hi;    /* the segment */
    uintptr_t seen_sp;   /* an address of fn's locals */
    uintptr_t frame;     /* fn's frame address (16-aligned if the stack was at the call) */
    uint64_t input;      /* the argument's payload */
    uint64_t result;     /* what fn computed */
};

__attribute__((noinline)) static uint64_t deep(uint64_t x, int n)
{
    volatile unsigned char pad[256];
    for (unsigned i = 0; i < sizeof pad; i++)
        pad[i] = (unsigned char)(x + i);
    uint64_t below = n ? deep(x * 6364136223846793005u + 1442695040888963407u, n - 1) : 0;
    return below ^ (x + pad[n % sizeof pad]);
}

/* called by the assembly fn below (C linkage, not static: named in asm) */
void ulma_test_work(struct job *j);
void ulma_test_work(struct job *j)
{
    volatile char here = 0;
    j->seen_sp = (uintptr_t)&here;
    j->frame = (uintptr_t)__builtin_frame_address(0);
    j->result = deep(j->input, DEPTH);
}

/* ---- per machine: fn that clobbers the caller-saved registers, and the
 * harness that loads patterns into the callee-saved ones around the switch -- */

/* out[0..N) patterns in, out[N..2N) what the registers held after the
 * switch, out[2N] the stack pointer before, out[2N+1] after. */
#if defined(__x86_64__)
#define NREGS 6
static const char *const reg_names[NREGS] = {"rbx", "rbp", "r12", "r13", "r14", "r15"};
void ulma_test_clobber(void *arg);
void ulma_test_harness(void *arg, void (*fn)(void *), void *top, uint64_t *out);
__asm__(".text\n"
        ".globl ulma_test_clobber\n"
        "ulma_test_clobber:\n"          /* rsp = 8 mod 16 here */
        "    subq $8, %rsp\n"
        "    call ulma_test_work\n"
        "    addq $8, %rsp\n"
        "    movq $-1, %rax\n movq $-1, %rcx\n movq $-1, %rdx\n movq $-1, %rsi\n movq $-1, %rdi\n"
        "    movq $-1, %r8\n movq $-1, %r9\n movq $-1, %r10\n movq $-1, %r11\n"
        "    pcmpeqd %xmm0, %xmm0\n pcmpeqd %xmm1, %xmm1\n pcmpeqd %xmm2, %xmm2\n"
        "    pcmpeqd %xmm3, %xmm3\n pcmpeqd %xmm4, %xmm4\n pcmpeqd %xmm5, %xmm5\n"
        "    pcmpeqd %xmm6, %xmm6\n pcmpeqd %xmm7, %xmm7\n pcmpeqd %xmm8, %xmm8\n"
        "    pcmpeqd %xmm9, %xmm9\n pcmpeqd %xmm10, %xmm10\n pcmpeqd %xmm11, %xmm11\n"
        "    pcmpeqd %xmm12, %xmm12\n pcmpeqd %xmm13, %xmm13\n pcmpeqd %xmm14, %xmm14\n"
        "    pcmpeqd %xmm15, %xmm15\n"
        "    ret\n"
        ".globl ulma_test_harness\n"
        "ulma_test_harness:\n"          /* rdi arg, rsi fn, rdx top, rcx out */
        "    pushq %rbx\n pushq %rbp\n pushq %r12\n pushq %r13\n pushq %r14\n pushq %r15\n"
        "    pushq %rcx\n"               /* 7 pushes: rsp 16-aligned at the call */
        "    movq %rsp, 96(%rcx)\n"
        "    movq 0(%rcx), %rbx\n movq 8(%rcx), %rbp\n movq 16(%rcx), %r12\n"
        "    movq 24(%rcx), %r13\n movq 32(%rcx), %r14\n movq 40(%rcx), %r15\n"
        "    call ulma_on_stack\n"
        "    movq (%rsp), %rcx\n"
        "    movq %rbx, 48(%rcx)\n movq %rbp, 56(%rcx)\n movq %r12, 64(%rcx)\n"
        "    movq %r13, 72(%rcx)\n movq %r14, 80(%rcx)\n movq %r15, 88(%rcx)\n"
        "    movq %rsp, 104(%rcx)\n"
        "    popq %rcx\n"
        "    popq %r15\n popq %r14\n popq %r13\n popq %r12\n popq %rbp\n popq %rbx\n"
        "    ret\n");
#elif defined(__aarch64__)
#define NREGS 19
static const char *const reg_names[NREGS] = {"x19", "x20", "x21", "x22", "x23", "x24", "x25",
                                             "x26", "x27", "x28", "x29 (fp)", "d8", "d9", "d10",
                                             "d11", "d12", "d13", "d14", "d15"};
void ulma_test_clobber(void *arg);
void ulma_test_harness(void *arg, void (*fn)(void *), void *top, uint64_t *out);
__asm__(".text\n"
        ".globl ulma_test_clobber\n"
        "ulma_test_clobber:\n"
        "    stp x29, x30, [sp, #-16]!\n"
        "    mov x29, sp\n"
        "    bl ulma_test_work\n"
        "    mov x0, #-1\n mov x1, #-1\n mov x2, #-1\n mov x3, #-1\n mov x4, #-1\n mov x5, #-1\n"
        "    mov x6, #-1\n mov x7, #-1\n mov x8, #-1\n mov x9, #-1\n mov x10, #-1\n mov x11, #-1\n"
        "    mov x12, #-1\n mov x13, #-1\n mov x14, #-1\n mov x15, #-1\n mov x16, #-1\n mov x17, #-1\n"
        "    movi v0.2d, #0xffffffffffffffff\n movi v1.2d, #0xffffffffffffffff\n movi v2.2d, #0xffffffffffffffff\n movi v3.2d, #0xffffffffffffffff\n"
        "    movi v4.2d, #0xffffffffffffffff\n movi v5.2d, #0xffffffffffffffff\n movi v6.2d, #0xffffffffffffffff\n movi v7.2d, #0xffffffffffffffff\n"
        "    movi v16.2d, #0xffffffffffffffff\n movi v17.2d, #0xffffffffffffffff\n movi v18.2d, #0xffffffffffffffff\n movi v19.2d, #0xffffffffffffffff\n"
        "    movi v20.2d, #0xffffffffffffffff\n movi v21.2d, #0xffffffffffffffff\n movi v22.2d, #0xffffffffffffffff\n movi v23.2d, #0xffffffffffffffff\n"
        "    movi v24.2d, #0xffffffffffffffff\n movi v25.2d, #0xffffffffffffffff\n movi v26.2d, #0xffffffffffffffff\n movi v27.2d, #0xffffffffffffffff\n"
        "    movi v28.2d, #0xffffffffffffffff\n movi v29.2d, #0xffffffffffffffff\n movi v30.2d, #0xffffffffffffffff\n movi v31.2d, #0xffffffffffffffff\n"
        "    ldp x29, x30, [sp], #16\n"
        "    ret\n"
        ".globl ulma_test_harness\n"
        "ulma_test_harness:\n"          /* x0 arg, x1 fn, x2 top, x3 out */
        "    stp x29, x30, [sp, #-176]!\n"
        "    stp x19, x20, [sp, #16]\n stp x21, x22, [sp, #32]\n stp x23, x24, [sp, #48]\n"
        "    stp x25, x26, [sp, #64]\n stp x27, x28, [sp, #80]\n"
        "    stp d8, d9, [sp, #96]\n stp d10, d11, [sp, #112]\n stp d12, d13, [sp, #128]\n"
        "    stp d14, d15, [sp, #144]\n"
        "    str x3, [sp, #160]\n"
        "    mov x9, sp\n str x9, [x3, #304]\n"
        "    ldp x19, x20, [x3, #0]\n ldp x21, x22, [x3, #16]\n ldp x23, x24, [x3, #32]\n"
        "    ldp x25, x26, [x3, #48]\n ldp x27, x28, [x3, #64]\n ldr x29, [x3, #80]\n"
        "    ldp d8, d9, [x3, #88]\n ldp d10, d11, [x3, #104]\n ldp d12, d13, [x3, #120]\n"
        "    ldp d14, d15, [x3, #136]\n"
        "    bl ulma_on_stack\n"
        "    ldr x3, [sp, #160]\n"
        "    stp x19, x20, [x3, #152]\n stp x21, x22, [x3, #168]\n stp x23, x24, [x3, #184]\n"
        "    stp x25, x26, [x3, #200]\n stp x27, x28, [x3, #216]\n str x29, [x3, #232]\n"
        "    stp d8, d9, [x3, #240]\n stp d10, d11, [x3, #256]\n stp d12, d13, [x3, #272]\n"
        "    stp d14, d15, [x3, #288]\n"
        "    mov x9, sp\n str x9, [x3, #312]\n"
        "    ldp x19, x20, [sp, #16]\n ldp x21, x22, [sp, #32]\n ldp x23, x24, [sp, #48]\n"
        "    ldp x25, x26, [sp, #64]\n ldp x27, x28, [sp, #80]\n"
        "    ldp d8, d9, [sp, #96]\n ldp d10, d11, [sp, #112]\n ldp d12, d13, [sp, #128]\n"
        "    ldp d14, d15, [sp, #144]\n"
        "    ldp x29, x30, [sp], #176\n"
        "    ret\n");
#else
#error "no test harness for this machine"
#endif

/* ---- the unwinder: from fn back through the switch to its caller ---- */

static uintptr_t g_want_ip; /* where direct() returns to in main */
static int g_found, g_frames;

static _Unwind_Reason_Code step(struct _Unwind_Context *ctx, void *data)
{
    (void)data;
    g_frames++;
    if (_Unwind_GetIP(ctx) == g_want_ip)
        g_found = 1;
    return g_frames > 64 ? _URC_END_OF_STACK : _URC_NO_REASON;
}

static void unwind_from_segment(void *arg)
{
    (void)arg;
    _Unwind_Backtrace(step, NULL);
}

__attribute__((noinline)) static void direct(void *top)
{
    g_want_ip = (uintptr_t)__builtin_return_address(0);
    ulma_on_stack(NULL, unwind_from_segment, top);
    __asm__ volatile("" ::: "memory"); /* no tail call: direct's frame stays */
}

int main(void)
{
    alarm(20); /* a switch that never returns */
    char *segment = aligned_alloc(16, SEGMENT_BYTES);
    if (!segment) {
        perror("aligned_alloc");
        return 2;
    }
    void *top = segment + SEGMENT_BYTES; /* aligned: SEGMENT_BYTES is a multiple of 16 */

    struct job j = {.lo = (uintptr_t)segment, .hi = (uintptr_t)top, .input = 0x0123456789abcdefu};
    uint64_t out[2 * NREGS + 2];
    memset(out, 0, sizeof out);
    for (int i = 0; i < NREGS; i++)
        out[i] = 0x5a5a000000000000u ^ ((uint64_t)(i + 1) * 0x0101010101010101u);
    ulma_test_harness(&j, ulma_test_clobber, top, out);

    check(j.seen_sp >= j.lo && j.seen_sp < j.hi, "fn ran on the other stack");
    check(j.frame % 16 == 0, "the stack was 16-byte aligned at fn's call");
    uint64_t expected = deep(0x0123456789abcdefu, DEPTH);
    check(j.result == expected, "fn's result (deep recursion on the segment) is seen after the switch back");
    for (int i = 0; i < NREGS; i++) {
        char what[96];
        snprintf(what, sizeof what, "callee-saved %s kept across the switch", reg_names[i]);
        check(out[NREGS + i] == out[i], what);
    }
    check(out[2 * NREGS] == out[2 * NREGS + 1] && out[2 * NREGS] != 0, "stack pointer restored");

    direct(top);
    check(g_found, "an unwinder walks from fn through the switch back to its caller");
    free(segment);
    printf("%s\n", failures ? "stack switch: FAILED" : "stack switch: all checks passed");
    return failures ? 1 : 0;
}
