// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_DETAIL_THREAD_STATE_HPP
#define FIBERS_DETAIL_THREAD_STATE_HPP

// The fiber tree's per-thread state and the fast path of a switch.
//
// The fast path is inline on purpose. A jump resumes with an indirect jump,
// not a `ret`, so the CPU's return-stack predictor is out of step after
// every jump: a library function that jumps and then returns mispredicts
// its return, which costs more than the jump itself. Inlined, the jump
// resumes straight into the caller's code. What is rare (a first
// start, errors, a sender that ended) and sanitizer builds, whose
// annotations must match the library's, go through the library.

#include <fibers/detail/config.hpp>
#include <fibers/detail/fiber_record.hpp>
#include <fibers/detail/jump.hpp>

#include <boost/context/detail/fcontext.hpp>

#include <any>
#include <atomic>
#include <cstring>
#include <exception>

namespace fibers::detail {

struct thread_anchor;

// Never equal to a record's switch_key: the thread's key inside
// assert_no_switchpoints, so that the inline path refuses every switch.
extern char const no_switch_key;

class thread_state {
public:
    fiber_record* current = nullptr;
    // The anchor, or &no_switch_key inside assert_no_switchpoints.
    void const* switch_key = nullptr;
    exception_state* runtime_exceptions = nullptr; // the C++ runtime's per-thread state
    // The message of a switch, valid from just before the jump until the
    // resumed fiber takes it: the value stays in the switcher's frame, which
    // lives on while the switcher is suspended.
    std::any* incoming_value = nullptr;
    // Set when arriving needs more than taking the value: an error comes
    // with it, the sender ended, or the sender lost its last handle.
    bool arrival_needs_care = false;

    thread_anchor* anchor = nullptr;
    int no_switch_depth = 0; // assert_no_switchpoints nesting
    std::exception_ptr incoming_error;

    fiber_record* root = nullptr;
    fiber_record* newest_live = nullptr; // fibers of this thread that have not ended
    bool overflow_handler_ready = false;

    // Set while the thread changes its list of live fibers, which
    // diagnostics read from other threads and from signal handlers; a
    // reader from another thread sets the second for as long as it reads.
    // Every thread's state is on one list, from its first use of fibers
    // until it exits (src/fiber_registry.cpp).
    std::atomic<bool> live_list_busy{false};
    std::atomic<bool> live_list_read{false};
    thread_state* older_thread = nullptr;
    thread_state* newer_thread = nullptr;
    long os_thread_id = 0;

    bool is_suspended(fiber_record const* record) const noexcept {
        return record->status.load(std::memory_order_relaxed) == fiber_status::started && record != current;
    }

    // Out of line, in the library.

    // Runs `target` (started and suspended, checked by the caller) with the
    // message already set; returns the message that resumes the caller, or
    // throws its exception.
    std::any switch_unchecked(fiber_record* target);
    // The rare part of arriving, when arrival_needs_care is set.
    std::any arrive_with_care(fiber_record* from);
    // Allocates the stack of a created fiber; the fiber holds a reference to
    // itself from here until it ends.
    void start(fiber_record* target);
    void retire(fiber_record* ended) noexcept;
    // The nearest ancestor of `record` that has started and not ended.
    fiber_record* resumable_ancestor(fiber_record const* record) const noexcept;
    // Ends a fiber that never started: its target is destroyed unrun.
    void discard_unstarted(fiber_record* record) noexcept;
    // Throws forced_unwind into a suspended fiber and waits for it to end.
    void unwind(fiber_record* victim) noexcept;
    // Drops a reference on the owner thread: unwinds or frees as needed.
    void release_here(fiber_record* record) noexcept;
    // Handles references that other threads dropped.
    void drain_orphans() noexcept;
    void link_live(fiber_record* record) noexcept;
    void unlink_live(fiber_record* record) noexcept;
    [[noreturn]] void finish(fiber_record* self, std::any&& result, std::exception_ptr&& error) noexcept;
};

// The calling thread's state; null before its first use of fibers. A plain
// __thread pointer: read in one instruction, no TLS wrapper call.
extern __thread thread_state* current_thread_state FIBERS_INITIAL_EXEC_TLS;

// switch_to with every check, the thread state made if needed, the fiber
// started if needed. Throws the errors of fiber::switch_to.
std::any switch_checked(fiber_record* target, std::any* value);

// Whether the inline path may switch to `target` now: a suspended fiber of
// this thread that anyone may switch to, outside assert_no_switchpoints.
FIBERS_ALWAYS_INLINE bool may_switch_inline(thread_state const& ts, fiber_record const* target) noexcept {
    return target != nullptr && target->switch_key == ts.switch_key && target != ts.current;
}

// Each fiber has its own stack of caught exceptions and uncaught count.
FIBERS_ALWAYS_INLINE void hand_over_exceptions(thread_state& ts, fiber_record* from, fiber_record* to) noexcept {
    std::memcpy(&from->saved_exceptions, ts.runtime_exceptions, sizeof(exception_state));
    std::memcpy(ts.runtime_exceptions, &to->saved_exceptions, sizeof(exception_state));
}

// Right after a jump lands in the caller: `transfer` names who jumped here.
FIBERS_ALWAYS_INLINE std::any arrive(thread_state& ts, boost::context::detail::transfer_t transfer) {
    auto* from = static_cast<fiber_record*>(transfer.data);
    from->context = transfer.fctx;
    if (FIBERS_UNLIKELY(ts.arrival_needs_care))
        return ts.arrive_with_care(from);
    return std::move(*ts.incoming_value);
}

// Suspends the running fiber and resumes `target` with the message set.
FIBERS_ALWAYS_INLINE std::any switch_inline(thread_state& ts, fiber_record* target) {
    fiber_record* self = ts.current;
    hand_over_exceptions(ts, self, target);
    ts.current = target;
    return arrive(ts, jump_to(target->context, self));
}

} // namespace fibers::detail

#endif // FIBERS_DETAIL_THREAD_STATE_HPP
