// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_DETAIL_WAITER_HPP
#define FIBERS_DETAIL_WAITER_HPP

// How the sync primitives and futures wait, from any fiber or thread.
//
// A primitive guards its state with a std::mutex and keeps the parties that
// wait on it in a waiter_list under that mutex. Whoever changes the state
// (a release, a set, a put) unlinks a waiter and wakes it, still holding the
// mutex: a linked waiter cannot go away, so the wake never touches a dead
// waiter, and "unlinked" is the whole truth about whether it was woken.
//
// A party is a fiber of a thread whose hub is alive (it waits through the
// hub, which serves every other fiber meanwhile), or a thread with no live
// hub (it blocks on a condition variable). Either may be on a different
// thread from the one that wakes it.

#include <fibers/detail/duration.hpp>
#include <fibers/detail/ready_queue.hpp>

#include <boost/intrusive/list.hpp>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <optional>

namespace fibers {
// The waiters hold only pointers: sync.hpp and futures.hpp need neither the
// hub's nor switch_back's header, nor the Asio headers those bring.
class hub;
template <class... Args>
class switch_back;
} // namespace fibers

namespace fibers::detail {

using wait_clock = std::chrono::steady_clock;
using deadline = std::optional<wait_clock::time_point>;

// A deadline `timeout` from now; a negative timeout is one already passed,
// one too long for the clock never passes (see duration.hpp).
template <class Rep, class Period>
wait_clock::time_point deadline_after(std::chrono::duration<Rep, Period> timeout) {
    return saturated_deadline(wait_clock::now(), timeout);
}

// Who holds an owned primitive (a mutex): the running fiber, or the thread
// when no fiber of it was ever made (then its root, made here).
void const* current_owner() noexcept;

class waiter_list;

// One waiting party, on its own stack for the length of one wait.
class waiter {
public:
    waiter() = default;
    waiter(waiter const&) = delete;
    waiter& operator=(waiter const&) = delete;

    bool linked() const noexcept { return hook_.is_linked(); }
    // A waker unlinked it (rather than its deadline or an exception).
    bool woken() const noexcept { return woken_; }

    // What a primitive may keep with its waiter (a queue's item, a
    // priority), set before the wait and read by the waker.
    void* payload = nullptr;

private:
    friend class waiter_list;
    void wake() noexcept;

    // How an untimed wait of a fiber is resumed: this entry, queued on the
    // fiber's hub (straight into its run queue from the hub's own thread),
    // with no allocation. Timed waits use a switch_back, whose timer needs
    // a counted state.
    struct resume_entry final : ready_entry {
        bool ran = false;
        resume_entry() noexcept {
            take = [](ready_entry& e) -> resumption {
                auto& self = static_cast<resume_entry&>(e);
                self.ran = true;
                return {self.resumes};
            };
        }
    };

    // Safe-link: a waiter destroyed while listed is caught in debug builds.
    boost::intrusive::list_member_hook<boost::intrusive::link_mode<boost::intrusive::safe_link>> hook_;
    bool woken_ = false;
    // One of the three, set for the wait.
    hub* home_ = nullptr;
    switch_back<>* resume_ = nullptr;
    std::condition_variable* blocked_ = nullptr;
    resume_entry entry_;
};

// The waiters of one primitive, first come first woken. Every member is
// called with the primitive's mutex held.
class waiter_list {
public:
    waiter_list() = default;
    waiter_list(waiter_list const&) = delete;
    waiter_list& operator=(waiter_list const&) = delete;

    bool empty() const noexcept { return waiters_.empty(); }
    std::size_t size() const noexcept { return waiters_.size(); }
    waiter* front() noexcept { return waiters_.empty() ? nullptr : &waiters_.front(); }
    // First come first.
    auto begin() const noexcept { return waiters_.begin(); }
    auto end() const noexcept { return waiters_.end(); }

    // Unlinks the first waiter and wakes it; false if there was none.
    bool wake_one() noexcept;
    // Unlinks and wakes every waiter; how many there were.
    std::size_t wake_all() noexcept;
    // Unlinks `w` and wakes it.
    void wake(waiter& w) noexcept;

    // The calling fiber or thread waits in the list until a waker unlinks
    // it (true) or `until` passes (false: only then; anything else that
    // resumes a waiting fiber makes it wait on). `lock` holds the primitive's
    // mutex on entry, on return and when an exception leaves; it is
    // released while waiting. Whatever ends the wait, the waiter is
    // unlinked by then.
    //
    // An exception thrown into the waiting fiber (a task's cancel,
    // keyboard_interrupt) leaves only if no waker came first: woken, the
    // wait returns true and the exception comes at the fiber's next wait
    // (defer_interruption). What cannot wait, the unwinding of a fiber or a
    // hub closing, leaves at once, woken or not.
    bool wait(std::unique_lock<std::mutex>& lock, deadline until) {
        waiter w;
        return wait(lock, until, w);
    }
    // The same with the caller's waiter: a primitive whose waker hands the
    // woken party something (a mutex's ownership, a notification) catches
    // the exception, passes that on if `w.woken()`, and rethrows: only an
    // unwinding leaves a woken waiter.
    bool wait(std::unique_lock<std::mutex>& lock, deadline until, waiter& w);

private:
    void push_back(waiter& w) noexcept;
    // The three ways to wait, by where the caller is and whether it has a
    // deadline. Each waits once: the caller decides whether to wait again.
    // A fiber with a live hub and no deadline: resumed by the waiter's own
    // entry, with no allocation.
    void wait_through(std::unique_lock<std::mutex>& lock, waiter& w);
    // A fiber with a live hub and a deadline: resumed through a switch_back
    // (made beforehand, reset after), whose timer needs a counted state.
    enum class timed_wait { again, deadline_passed, done };
    timed_wait wait_until(std::unique_lock<std::mutex>& lock, waiter& w, std::optional<switch_back<>>& resume);
    // Anything else, a thread without a live hub: blocks the thread (on
    // `blocked`, made beforehand) until woken or the deadline.
    void block_until(std::unique_lock<std::mutex>& lock, waiter& w, std::optional<std::condition_variable>& blocked,
                     deadline end);
    // A woken waiter got `interruption` (being handled): deferred, or
    // rethrown if it cannot be.
    static void done_despite(std::exception_ptr const& interruption);
    void unlink(waiter& w) noexcept;

    boost::intrusive::list<waiter, boost::intrusive::member_hook<waiter, decltype(waiter::hook_), &waiter::hook_>>
        waiters_;
};

} // namespace fibers::detail

#endif // FIBERS_DETAIL_WAITER_HPP
