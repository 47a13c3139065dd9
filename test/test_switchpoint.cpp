// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#define BOOST_TEST_MODULE switchpoint
#include <boost/test/unit_test.hpp>

#include <fibers/errors.hpp>
#include <fibers/fiber.hpp>
#include <fibers/futures.hpp>
#include <fibers/hub.hpp>
#include <fibers/switch_back.hpp>
#include <fibers/switchpoint.hpp>
#include <fibers/sync.hpp>
#include <fibers/task.hpp>

#include "hub_support.hpp"

#include <any>
#include <atomic>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;
using fibers::assert_no_switchpoints;
using fibers::fiber;
using fibers::switchpoint_violation;
using fibers_test::on_new_thread;

namespace {

struct some_error : std::runtime_error {
    some_error() : std::runtime_error("some error") {}
};

void to_parent() { fiber::current().parent().switch_to(); }

} // namespace

static_assert(std::is_base_of_v<std::logic_error, switchpoint_violation>);
static_assert(!std::is_copy_constructible_v<assert_no_switchpoints>);

BOOST_AUTO_TEST_SUITE(guard)

BOOST_AUTO_TEST_CASE(switchpoint_outside_the_guard_does_nothing) {
    // Also on a thread that never used fibers.
    on_new_thread([] { BOOST_CHECK_NO_THROW(fibers::switchpoint()); });
    on_new_thread([] {
        fibers::get_hub();
        BOOST_CHECK_NO_THROW(fibers::switchpoint());
        {
            assert_no_switchpoints guard;
        }
        BOOST_CHECK_NO_THROW(fibers::switchpoint());
    });
}

BOOST_AUTO_TEST_CASE(switchpoint_inside_the_guard_throws) {
    on_new_thread([] {
        assert_no_switchpoints guard;
        BOOST_CHECK_THROW(fibers::switchpoint(), switchpoint_violation);
        // Again: the guard is not consumed by a violation.
        BOOST_CHECK_THROW(fibers::switchpoint(), switchpoint_violation);
    });
}

BOOST_AUTO_TEST_CASE(guards_nest) {
    on_new_thread([] {
        std::optional<assert_no_switchpoints> outer(std::in_place);
        {
            assert_no_switchpoints inner;
            BOOST_CHECK_THROW(fibers::switchpoint(), switchpoint_violation);
        }
        // The inner one is gone; the outer one still holds.
        BOOST_CHECK_THROW(fibers::switchpoint(), switchpoint_violation);
        outer.reset();
        BOOST_CHECK_NO_THROW(fibers::switchpoint());
    });
}

BOOST_AUTO_TEST_CASE(nested_guards_also_block_switches) {
    on_new_thread([] {
        bool ran = false;
        fiber f([&] { ran = true; });
        {
            assert_no_switchpoints outer;
            {
                assert_no_switchpoints inner;
            }
            BOOST_CHECK_THROW(f.switch_to(), switchpoint_violation);
            BOOST_TEST(!ran);
        }
        f.switch_to();
        BOOST_TEST(ran);
    });
}

BOOST_AUTO_TEST_CASE(guard_inside_a_fiber_and_a_task) {
    on_new_thread([] {
        bool in_fiber = false;
        fiber f([&] {
            assert_no_switchpoints guard;
            try {
                fibers::switchpoint();
            } catch (switchpoint_violation const&) {
                in_fiber = true;
            }
        });
        f.switch_to();
        BOOST_TEST(in_fiber);

        bool in_task = false;
        bool sleep_after = false;
        fibers::task t = fibers::spawn([&] {
            {
                assert_no_switchpoints guard;
                try {
                    fibers::sleep(0s);
                } catch (switchpoint_violation const&) {
                    in_task = true;
                }
            }
            fibers::sleep(0s);
            sleep_after = true;
        });
        t.join();
        BOOST_TEST(in_task);
        BOOST_TEST(sleep_after);
    });
}

