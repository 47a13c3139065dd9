// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// The library's own context switches: see include/fibers/detail/jump.hpp
// for why each exists. tools/gdb/fibers.py reads the frames described here
// (SWITCH_FRAMES): a change to a frame changes it too.

#include <fibers/detail/jump.hpp>

#if FIBERS_OWN_MAKE
#include "format.hpp"

#include <cstddef>
#include <cstdint>
#include <new>
#endif

// ---------------------------------------------------------------------------
// x86-64 ELF: the jump.
//
// transfer_t fibers_jump_fcontext(fcontext_t to, void* data)
//
// The frame it leaves on the suspended stack, and expects on the one it
// resumes, is Boost.Context's x86-64 System V frame, so that contexts made
// by make_fcontext start through it:
//
//   0x00  MXCSR and x87 control word (left untouched here)
//   0x10  r12   0x18  r13   0x20  r14   0x28  r15
//   0x30  rbx   0x38  rbp   0x40  return address
//
// It returns {suspended context, data} in rax:rdx, and also leaves them in
// rdi:rsi, where a context function started by make_fcontext's trampoline
// takes its transfer_t argument.

#if FIBERS_OWN_JUMP && defined(__x86_64__)
__asm__(R"(
    .text
    .globl  fibers_jump_fcontext
    .type   fibers_jump_fcontext, @function
    .align  16
fibers_jump_fcontext:
    leaq    -0x40(%rsp), %rsp
    movq    %r12, 0x10(%rsp)
    movq    %r13, 0x18(%rsp)
    movq    %r14, 0x20(%rsp)
    movq    %r15, 0x28(%rsp)
    movq    %rbx, 0x30(%rsp)
    movq    %rbp, 0x38(%rsp)
    movq    %rsp, %rax
    movq    %rdi, %rsp
    movq    0x10(%rsp), %r12
    movq    0x18(%rsp), %r13
    movq    0x20(%rsp), %r14
    movq    0x28(%rsp), %r15
    movq    0x30(%rsp), %rbx
    movq    0x38(%rsp), %rbp
    movq    0x40(%rsp), %r8
    leaq    0x48(%rsp), %rsp
    movq    %rsi, %rdx
    movq    %rax, %rdi
    jmp     *%r8
    .size   fibers_jump_fcontext, .-fibers_jump_fcontext
    .section .note.GNU-stack, "", @progbits
    .text
)");
#endif

// ---------------------------------------------------------------------------
// MIPS64, n64 ABI: the jump and the making of a context.
//
// transfer_t fibers_jump_fcontext(fcontext_t to, void* data)
//
// What a call must keep (the n64 ABI): s0-s7, s8 (the frame pointer), gp,
// sp, and f24-f31 with hard float; ra is where the jump returns. The jump
// pushes them in one 160-byte frame, which keeps sp 16-byte aligned, takes
// that frame's address as the context it leaves, and pops the same frame
// off the stack of `to`:
//
//     0  s0      8  s1     16  s2     24  s3     32  s4     40  s5
//    48  s6     56  s7     64  s8     72  gp     80  ra     88  (unused)
//    96  f24   104  f25   112  f26   120  f27   128  f28   136  f29
//   144  f30   152  f31
//
// It resumes `to` by returning to the ra found in its frame, with
// {the context it left, data} in v0:v1, where n64 returns a transfer_t.
// sp lands just above the popped frame, as after any call.
//
// fcontext_t fibers_make_fcontext(void* stack_top, size_t, void (*fn)(transfer_t))
//
// writes that frame at the 16-byte aligned top of a fresh stack, as if the
// context had jumped away from its first instruction: ra is
// fibers_start_context, s0 is fn, s1 is what runs if fn returns, gp is the
// caller's, everything else zero. The first jump to it pops the frame and
// "returns" into fibers_start_context, which calls fn with the transfer_t
// of that jump (moved from v0:v1 to a0:a1, where n64 passes it) and the
// stack pointer at the top of the stack, 16-byte aligned. n64 needs no
// argument area above it. fn is called through t9, as position-independent
// code expects: its prologue computes its own gp from t9. fn never
// returns: it leaves with a jump to another context, which never resumes
// it (the library's fiber_entry ends in thread_state::finish). Should it
// return, the function in s1, which fn must give back unchanged like every
// callee-saved register, ends the process with a message (Boost's own
// make_fcontext calls _exit(0) there, which would hide the bug).
// fibers_start_context's unwind information says it has no caller, so that
// backtraces and unwinders stop at the fiber's entry.

#if FIBERS_OWN_MAKE

#if defined(__mips_hard_float)
#define FIBERS_MIPS64_SAVE_FLOAT_REGISTERS                                                                   \
    "    sdc1    $f24,  96($sp)\n"                                                                           \
    "    sdc1    $f25, 104($sp)\n"                                                                           \
    "    sdc1    $f26, 112($sp)\n"                                                                           \
    "    sdc1    $f27, 120($sp)\n"                                                                           \
    "    sdc1    $f28, 128($sp)\n"                                                                           \
    "    sdc1    $f29, 136($sp)\n"                                                                           \
    "    sdc1    $f30, 144($sp)\n"                                                                           \
    "    sdc1    $f31, 152($sp)\n"
