// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_TASK_HPP
#define FIBERS_TASK_HPP

#include <fibers/detail/duration.hpp>
#include <fibers/detail/task_record.hpp>
#include <fibers/fiber.hpp>
#include <fibers/hub.hpp>
#include <fibers/stack.hpp>

#include <any>
#include <chrono>
#include <cstddef>
#include <exception>
#include <string>
#include <type_traits>
#include <utility>

namespace fibers {

struct task_options {
    std::string name;           // empty: "Fiber-N", N counting the hub's tasks from 1
    hub* on = nullptr;          // null: the calling thread's hub
    std::size_t stack_size = 0; // 0: fibers::arena_stack::default_size()
};

/// A fiber scheduled by its hub (Gruvi's Fiber). A handle, like fiber. It
/// is a child of the hub's fiber, and only the hub switches to it, through
/// whichever handle. Once started it lives until it ends, handles or not.
class task : public fiber {
public:
    task() noexcept = default;

    template <class Fn, class = std::enable_if_t<!std::is_base_of_v<fiber, std::decay_t<Fn>>>>
    explicit task(Fn&& target, task_options opts = {})
        : task(detail::task_start::later, std::forward<Fn>(target), std::move(opts)) {}

    /// spawn's: with task_start::at_once, made and started in one step.
    template <class Fn>
    task(detail::task_start when, Fn&& target, task_options opts) {
        static_assert(std::is_invocable_v<std::decay_t<Fn>&>,
                      "a task's target is called with no arguments: bind them first");
        using body = detail::task_body<std::decay_t<Fn>>;
        arena_stack stack = opts.stack_size != 0 ? arena_stack(opts.stack_size) : arena_stack();
        auto* record = new detail::record_with_target<detail::task_record, body, arena_stack>(
            std::move(stack), body{std::forward<Fn>(target)});
        detail::attach_task(record, std::move(opts.name), opts.on, when);
        detail::fiber_access::adopt_into(*this, record);
    }

    /// The name given in task_options, or "Fiber-N".
    std::string const& name() const;

    bool alive() const noexcept { return is_alive(); }

    /// Schedules the first run in a coming loop iteration. fibers::error if
    /// already started, on a closed hub, or from another thread.
    void start();

    /// Throws fibers::cancelled(message) into the task in a coming loop
    /// iteration, where it waits (or at once, before its target, if it has
    /// not run yet). Nothing on a task that has ended. A wait that had
    /// completed when it came returns, and the cancellation comes at the
    /// task's next wait (doc/hub.md, "Cancellation").
    void cancel(std::string message = "cancelled by task::cancel()");

    /// Waits until the task has ended. A switchpoint; from any fiber of the
    /// hub's thread, the root included. fibers::error from the task itself.
    void join();
    /// The same for at most `timeout`, then fibers::timeout. A zero or
    /// negative timeout throws at once unless the task has ended; one too
    /// long for the clock waits for ever.
    template <class Rep, class Period>
    void join(std::chrono::duration<Rep, Period> timeout) {
        join_for(detail::saturated_nanoseconds(timeout));
    }

    /// Only the hub may switch to a task: from anywhere else, fibers::error.
    std::any switch_to(std::any v = {}) { return fiber::switch_to(std::move(v)); }
    std::any throw_to(std::exception_ptr e) { return fiber::throw_to(std::move(e)); }

    /// `fn()` runs when the task ends (in the task, before its joiners
    /// wake), or at once if it already has. Returns a handle for removal.
    /// Both only from the task's thread: from another, fibers::error.
    template <class Fn>
    std::size_t add_done_callback(Fn&& fn) {
        return add_done_callback_erased(std::function<void()>(std::forward<Fn>(fn)));
    }
    void remove_done_callback(std::size_t handle);

private:
    detail::task_record& record() const;
    static bool on_own_thread(detail::task_record const& t) noexcept;
    // The record, if it may be joined now and has not ended; throws on misuse.
    detail::task_record* record_to_join() const;
    void join_for(std::chrono::nanoseconds timeout);
    std::size_t add_done_callback_erased(std::function<void()> fn);

    friend task current_task();
    explicit task(fiber&& running) noexcept : fiber(std::move(running)) {}
};

/// Makes a task and starts it.
template <class Fn>
task spawn(Fn&& fn, task_options opts = {}) {
    return task(detail::task_start::at_once, std::forward<Fn>(fn), std::move(opts));
}

/// The running fiber (= current()): a task, the hub, or a root.
fiber current_fiber();

/// The running task (what Gruvi's current_fiber() gives a task): its name,
/// cancel, join. An empty handle in a root fiber, a hub or a plain fiber.
task current_task();

namespace detail {
void sleep_for(std::chrono::nanoseconds d);
} // namespace detail

/// Suspends the calling fiber for `d`. A switchpoint. sleep(0s) puts it
/// behind all work already queued, so two fibers that call it in turn
/// alternate (so does a negative `d`); sleepers wake in deadline order. A
/// duration too long for the clock (hours::max()) sleeps for ever.
template <class Rep, class Period>
void sleep(std::chrono::duration<Rep, Period> d) {
    std::chrono::nanoseconds const ns = detail::saturated_nanoseconds(d);
    if (ns == ns.zero())
        detail::give_turn(hub::get());
    else
        detail::sleep_for(ns);
}

} // namespace fibers

#endif // FIBERS_TASK_HPP
