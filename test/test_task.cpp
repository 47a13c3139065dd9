// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#define BOOST_TEST_MODULE task
#include <boost/test/unit_test.hpp>

#include <fibers/hub.hpp>
#include <fibers/stack.hpp>
#include <fibers/task.hpp>
#include "stack_overflow.hpp" // src/: the library's own, tested here

#include "cancel_support.hpp"
#include "hub_support.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <alloca.h>
#include <unistd.h>

using namespace std::chrono_literals;
using fibers_test::captured_log;
using fibers_test::on_new_thread;
using fibers_test::what_a_sleep_does;

namespace {

std::size_t page() { return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)); }

// The usable size of the stack the calling fiber runs on, found from the
// guard page below it without touching memory; 0 if it is not an arena
// stack.
FIBERS_NOINLINE std::size_t this_fiber_stack_size() {
    auto const* frame = static_cast<char const*>(__builtin_frame_address(0));
    fibers::detail::arena_guard_hit below{};
    for (std::size_t down = 0; down < 64 * fibers::arena_stack::default_size(); down += page())
        if (fibers::detail::find_arena_guard(frame - down, below))
            return static_cast<std::size_t>(below.high - below.low);
    return 0;
}

// Takes `bytes` of stack below the caller's frame and writes to each page
// of it from the top down, as a deep call chain would: on a stack too small
// it faults on the guard page instead of writing beyond it.
FIBERS_NOINLINE bool fill_stack(std::size_t bytes) {
    auto* block = static_cast<char volatile*>(alloca(bytes));
    for (std::size_t at = bytes; at >= page(); at -= page())
        block[at - page()] = 1;
    return block[0] == 1;
}

} // namespace

BOOST_AUTO_TEST_SUITE(lifecycle)

BOOST_AUTO_TEST_CASE(runs_only_once_started) {
    on_new_thread([] {
        bool ran = false;
        fibers::task t([&] { ran = true; });
        BOOST_TEST(t.alive());
        fibers::sleep(0s);
        BOOST_TEST(!ran); // made, not started
        t.start();
        BOOST_TEST(!ran); // started in a coming loop iteration
        t.join();
        BOOST_TEST(ran);
        BOOST_TEST(!t.alive());
        BOOST_CHECK_THROW(t.start(), fibers::error);
    });
}

BOOST_AUTO_TEST_CASE(starting_twice_is_an_error) {
    on_new_thread([] {
        fibers::task t = fibers::spawn([] {});
        BOOST_CHECK_THROW(t.start(), fibers::error);
        t.join();
        BOOST_CHECK_THROW(fibers::task().start(), fibers::error); // empty handle
    });
}

BOOST_AUTO_TEST_CASE(names_count_per_hub) {
    on_new_thread([] {
        fibers::task a([] {});
        fibers::task b([] {}, fibers::task_options{"worker"});
        fibers::task c([] {});
        BOOST_TEST(a.name() == "Fiber-1");
        BOOST_TEST(b.name() == "worker");
        BOOST_TEST(c.name() == "Fiber-3");
        std::ostringstream printed;
        printed << static_cast<fibers::fiber const&>(c);
        BOOST_TEST(printed.str() == "Fiber-3");
    });
    on_new_thread([] { BOOST_TEST(fibers::task([] {}).name() == "Fiber-1"); }); // a new hub counts anew
}

BOOST_AUTO_TEST_CASE(a_task_is_a_child_of_its_hub) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        fibers::fiber seen;
        fibers::task t = fibers::spawn([&] { seen = fibers::current_fiber(); });
        t.join();
        BOOST_TEST(t.parent() == h.as_fiber());
        BOOST_TEST(seen == t);
    });
}

BOOST_AUTO_TEST_CASE(a_started_task_lives_without_handles) {
    on_new_thread([] {
        int steps = 0;
        fibers::spawn([&] {
            for (int i = 0; i < 3; ++i) {
                ++steps;
                fibers::sleep(1ms);
            }
        }); // the handle is dropped at once
        auto const give_up = std::chrono::steady_clock::now() + 10s;
        while (steps < 3 && std::chrono::steady_clock::now() < give_up)
            fibers::sleep(1ms);
        BOOST_TEST(steps == 3);
    });
}

