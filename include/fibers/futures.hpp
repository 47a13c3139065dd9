// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_FUTURES_HPP
#define FIBERS_FUTURES_HPP

// Futures and the pools that complete them (Gruvi's Future, ThreadPool,
// FiberPool; Python's concurrent.futures). A future may be waited on from
// a task, from a root fiber or from a plain thread: a fiber waits through
// its hub, which serves everything else meanwhile; a thread without a hub
// blocks.

#include <fibers/detail/waiter.hpp>
#include <fibers/errors.hpp>
#include <fibers/impl/futures.hpp>
#include <fibers/switchpoint.hpp>

#include <boost/intrusive_ptr.hpp>

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

namespace fibers {

/// The result of work that runs elsewhere (Python's concurrent.futures.
/// Future, Gruvi's Future). A handle: copies share one state; compared by
/// identity. future<void> also accepts any future<U>, to wait on futures of
/// different types together. Waiting (result, exception, wait) is a
/// switchpoint: a fiber waits through its hub, a thread without a hub
/// blocks. An empty handle (default-constructed) throws fibers::error.
template <class T>
class future {
    static_assert(!std::is_reference_v<T>, "fibers::future holds a value: use a pointer or std::reference_wrapper");

public:
    using value_type = T;
    using result_reference = std::conditional_t<std::is_void_v<T>, void, std::add_lvalue_reference_t<T const>>;

    future() noexcept = default;
    future(future const& other) noexcept = default;
    future(future&& other) noexcept = default;
    /// future<void> from any future: the same state, its value ignored.
    template <class U, class V = T, class = std::enable_if_t<std::is_void_v<V> && !std::is_void_v<U>>>
    future(future<U> const& other) noexcept : state_(other.state_) {}
    future& operator=(future other) noexcept {
        state_.swap(other.state_);
        return *this;
    }

    /// Whether the handle refers to a state.
    bool valid() const noexcept { return state_ != nullptr; }
    explicit operator bool() const noexcept { return valid(); }

    /// Finished: with a value, an exception, or cancelled.
    bool done() const { return checked_state().done(); }
    /// The work has started and not finished.
    bool running() const { return checked_state().running(); }
    bool cancelled() const { return checked_state().cancelled(); }

    /// Cancels the work if it has not started: true then (or if already
    /// cancelled), and waiters get fibers::cancelled; false once it runs.
    bool cancel() { return checked_state().cancel(); }

    /// Waits until done; the value (a reference into the shared state, valid
    /// while a handle lives), or the work's exception rethrown, or
    /// fibers::cancelled. A switchpoint.
    result_reference result() const {
        detail::future_state& s = checked_state();
        switchpoint(); // even when done: whether it waits must not decide where it may be called
        if (!s.done())
            s.wait(std::nullopt);
        return value_of(s);
    }
    /// The same, or fibers::timeout if not done within `timeout`.
    template <class Rep, class Period>
    result_reference result(std::chrono::duration<Rep, Period> timeout) const {
        detail::future_state& s = checked_state();
        switchpoint();
        if (!s.done() && !s.wait(detail::deadline_after(timeout)))
            throw fibers::timeout();
        return value_of(s);
    }

    /// Waits until done; the work's exception (fibers::cancelled's for a
    /// cancelled future), or null. A switchpoint.
    std::exception_ptr exception() const {
        detail::future_state& s = checked_state();
        switchpoint();
        if (!s.done())
            s.wait(std::nullopt);
        return s.error();
    }
    /// The same, or fibers::timeout if not done within `timeout`.
    template <class Rep, class Period>
    std::exception_ptr exception(std::chrono::duration<Rep, Period> timeout) const {
        detail::future_state& s = checked_state();
        switchpoint();
        if (!s.done() && !s.wait(detail::deadline_after(timeout)))
            throw fibers::timeout();
        return s.error();
    }

