// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_SYNC_HPP
#define FIBERS_SYNC_HPP

// Locks, events, conditions and queues (Gruvi's gruvi.sync and gruvi.queue,
// Python's threading and queue). Every one may be shared by fibers of any
// hub and by plain threads: a fiber that waits suspends only itself, a
// thread without a hub blocks. Waiters are served first come, first served.

#include <fibers/detail/published_wait.hpp>
#include <fibers/detail/waiter.hpp>
#include <fibers/errors.hpp>
#include <fibers/switchpoint.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

namespace fibers {

class condition;

namespace detail {

// The lock of mutex and recursive_mutex. The owner and a "someone waits"
// bit share one atomic word, so that an uncontended acquire or release is a
// single compare-exchange; the std::mutex and the waiter list are only used
// when the bit is set. A release with waiters hands the lock straight to the
// first one, and the word never reads "free" while anyone waits, so nobody
// can barge in ahead of the queue.
class lock_core {
public:
    explicit lock_core(bool recursive) noexcept : recursive_(recursive) {}
    lock_core(lock_core const&) = delete;
    lock_core& operator=(lock_core const&) = delete;

    bool acquire(bool blocking);
    bool acquire_until(wait_clock::time_point until);
    void release();
    bool locked() const noexcept { return (state_.load(std::memory_order_relaxed) & ~contended) != 0; }
    // The fiber that holds it (a wait's holder_reader), or null.
    static void const* holder_of(void const* core) noexcept {
        auto const* self = static_cast<lock_core const*>(core);
        return reinterpret_cast<void const*>(self->state_.load(std::memory_order_relaxed) & ~contended);
    }
    bool held_by_caller() const noexcept;
    std::size_t waiter_count() const;

    // For condition: drops every level the caller holds (fibers::error if
    // it holds none) and returns how many; restore() takes them back.
    std::size_t release_all();
    void restore(std::size_t levels);
    // restore() for a fiber whose stack is being unwound, which must not
    // wait through its hub. Takes the lock if it is free, or blocks the
    // thread until another thread hands it over; where that could never
    // happen (a fiber of this thread holds it or waits first, or the hub
    // still runs), the caller goes on without it, and its releases of
    // those levels do nothing.
    void restore_unwinding(std::size_t levels) noexcept;

private:
    static constexpr std::uintptr_t contended = 1;
    enum class attempt { acquired, held_by_caller, held_by_another };

    // The fast path: one compare-exchange, or the owner's own word.
    attempt try_acquire(std::uintptr_t me) noexcept;

    bool acquire_slow(std::uintptr_t me, deadline until);
    void hand_on_locked() noexcept;
    // Whether restore_unwinding may block the thread for the lock.
    bool may_block_unwinding() const noexcept;
    // A release by a fiber that restore_unwinding let go on without the
    // lock: true (and one level forgotten) if `me` is one.
    bool forget_level_not_held(std::uintptr_t me) noexcept;

