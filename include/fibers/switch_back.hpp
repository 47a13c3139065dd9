// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_SWITCH_BACK_HPP
#define FIBERS_SWITCH_BACK_HPP

#include <fibers/detail/duration.hpp>
#include <fibers/detail/published_wait.hpp>
#include <fibers/detail/ready_queue.hpp>
#include <fibers/fiber.hpp>
#include <fibers/hub.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive_ptr.hpp>
#include <boost/smart_ptr/intrusive_ref_counter.hpp>

#include <any>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace fibers {

namespace detail {

// What the copies of a switch_back share.
class switch_back_state : public boost::intrusive_ref_counter<switch_back_state, boost::thread_safe_counter> {
public:
    // Made in the running fiber (the origin), on its thread's hub.
    explicit switch_back_state(std::optional<std::chrono::nanoseconds> timeout);
    switch_back_state(switch_back_state const&) = delete;
    switch_back_state& operator=(switch_back_state const&) = delete;
    // Public for the last intrusive_ptr_release only: the state is counted.
    ~switch_back_state();

    // Resumes the origin with `value` or `error` in the hub, unless an
    // earlier call (or the timeout) did, or the origin's object is gone.
    // Any thread. Returns whether this call won.
    bool fire(std::any value, std::exception_ptr error);
    // The origin's object goes away: later calls do nothing, the timer is
    // cancelled, the cleanups run in order.
    void deactivate() noexcept;

    // The origin's wait was interrupted (`interruption` is being handled):
    // if this state had fired already, its resumption is taken back and
    // its value returned, or its error thrown, the interruption deferred to
    // the origin's next wait; else the interruption is rethrown.
    std::any value_despite(std::exception_ptr interruption);

    void add_cleanup(std::function<void()> fn);
    bool active() const noexcept;
    bool timed_out() const noexcept { return timed_out_.load(std::memory_order_acquire); }
    fiber const& origin() const noexcept { return origin_; }
    hub& owner() const noexcept { return *hub_; }

private:
    void fire_timeout();
    static resumption take_entry(ready_entry& e);
    static void discard_entry(ready_entry& e) noexcept;

    std::atomic<bool> fired_{false};
    std::atomic<bool> active_{true};
    std::atomic<bool> timed_out_{false};
    fiber origin_;
    hub* hub_;                   // its origin's: used on the origin's thread only
    hub_mailbox* mailbox_;       // counted: calls from other threads may outlive the hub
    struct queued_entry : ready_entry {
        switch_back_state* state;
    } entry_;
    std::any value_;
    std::exception_ptr error_;
    std::unique_ptr<boost::asio::steady_timer> timer_;
    std::vector<std::function<void()>> cleanups_;
};

} // namespace detail

/// An Asio completion handler that resumes the fiber that made it (its
/// origin) in the hub: `timer.async_wait(sb); auto [ec] = sb.wait();`.
/// The first of operator(), switch_to, throw_to or the timeout takes effect;
/// later calls are ignored; all are safe from any thread and never switch
/// synchronously. Copies share the state of the object the origin made;
/// when that object goes away, every copy is deactivated, the timer is
/// cancelled and the cleanups run in order.
template <class... Args>
class switch_back {
public:
    using result_type = std::tuple<std::decay_t<Args>...>;

    switch_back() : state_(new detail::switch_back_state(std::nullopt)), owns_(true) {}

    /// With a timeout (a steady_timer on the hub's loop, started now):
    /// fibers::timeout is raised in the origin unless it was resumed first.
    /// A zero or negative timeout fires in a coming loop iteration; one too
    /// long for the clock never fires.
    template <class Rep, class Period>
    explicit switch_back(std::chrono::duration<Rep, Period> timeout)
        : state_(new detail::switch_back_state(detail::saturated_nanoseconds(timeout))),
          owns_(true) {}

    switch_back(switch_back const& other) noexcept : state_(other.state_), owns_(false) {}
    switch_back(switch_back&& other) noexcept
        : state_(std::move(other.state_)), owns_(std::exchange(other.owns_, false)) {}
    switch_back& operator=(switch_back const&) = delete;
    switch_back& operator=(switch_back&&) = delete;
    ~switch_back() {
        if (owns_)
            state_->deactivate();
    }

    /// The completion: resumes the origin, whose hub.switch_to() returns
    /// std::tuple<std::decay_t<Args>...>(args...).
    void operator()(Args... args) const {
        state_->fire(std::any(result_type(std::move(args)...)), nullptr);
    }
    /// Resumes the origin: its hub.switch_to() returns `value`.
    void switch_to(std::any value = {}) const { state_->fire(std::move(value), nullptr); }
    /// Resumes the origin by raising `e` there.
    void throw_to(std::exception_ptr e) const { state_->fire(std::any(), std::move(e)); }

    /// hub.switch_to(), then what operator() got, unpacked by the caller
    /// (`auto [ec, n] = sb.wait();`). std::bad_any_cast if the origin was
    /// resumed with something else. An exception thrown into the origin
    /// (task::cancel...) after this switch_back had fired is deferred to
    /// its next wait, and the call returns what it fired with.
    result_type wait() {
        detail::published_wait note("switch_back");
        std::any value = [this] {
            try {
                return state_->owner().switch_to();
            } catch (...) {
                return state_->value_despite(std::current_exception());
            }
        }();
        if constexpr (std::tuple_size_v<result_type> == 0) {
            return {};
        } else {
            return std::any_cast<result_type>(std::move(value));
        }
    }

    void add_cleanup(std::function<void()> fn) { state_->add_cleanup(std::move(fn)); }
    /// Whether a call would still resume the origin.
    bool active() const noexcept { return state_->active(); }
    bool timed_out() const noexcept { return state_->timed_out(); }
    fiber origin() const noexcept { return state_->origin(); }

private:
    boost::intrusive_ptr<detail::switch_back_state> state_;
    bool owns_;
};

} // namespace fibers

#endif // FIBERS_SWITCH_BACK_HPP
