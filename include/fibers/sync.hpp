// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_SYNC_HPP
#define FIBERS_SYNC_HPP

// Locks, events, conditions and queues (Gruvi's gruvi.sync and gruvi.queue,
// Python's threading and queue). Every one may be shared by fibers of any
// hub and by plain threads: a fiber that waits suspends only itself, a
// thread without a hub blocks. Waiters are served first come, first served.

#include <fibers/detail/waiter.hpp>
#include <fibers/errors.hpp>
#include <fibers/impl/sync.hpp>
#include <fibers/switchpoint.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>

namespace fibers {

class condition;

namespace detail {

// A queue of items kept in `Items`, bounded by maxsize (0: unbounded);
// queue_core hands them over.
template <class T, class Items>
class basic_queue {
public:
    explicit basic_queue(std::size_t maxsize = 0) : core_(maxsize) {}
    basic_queue(basic_queue const&) = delete;
    basic_queue& operator=(basic_queue const&) = delete;

    /// Puts `item` at the back; when the queue is full, waits for a place
    /// (block) or throws fibers::queue_full (!block). A switchpoint if block.
    void put(T item, bool block = true) {
        if (block)
            switchpoint();
        core_.put_until(item, std::nullopt, block);
    }
    /// Waits at most `timeout` for a place, then throws fibers::queue_full.
    /// A switchpoint; a zero or negative timeout tries once.
    template <class Rep, class Period>
    void put(T item, std::chrono::duration<Rep, Period> timeout) {
        switchpoint();
        core_.put_until(item, deadline_after(timeout), true);
    }
    /// put(item, false): fibers::queue_full at once if full. Never waits.
    void put_nowait(T item) { core_.put_until(item, std::nullopt, false); }

    /// Takes the next item; when the queue is empty, waits for one (block)
    /// or throws fibers::queue_empty (!block). A switchpoint if block.
    T get(bool block = true) {
        if (block)
            switchpoint();
        return core_.get_until(std::nullopt, block);
    }
    /// Waits at most `timeout` for an item, then throws fibers::queue_empty.
    template <class Rep, class Period>
    T get(std::chrono::duration<Rep, Period> timeout) {
        switchpoint();
        return core_.get_until(deadline_after(timeout), true);
    }
    /// get(false): fibers::queue_empty at once if empty. Never waits.
    T get_nowait() { return core_.get_until(std::nullopt, false); }

    /// Items in the queue now (not those held by waiting putters).
    std::size_t qsize() const { return core_.size(); }
    bool empty() const { return qsize() == 0; }
    bool full() const { return maxsize() != 0 && qsize() >= maxsize(); }
    std::size_t maxsize() const noexcept { return core_.maxsize(); }
    /// Fibers and threads waiting in get or put now: for diagnostics.
    std::size_t waiter_count() const { return core_.waiter_count(); }
    /// Items put and not yet task_done'd.
    std::size_t unfinished_tasks() const { return core_.unfinished_tasks(); }

    /// One item taken earlier has been dealt with. std::invalid_argument
    /// when called more times than items were put. Never waits.
    void task_done() { core_.task_done(); }
    /// Waits until every item put has been task_done'd. A switchpoint.
    void join() {
        switchpoint();
        core_.join();
    }
    /// The same for at most `timeout`: whether every item was done.
    template <class Rep, class Period>
    bool join(std::chrono::duration<Rep, Period> timeout) {
        switchpoint();
        return core_.join_until(deadline_after(timeout));
    }

private:
    queue_core<T, Items> core_; // the only member: see queue_core
};

// What mutex and recursive_mutex offer; they differ only in what an
// acquire by the owner does.
class basic_mutex {
public:
    basic_mutex(basic_mutex const&) = delete;
    basic_mutex& operator=(basic_mutex const&) = delete;

    /// Takes the lock, waiting for it if `blocking` (a switchpoint then);
    /// false only for !blocking when another holds it. The owner: another
    /// level of a recursive_mutex; for a mutex, false if !blocking, and
    /// fibers::error if blocking, as that wait could never end.
    bool acquire(bool blocking = true) { return core_.acquire(blocking); }
    /// Waits at most `timeout`; whether it got the lock. A switchpoint; a
    /// zero or negative timeout tries once. A mutex's owner waits out the
    /// timeout and gets false, as in Python.
    template <class Rep, class Period>
    bool acquire(std::chrono::duration<Rep, Period> timeout) {
        return core_.acquire_until(deadline_after(timeout));
    }
    /// Releases the lock (one level of a recursive_mutex); fibers::error
    /// unless the calling fiber (thread) holds it. Never waits.
    void release() { core_.release(); }
    /// Whether anyone holds it.
    bool locked() const noexcept { return core_.locked(); }
    /// Fibers and threads waiting for it now: for diagnostics.
    std::size_t waiter_count() const { return core_.waiter_count(); }

