// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_SRC_TASK_INTERNALS_HPP
#define FIBERS_SRC_TASK_INTERNALS_HPP

// What the task layer keeps to itself. Private to the library.

#include "hub_internals.hpp"

#include <fibers/detail/task_record.hpp>
#include <fibers/errors.hpp>

#include <string>

namespace fibers::detail {

// What task::cancel throws into a task: a fibers::cancelled that knows
// whose cancellation it is, so that a wait that had completed before it
// came re-arms that task's cancellation rather than queueing it apart.
struct task_cancellation final : cancelled {
    task_record const* task;
    task_cancellation(std::string const& message, task_record const* t) : cancelled(message), task(t) {}
};

} // namespace fibers::detail

#endif // FIBERS_SRC_TASK_INTERNALS_HPP
