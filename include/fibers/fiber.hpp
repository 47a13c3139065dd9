// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_FIBER_HPP
#define FIBERS_FIBER_HPP

#include <fibers/detail/fiber_record.hpp>
#include <fibers/detail/thread_state.hpp>
#include <fibers/errors.hpp>
#include <fibers/stack.hpp>

#include <any>
#include <cstddef>
#include <exception>
#include <functional>
#include <iosfwd>
#include <memory>
#include <thread>
#include <type_traits>
#include <utility>

namespace fibers {

namespace detail {
struct fiber_access;
}

/// A handle to a fiber: a stackful execution context that runs only when
/// switched to, organised in a tree as in python-fibers. Handles are
/// copyable and compare by identity; the fiber lives while a handle to it
/// exists or while it runs.
class fiber {
public:
    /// An empty handle.
    fiber() noexcept = default;

    /// A fiber of the calling thread that will run `target()` when first
    /// switched to; its parent is the running fiber.
    template <class Fn, class = std::enable_if_t<!std::is_base_of_v<fiber, std::decay_t<Fn>>>>
    explicit fiber(Fn&& target) : fiber(std::allocator_arg, default_stack(), std::forward<Fn>(target)) {}

    /// As above with `parent` (an empty handle means the running fiber).
    template <class Fn>
    fiber(Fn&& target, fiber parent)
        : fiber(std::allocator_arg, default_stack(), std::forward<Fn>(target), std::move(parent)) {}

    /// As above with a Boost.Context stack allocator for the fiber's stack.
    template <class StackAllocator, class Fn>
    fiber(std::allocator_arg_t, StackAllocator salloc, Fn&& target, fiber parent = current()) {
        static_assert(std::is_invocable_v<std::decay_t<Fn>&>,
                      "a fiber's target is called with no arguments: bind them first");
        auto* record = new detail::record_with_target<detail::fiber_record, std::decay_t<Fn>, StackAllocator>(
            std::move(salloc), std::forward<Fn>(target));
        detail::attach_new_fiber(record, parent.record_);
        record_ = record;
    }

    // A handle that lies on the stack of the fiber it refers to holds no
    // reference (see detail::lies_on_own_stack); every other one holds one.
    // Copies, moves and assignments keep the count right for where each
    // handle lies: a handle moved off that stack holds one again.
    fiber(fiber const& other) noexcept : record_(other.record_) { hold(); }
    fiber(fiber&& other) noexcept : record_(std::exchange(other.record_, nullptr)) {
        settle_reference_moved_from(&other);
    }
    fiber& operator=(fiber const& other) noexcept {
        detail::fiber_record* previous = std::exchange(record_, other.record_);
        hold();
        drop(previous);
        return *this;
    }
    fiber& operator=(fiber&& other) noexcept {
        if (this != &other) {
            detail::fiber_record* previous = std::exchange(record_, std::exchange(other.record_, nullptr));
            settle_reference_moved_from(&other);
            drop(previous);
        }
        return *this;
    }
    ~fiber() { drop(record_); }
    void swap(fiber& other) noexcept {
        fiber held(std::move(other));
        other = std::move(*this);
        *this = std::move(held);
    }

    /// Suspends the caller and runs this fiber; returns what is later
    /// switched back to the caller. A value on the first switch throws
    /// std::invalid_argument; self, ended or foreign fibers: fibers::error.
    std::any switch_to(std::any value = {});

    /// Switches and raises `e` where this fiber is suspended; a fiber that
    /// never started ends at once and `e` goes to its nearest started
    /// ancestor.
    std::any throw_to(std::exception_ptr e);
    template <class E>
    std::any throw_to(E e) {
        return throw_to(std::make_exception_ptr(std::move(e)));
    }

    /// From construction (before the first switch too) until the target
    /// returns or throws.
    bool is_alive() const noexcept;

    /// The fiber that gets control (or the exception) when this one ends;
    /// empty for a root fiber.
    fiber parent() const;

    /// Reparents; std::invalid_argument for an empty, ended or foreign
    /// parent, or one that would make a cycle.
    void set_parent(fiber p);

    std::thread::id thread_id() const noexcept;

    explicit operator bool() const noexcept { return record_ != nullptr; }
    friend bool operator==(fiber const& a, fiber const& b) noexcept { return a.record_ == b.record_; }
    friend bool operator!=(fiber const& a, fiber const& b) noexcept { return a.record_ != b.record_; }
    /// Writes the fiber's name for messages: "fiber 0x...", "root", a task's
    /// name, or "empty fiber".
    friend std::ostream& operator<<(std::ostream& out, fiber const& f);

    /// The running fiber of the calling thread (its root fiber, made on
    /// first use, when no other runs).
    static fiber current();

private:
    friend struct detail::fiber_access;
    friend struct std::hash<fiber>;

    // Takes over the caller's reference to a fiber that has not started:
    // nothing lies on its stack yet.
    explicit fiber(detail::fiber_record* adopted) noexcept : record_(adopted) {}
    struct share_tag {};
    // Takes a reference of its own, if it holds one where it lies.
    fiber(detail::fiber_record* shared, share_tag) noexcept : record_(shared) { hold(); }

    bool holds(detail::fiber_record const* record) const noexcept {
        return record != nullptr && !detail::lies_on_own_stack(this, record);
    }
    void hold() noexcept {
        if (holds(record_))
            detail::add_reference(record_);
    }
    // `record` is no longer referred to from here.
    void drop(detail::fiber_record* record) noexcept {
        if (holds(record))
            detail::release(record);
    }
    // record_ was just moved here from `source`, with its reference if it held one.
    void settle_reference_moved_from(fiber const* source) noexcept {
        if (record_ == nullptr)
            return;
        bool const held_there = !detail::lies_on_own_stack(source, record_);
        bool const held_here = !detail::lies_on_own_stack(this, record_);
        if (held_here && !held_there)
            detail::add_reference(record_);
        else if (held_there && !held_here)
            detail::release(record_);
    }

    detail::fiber_record* record_ = nullptr;
};

/// The running fiber of the calling thread.
inline fiber current() { return fiber::current(); }

namespace detail {
// How the higher layers (hub, tasks) reach a handle's record.
struct fiber_access {
    static fiber_record* record(fiber const& f) noexcept { return f.record_; }
    // For a record that has not started, with the reference it was made with.
    static fiber adopt(fiber_record* record) noexcept { return fiber(record); }
    static void adopt_into(fiber& empty, fiber_record* record) noexcept { empty.record_ = record; }
    static fiber share(fiber_record* record) noexcept { return fiber(record, fiber::share_tag{}); }
};
} // namespace detail

FIBERS_ALWAYS_INLINE std::any fiber::switch_to(std::any value) {
#if !FIBERS_SANITIZED
    detail::thread_state* ts = detail::current_thread_state;
    if (FIBERS_LIKELY(ts != nullptr && detail::may_switch_inline(*ts, record_))) {
        ts->incoming_value = &value;
        return detail::switch_inline(*ts, record_);
    }
#endif
    return detail::switch_checked(record_, &value);
}

} // namespace fibers

template <>
struct std::hash<fibers::fiber> {
    std::size_t operator()(fibers::fiber const& f) const noexcept {
        return std::hash<void const*>()(f.record_);
    }
};

#endif // FIBERS_FIBER_HPP
