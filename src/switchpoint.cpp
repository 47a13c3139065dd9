// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#include "fiber_internals.hpp"

#include <fibers/errors.hpp>

#include <fibers/switchpoint.hpp>

namespace fibers {

// Both checks hold whether or not the caller would have to wait this time:
// code that may wait is refused where it must not, not only on the day it
// happens to wait.
void switchpoint() {
    detail::thread_state const* ts = detail::current_thread_state;
    if (ts == nullptr)
        return;
    if (ts->no_switch_depth != 0)
        throw switchpoint_violation("fibers: switchpoint called inside assert_no_switchpoints");
    if (FIBERS_UNLIKELY(ts->current->switchpoint_refusal != nullptr))
        throw error(ts->current->switchpoint_refusal);
}

// The guard also swaps the thread's switch key, so that the inline switch
// path refuses every switch without a check of its own.
assert_no_switchpoints::assert_no_switchpoints() {
    detail::thread_state& ts = detail::this_thread_state();
    if (ts.no_switch_depth++ == 0)
        ts.switch_key = &detail::no_switch_key;
}

assert_no_switchpoints::~assert_no_switchpoints() {
    detail::thread_state& ts = detail::this_thread_state();
    if (--ts.no_switch_depth == 0)
        ts.switch_key = ts.anchor;
}

} // namespace fibers
