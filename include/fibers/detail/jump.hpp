// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_DETAIL_JUMP_HPP
#define FIBERS_DETAIL_JUMP_HPP

// The jump between two fcontext_t contexts.
//
// Contexts are made by Boost.Context's make_fcontext on every architecture.
// On x86-64 ELF the jump is the library's own: the frame is exactly Boost's,
// but the MXCSR and x87 control words are not saved and reloaded. Reloading
// them (ldmxcsr, fldcw) makes a switch cost 8 ns at best and, depending on
// where the code it resumes sits, 120 ns on some current Intel cores; without
// them a switch costs 3 ns at any placement. The price: the floating-point
// control state (rounding mode, exception masks, FTZ/DAZ) belongs to the
// thread, not to each fiber. Define FIBERS_SAVE_FP_CONTROL (CMake option of
// the same name) to keep it per fiber with Boost's jump_fcontext. Boost's
// own TSX builds drop these two instructions too.

#include <fibers/detail/config.hpp>

#include <boost/context/detail/fcontext.hpp>

#if defined(__x86_64__) && defined(__ELF__) && !defined(FIBERS_SAVE_FP_CONTROL)
#define FIBERS_OWN_JUMP 1
extern "C" boost::context::detail::transfer_t fibers_jump_fcontext(boost::context::detail::fcontext_t to,
                                                                   void* data) noexcept;
#else
#define FIBERS_OWN_JUMP 0
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

} // namespace fibers::detail

#endif // FIBERS_DETAIL_JUMP_HPP