BOOST_AUTO_TEST_CASE(a_task_with_only_its_own_handles_runs_to_its_end) {
    // Handles on a task's own stack hold nothing, as for any fiber; its hub
    // keeps it from its start until its end all the same. One copied off
    // its stack keeps the ended task's record.
    on_new_thread([] {
        int steps = 0;
        std::unique_ptr<fibers::fiber> kept;
        fibers::spawn([&] {
            fibers::fiber me = fibers::current();
            fibers::fiber again = me;
            for (int i = 0; i < 3; ++i) {
                ++steps;
                fibers::sleep(0s);
            }
            kept = std::make_unique<fibers::fiber>(std::move(me));
            fibers::sleep(0s);
            ++steps;
        }); // the handle is dropped at once
        for (int i = 0; i < 100 && steps < 4; ++i)
            fibers::sleep(0s);
        BOOST_TEST(steps == 4);
        BOOST_REQUIRE(kept);
        BOOST_TEST(!kept->is_alive());
        BOOST_TEST(kept->thread_id() == std::this_thread::get_id());
    });
}

BOOST_AUTO_TEST_CASE(thousand_tasks_spawned_and_joined) {
    on_new_thread([] {
        int done = 0;
        std::vector<fibers::task> tasks;
        for (int i = 0; i < 1000; ++i)
            tasks.push_back(fibers::spawn([&] {
                fibers::sleep(0s);
                ++done;
            }));
        for (auto& t : tasks)
            t.join();
        BOOST_TEST(done == 1000);
    });
}

BOOST_AUTO_TEST_CASE(spawn_nested_thousand_deep) {
    on_new_thread([] {
        int deepest = 0;
        std::function<void(int)> nest = [&](int depth) {
            deepest = std::max(deepest, depth);
            if (depth < 1000)
                fibers::spawn([&nest, depth] { nest(depth + 1); }).join();
        };
        fibers::spawn([&] { nest(1); }).join();
        BOOST_TEST(deepest == 1000);
    });
}

BOOST_AUTO_TEST_CASE(options_select_the_hub_and_stack) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        std::size_t const standard = fibers::arena_stack::default_size();
        std::size_t const big = 4 * standard;
        std::size_t default_got = 0, big_got = 0;
        fibers::spawn([&] { default_got = this_fiber_stack_size(); }).join();
        BOOST_TEST(default_got == standard);
        // A larger stack than the default holds a frame the default would
        // not; filled only once the stack is known to be large enough.
        bool deep_frame_fits = false;
        fibers::spawn(
            [&] {
                big_got = this_fiber_stack_size();
                if (big_got >= big)
                    deep_frame_fits = fill_stack(2 * standard);
            },
            fibers::task_options{"big", &h, big})
            .join();
        BOOST_TEST(big_got == big);
        BOOST_TEST(deep_frame_fits);
        // Another thread's hub, alive while it is used here.
        std::promise<fibers::hub*> made;
        std::promise<void> checked;
        std::thread owner([&] {
            made.set_value(&fibers::get_hub());
            checked.get_future().wait();
        });
        fibers::hub* other = made.get_future().get();
        BOOST_CHECK_THROW(fibers::task([] {}, fibers::task_options{"", other, 0}), std::invalid_argument);
        checked.set_value();
        owner.join();
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(switching)

BOOST_AUTO_TEST_CASE(only_the_hub_may_switch_to_a_task) {
    on_new_thread([] {
        fibers::task t = fibers::spawn([] { fibers::sleep(1h); });
        fibers::sleep(1ms);
        BOOST_CHECK_THROW(t.switch_to(), fibers::error);
        BOOST_CHECK_THROW(t.throw_to(std::make_exception_ptr(std::runtime_error("x"))), fibers::error);
        fibers::fiber as_fiber = t;
        BOOST_CHECK_THROW(as_fiber.switch_to(), fibers::error);
        BOOST_CHECK_THROW(as_fiber.throw_to(std::runtime_error("x")), fibers::error);
        bool from_task = false;
        fibers::spawn([&] {
            try {
                fibers::fiber(t).switch_to();
            } catch (fibers::error const&) {
                from_task = true;
            }
        }).join();
        BOOST_TEST(from_task);
        t.cancel();
        t.join();
    });
}

BOOST_AUTO_TEST_CASE(sleep_zero_alternates) {
    on_new_thread([] {
        std::string order;
        auto body = [&](char c) {
            return [&order, c] {
                for (int i = 0; i < 3; ++i) {
                    order += c;
                    fibers::sleep(0s);
                }
            };
        };
        fibers::task a = fibers::spawn(body('a'));
        fibers::task b = fibers::spawn(body('b'));
        a.join();
        b.join();
        BOOST_TEST(order == "ababab");
    });
}