BOOST_AUTO_TEST_CASE(guard_on_one_thread_does_not_affect_another) {
    std::atomic<int> stage{0};
    std::atomic<bool> other_switchpoint_ok{false};
    std::atomic<bool> other_sleep_ok{false};
    std::atomic<bool> other_fiber_ok{false};
    std::atomic<bool> still_guarded{false};
    std::thread guarded([&] {
        assert_no_switchpoints guard;
        stage = 1;
        while (stage.load() != 2)
            std::this_thread::yield();
        try {
            fibers::switchpoint();
        } catch (switchpoint_violation const&) {
            still_guarded = true;
        }
    });
    std::thread other([&] {
        while (stage.load() != 1)
            std::this_thread::yield();
        try {
            fibers::switchpoint();
            other_switchpoint_ok = true;
            fibers::sleep(0s);
            fibers::sleep(1ms);
            other_sleep_ok = true;
            bool ran = false;
            fiber f([&] { ran = true; });
            f.switch_to();
            other_fiber_ok = ran;
        } catch (...) {
        }
        stage = 2;
    });
    other.join();
    guarded.join();
    BOOST_TEST(other_switchpoint_ok.load());
    BOOST_TEST(other_sleep_ok.load());
    BOOST_TEST(other_fiber_ok.load());
    BOOST_TEST(still_guarded.load());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(switching_functions)

BOOST_AUTO_TEST_CASE(fiber_switch_to_unstarted) {
    on_new_thread([] {
        bool ran = false;
        fiber f([&] { ran = true; });
        {
            assert_no_switchpoints guard;
            BOOST_CHECK_THROW(f.switch_to(), switchpoint_violation);
        }
        BOOST_TEST(!ran);
        BOOST_TEST(f.is_alive());
        f.switch_to();
        BOOST_TEST(ran);
        BOOST_TEST(!f.is_alive());
    });
}

BOOST_AUTO_TEST_CASE(fiber_switch_to_suspended) {
    on_new_thread([] {
        int steps = 0;
        fiber f([&] {
            ++steps;
            to_parent();
            ++steps;
        });
        f.switch_to();
        BOOST_TEST(steps == 1);
        {
            assert_no_switchpoints guard;
            BOOST_CHECK_THROW(f.switch_to(), switchpoint_violation);
            BOOST_CHECK_THROW(f.switch_to(std::string("value")), switchpoint_violation);
        }
        BOOST_TEST(steps == 1);
        BOOST_TEST(f.is_alive());
        f.switch_to();
        BOOST_TEST(steps == 2);
    });
}

BOOST_AUTO_TEST_CASE(fiber_switch_to_parent_from_a_child) {
    on_new_thread([] {
        bool refused = false;
        int back_in_root = 0;
        fiber f([&] {
            {
                assert_no_switchpoints guard;
                try {
                    to_parent();
                } catch (switchpoint_violation const&) {
                    refused = true;
                }
            }
            to_parent();
        });
        f.switch_to();
        ++back_in_root;
        BOOST_TEST(refused);
        BOOST_TEST(back_in_root == 1);
        f.switch_to();
        BOOST_TEST(!f.is_alive());
    });
}

BOOST_AUTO_TEST_CASE(fiber_throw_to) {
    on_new_thread([] {
        int steps = 0;
        bool caught = false;
        fiber f([&] {
            ++steps;
            try {
                to_parent();
            } catch (some_error const&) {
                caught = true;
            }
            ++steps;
        });
        f.switch_to();
        {
            assert_no_switchpoints guard;
            BOOST_CHECK_THROW(f.throw_to(some_error()), switchpoint_violation);
            BOOST_CHECK_THROW(f.throw_to(std::make_exception_ptr(some_error())), switchpoint_violation);
        }
        BOOST_TEST(steps == 1);
        BOOST_TEST(!caught);
        BOOST_TEST(f.is_alive());
        f.throw_to(some_error());
        BOOST_TEST(caught);
        BOOST_TEST(steps == 2);

        // On a fiber that never started: it must not be ended by the
        // refused call.
        bool ran = false;
        fiber g([&] { ran = true; });
        {
            assert_no_switchpoints guard;
            BOOST_CHECK_THROW(g.throw_to(some_error()), switchpoint_violation);
        }
        BOOST_TEST(g.is_alive());
        g.switch_to();
        BOOST_TEST(ran);
    });
}

BOOST_AUTO_TEST_CASE(hub_switch_to) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        bool callback_ran = false;
        fibers::switch_back<int> sb;
        hub.run_callback([&, c = sb] {
            callback_ran = true;
            c(3);
        });
        {
            assert_no_switchpoints guard;
            BOOST_CHECK_THROW(hub.switch_to(), switchpoint_violation);
        }
        BOOST_TEST(!callback_ran);
        BOOST_TEST(sb.active());
        std::any v = hub.switch_to();
        BOOST_TEST(callback_ran);
        BOOST_TEST(std::get<0>(std::any_cast<std::tuple<int>>(v)) == 3);
    });
}

