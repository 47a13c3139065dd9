// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_IMPL_SYNC_HPP
#define FIBERS_IMPL_SYNC_HPP

// Not part of the API: the machinery of <fibers/sync.hpp>, which includes
// this header. It lives in a header because the primitives hold it by
// value and the queues are templates; what needs neither is in src/sync.cpp.

#include <fibers/detail/published_wait.hpp>
#include <fibers/detail/waiter.hpp>
#include <fibers/errors.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

namespace fibers::detail {

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

// The state of a queue and the hand-over of its items, behind basic_queue.
//
// Items are handed over rather than fetched: a put that finds a getter
// waiting gives the item straight to the first one, and a get that frees a
// place in a full queue moves the first waiting putter's item in. So a
// getter woken has its item, a putter woken has put, nobody arriving later
// can take either, and getters wait only on an empty queue and putters only
// on a full one.
//
// The core is basic_queue's only member, so `this`, which its waits
// publish for diagnostics, is the queue's address.
template <class T, class Items>
class queue_core {
public:
    explicit queue_core(std::size_t maxsize) : maxsize_(maxsize) {}
    queue_core(queue_core const&) = delete;
    queue_core& operator=(queue_core const&) = delete;

    std::size_t size() const {
        std::lock_guard<std::mutex> lock(guard_);
        return items_.size();
    }
    std::size_t maxsize() const noexcept { return maxsize_; }
    std::size_t waiter_count() const {
        std::lock_guard<std::mutex> lock(guard_);
        return getters_.size() + putters_.size();
    }
    std::size_t unfinished_tasks() const {
        std::lock_guard<std::mutex> lock(guard_);
        return unfinished_;
    }

    void task_done() {
        std::lock_guard<std::mutex> lock(guard_);
        if (unfinished_ == 0)
            throw std::invalid_argument("fibers: queue::task_done() called more times than items were put");
        if (--unfinished_ == 0)
            joiners_.wake_all();
    }
    void join() {
        std::unique_lock<std::mutex> lock(guard_);
        detail::published_wait note("queue join", detail::waited_object::primitive, this);
        while (unfinished_ != 0)
            joiners_.wait(lock, std::nullopt);
    }
    bool join_until(deadline until) {
        std::unique_lock<std::mutex> lock(guard_);
        detail::published_wait note("queue join", detail::waited_object::primitive, this,
                                    detail::publication_deadline(until));
        while (unfinished_ != 0)
            if (!joiners_.wait(lock, until))
                return unfinished_ == 0;
        return true;
    }

    // put and get: at most until `until`, or not at all unless may_wait.
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

private:
    // A waiting putter's item, and why it could not be moved in, if it could not.
    struct put_request {
        T* item;
        std::exception_ptr error;
    };

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

} // namespace fibers::detail

#endif // FIBERS_IMPL_SYNC_HPP
