// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_HUB_HPP
#define FIBERS_HUB_HPP

#include <fibers/detail/ready_queue.hpp>
#include <fibers/detail/scheduled_fiber.hpp>
#include <fibers/fiber.hpp>
#include <fibers/poller.hpp>

#include <boost/asio/io_context.hpp>

#include <any>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>

namespace fibers {

class hub;

namespace detail {
struct hub_access;
struct hub_signals;
struct hub_sleepers;
class scheduled_fiber;
class hub_watchdog;
// The calling fiber's turn goes to every entry queued before it:
// sleep(0s).
void give_turn(hub& h);

// The switches the hub dispatches: inline, so that the resumed fiber
// continues in its caller's code (see thread_state.hpp). A first switch to
// a fiber, an error to raise, and sanitizer builds go through the library.
std::any resume_out_of_line(thread_state& ts, resumption& r);

FIBERS_ALWAYS_INLINE std::any resume_inline(thread_state& ts, resumption& r) {
#if !FIBERS_SANITIZED
    if (FIBERS_LIKELY(r.error == nullptr &&
                      r.target->status.load(std::memory_order_relaxed) == fiber_status::started)) {
        std::any nothing;
        ts.incoming_value = r.value != nullptr ? r.value : &nothing;
        return switch_inline(ts, r.target);
    }
#endif
    return resume_out_of_line(ts, r);
}

// A resumption of the running fiber itself: nothing to switch.
inline std::any take_own(resumption& r) {
    if (r.error)
        std::rethrow_exception(r.error);
    return r.value != nullptr ? std::move(*r.value) : std::any();
}

// What the hub's inline paths read of its mailbox (the rest, with its
// lock, is the library's): whether other threads queued work.
struct mailbox_flag {
    std::atomic<bool> pending{false}; // the mailbox has entries
};
struct hub_mailbox;

// A callback queued with run_callback: it owns itself until it has run.
template <class Fn>
struct callback_entry final : ready_entry {
    Fn fn;
    explicit callback_entry(Fn&& f) : fn(std::move(f)) { set_up(); }
    explicit callback_entry(Fn const& f) : fn(f) { set_up(); }
    static void run_and_delete(ready_entry& e);
    static void delete_unrun(ready_entry& e) noexcept { delete static_cast<callback_entry*>(&e); }

private:
    void set_up() noexcept {
        run = &run_and_delete;
        discard = &delete_unrun;
    }
};
void log_callback_exception() noexcept;
} // namespace detail

/// The scheduler of a thread: a fiber, child of the root fiber, that runs a
/// boost::asio::io_context and resumes the other fibers when what they wait
/// for has happened (Gruvi's Hub). One per thread, made on first use.
class hub {
public:
    /// The calling thread's hub, made on first use, which must be from the
    /// thread's root fiber (elsewhere: fibers::error). After close(), the
    /// same, closed hub. If making it fails (out of file descriptors or
    /// memory), throws what failed and leaves the thread without a hub: a
    /// later call tries again.
    static hub& get();

    hub(hub const&) = delete;
    hub& operator=(hub const&) = delete;
    /// Closes the hub if needed (at thread exit).
    ~hub();

    /// The event loop. Asio objects made on it complete in the hub.
    boost::asio::io_context& loop() noexcept { return io_; }

    std::string_view name() const noexcept { return "Hub"; }

    /// Per-hub data for the application; keys starting with "fibers:" are
    /// reserved for the library.
    std::unordered_map<std::string, std::any>& data() noexcept { return data_; }

    /// File-descriptor readiness callbacks, run in the hub.
    poller& poll();

    /// Pauses the calling fiber and runs the loop until something resumes
    /// the caller; returns the value a switch_back delivered. In the root
    /// fiber it returns an empty std::any once the hub has ended, or rethrows
    /// the exception that ended it. A switchpoint. fibers::error on a closed
    /// hub, from the hub itself, or from another thread.
    ///
    /// When the next thing queued only resumes a fiber, the caller switches
    /// to that fiber itself, in queue order, rather than through the hub
    /// fiber: half the switches. Callbacks, work from other threads, and a
    /// look at I/O every ready_between_io_checks dispatches go through the hub.
    std::any switch_to();

    /// Runs `fn()` in the hub fiber in a coming loop iteration, in the order
    /// queued. Callable from any thread; wakes an idle loop at once. An
    /// exception from `fn` is logged and dropped. fibers::error on a closed
    /// hub. `fn` must not wait (no switchpoints in the hub).
    template <class Fn>
    void run_callback(Fn&& fn) {
        static_assert(std::is_invocable_v<std::decay_t<Fn>&>, "run_callback takes a callable with no arguments");
        post(new detail::callback_entry<std::decay_t<Fn>>(std::forward<Fn>(fn)));
    }

