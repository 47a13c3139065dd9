// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_IMPL_FUTURES_HPP
#define FIBERS_IMPL_FUTURES_HPP

// Not part of the API: the machinery of <fibers/futures.hpp>, which includes
// this header. It lives in a header because future<T> holds the shared
// state and the pools' and wait()'s templates make and read it; what needs
// neither is in src/futures.cpp.

#include <fibers/detail/waiter.hpp>

#include <boost/intrusive/list.hpp>
#include <boost/intrusive/slist.hpp>
#include <boost/smart_ptr/intrusive_ref_counter.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

namespace fibers {

template <class T>
class future;
template <class T>
struct wait_result;

namespace detail {

class future_state;
// Declared for thread_pool, which befriends it; src/futures.cpp defines it.
struct global_pool;

// Something outside the future that its completion must reach (a wait()
// over many futures, a thread blocked on it): linked in the state under its
// mutex, unlinked and notified by the completer still holding it, so that
// its owner, which unlinks it under the same mutex, never sees it dangle.
// Safe-link hook: once the completer has taken it off, is_linked() says so.
struct future_watcher : boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::safe_link>> {
    void (*notify)(future_watcher& self) noexcept = nullptr;
};

// A done callback, owned by the state until it has run.
struct future_callback : boost::intrusive::slist_base_hook<> {
    virtual ~future_callback() = default;
    virtual void call(future_state& state) = 0;
};

// What the copies of a future share, and, for work submitted to a pool, the
// work itself (see work_item): one allocation per submission.
class future_state : public boost::intrusive_ref_counter<future_state, boost::thread_safe_counter> {
public:
    future_state() = default;
    future_state(future_state const&) = delete;
    future_state& operator=(future_state const&) = delete;
    // Public for the last intrusive_ptr_release only: the state is counted.
    virtual ~future_state();

    bool done() const noexcept { return status_.load(std::memory_order_acquire) == finished; }
    bool running() const noexcept { return status_.load(std::memory_order_acquire) == started; }
    // cancelled_ is written before the release of `finished`.
    bool cancelled() const noexcept { return done() && cancelled_; }
    // Once done: the exception, or null.
    std::exception_ptr const& error() const noexcept { return error_; }
    void rethrow_if_error() const {
        if (error_)
            std::rethrow_exception(error_);
    }
    // For the only handle's owner (blocking()): moves the exception out, so
    // that it dies on the thread that caught it. Destroyed with the state by
    // a pool's worker, it would be freed on the worker's thread, ordered
    // after the catch only by the C++ runtime's own counts, which
    // ThreadSanitizer cannot see.
    void rethrow_taken_error() {
        if (error_)
            std::rethrow_exception(std::exchange(error_, nullptr));
    }

    // The work may begin: false if it was cancelled first.
    bool try_start() noexcept {
        std::uint8_t expected = pending;
        return status_.compare_exchange_strong(expected, started, std::memory_order_acq_rel);
    }
    // Succeeds while the work has not started (or if already cancelled).
    bool cancel() noexcept;
    // Ends the work: the value, if any, is set; wakes the waiters, runs the
    // callbacks in the calling thread or fiber.
    void finish(std::exception_ptr error, bool cancelled = false) noexcept;
    // In a catch block of work that threw: for a fiber being unwound (its
    // hub closing), marks the work cancelled and returns true: the caller
    // must rethrow. Else false, and the caller finishes with the exception.
    bool finish_if_unwinding() noexcept;

    // Waits until done (true) or `until` passes (false). A switchpoint.
    bool wait(deadline until);
    // Waits until done whatever happens: through the hub if it can, else
    // by blocking the thread. For work that refers to the caller's stack.
    void wait_to_end() noexcept;

    void add_callback(future_callback* owned);
    // Links `w` unless the state is done already (false).
    bool add_watcher(future_watcher& w);
    void remove_watcher(future_watcher& w) noexcept;

    // What a pool does with submitted work; may throw only a fiber's
    // unwinding. A pool's queue links its items through queue_hook.
    virtual void run() {}
    boost::intrusive::slist_member_hook<> queue_hook;

private:
    enum : std::uint8_t { pending, started, cancelling, finished };
    using watcher_list = boost::intrusive::list<future_watcher, boost::intrusive::constant_time_size<false>>;
    // cache_last: added at the back, so that they run in the order added.
    using callback_list = boost::intrusive::slist<future_callback, boost::intrusive::cache_last<true>,
                                                  boost::intrusive::constant_time_size<false>>;

