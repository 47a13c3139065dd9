// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// The hub's scheduling costs beside Boost.Fiber's, measured in the same run:
//
//   task sleep(0s)       two tasks that call sleep(0s) in turn, per
//                        sleep(0s); two Boost.Fiber fibers that call
//                        this_fiber::yield() in turn, per yield
//   root sleep(0s)       the root fiber and a task call sleep(0s) in turn,
//                        per call (the root's turns go through the hub
//                        fiber); main's own context and a Boost.Fiber fiber
//                        call this_fiber::yield() in turn, per call
//   task spawn+join      spawn([]{}).join() from a task; a Boost.Fiber fiber
//                        made and joined from another fiber
//   root spawn+join      spawn([]{}).join() from the root fiber; a
//                        Boost.Fiber fiber made and joined from main
//   timed sleep          1,000 tasks that each sleep 20 us at a time, per
//                        sleep (the loop has always some due: the cost of a
//                        sleep and its wake-up); the same with 1,000
//                        Boost.Fiber fibers and this_fiber::sleep_for
//
// Goals: sleep(0s) at most 0.6x Boost.Fiber's yield, spawn+join at most
// 0.5x, from a task and from the root alike. The machine is shared and
// noisy: the variants are interleaved and each keeps its best repetition;
// compare ratios, not nanoseconds.

#include <fibers/task.hpp>

#include "interleaved.hpp"
#include "task_loops.hpp"

#include <boost/fiber/all.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <vector>

namespace {

using fibers_perf::clock_type;
using fibers_perf::nanoseconds_per;
using namespace std::chrono_literals;

double hub_yield(long yields) { return fibers_perf::tasks_taking_turns(yields, fibers_perf::no_surroundings); }

double boost_yield(long yields) {
    long const each = yields / 2;
    auto body = [each] {
        for (long i = 0; i < each; ++i)
            boost::this_fiber::yield();
    };
    auto start = clock_type::now();
    boost::fibers::fiber a(body);
    boost::fibers::fiber b(body);
    a.join();
    b.join();
    return nanoseconds_per(start, 2 * each);
}

double root_sleep(long count) {
    long const each = count / 2;
    auto start = clock_type::now();
    fibers::task other = fibers::spawn([each] {
        for (long i = 0; i < each; ++i)
            fibers::sleep(0s);
    });
    for (long i = 0; i < each; ++i)
        fibers::sleep(0s);
    other.join();
    return nanoseconds_per(start, 2 * each);
}

double boost_main_yield(long count) {
    long const each = count / 2;
    auto start = clock_type::now();
    boost::fibers::fiber other([each] {
        for (long i = 0; i < each; ++i)
            boost::this_fiber::yield();
    });
    for (long i = 0; i < each; ++i)
        boost::this_fiber::yield();
    other.join();
    return nanoseconds_per(start, 2 * each);
}

double task_spawn_join(long count) { return fibers_perf::spawn_joins_in_a_task(count, fibers_perf::no_surroundings); }

double boost_fiber_create_join(long count) {
    double ns = 0;
    boost::fibers::fiber([&] {
        auto start = clock_type::now();
        for (long i = 0; i < count; ++i)
            boost::fibers::fiber([] {}).join();
        ns = nanoseconds_per(start, count);
    }).join();
    return ns;
}

double hub_spawn_join(long count) {
    auto start = clock_type::now();
    for (long i = 0; i < count; ++i)
        fibers::spawn([] {}).join();
    return nanoseconds_per(start, count);
}

double boost_create_join(long count) {
    auto start = clock_type::now();
    for (long i = 0; i < count; ++i)
        boost::fibers::fiber([] {}).join();
    return nanoseconds_per(start, count);
}

constexpr long timed_sleepers = 1000;
constexpr auto timed_sleep = 20us;

double hub_timed_sleeps(long count) {
    long const each = std::max(count / timed_sleepers, 1L);
    std::vector<fibers::task> sleepers;
    sleepers.reserve(timed_sleepers);
    auto start = clock_type::now();
    for (long i = 0; i < timed_sleepers; ++i)
        sleepers.push_back(fibers::spawn([each] {
            for (long k = 0; k < each; ++k)
                fibers::sleep(timed_sleep);
        }));
    for (auto& t : sleepers)
        t.join();
    return nanoseconds_per(start, each * timed_sleepers);
}

double boost_timed_sleeps(long count) {
    long const each = std::max(count / timed_sleepers, 1L);
    std::vector<boost::fibers::fiber> sleepers;
    sleepers.reserve(timed_sleepers);
    auto start = clock_type::now();
    for (long i = 0; i < timed_sleepers; ++i)
        sleepers.emplace_back([each] {
            for (long k = 0; k < each; ++k)
                boost::this_fiber::sleep_for(timed_sleep);
        });
    for (auto& f : sleepers)
        f.join();
    return nanoseconds_per(start, each * timed_sleepers);
}

} // namespace

int main(int argc, char** argv) {
    auto const [scale, repetitions] = fibers_perf::parse_size_arguments(argc, argv, 1, 7, "SCALE");

    fibers_perf::row rows[] = {
        {"task sleep(0s)", &hub_yield, &boost_yield, "boost::this_fiber::yield", 0.6, 400000 * scale},
        {"root sleep(0s)", &root_sleep, &boost_main_yield, "yield from main's context", 0.6, 400000 * scale},
        {"task spawn+join", &task_spawn_join, &boost_fiber_create_join, "fiber+join in a fiber", 0.5,
         100000 * scale},
        {"root spawn+join", &hub_spawn_join, &boost_create_join, "fiber+join from main", 0.5, 100000 * scale},
        {"timed sleep, 1000 sleepers", &hub_timed_sleeps, &boost_timed_sleeps, "this_fiber::sleep_for", 0,
         200000 * scale},
    };
    fibers_perf::run_and_print(rows, repetitions, "hub");
    fibers::get_hub().close();
    return 0;
}
