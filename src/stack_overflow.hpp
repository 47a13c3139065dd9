// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_SRC_STACK_OVERFLOW_HPP
#define FIBERS_SRC_STACK_OVERFLOW_HPP

#include <fibers/detail/config.hpp>

#include <cstddef>

namespace fibers {
namespace detail {

// ---------------------------------------------------------------------------
// Stack overflow reporting.
//
// An overflow runs into a guard page and raises SIGSEGV. A process-wide
// handler, running on a per-thread alternate signal stack because the fiber
// stack itself is exhausted, recognises the fault, writes one line naming the
// fiber to stderr and then lets the previous SIGSEGV disposition (default
// action, a crash reporter, a sanitizer) deal with the fault.

struct running_fiber_info {
    char name[64];          // NUL-terminated; may be truncated
    void const* stack_low;  // stack_context::sp - stack_context::size
    void const* stack_high; // stack_context::sp
};

// Called from the SIGSEGV handler, so it must be async-signal-safe: no
// locks, no allocation, only reads of data the running thread owns. Returns
// false when no fiber is running on the calling thread.
using running_fiber_describer = bool (*)(running_fiber_info&) noexcept;

// The fiber core registers its describer once; nullptr unregisters.
void set_running_fiber_describer(running_fiber_describer describer) noexcept;

// To be called on every thread before its first fiber runs; later calls on
// the same thread return at once. The first call in the process installs
// the SIGSEGV handler (keeping the previous action to defer to); each thread
// gets an alternate signal stack unless one is already enabled, and that
// stack is released when the thread exits. Failures (no memory for the
// alternate stack) leave overflows unreported, never break the thread.
void install_overflow_handler_for_this_thread() noexcept;

// ---------------------------------------------------------------------------
// Internals of fibers::arena_stack shared with the fiber core, the handler
// and the tests.

// Moves the calling thread's cached stacks to the global free lists. The
// allocator does this by itself after all thread_local destructors of an
// exiting thread have run; the fiber core may call it earlier, e.g. when
// its per-thread scheduler goes away. Deallocations after that point are
// still safe: they refill the cache or go straight to the global lists.
void flush_thread_stack_cache() noexcept;

// Freed stacks each thread keeps per size. When that is full, all but the
// warmest `thread_stack_cache_kept` go back to the kernel together, as
// many as the library gives one process_madvise call (64): releasing 8 at
// a time made allocating and freeing 256 stacks 1.6x as costly
// (doc/stacks.md).
constexpr std::size_t thread_stack_cache_capacity = 80;
constexpr std::size_t thread_stack_cache_kept = 16;

enum class stack_guard_kind {
    marker,  // madvise(MADV_GUARD_INSTALL): no extra mappings
    mprotect // PROT_NONE page: two extra mappings per stack, budgeted
};

// Decided once per process: guard markers when the kernel has them (Linux
// 6.13+) unless the environment variable FIBERS_STACK_GUARD=mprotect asks
// for the fallback, which is how tests and older kernels exercise it.
stack_guard_kind stack_guard_mode() noexcept;

// Whether stacks leave the global free lists with their top page faulted
// in, many at once (process_madvise(2) with MADV_POPULATE_WRITE for the
// calling process: Linux 6.13 and later). Decided once per process.
bool stack_tops_faulted_in_batches() noexcept;

// How many stacks may get an mprotect guard before the allocator stops
// guarding new stacks to stay clear of vm.max_map_count.
std::size_t stack_guard_budget() noexcept;

// The usable range of the arena stack whose guard page contains an address.
struct arena_guard_hit {
    char const* low;
    char const* high;
};

// Async-signal-safe: reads only atomics published when arenas are created.
bool find_arena_guard(void const* addr, arena_guard_hit& hit) noexcept;

} // namespace detail
} // namespace fibers

#endif // FIBERS_SRC_STACK_OVERFLOW_HPP
