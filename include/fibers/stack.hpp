// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_STACK_HPP
#define FIBERS_STACK_HPP

#include <fibers/detail/config.hpp>

#include <boost/context/stack_context.hpp>

#include <cstddef>

namespace fibers {

// The default stack allocator. It models Boost.Context's StackAllocator, so
// any Boost.Context allocator can be used in its place and vice versa.
//
// Stacks are slots carved out of large address-space reservations (arenas),
// one arena family per slot size, each slot being a guard page followed by
// the usable stack. Keeping all stacks of a size in a few big mappings is
// what lets a process hold a million of them under vm.max_map_count, and
// reserving without committing means a stack costs only the pages it
// touches. Freed stacks go to a small per-thread cache first, so the common
// create/destroy cycle takes no lock and no system call; beyond it their
// memory is handed back to the kernel and the slot is kept for reuse.
//
// The object holds nothing but the stack size: copies are cheap and all of
// them share the same pools, and a stack may be freed by any thread.
class arena_stack {
public:
    // Large enough for ordinary code including iostreams and exception
    // unwinding with some depth; the sanitizers inflate frames severalfold.
    static std::size_t default_size() noexcept {
#if FIBERS_SANITIZED
        return std::size_t(1024) * 1024;
#else
        return std::size_t(256) * 1024;
#endif
    }

    // Below this, the first signal handler or dynamic-linker lookup that
    // runs on the stack would already overflow it.
    static constexpr std::size_t minimum_size() noexcept { return std::size_t(16) * 1024; }

    // Stacks beyond this are almost certainly a unit mistake; refusing them
    // also keeps the size arithmetic far from overflow.
    static constexpr std::size_t maximum_size() noexcept { return std::size_t(1) << 30; }

    // The size is raised to minimum_size() and rounded up to whole pages.
    // Throws std::length_error when it is above maximum_size().
    explicit arena_stack(std::size_t size = arena_stack::default_size());

    // Usable bytes of every stack this allocator hands out.
    std::size_t size() const noexcept { return size_; }

    // sctx.sp is the high end of the stack, sctx.size its usable size; the
    // page below sp - size is the guard. Throws std::bad_alloc when address
    // space or memory is exhausted.
    boost::context::stack_context allocate();

    // Accepts a stack from allocate() of any arena_stack object, on any
    // thread, including during thread exit.
    void deallocate(boost::context::stack_context& sctx) noexcept;

private:
    std::size_t size_;
};

using default_stack = arena_stack;

} // namespace fibers

#endif // FIBERS_STACK_HPP
