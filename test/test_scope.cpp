// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#define BOOST_TEST_MODULE scope
#include <boost/test/unit_test.hpp>

#include <fibers/futures.hpp>
#include <fibers/hub.hpp>
#include <fibers/scope.hpp>
#include <fibers/switch_back.hpp>
#include <fibers/switchpoint.hpp>
#include <fibers/sync.hpp>
#include <fibers/task.hpp>
#include <fibers/yield.hpp>

#include "cancel_support.hpp"
#include "hub_support.hpp"
#include "socket_support.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <future>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <signal.h>
#include <unistd.h>

using namespace std::chrono_literals;
using fibers_test::captured_log;
using fibers_test::connected_pair;
using fibers_test::on_new_thread;
using fibers_test::what_a_sleep_does;
using clock_type = std::chrono::steady_clock;

namespace {

// Runs `fn` in a task of a fresh thread's hub and waits for it there.
template <class Fn>
void in_task(Fn fn) {
    on_new_thread([&] {
        std::exception_ptr failure;
        fibers::spawn([&] {
            try {
                fn();
            } catch (...) {
                failure = std::current_exception();
            }
        }).join();
        if (failure)
            std::rethrow_exception(failure);
    });
}

} // namespace

BOOST_AUTO_TEST_SUITE(cancel_scopes)

BOOST_AUTO_TEST_CASE(a_deadline_interrupts_a_sleep_with_timeout) {
    in_task([] {
        // Read the clock first: the deadline counts from the scope's construction.
        auto const start = clock_type::now();
        fibers::cancel_scope scope(30ms);
        BOOST_TEST(!scope.cancel_called());
        BOOST_CHECK_THROW(fibers::sleep(30s), fibers::timeout);
        BOOST_TEST((clock_type::now() - start >= 30ms));
        BOOST_TEST((clock_type::now() - start < 25s));
        BOOST_TEST(scope.timed_out());
        BOOST_TEST(scope.cancel_called());
    });
}

BOOST_AUTO_TEST_CASE(a_scope_that_does_not_fire_changes_nothing) {
    in_task([] {
        {
            fibers::cancel_scope scope(10s);
            BOOST_TEST(what_a_sleep_does(20ms) == "slept");
            BOOST_TEST(!scope.cancel_called());
            BOOST_TEST(!scope.timed_out());
        }
        fibers::cancel_scope forever(std::chrono::hours::max());
        BOOST_TEST(what_a_sleep_does(20ms) == "slept");
        BOOST_TEST(!forever.cancel_called());
    });
}

BOOST_AUTO_TEST_CASE(cancel_throws_cancelled_where_the_fiber_waits) {
    in_task([] {
        fibers::event never;
        fibers::cancel_scope* shared = nullptr;
        fibers::task canceller = fibers::spawn([&] {
            fibers::sleep(20ms);
            shared->cancel();
        });
        {
            fibers::cancel_scope scope;
            shared = &scope;
            BOOST_CHECK_THROW(never.wait(), fibers::cancelled);
            BOOST_TEST(scope.cancel_called());
            BOOST_TEST(!scope.timed_out());
        }
        canceller.join();
    });
}

BOOST_AUTO_TEST_CASE(a_wait_after_the_scope_fired_throws_at_once) {
    in_task([] {
        fibers::cancel_scope scope;
        scope.cancel();
        auto const start = clock_type::now();
        BOOST_TEST(what_a_sleep_does(30s) == "threw cancelled");
        BOOST_TEST((clock_type::now() - start < 25s));
    });
    in_task([] {
        fibers::cancel_scope scope(0s); // passed already
        BOOST_TEST(scope.timed_out());
        BOOST_TEST(what_a_sleep_does(30s) == "threw timeout");
        BOOST_TEST(what_a_sleep_does(0ms) == "threw timeout"); // sleep(0s) waits too
    });
}

