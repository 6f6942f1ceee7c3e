/* stack_switch.h -- ulma_on_stack(arg, fn, top): fn(arg) run with the stack
 * pointer at `top`, back on the caller's stack when fn returns.
 *
 * A few instructions (x86-64 and aarch64, where ULMA_ON_STACK is defined):
 * save the frame pointer (and, on aarch64, the link register) on the
 * caller's stack, keep the caller's stack pointer in the frame pointer --
 * callee-saved, so fn gives it back -- move the stack pointer to `top`
 * (16-byte aligned, as both ABIs want at a call), call fn, and restore.  No
 * other register is touched, and the signal mask is not (unlike
 * swapcontext).  The CFI lets unwinders (gdb, perf, C++ exceptions) walk from
 * fn back to the caller's stack.
 *
 * Defines a global symbol: include it in one translation unit of a program
 * (stack.c; tests/native/stack_switch_test.c builds it alone, for x86-64 and,
 * under qemu, aarch64).
 */
#ifndef ULMA_STACK_SWITCH_H
#define ULMA_STACK_SWITCH_H

#if (defined(__x86_64__) || defined(__aarch64__)) && !defined(ULMA_STACK_UCONTEXT)
#define ULMA_ON_STACK 1

void ulma_on_stack(void *arg, void (*fn)(void *), void *top);

#if defined(__x86_64__)
/* rdi = arg (passed on to fn), rsi = fn, rdx = top */
__asm__(".pushsection .text\n"
        ".p2align 4\n"
        ".globl ulma_on_stack\n"
        ".hidden ulma_on_stack\n"
        ".type ulma_on_stack, @function\n"
        "ulma_on_stack:\n"
        ".cfi_startproc\n"
        "    pushq %rbp\n"
        ".cfi_def_cfa_offset 16\n"
        ".cfi_offset %rbp, -16\n"
        "    movq %rsp, %rbp\n"
        ".cfi_def_cfa_register %rbp\n"
        "    movq %rdx, %rsp\n"
        "    callq *%rsi\n"
        "    movq %rbp, %rsp\n"
        "    popq %rbp\n"
        ".cfi_def_cfa %rsp, 8\n"
        "    retq\n"
        ".cfi_endproc\n"
        ".size ulma_on_stack, .-ulma_on_stack\n"
        ".popsection\n");
#else
/* x0 = arg (passed on to fn), x1 = fn, x2 = top (AAPCS64); x29/x30 are the
 * frame pointer and link register.  `hint 34` is BTI's landing pad (a no-op
 * where branch protection is off), in case the function is ever reached
 * through a pointer. */
__asm__(".pushsection .text\n"
        ".p2align 2\n"
        ".globl ulma_on_stack\n"
        ".hidden ulma_on_stack\n"
        ".type ulma_on_stack, %function\n"
        "ulma_on_stack:\n"
        ".cfi_startproc\n"
        "    hint 34\n"
        "    stp x29, x30, [sp, #-16]!\n"
        ".cfi_def_cfa_offset 16\n"
        ".cfi_offset x29, -16\n"
        ".cfi_offset x30, -8\n"
        "    mov x29, sp\n"
        ".cfi_def_cfa_register x29\n"
        "    mov sp, x2\n"
        "    blr x1\n"
        "    mov sp, x29\n"
        ".cfi_def_cfa sp, 16\n"
        "    ldp x29, x30, [sp], #16\n"
        ".cfi_def_cfa_offset 0\n"
        ".cfi_restore x29\n"
        ".cfi_restore x30\n"
        "    ret\n"
        ".cfi_endproc\n"
        ".size ulma_on_stack, .-ulma_on_stack\n"
        ".popsection\n");
#endif
#endif

#endif
