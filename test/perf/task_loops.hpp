// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_TEST_PERF_TASK_LOOPS_HPP
#define FIBERS_TEST_PERF_TASK_LOOPS_HPP

// The task loops that perf_hub and perf_scope time, each in surroundings
// that a benchmark chooses: `surround()` is called where the loop runs and
// what it returns (a cancel scope, a pending timer, nothing) lives as long
// as the loop.

#include "interleaved.hpp"

#include <fibers/task.hpp>

#include <chrono>

namespace fibers_perf {

inline auto no_surroundings() { return 0; }

// Nanoseconds per sleep(0s), two tasks calling it in turn, `yields` calls
// in all.
template <class Surround>
double tasks_taking_turns(long yields, Surround surround) {
    long const each = yields / 2;
    auto body = [each, &surround] {
        auto const kept = surround();
        (void)kept;
        for (long i = 0; i < each; ++i)
            fibers::sleep(std::chrono::seconds(0));
    };
    auto const start = clock_type::now();
    fibers::task a = fibers::spawn(body);
    fibers::task b = fibers::spawn(body);
    a.join();
    b.join();
    return nanoseconds_per(start, 2 * each);
}

// Nanoseconds per spawn([]{}).join() from a task.
template <class Surround>
double spawn_joins_in_a_task(long count, Surround surround) {
    double ns = 0;
    fibers::spawn([&] {
        auto const kept = surround();
        (void)kept;
        auto const start = clock_type::now();
        for (long i = 0; i < count; ++i)
            fibers::spawn([] {}).join();
        ns = nanoseconds_per(start, count);
    }).join();
    return ns;
}

} // namespace fibers_perf

#endif // FIBERS_TEST_PERF_TASK_LOOPS_HPP