BOOST_AUTO_TEST_CASE(every_wait_inside_a_fired_scope_throws_and_none_after_it) {
    in_task([] {
        fibers::event never;
        fibers::mutex m;
        fibers::task holder = fibers::spawn([&] {
            std::lock_guard<fibers::mutex> g(m);
            fibers::sleep(30s);
        });
        fibers::sleep(0s);
        {
            fibers::cancel_scope scope(20ms);
            BOOST_TEST(what_a_sleep_does(30s) == "threw timeout");
            BOOST_TEST(what_a_sleep_does(30s) == "threw timeout");
            BOOST_CHECK_THROW(never.wait(), fibers::timeout);
            BOOST_CHECK_THROW(never.wait(10s), fibers::timeout);
            BOOST_CHECK_THROW(holder.join(), fibers::timeout);
            BOOST_CHECK_THROW(m.lock(), fibers::timeout);
            BOOST_TEST(!m.acquire(false)); // taken by the holder, not by the abandoned wait
            BOOST_CHECK_THROW(fibers::get_hub().switch_to(), fibers::timeout);
            fibers::switch_back<> sb;
            BOOST_CHECK_THROW(sb.wait(), fibers::timeout);
        }
        // Gone with the scope: nothing stays queued for the next wait.
        BOOST_TEST(what_a_sleep_does(20ms) == "slept");
        BOOST_TEST(what_a_sleep_does(0ms) == "slept");
        holder.cancel();
        holder.join();
        BOOST_TEST(m.acquire(false));
        m.release();
    });
}

BOOST_AUTO_TEST_CASE(future_results_and_pools_are_interrupted) {
    in_task([] {
        fibers::thread_pool pool(1);
        std::promise<void> release;
        auto gate = release.get_future().share();
        fibers::future<int> f = pool.submit([gate] {
            gate.wait();
            return 7;
        });
        {
            fibers::cancel_scope scope(20ms);
            BOOST_CHECK_THROW(f.result(), fibers::timeout);
        }
        release.set_value();
        BOOST_TEST(f.result() == 7);
        pool.close();
        pool.join();
    });
}

BOOST_AUTO_TEST_CASE(a_socket_read_under_a_scope_loses_nothing) {
    in_task([] {
        auto& io = fibers::get_hub().loop();
        auto [client, server] = connected_pair(io);
        char buffer[16] = {};
        {
            fibers::cancel_scope scope(30ms);
            BOOST_CHECK_THROW(server.async_read_some(boost::asio::buffer(buffer), fibers::yield), fibers::timeout);
            BOOST_TEST(scope.timed_out());
        }
        // Written afterwards, the data reaches the next read: the cancelled
        // one consumed nothing, and its handler had run before it threw.
        boost::asio::write(client, boost::asio::buffer("hello", 5));
        std::size_t n = server.async_read_some(boost::asio::buffer(buffer), fibers::yield);
        BOOST_TEST(std::string(buffer, n) == "hello");
    });
}

BOOST_AUTO_TEST_CASE(a_wait_that_completed_returns_and_the_next_one_throws) {
    in_task([] {
        fibers::queue<int> q;
        fibers::cancel_scope* shared = nullptr;
        fibers::task other = fibers::spawn([&] {
            fibers::sleep(10ms);
            // The scope's interruption is queued first, the item handed over
            // after: the get had completed when the interruption reached it.
            shared->cancel();
            q.put(42);
        });
        {
            fibers::cancel_scope scope;
            shared = &scope;
            BOOST_TEST(q.get() == 42); // the item is not lost
            BOOST_TEST(q.qsize() == 0u);
            BOOST_TEST(what_a_sleep_does(30s) == "threw cancelled");
        }
        other.join();
    });
}

BOOST_AUTO_TEST_CASE(an_interruption_let_go_by_a_completed_wait_dies_with_its_scope) {
    in_task([] {
        fibers::queue<int> q;
        fibers::cancel_scope* shared = nullptr;
        fibers::task other = fibers::spawn([&] {
            fibers::sleep(10ms);
            shared->cancel();
            q.put(42);
        });
        {
            fibers::cancel_scope scope;
            shared = &scope;
            BOOST_TEST(q.get() == 42);
        } // left before any other wait
        BOOST_TEST(what_a_sleep_does(20ms) == "slept");
        other.join();
    });
}