BOOST_AUTO_TEST_CASE(hub_switch_to_with_a_resumption_queued) {
    // The inline path of hub.switch_to(): the next entry resumes the caller.
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        fibers::sleep(1ms); // the hub has run and has nothing queued
        fibers::switch_back<int> sb;
        fibers_test::backstop backstop;
        sb(4);
        {
            assert_no_switchpoints guard;
            BOOST_CHECK_THROW(hub.switch_to(), switchpoint_violation);
            BOOST_CHECK_THROW(sb.wait(), switchpoint_violation);
        }
        // The resumption is still there.
        auto [v] = sb.wait();
        BOOST_TEST(v == 4);
    });
}

BOOST_AUTO_TEST_CASE(sleep_zero) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        int callbacks = 0;
        hub.run_callback([&] { ++callbacks; });
        {
            assert_no_switchpoints guard;
            BOOST_CHECK_THROW(fibers::sleep(0s), switchpoint_violation);
        }
        BOOST_TEST(callbacks == 0);
        // No yield left behind: the next sleep(0s) runs the callback once.
        fibers::sleep(0s);
        BOOST_TEST(callbacks == 1);
        fibers::sleep(0s);
        BOOST_TEST(callbacks == 1);
    });
}

BOOST_AUTO_TEST_CASE(sleep_zero_with_nothing_queued) {
    // The inline path: the yield would resume the caller at once.
    on_new_thread([] {
        // The hub has run and has nothing queued.
        fibers::sleep(1ms);
        fibers::sleep(0s);
        {
            assert_no_switchpoints guard;
            BOOST_CHECK_THROW(fibers::sleep(0s), switchpoint_violation);
            BOOST_CHECK_THROW(fibers::sleep(0ms), switchpoint_violation);
        }
        BOOST_CHECK_NO_THROW(fibers::sleep(0s));
    });
}

BOOST_AUTO_TEST_CASE(sleep_positive) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        bool callback_ran = false;
        hub.run_callback([&] { callback_ran = true; });
        auto const start = std::chrono::steady_clock::now();
        {
            assert_no_switchpoints guard;
            BOOST_CHECK_THROW(fibers::sleep(1ms), switchpoint_violation);
            BOOST_CHECK_THROW(fibers::sleep(1h), switchpoint_violation);
        }
        BOOST_TEST(!callback_ran);
        BOOST_TEST((std::chrono::steady_clock::now() - start < 30min));
        fibers::sleep(1ms);
        BOOST_TEST(callback_ran);
    });
}

BOOST_AUTO_TEST_CASE(task_join) {
    on_new_thread([] {
        bool ran = false;
        fibers::task t = fibers::spawn([&] { ran = true; });
        {
            assert_no_switchpoints guard;
            BOOST_CHECK_THROW(t.join(), switchpoint_violation);
            BOOST_CHECK_THROW(t.join(1s), switchpoint_violation);
        }
        BOOST_TEST(!ran);
        BOOST_TEST(t.alive());
        t.join();
        BOOST_TEST(ran);
        BOOST_TEST(!t.alive());
    });
}

