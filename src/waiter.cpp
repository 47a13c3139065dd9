// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#include "hub_internals.hpp"

#include <fibers/detail/waiter.hpp>
#include <fibers/switch_back.hpp>
#include <fibers/switchpoint.hpp>

namespace fibers::detail {

void const* current_owner() noexcept { return this_thread_state().current; }

void waiter::wake() noexcept {
    woken_ = true;
    if (home_ != nullptr) {
        // Refused only by a closed hub, whose fibers are being unwound: this
        // one finds itself woken as it leaves, and passes the wake on.
        hub_access::push_from_anywhere(hub_access::mailbox(*home_), entry_);
    } else if (resume_ != nullptr) {
        resume_->switch_to();
    } else {
        blocked_->notify_one();
    }
}

void waiter_list::push_back(waiter& w) noexcept {
    w.woken_ = false;
    waiters_.push_back(w);
}

void waiter_list::unlink(waiter& w) noexcept { waiters_.erase(waiters_.iterator_to(w)); }

void waiter_list::wake(waiter& w) noexcept {
    unlink(w);
    w.wake();
}

bool waiter_list::wake_one() noexcept {
    if (waiters_.empty())
        return false;
    wake(waiters_.front());
    return true;
}

std::size_t waiter_list::wake_all() noexcept {
    std::size_t woken = 0;
    while (wake_one())
        ++woken;
    return woken;
}

namespace {

// The hub the calling fiber waits through, or nullptr when it blocks its
// thread: a thread that never made a hub, or whose hub has closed.
hub* live_hub() noexcept {
    hub* h = thread_hub;
    return h != nullptr && h->is_alive() ? h : nullptr;
}

// A switch_back made for one wait, with the time left of a deadline.
void make_resume(std::optional<switch_back<>>& resume, bool timed, wait_clock::time_point end) {
    if (timed)
        resume.emplace(end - wait_clock::now());
    else
        resume.emplace();
}

} // namespace

void waiter_list::wait_through(std::unique_lock<std::mutex>& lock, waiter& w) {
    hub& h = *live_hub();
    w.entry_.resumes = current_thread_state->current;
    w.entry_.ran = false;
    w.home_ = &h;
    lock.unlock();
    try {
        h.switch_to();
    } catch (...) {
        lock.lock();
        w.home_ = nullptr;
        if (w.linked()) {
            unlink(w);
            throw;
        }
        // Woken first: the entry must not resume a later wait.
        if (!w.entry_.ran)
            hub_access::retract(h, w.entry_);
        done_despite(std::current_exception());
        return;
    }
    lock.lock();
    w.home_ = nullptr;
    if (!w.linked() && !w.entry_.ran)
        hub_access::retract(h, w.entry_); // woken, but resumed by something else first
}

void waiter_list::done_despite(std::exception_ptr const& interruption) {
    if (!defer_interruption(interruption))
        std::rethrow_exception(interruption);
}

waiter_list::timed_wait waiter_list::wait_until(std::unique_lock<std::mutex>& lock, waiter& w,
                                                std::optional<switch_back<>>& resume) {
    w.resume_ = &*resume;
    lock.unlock();
    std::exception_ptr interruption;
    try {
        resume->wait();
    } catch (timeout const&) {
        if (!resume->timed_out()) // somebody else's timeout, thrown in
            interruption = std::current_exception();
    } catch (...) {
        interruption = std::current_exception();
    }
    lock.lock();
    w.resume_ = nullptr;
    if (interruption) {
        resume.reset(); // a wake still on its way resumes nothing
        if (w.linked()) {
            unlink(w);
            std::rethrow_exception(std::move(interruption));
        }
        done_despite(interruption); // woken first
        return timed_wait::done;
    }
    if (resume->timed_out())
        return timed_wait::deadline_passed; // unless a waker came first
    resume.reset(); // each wait through the hub needs a fresh one
    return timed_wait::again;
}

void waiter_list::block_until(std::unique_lock<std::mutex>& lock, waiter& w,
                              std::optional<std::condition_variable>& blocked,
                              deadline end) {
    if (!blocked)
        blocked.emplace(); // the hub closed under a root fiber
    w.blocked_ = &*blocked;
    if (end) {
        while (w.linked() && blocked->wait_until(lock, *end) != std::cv_status::timeout) {
        }
    } else {
        blocked->wait(lock, [&w] { return !w.linked(); });
    }
    w.blocked_ = nullptr;
}

bool waiter_list::wait(std::unique_lock<std::mutex>& lock, deadline until, waiter& w) {
    // The deadline as a plain time: an optional's value read in both
    // branches below trips g++ 12's uninitialised-use warning.
    wait_clock::time_point const end = until.value_or(wait_clock::time_point::max());
    bool const timed = end != wait_clock::time_point::max();
    if (timed && end <= wait_clock::now())
        return false;
    bool through_hub = false;
    if (hub* h = live_hub()) {
        hub_access::check_may_wait(*h); // a switchpoint; not from the hub fiber itself
        through_hub = true;
    } else {
        switchpoint();
    }
    // Made before the waiter is linked: a linked waiter must not be left
    // behind by an exception (std::bad_alloc) from making them.
    std::optional<switch_back<>> resume;
    std::optional<std::condition_variable> blocked;
    if (through_hub && timed)
        make_resume(resume, timed, end);
    else if (!through_hub)
        blocked.emplace();
    push_back(w);
    // Until a waker unlinks it or the deadline passes. A fiber may also be
    // resumed by something else (its hub closing under the root fiber, a
    // stray switch_back): it then waits again, through the hub while the
    // hub lives, blocking its thread after.
    while (w.linked() && !(timed && wait_clock::now() >= end)) {
        if (!through_hub) {
            block_until(lock, w, blocked, timed ? deadline(end) : deadline());
            break;
        }
        if (!timed) {
            wait_through(lock, w);
        } else {
            if (!resume) {
                try {
                    make_resume(resume, timed, end);
                } catch (...) {
                    unlink(w);
                    throw;
                }
            }
            timed_wait const outcome = wait_until(lock, w, resume);
            if (outcome == timed_wait::done)
                return true;
            if (outcome == timed_wait::deadline_passed)
                break;
        }
        through_hub = live_hub() != nullptr;
    }
    if (w.linked()) {
        unlink(w);
        return false;
    }
    return true;
}

} // namespace fibers::detail