// The scope fired as the get completed: it comes before the next
// operation starts, however many would complete at once.
BOOST_AUTO_TEST_CASE(a_let_go_interruption_comes_before_the_next_operation_starts) {
    in_task([] {
        auto& io = fibers::get_hub().loop();
        fibers::queue<int> q;
        fibers::cancel_scope* shared = nullptr;
        fibers::task other = fibers::spawn([&] {
            fibers::sleep(10ms);
            shared->cancel();
            q.put(42);
        });
        std::string what;
        int starts = 0;
        {
            fibers::cancel_scope scope;
            shared = &scope;
            BOOST_TEST(q.get() == 42);
            try {
                for (int i = 0; i < 100; ++i)
                    fibers_test::async_at_once(io, starts, fibers::yield);
                what = "100 operations";
            } catch (fibers::cancelled const&) {
                what = "threw cancelled";
            }
        }
        BOOST_TEST(what == "threw cancelled");
        BOOST_TEST(starts == 0);
        other.join();
    });
}

BOOST_AUTO_TEST_CASE(nested_scopes_tell_their_own_timeout) {
    in_task([] {
        fibers::cancel_scope outer(30ms);
        bool inner_timed_out = true;
        try {
            fibers::cancel_scope inner(30s);
            try {
                fibers::sleep(60s);
            } catch (fibers::timeout const&) {
                inner_timed_out = inner.timed_out();
                BOOST_TEST(!inner.cancel_called());
                throw;
            }
        } catch (fibers::timeout const&) {
            BOOST_TEST(outer.timed_out());
        }
        BOOST_TEST(!inner_timed_out);
    });
    in_task([] {
        // The earliest deadline wins, and an inner one that fired leaves the
        // outer scope as it was.
        fibers::cancel_scope outer(30s);
        {
            fibers::cancel_scope inner(20ms);
            BOOST_TEST(what_a_sleep_does(60s) == "threw timeout");
            BOOST_TEST(inner.timed_out());
        }
        BOOST_TEST(!outer.cancel_called());
        BOOST_TEST(what_a_sleep_does(20ms) == "slept");
    });
    in_task([] {
        fibers::cancel_scope outer;
        fibers::cancel_scope inner;
        outer.cancel();
        BOOST_TEST(what_a_sleep_does(30s) == "threw cancelled");
        BOOST_TEST(!inner.cancel_called());
    });
}

BOOST_AUTO_TEST_CASE(cancel_from_another_thread) {
    in_task([] {
        fibers::event never;
        fibers::cancel_scope scope;
        std::thread t([&] {
            std::this_thread::sleep_for(20ms);
            scope.cancel();
        });
        BOOST_CHECK_THROW(never.wait(), fibers::cancelled);
        t.join();
        BOOST_TEST(scope.cancel_called());
    });
}

BOOST_AUTO_TEST_CASE(task_cancel_inside_a_scope_still_throws_cancelled) {
    in_task([] {
        fibers::task victim = fibers::spawn([] {
            fibers::cancel_scope scope(30s);
            try {
                fibers::sleep(60s);
            } catch (fibers::cancelled const& e) {
                BOOST_TEST(std::string(e.what()) == "enough");
                BOOST_TEST(!scope.cancel_called());
                throw;
            }
        });
        fibers::sleep(10ms);
        victim.cancel("enough");
        victim.join();
    });
}

BOOST_AUTO_TEST_CASE(a_scope_in_the_root_fiber_and_sigint) {
    on_new_thread([] {
        {
            fibers::cancel_scope scope(20ms);
            BOOST_TEST(what_a_sleep_does(30s) == "threw timeout");
        }
        fibers::cancel_scope scope(30s);
        std::thread([] { ::kill(::getpid(), SIGINT); }).join();
        BOOST_CHECK_THROW(fibers::sleep(30s), fibers::keyboard_interrupt);
        BOOST_TEST(!scope.cancel_called());
    });
}

BOOST_AUTO_TEST_CASE(not_in_the_hub_fiber) {
    on_new_thread([] {
        std::string what;
        fibers::get_hub().run_callback([&] {
            try {
                fibers::cancel_scope scope;
                what = "made";
            } catch (fibers::error const&) {
                what = "refused";
            }
        });
        fibers::sleep(0s);
        fibers::sleep(0s);
        BOOST_TEST(what == "refused");
        fibers::get_hub().close();
        BOOST_CHECK_THROW(fibers::cancel_scope(), fibers::error); // no hub to deliver it
    });
}

