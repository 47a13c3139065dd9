// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#include "hub_internals.hpp"

#include <fibers/switchpoint.hpp>
#include <fibers/sync.hpp>

#include <cxxabi.h>

namespace fibers {

namespace detail {

namespace {

std::uintptr_t caller_identity() noexcept { return reinterpret_cast<std::uintptr_t>(current_owner()); }

// The checks waiter_list::wait makes before it waits, made before a
// condition lets its lock go: once released, the lock must not be lost to
// an error that a wait was never possible.
void check_caller_may_wait() {
    switchpoint();
    hub const* h = thread_hub;
    if (h != nullptr && h->is_alive())
        hub_access::check_may_wait(*h);
}

// Whether `identity` (of a lock's holder or waiter) is a fiber of the
// calling thread that has not ended. Compared, never dereferenced: a holder
// on another thread may be gone.
bool is_fiber_of_this_thread(std::uintptr_t identity) noexcept {
    thread_state const* ts = current_thread_state;
    if (ts == nullptr)
        return false;
    if (identity == reinterpret_cast<std::uintptr_t>(ts->root))
        return true;
    for (fiber_record const* f = ts->newest_live; f != nullptr; f = f->older_live)
        if (identity == reinterpret_cast<std::uintptr_t>(f))
            return true;
    return false;
}

} // namespace

bool lock_core::held_by_caller() const noexcept {
    // Only the caller itself can make the word name it, so a plain read is exact.
    return (state_.load(std::memory_order_relaxed) & ~contended) == caller_identity();
}

std::size_t lock_core::waiter_count() const {
    std::lock_guard<std::mutex> lock(guard_);
    return waiters_.size();
}

lock_core::attempt lock_core::try_acquire(std::uintptr_t me) noexcept {
    std::uintptr_t seen = 0;
    if (state_.compare_exchange_strong(seen, me, std::memory_order_acquire, std::memory_order_relaxed)) {
        count_ = 1;
        return attempt::acquired;
    }
    if ((seen & ~contended) != me)
        return attempt::held_by_another;
    if (!recursive_)
        return attempt::held_by_caller;
    ++count_;
    return attempt::acquired;
}

bool lock_core::acquire(bool blocking) {
    if (blocking)
        switchpoint();
    std::uintptr_t const me = caller_identity();
    switch (try_acquire(me)) {
    case attempt::acquired:
        return true;
    case attempt::held_by_caller:
        if (blocking)
            throw error("fibers: acquire() of a mutex that the calling fiber holds would wait forever");
        return false;
    case attempt::held_by_another:
        break;
    }
    return blocking && acquire_slow(me, std::nullopt);
}

bool lock_core::acquire_until(wait_clock::time_point until) {
    switchpoint();
    std::uintptr_t const me = caller_identity();
    // A mutex's own owner waits out the timeout, as in Python.
    return try_acquire(me) == attempt::acquired || acquire_slow(me, until);
}

bool lock_core::acquire_slow(std::uintptr_t me, deadline until) {
    std::unique_lock<std::mutex> lock(guard_);
    std::uintptr_t seen = state_.load(std::memory_order_relaxed);
    for (;;) {
        if (seen == 0) {
            // Free, so nobody waits (a release with waiters hands it over).
            if (state_.compare_exchange_weak(seen, me, std::memory_order_acquire, std::memory_order_relaxed)) {
                count_ = 1;
                return true;
            }
        } else if ((seen & contended) != 0 ||
                   state_.compare_exchange_weak(seen, seen | contended, std::memory_order_relaxed)) {
            // The owner's release now fails its fast path and takes
            // guard_, which is held until this waiter is in the list.
            break;
        }
    }
    waiter w;
    w.payload = reinterpret_cast<void*>(me);
    bool got;
    try {
        published_wait note("mutex", waited_object::primitive, this, publication_deadline(until), &holder_of);
        got = waiters_.wait(lock, until, w);
    } catch (...) {
        if (w.woken())
            hand_on_locked(); // handed the lock, then unwound: the next waiter gets it
        throw;
    }
    if (got)
        count_ = 1; // handed over by a release
    return got;
}

void lock_core::hand_on_locked() noexcept {
    if (waiter* first = waiters_.front()) {
        std::uintptr_t next = reinterpret_cast<std::uintptr_t>(first->payload);
        if (waiters_.size() > 1)
            next |= contended;
        state_.store(next, std::memory_order_release);
        waiters_.wake_one();
    } else {
        state_.store(0, std::memory_order_release);
    }
}

void lock_core::release() {
    std::uintptr_t const me = caller_identity();
    std::uintptr_t seen = state_.load(std::memory_order_relaxed);
    if ((seen & ~contended) != me) {
        if (forget_level_not_held(me))
            return; // a level that restore_unwinding did not take back
        throw error(recursive_ ? "fibers: release of a recursive_mutex that the calling fiber does not own"
                               : "fibers: release of a mutex that the calling fiber does not hold");
    }
    if (recursive_ && count_ > 1) {
        --count_;
        return;
    }
    count_ = 0;
    seen = me;
    if (state_.compare_exchange_strong(seen, 0, std::memory_order_release, std::memory_order_relaxed))
        return;
    std::lock_guard<std::mutex> lock(guard_);
    hand_on_locked();
}

std::size_t lock_core::release_all() {
    if (!held_by_caller())
        throw error("fibers: a condition's lock must be held by the fiber that waits or notifies");
    std::size_t const levels = count_;
    count_ = 1;
    release();
    return levels;
}

void lock_core::restore(std::size_t levels) {
    acquire(true);
    count_ = levels;
}

bool lock_core::may_block_unwinding() const noexcept {
    // Through a hub that still runs, a wait would switch away from a stack
    // being unwound. Blocking the thread waits for the holder and for every
    // waiter ahead: none of them may be a fiber of this thread, which could
    // not run before this unwinding ends.
    hub const* h = thread_hub;
    if (h != nullptr && h->is_alive())
        return false;
    if (is_fiber_of_this_thread(state_.load(std::memory_order_relaxed) & ~contended))
        return false;
    for (waiter const& w : waiters_)
        if (is_fiber_of_this_thread(reinterpret_cast<std::uintptr_t>(w.payload)))
            return false;
    return true;
}

void lock_core::restore_unwinding(std::size_t levels) noexcept {
    std::uintptr_t const me = caller_identity();
    std::unique_lock<std::mutex> lock(guard_);
    std::uintptr_t seen = state_.load(std::memory_order_relaxed);
    for (;;) {
        if (seen == 0) {
            if (state_.compare_exchange_weak(seen, me, std::memory_order_acquire, std::memory_order_relaxed)) {
                count_ = levels;
                return;
            }
        } else if ((seen & contended) != 0 ||
                   state_.compare_exchange_weak(seen, seen | contended, std::memory_order_relaxed)) {
            break; // held: the holder's release takes guard_ from here on
        }
    }
    if (may_block_unwinding()) {
        waiter w;
        w.payload = reinterpret_cast<void*>(me);
        try {
            // No live hub: this blocks the thread, as std::condition_variable does.
            published_wait note("mutex", waited_object::primitive, this, wait_publication::no_deadline, &holder_of);
            if (waiters_.wait(lock, std::nullopt, w)) {
                count_ = levels;
                return;
            }
        } catch (...) {
            if (w.woken())
                hand_on_locked();
        }
    }
    released_while_unwinding_.emplace_back(me, levels);
}

bool lock_core::forget_level_not_held(std::uintptr_t me) noexcept {
    std::lock_guard<std::mutex> lock(guard_);
    for (auto it = released_while_unwinding_.begin(); it != released_while_unwinding_.end(); ++it) {
        if (it->first != me)
            continue;
        if (--it->second == 0)
            released_while_unwinding_.erase(it);
        return true;
    }
    return false;
}

} // namespace detail

void event::set() {
    std::lock_guard<std::mutex> lock(guard_);
    flag_.store(true, std::memory_order_release);
    waiters_.wake_all();
}

void event::clear() {
    std::lock_guard<std::mutex> lock(guard_);
    flag_.store(false, std::memory_order_release);
}

bool event::wait_until(detail::deadline until) {
    switchpoint();
    if (flag_.load(std::memory_order_acquire))
        return true;
    std::unique_lock<std::mutex> lock(guard_);
    if (flag_.load(std::memory_order_relaxed))
        return true;
    // Woken only by set(): true even if the flag was cleared again since, as in Python.
    detail::published_wait note("event", detail::waited_object::primitive, this,
                                detail::publication_deadline(until));
    return waiters_.wait(lock, until) || flag_.load(std::memory_order_relaxed);
}

std::size_t event::waiter_count() const {
    std::lock_guard<std::mutex> lock(guard_);
    return waiters_.size();
}

void condition::check_may_wait() {
    if (!lock_->held_by_caller())
        throw error("fibers: condition::wait without holding its lock");
    detail::check_caller_may_wait();
}

void condition::notify(std::size_t n) {
    if (!lock_->held_by_caller())
        throw error("fibers: condition::notify without holding its lock");
    std::lock_guard<std::mutex> lock(guard_);
    while (n > 0 && waiters_.wake_one())
        --n;
}

void condition::notify_all() {
    if (!lock_->held_by_caller())
        throw error("fibers: condition::notify_all without holding its lock");
    std::lock_guard<std::mutex> lock(guard_);
    waiters_.wake_all();
}

std::size_t condition::waiter_count() const {
    std::lock_guard<std::mutex> lock(guard_);
    return waiters_.size();
}

// Takes the lock back whatever happens: the caller's lock_guard or
// unique_lock releases it on the way out, and a release of a lock not held
// throws, from a destructor. An exception thrown into the fiber meanwhile
// (a cancel, a keyboard_interrupt in the root) is kept for after. The
// unwinding of the fiber's stack cannot wait for its hub: it settles the
// lock as restore_unwinding says, and goes on.
std::exception_ptr condition::reacquire(std::size_t levels) {
    std::exception_ptr interrupted;
    for (;;) {
        try {
            lock_->restore(levels);
            return interrupted;
        } catch (detail::forced_unwind const&) {
            lock_->restore_unwinding(levels);
            throw;
        } catch (abi::__forced_unwind const&) { // the thread is cancelled
            lock_->restore_unwinding(levels);
            throw;
        } catch (...) {
            if (!interrupted)
                interrupted = std::current_exception();
        }
    }
}

bool condition::wait_until(detail::deadline until) {
    check_may_wait();
    if (until && *until <= detail::wait_clock::now())
        return false; // try once: nothing can have notified a waiter not yet waiting
    std::unique_lock<std::mutex> lock(guard_);
    // In the list before the lock goes: a notifier, who holds the lock, finds it there.
    std::size_t const levels = lock_->release_all();
    detail::waiter w;
    bool notified;
    // Notified, then interrupted: the notification goes to another waiter.
    auto pass_on_notification = [&] {
        if (w.woken())
            waiters_.wake_one();
        lock.unlock();
    };
    try {
        detail::published_wait note("condition", detail::waited_object::primitive, this,
                                    detail::publication_deadline(until));
        notified = waiters_.wait(lock, until, w);
    } catch (detail::forced_unwind const&) {
        pass_on_notification();
        lock_->restore_unwinding(levels);
        throw;
    } catch (abi::__forced_unwind const&) { // the thread is cancelled
        pass_on_notification();
        lock_->restore_unwinding(levels);
        throw;
    } catch (...) {
        pass_on_notification();
        reacquire(levels); // an unwinding meanwhile replaces the exception
        throw;
    }
    lock.unlock();
    // Interrupted while it took the lock back: the wait itself was over,
    // and the interruption comes at the next wait.
    if (std::exception_ptr interrupted = reacquire(levels)) {
        if (!detail::defer_interruption(interrupted)) {
            if (notified) {
                lock.lock();
                waiters_.wake_one();
            }
            std::rethrow_exception(interrupted);
        }
    }
    return notified;
}

} // namespace fibers
