// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_SCOPE_HPP
#define FIBERS_SCOPE_HPP

// Structured concurrency (doc/scope.md): a task_group whose children never
// outlive it (Trio's nursery), a cancel_scope that puts a deadline on a
// block of code (Trio's CancelScope), and race, the first of several
// callables to end.

#include <fibers/detail/duration.hpp>
#include <fibers/task.hpp>

#include <boost/intrusive_ptr.hpp>

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace fibers {

namespace detail {

class group_state;
void intrusive_ptr_add_ref(group_state* g) noexcept;
void intrusive_ptr_release(group_state* g) noexcept;

class scope_state;
void intrusive_ptr_add_ref(scope_state* s) noexcept;
void intrusive_ptr_release(scope_state* s) noexcept;

// A child of a group ended by `current_exception()`: the first failure
// (anything but fibers::cancelled) is kept for join() and cancels the
// other children. Whether the child rethrows it: a cancellation (ended
// quietly by the task), a later failure (logged with the task's name), and
// the unwinding of its stack are rethrown; the first failure is not.
bool group_child_failed(group_state& g);

// The target of a group's child: the user's callable, its result dropped.
template <class Fn>
struct group_child {
    boost::intrusive_ptr<group_state> group;
    Fn fn;
    void operator()() {
        try {
            std::invoke(fn);
        } catch (...) {
            if (group_child_failed(*group))
                throw;
        }
    }
};

// What race's children share, on the racing fiber's stack.
struct race_core {
    bool decided = false;
    std::exception_ptr error;
    std::function<void()> cancel_the_others;
    // The racer ended by `current_exception()`. If it is the first to end,
    // the error is kept and the others cancelled; a later racer's failure
    // other than a cancellation is logged with its task's name. The
    // unwinding of its stack is rethrown.
    void racer_failed();
};

template <class Fn>
using race_value_t = std::conditional_t<std::is_void_v<std::invoke_result_t<std::decay_t<Fn>&>>, std::monostate,
                                        std::decay_t<std::invoke_result_t<std::decay_t<Fn>&>>>;

} // namespace detail

/// A set of child tasks that never outlive it (Trio's nursery). The first
/// child to end with an exception other than fibers::cancelled cancels the
/// others, and join() rethrows it once all have ended (later failures are
/// logged with their task's name). Used from the thread that made it; its
/// children run on that thread's hub.
class task_group {
public:
    task_group();
    task_group(task_group const&) = delete;
    task_group& operator=(task_group const&) = delete;

    /// Makes and starts a child task running `fn()`. fibers::error once the
    /// group was cancelled (by cancel() or a child's failure) or while its
    /// destructor runs; std::invalid_argument if `opts.on` names the hub of
    /// another thread.
    template <class Fn>
    task spawn(Fn&& fn, task_options opts = {}) {
        static_assert(std::is_invocable_v<std::decay_t<Fn>&>,
                      "a task's target is called with no arguments: bind them first");
        check_may_spawn(opts);
        task child(detail::group_child<std::decay_t<Fn>>{state_, std::forward<Fn>(fn)}, std::move(opts));
        adopt(child);
        return child;
    }

    /// Waits until every child has ended, then rethrows the first failure
    /// of a child (once). A switchpoint.
    void join();
    /// The same for at most `timeout`, then fibers::timeout; the children go on.
    template <class Rep, class Period>
    void join(std::chrono::duration<Rep, Period> timeout) {
        join_for(detail::saturated_nanoseconds(timeout));
    }

    /// task::cancel(message) on every live child; later spawns throw.
    void cancel(std::string message = "cancelled by task_group::cancel()");

    /// The children that have not ended.
    std::size_t size() const noexcept;

    /// Cancels the children still alive and waits for them; never throws.
    /// A failure that join() did not report is logged.
    ~task_group();

private:
    void check_may_spawn(task_options const& opts) const;
    void adopt(task& child);
    void join_for(std::chrono::nanoseconds timeout);

    boost::intrusive_ptr<detail::group_state> state_;
};

/// A deadline for a block of code (Trio's CancelScope). Made in a fiber, it
/// covers that fiber from its construction to its destruction: once its
/// deadline has passed or cancel() was called, each wait of the fiber on
/// its hub inside it throws, fibers::timeout for the deadline and
/// fibers::cancelled for cancel(), by the rules of every interruption
/// (doc/hub.md, "Cancellation"). Scopes nest; the earliest deadline wins,
/// and an outer scope's exception passes through an inner one, whose
/// timed_out() and cancel_called() stay false. Destroy it in the fiber
/// that made it.
class cancel_scope {
public:
    /// No deadline: only cancel() fires it.
    cancel_scope();
    /// A deadline `timeout` from now. A zero or negative timeout has passed
    /// already; one too long for the clock never passes.
    template <class Rep, class Period>
    explicit cancel_scope(std::chrono::duration<Rep, Period> timeout)
        : cancel_scope(std::optional<std::chrono::nanoseconds>(detail::saturated_nanoseconds(timeout))) {}
    cancel_scope(cancel_scope const&) = delete;
    cancel_scope& operator=(cancel_scope const&) = delete;

    /// Fires the scope (if its deadline has not). From any fiber or thread,
    /// while the scope exists.
    void cancel() noexcept;
    /// cancel() was called or the deadline passed.
    bool cancel_called() const noexcept;
    /// The deadline passed (before any cancel()).
    bool timed_out() const noexcept;

    ~cancel_scope();

private:
    explicit cancel_scope(std::optional<std::chrono::nanoseconds> timeout);
    boost::intrusive_ptr<detail::scope_state> state_;
};

namespace detail {

template <std::size_t I, class Result, class Fn>
void spawn_racer(task_group& g, race_core& core, std::optional<Result>& result, Fn&& fn) {
    g.spawn([&core, &result, fn = std::decay_t<Fn>(std::forward<Fn>(fn))]() mutable {
        try {
            if constexpr (std::is_void_v<std::invoke_result_t<std::decay_t<Fn>&>>) {
                std::invoke(fn);
                if (core.decided)
                    return;
                core.decided = true;
                result.emplace(std::in_place_index<I>);
            } else {
                auto value = std::invoke(fn);
                if (core.decided)
                    return;
                core.decided = true;
                result.emplace(std::in_place_index<I>, std::move(value));
            }
        } catch (...) {
            core.racer_failed();
            return;
        }
        core.cancel_the_others();
    });
}

template <class Result, class... Fn, std::size_t... I>
void spawn_racers(task_group& g, race_core& core, std::optional<Result>& result, std::index_sequence<I...>,
                  Fn&&... fns) {
    (spawn_racer<I, Result>(g, core, result, std::forward<Fn>(fns)), ...);
}

[[noreturn]] void throw_race_undecided();

} // namespace detail

/// Runs each callable in a child task of its own and returns the result of
/// the first to end, as the alternative of its index (void as
/// std::monostate), once the others were cancelled and have ended. If the
/// first to end threw, rethrows that instead. A switchpoint.
template <class... Fn>
auto race(Fn&&... fns) {
    static_assert(sizeof...(Fn) > 0, "race needs at least one callable");
    static_assert((std::is_invocable_v<std::decay_t<Fn>&> && ...),
                  "race calls each callable with no arguments: bind them first");
    using result_type = std::variant<detail::race_value_t<Fn>...>;
    std::optional<result_type> result;
    detail::race_core core;
    {
        task_group g;
        core.cancel_the_others = [&g] { g.cancel("cancelled by race: another racer ended first"); };
        detail::spawn_racers<result_type>(g, core, result, std::index_sequence_for<Fn...>{},
                                          std::forward<Fn>(fns)...);
        g.join();
    }
    if (core.error)
        std::rethrow_exception(core.error);
    if (!result)
        detail::throw_race_undecided();
    return std::move(*result);
}

} // namespace fibers

#endif // FIBERS_SCOPE_HPP