BOOST_AUTO_TEST_CASE(cancel_races_completions_from_other_threads) {
    // A thread cancels at a random moment while the fiber waits on an event
    // that a third thread sets, in a loop: every round ends with either a
    // result or cancelled, and nothing reaches the wait after the scope.
    in_task([] {
        std::minstd_rand random(12345);
        int cancelled = 0, completed = 0;
        for (int round = 0; round < 200; ++round) {
            fibers::event ready;
            unsigned const cancel_after = random() % 200, set_after = random() % 200;
            {
                fibers::cancel_scope scope;
                std::thread canceller([&] {
                    std::this_thread::sleep_for(std::chrono::microseconds(cancel_after));
                    scope.cancel();
                });
                std::thread setter([&] {
                    std::this_thread::sleep_for(std::chrono::microseconds(set_after));
                    ready.set();
                });
                try {
                    BOOST_TEST(ready.wait());
                    ++completed;
                } catch (fibers::cancelled const&) {
                    ++cancelled;
                }
                canceller.join();
                setter.join();
            }
            BOOST_TEST_REQUIRE(what_a_sleep_does(0ms) == "slept");
        }
        BOOST_TEST(cancelled + completed == 200);
    });
}

BOOST_AUTO_TEST_CASE(deadlines_race_socket_reads) {
    // Scopes of random lengths around reads of a stream written in random
    // pieces: not one byte lost or repeated.
    in_task([] {
        auto& io = fibers::get_hub().loop();
        auto [client, server] = connected_pair(io);
        std::size_t const total = 200000;
        fibers::task writer = fibers::spawn([&, &client = client] {
            std::minstd_rand random(7);
            std::vector<unsigned char> chunk;
            for (std::size_t sent = 0; sent < total;) {
                std::size_t const n = std::min<std::size_t>(total - sent, 1 + random() % 3000);
                chunk.resize(n);
                for (std::size_t k = 0; k < n; ++k)
                    chunk[k] = static_cast<unsigned char>((sent + k) * 31);
                boost::asio::async_write(client, boost::asio::buffer(chunk), fibers::yield);
                sent += n;
                if (random() % 4 == 0)
                    fibers::sleep(std::chrono::microseconds(random() % 500));
            }
        });
        std::minstd_rand random(8);
        std::size_t received = 0;
        int timeouts = 0;
        unsigned char buffer[1000];
        while (received < total) {
            fibers::cancel_scope scope(std::chrono::microseconds(random() % 400));
            try {
                std::size_t const n = server.async_read_some(boost::asio::buffer(buffer), fibers::yield);
                for (std::size_t k = 0; k < n; ++k)
                    BOOST_TEST_REQUIRE(buffer[k] == static_cast<unsigned char>((received + k) * 31));
                received += n;
            } catch (fibers::timeout const&) {
                BOOST_TEST_REQUIRE(scope.timed_out());
                ++timeouts;
            }
        }
        BOOST_TEST(received == total);
        writer.join();
        BOOST_TEST_MESSAGE("timeouts: " << timeouts);
    });
}

