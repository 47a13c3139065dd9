// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// fibers_jump_fcontext: see include/fibers/detail/jump.hpp for why it exists.
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

#include <fibers/detail/jump.hpp>

#if FIBERS_OWN_JUMP
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
