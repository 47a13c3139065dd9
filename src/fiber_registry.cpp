// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

#include "fiber_registry.hpp"
#include "fiber_internals.hpp"
#include "format.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <thread>

namespace fibers::detail {

std::atomic<bool> threads_busy{false};
thread_state* newest_thread = nullptr;

using thread_list = newest_first_list<thread_state, &thread_state::newer_thread, &thread_state::older_thread>;

void register_thread(thread_state& ts) noexcept {
    ts.os_thread_id = ::syscall(SYS_gettid);
    flag_guard guard(threads_busy);
    thread_list::link(newest_thread, &ts);
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
    flag_guard list(ts.live_list_busy);
    if (!is_live_fiber_of(ts, record))
        return 0;
    write_name(*static_cast<fiber_record const*>(record), buffer, capacity);
    return std::strlen(buffer);
}

} // namespace fibers::detail