BOOST_AUTO_TEST_CASE(sleep_zero_lets_queued_work_run_first) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        std::vector<std::string> order;
        h.run_callback([&] { order.push_back("callback"); });
        fibers::task t = fibers::spawn([&] { order.push_back("task"); });
        fibers::sleep(0s);
        order.push_back("back");
        BOOST_TEST(order == (std::vector<std::string>{"callback", "task", "back"}));
    });
}

// In the order of their deadlines, which each sleeper notes as it starts:
// on a loaded machine a later start can put a shorter sleep's deadline
// after a longer one's.
BOOST_AUTO_TEST_CASE(sleepers_wake_in_deadline_order) {
    on_new_thread([] {
        using clock = std::chrono::steady_clock;
        std::vector<std::pair<clock::time_point, int>> deadlines;
        std::vector<int> woke;
        std::vector<fibers::task> tasks;
        for (int ms : {30, 10, 20, 40, 5})
            tasks.push_back(fibers::spawn([&, ms] {
                deadlines.emplace_back(clock::now() + std::chrono::milliseconds(ms), ms);
                fibers::sleep(std::chrono::milliseconds(ms));
                woke.push_back(ms);
            }));
        for (auto& t : tasks)
            t.join();
        std::sort(deadlines.begin(), deadlines.end());
        std::vector<int> by_deadline;
        for (auto const& d : deadlines)
            by_deadline.push_back(d.second);
        BOOST_TEST(woke == by_deadline);
        std::sort(woke.begin(), woke.end());
        BOOST_TEST(woke == (std::vector<int>{5, 10, 20, 30, 40}));
    });
}

BOOST_AUTO_TEST_CASE(sleep_lasts_at_least_its_duration) {
    on_new_thread([] {
        auto start = std::chrono::steady_clock::now();
        fibers::sleep(20ms);
        BOOST_TEST((std::chrono::steady_clock::now() - start >= 20ms));
    });
}