BOOST_AUTO_TEST_CASE(scopes_at_hub_close_and_thread_exit) {
    // A task unwound by its hub's close inside a scope whose timer is
    // pending, another inside a scope that fired, and a scope of the root
    // that outlives the close and is cancelled after it.
    bool unwound = false;
    on_new_thread([&] {
        fibers::spawn([&] {
            struct flag {
                bool& b;
                ~flag() { b = true; }
            } f{unwound};
            fibers::cancel_scope scope(30s);
            fibers::sleep(60s);
        });
        fibers::spawn([] {
            fibers::cancel_scope scope;
            scope.cancel();
            for (;;) {
                try {
                    fibers::sleep(60s);
                } catch (fibers::cancelled const&) {
                }
            }
        });
        fibers::sleep(10ms);
        fibers::cancel_scope root_scope(30s);
        fibers::get_hub().close();
        root_scope.cancel();
        BOOST_TEST(root_scope.cancel_called());
    });
    BOOST_TEST(unwound);
    for (int round = 0; round < 50; ++round) {
        // The thread ends at a random moment while tasks wait in scopes
        // that fire at random moments, one cancelled from another thread.
        std::minstd_rand random(static_cast<unsigned>(round));
        on_new_thread([&] {
            fibers::cancel_scope* shared = nullptr;
            fibers::event started;
            fibers::spawn([&] {
                fibers::cancel_scope scope;
                shared = &scope;
                started.set();
                try {
                    fibers::sleep(60s);
                } catch (fibers::cancelled const&) {
                }
                fibers::sleep(60s);
            });
            for (int i = 0; i < 3; ++i)
                fibers::spawn([d = random() % 300] {
                    fibers::cancel_scope scope{std::chrono::microseconds(d)};
                    fibers::event never;
                    try {
                        never.wait();
                    } catch (fibers::timeout const&) {
                    }
                });
            started.wait();
            std::thread canceller([shared, d = random() % 300] {
                std::this_thread::sleep_for(std::chrono::microseconds(d));
                shared->cancel();
            });
            fibers::sleep(std::chrono::microseconds(random() % 300));
            canceller.join(); // the scope lives until the hub unwinds its task
        });
    }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(task_groups)

BOOST_AUTO_TEST_CASE(join_waits_for_every_child) {
    in_task([] {
        fibers::task_group g;
        std::vector<int> ended;
        for (int i = 3; i > 0; --i)
            g.spawn([&ended, i] {
                fibers::sleep(std::chrono::milliseconds(10 * i));
                ended.push_back(i);
            });
        fibers::task named = g.spawn([] {}, fibers::task_options{"child"});
        BOOST_TEST(named.name() == "child");
        BOOST_TEST(g.size() == 4u);
        g.join();
        BOOST_TEST(g.size() == 0u);
        // Every child ended; in which order is the machine's (a stalled
        // thread may start the shortest sleep last).
        std::sort(ended.begin(), ended.end());
        BOOST_TEST((ended == std::vector<int>{1, 2, 3}));
        g.join(); // nothing left: returns
    });
}

BOOST_AUTO_TEST_CASE(the_first_failure_cancels_the_others_and_join_rethrows_it) {
    in_task([] {
        captured_log log;
        auto& io = fibers::get_hub().loop();
        auto [client, server] = connected_pair(io);
        fibers::event never;
        std::vector<std::string> how;
        fibers::task_group g;
        g.spawn([&, &server = server] {
            char buffer[8];
            try {
                server.async_read_some(boost::asio::buffer(buffer), fibers::yield);
            } catch (fibers::cancelled const&) {
                how.push_back("read cancelled");
                throw;
            }
        });
        g.spawn([&] {
            try {
                never.wait();
            } catch (fibers::cancelled const&) {
                how.push_back("wait cancelled");
                throw;
            }
        });
        g.spawn([&] {
            try {
                fibers::sleep(30s);
            } catch (fibers::cancelled const&) {
                how.push_back("sleep cancelled");
                // A later failure: logged with the task's name, not rethrown.
                throw std::logic_error("second");
            }
        }, fibers::task_options{"late"});
        g.spawn([] {
            fibers::sleep(20ms);
            throw std::runtime_error("first");
        });
        auto const start = clock_type::now();
        try {
            g.join();
            BOOST_FAIL("join returned");
        } catch (std::runtime_error const& e) {
            BOOST_TEST(std::string(e.what()) == "first");
        }
        BOOST_TEST((clock_type::now() - start < 25s));
        BOOST_TEST(g.size() == 0u);
        BOOST_TEST(how.size() == 3u);
        BOOST_TEST(log.contains("late"));
        BOOST_TEST(log.contains("second"));
        BOOST_TEST(!log.contains("first"));
        BOOST_CHECK_THROW(g.spawn([] {}), fibers::error);
        BOOST_CHECK_NO_THROW(g.join()); // reported once
    });
}

BOOST_AUTO_TEST_CASE(children_that_end_by_cancelled_are_quiet) {
    in_task([] {
        captured_log log;
        fibers::task_group g;
        g.spawn([] { throw fibers::cancelled("quiet"); });
        g.spawn([] { fibers::sleep(20ms); });
        BOOST_CHECK_NO_THROW(g.join());
        BOOST_TEST(log.size() == 0u);
    });
}

BOOST_AUTO_TEST_CASE(join_with_a_timeout_leaves_the_children_running) {
    in_task([] {
        fibers::task_group g;
        bool done = false;
        g.spawn([&] {
            fibers::sleep(50ms);
            done = true;
        });
        BOOST_CHECK_THROW(g.join(10ms), fibers::timeout);
        BOOST_TEST(g.size() == 1u);
        BOOST_TEST(!done);
        g.join(10s);
        BOOST_TEST(done);
    });
}

BOOST_AUTO_TEST_CASE(cancel_cancels_every_child_and_refuses_spawns) {
    in_task([] {
        fibers::task_group g;
        int cancelled = 0;
        for (int i = 0; i < 3; ++i)
            g.spawn([&] {
                try {
                    fibers::sleep(30s);
                } catch (fibers::cancelled const& e) {
                    BOOST_TEST(std::string(e.what()) == "why");
                    ++cancelled;
                    throw;
                }
            });
        fibers::sleep(0s);
        g.cancel("why");
        BOOST_CHECK_THROW(g.spawn([] {}), fibers::error);
        g.join();
        BOOST_TEST(cancelled == 3);
    });
}

BOOST_AUTO_TEST_CASE(the_destructor_cancels_and_waits_and_never_throws) {
    in_task([] {
        captured_log log;
        std::vector<std::string> how;
        {
            fibers::task_group g;
            g.spawn([&] {
                try {
                    fibers::sleep(30s);
                } catch (fibers::cancelled const&) {
                    fibers::sleep(10ms); // a child may wait as it stops
                    how.push_back("stopped");
                    throw;
                }
            });
            g.spawn([&] {
                try {
                    fibers::sleep(30s);
                } catch (fibers::cancelled const&) {
                    // spawn while the destructor runs: refused
                    try {
                        g.spawn([] {});
                    } catch (fibers::error const&) {
                        how.push_back("refused");
                    }
                    throw;
                }
            });
            fibers::sleep(0s);
        }
        BOOST_TEST((how == std::vector<std::string>{"refused", "stopped"}));
        {
            fibers::task_group g;
            g.spawn([] { throw std::runtime_error("never joined"); });
            fibers::sleep(0s);
            fibers::sleep(0s);
        }
        BOOST_TEST(log.contains("never joined"));
    });
}

BOOST_AUTO_TEST_CASE(an_owner_cancelled_in_join_still_waits_for_its_children) {
    in_task([] {
        bool child_ended = false;
        fibers::task owner = fibers::spawn([&] {
            fibers::task_group g;
            g.spawn([&] {
                try {
                    fibers::sleep(30s);
                } catch (fibers::cancelled const&) {
                    fibers::sleep(10ms);
                    child_ended = true;
                    throw;
                }
            });
            g.join();
        });
        fibers::sleep(10ms);
        owner.cancel();
        owner.join();
        BOOST_TEST(child_ended);
    });
}

BOOST_AUTO_TEST_CASE(a_group_destroyed_inside_a_fired_scope_still_waits) {
    in_task([] {
        bool child_done = false;
        fibers::cancel_scope scope;
        {
            fibers::task_group g;
            g.spawn([&] {
                try {
                    fibers::sleep(30s);
                } catch (fibers::cancelled const&) {
                    fibers::sleep(10ms);
                    child_done = true;
                    throw;
                }
            });
            scope.cancel();
            BOOST_CHECK_THROW(g.join(), fibers::cancelled); // the scope's
            BOOST_TEST(!child_done);
        } // cancels the child, and waits for it despite the scope
        BOOST_TEST(child_done);
        BOOST_TEST(what_a_sleep_does(10ms) == "threw cancelled"); // the scope is still there
    });
}

BOOST_AUTO_TEST_CASE(groups_nest) {
    in_task([] {
        int grandchildren_cancelled = 0;
        fibers::task_group outer;
        for (int i = 0; i < 2; ++i)
            outer.spawn([&] {
                fibers::task_group inner;
                for (int j = 0; j < 2; ++j)
                    inner.spawn([&] {
                        try {
                            fibers::sleep(30s);
                        } catch (fibers::cancelled const&) {
                            ++grandchildren_cancelled;
                            throw;
                        }
                    });
                inner.join();
            });
        fibers::sleep(10ms);
        outer.cancel();
        outer.join();
        BOOST_TEST(grandchildren_cancelled == 4);
    });
}

BOOST_AUTO_TEST_CASE(a_group_in_the_root_at_thread_exit) {
    bool child_unwound = false;
    on_new_thread([&] {
        fibers::task_group g;
        g.spawn([&] {
            struct flag {
                bool& b;
                ~flag() { b = true; }
            } f{child_unwound};
            fibers::sleep(30s);
        });
        fibers::sleep(0s);
    });
    BOOST_TEST(child_unwound);
}

BOOST_AUTO_TEST_CASE(groups_used_from_another_thread_refuse) {
    in_task([] {
        fibers::task_group g;
        std::string what;
        std::thread([&] {
            try {
                g.spawn([] {});
            } catch (fibers::error const&) {
                what = "refused";
            }
        }).join();
        BOOST_TEST(what == "refused");
        fibers::hub* other_hub = nullptr;
        std::promise<void> made, done;
        std::thread other([&] {
            other_hub = &fibers::get_hub();
            made.set_value();
            done.get_future().wait();
        });
        made.get_future().wait();
        BOOST_CHECK_THROW(g.spawn([] {}, fibers::task_options{"elsewhere", other_hub}), std::invalid_argument);
        BOOST_TEST(g.size() == 0u);
        done.set_value();
        other.join();
    });
}

BOOST_AUTO_TEST_CASE(failures_race_cancels_in_a_loop) {
    // Children fail, end and get cancelled at random moments while another
    // thread cancels the group's owner: no leak, no crash, and join always
    // reports a failure or a cancellation.
    in_task([] {
        captured_log log; // the failures nobody joined are logged
        std::minstd_rand random(99);
        for (int round = 0; round < 100; ++round) {
            std::vector<unsigned> delays;
            for (int i = 0; i < 4; ++i)
                delays.push_back(random() % 300);
            unsigned const cancel_after = random() % 600;
            fibers::task owner = fibers::spawn([delays] {
                fibers::task_group g;
                for (std::size_t i = 0; i < delays.size(); ++i)
                    g.spawn([i, d = delays[i]] {
                        fibers::sleep(std::chrono::microseconds(d));
                        if (i % 2 == 0)
                            throw std::runtime_error("child failed");
                    });
                try {
                    g.join();
                } catch (std::runtime_error const&) {
                }
            });
            std::thread canceller([owner, cancel_after]() mutable {
                std::this_thread::sleep_for(std::chrono::microseconds(cancel_after));
                owner.cancel();
            });
            owner.join();
            canceller.join();
            BOOST_TEST_REQUIRE(!owner.alive());
        }
    });
}

BOOST_AUTO_TEST_CASE(groups_at_thread_exit_in_a_loop) {
    // The thread returns at a random moment while its root's group has
    // children in reads, sleeps and scopes: the destructor cancels and
    // waits for them, then the hub closes.
    for (int round = 0; round < 50; ++round) {
        std::minstd_rand random(static_cast<unsigned>(round) + 1000);
        int ended = 0;
        on_new_thread([&] {
            auto& io = fibers::get_hub().loop();
            auto [client, server] = connected_pair(io);
            fibers::task_group g;
            g.spawn([&, &server = server] {
                char buffer[8];
                try {
                    server.async_read_some(boost::asio::buffer(buffer), fibers::yield);
                } catch (fibers::cancelled const&) {
                }
                ++ended;
            });
            g.spawn([&, d = random() % 300] {
                fibers::cancel_scope scope{std::chrono::microseconds(d)};
                try {
                    fibers::sleep(60s);
                } catch (fibers::timeout const&) {
                } catch (fibers::cancelled const&) {
                }
                ++ended;
            });
            fibers::sleep(std::chrono::microseconds(random() % 300));
        });
        BOOST_TEST_REQUIRE(ended == 2);
    }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(races)

BOOST_AUTO_TEST_CASE(the_first_result_wins_and_the_others_are_waited_for) {
    in_task([] {
        bool loser_unwound = false;
        auto r = fibers::race(
            [&] {
                struct flag {
                    bool& b;
                    ~flag() { b = true; }
                } f{loser_unwound};
                fibers::sleep(30s);
                return std::string("slow");
            },
            [] {
                fibers::sleep(10ms);
                return 7;
            },
            [] { fibers::sleep(20s); });
        BOOST_TEST(r.index() == 1u);
        BOOST_TEST(std::get<1>(r) == 7);
        BOOST_TEST(loser_unwound);
        static_assert(std::is_same_v<decltype(r), std::variant<std::string, int, std::monostate>>);
    });
}

BOOST_AUTO_TEST_CASE(void_results_are_monostate) {
    in_task([] {
        std::variant<int, std::monostate> r = fibers::race(
            [] {
                fibers::sleep(30s);
                return 1;
            },
            [] {});
        BOOST_TEST(r.index() == 1u);
    });
}

BOOST_AUTO_TEST_CASE(the_first_to_end_threw_so_race_rethrows) {
    in_task([] {
        captured_log log;
        bool loser_stopped = false;
        try {
            fibers::race(
                [] {
                    fibers::sleep(10ms);
                    throw std::runtime_error("lost the plot");
                },
                [&] {
                    try {
                        fibers::sleep(30s);
                    } catch (fibers::cancelled const&) {
                        fibers::sleep(10ms);
                        loser_stopped = true;
                        throw std::logic_error("cleanup failed");
                    }
                    return 0;
                });
            BOOST_FAIL("race returned");
        } catch (std::runtime_error const& e) {
            BOOST_TEST(std::string(e.what()) == "lost the plot");
        }
        BOOST_TEST(loser_stopped);
        BOOST_TEST(log.contains("cleanup failed"));
    });
}

BOOST_AUTO_TEST_CASE(a_read_against_a_deadline) {
    in_task([] {
        auto& io = fibers::get_hub().loop();
        auto [client, server] = connected_pair(io);
        char buffer[8];
        auto read = [&, &server = server] {
            return server.async_read_some(boost::asio::buffer(buffer), fibers::yield);
        };
        auto first = fibers::race(read, [] { fibers::sleep(20ms); });
        BOOST_TEST(first.index() == 1u); // nothing came: the deadline
        boost::asio::write(client, boost::asio::buffer("abc", 3));
        auto second = fibers::race(read, [] { fibers::sleep(30s); });
        BOOST_TEST(second.index() == 0u);
        BOOST_TEST(std::get<0>(second) == 3u);
        BOOST_TEST(std::string(buffer, 3) == "abc");
    });
}

BOOST_AUTO_TEST_CASE(races_against_other_threads_in_a_loop) {
    // A racer waits on an event that another thread sets at a random moment,
    // against a sleep of a random length, while a third thread cancels the
    // racing task at a random moment: either outcome, or cancelled, and
    // nothing left behind.
    in_task([] {
        std::minstd_rand random(4242);
        int outcomes[3] = {0, 0, 0};
        for (int round = 0; round < 100; ++round) {
            fibers::event ready;
            int outcome = 2;
            unsigned const sleep_for = random() % 300;
            fibers::task racer = fibers::spawn([&] {
                auto r = fibers::race([&] { return ready.wait(); },
                                      [&] { fibers::sleep(std::chrono::microseconds(sleep_for)); });
                outcome = static_cast<int>(r.index());
            });
            std::thread setter([&ready, d = random() % 300] {
                std::this_thread::sleep_for(std::chrono::microseconds(d));
                ready.set();
            });
            std::thread canceller([racer, d = random() % 600]() mutable {
                std::this_thread::sleep_for(std::chrono::microseconds(d));
                racer.cancel();
            });
            racer.join();
            setter.join();
            canceller.join();
            ++outcomes[outcome];
        }
        BOOST_TEST(outcomes[0] + outcomes[1] + outcomes[2] == 100);
        BOOST_TEST_MESSAGE("event " << outcomes[0] << ", sleep " << outcomes[1] << ", cancelled " << outcomes[2]);
    });
}

BOOST_AUTO_TEST_CASE(the_racing_fiber_cancelled_cancels_the_racers) {
    in_task([] {
        int stopped = 0;
        fibers::task racer = fibers::spawn([&] {
            auto wait = [&] {
                try {
                    fibers::sleep(30s);
                } catch (fibers::cancelled const&) {
                    ++stopped;
                    throw;
                }
            };
            fibers::race(wait, wait);
        });
        fibers::sleep(10ms);
        racer.cancel();
        racer.join();
        BOOST_TEST(stopped == 2);
    });
}

BOOST_AUTO_TEST_SUITE_END()