    /// Stops the loop, unwinds the tasks still alive, releases what the hub
    /// holds, and returns. Only from the root fiber of the hub's thread
    /// (else fibers::error). The hub then refuses further use.
    void close();

    /// True until the hub has closed or ended.
    bool is_alive() const noexcept;

    /// Whether SIGINT is ignored; when not (the default), SIGINT throws
    /// fibers::keyboard_interrupt in the root fiber of this hub's thread.
    bool ignore_interrupt() const noexcept;
    void ignore_interrupt(bool yes);

    /// The hub's own fiber.
    fiber as_fiber() const;

    /// How long the loop, out of work, keeps polling for I/O before it
    /// sleeps in the kernel. Under load the next event comes within
    /// microseconds, and a sleep in epoll_wait plus the wake-up cost more
    /// than the poll; so the loop spins, but only while its previous wait
    /// for work ended within this time: a quiet hub sleeps at once and costs
    /// nothing. 0 turns spinning off; std::invalid_argument if negative.
    /// Callable from any thread.
    std::chrono::nanoseconds idle_spin() const noexcept;
    void idle_spin(std::chrono::nanoseconds budget);
    static constexpr std::chrono::nanoseconds default_idle_spin{50'000};

    /// With a threshold above zero, a helper thread watches the loop and
    /// logs a warning naming the fiber that has held it longer than that
    /// without a switch, counting each such stall in stalls(). 0ms (the
    /// default) stops it; off, it costs nothing. Callable from any thread.
    /// std::invalid_argument if negative; fibers::error on a closed hub.
    void set_watchdog(std::chrono::milliseconds threshold);
    std::uint64_t stalls() const noexcept;

    /// Fibers resumed one after the other before the loop looks at I/O and
    /// timers without blocking, so that neither starves the other.
    static constexpr unsigned ready_between_io_checks = 64;
    /// Asio handlers (I/O and timer completions, poll callbacks) run at most
    /// in one such look, however many the handlers themselves queue.
    static constexpr unsigned handlers_between_dispatches = 64;

private:
    friend struct detail::hub_access;
    friend void detail::give_turn(hub& h);
    enum class hub_state : std::uint8_t { open, closing, closed };

    hub();
    static hub& make_for_this_thread();
    // Queues `e` on the hub's own thread, behind what other threads queued
    // before: one order, as Gruvi's single queue has.
    FIBERS_ALWAYS_INLINE void push_here(detail::ready_entry& e) noexcept {
        take_earlier_remote();
        ready_.push_back(e);
    }
    // Entries of other threads still in the mailbox were pushed before
    // anything the hub's thread pushes now, or concurrently: they go to the
    // run queue first. A push that happened before this point has set
    // `pending` under the mailbox's lock, so this load sees it (or the
    // false that take_remote stored after moving that entry).
    FIBERS_ALWAYS_INLINE void take_earlier_remote() noexcept {
        if (FIBERS_UNLIKELY(mailbox_->pending.load(std::memory_order_relaxed)))
            take_remote();
    }
    // The hub's dispatch rule, one for its loop and for the hand-off of a
    // fiber that waits on it: the next ready entry goes now unless work
    // from other threads is pending or a look at I/O is due
    // (ready_between_io_checks dispatches since the last); a callback only in
    // the hub fiber (`callbacks_too`). Pops and counts it; else null, and
    // the hub fiber sees to what is due.
    FIBERS_ALWAYS_INLINE detail::ready_entry* next_to_dispatch(bool callbacks_too) noexcept {
        detail::ready_entry* e = ready_.front();
        if (e == nullptr || (!callbacks_too && e->take == nullptr) || dispatched_ >= ready_between_io_checks ||
            mailbox_->pending.load(std::memory_order_relaxed))
            return nullptr;
        ready_.pop_front();
        ++dispatched_;
        return e;
    }
    // Whether a taken resumption still has a fiber to resume.
    static FIBERS_ALWAYS_INLINE bool has_fiber_to_resume(detail::resumption const& r) noexcept {
        return r.target != nullptr && r.target->status.load(std::memory_order_relaxed) != detail::fiber_status::ended;
    }
    void post(detail::ready_entry* owned_entry);
    std::any switch_to_checked();
    void run_loop();
    void dispatch_until_closed();
    // Runs the io_context's handlers: waits for one (`block`), or runs those
    // ready, at most handlers_between_dispatches.
    void run_io_handlers(bool block);
    // Out of work: checks I/O for a while if busy (idle_spin), then sleeps.
    void wait_for_work();
    // Marks the hub as in its idle spin or not, for pushes from other
    // threads; whether the mailbox has entries.
    bool set_spinning(bool spinning) noexcept;
    // Moves what other threads queued to the run queue, in their order.
    void take_remote() noexcept;
    void arm_interrupt();
    void shut_down() noexcept;
    // No more work from other threads, and the state leaves `open`.
    void stop_accepting() noexcept;
    void link_scheduled(detail::scheduled_fiber* f) noexcept;
    void unlink_scheduled(detail::scheduled_fiber* f) noexcept;
    void detach_everything() noexcept;
    void stop_watchdog() noexcept;
    // Another thread's handed-back fiber references no longer wake this hub.
    void forget_anchor_wake() noexcept;

    boost::asio::io_context io_{1};
    fiber fiber_;
    detail::fiber_record* record_ = nullptr;     // fiber_'s record
    detail::thread_state* thread_ = nullptr;     // the owner thread's state
    detail::ready_queue ready_;
    unsigned dispatched_ = 0;   // since the loop last looked at I/O
    bool loop_running_ = false; // the hub fiber has started its loop
    bool spin_next_ = false;    // the last wait for work was short: check I/O before sleeping
    std::atomic<std::int64_t> idle_spin_ns_{default_idle_spin.count()};
    std::atomic<hub_state> state_{hub_state::open};

    // Work queued from other threads, moved to ready_ by the loop: a
    // detail::hub_mailbox.
    detail::mailbox_flag* mailbox_;

    std::unordered_map<std::string, std::any> data_;
    std::unique_ptr<poller> poller_;
    std::unique_ptr<detail::hub_signals> signals_;
    std::atomic<bool> ignore_interrupt_{false};

    // For the watchdog: the loop waits for work (no fiber holds it), and
    // the stalls it saw.
    std::atomic<bool> waiting_for_work_{false};
    std::atomic<std::uint64_t> stalls_{0};
    std::mutex watchdog_mutex_;
    std::unique_ptr<detail::hub_watchdog> watchdog_; // guarded by watchdog_mutex_

    std::uint64_t scheduled_so_far_ = 0;
    detail::scheduled_fibers scheduled_;
    // The fibers in sleep() and the one timer for them; made by the first.
    std::unique_ptr<detail::hub_sleepers> sleepers_;
};

/// The calling thread's hub (= hub::get()).
hub& get_hub();

FIBERS_ALWAYS_INLINE std::any hub::switch_to() {
    detail::thread_state* ts = detail::current_thread_state;
    // The key is the hub's thread's anchor only on that thread, outside
    // assert_no_switchpoints: one compare for both checks.
    if (FIBERS_UNLIKELY(ts == nullptr || ts->switch_key != thread_->anchor || ts->current == record_ ||
                        state_.load(std::memory_order_relaxed) != hub_state::open))
        return switch_to_checked();
    // Until the hub fiber runs, a task would end into the root rather than
    // into it: hand-offs start once it has.
    while (detail::ready_entry* e = loop_running_ ? next_to_dispatch(false) : nullptr) {
        detail::resumption r = e->take(*e);
        if (!has_fiber_to_resume(r))
            continue;
        if (r.target == ts->current)
            return detail::take_own(r);
        return detail::resume_inline(*ts, r);
    }
    return fiber_.switch_to();
}

namespace detail {

// sleep(0s): the caller goes to the back of its hub's run queue. Inline, as
// the hub's switch is.
struct yield_entry final : ready_entry {
    bool ran = false;
    explicit yield_entry(fiber_record* waiting) noexcept {
        resumes = waiting;
        take = [](ready_entry& e) -> resumption {
            auto& self = static_cast<yield_entry&>(e);
            self.ran = true;
            return {self.resumes};
        };
    }
    yield_entry(yield_entry const&) = delete;
    yield_entry& operator=(yield_entry const&) = delete;
};

FIBERS_ALWAYS_INLINE void give_turn(hub& h) {
    // What other threads queued first goes first; before the entry is made,
    // which then lives in registers until it is linked.
    h.take_earlier_remote();
    yield_entry entry(current_thread_state->current);
    h.ready_.push_back(entry); // hub::switch_to checks the rest; the entry unlinks itself if it throws
    do // it has not run yet: the hub runs what is queued
        h.switch_to();
    while (!entry.ran);
}

} // namespace detail

template <class Fn>
void detail::callback_entry<Fn>::run_and_delete(ready_entry& e) {
    std::unique_ptr<callback_entry> self(static_cast<callback_entry*>(&e));
    try {
        self->fn();
    } catch (...) {
        log_callback_exception();
    }
}

} // namespace fibers

#endif // FIBERS_HUB_HPP
