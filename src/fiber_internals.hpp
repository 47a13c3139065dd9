// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_SRC_FIBER_INTERNALS_HPP
#define FIBERS_SRC_FIBER_INTERNALS_HPP

// The fiber tree's machinery that the inline switch path does not need.
// Private to the library: the hub reaches it from src/, users never do.

#include <fibers/detail/config.hpp>
#include <fibers/detail/fiber_record.hpp>
#include <fibers/detail/thread_state.hpp>

#include "format.hpp"

#include <boost/smart_ptr/intrusive_ref_counter.hpp>

#include <atomic>
#include <exception>
#include <string>
#include <utility>
#include <cstdint>
#include <mutex>
#include <vector>

namespace fibers::detail {

// Thrown into a fiber whose last handle went away, to run its destructors.
// Deliberately not a std::exception: only `catch (...)` sees it, and such a
// handler must rethrow.
struct forced_unwind {};

// The part of a thread's state that other threads may touch, and that
// outlives the thread: fibers keep it to know their owner. Its holders
// (thread_state, fiber_record) keep plain pointers: their headers see only
// its name.
struct thread_anchor : boost::intrusive_ref_counter<thread_anchor, boost::thread_safe_counter> {
    std::mutex mutex;
    bool alive = true;                   // guarded by mutex
    std::vector<fiber_record*> orphans;  // guarded; each entry carries one reference
    std::atomic<bool> has_orphans{false};
    // Set by the thread's hub so that an orphan posted from another thread
    // wakes its event loop. Guarded by mutex; called with it held.
    void (*wake)(void*) noexcept = nullptr;
    void* wake_argument = nullptr;
};


// The calling thread's state, made on first use.
thread_state& this_thread_state();

// what() of an exception, for messages.
std::string describe_exception(std::exception_ptr const& e);
// Logs the exception being handled at error level, after `where: `.
void log_current_exception(char const* where) noexcept;

// A doubly linked list through two members of its items, newest first.
// Not Boost.Intrusive, for the lists of live fibers and of threads only: a
// signal handler and gdb walk them, by member name, to a null end.
template <class T, T* T::*Newer, T* T::*Older>
struct newest_first_list {
    static void link(T*& newest, T* item) noexcept {
        item->*Older = newest;
        item->*Newer = nullptr;
        if (newest != nullptr)
            newest->*Newer = item;
        newest = item;
    }
    static void unlink(T*& newest, T* item) noexcept {
        if (item->*Newer != nullptr)
            (item->*Newer)->*Older = item->*Older;
        else
            newest = item->*Older;
        if (item->*Older != nullptr)
            (item->*Older)->*Newer = item->*Newer;
        item->*Newer = item->*Older = nullptr;
    }
};

} // namespace fibers::detail

#endif // FIBERS_SRC_FIBER_INTERNALS_HPP
