// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#include "format.hpp"
#include "hub_internals.hpp"
#include "watchdog.hpp"

#include <fibers/hub.hpp>
#include <fibers/log.hpp>
#include <fibers/stack.hpp>
#include <fibers/switchpoint.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <string>

namespace fibers {

namespace detail {

struct hub_signals {
    boost::asio::signal_set set;
    explicit hub_signals(boost::asio::io_context& io) : set(io, SIGINT) {}
};

__thread hub* thread_hub FIBERS_INITIAL_EXEC_TLS = nullptr;

namespace {

thread_local std::unique_ptr<hub> thread_hub_owner;

// The hub's own fiber, named "Hub" in messages. It keeps the hub's mailbox
// for its children, the tasks (see task_record::mailbox).
class hub_fiber_base : public fiber_record {
public:
    boost::intrusive_ptr<hub_mailbox> mailbox;

    std::size_t describe(char* buffer, std::size_t capacity) const noexcept override {
        return text_writer(buffer, capacity).put("Hub").size();
    }
    char const* kind() const noexcept override { return "hub"; }
};

// Resumes the root fiber with keyboard_interrupt.
struct interrupt_entry final : ready_entry {
    explicit interrupt_entry(fiber_record* root) {
        resumes = root;
        take = &deliver;
        discard = &drop;
    }
    static resumption deliver(ready_entry& e) {
        std::unique_ptr<interrupt_entry> self(static_cast<interrupt_entry*>(&e));
        return {self->resumes, nullptr, std::make_exception_ptr(keyboard_interrupt())};
    }
    static void drop(ready_entry& e) noexcept { delete static_cast<interrupt_entry*>(&e); }
};

} // namespace

void log_callback_exception() noexcept { log_current_exception("exception in a hub callback (dropped)"); }

bool hub_access::retract(hub& h, ready_entry& e) noexcept {
    if (e.queued()) {
        e.unqueue();
        return true;
    }
    hub_mailbox& m = mailbox(h);
    std::lock_guard<std::mutex> lock(m.mutex);
    auto const at = std::find(m.entries.begin(), m.entries.end(), &e);
    if (at == m.entries.end())
        return false;
    m.entries.erase(at);
    return true;
}

namespace {

// The hub's record of an interruption deferred for a fiber (see
// defer_interruption): whether it is still due at the fiber's next yield
// operation, and the entry that carries it when its source does not. Kept
// as a hook on the fiber while either holds, so that the fiber's end drops
// it; the fiber's record has no field for it.
class interruption_deferral final : public fiber_end_hook {
public:
    explicit interruption_deferral(fiber_record* f) noexcept {
        carrier_.deferral = this;
        carrier_.resumes = f;
        carrier_.take = &take;
        carrier_.discard = &drop;
        f->end_hooks.push_back(*this);
    }
    interruption_deferral(interruption_deferral const&) = delete;
    interruption_deferral& operator=(interruption_deferral const&) = delete;

    static interruption_deferral* of(fiber_record* f) noexcept {
        for (fiber_end_hook& hook : f->end_hooks)
            if (auto* d = dynamic_cast<interruption_deferral*>(&hook))
                return d;
        return nullptr;
    }

    bool carries_one() const noexcept { return carrier_.queued(); }
    void carry(hub& h, std::exception_ptr const& e) noexcept {
        carrier_.error = e;
        hub_access::push(h, carrier_);
    }
    // The fiber's next yield operation lets the hub deliver it before the
    // operation starts, or an operation that completes at once would defer
    // it again, and again (see hub_to_wait_on).
    bool due = false;
    void forget_if_done() noexcept {
        if (!due && !carrier_.queued())
            delete this;
    }

    void fiber_ended(fiber_record&) noexcept override {
        delete this; // its carrier unqueues itself
    }

private:
    struct carrier final : ready_entry {
        interruption_deferral* deferral = nullptr;
        std::exception_ptr error; // set only while queued
    } carrier_;

