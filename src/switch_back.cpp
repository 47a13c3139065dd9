// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#include "hub_internals.hpp"

#include <fibers/log.hpp>
#include <fibers/switch_back.hpp>

namespace fibers::detail {

switch_back_state::switch_back_state(std::optional<std::chrono::nanoseconds> timeout)
    : origin_(fiber::current()), hub_(&get_hub()), mailbox_(&hub_access::mailbox(*hub_)) {
    intrusive_ptr_add_ref(mailbox_);
    entry_.state = this;
    entry_.resumes = fiber_access::record(origin_);
    entry_.take = &take_entry;
    entry_.discard = &discard_entry;
    if (timeout) {
        timer_ = std::make_unique<boost::asio::steady_timer>(hub_->loop(), *timeout);
        timer_->async_wait([self = boost::intrusive_ptr<switch_back_state>(this)](boost::system::error_code const& ec) {
            if (!ec)
                self->fire_timeout();
        });
    }
}

switch_back_state::~switch_back_state() { intrusive_ptr_release(mailbox_); }

bool switch_back_state::active() const noexcept {
    return active_.load(std::memory_order_acquire) && !fired_.load(std::memory_order_acquire) &&
           mailbox_->open.load(std::memory_order_acquire);
}

bool switch_back_state::fire(std::any value, std::exception_ptr error) {
    if (!active_.load(std::memory_order_acquire) || fired_.exchange(true, std::memory_order_acq_rel))
        return false;
    value_ = std::move(value);
    error_ = std::move(error);
    intrusive_ptr_add_ref(this); // the queue's, until the entry has run or been dropped
    if (!hub_access::push_from_anywhere(*mailbox_, entry_)) {
        intrusive_ptr_release(this);
        return false;
    }
    return true;
}

void switch_back_state::fire_timeout() {
    // Set first: once fired, the origin may look at it at any moment.
    timed_out_.store(true, std::memory_order_release);
    if (!fire(std::any(), std::make_exception_ptr(timeout())))
        timed_out_.store(false, std::memory_order_release);
}

resumption switch_back_state::take_entry(ready_entry& e) {
    switch_back_state* self = static_cast<queued_entry&>(e).state;
    bool const active = self->active_.load(std::memory_order_acquire);
    fiber_record* origin = fiber_access::record(self->origin_);
    // While active, the origin's own object keeps the state, and so the
    // value, alive until the origin has taken it.
    intrusive_ptr_release(self); // the queue's
    if (!active)
        return {};
    return {origin, &self->value_, self->error_};
}

void switch_back_state::discard_entry(ready_entry& e) noexcept {
    intrusive_ptr_release(static_cast<queued_entry&>(e).state);
}

void switch_back_state::deactivate() noexcept {
    active_.store(false, std::memory_order_release);
    // The handler of a destroyed timer still runs, with operation_aborted;
    // it only holds a reference.
    timer_.reset();
    if (entry_.queued()) {
        entry_.unqueue();
        intrusive_ptr_release(this); // the queue's
    }
    auto cleanups = std::move(cleanups_);
    for (auto& fn : cleanups) {
        try {
            fn();
        } catch (...) {
            log(log_level::error, "a switch_back cleanup threw; the exception was dropped");
        }
    }
}

std::any switch_back_state::value_despite(std::exception_ptr interruption) {
    // Only the origin's hub's thread may look at its queue; and what is
    // thrown there inside assert_no_switchpoints, or in the hub fiber, is
    // the refusal to wait, not an interruption of a wait.
    thread_state const* ts = current_thread_state;
    if (!hub_access::on_own_thread(*hub_) || ts->no_switch_depth != 0 || ts->current == hub_access::record(*hub_))
        std::rethrow_exception(std::move(interruption));
    // Queued (found by retract) only once fire() has set the value: a fire
    // still under way on another thread counts as not come yet; it finds
    // this state deactivated once the interruption has left the wait.
    if (!active_.load(std::memory_order_acquire) || !fired_.load(std::memory_order_acquire) ||
        !hub_access::retract(*hub_, entry_))
        std::rethrow_exception(std::move(interruption));
    intrusive_ptr_release(this); // the queue's
    if (!defer_interruption(interruption))
        std::rethrow_exception(std::move(interruption));
    if (error_)
        std::rethrow_exception(std::exchange(error_, nullptr));
    return std::move(value_);
}

void switch_back_state::add_cleanup(std::function<void()> fn) { cleanups_.push_back(std::move(fn)); }

} // namespace fibers::detail