    /// Waits until done, without rethrowing. A switchpoint.
    void wait() const {
        detail::future_state& s = checked_state();
        switchpoint();
        if (!s.done())
            s.wait(std::nullopt);
    }
    /// Waits until done (true) or `timeout` passes (false).
    template <class Rep, class Period>
    bool wait(std::chrono::duration<Rep, Period> timeout) const {
        detail::future_state& s = checked_state();
        switchpoint();
        return s.done() || s.wait(detail::deadline_after(timeout));
    }

    /// `fn()` or `fn(future<T>)` runs once the future is done: at once, in
    /// the caller, if it is; else in the thread or fiber that completes it
    /// (a pool's worker; the canceller). Callbacks run in the order added;
    /// an exception from one is logged and dropped. `fn` must not wait.
    template <class Fn>
    void add_done_callback(Fn&& fn) const {
        using callable = std::decay_t<Fn>;
        static_assert(std::is_invocable_v<callable&, future<T>> || std::is_invocable_v<callable&>,
                      "a done callback is called as fn() or fn(future<T>)");
        detail::future_state& s = checked_state();
        s.add_callback(new detail::callback_for<T, callable>(std::forward<Fn>(fn)));
    }

    friend bool operator==(future const& a, future const& b) noexcept { return a.state_ == b.state_; }
    friend bool operator!=(future const& a, future const& b) noexcept { return a.state_ != b.state_; }

private:
    template <class U>
    friend class future;
    friend struct detail::future_access;

    detail::future_state& checked_state() const {
        if (state_ == nullptr)
            throw error("fibers: empty future");
        return *state_;
    }
    static result_reference value_of(detail::future_state& s) {
        s.rethrow_if_error();
        if constexpr (!std::is_void_v<T>)
            return *static_cast<detail::future_value<T>&>(s).value;
    }

    boost::intrusive_ptr<detail::future_state> state_;
};

/// What the pools share: submit and map over an `enqueue` of their own.
class pool {
public:
    pool(pool const&) = delete;
    pool& operator=(pool const&) = delete;

    /// Queues `fn()` (moved or copied into the pool, with the future's
    /// state, in one allocation) and returns its future.
    /// fibers::error once the pool is closed.
    template <class Fn>
    future<detail::submit_result_t<Fn>> submit(Fn&& fn) {
        using result = detail::submit_result_t<Fn>;
        static_assert(std::is_invocable_v<std::decay_t<Fn>&>, "submit takes a callable with no arguments: bind them");
        auto* item = new detail::work_item<result, std::decay_t<Fn>>(std::forward<Fn>(fn));
        future<result> f = detail::future_access::share<result>(item);
        intrusive_ptr_add_ref(item); // the pool's, until the work has run or been cancelled
        enqueue(item);
        return f;
    }

    /// Submits `fn(x)` for each element `x` of `range` (each with its own
    /// copies of `fn` and `x`), waits, and returns the results in the order
    /// of the range: a std::vector, or nothing if fn returns void. The
    /// first exception in that order is rethrown; when an exception leaves
    /// (the caller cancelled too), the work not started yet is cancelled.
    template <class Fn, class Range>
    auto map(Fn const& fn, Range const& range) {
        using std::begin;
        using std::end;
        using element = std::decay_t<decltype(*begin(range))>;
        using result = std::decay_t<std::invoke_result_t<Fn&, element&>>;
        std::vector<future<result>> futures;
        // When an exception leaves (a result's, the caller's cancel), the
        // work not started yet is dropped, as in Python's Executor.map.
        struct cancel_rest {
            std::vector<future<result>>& futures;
            bool armed = true;
            ~cancel_rest() {
                if (armed)
                    for (auto& f : futures)
                        f.cancel();
            }
        } guard{futures};
        for (auto it = begin(range); it != end(range); ++it)
            futures.push_back(submit([f = fn, x = element(*it)]() mutable -> result { return std::invoke(f, x); }));
        if constexpr (std::is_void_v<result>) {
            for (auto& f : futures)
                f.result();
            guard.armed = false;
        } else {
            std::vector<result> results;
            results.reserve(futures.size());
            for (auto& f : futures)
                results.push_back(f.result());
            guard.armed = false;
            return results;
        }
    }