BOOST_AUTO_TEST_CASE(task_join_on_an_ended_task) {
    // join() is a switchpoint whether or not it has to wait this time: it
    // calls switchpoint() first, so code that might wait is caught even
    // when it happens not to.
    on_new_thread([] {
        fibers::task t = fibers::spawn([] {});
        t.join();
        BOOST_TEST(!t.alive());
        assert_no_switchpoints guard;
        BOOST_CHECK_THROW(t.join(), switchpoint_violation);
        BOOST_CHECK_THROW(t.join(1s), switchpoint_violation);
    });
}

BOOST_AUTO_TEST_CASE(task_join_from_a_task) {
    on_new_thread([] {
        bool refused = false;
        bool joined = false;
        fibers::task worker = fibers::spawn([] { fibers::sleep(1ms); });
        fibers::task joiner = fibers::spawn([&] {
            {
                assert_no_switchpoints guard;
                try {
                    worker.join();
                } catch (switchpoint_violation const&) {
                    refused = true;
                }
            }
            worker.join();
            joined = !worker.alive();
        });
        joiner.join();
        BOOST_TEST(refused);
        BOOST_TEST(joined);
    });
}

BOOST_AUTO_TEST_CASE(switch_back_wait) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        fibers::switch_back<int> sb;
        hub.run_callback([c = sb] { c(5); });
        {
            assert_no_switchpoints guard;
            BOOST_CHECK_THROW(sb.wait(), switchpoint_violation);
        }
        BOOST_TEST(sb.active());
        auto [v] = sb.wait();
        BOOST_TEST(v == 5);
    });
}

BOOST_AUTO_TEST_CASE(switch_back_wait_with_timeout) {
    on_new_thread([] {
        fibers::switch_back<> sb(20ms);
        fibers_test::backstop backstop;
        {
            assert_no_switchpoints guard;
            BOOST_CHECK_THROW(sb.wait(), switchpoint_violation);
        }
        BOOST_TEST(!sb.timed_out());
        BOOST_CHECK_THROW(sb.wait(), fibers::timeout);
    });
}

BOOST_AUTO_TEST_CASE(switch_back_calls_are_not_switchpoints) {
    // Resuming another fiber queues work and never switches: allowed.
    on_new_thread([] {
        fibers::switch_back<int> sb;
        fibers::switch_back<> other;
        {
            assert_no_switchpoints guard;
            BOOST_CHECK_NO_THROW(sb(1));
            BOOST_CHECK_NO_THROW(other.throw_to(std::make_exception_ptr(some_error())));
            BOOST_CHECK_NO_THROW(fibers::get_hub().run_callback([] {}));
        }
        auto [v] = sb.wait();
        BOOST_TEST(v == 1);
    });
}

BOOST_AUTO_TEST_CASE(hub_close) {
    // close() switches to the running hub fiber to stop it: inside the
    // guard it is refused, and the hub stays as it was.
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        fibers::sleep(1ms); // the hub fiber runs
        {
            assert_no_switchpoints guard;
            BOOST_CHECK_THROW(hub.close(), switchpoint_violation);
        }
        BOOST_TEST(hub.is_alive());
        BOOST_CHECK_NO_THROW(hub.run_callback([] {}));
        BOOST_CHECK_NO_THROW(fibers::sleep(1ms));
        hub.close();
        BOOST_TEST(!hub.is_alive());
    });
}

BOOST_AUTO_TEST_CASE(calls_that_do_not_switch_are_allowed) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        bool ran = false;
        fibers::task t;
        fibers::task victim;
        {
            assert_no_switchpoints guard;
            BOOST_CHECK_NO_THROW(t = fibers::spawn([&] { ran = true; }));
            BOOST_CHECK_NO_THROW(victim = fibers::spawn([] { fibers::sleep(1h); }));
            BOOST_CHECK_NO_THROW(victim.cancel());
            BOOST_CHECK_NO_THROW(hub.run_callback([] {}));
            BOOST_CHECK_NO_THROW(fibers::current());
            BOOST_CHECK_NO_THROW(hub.as_fiber());
        }
        BOOST_TEST(!ran);
        t.join();
        victim.join();
        BOOST_TEST(ran);
        BOOST_TEST(!victim.alive());
    });
}