    static resumption take(ready_entry& e) {
        interruption_deferral* self = static_cast<carrier&>(e).deferral;
        fiber_record* f = e.resumes;
        std::exception_ptr error = std::exchange(self->carrier_.error, nullptr);
        delete self; // delivered now
        return {f, nullptr, std::move(error)};
    }
    // Its hub closed: the interruption goes with the hub's other work.
    static void drop(ready_entry& e) noexcept {
        interruption_deferral* self = static_cast<carrier&>(e).deferral;
        self->carrier_.error = nullptr;
        self->forget_if_done();
    }
};

enum class interruption_kind { unwinding, renewed_by_its_source, other };

interruption_kind kind_of(std::exception_ptr const& e) noexcept {
    try {
        std::rethrow_exception(e);
    } catch (forced_unwind const&) {
        return interruption_kind::unwinding;
    } catch (self_renewing_interruption const&) {
        return interruption_kind::renewed_by_its_source;
    } catch (...) {
        return interruption_kind::other;
    }
}

} // namespace

bool defer_interruption(std::exception_ptr const& e) noexcept {
    thread_state* ts = current_thread_state;
    // Inside assert_no_switchpoints nothing waited: what came is the refusal.
    if (!e || ts == nullptr || thread_hub == nullptr || ts->no_switch_depth != 0)
        return false;
    hub& h = *thread_hub;
    fiber_record* self = ts->current;
    if (!h.is_alive() || self == hub_access::record(h))
        return false;
    interruption_kind const kind = kind_of(e);
    if (kind == interruption_kind::unwinding)
        return false; // nothing may stop an unwinding, nor wait for it
    interruption_deferral* deferral = interruption_deferral::of(self);
    if (deferral == nullptr) {
        deferral = new (std::nothrow) interruption_deferral(self);
        if (deferral == nullptr)
            return false; // nowhere to keep it: it comes now
    }
    if (kind == interruption_kind::other) {
        auto* scheduled = dynamic_cast<scheduled_fiber*>(self);
        if (scheduled == nullptr || !scheduled->rearm_interruption(e)) {
            if (deferral->carries_one())
                return false; // another is on its way already
            deferral->carry(h, e);
        }
    }
    deferral->due = true;
    return true;
}

bool take_due_interruption_from_hooks(fiber_record* f) noexcept {
    interruption_deferral* deferral = interruption_deferral::of(f);
    if (deferral == nullptr || !deferral->due)
        return false;
    deferral->due = false;
    deferral->forget_if_done();
    return true;
}

void hub_access::add_ready_fibers(hub& h, std::vector<fiber_record const*>& out) {
    auto const add = [&](ready_entry const& e) {
        if (e.resumes != nullptr)
            out.push_back(e.resumes);
    };
    h.ready_.for_each(add);
    hub_mailbox& m = mailbox(h);
    std::lock_guard<std::mutex> lock(m.mutex);
    for (ready_entry const* e : m.entries)
        add(*e);
}

bool hub_access::push_from_anywhere(hub_mailbox& m, ready_entry& e) noexcept {
    if (thread_hub == m.owner) {
        // The hub's own thread, its hub alive: no lock. (A hub made later at
        // the same address has a mailbox of its own; this one stays closed.)
        if (!m.open.load(std::memory_order_acquire) || !is_open(*m.owner))
            return false;
        m.owner->push_here(e);
        return true;
    }
    std::lock_guard<std::mutex> lock(m.mutex);
    if (!m.open.load(std::memory_order_relaxed))
        return false;
    try {
        m.entries.push_back(&e);
    } catch (...) {
        return false;
    }
    m.pending.store(true, std::memory_order_release);
    if (!m.wake_posted && !m.spinning) {
        m.wake_posted = true;
        // A no-op is enough: it makes an idle loop return, and the loop
        // then takes the mailbox.
        boost::asio::post(m.owner->io_, [] {});
    }
    return true;
}

std::any resume_out_of_line(thread_state& ts, resumption& r) {
    fiber_record* target = r.target;
    if (target->status.load(std::memory_order_relaxed) == fiber_status::created) {
        if (r.error) // as python-fibers: it ends at once, with the error
            return fiber_access::share(target).throw_to(std::move(r.error));
        ts.start(target);
    }
    std::any nothing;
    ts.incoming_value = r.value != nullptr ? r.value : &nothing;
    if (r.error) {
        ts.incoming_error = std::move(r.error);
        ts.arrival_needs_care = true;
    }
    return ts.switch_unchecked(target);
}

scheduled_fiber::~scheduled_fiber() {
    if (owner != nullptr)
        hub_access::forget(*owner, this);
}

void hub_access::schedule(hub& h, scheduled_fiber* f) {
    std::unique_ptr<scheduled_fiber> owned(f);
    if (!on_own_thread(h))
        throw std::invalid_argument("fibers: a fiber is scheduled by the hub of the thread that makes it");
    if (!is_open(h))
        throw error("fibers: the hub is closed");
    f->scheduler = h.record_;
    f->schedule_number = ++h.scheduled_so_far_;
    attach_new_fiber(owned.release(), h.record_);
    f->owner = &h;
    h.link_scheduled(f);
}

void hub_access::adopt(hub&, scheduled_fiber* f) noexcept {
    add_reference(f);
    f->held_by_hub = true;
}

void hub_access::adopt_unshared(hub&, scheduled_fiber* f) noexcept {
    f->references.store(f->references.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    f->held_by_hub = true;
}

void hub_access::release(hub& h, scheduled_fiber* f) noexcept {
    h.unlink_scheduled(f);
    if (std::exchange(f->held_by_hub, false))
        h.thread_->release_here(f);
}

void hub_access::check_may_wait(hub const& h) {
    switchpoint();
    if (!on_own_thread(h))
        throw error("fibers: cannot wait on the hub of another thread");
    if (current_thread_state->current == h.record_)
        throw error("fibers: the hub cannot wait on itself (a hub callback must not call a switchpoint)");
    if (!is_open(h))
        throw error("fibers: the hub is closed");
}

namespace {

// Off the set before its deadline: the timer goes with the last, so that a
// hub with nothing to wake holds no Asio work for it.
void forget_sleeper(hub_sleepers& s, sleeper& z) noexcept {
    s.set.erase(s.set.iterator_to(z));
    if (s.set.empty() && s.armed) {
        s.armed = false;
        s.timer.cancel();
    }
}

} // namespace

bool hub_access::wake_due_sleepers(hub& h) noexcept {
    hub_sleepers& s = *h.sleepers_;
    if (s.set.empty())
        return false;
    auto const now = std::chrono::steady_clock::now();
    bool woke = false;
    while (!s.set.empty() && s.set.begin()->until <= now) {
        sleeper& due = *s.set.begin();
        s.set.erase(s.set.begin());
        h.push_here(due.wake);
        woke = true;
    }
    return woke;
}

// Before the hub sleeps: its timer for the earliest sleeper, set only then
// and only if it changed, since every setting is a timerfd_settime(2), which
// a virtual machine turns into an exit.
void hub_access::arm_sleep_timer(hub& h) noexcept {
    hub_sleepers& s = *h.sleepers_;
    if (s.set.empty())
        return;
    auto const deadline = s.set.begin()->until;
    if (s.armed && s.armed_for == deadline)
        return;
    s.armed = true;
    s.armed_for = deadline;
    s.timer.expires_at(deadline); // a wait pending for another deadline ends, operation_aborted
    s.timer.async_wait([&h, &s](boost::system::error_code const& ec) {
        if (ec)
            return;
        s.armed = false;
        wake_due_sleepers(h);
    });
}

void hub_access::sleep_until(hub& h, std::chrono::steady_clock::time_point deadline) {
    if (FIBERS_UNLIKELY(!h.sleepers_))
        h.sleepers_ = std::make_unique<hub_sleepers>(h.io_);
    hub_sleepers& s = *h.sleepers_;
    sleeper me(current_thread_state->current, deadline);
    s.set.insert(s.set.end(), me); // the hub looks at the set each time it looks at I/O
    try {
        h.switch_to();
    } catch (...) {
        if (me.hook.is_linked()) {
            forget_sleeper(s, me);
            throw;
        }
        // Its deadline came first: the sleep is over, the interruption
        // waits for the next wait.
        if (!me.wake.ran)
            me.wake.unqueue();
        if (!defer_interruption(std::current_exception()))
            throw;
        return;
    }
    // Resumed another way (the hub ended under a root that slept).
    if (me.hook.is_linked())
        forget_sleeper(s, me);
}

} // namespace detail

using detail::hub_access;

hub& hub::get() {
    if (FIBERS_LIKELY(detail::thread_hub != nullptr))
        return *detail::thread_hub;
    return make_for_this_thread();
}

hub& hub::make_for_this_thread() {
    // The thread state first: thread_local objects die in the reverse order
    // of their making, and the hub must go before the state it refers to.
    detail::thread_state& ts = detail::this_thread_state();
    if (ts.current != ts.root)
        throw error("fibers: a thread's hub must first be used from its root fiber");
    detail::thread_hub_owner.reset(new hub());
    return *detail::thread_hub_owner;
}

hub& get_hub() { return hub::get(); }

namespace {
// The hub's own reference is held in a plain pointer: hub.hpp sees only the
// mailbox's flag.
detail::hub_mailbox* new_mailbox(hub* owner) {
    auto* m = new detail::hub_mailbox(owner);
    intrusive_ptr_add_ref(m);
    return m;
}
} // namespace

hub::hub() : mailbox_(new_mailbox(this)) {
    // Strong guarantee: what can fail (descriptors for the signal set, the
    // hub fiber's memory) comes first; the thread learns of its hub only
    // once nothing can. A failure leaves the thread with no hub, and a
    // later get() tries afresh.
    boost::intrusive_ptr<detail::hub_mailbox> on_failure(&hub_access::mailbox(*this), false);
    thread_ = &detail::this_thread_state();
    signals_ = std::make_unique<detail::hub_signals>(io_);
    auto body = [this] { run_loop(); };
    auto* record =
        new detail::record_with_target<detail::hub_fiber_base, decltype(body), arena_stack>(arena_stack(), body);
    record->mailbox = &hub_access::mailbox(*this);
    detail::attach_new_fiber(record, thread_->root);
    record->switchpoint_refusal = "fibers: switchpoint called in the hub fiber (a hub callback must not wait)";
    fiber_ = detail::fiber_access::adopt(record);
    record_ = record;
    arm_interrupt();
    {
        std::lock_guard<std::mutex> lock(thread_->anchor->mutex);
        thread_->anchor->wake = [](void* argument) noexcept {
            // Another thread handed back a fiber reference: let the loop
            // settle it now rather than at its next wake-up.
            boost::asio::post(static_cast<hub*>(argument)->io_, [] {});
        };
        thread_->anchor->wake_argument = this;
    }
    detail::thread_hub = this;
    on_failure.detach();
}

hub::~hub() {
    // The hub's reference, released last, whichever way this returns.
    boost::intrusive_ptr<detail::hub_mailbox> const at_end(&hub_access::mailbox(*this), false);
    if (detail::thread_hub == this)
        detail::thread_hub = nullptr;
    if (state_.load(std::memory_order_acquire) == hub_state::closed)
        return;
    detail::thread_state* ts = detail::current_thread_state;
    if (ts != nullptr && ts->anchor == thread_->anchor && ts->current == ts->root) {
        try {
            close();
        } catch (...) {
            detail::log_current_exception("closing the hub at thread exit");
        }
        return;
    }
    // The thread ends inside a fiber (exit() on a fiber's stack): nothing
    // can be unwound. Tasks forget this hub so that nothing reaches it
    // after it is gone.
    detach_everything();
}

poller& hub::poll() {
    if (!poller_) {
        poller_ = std::make_unique<poller>(io_);
        if (state_.load(std::memory_order_acquire) != hub_state::open)
            poller_->close();
    }
    return *poller_;
}

std::any hub::switch_to_checked() {
    hub_access::check_may_wait(*this); // throws: the inline path takes every valid call
    return fiber_.switch_to();
}

void hub::post(detail::ready_entry* owned_entry) {
    if (!hub_access::push_from_anywhere(hub_access::mailbox(*this), *owned_entry)) {
        owned_entry->discard(*owned_entry);
        throw error("fibers: run_callback on a closed hub");
    }
}

bool hub::is_alive() const noexcept {
    return state_.load(std::memory_order_acquire) == hub_state::open &&
           record_->status.load(std::memory_order_relaxed) != detail::fiber_status::ended;
}

bool hub::ignore_interrupt() const noexcept { return ignore_interrupt_.load(std::memory_order_relaxed); }

void hub::ignore_interrupt(bool yes) { ignore_interrupt_.store(yes, std::memory_order_relaxed); }

fiber hub::as_fiber() const { return fiber_; }

void hub::arm_interrupt() {
    signals_->set.async_wait([this](boost::system::error_code const& ec, int) {
        if (ec)
            return; // cancelled: the hub is closing
        if (!ignore_interrupt_.load(std::memory_order_relaxed))
            push_here(*new detail::interrupt_entry(thread_->root));
        arm_interrupt();
    });
}

void hub::close() {
    switchpoint(); // it switches to the hub: refused, with nothing changed, where no switch may happen
    detail::thread_state* ts = detail::current_thread_state;
    if (ts == nullptr || ts->anchor != thread_->anchor)
        throw error("fibers: a hub can only be closed from its own thread");
    if (ts->current != ts->root)
        throw error("fibers: a hub can only be closed from the root fiber");
    if (state_.load(std::memory_order_acquire) == hub_state::closed)
        return;
    stop_accepting();
    if (record_->status.load(std::memory_order_relaxed) == detail::fiber_status::started) {
        // The loop sees `closing`, shuts down and ends: its end comes back here.
        fiber_.switch_to();
    }
    if (state_.load(std::memory_order_acquire) != hub_state::closed)
        shut_down(); // it never ran
}

void hub::run_loop() {
    try {
        dispatch_until_closed();
    } catch (...) {
        // An exception that reaches the hub fiber (thrown into it, or a
        // fiber that ended into it) ends the hub: it goes on to the root.
        shut_down();
        throw;
    }
    shut_down();
}

void hub::dispatch_until_closed() {
    detail::thread_state& ts = *thread_;
    auto work = boost::asio::make_work_guard(io_);
    loop_running_ = true;
    while (state_.load(std::memory_order_relaxed) == hub_state::open) {
        if (ts.anchor->has_orphans.load(std::memory_order_relaxed))
            ts.drain_orphans();
        if (detail::ready_entry* entry = next_to_dispatch(true)) {
            if (entry->take != nullptr) {
                detail::resumption r = entry->take(*entry);
                if (r.target != record_ && has_fiber_to_resume(r))
                    detail::resume_inline(ts, r);
            } else {
                entry->run(*entry);
            }
        } else if (mailbox_->pending.load(std::memory_order_acquire)) {
            take_remote();
        } else if (dispatched_ >= ready_between_io_checks) {
            dispatched_ = 0;
            run_io_handlers(false);
        } else {
            dispatched_ = 0;
            wait_for_work();
        }
    }
}

void hub::run_io_handlers(bool block) {
    if (sleepers_ && !block)
        hub_access::wake_due_sleepers(*this);
    try {
        if (block) {
            io_.run_one();
        } else {
            // Not io_context::poll(), which also runs what the handlers
            // queue meanwhile: a handler that queues itself again (a poll
            // callback on an fd that stays ready) would keep the loop there
            // for ever, the ready queue and the timers starved.
            for (unsigned n = 0; n < handlers_between_dispatches && io_.poll_one() != 0; ++n) {
            }
        }
    } catch (...) {
        detail::log_current_exception("exception in an Asio handler of the hub (dropped)");
    }
    // loop().stop() ends the hub, as close() does. Checked here, where the
    // loop runs, rather than per dispatch: io_context::stopped() locks.
    if (io_.stopped())
        stop_accepting();
}

void hub::wait_for_work() {
    if (sleepers_) {
        if (hub_access::wake_due_sleepers(*this))
            return;
        hub_access::arm_sleep_timer(*this);
    }
    // The root waits on something known, and the loop is out of work: it
    // may be for ever. The loop's own Asio work is its work guard and, while
    // armed, the wait for SIGINT.
    if (FIBERS_UNLIKELY(thread_->root->waiting.what.load(std::memory_order_relaxed) != nullptr) &&
        detail::find_deadlock(*this, signals_ ? 2 : 1))
        return;
    waiting_for_work_.store(true, std::memory_order_relaxed);
    struct busy_again {
        std::atomic<bool>& waiting;
        ~busy_again() { waiting.store(false, std::memory_order_relaxed); }
    } on_return{waiting_for_work_};
    using clock = std::chrono::steady_clock;
    std::chrono::nanoseconds const budget(idle_spin_ns_.load(std::memory_order_relaxed));
    if (budget.count() == 0) {
        run_io_handlers(true);
        return;
    }
    auto const idle_since = clock::now();
    if (spin_next_) {
        auto const until = idle_since + budget;
        set_spinning(true);
        bool work_came = false;
        do {
            run_io_handlers(false);
            work_came = !ready_.empty() || mailbox_->pending.load(std::memory_order_acquire) ||
                        state_.load(std::memory_order_relaxed) != hub_state::open;
        } while (!work_came && clock::now() < until);
        // A push that came as the spin ended posted no wake: look once more
        // before sleeping.
        if (set_spinning(false) || work_came)
            return; // spin again next time
    }
    run_io_handlers(true);
    spin_next_ = clock::now() - idle_since < budget;
}

bool hub::set_spinning(bool spinning) noexcept {
    std::lock_guard<std::mutex> lock(hub_access::mailbox(*this).mutex);
    hub_access::mailbox(*this).spinning = spinning;
    return mailbox_->pending.load(std::memory_order_relaxed);
}

std::chrono::nanoseconds hub::idle_spin() const noexcept {
    return std::chrono::nanoseconds(idle_spin_ns_.load(std::memory_order_relaxed));
}

void hub::idle_spin(std::chrono::nanoseconds budget) {
    if (budget.count() < 0)
        throw std::invalid_argument("fibers: hub::idle_spin with a negative duration");
    idle_spin_ns_.store(budget.count(), std::memory_order_relaxed);
}

void hub::take_remote() noexcept {
    std::vector<detail::ready_entry*> batch;
    {
        std::lock_guard<std::mutex> lock(hub_access::mailbox(*this).mutex);
        batch.swap(hub_access::mailbox(*this).entries);
        mailbox_->pending.store(false, std::memory_order_relaxed);
        hub_access::mailbox(*this).wake_posted = false;
    }
    for (detail::ready_entry* e : batch)
        ready_.push_back(*e);
}

void hub::shut_down() noexcept {
    if (state_.load(std::memory_order_acquire) == hub_state::closed)
        return;
    stop_accepting();
    stop_watchdog();
    loop_running_ = false;
    detail::thread_state& ts = *thread_;
    forget_anchor_wake();
    if (signals_) {
        boost::system::error_code ignored;
        signals_->set.cancel(ignored);
        signals_->set.clear(ignored);
    }
    if (poller_)
        poller_->close();
    // Every task of this hub ends: started ones are unwound, newest first;
    // ones that never ran are discarded with their targets.
    while (!scheduled_.empty()) {
        detail::scheduled_fiber* f = &scheduled_.front();
        detail::add_reference(f);
        if (f->status.load(std::memory_order_relaxed) == detail::fiber_status::created) {
            ts.discard_unstarted(f);
            f->ended_unrun();
        } else if (ts.is_suspended(f)) {
            ts.unwind(f);
        }
        if (!scheduled_.empty() && &scheduled_.front() == f)
            hub_access::release(*this, f);
        ts.release_here(f);
    }
    take_remote(); // the mailbox is closed: nothing comes after this
    while (detail::ready_entry* e = ready_.pop_front())
        if (e->discard != nullptr)
            e->discard(*e);
    state_.store(hub_state::closed, std::memory_order_release);
    io_.stop();
}

void hub::link_scheduled(detail::scheduled_fiber* f) noexcept { scheduled_.push_front(*f); }

void hub::unlink_scheduled(detail::scheduled_fiber* f) noexcept {
    if (f->scheduled_hook.is_linked())
        scheduled_.erase(scheduled_.iterator_to(*f));
}

void hub::forget_anchor_wake() noexcept {
    std::lock_guard<std::mutex> lock(thread_->anchor->mutex);
    if (thread_->anchor->wake_argument == this) {
        thread_->anchor->wake = nullptr;
        thread_->anchor->wake_argument = nullptr;
    }
}

void hub::detach_everything() noexcept {
    stop_watchdog();
    forget_anchor_wake();
    for (detail::scheduled_fiber& f : scheduled_)
        f.owner = nullptr;
    scheduled_.clear();
    stop_accepting();
    state_.store(hub_state::closed, std::memory_order_release);
}

void hub::stop_accepting() noexcept {
    std::lock_guard<std::mutex> lock(hub_access::mailbox(*this).mutex);
    hub_access::mailbox(*this).open.store(false, std::memory_order_release);
    hub_state expected = hub_state::open;
    state_.compare_exchange_strong(expected, hub_state::closing, std::memory_order_acq_rel);
}

} // namespace fibers