    std::atomic<std::uintptr_t> state_{0}; // the owner's identity | contended
    std::size_t count_ = 0;                // recursion levels; the owner's alone
    bool const recursive_;
    mutable std::mutex guard_;
    waiter_list waiters_;
    // guarded: fibers unwound out of a condition wait without the lock, and
    // the levels their guards will release.
    std::vector<std::pair<std::uintptr_t, std::size_t>> released_while_unwinding_;
};

// The containers behind the queues: push, pop the next item, and give back
// an item a getter took but could not return (it was being unwound).
template <class T>
struct fifo_items {
    std::deque<T> items;
    std::size_t size() const noexcept { return items.size(); }
    void push(T&& v) { items.push_back(std::move(v)); }
    T pop() {
        T v = std::move(items.front());
        items.pop_front();
        return v;
    }
    void give_back(T&& v) { items.push_front(std::move(v)); } // it was next: it stays next
};

template <class T>
struct lifo_items {
    std::deque<T> items;
    std::size_t size() const noexcept { return items.size(); }
    void push(T&& v) { items.push_back(std::move(v)); }
    T pop() {
        T v = std::move(items.back());
        items.pop_back();
        return v;
    }
    void give_back(T&& v) { items.push_back(std::move(v)); }
};

// A binary heap, the smallest item first. Every comparison is made before
// anything moves, so a comparison that throws leaves the heap as it was; a
// move that throws leaves it valid, but may lose the item being moved.
template <class T, class Compare>
struct heap_items {
    std::vector<T> items;
    Compare less;
    std::size_t size() const noexcept { return items.size(); }
    void push(T&& v) {
        std::size_t hole = items.size();
        while (hole > 0 && less(v, items[(hole - 1) / 2]))
            hole = (hole - 1) / 2;
        items.push_back(std::move(v));
        if (hole == items.size() - 1)
            return;
        // Up the path found: the ancestors one level down, the new item in.
        T moving = std::move(items.back());
        for (std::size_t i = items.size() - 1; i != hole; i = (i - 1) / 2)
            items[i] = std::move(items[(i - 1) / 2]);
        items[hole] = std::move(moving);
    }
    T pop() {
        // The last item fills the root's place. Where it settles is found
        // first, along the smaller children while one is smaller than it;
        // `right` records, level by level, which child the path takes.
        std::size_t const last = items.size() - 1;
        std::uint64_t right = 0;
        unsigned depth = 0;
        for (std::size_t hole = 0;; ++depth) {
            std::size_t child = 2 * hole + 1;
            if (child >= last)
                break;
            if (child + 1 < last && less(items[child + 1], items[child])) {
                ++child;
                right |= std::uint64_t(1) << depth;
            }
            if (!less(items[child], items[last]))
                break;
            hole = child;
        }
        T v = std::move(items.front());
        std::size_t hole = 0;
        for (unsigned level = 0; level != depth; ++level) {
            std::size_t const child = 2 * hole + 1 + ((right >> level) & 1);
            items[hole] = std::move(items[child]);
            hole = child;
        }
        if (hole != last)
            items[hole] = std::move(items[last]);
        items.pop_back();
        return v;
    }
    void give_back(T&& v) { push(std::move(v)); }
};

// A queue of items kept in `Items`, bounded by maxsize (0: unbounded).
//
// Items are handed over rather than fetched: a put that finds a getter
// waiting gives the item straight to the first one, and a get that frees a
// place in a full queue moves the first waiting putter's item in. So a
// getter woken has its item, a putter woken has put, nobody arriving later
// can take either, and getters wait only on an empty queue and putters only
// on a full one.
template <class T, class Items>
class basic_queue {
public:
    explicit basic_queue(std::size_t maxsize = 0) : maxsize_(maxsize) {}
    basic_queue(basic_queue const&) = delete;
    basic_queue& operator=(basic_queue const&) = delete;

    /// Puts `item` at the back; when the queue is full, waits for a place
    /// (block) or throws fibers::queue_full (!block). A switchpoint if block.
    void put(T item, bool block = true) {
        if (block)
            switchpoint();
        put_until(item, std::nullopt, block);
    }
    /// Waits at most `timeout` for a place, then throws fibers::queue_full.
    /// A switchpoint; a zero or negative timeout tries once.
    template <class Rep, class Period>
    void put(T item, std::chrono::duration<Rep, Period> timeout) {
        switchpoint();
        put_until(item, deadline_after(timeout), true);
    }
    /// put(item, false): fibers::queue_full at once if full. Never waits.
    void put_nowait(T item) { put_until(item, std::nullopt, false); }

    /// Takes the next item; when the queue is empty, waits for one (block)
    /// or throws fibers::queue_empty (!block). A switchpoint if block.
    T get(bool block = true) {
        if (block)
            switchpoint();
        return get_until(std::nullopt, block);
    }
    /// Waits at most `timeout` for an item, then throws fibers::queue_empty.
    template <class Rep, class Period>
    T get(std::chrono::duration<Rep, Period> timeout) {
        switchpoint();
        return get_until(deadline_after(timeout), true);
    }
    /// get(false): fibers::queue_empty at once if empty. Never waits.
    T get_nowait() { return get_until(std::nullopt, false); }

    /// Items in the queue now (not those held by waiting putters).
    std::size_t qsize() const {
        std::lock_guard<std::mutex> lock(guard_);
        return items_.size();
    }
    bool empty() const { return qsize() == 0; }
    bool full() const { return maxsize_ != 0 && qsize() >= maxsize_; }
    std::size_t maxsize() const noexcept { return maxsize_; }
    /// Fibers and threads waiting in get or put now: for diagnostics.
    std::size_t waiter_count() const {
        std::lock_guard<std::mutex> lock(guard_);
        return getters_.size() + putters_.size();
    }
    /// Items put and not yet task_done'd.
    std::size_t unfinished_tasks() const {
        std::lock_guard<std::mutex> lock(guard_);
        return unfinished_;
    }

