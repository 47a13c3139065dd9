// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

#include "fiber_registry.hpp"
#include "fiber_internals.hpp"
#include "format.hpp"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <thread>

namespace fibers::detail {

std::atomic<bool> threads_busy{false};
thread_state* newest_thread = nullptr;

using thread_list = newest_first_list<thread_state, &thread_state::newer_thread, &thread_state::older_thread>;

std::atomic<bool> live_lists_biased{false};

namespace {

bool full_barrier_on_every_thread() noexcept {
#if defined(SYS_membarrier)
    return ::syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
#else
    return false;
#endif
}

bool may_bias_live_lists() noexcept {
#if FIBERS_TSAN || !defined(SYS_membarrier)
    return false;
#else
    long const commands = ::syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    return commands > 0 && (commands & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
           ::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 &&
           full_barrier_on_every_thread();
#endif
}

} // namespace

void register_thread(thread_state& ts) noexcept {
    ts.os_thread_id = ::syscall(SYS_gettid);
    flag_guard guard(threads_busy);
    // Decided before the first thread can change its list, once: the
    // threads that register later see it through the flag.
    static bool const biased = may_bias_live_lists();
    live_lists_biased.store(biased, std::memory_order_relaxed);
    thread_list::link(newest_thread, &ts);
}

void wait_out_reader(thread_state& ts) noexcept {
    do {
        ts.live_list_busy.store(false, std::memory_order_release);
        while (ts.live_list_read.load(std::memory_order_acquire))
            std::this_thread::yield();
        ts.live_list_busy.store(true, std::memory_order_relaxed);
        std::atomic_signal_fence(std::memory_order_seq_cst);
    } while (ts.live_list_read.load(std::memory_order_acquire));
}

bool try_flag(std::atomic<bool>& flag, int attempts) noexcept {
    for (int attempt = 0; attempt < attempts; ++attempt) {
        if (!flag.exchange(true, std::memory_order_acquire))
            return true;
        std::this_thread::yield();
    }
    return false;
}

bool try_live_list_read(thread_state& ts, int attempts) noexcept {
    if (!live_lists_biased.load(std::memory_order_relaxed))
        return try_flag(ts.live_list_busy, attempts);
    int attempt = 0;
    for (; ts.live_list_read.exchange(true, std::memory_order_acquire); ++attempt) {
        if (attempt + 1 >= attempts)
            return false;
        std::this_thread::yield();
    }
    // From here the owner either is seen changing its list or sees this
    // reader before it starts a change.
    if (full_barrier_on_every_thread()) {
        for (; attempt < attempts; ++attempt) {
            if (!ts.live_list_busy.load(std::memory_order_acquire))
                return true;
            std::this_thread::yield();
        }
    }
    ts.live_list_read.store(false, std::memory_order_release);
    return false;
}

void end_live_list_read(thread_state& ts) noexcept {
    if (live_lists_biased.load(std::memory_order_relaxed))
        ts.live_list_read.store(false, std::memory_order_release);
    else
        release_flag(ts.live_list_busy);
}

void unregister_thread(thread_state& ts) noexcept {
    flag_guard guard(threads_busy);
    thread_list::unlink(newest_thread, &ts);
}

std::atomic<bool> fill_new_stacks{false};

void wait_for_flag(std::atomic<bool>& flag) noexcept {
    do
        while (flag.load(std::memory_order_relaxed))
            std::this_thread::yield();
    while (flag.exchange(true, std::memory_order_acquire));
}

__attribute__((no_sanitize("address"))) void fill_stack(fiber_record& record) noexcept {
    auto* word = reinterpret_cast<std::uint64_t*>(static_cast<char*>(record.stack.sp) - record.stack.size);
    auto* const end = reinterpret_cast<std::uint64_t*>(record.stack.sp);
    while (word != end)
        *word++ = stack_fill_pattern;
    record.stack_filled = true;
}

bool is_live_fiber_of(thread_state const& ts, void const* record) noexcept {
    if (record == ts.root)
        return true;
    for (fiber_record const* r = ts.newest_live; r != nullptr; r = r->older_live)
        if (r == record)
            return true;
    return false;
}

void write_name(fiber_record const& r, char* buffer, std::size_t capacity) noexcept {
    text_writer out(buffer, capacity);
    if (r.is_root) {
        out.put("Root");
    } else if (std::strcmp(r.kind(), "fiber") == 0) {
        out.put("fiber-").put_hex(reinterpret_cast<std::uintptr_t>(&r));
    } else {
        r.describe(buffer, capacity);
    }
}

std::size_t describe_live_fiber(thread_state& ts, void const* record, char* buffer, std::size_t capacity) noexcept {
    // On its own thread, nothing changes the list while this runs.
    std::optional<live_list_read> list;
    if (&ts != current_thread_state)
        list.emplace(ts);
    if (!is_live_fiber_of(ts, record))
        return 0;
    write_name(*static_cast<fiber_record const*>(record), buffer, capacity);
    return std::strlen(buffer);
}

} // namespace fibers::detail