    /// No more submissions (they throw fibers::error); the work queued
    /// still runs, then the workers exit. Does not wait.
    virtual void close() = 0;
    /// Waits until all work submitted has finished; once closed, also until
    /// the workers have exited. A switchpoint.
    virtual void join() = 0;

    std::size_t maxsize() const noexcept { return maxsize_; }

protected:
    explicit pool(std::size_t maxsize);
    virtual ~pool() = default;
    // Takes the queue's reference to `item`, releasing it if this throws.
    virtual void enqueue(detail::future_state* item) = 0;

private:
    std::size_t maxsize_;
};

/// Up to `maxsize` worker threads, made as work arrives, that run the work
/// submitted (Gruvi's ThreadPool). For blocking calls and CPU-bound work
/// that must not stall a hub. The destructor closes the pool and joins it.
class thread_pool final : public pool {
public:
    /// std::invalid_argument if maxsize is 0.
    explicit thread_pool(std::size_t maxsize);
    ~thread_pool() override;

    void close() override;
    void join() override;

    /// Worker threads made so far (until joined after close).
    std::size_t size() const;

private:
    struct impl;
    friend struct detail::global_pool;
    void enqueue(detail::future_state* item) override;

    std::unique_ptr<impl> impl_;
};

/// Up to `maxsize` tasks on the hub of the thread that made the pool, made
/// as work arrives, that run the work submitted (Gruvi's FiberPool). Work
/// may be submitted from any thread. The destructor closes the pool without
/// waiting: the queued work still runs, on the hub, while the hub lives;
/// what a closing hub never runs is cancelled.
class fiber_pool final : public pool {
public:
    /// On the calling thread's hub (made if needed). std::invalid_argument
    /// if maxsize is 0.
    explicit fiber_pool(std::size_t maxsize);
    ~fiber_pool() override;

    void close() override;
    void join() override;

    /// Worker tasks alive (or about to be made).
    std::size_t size() const;

private:
    struct state;
    void enqueue(detail::future_state* item) override;

    std::shared_ptr<state> state_;
};

/// The process-wide pool for blocking I/O (20 threads, as in Gruvi), made
/// on first use. At exit it is closed: queued work is cancelled, idle
/// workers are joined, busy ones are left to finish on their own.
thread_pool& get_io_pool();

/// The process-wide pool for CPU-bound work (one thread per CPU), made on
/// first use; shut down at exit like the IO pool.
thread_pool& get_cpu_pool();

/// Runs `fn()` in the IO pool while the calling fiber waits (its hub serves
/// everything else) or the calling thread blocks; returns its result or
/// rethrows its exception. A switchpoint. If the wait is interrupted (a
/// task's cancel, keyboard_interrupt), work not yet started is cancelled
/// and the exception leaves; work already running is waited for, so that
/// `fn` may safely refer to the caller's stack, and then, as it completed,
/// its result is returned and the exception comes at the caller's next wait
/// (doc/hub.md, "Cancellation"). A closing hub's unwinding leaves once the
/// work has ended.
template <class Fn>
detail::submit_result_t<Fn> blocking(Fn&& fn) {
    using result = detail::submit_result_t<Fn>;
    switchpoint();
    future<result> f = get_io_pool().submit(std::forward<Fn>(fn));
    detail::future_state& s = *detail::future_access::state(f);
    if (!s.done()) {
        try {
            s.wait(std::nullopt);
        } catch (...) {
            if (s.cancel())
                throw;
            s.wait_to_end();
            if (!detail::defer_interruption(std::current_exception()))
                throw;
        }
    }
    s.rethrow_taken_error();
    if constexpr (!std::is_void_v<result>) {
        // No other handle sees this value: it may be moved out.
        return std::move(*static_cast<detail::future_value<result>&>(s).value);
    }
}

/// What wait() found: the futures done and those not, each in the order
/// given.
template <class T>
struct wait_result {
    std::vector<future<T>> done;
    std::vector<future<T>> not_done;
};

/// Waits until `count` of `futures` are done (0, or more than there are:
/// all of them). Returns which are done and which are not. A switchpoint.
template <class T>
wait_result<T> wait(std::vector<future<T>> const& futures, std::size_t count = 0) {
    return detail::wait_impl(futures, count, std::nullopt);
}

/// The same, or until `timeout` passes: no exception then, the futures not
/// done are in not_done (Python's wait).
template <class T, class Rep, class Period>
wait_result<T> wait(std::vector<future<T>> const& futures, std::size_t count,
                    std::chrono::duration<Rep, Period> timeout) {
    return detail::wait_impl(futures, count, detail::deadline_after(timeout));
}

/// Waits for all of them, for at most `timeout`.
template <class T, class Rep, class Period>
wait_result<T> wait(std::vector<future<T>> const& futures, std::chrono::duration<Rep, Period> timeout) {
    return detail::wait_impl(futures, 0, detail::deadline_after(timeout));
}

/// The range as_completed() returns: an input range of the futures in the
/// order they complete (those done already first, in the order given).
/// Getting the next one waits; fibers::timeout if the deadline passes first.
/// Not copyable; movable.
template <class T>
class completed_range {
public:
    class iterator {
    public:
        using iterator_category = std::input_iterator_tag;
        using value_type = future<T>;
        using difference_type = std::ptrdiff_t;
        using pointer = future<T> const*;
        using reference = future<T> const&;

