// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// What a cancel scope that never fires costs the waits it covers, beside the
// same waits outside any scope, measured in the same run:
//
//   sleep(0s) in a scope     two tasks that call sleep(0s) in turn, each
//                            inside a cancel_scope that is never cancelled;
//                            anchor: the same without scopes
//   sleep(0s), 24h scope     the same, each scope with a deadline of 24 h;
//                            anchor: the same without scopes, each task
//                            beside a pending 24 h steady_timer, which is
//                            what the deadline is: a timer that the loop
//                            looks at when it polls
//   spawn+join in a scope    spawn([]{}).join() from a task inside a
//                            cancel_scope with a 24 h deadline; anchor:
//                            the same without one
//   cancel_scope()           a scope with a deadline made and destroyed;
//                            anchor: a switch_back<> with a timeout, made
//                            and destroyed (the same allocation and timer)
//
// Goal: the first three at 1.0, within noise (1.05).
//
// Timings on a shared machine are noise; instruction counts are not.
// `perf_scope only VARIANT COUNT` runs one variant once, with the hub's
// idle spin off (no clock in the loop), for valgrind --tool=callgrind: the
// difference between two counts is what COUNT more operations cost,
// start-up and the scope's own making excluded (doc/scope.md, "Cost").
// VARIANT is one of the functions below: sleeps, sleeps_in_a_scope,
// sleeps_beside_a_timer, sleeps_in_a_scope_with_a_deadline, spawn_join,
// spawn_join_in_a_scope.

#include <fibers/scope.hpp>
#include <fibers/switch_back.hpp>
#include <fibers/task.hpp>

#include "interleaved.hpp"
#include "task_loops.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace {

using fibers_perf::clock_type;
using fibers_perf::nanoseconds_per;
using fibers_perf::no_surroundings;
using fibers_perf::spawn_joins_in_a_task;
using fibers_perf::tasks_taking_turns;
using namespace std::chrono_literals;

FIBERS_NOINLINE double sleeps(long yields) { return tasks_taking_turns(yields, no_surroundings); }

FIBERS_NOINLINE double sleeps_in_a_scope(long yields) {
    return tasks_taking_turns(yields, [] { return fibers::cancel_scope(); });
}

FIBERS_NOINLINE double sleeps_beside_a_timer(long yields) {
    return tasks_taking_turns(yields, [] {
        auto pending = std::make_unique<boost::asio::steady_timer>(fibers::get_hub().loop(), std::chrono::hours(24));
        pending->async_wait([](boost::system::error_code const&) {});
        return pending;
    });
}

FIBERS_NOINLINE double sleeps_in_a_scope_with_a_deadline(long yields) {
    return tasks_taking_turns(yields, [] { return fibers::cancel_scope(std::chrono::hours(24)); });
}

FIBERS_NOINLINE double spawn_join(long count) { return spawn_joins_in_a_task(count, no_surroundings); }

FIBERS_NOINLINE double spawn_join_in_a_scope(long count) {
    return spawn_joins_in_a_task(count, [] { return fibers::cancel_scope(std::chrono::hours(24)); });
}

// A timer destroyed before it fires leaves its handler to run in the loop
// with operation_aborted: part of the cost of what made the timer, and
// work that would otherwise land in whichever row is timed next (the
// first row of the next round, which read 1.2x to 1.7x its anchor for it,
// whichever of the two variants came first). A post goes behind them.
void run_what_the_loop_has_queued() {
    fibers::switch_back<> queued_last;
    boost::asio::post(fibers::get_hub().loop(), queued_last);
    queued_last.wait();
}

FIBERS_NOINLINE double make_scopes(long count) {
    auto start = clock_type::now();
    for (long i = 0; i < count; ++i)
        fibers::cancel_scope scope(24h);
    run_what_the_loop_has_queued();
    return nanoseconds_per(start, count);
}

FIBERS_NOINLINE double make_switch_backs(long count) {
    auto start = clock_type::now();
    for (long i = 0; i < count; ++i)
        fibers::switch_back<> sb(24h);
    run_what_the_loop_has_queued();
    return nanoseconds_per(start, count);
}

} // namespace

int main(int argc, char** argv) {
    if (argc == 4 && std::strcmp(argv[1], "only") == 0) {
        struct {
            char const* name;
            double (*run)(long);
        } const variants[] = {
            {"sleeps", &sleeps},
            {"sleeps_in_a_scope", &sleeps_in_a_scope},
            {"sleeps_beside_a_timer", &sleeps_beside_a_timer},
            {"sleeps_in_a_scope_with_a_deadline", &sleeps_in_a_scope_with_a_deadline},
            {"spawn_join", &spawn_join},
            {"spawn_join_in_a_scope", &spawn_join_in_a_scope},
        };
        fibers::get_hub().idle_spin(std::chrono::nanoseconds(0));
        for (auto const& v : variants)
            if (std::strcmp(argv[2], v.name) == 0) {
                v.run(std::atol(argv[3]));
                fibers::get_hub().close();
                return 0;
            }
        std::fprintf(stderr, "perf_scope: no variant %s\n", argv[2]);
        return 2;
    }
    auto const [scale, repetitions] = fibers_perf::parse_size_arguments(argc, argv, 1, 7, "SCALE");

    // The first run of a process pays for what later runs reuse (stacks,
    // the run queue's first growth): here, so that no row pays it.
    sleeps(400000 * scale / 10);
    spawn_join(100000 * scale / 10);

    fibers_perf::row rows[] = {
        {"sleep(0s) in a scope", &sleeps_in_a_scope, &sleeps, "task sleep(0s), no scope", 1.05, 400000 * scale},
        {"sleep(0s), 24h scope", &sleeps_in_a_scope_with_a_deadline, &sleeps_beside_a_timer,
         "sleep(0s) beside a 24h timer", 1.05, 400000 * scale},
        {"spawn+join in a scope", &spawn_join_in_a_scope, &spawn_join, "task spawn+join, no scope", 1.05,
         100000 * scale},
        {"cancel_scope(24h)", &make_scopes, &make_switch_backs, "switch_back<>(24h)", 0, 100000 * scale},
    };
    fibers_perf::run_and_print(rows, repetitions, "scope");
    fibers::get_hub().close();
    return 0;
}
