// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#include "hub_internals.hpp"

#include <fibers/log.hpp>
#include <fibers/scope.hpp>
#include <fibers/switchpoint.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive/list.hpp>
#include <boost/smart_ptr/intrusive_ref_counter.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <stdexcept>

namespace fibers {

namespace detail {

// A cancel scope fires once, by cancel() or its deadline. It then throws
// its exception into its fiber through the hub, as every interruption
// comes: an entry queued on the fiber's hub resumes the fiber with it
// where it waits, or at its next wait if it runs. Nothing is added to the
// switch paths: a scope that never fires costs its fiber's waits nothing.
//
// Every wait inside a fired scope throws, not only the first: each
// exception the scope throws carries a token, and when the last copy of
// that exception is gone (caught and handled, or dropped by a wait that
// had completed and returns its result), the token queues the entry again
// while the scope lives. So a wait that handles the interruption itself
// (a yield operation waiting for its cancelled handler, a group's
// destructor waiting for its children) is not interrupted again while it
// holds the exception, and no exception of a scope outlives it queued.
class scope_state : public boost::intrusive_ref_counter<scope_state, boost::thread_safe_counter> {
public:
    enum outcome : std::uint8_t { pending, cancel_called, deadline_passed };

    scope_state(hub& h, fiber_record* covered)
        : hub_(&h), mailbox_(&hub_access::mailbox(h)), fiber_(covered) {
        entry_.state = this;
        entry_.resumes = covered;
        entry_.take = &take_entry;
        entry_.discard = &discard_entry;
    }
    scope_state(scope_state const&) = delete;
    scope_state& operator=(scope_state const&) = delete;

    void arm_deadline(std::chrono::nanoseconds timeout) {
        if (timeout == timeout.zero()) {
            fire(deadline_passed);
            return;
        }
        if (timeout == std::chrono::nanoseconds::max())
            return; // for ever
        timer_ = std::make_unique<boost::asio::steady_timer>(hub_->loop(), timeout);
        timer_->async_wait([self = boost::intrusive_ptr<scope_state>(this)](boost::system::error_code const& ec) {
            if (!ec)
                self->fire(deadline_passed);
        });
    }

    // From any thread while the scope exists; only the first call counts.
    void fire(outcome why) noexcept {
        std::uint8_t expected = pending;
        if (!outcome_.compare_exchange_strong(expected, why, std::memory_order_acq_rel))
            return;
        queue();
    }

    // The scope's object goes away, in its fiber: nothing of it may reach
    // the fiber after this.
    void end() noexcept {
        alive_.store(false, std::memory_order_release);
        timer_.reset(); // its handler still runs, with operation_aborted, holding a reference
        if (hub_access::on_own_thread(*hub_) && hub_access::retract(*hub_, entry_)) {
            queued_.store(false, std::memory_order_release);
            intrusive_ptr_release(this); // the queue's
        }
    }

    // The last copy of an exception this scope threw is gone.
    void renew() noexcept {
        in_flight_.store(false, std::memory_order_release);
        if (alive_.load(std::memory_order_acquire))
            queue();
    }

    std::uint8_t fired() const noexcept { return outcome_.load(std::memory_order_acquire); }

private:
    void queue() noexcept {
        if (queued_.exchange(true, std::memory_order_acq_rel))
            return;
        intrusive_ptr_add_ref(this); // the queue's, until the entry is taken or dropped
        if (!hub_access::push_from_anywhere(*mailbox_, entry_)) {
            queued_.store(false, std::memory_order_release);
            intrusive_ptr_release(this);
        }
    }

    static resumption take_entry(ready_entry& e);
    static void discard_entry(ready_entry& e) noexcept {
        scope_state* self = static_cast<queued_entry&>(e).state;
        self->queued_.store(false, std::memory_order_release);
        intrusive_ptr_release(self);
    }

