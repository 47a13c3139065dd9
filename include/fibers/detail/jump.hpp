// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_DETAIL_JUMP_HPP
#define FIBERS_DETAIL_JUMP_HPP

// Making an fcontext_t context, and the jump between two of them.
//
// On most architectures both are Boost.Context's: make_fcontext and
// jump_fcontext. Two have the library's own (src/jump.cpp):
//
// - x86-64 ELF: the jump. Its frame is exactly Boost's, so contexts are
//   still made by make_fcontext, but the MXCSR and x87 control words are
//   not saved and reloaded. Reloading them (ldmxcsr, fldcw) makes a switch
//   cost 8 ns at best and, depending on where the code it resumes sits,
//   120 ns on some current Intel cores; without them a switch costs 3 ns at
//   any placement. The price: the floating-point control state (rounding
//   mode, exception masks, FTZ/DAZ) belongs to the thread, not to each
//   fiber. Define FIBERS_SAVE_FP_CONTROL (CMake option of the same name) to
//   keep it per fiber with Boost's jump_fcontext. Boost's own TSX builds
//   drop these two instructions too.
//
// - MIPS64, n64 ABI: both the jump and the making of a context. Debian's
//   Boost.Context for mips64el is built without its assembly (the library
//   holds stack_traits alone), so nothing that calls make_fcontext or
//   jump_fcontext links there. The library's own are used on every n64
//   build, whether the Boost it is built against has them or not: the
//   choice is made here, in a header, the same for the library and for
//   every program including it, with no probe of the installed Boost that
//   a program built against another Boost could contradict. The FCSR (the
//   rounding mode and exception enables) belongs to the thread, as with
//   Boost's own MIPS64 jump; FIBERS_SAVE_FP_CONTROL changes nothing here.

#include <fibers/detail/config.hpp>

#include <boost/context/detail/fcontext.hpp>

#include <cstddef>

#if defined(__x86_64__) && defined(__ELF__) && !defined(FIBERS_SAVE_FP_CONTROL)
#define FIBERS_OWN_JUMP 1
#define FIBERS_OWN_MAKE 0
#elif defined(__mips64) && defined(_MIPS_SIM) && defined(_ABI64) && _MIPS_SIM == _ABI64 && defined(__ELF__)
#define FIBERS_OWN_JUMP 1
#define FIBERS_OWN_MAKE 1
#else
#define FIBERS_OWN_JUMP 0
#define FIBERS_OWN_MAKE 0
#endif

#if FIBERS_OWN_JUMP
extern "C" boost::context::detail::transfer_t fibers_jump_fcontext(boost::context::detail::fcontext_t to,
                                                                   void* data) noexcept;
#endif
#if FIBERS_OWN_MAKE
// A context that, on the first jump to it, calls fn with that jump's
// transfer_t, on the stack whose highest address is stack_top. fn must
// never return: it leaves with a jump to another context. (If it returns,
// the process ends with a message.)
extern "C" boost::context::detail::fcontext_t fibers_make_fcontext(
    void* stack_top, std::size_t size, void (*fn)(boost::context::detail::transfer_t)) noexcept;
#endif

namespace fibers::detail {

FIBERS_ALWAYS_INLINE boost::context::detail::transfer_t jump_to(boost::context::detail::fcontext_t to,
                                                                void* data) noexcept {
#if FIBERS_OWN_JUMP
    return fibers_jump_fcontext(to, data);
#else
    return boost::context::detail::jump_fcontext(to, data);
#endif
}

inline boost::context::detail::fcontext_t make_context(void* stack_top, std::size_t size,
                                                       void (*fn)(boost::context::detail::transfer_t)) noexcept {
#if FIBERS_OWN_MAKE
    return fibers_make_fcontext(stack_top, size, fn);
#else
    return boost::context::detail::make_fcontext(stack_top, size, fn);
#endif
}

} // namespace fibers::detail

#endif // FIBERS_DETAIL_JUMP_HPP