    void lock() { core_.acquire(true); }
    bool try_lock() { return core_.acquire(false); }
    void unlock() { core_.release(); }

protected:
    explicit basic_mutex(bool recursive) noexcept : core_(recursive) {}
    ~basic_mutex() = default;

private:
    friend class fibers::condition;
    lock_core core_;
};

} // namespace detail

/// Gruvi's Lock: a lock owned by the fiber that acquired it (by the thread,
/// on a thread without a hub). Only the owner may release it; a release
/// hands it straight to the first waiter, first come first served.
/// Meets Lockable: std::lock_guard, std::unique_lock, std::scoped_lock.
class mutex : public detail::basic_mutex {
public:
    mutex() noexcept : basic_mutex(false) {}
};

/// Gruvi's RLock: a mutex its owner may acquire again; it is free once
/// released as many times as acquired.
class recursive_mutex : public detail::basic_mutex {
public:
    recursive_mutex() noexcept : basic_mutex(true) {}
};

/// Python's Event: a flag; wait() returns once it is set.
class event {
public:
    event() = default;
    event(event const&) = delete;
    event& operator=(event const&) = delete;

    /// Sets the flag and wakes every waiter. Never waits.
    void set();
    /// Resets the flag. Never waits.
    void clear();
    bool is_set() const noexcept { return flag_.load(std::memory_order_acquire); }
    /// Returns (true) once the flag is set. A switchpoint.
    bool wait() { return wait_until(std::nullopt); }
    /// Whether the flag was set within `timeout`.
    template <class Rep, class Period>
    bool wait(std::chrono::duration<Rep, Period> timeout) {
        return wait_until(detail::deadline_after(timeout));
    }
    std::size_t waiter_count() const;

private:
    bool wait_until(detail::deadline until);

    std::atomic<bool> flag_{false};
    mutable std::mutex guard_;
    detail::waiter_list waiters_;
};

/// Python's Condition, on a mutex or recursive_mutex that every caller of
/// wait and notify holds (else fibers::error). wait releases the lock, all
/// levels of a recursive one, and takes it back before it returns, also
/// when it throws. A fiber whose stack is unwound (its hub closing, its
/// thread ending) takes it back too, blocking its thread if another thread
/// holds it; if a fiber of its own thread holds it, which cannot run before
/// the unwinding ends, it leaves without it, and its guard's release does
/// nothing.
class condition {
public:
    explicit condition(mutex& m) noexcept : lock_(&m.core_) {}
    explicit condition(recursive_mutex& m) noexcept : lock_(&m.core_) {}
    condition(condition const&) = delete;
    condition& operator=(condition const&) = delete;

    /// Wakes the first `n` waiters (fewer if fewer wait). Never waits.
    void notify(std::size_t n = 1);
    void notify_all();

    /// Waits for a notification; returns true. A switchpoint.
    bool wait() { return wait_until(std::nullopt); }
    /// false if no notification came within `timeout` (the lock is held
    /// again either way). A zero or negative timeout returns false at once,
    /// without releasing the lock.
    template <class Rep, class Period>
    bool wait(std::chrono::duration<Rep, Period> timeout) {
        return wait_until(detail::deadline_after(timeout));
    }
    /// Waits until pred() (called with the lock held) is true; returns it.
    template <class Pred>
    bool wait_for(Pred pred) {
        check_may_wait();
        while (!pred())
            wait_until(std::nullopt);
        return true;
    }
    /// The same for at most `timeout`: returns pred()'s last value.
    template <class Pred, class Rep, class Period>
    bool wait_for(Pred pred, std::chrono::duration<Rep, Period> timeout) {
        check_may_wait();
        auto const until = detail::deadline_after(timeout);
        bool result = pred();
        while (!result && detail::wait_clock::now() < until) {
            wait_until(until);
            result = pred();
        }
        return result;
    }
    std::size_t waiter_count() const;

private:
    bool wait_until(detail::deadline until);
    // fibers::error unless the caller holds the lock; then a switchpoint.
    void check_may_wait();
    std::exception_ptr reacquire(std::size_t levels);

    detail::lock_core* lock_;
    mutable std::mutex guard_;
    detail::waiter_list waiters_;
};

/// Python's queue.Queue: first in, first out. maxsize 0 is unbounded.
template <class T>
class queue : public detail::basic_queue<T, detail::fifo_items<T>> {
public:
    explicit queue(std::size_t maxsize = 0) : detail::basic_queue<T, detail::fifo_items<T>>(maxsize) {}
};

/// Python's queue.LifoQueue: the newest item first.
template <class T>
class lifo_queue : public detail::basic_queue<T, detail::lifo_items<T>> {
public:
    explicit lifo_queue(std::size_t maxsize = 0) : detail::basic_queue<T, detail::lifo_items<T>>(maxsize) {}
};

/// Python's queue.PriorityQueue: the smallest item first (by Compare,
/// std::less: operator<); equal items in no particular order.
template <class T, class Compare = std::less<T>>
class priority_queue : public detail::basic_queue<T, detail::heap_items<T, Compare>> {
public:
    explicit priority_queue(std::size_t maxsize = 0)
        : detail::basic_queue<T, detail::heap_items<T, Compare>>(maxsize) {}
};

} // namespace fibers

#endif // FIBERS_SYNC_HPP