    hub* hub_;             // the covered fiber's: used on its thread only
    boost::intrusive_ptr<hub_mailbox> const mailbox_; // cancel() from another thread may outlive the hub
    fiber_record* fiber_;  // not counted: the scope lives on its stack
    std::atomic<std::uint8_t> outcome_{pending};
    std::atomic<bool> alive_{true};
    std::atomic<bool> queued_{false};
    std::atomic<bool> in_flight_{false}; // an exception of this scope exists
    struct queued_entry : ready_entry {
        scope_state* state;
    } entry_;
    std::unique_ptr<boost::asio::steady_timer> timer_; // on the hub's thread only
};

void intrusive_ptr_add_ref(scope_state* s) noexcept {
    intrusive_ptr_add_ref(static_cast<boost::intrusive_ref_counter<scope_state, boost::thread_safe_counter> const*>(s));
}
void intrusive_ptr_release(scope_state* s) noexcept {
    intrusive_ptr_release(static_cast<boost::intrusive_ref_counter<scope_state, boost::thread_safe_counter> const*>(s));
}

namespace {

// Shared by the copies of one exception a scope threw; renews the scope
// when the last goes.
class scope_token : public boost::intrusive_ref_counter<scope_token, boost::thread_safe_counter> {
public:
    explicit scope_token(scope_state* s) noexcept : state_(s) {}
    scope_token(scope_token const&) = delete;
    scope_token& operator=(scope_token const&) = delete;
    ~scope_token() { state_->renew(); }

private:
    boost::intrusive_ptr<scope_state> state_;
};

struct scope_interruption : self_renewing_interruption {
    boost::intrusive_ptr<scope_token> token;
    explicit scope_interruption(boost::intrusive_ptr<scope_token> t) noexcept : token(std::move(t)) {}
};

struct scope_timeout final : timeout, scope_interruption {
    explicit scope_timeout(boost::intrusive_ptr<scope_token> t)
        : timeout("fibers: the cancel scope's deadline passed"), scope_interruption(std::move(t)) {}
};

struct scope_cancelled final : cancelled, scope_interruption {
    explicit scope_cancelled(boost::intrusive_ptr<scope_token> t)
        : cancelled("cancelled by cancel_scope::cancel()"), scope_interruption(std::move(t)) {}
};

} // namespace

resumption scope_state::take_entry(ready_entry& e) {
    // The queue's reference, handed to the token if an exception is made.
    boost::intrusive_ptr<scope_state> self(static_cast<queued_entry&>(e).state, false);
    self->queued_.store(false, std::memory_order_release);
    fiber_record* covered = self->fiber_;
    if (!self->alive_.load(std::memory_order_acquire) || self->in_flight_.load(std::memory_order_acquire) ||
        covered->status.load(std::memory_order_relaxed) != fiber_status::started)
        return {};
    self->in_flight_.store(true, std::memory_order_release);
    take_due_interruption(covered); // delivered now, whether or not it was
    boost::intrusive_ptr<scope_token> token(new scope_token(self.get()));
    std::exception_ptr error = self->fired() == deadline_passed
                                   ? std::make_exception_ptr(scope_timeout(std::move(token)))
                                   : std::make_exception_ptr(scope_cancelled(std::move(token)));
    return {covered, nullptr, std::move(error)};
}

} // namespace detail

cancel_scope::cancel_scope() : cancel_scope(std::optional<std::chrono::nanoseconds>()) {}

cancel_scope::cancel_scope(std::optional<std::chrono::nanoseconds> timeout) {
    hub& h = hub::get();
    if (!detail::hub_access::is_open(h))
        throw error("fibers: the hub is closed");
    if (detail::current_thread_state->current == detail::hub_access::record(h))
        throw error("fibers: a cancel scope covers a fiber that waits on the hub, not the hub itself");
    state_.reset(new detail::scope_state(h, detail::current_thread_state->current));
    if (timeout)
        state_->arm_deadline(*timeout);
}

cancel_scope::~cancel_scope() { state_->end(); }

void cancel_scope::cancel() noexcept { state_->fire(detail::scope_state::cancel_called); }

bool cancel_scope::cancel_called() const noexcept { return state_->fired() != detail::scope_state::pending; }

bool cancel_scope::timed_out() const noexcept { return state_->fired() == detail::scope_state::deadline_passed; }

namespace detail {

namespace {

struct group_child_node : boost::intrusive::list_base_hook<> {
    task child;
    explicit group_child_node(task const& t) : child(t) {}
};

void log_unreported(std::exception_ptr const& failure) noexcept {
    try {
        log(log_level::error, "a task_group was destroyed with a child's failure that no join() reported: " +
                                  describe_exception(failure));
    } catch (...) {
    }
}

} // namespace

// The children of a task_group, shared with them (each child's target
// holds a reference), so that a group that could not wait for them (its
// hub closing) leaves them nothing dangling. Used on the hub's thread.
class group_state : public boost::intrusive_ref_counter<group_state, boost::thread_safe_counter> {
public:
    explicit group_state(hub& h) noexcept : owner(&h) {}
    group_state(group_state const&) = delete;
    group_state& operator=(group_state const&) = delete;
    ~group_state() { children.clear_and_dispose([](group_child_node* n) { delete n; }); }

    void check_own_thread() const {
        if (!hub_access::on_own_thread(*owner))
            throw error("fibers: a task_group is used from the thread that made it");
    }
    // task::cancel(message) on every child but the calling task.
    void cancel_children(std::string const& message) {
        task const self = current_task();
        for (group_child_node& n : children)
            if (n.child != self)
                n.child.cancel(message);
    }
    // Cancels the children and waits until they have ended, where the
    // calling fiber can wait. An interruption meanwhile is kept until they
    // have, then deferred to the fiber's next wait.
    void cancel_and_wait() noexcept;

