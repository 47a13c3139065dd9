// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// The program that test/gdb_fiber_bt.py stops under gdb: when the root
// fiber calls fibers_are_suspended(), three fibers are suspended in
// functions of their own, each a few calls deep:
//
//   a plain fiber     in plain_fiber_descends(0..3), switched away from
//   the task waiter   in waiter_task_waits(), waiting on an event
//   the task holder   in holder_task_locks(), waiting on a mutex the root holds
//
// Then it lets them all end and exits 0. One thread: what is checked needs
// no other.

#include <fibers/fiber.hpp>
#include <fibers/sync.hpp>
#include <fibers/task.hpp>

#include <chrono>
#include <cstdio>

using namespace std::chrono_literals;

// Where the debugger stops. noipa: no clone, no inlining, a call gdb can
// put a breakpoint on under this name.
extern "C" [[gnu::noipa]] void fibers_are_suspended(int suspended) {
    __asm__ volatile("" : : "r"(suspended) : "memory");
}

namespace {

// Each level does work after its call returns, so that no call is a tail
// call and every level keeps a frame for the backtrace to show.
[[gnu::noipa]] int plain_fiber_descends(int depth, fibers::fiber& root) {
    if (depth == 0) {
        root.switch_to();
        return 0;
    }
    int const below = plain_fiber_descends(depth - 1, root);
    __asm__ volatile("" : : "r"(below) : "memory");
    return below + 1;
}

[[gnu::noipa]] int waiter_task_waits(fibers::event& go) {
    int const set = go.wait() ? 1 : 0;
    __asm__ volatile("" : : "r"(set) : "memory");
    return set;
}

[[gnu::noipa]] int holder_task_locks(fibers::mutex& held) {
    held.lock();
    held.unlock();
    __asm__ volatile("" : : : "memory");
    return 1;
}

fibers::task_options named(char const* name) {
    fibers::task_options options;
    options.name = name;
    return options;
}

} // namespace

int main() {
    fibers::fiber root = fibers::current();
    fibers::fiber plain([&] { plain_fiber_descends(3, root); });
    plain.switch_to();

    fibers::event go;
    fibers::mutex held;
    held.lock();
    fibers::task waiter = fibers::spawn([&] { waiter_task_waits(go); }, named("waiter"));
    fibers::task holder = fibers::spawn([&] { holder_task_locks(held); }, named("holder"));
    // sleep(0s) queues the root behind the two tasks' starts: both run to
    // their waits before it returns.
    fibers::sleep(0s);

    fibers_are_suspended(3);

    go.set();
    held.unlock();
    waiter.join();
    holder.join();
    plain.switch_to();
    std::puts("all fibers ended");
    return 0;
}