BOOST_AUTO_TEST_CASE(everything_works_after_the_guard) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        bool fiber_ran = false;
        fiber f([&] { fiber_ran = true; });
        bool task_ran = false;
        fibers::task t = fibers::spawn([&] { task_ran = true; });
        fibers::switch_back<int> sb;
        hub.run_callback([c = sb] { c(6); });
        {
            assert_no_switchpoints guard;
            BOOST_CHECK_THROW(f.switch_to(), switchpoint_violation);
            BOOST_CHECK_THROW(hub.switch_to(), switchpoint_violation);
            BOOST_CHECK_THROW(fibers::sleep(0s), switchpoint_violation);
            BOOST_CHECK_THROW(fibers::sleep(1ms), switchpoint_violation);
            BOOST_CHECK_THROW(t.join(), switchpoint_violation);
            BOOST_CHECK_THROW(sb.wait(), switchpoint_violation);
        }
        BOOST_TEST(!fiber_ran);
        BOOST_TEST(!task_ran);
        BOOST_CHECK_NO_THROW(f.switch_to());
        BOOST_TEST(fiber_ran);
        int v = 0;
        BOOST_CHECK_NO_THROW(v = std::get<0>(sb.wait()));
        BOOST_TEST(v == 6);
        BOOST_CHECK_NO_THROW(fibers::sleep(0s));
        BOOST_CHECK_NO_THROW(fibers::sleep(1ms));
        BOOST_CHECK_NO_THROW(t.join());
        BOOST_TEST(task_ran);
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(hub_fiber)

// A hub callback must not wait. Every switchpoint refuses it there with
// fibers::error, including the calls that would not have to wait this
// time: a mistake shows on the first run, not on the day it must wait.
BOOST_AUTO_TEST_CASE(switchpoints_in_a_hub_callback_throw_even_when_they_need_not_wait) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        fibers::task ended = fibers::spawn([] {});
        ended.join();
        fibers::mutex free_mutex;
        fibers::event set_event;
        set_event.set();
        fibers::queue<int> queue;
        queue.put(1);
        fibers::future<int> done = fibers::get_io_pool().submit([] { return 1; });
        done.wait();
        bool ran = false;
        hub.run_callback([&] {
            BOOST_CHECK_THROW(fibers::switchpoint(), fibers::error);
            BOOST_CHECK_THROW(ended.join(), fibers::error);
            BOOST_CHECK_THROW(free_mutex.acquire(), fibers::error);
            BOOST_CHECK_THROW(set_event.wait(), fibers::error);
            BOOST_CHECK_THROW(queue.get(), fibers::error);
            BOOST_CHECK_THROW(done.result(), fibers::error);
            // What does not wait is allowed.
            BOOST_CHECK_NO_THROW(free_mutex.acquire(false));
            free_mutex.release();
            BOOST_CHECK_NO_THROW(set_event.is_set());
            ran = true;
        });
        fibers::sleep(0s);
        BOOST_TEST(ran);
        // Nothing was taken by the refused calls.
        BOOST_TEST(!free_mutex.locked());
        BOOST_TEST_REQUIRE(queue.qsize() == 1u);
        // The same calls from a task are fine.
        fibers::spawn([&] {
            BOOST_CHECK_NO_THROW(fibers::switchpoint());
            BOOST_CHECK_NO_THROW(ended.join());
            BOOST_CHECK_NO_THROW(set_event.wait());
            BOOST_TEST(queue.get() == 1);
            BOOST_TEST(done.result() == 1);
        }).join();
    });
}

BOOST_AUTO_TEST_SUITE_END()