    hub* owner;
    boost::intrusive::list<group_child_node> children;
    bool cancelled = false;
    bool closing = false; // the group's destructor runs
    std::exception_ptr first_failure;
    bool failure_reported = false;
};

void intrusive_ptr_add_ref(group_state* g) noexcept {
    intrusive_ptr_add_ref(static_cast<boost::intrusive_ref_counter<group_state, boost::thread_safe_counter> const*>(g));
}
void intrusive_ptr_release(group_state* g) noexcept {
    intrusive_ptr_release(static_cast<boost::intrusive_ref_counter<group_state, boost::thread_safe_counter> const*>(g));
}

void group_state::cancel_and_wait() noexcept {
    try {
        cancel_children("cancelled by ~task_group()");
    } catch (...) {
        log_current_exception("cancelling the children of a task_group");
    }
    std::exception_ptr interruption;
    while (!children.empty() && hub_access::is_open(*owner)) {
        try {
            task child = children.front().child;
            child.join();
        } catch (error const&) {
            // Where no wait is allowed (a hub callback) or possible: its
            // children are left to the hub, which unwinds them as it closes.
            log_current_exception("~task_group cannot wait for its children here; they go on");
            break;
        } catch (switchpoint_violation const&) {
            log_current_exception("~task_group cannot wait for its children inside assert_no_switchpoints; they go on");
            break;
        } catch (forced_unwind const&) {
            break; // nothing waits while its stack is unwound
        } catch (...) {
            if (!interruption)
                interruption = std::current_exception();
        }
    }
    if (interruption && !defer_interruption(interruption)) {
        try {
            log(log_level::error, "an interruption that came while ~task_group waited for its children was dropped: " +
                                      describe_exception(interruption));
        } catch (...) {
        }
    }
}

bool group_child_failed(group_state& g) {
    try {
        throw;
    } catch (forced_unwind const&) {
        return true;
    } catch (cancelled const&) {
        return true;
    } catch (...) {
        if (g.first_failure)
            return true;
        g.first_failure = std::current_exception();
        g.cancelled = true;
        g.cancel_children("cancelled by task_group: another child failed");
        return false;
    }
}

void race_core::racer_failed() {
    try {
        throw;
    } catch (forced_unwind const&) {
        throw;
    } catch (...) {
        if (!decided) {
            decided = true;
            error = std::current_exception();
            cancel_the_others();
            return;
        }
    }
    try {
        throw;
    } catch (cancelled const&) {
        // how the others are told to stop
    } catch (...) {
        log(log_level::error, "task " + current_task().name() + " lost a race and ended with an exception: " +
                                  describe_exception(std::current_exception()));
    }
}

void throw_race_undecided() { throw error("fibers: race ended with no racer finishing (its hub closed)"); }

} // namespace detail

task_group::task_group() : state_(new detail::group_state(hub::get())) {}

task_group::~task_group() {
    detail::group_state& g = *state_;
    g.closing = true;
    if (!g.children.empty()) {
        if (detail::hub_access::on_own_thread(*g.owner))
            g.cancel_and_wait();
        else
            log(log_level::error, "a task_group was destroyed on another thread than its children's; they go on");
    }
    if (g.first_failure && !g.failure_reported)
        detail::log_unreported(g.first_failure);
}

void task_group::check_may_spawn(task_options const& opts) const {
    detail::group_state const& g = *state_;
    g.check_own_thread();
    if (opts.on != nullptr && opts.on != g.owner)
        throw std::invalid_argument("fibers: a task_group's children run on the hub of its thread");
    if (g.closing)
        throw error("fibers: spawn into a task_group whose destructor runs");
    if (g.cancelled)
        throw error("fibers: spawn into a task_group that was cancelled");
}

void task_group::adopt(task& child) {
    auto node = std::make_unique<detail::group_child_node>(child);
    detail::group_child_node* n = node.get();
    child.add_done_callback([g = state_, n] {
        g->children.erase(g->children.iterator_to(*n));
        delete n;
    });
    state_->children.push_back(*node.release());
    child.start();
}

void task_group::join() {
    switchpoint();
    detail::group_state& g = *state_;
    g.check_own_thread();
    while (!g.children.empty()) {
        task child = g.children.front().child;
        child.join();
    }
    if (g.first_failure && !std::exchange(g.failure_reported, true))
        std::rethrow_exception(g.first_failure);
}

void task_group::join_for(std::chrono::nanoseconds timeout) {
    switchpoint();
    detail::group_state& g = *state_;
    g.check_own_thread();
    auto const deadline = detail::saturated_deadline(std::chrono::steady_clock::now(), timeout);
    while (!g.children.empty()) {
        task child = g.children.front().child;
        if (deadline == std::chrono::steady_clock::time_point::max())
            child.join();
        else
            child.join(deadline - std::chrono::steady_clock::now());
    }
    if (g.first_failure && !std::exchange(g.failure_reported, true))
        std::rethrow_exception(g.first_failure);
}

void task_group::cancel(std::string message) {
    detail::group_state& g = *state_;
    g.check_own_thread();
    g.cancelled = true;
    for (detail::group_child_node& n : g.children)
        n.child.cancel(message);
}

std::size_t task_group::size() const noexcept { return state_->children.size(); }

} // namespace fibers
