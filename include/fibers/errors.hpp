// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_ERRORS_HPP
#define FIBERS_ERRORS_HPP

#include <stdexcept>
#include <string>

namespace fibers {

/// Misuse of a fiber or of the hub: a switch or throw to the running fiber,
/// to an ended fiber or to a fiber of another thread; a task switched by
/// anyone but its hub; a closed hub. (python-fibers' `fibers.error`.)
class error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A switchpoint's timeout expired. (Gruvi's `Timeout`.)
class timeout : public std::runtime_error {
public:
    timeout() : std::runtime_error("timeout") {}
    using std::runtime_error::runtime_error;
};

/// Thrown into a task by `task::cancel(message)`; `what()` is the message.
/// A task that ends by it ends quietly. (Gruvi's `Cancelled`.)
class cancelled : public std::runtime_error {
public:
    cancelled() : std::runtime_error("cancelled") {}
    using std::runtime_error::runtime_error;
};

/// SIGINT arrived; thrown in the root fiber by the hub. (`KeyboardInterrupt`.)
class keyboard_interrupt : public std::runtime_error {
public:
    keyboard_interrupt() : std::runtime_error("keyboard interrupt") {}
    using std::runtime_error::runtime_error;
};

/// A switchpoint was called inside `assert_no_switchpoints`.
class switchpoint_violation : public std::logic_error {
public:
    using std::logic_error::logic_error;
};

/// A non-blocking or timed-out `get` found the queue empty.
class queue_empty : public std::runtime_error {
public:
    queue_empty() : std::runtime_error("queue is empty") {}
    using std::runtime_error::runtime_error;
};

/// A non-blocking or timed-out `put` found the queue full.
class queue_full : public std::runtime_error {
public:
    queue_full() : std::runtime_error("queue is full") {}
    using std::runtime_error::runtime_error;
};

} // namespace fibers

#endif // FIBERS_ERRORS_HPP
