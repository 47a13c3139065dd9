// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_SRC_FIBER_REGISTRY_HPP
#define FIBERS_SRC_FIBER_REGISTRY_HPP

// The fiber layer's registry: every thread's state, and in each its live
// fibers, kept where a signal handler, another thread and gdb can read
// them. The layers above read it (src/diagnostics.cpp, the watchdog, the
// deadlock check); it knows nothing of them. Private to the library.

#include <fibers/detail/config.hpp>
#include <fibers/detail/fiber_record.hpp>
#include <fibers/detail/thread_state.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace fibers::detail {

// Every thread's state, newest first; guarded by threads_busy. Outside
// any unnamed namespace: tools/gdb/fibers.py reads them by these names.
extern std::atomic<bool> threads_busy;
extern thread_state* newest_thread;

// Puts a new thread's state on the list of every thread's, and takes it off
// before the state is deleted.
void register_thread(thread_state& ts) noexcept;
void unregister_thread(thread_state& ts) noexcept;

// A field that its thread writes with plain stores, read from another
// thread as it is: a word read at once, a snapshot by nature. Not
// instrumented by TSan, which would report the race the snapshot accepts.
template <class T>
__attribute__((no_sanitize("thread"))) T read_racy(T const& field) noexcept {
    static_assert(sizeof(T) <= sizeof(void*), "read at once");
    return *static_cast<T const volatile*>(&field);
}

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
// Tries at most `attempts` times, with a yield between, for callers that
// must not wait for ever: a signal handler, whose own thread may hold the
// flag, and a reader of another thread's list of live fibers.
bool try_flag(std::atomic<bool>& flag, int attempts) noexcept;

class flag_guard {
public:
    explicit flag_guard(std::atomic<bool>& flag) noexcept : flag_(flag) { acquire_flag(flag_); }
    flag_guard(flag_guard const&) = delete;
    flag_guard& operator=(flag_guard const&) = delete;
    ~flag_guard() { release_flag(flag_); }

private:
    std::atomic<bool>& flag_;
};

// A thread's list of live fibers changes at every fiber's birth and end,
// and another thread reads it only for a dump or a watchdog's report. So
// the lock on it is biased to its owner: where the kernel has
// membarrier(2), the thread marks its change with plain stores, and a
// reader makes every running thread of the process pass a full barrier
// before it looks (the asymmetric form of Dekker's lock: either the reader
// sees the change under way and waits, or the owner sees the reader and
// waits). Elsewhere, and under ThreadSanitizer, which sees no order in
// that barrier, the owner exchanges the flag like any lock.
extern std::atomic<bool> live_lists_biased;
FIBERS_COLD void wait_out_reader(thread_state& ts) noexcept;

class live_list_change {
public:
    explicit live_list_change(thread_state& ts) noexcept : ts_(ts) {
        if (FIBERS_LIKELY(live_lists_biased.load(std::memory_order_relaxed))) {
            ts.live_list_busy.store(true, std::memory_order_relaxed);
            std::atomic_signal_fence(std::memory_order_seq_cst);
            // Acquire: the change's stores stay after this load.
            if (FIBERS_UNLIKELY(ts.live_list_read.load(std::memory_order_acquire)))
                wait_out_reader(ts);
        } else {
            acquire_flag(ts.live_list_busy);
        }
    }
    live_list_change(live_list_change const&) = delete;
    live_list_change& operator=(live_list_change const&) = delete;
    ~live_list_change() { release_flag(ts_.live_list_busy); }

private:
    thread_state& ts_;
};

// Reading another thread's list. Tries at most `attempts` times (with a
// yield between) and returns whether it may read: safe in a signal
// handler, whose thread may hold what it tries. After a true, the reader
// ends with end_live_list_read.
bool try_live_list_read(thread_state& ts, int attempts) noexcept;
void end_live_list_read(thread_state& ts) noexcept;

class live_list_read {
public:
    explicit live_list_read(thread_state& ts) noexcept : ts_(ts) {
        while (!try_live_list_read(ts, 1000)) {
        }
    }
    live_list_read(live_list_read const&) = delete;
    live_list_read& operator=(live_list_read const&) = delete;
    ~live_list_read() { end_live_list_read(ts_); }

private:
    thread_state& ts_;
};

// Whether `record` is the root or a live fiber of `ts`; the caller is the
// thread itself or reads its list.
bool is_live_fiber_of(thread_state const& ts, void const* record) noexcept;

// The name of `r` as every listing gives it, written without allocating.
void write_name(fiber_record const& r, char* buffer, std::size_t capacity) noexcept;

// Writes the name of `record` if it is a live fiber of `ts` (the thread's
// own, or another's: its list is held meanwhile); its length, 0 if not.
std::size_t describe_live_fiber(thread_state& ts, void const* record, char* buffer, std::size_t capacity) noexcept;

// measure_stack_use(): new fibers' stacks are filled with this pattern
// before they first run; the deepest word that lost it is the high-water
// mark.
constexpr std::uint64_t stack_fill_pattern = 0x5a17'f1be'75ac'c0deULL;
extern std::atomic<bool> fill_new_stacks;
// Fills the stack `record` has just been given (not yet made a context).
void fill_stack(fiber_record& record) noexcept;

} // namespace fibers::detail

#endif // FIBERS_SRC_FIBER_REGISTRY_HPP
