// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_SRC_HUB_INTERNALS_HPP
#define FIBERS_SRC_HUB_INTERNALS_HPP

// What tasks, switch_back and sleep need of the hub. Private to the library.

#include "fiber_internals.hpp"

#include <fibers/detail/scheduled_fiber.hpp>
#include <fibers/detail/published_wait.hpp>
#include <fibers/errors.hpp>
#include <fibers/hub.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive/set.hpp>
#include <boost/intrusive_ptr.hpp>
#include <boost/smart_ptr/intrusive_ref_counter.hpp>

#include <any>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>
#include <exception>

namespace fibers::detail {

// Where other threads queue work for a hub. Counted, and shared with what
// may outlive the hub (a switch_back's state, an operation's handler): once
// closed, under its lock, by a closing hub, nothing reaches the hub through
// it any more.
struct hub_mailbox final : mailbox_flag, boost::intrusive_ref_counter<hub_mailbox, boost::thread_safe_counter> {
    explicit hub_mailbox(hub* h) noexcept : owner(h) {}
    hub_mailbox(hub_mailbox const&) = delete;
    hub_mailbox& operator=(hub_mailbox const&) = delete;

    hub* const owner; // dereferenced only while open
    std::atomic<bool> open{true};    // written under the mutex
    std::mutex mutex;
    std::vector<ready_entry*> entries; // guarded; `pending` says whether empty
    bool wake_posted = false;          // guarded
    // guarded: the hub is in its idle spin, which watches `pending`, so a
    // push needs no wake through the loop (an eventfd write, and Asio's
    // mutex, which the spin's polls hold often).
    bool spinning = false;
};

// A fiber in sleep(), in its frame: in its hub's set by deadline until the
// hub's timer for the earliest passes it, then queued to resume.
struct sleeper {
    explicit sleeper(fiber_record* f, std::chrono::steady_clock::time_point deadline) noexcept
        : until(deadline), wake(f) {}
    std::chrono::steady_clock::time_point const until;
    boost::intrusive::set_member_hook<> hook;
    yield_entry wake;
};

struct sleepers_by_deadline {
    bool operator()(sleeper const& a, sleeper const& b) const noexcept { return a.until < b.until; }
};

// One Asio timer per hub rather than one per sleeper: a sleep allocates
// nothing, touches no atomic, and most go in at the end of the set (the
// same duration after a later start), in constant time, where Asio's heap
// of timers touched a timer on another fiber's stack at each of its
// levels. Equal deadlines wake in the order they were set. The hub wakes
// those due each time it looks at I/O, and sets the timer only before it
// blocks.
struct hub_sleepers {
    explicit hub_sleepers(boost::asio::io_context& io) : timer(io) {}
    boost::intrusive::multiset<
        sleeper, boost::intrusive::member_hook<sleeper, boost::intrusive::set_member_hook<>, &sleeper::hook>,
        boost::intrusive::compare<sleepers_by_deadline>>
        set;
    boost::asio::steady_timer timer;
    bool armed = false;
    std::chrono::steady_clock::time_point armed_for{};
};

// The calling thread's hub once made (until it is destroyed), else null.
extern __thread hub* thread_hub FIBERS_INITIAL_EXEC_TLS;
// Before the hub sleeps: if its root fiber waits and nothing can ever
// resume anything on it (nothing queued, no Asio work but the hub's own
// `own_work`, and every fiber waits on what only a fiber of this hub can
// release), queues the root's resumption with fibers::deadlock and returns
// true (src/deadlock.cpp).
bool find_deadlock(hub& h, long own_work);

// An interruption that its source throws again by itself at the fiber's
// next wait, for as long as it applies (a cancel scope that fired): a wait
// that had completed when it came lets it go, rather than defer it.
struct self_renewing_interruption {
    virtual ~self_renewing_interruption() = default;
};

// An interruption deferred for `f` (see defer_interruption) was due at its
// next yield operation: it is no longer, and the answer is true. Only a
// fiber with end hooks can have one, so that much is tested inline: the
// search of the hooks is out of line.
bool take_due_interruption_from_hooks(fiber_record* f) noexcept;
inline bool take_due_interruption(fiber_record* f) noexcept {
    return FIBERS_UNLIKELY(!f->end_hooks.empty()) && take_due_interruption_from_hooks(f);
}

struct hub_access {
    static thread_state& thread(hub const& h) noexcept { return *h.thread_; }
    static fiber_record* record(hub const& h) noexcept { return h.record_; }
    static bool on_own_thread(hub const& h) noexcept {
        thread_state const* ts = current_thread_state;
        return ts != nullptr && ts->anchor == h.thread_->anchor;
    }
    static bool is_open(hub const& h) noexcept { return h.is_alive(); }
    // What the watchdog reads from its own thread (see watchdog.cpp).
    static unsigned const& dispatched(hub const& h) noexcept { return h.dispatched_; }
    static bool waiting_for_work(hub const& h) noexcept {
        return h.waiting_for_work_.load(std::memory_order_relaxed);
    }
    static void count_stall(hub& h) noexcept { h.stalls_.fetch_add(1, std::memory_order_relaxed); }
    // Nothing in the run queue, the mailbox or the thread's handed-back references.
    static bool nothing_queued(hub const& h) noexcept {
        return h.ready_.empty() && !h.mailbox_->pending.load(std::memory_order_acquire) &&
               !h.thread_->anchor->has_orphans.load(std::memory_order_acquire);
    }
    // On the hub's thread: runs `e` in a coming iteration.
    static void push(hub& h, ready_entry& e) noexcept { h.push_here(e); }
    // From any thread; false (and nothing queued) if the hub has closed.
    static bool push_from_anywhere(hub_mailbox& m, ready_entry& e) noexcept;
    static hub_mailbox& mailbox(hub const& h) noexcept { return static_cast<hub_mailbox&>(*h.mailbox_); }
    // On the hub's thread: takes back an entry pushed (from any thread) and
    // not yet run, wherever it waits: the run queue or the mailbox. Whether
    // it was there.
    static bool retract(hub& h, ready_entry& e) noexcept;
    // On the hub's thread: adds the fibers that what is queued on `h` (its
    // run queue and its mailbox) is to resume.
    static void add_ready_fibers(hub& h, std::vector<fiber_record const*>& out);
    // Takes ownership of `f`, numbers it (schedule_number) and makes it a
    // child of the hub's fiber that the hub schedules. On error deletes it and throws: fibers::error for
    // a closed hub, std::invalid_argument for a hub of another thread.
    static void schedule(hub& h, scheduled_fiber* f);
    // Once started the hub holds a reference to it until its end, which
    // releases it.
    static void adopt(hub& h, scheduled_fiber* f) noexcept;
    // adopt() for a fiber that no handle has yet reached: no other thread
    // can touch its count, so it needs no atomic operation.
    static void adopt_unshared(hub& h, scheduled_fiber* f) noexcept;
    static void release(hub& h, scheduled_fiber* f) noexcept;
    // Off the hub's list, without a reference to release (its destruction).
    static void forget(hub& h, scheduled_fiber* f) noexcept { h.unlink_scheduled(f); }
    // Throws unless the calling fiber may wait on `h`: its thread, open,
    // not the hub fiber itself. Runs switchpoint() first.
    static void check_may_wait(hub const& h);
    // The calling fiber, which may wait on `h` (checked), waits until
    // `deadline`. An interruption that comes once the deadline has queued
    // its resumption is deferred (defer_interruption).
    static void sleep_until(hub& h, std::chrono::steady_clock::time_point deadline);
    // The hub's side of sleep, for a hub with sleepers_: queues the
    // sleepers whose deadline has passed (whether any), and before the loop
    // blocks sets its timer for the earliest of the rest.
    static bool wake_due_sleepers(hub& h) noexcept;
    static void arm_sleep_timer(hub& h) noexcept;
};

} // namespace fibers::detail

#endif // FIBERS_SRC_HUB_INTERNALS_HPP
