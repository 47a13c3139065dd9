// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#include "hub_internals.hpp"

#include <fibers/task.hpp>
#include <fibers/yield.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

namespace fibers::detail {

class yield_core_access {
public:
    static void deadline_passed(yield_core& c) noexcept {
        if (c.done_.load(std::memory_order_acquire))
            return;
        c.timed_out_ = true;
        c.request_cancel();
    }
};

namespace {

// An operation, once started, may complete before the interruption reaches
// the fiber's wait, and have it deferred once more: under a load that
// completes every operation at once, for ever. The entry that carries it
// was queued before this turn's, so it comes first and throws here, with
// nothing started. Out of line: an operation's start stays a test.
FIBERS_NOINLINE void deliver_deferred_interruption(hub& h) { give_turn(h); }

} // namespace

hub& hub_to_wait_on() {
    hub& h = hub::get();
    hub_access::check_may_wait(h);
    fiber_record* const self = current_thread_state->current;
    if (FIBERS_UNLIKELY(take_due_interruption(self)))
        deliver_deferred_interruption(h);
    return h;
}

void throw_timeout() { throw timeout("fibers: the operation timed out"); }

yield_core::yield_core(hub& h, boost::asio::any_io_executor io_executor)
    : hub_(&h), mailbox_(&hub_access::mailbox(h)), waiting_(current_thread_state->current),
      io_executor_(std::move(io_executor)) {
    intrusive_ptr_add_ref(mailbox_);
    entry_.core = this;
    entry_.resumes = waiting_;
    entry_.take = &take_entry;
    entry_.discard = [](ready_entry& e) noexcept { intrusive_ptr_release(static_cast<queued_entry&>(e).core); };
}

yield_core::~yield_core() { intrusive_ptr_release(mailbox_); }

void yield_core::complete() noexcept {
    done_.store(true, std::memory_order_release);
    if (!waiter_gone_.load(std::memory_order_acquire)) {
        // The queue's reference replaces the handler's.
        if (hub_access::push_from_anywhere(*mailbox_, entry_))
            return;
    }
    intrusive_ptr_release(this); // the handler's
}

resumption yield_core::take_entry(ready_entry& e) {
    yield_core* self = static_cast<queued_entry&>(e).core;
    // Read before the release, which may free the core: once the fiber has
    // stopped waiting, it may have ended and been freed too.
    fiber_record* target = nullptr;
    if (!self->waiter_gone_.load(std::memory_order_acquire)) {
        self->entry_taken_ = true;
        target = self->waiting_;
    }
    intrusive_ptr_release(self); // the queue's
    return {target};
}

void yield_core::stop_waiting() noexcept {
    // Set first: a completion on another thread that has not queued the
    // entry yet sees it and does not; one that has, or does so still, finds
    // its entry taken back here or turned into a no-op by take_entry.
    waiter_gone_.store(true, std::memory_order_release);
    if (!entry_taken_ && done_.load(std::memory_order_acquire) && hub_access::retract(*hub_, entry_))
        intrusive_ptr_release(this); // the queue's
}

void yield_core::request_cancel() noexcept {
    if (std::exchange(cancel_requested_, true))
        return;
    // A cancellation signal is emitted where its operation runs.
    if (io_executor_ == hub_->loop().get_executor()) {
        signal_.emit(boost::asio::cancellation_type::terminal);
        return;
    }
    try {
        boost::asio::post(io_executor_, [self = boost::intrusive_ptr<yield_core>(this)] {
            self->signal_.emit(boost::asio::cancellation_type::terminal);
        });
    } catch (...) {
        // The operation's executor is gone; so is the operation.
    }
}

std::exception_ptr yield_core::wait(std::optional<std::chrono::nanoseconds> timeout) {
    hub& h = *hub_;
    std::optional<boost::asio::steady_timer> deadline;
    if (timeout) {
        deadline.emplace(h.loop(), *timeout);
        deadline->async_wait([self = boost::intrusive_ptr<yield_core>(this)](boost::system::error_code const& ec) {
            if (!ec)
                yield_core_access::deadline_passed(*self);
        });
    }
    // Asked to stop meanwhile (task::cancel, keyboard_interrupt), the fiber
    // cancels the operation and still waits for its handler: the operation
    // may write into the fiber's buffers until then. The first such
    // exception goes to the caller, which throws it unless the operation
    // completed all the same; later ones are dropped.
    std::exception_ptr interruption;
    while (!done_.load(std::memory_order_acquire)) {
        if (!h.is_alive()) {
            waiter_gone_.store(true, std::memory_order_release);
            request_cancel();
            throw error("fibers: the hub ended while an operation was pending");
        }
        try {
            h.switch_to();
        } catch (forced_unwind const&) {
            // No switching while being unwound: the operation is abandoned.
            waiter_gone_.store(true, std::memory_order_release);
            request_cancel();
            throw;
        } catch (...) {
            if (!interruption)
                interruption = std::current_exception();
            if (!done_.load(std::memory_order_acquire))
                request_cancel();
        }
    }
    // Done, but perhaps resumed by something else first (an interruption,
    // a stray switch_back): the completion's resumption, still queued,
    // must not resume a later wait.
    stop_waiting();
    return interruption;
}

} // namespace fibers::detail