    /// One item taken earlier has been dealt with. std::invalid_argument
    /// when called more times than items were put. Never waits.
    void task_done() {
        std::lock_guard<std::mutex> lock(guard_);
        if (unfinished_ == 0)
            throw std::invalid_argument("fibers: queue::task_done() called more times than items were put");
        if (--unfinished_ == 0)
            joiners_.wake_all();
    }
    /// Waits until every item put has been task_done'd. A switchpoint.
    void join() {
        switchpoint();
        std::unique_lock<std::mutex> lock(guard_);
        detail::published_wait note("queue join", detail::waited_object::primitive, this);
        while (unfinished_ != 0)
            joiners_.wait(lock, std::nullopt);
    }
    /// The same for at most `timeout`: whether every item was done.
    template <class Rep, class Period>
    bool join(std::chrono::duration<Rep, Period> timeout) {
        switchpoint();
        auto const until = deadline_after(timeout);
        std::unique_lock<std::mutex> lock(guard_);
        detail::published_wait note("queue join", detail::waited_object::primitive, this,
                                    detail::publication_deadline(until));
        while (unfinished_ != 0)
            if (!joiners_.wait(lock, until))
                return unfinished_ == 0;
        return true;
    }

private:
    void put_until(T& item, deadline until, bool may_wait) {
        std::unique_lock<std::mutex> lock(guard_);
        if (!getters_.empty()) {
            static_cast<std::optional<T>*>(getters_.front()->payload)->emplace(std::move(item));
            ++unfinished_;
            getters_.wake_one();
            return;
        }
        if (putters_.empty() && (maxsize_ == 0 || items_.size() < maxsize_)) {
            items_.push(std::move(item));
            ++unfinished_;
            return;
        }
        if (!may_wait)
            throw queue_full();
        waiter w;
        put_request request{&item, nullptr};
        w.payload = &request;
        // Woken, a getter has taken the item in (or failed to: its move
        // threw). An exception after that still leaves: the put happened.
        detail::published_wait note("queue put", detail::waited_object::primitive, this,
                                    detail::publication_deadline(until));
        if (!putters_.wait(lock, until, w))
            throw queue_full();
        if (request.error)
            std::rethrow_exception(request.error);
    }

    // A waiting putter's item, and why it could not be moved in, if it could not.
    struct put_request {
        T* item;
        std::exception_ptr error;
    };

    T get_until(deadline until, bool may_wait) {
        std::unique_lock<std::mutex> lock(guard_);
        if (items_.size() != 0)
            return take_next(); // a prvalue: the item is not moved again on its way out
        if (!may_wait)
            throw queue_empty();
        std::optional<T> slot;
        waiter w;
        w.payload = &slot;
        bool got;
        try {
            detail::published_wait note("queue get", detail::waited_object::primitive, this,
                                        detail::publication_deadline(until));
            got = getters_.wait(lock, until, w);
        } catch (...) {
            if (w.woken() && slot)
                give_back(std::move(*slot)); // unwound with its item in hand: nothing is lost
            throw;
        }
        if (!got)
            throw queue_empty();
        try {
            return std::move(*slot); // handed over by a put
        } catch (...) {
            give_back(std::move(*slot)); // its move threw: the item stays in the queue
            throw;
        }
    }

    // The next item, with the guard held and the queue not empty.
    T take_next() {
        T v = items_.pop(); // a throw here leaves the queue as it was
        if (!putters_.empty()) {
            // A place is free: the first waiting putter's item takes it. If
            // its move throws, that put fails with the exception, and the
            // putter stops waiting on a queue no longer full.
            auto& request = *static_cast<put_request*>(putters_.front()->payload);
            try {
                items_.push(std::move(*request.item));
                ++unfinished_;
            } catch (...) {
                request.error = std::current_exception();
            }
            putters_.wake_one();
        }
        return v;
    }

    void give_back(T&& item) {
        if (!getters_.empty()) {
            static_cast<std::optional<T>*>(getters_.front()->payload)->emplace(std::move(item));
            getters_.wake_one();
        } else {
            items_.give_back(std::move(item));
        }
    }

    mutable std::mutex guard_;
    Items items_;
    std::size_t const maxsize_;
    std::size_t unfinished_ = 0;
    waiter_list getters_;
    waiter_list putters_;
    waiter_list joiners_;
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