    std::atomic<std::uint8_t> status_{pending};
    bool cancelled_ = false;
    std::mutex mutex_;
    waiter_list waiters_;               // guarded by mutex_
    watcher_list watchers_;             // guarded
    callback_list callbacks_;           // guarded; owned
    std::exception_ptr error_;
};

template <class T>
class future_value : public future_state {
public:
    std::optional<T> value; // set before finish()
};

template <>
class future_value<void> : public future_state {};

// Submitted work and its future's state, together.
template <class R, class Fn>
class work_item final : public future_value<R> {
public:
    template <class F>
    explicit work_item(F&& fn) : fn_(std::in_place, std::forward<F>(fn)) {}

    void run() override {
        if (!this->try_start()) { // cancelled while queued
            fn_.reset();
            return;
        }
        std::exception_ptr error;
        try {
            if constexpr (std::is_void_v<R>)
                std::invoke(*fn_);
            else
                this->value.emplace(std::invoke(*fn_));
        } catch (...) {
            fn_.reset();
            if (this->finish_if_unwinding())
                throw;
            error = std::current_exception();
        }
        // Finished outside the catch, so that the worker's own hold on the
        // exception in flight has ended before the waiters wake: whoever
        // catches it last frees it, on their own thread. And the captures
        // go first: what the work held is released by the time its result
        // is seen.
        fn_.reset();
        this->finish(std::move(error));
    }

private:
    std::optional<Fn> fn_;
};

struct future_access {
    template <class T>
    static future<T> share(future_state* s) noexcept {
        future<T> f;
        f.state_ = s;
        return f;
    }
    template <class T>
    static future_state* state(future<T> const& f) {
        return &f.checked_state();
    }
};

template <class T, class Fn>
struct callback_for final : future_callback {
    Fn fn;
    template <class F>
    explicit callback_for(F&& f) : fn(std::forward<F>(f)) {}
    void call(future_state& state) override {
        if constexpr (std::is_invocable_v<Fn&, future<T>>) {
            fn(future_access::share<T>(&state));
        } else {
            fn();
        }
    }
};

// The completion order of a set of futures, for wait() and as_completed().
class completion_queue {
public:
    // Watches `states` (which the caller keeps alive); those done already
    // come first, in the order given.
    completion_queue(future_state* const* states, std::size_t count);
    // Stops watching: nothing refers to the queue after this returns.
    ~completion_queue();
    completion_queue(completion_queue const&) = delete;
    completion_queue& operator=(completion_queue const&) = delete;

    // Waits until `n` have completed (true) or `until` passes (false).
    bool wait_for(std::size_t n, deadline until);
    // The index of the k-th future to complete, waiting for it; throws
    // fibers::timeout if `until` passes first.
    std::size_t next(std::size_t k, deadline until);

private:
    struct node : future_watcher {
        completion_queue* owner;
        std::size_t index;
    };
    static void on_done(future_watcher& w) noexcept;

    std::mutex mutex_;
    waiter_list waiters_;         // guarded by mutex_
    std::vector<std::size_t> order_; // guarded; capacity for all, so that on_done never allocates
    std::vector<node> nodes_;
    std::vector<future_state*> states_;
};

// wait(): waits until `count` of the states are done or `until` passes.
void wait_for_states(future_state* const* states, std::size_t size, std::size_t count, deadline until);

std::size_t default_cpu_pool_size() noexcept;

template <class Fn>
using submit_result_t = std::decay_t<std::invoke_result_t<std::decay_t<Fn>&>>;

template <class T>
std::vector<future_state*> states_of(std::vector<future<T>> const& futures) {
    std::vector<future_state*> states;
    states.reserve(futures.size());
    for (auto const& f : futures)
        states.push_back(future_access::state(f));
    return states;
}

template <class T>
wait_result<T> wait_impl(std::vector<future<T>> const& futures, std::size_t count, deadline until) {
    std::vector<future_state*> states = states_of(futures);
    wait_for_states(states.data(), states.size(), count, until);
    wait_result<T> r;
    for (std::size_t i = 0; i < futures.size(); ++i)
        (states[i]->done() ? r.done : r.not_done).push_back(futures[i]);
    return r;
}

} // namespace detail

} // namespace fibers

#endif // FIBERS_IMPL_FUTURES_HPP
