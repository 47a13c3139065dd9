// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_SRC_DIAGNOSTICS_INTERNALS_HPP
#define FIBERS_SRC_DIAGNOSTICS_INTERNALS_HPP

// The registry of threads and their live fibers that the diagnostics read
// (src/diagnostics.cpp). Private to the library.

#include <fibers/detail/thread_state.hpp>

#include <atomic>
#include <string>
#include <thread>

namespace fibers::detail {

// A field that its thread writes with plain stores, read from another
// thread as it is: a word read at once, a snapshot by nature. Not
// instrumented by TSan, which would report the race the snapshot accepts.
template <class T>
__attribute__((no_sanitize("thread"))) T read_racy(T const& field) noexcept {
    static_assert(sizeof(T) <= sizeof(void*), "read at once");
    return *static_cast<T const volatile*>(&field);
}

// Writes the name of `record` if it is a live fiber of `ts` (the thread's
// own, or another's: its list is held meanwhile); its length, 0 if not.
std::size_t describe_live_fiber(thread_state& ts, void const* record, char* buffer, std::size_t capacity) noexcept;

// "  name: what it waits on" for each fiber of the calling thread, `ts`.
std::string describe_waits(thread_state const& ts);

// measure_stack_use(): new fibers' stacks are filled before they first run.
extern std::atomic<bool> fill_new_stacks;
// Fills the stack `record` has just been given (not yet made a context).
void fill_stack(fiber_record& record) noexcept;

// Puts a new thread's state on the list of every thread's, and takes it off
// before the state is deleted.
void register_thread(thread_state& ts) noexcept;
void unregister_thread(thread_state& ts) noexcept;

// A flag held as a lock. The holders are short: a thread changing its list
// of live fibers, or a diagnostic copying it. Not a std::mutex, so that a
// signal handler may try it. Free, it costs one exchange, inline; taken,
// the wait is out of line.
FIBERS_COLD void wait_for_flag(std::atomic<bool>& flag) noexcept;
FIBERS_ALWAYS_INLINE void acquire_flag(std::atomic<bool>& flag) noexcept {
    if (FIBERS_UNLIKELY(flag.exchange(true, std::memory_order_acquire)))
        wait_for_flag(flag);
}
inline void release_flag(std::atomic<bool>& flag) noexcept { flag.store(false, std::memory_order_release); }

// Held by the owner thread while it changes its list of live fibers.
class live_list_guard {
public:
    explicit live_list_guard(thread_state& ts) noexcept : flag_(ts.live_list_busy) { acquire_flag(flag_); }
    live_list_guard(live_list_guard const&) = delete;
    live_list_guard& operator=(live_list_guard const&) = delete;
    ~live_list_guard() { release_flag(flag_); }

private:
    std::atomic<bool>& flag_;
};

} // namespace fibers::detail

#endif // FIBERS_SRC_DIAGNOSTICS_INTERNALS_HPP