        iterator() noexcept = default;
        reference operator*() const { return range_->futures_[range_->current_]; }
        pointer operator->() const { return &**this; }
        /// Waits for the next one.
        iterator& operator++() {
            range_->advance();
            if (range_->current_ == npos)
                range_ = nullptr;
            return *this;
        }
        void operator++(int) { ++*this; }
        friend bool operator==(iterator const& a, iterator const& b) noexcept { return a.range_ == b.range_; }
        friend bool operator!=(iterator const& a, iterator const& b) noexcept { return a.range_ != b.range_; }

    private:
        friend class completed_range;
        explicit iterator(completed_range* r) noexcept : range_(r) {}
        completed_range* range_ = nullptr;
    };

    completed_range(std::vector<future<T>> futures, detail::deadline until)
        : futures_(std::move(futures)), until_(until) {
        std::vector<detail::future_state*> states = detail::states_of(futures_);
        if (!states.empty())
            queue_ = std::make_unique<detail::completion_queue>(states.data(), states.size());
    }
    completed_range(completed_range&&) noexcept = default;
    completed_range& operator=(completed_range&&) noexcept = default;

    /// Waits for the first one (on the first call).
    iterator begin() {
        if (!begun_) {
            begun_ = true;
            advance();
        }
        return iterator(current_ == npos ? nullptr : this);
    }
    iterator end() noexcept { return iterator(); }

    /// Waits for the next one; nullopt once all have been returned.
    std::optional<future<T>> next() {
        begun_ = true;
        advance();
        if (current_ == npos)
            return std::nullopt;
        return futures_[current_];
    }

    std::size_t size() const noexcept { return futures_.size(); }

private:
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

    void advance() {
        if (yielded_ == futures_.size()) {
            current_ = npos;
            return;
        }
        current_ = queue_->next(yielded_, until_);
        ++yielded_;
    }

    std::vector<future<T>> futures_;
    std::unique_ptr<detail::completion_queue> queue_;
    detail::deadline until_;
    std::size_t yielded_ = 0;
    std::size_t current_ = npos;
    bool begun_ = false;
};

/// The futures as they complete: `for (auto& f : as_completed(fs)) ...`.
template <class T>
completed_range<T> as_completed(std::vector<future<T>> futures) {
    return completed_range<T>(std::move(futures), std::nullopt);
}

/// The same within `timeout` from now: past it, getting the next future
/// throws fibers::timeout.
template <class T, class Rep, class Period>
completed_range<T> as_completed(std::vector<future<T>> futures, std::chrono::duration<Rep, Period> timeout) {
    return completed_range<T>(std::move(futures), detail::deadline_after(timeout));
}

} // namespace fibers

#endif // FIBERS_FUTURES_HPP