#define FIBERS_MIPS64_LOAD_FLOAT_REGISTERS                                                                   \
    "    ldc1    $f24,  96($sp)\n"                                                                           \
    "    ldc1    $f25, 104($sp)\n"                                                                           \
    "    ldc1    $f26, 112($sp)\n"                                                                           \
    "    ldc1    $f27, 120($sp)\n"                                                                           \
    "    ldc1    $f28, 128($sp)\n"                                                                           \
    "    ldc1    $f29, 136($sp)\n"                                                                           \
    "    ldc1    $f30, 144($sp)\n"                                                                           \
    "    ldc1    $f31, 152($sp)\n"
#else
#define FIBERS_MIPS64_SAVE_FLOAT_REGISTERS ""
#define FIBERS_MIPS64_LOAD_FLOAT_REGISTERS ""
#endif

// Exactly the instructions written: noreorder (each branch's delay slot is
// filled here), nomacro.
__asm__(R"(
    .text
    .set    push
    .set    noreorder
    .set    nomacro

    .globl  fibers_jump_fcontext
    .type   fibers_jump_fcontext, @function
    .align  3
fibers_jump_fcontext:
    daddiu  $sp, $sp, -160
    sd      $s0,   0($sp)
    sd      $s1,   8($sp)
    sd      $s2,  16($sp)
    sd      $s3,  24($sp)
    sd      $s4,  32($sp)
    sd      $s5,  40($sp)
    sd      $s6,  48($sp)
    sd      $s7,  56($sp)
    sd      $s8,  64($sp)
    sd      $gp,  72($sp)
    sd      $ra,  80($sp)
)" FIBERS_MIPS64_SAVE_FLOAT_REGISTERS R"(
    move    $v0, $sp
    move    $sp, $a0
    ld      $s0,   0($sp)
    ld      $s1,   8($sp)
    ld      $s2,  16($sp)
    ld      $s3,  24($sp)
    ld      $s4,  32($sp)
    ld      $s5,  40($sp)
    ld      $s6,  48($sp)
    ld      $s7,  56($sp)
    ld      $s8,  64($sp)
    ld      $gp,  72($sp)
    ld      $ra,  80($sp)
)" FIBERS_MIPS64_LOAD_FLOAT_REGISTERS R"(
    move    $v1, $a1
    jr      $ra
    daddiu  $sp, $sp, 160
    .size   fibers_jump_fcontext, .-fibers_jump_fcontext

    .globl  fibers_start_context
    .hidden fibers_start_context
    .type   fibers_start_context, @function
    .align  3
fibers_start_context:
    .cfi_startproc
    .cfi_undefined $ra
    move    $a0, $v0
    move    $a1, $v1
    move    $t9, $s0
    jalr    $t9
    nop
    move    $t9, $s1
    jalr    $t9
    nop
    .cfi_endproc
    .size   fibers_start_context, .-fibers_start_context

    .set    pop
    .section .note.GNU-stack, "", @progbits
    .text
)");

extern "C" __attribute__((visibility("hidden"))) void fibers_start_context() noexcept;

namespace {

// The frame above, as fibers_make_fcontext writes it.
struct mips64_switch_frame {
    std::uint64_t s[9]; // s0-s7, s8
    std::uint64_t gp;
    std::uint64_t ra;
    std::uint64_t unused;
    std::uint64_t f[8]; // f24-f31
};
static_assert(sizeof(mips64_switch_frame) == 160 && sizeof(mips64_switch_frame) % 16 == 0);
static_assert(offsetof(mips64_switch_frame, s) == 0 && offsetof(mips64_switch_frame, gp) == 72 &&
              offsetof(mips64_switch_frame, ra) == 80 && offsetof(mips64_switch_frame, f) == 96);

[[noreturn]] void context_function_returned() noexcept {
    fibers::detail::fatal("a context function returned; it must leave its context with a jump");
}

std::uint64_t address_of(void (*function)()) noexcept { return reinterpret_cast<std::uintptr_t>(function); }

} // namespace

extern "C" boost::context::detail::fcontext_t fibers_make_fcontext(
    void* stack_top, std::size_t, void (*fn)(boost::context::detail::transfer_t)) noexcept {
    auto const top = reinterpret_cast<std::uintptr_t>(stack_top) & ~std::uintptr_t(15);
    auto* frame = new (reinterpret_cast<void*>(top - sizeof(mips64_switch_frame))) mips64_switch_frame{};
    frame->s[0] = reinterpret_cast<std::uintptr_t>(fn);
    frame->s[1] = address_of(&context_function_returned);
    std::uint64_t gp;
    __asm__("move %0, $gp" : "=r"(gp));
    frame->gp = gp;
    frame->ra = address_of(&fibers_start_context);
    return frame;
}

#endif // FIBERS_OWN_MAKE
