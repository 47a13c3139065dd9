// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_SRC_FIBER_INTERNALS_HPP
#define FIBERS_SRC_FIBER_INTERNALS_HPP

// The fiber tree's machinery that the inline switch path does not need.
// Private to the library: the hub reaches it from src/, users never do.

#include <fibers/detail/config.hpp>
#include <fibers/detail/fiber_record.hpp>
#include <fibers/detail/thread_state.hpp>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

namespace fibers::detail {

// Thrown into a fiber whose last handle went away, to run its destructors.
// Deliberately not a std::exception: only `catch (...)` sees it, and such a
// handler must rethrow.
struct forced_unwind {};

// The part of a thread's state that other threads may touch, and that
// outlives the thread: fibers keep it to know their owner.
struct thread_anchor {
    std::atomic<std::uint32_t> references{1};
    std::mutex mutex;
    bool alive = true;                   // guarded by mutex
    std::vector<fiber_record*> orphans;  // guarded; each entry carries one reference
    std::atomic<bool> has_orphans{false};
    // Set by the thread's hub so that an orphan posted from another thread
    // wakes its event loop. Guarded by mutex; called with it held.
    void (*wake)(void*) noexcept = nullptr;
    void* wake_argument = nullptr;
};

// A switch made by the library itself (the hub resuming a fiber): the inline
// path, or the annotated one in sanitizer builds.
FIBERS_ALWAYS_INLINE std::any switch_now(thread_state& ts, fiber_record* target) {
#if FIBERS_SANITIZED
    return ts.switch_into(target);
#else
    return switch_fast(ts, target);
#endif
}

// Destroys a fiber's fibers::local values; set by the first value made, so
// that programs without locals pay nothing at a fiber's end.
extern std::atomic<void (*)(fiber_record*) noexcept> fiber_locals_destroyer;

inline void destroy_locals_of(fiber_record* record) noexcept {
    if (record->has_locals)
        if (auto destroy = fiber_locals_destroyer.load(std::memory_order_acquire))
            destroy(record);
}

// The calling thread's state, made on first use.
thread_state& this_thread_state();

[[noreturn]] void fatal(char const* message) noexcept;

} // namespace fibers::detail

#endif // FIBERS_SRC_FIBER_INTERNALS_HPP