// Sleepers wait in their hub's set, on their own stacks: cancels from the
// hub's thread and from another, landing before, at and after deadlines,
// must each end a sleep early or find it over, never lose a fiber or leave
// the set pointing into a stack that is gone.
BOOST_AUTO_TEST_CASE(cancels_race_the_deadlines_of_sleeps) {
    on_new_thread([] {
        using clock = std::chrono::steady_clock;
        std::minstd_rand random(20261127);
        std::size_t slept = 0, cut_short = 0, too_short = 0, spawned = 0;
        for (int round = 0; round < 100; ++round) {
            std::vector<fibers::task> tasks;
            for (int i = 0; i < 20; ++i, ++spawned) {
                auto const d = std::chrono::microseconds(random() % 3000);
                tasks.push_back(fibers::spawn([&, d] {
                    auto const start = clock::now();
                    try {
                        fibers::sleep(d);
                    } catch (fibers::cancelled const&) {
                        ++cut_short;
                        throw;
                    }
                    too_short += clock::now() - start < d ? 1 : 0;
                    ++slept;
                    fibers::sleep(1h); // until cancelled
                }));
            }
            // Half cancelled from another thread, through the hub's mailbox.
            std::vector<fibers::task> theirs(tasks.begin(), tasks.begin() + 10);
            auto const their_delay = std::chrono::microseconds(random() % 3000);
            std::thread canceller([&theirs, their_delay] {
                std::this_thread::sleep_for(their_delay);
                for (auto& t : theirs)
                    t.cancel();
                theirs.clear();
            });
            fibers::sleep(std::chrono::microseconds(random() % 3000));
            for (std::size_t i = 10; i < tasks.size(); ++i)
                tasks[i].cancel();
            for (auto& t : tasks)
                t.join(); // each ends: before, at or after its deadline
            canceller.join();
        }
        BOOST_TEST_MESSAGE(slept << " sleeps ended at their deadline, " << cut_short << " cut short");
        BOOST_TEST(slept + cut_short == spawned);
        BOOST_TEST(too_short == 0u);
        BOOST_TEST(slept > 0u);
        BOOST_TEST(cut_short > 0u);
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(ending)

BOOST_AUTO_TEST_CASE(cancel_raises_cancelled_where_it_waits) {
    on_new_thread([] {
        captured_log log;
        std::string seen;
        fibers::task t = fibers::spawn([&] {
            try {
                fibers::sleep(1h);
            } catch (fibers::cancelled const& e) {
                seen = e.what();
                throw;
            }
        });
        fibers::sleep(1ms);
        t.cancel("shutting down");
        t.join();
        BOOST_TEST(seen == "shutting down");
        BOOST_TEST(!t.alive());
        BOOST_TEST(log.size() == 0u); // a cancelled task ends quietly
    });
}

BOOST_AUTO_TEST_CASE(cancel_default_message) {
    on_new_thread([] {
        std::string seen;
        fibers::task t = fibers::spawn([&] {
            try {
                fibers::sleep(1h);
            } catch (fibers::cancelled const& e) {
                seen = e.what();
            }
        });
        fibers::sleep(1ms);
        t.cancel();
        t.join();
        BOOST_TEST(seen == "cancelled by task::cancel()");
    });
}

BOOST_AUTO_TEST_CASE(cancel_before_the_first_run) {
    on_new_thread([] {
        bool body_ran = false, done = false;
        fibers::task t([&] { body_ran = true; });
        t.add_done_callback([&] { done = true; });
        t.cancel();
        t.join(); // the cancellation started it, and ended it before its target
        BOOST_TEST(!body_ran);
        BOOST_TEST(done);
        BOOST_TEST(!t.alive());
    });
}

BOOST_AUTO_TEST_CASE(cancel_of_an_ended_task_does_nothing) {
    on_new_thread([] {
        fibers::task t = fibers::spawn([] {});
        t.join();
        t.cancel();
        fibers::sleep(0s);
        BOOST_TEST(!t.alive());
    });
}

BOOST_AUTO_TEST_CASE(cancel_from_another_thread) {
    on_new_thread([] {
        captured_log log;
        std::string seen;
        bool woke_normally = false;
        fibers::task t = fibers::spawn([&] {
            try {
                fibers::sleep(1h);
                woke_normally = true;
            } catch (fibers::cancelled const& e) {
                seen = e.what();
                throw;
            }
        });
        fibers::sleep(1ms); // the task waits in its sleep now
        std::thread([t]() mutable { t.cancel("from afar"); }).join();
        BOOST_CHECK_NO_THROW(t.join(10s));
        BOOST_TEST(seen == "from afar"); // raised where it waits, with the message
        BOOST_TEST(!woke_normally);
        BOOST_TEST(!t.alive());
        BOOST_TEST(log.size() == 0u);
    });
}

BOOST_AUTO_TEST_CASE(cancel_from_another_thread_races_the_exit_of_the_hubs_thread) {
    // A cancel from afar goes through the hub's mailbox, which the task's
    // parent, the hub's fiber, keeps alive, and the task itself once the
    // thread's exit unwinds it under another parent. A cancel that still
    // saw the task alive must find the mailbox there, whichever comes
    // first: under AddressSanitizer a freed one would be reported.
    for (int round = 0; round < 200; ++round) {
        std::atomic<bool> waiting{false};
        fibers::task t;
        std::thread owner([&] {
            t = fibers::spawn([] { fibers::sleep(1h); });
            fibers::sleep(0s); // the task waits in its sleep now
            waiting.store(true, std::memory_order_release);
            if (round % 4 == 0)
                fibers::sleep(100us); // sometimes the cancel comes first
        });
        while (!waiting.load(std::memory_order_acquire))
            std::this_thread::yield();
        while (t.alive())
            t.cancel("from afar");
        owner.join();
        BOOST_TEST(!t.alive());
        t = fibers::task(); // the last handle, dropped after its thread ended
    }
}

BOOST_AUTO_TEST_CASE(an_escaping_exception_is_logged_with_the_name) {
    on_new_thread([] {
        captured_log log;
        fibers::task t = fibers::spawn([] { throw std::runtime_error("went wrong"); }, fibers::task_options{"reader"});
        t.join();
        BOOST_TEST(log.contains("reader"));
        BOOST_TEST(log.contains("went wrong"));
        BOOST_TEST(fibers::get_hub().is_alive()); // it never reaches the hub
        fibers::spawn([] {}).join();
    });
}

BOOST_AUTO_TEST_CASE(many_joiners) {
    on_new_thread([] {
        fibers::task worker = fibers::spawn([] { fibers::sleep(5ms); });
        int woken = 0;
        std::vector<fibers::task> joiners;
        for (int i = 0; i < 3; ++i)
            joiners.push_back(fibers::spawn([&] {
                worker.join();
                ++woken;
            }));
        worker.join(); // the root too
        for (auto& j : joiners)
            j.join();
        BOOST_TEST(woken == 3);
    });
}

BOOST_AUTO_TEST_CASE(join_with_timeout) {
    on_new_thread([] {
        fibers::task slow = fibers::spawn([] { fibers::sleep(1h); });
        BOOST_CHECK_THROW(slow.join(10ms), fibers::timeout);
        BOOST_TEST(slow.alive());
        fibers::task quick = fibers::spawn([] { fibers::sleep(1ms); });
        BOOST_CHECK_NO_THROW(quick.join(10s));
        BOOST_TEST(!quick.alive());
        slow.cancel();
        slow.join();
    });
}

// The joined task cancels its joiner and ends, in one go: the cancel is
// queued before the joiner's resumption. The join had completed, so it
// returns, and the cancel, with its message, comes at the next wait.
void check_a_join_that_came_before_the_cancel(bool timed) {
    on_new_thread([timed] {
        bool go = false;
        fibers::task joiner;
        fibers::task joined = fibers::spawn([&] {
            while (!go)
                fibers::sleep(1ms);
            joiner.cancel("from the joined task");
        });
        bool returned = false;
        std::string message, after;
        joiner = fibers::spawn([&] {
            if (timed)
                joined.join(10s);
            else
                joined.join();
            returned = true;
            try {
                fibers::sleep(10ms);
            } catch (fibers::cancelled const& e) {
                message = e.what();
            }
            after = what_a_sleep_does(10ms);
        });
        fibers::sleep(5ms); // the joiner waits
        go = true;
        joiner.join();
        BOOST_TEST(returned);
        BOOST_TEST(message == "from the joined task");
        BOOST_TEST(after == "slept");
    });
}

BOOST_AUTO_TEST_CASE(a_join_that_came_before_the_cancel_returns) { check_a_join_that_came_before_the_cancel(false); }

BOOST_AUTO_TEST_CASE(a_timed_join_that_came_before_the_cancel_returns) {
    check_a_join_that_came_before_the_cancel(true);
}

// Cancels that come while one waits to be delivered merge with it: the task
// is cancelled once, at its next wait.
BOOST_AUTO_TEST_CASE(cancels_that_wait_to_be_delivered_merge) {
    on_new_thread([] {
        bool go = false;
        fibers::task joiner;
        fibers::task joined = fibers::spawn([&] {
            while (!go)
                fibers::sleep(1ms);
            joiner.cancel("first");
        });
        int cancels = 0;
        joiner = fibers::spawn([&] {
            joined.join();
            joiner.cancel("second"); // its own cancel: delivered at its next wait too
            for (int i = 0; i < 3; ++i) {
                try {
                    fibers::sleep(5ms);
                } catch (fibers::cancelled const&) {
                    ++cancels;
                }
            }
        });
        fibers::sleep(5ms);
        go = true;
        joiner.join();
        BOOST_TEST(cancels == 1);
    });
}

BOOST_AUTO_TEST_CASE(join_misuse) {
    on_new_thread([] {
        fibers::task self;
        bool threw = false;
        self = fibers::spawn([&] {
            try {
                self.join();
            } catch (fibers::error const&) {
                threw = true;
            }
        });
        self.join();
        BOOST_TEST(threw);

        fibers::task waiting = fibers::spawn([] { fibers::sleep(1h); });
        std::atomic<bool> foreign{false};
        std::thread([&] {
            try {
                waiting.join();
            } catch (fibers::error const&) {
                foreign = true;
            }
        }).join();
        BOOST_TEST(foreign.load());
        waiting.cancel();
        waiting.join();
    });
}

BOOST_AUTO_TEST_CASE(done_callbacks) {
    on_new_thread([] {
        std::vector<int> order;
        fibers::task t([&] { order.push_back(0); });
        t.add_done_callback([&] { order.push_back(1); });
        std::size_t removed = t.add_done_callback([&] { order.push_back(99); });
        t.add_done_callback([&] { order.push_back(2); });
        t.remove_done_callback(removed);
        t.start();
        t.join();
        BOOST_TEST(order == (std::vector<int>{0, 1, 2}));
        t.add_done_callback([&] { order.push_back(3); }); // already ended: at once
        BOOST_TEST(order.back() == 3);
    });
}

BOOST_AUTO_TEST_CASE(a_throwing_done_callback_is_logged) {
    on_new_thread([] {
        captured_log log;
        bool next = false;
        fibers::task t([] {});
        t.add_done_callback([] { throw std::runtime_error("callback broke"); });
        t.add_done_callback([&] { next = true; });
        t.start();
        t.join();
        BOOST_TEST(log.contains("callback broke"));
        BOOST_TEST(next);
    });
}

BOOST_AUTO_TEST_SUITE_END()

// Durations at their limits: for ever, never "now" by overflow.
BOOST_AUTO_TEST_SUITE(durations)

BOOST_AUTO_TEST_CASE(sleep_too_long_for_the_clock_sleeps_for_ever) {
    on_new_thread([] {
        std::vector<fibers::task> sleepers;
        std::vector<std::string> woke;
        fibers_test::for_each_duration(fibers_test::durations_too_long_for_the_clock(), [&](auto d) {
            sleepers.push_back(fibers::spawn([&woke, d] {
                fibers::sleep(d);
                woke.push_back(std::to_string(d.count()));
            }));
        });
        fibers::sleep(30ms);
        BOOST_TEST(woke.empty());
        for (auto& t : sleepers) {
            BOOST_TEST(t.alive());
            t.cancel();
            t.join();
        }
        BOOST_TEST(woke.empty());
    });
}

BOOST_AUTO_TEST_CASE(sleep_of_a_passed_duration_gives_a_turn) {
    on_new_thread([] {
        fibers_test::for_each_duration(fibers_test::durations_already_passed(), [](auto d) {
            bool other_ran = false;
            fibers::spawn([&] { other_ran = true; });
            fibers::sleep(d); // behind the task: it ran
            BOOST_TEST(other_ran);
        });
    });
}

BOOST_AUTO_TEST_CASE(join_too_long_for_the_clock_waits_for_the_end) {
    on_new_thread([] {
        fibers_test::for_each_duration(fibers_test::durations_too_long_for_the_clock(), [](auto d) {
            fibers::task t = fibers::spawn([] { fibers::sleep(10ms); });
            BOOST_CHECK_NO_THROW(t.join(d));
            BOOST_TEST(!t.alive());
        });
    });
}

BOOST_AUTO_TEST_CASE(join_of_a_passed_duration_times_out_at_once) {
    on_new_thread([] {
        fibers::task sleeper = fibers::spawn([] { fibers::sleep(1h); });
        fibers::task ended = fibers::spawn([] {});
        ended.join();
        fibers_test::for_each_duration(fibers_test::durations_already_passed(), [&](auto d) {
            BOOST_CHECK_THROW(sleeper.join(d), fibers::timeout);
            BOOST_CHECK_NO_THROW(ended.join(d));
        });
        BOOST_TEST(sleeper.alive());
        sleeper.cancel();
        sleeper.join();
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(misuse)

// Only the hub may be a task's parent: its end returns there.
BOOST_AUTO_TEST_CASE(a_task_takes_no_other_parent_than_its_hub) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        fibers::task t = fibers::spawn([] { fibers::sleep(1ms); });
        fibers::fiber plain([] {});
        BOOST_CHECK_THROW(fibers::fiber(t).set_parent(fibers::current()), fibers::error); // the root
        BOOST_CHECK_THROW(fibers::fiber(t).set_parent(plain), fibers::error);
        BOOST_CHECK_NO_THROW(fibers::fiber(t).set_parent(h.as_fiber()));
        BOOST_TEST((fibers::fiber(t).parent() == h.as_fiber()));
        t.join();
        BOOST_TEST(!t.alive());
    });
}

// Done callbacks are the task's thread's business: from another thread,
// fibers::error, and nothing changes.
BOOST_AUTO_TEST_CASE(done_callbacks_only_from_the_task_thread) {
    on_new_thread([] {
        int ran = 0;
        fibers::task t([&] {});
        std::size_t const mine = t.add_done_callback([&] { ++ran; });
        std::atomic<int> refused{0};
        std::thread([&, t]() mutable {
            try {
                t.add_done_callback([&] { ran += 100; });
            } catch (fibers::error const&) {
                ++refused;
            }
            try {
                t.remove_done_callback(mine);
            } catch (fibers::error const&) {
                ++refused;
            }
        }).join();
        BOOST_TEST(refused == 2);
        t.start();
        t.join();
        BOOST_TEST(ran == 1);
        std::thread([&, t]() mutable { // ended: still refused, not run there
            try {
                t.add_done_callback([&] { ran += 100; });
            } catch (fibers::error const&) {
                ++refused;
            }
        }).join();
        BOOST_TEST(refused == 3);
        BOOST_TEST(ran == 1);
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(running_task)

BOOST_AUTO_TEST_CASE(its_name) {
    on_new_thread([] {
        std::string named, numbered;
        bool same = false;
        fibers::task reader;
        reader = fibers::spawn(
            [&] {
                named = fibers::current_task().name();
                same = fibers::current_task() == reader;
            },
            fibers::task_options{"reader"});
        fibers::task other = fibers::spawn([&] { numbered = fibers::current_task().name(); });
        reader.join();
        other.join();
        BOOST_TEST(named == "reader");
        BOOST_TEST(numbered == other.name());
        BOOST_TEST(same);
    });
}

BOOST_AUTO_TEST_CASE(cancels_itself) {
    on_new_thread([] {
        captured_log log;
        std::string seen;
        bool went_on = false;
        fibers::task t = fibers::spawn([&] {
            fibers::current_task().cancel("by itself");
            try {
                fibers::sleep(0s); // where the cancellation is raised
            } catch (fibers::cancelled const& e) {
                seen = e.what();
                throw;
            }
            went_on = true;
        });
        t.join();
        BOOST_TEST(seen == "by itself");
        BOOST_TEST(!went_on);
        BOOST_TEST(!t.alive());
        BOOST_TEST(log.size() == 0u);
    });
}

BOOST_AUTO_TEST_CASE(joined_through_the_handle_it_published) {
    on_new_thread([] {
        fibers::task published;
        bool finished = false;
        bool joiner_saw_the_end = false;
        fibers::spawn([&] {
            published = fibers::current_task();
            for (int i = 0; i < 3; ++i)
                fibers::sleep(0s);
            finished = true;
        });
        fibers::task joiner = fibers::spawn([&] {
            while (!published)
                fibers::sleep(0s);
            published.join();
            joiner_saw_the_end = finished;
        });
        joiner.join(10s);
        BOOST_TEST(joiner_saw_the_end);
        BOOST_TEST(!published.alive());
    });
}

BOOST_AUTO_TEST_CASE(empty_outside_a_task) {
    on_new_thread([] {
        BOOST_TEST(!fibers::current_task()); // the root
        bool in_callback = true, callback_ran = false;
        fibers::get_hub().run_callback([&] {
            in_callback = static_cast<bool>(fibers::current_task());
            callback_ran = true;
        });
        while (!callback_ran)
            fibers::sleep(0s);
        BOOST_TEST(!in_callback); // the hub fiber
        bool in_plain = true;
        fibers::fiber([&] { in_plain = static_cast<bool>(fibers::current_task()); }).switch_to();
        BOOST_TEST(!in_plain);
        bool in_plain_child_of_a_task = true, in_task = false;
        fibers::spawn([&] {
            in_task = static_cast<bool>(fibers::current_task());
            fibers::fiber([&] { in_plain_child_of_a_task = static_cast<bool>(fibers::current_task()); })
                .switch_to();
        }).join();
        BOOST_TEST(in_task);
        BOOST_TEST(!in_plain_child_of_a_task);
    });
    bool in_bare_thread = true;
    std::thread([&] { in_bare_thread = static_cast<bool>(fibers::current_task()); }).join();
    BOOST_TEST(!in_bare_thread);
}

BOOST_AUTO_TEST_CASE(its_own_handle_on_its_stack_and_copied_off_it) {
    // Kept by its hub until its end whatever lies on its stack; a copy on
    // the heap keeps the ended task's record.
    on_new_thread([] {
        std::unique_ptr<fibers::task> kept;
        fibers::spawn(
            [&] {
                fibers::task me = fibers::current_task();
                kept = std::make_unique<fibers::task>(me);
                fibers::sleep(0s);
            },
            fibers::task_options{"kept"});
        for (int i = 0; i < 100 && (!kept || kept->alive()); ++i)
            fibers::sleep(0s);
        BOOST_REQUIRE(kept);
        BOOST_TEST(!kept->alive());
        BOOST_TEST(kept->name() == "kept");
        kept->join(); // at once
        kept->cancel(); // nothing
    });
}

BOOST_AUTO_TEST_SUITE_END()
