// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#define BOOST_TEST_MODULE sync
#define BOOST_TEST_NO_MAIN
#define FIBERS_TEST_DEATH_MAIN
#include <boost/test/unit_test.hpp>

#include <fibers/hub.hpp>
#include <fibers/switchpoint.hpp>
#include <fibers/sync.hpp>
#include <fibers/task.hpp>

#include "cancel_support.hpp"
#include "child_process.hpp"
#include "hub_support.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using fibers_test::captured_log;
using fibers_test::event_log;
using fibers_test::on_new_thread;
using fibers_test::what_a_sleep_does;

namespace {

// Waits until `done()`, letting the hub run meanwhile: for a test that must
// know that another fiber or thread already waits on a primitive.
template <class Pred>
void poll_in_fiber(Pred done) {
    auto const give_up = std::chrono::steady_clock::now() + 20s;
    while (!done()) {
        if (std::chrono::steady_clock::now() > give_up)
            throw std::runtime_error("poll_in_fiber: gave up");
        fibers::sleep(1ms);
    }
}

// The same on a thread without a hub.
template <class Pred>
void poll_in_thread(Pred done) {
    auto const give_up = std::chrono::steady_clock::now() + 20s;
    while (!done()) {
        if (std::chrono::steady_clock::now() > give_up)
            throw std::runtime_error("poll_in_thread: gave up");
        std::this_thread::sleep_for(1ms);
    }
}

// Runs `fn` on a plain thread (no hub) and rethrows what escaped it, from join().
class plain_thread {
public:
    template <class Fn>
    explicit plain_thread(Fn fn)
        : thread_([this, fn]() mutable {
              try {
                  fn();
              } catch (...) {
                  failure_ = std::current_exception();
              }
          }) {}
    plain_thread(plain_thread const&) = delete;
    plain_thread& operator=(plain_thread const&) = delete;
    ~plain_thread() {
        if (thread_.joinable())
            thread_.join();
    }
    void join() {
        thread_.join();
        if (failure_)
            std::rethrow_exception(failure_);
    }

private:
    std::exception_ptr failure_;
    std::thread thread_;
};

} // namespace

BOOST_AUTO_TEST_SUITE(mutex)

BOOST_AUTO_TEST_CASE(acquire_release_locked) {
    on_new_thread([] {
        fibers::mutex m;
        BOOST_TEST(!m.locked());
        BOOST_TEST(m.acquire());
        BOOST_TEST(m.locked());
        BOOST_TEST(!m.acquire(false)); // not recursive: acquire(false) by the owner fails
        BOOST_TEST(!m.try_lock());
        m.release();
        BOOST_TEST(!m.locked());
        BOOST_TEST(m.acquire(false));
        m.unlock();
        BOOST_TEST(m.acquire(10ms));
        m.release();
        BOOST_TEST(m.waiter_count() == 0u);
    });
}

BOOST_AUTO_TEST_CASE(release_by_a_non_holder_throws) {
    on_new_thread([] {
        fibers::mutex m;
        BOOST_CHECK_THROW(m.release(), fibers::error); // not held at all
        m.acquire();
        // Held by the root fiber: another fiber of the same thread does not hold it.
        bool threw = false, got = true;
        fibers::spawn([&] {
            got = m.acquire(false);
            try {
                m.release();
            } catch (fibers::error const&) {
                threw = true;
            }
        }).join();
        BOOST_TEST(threw);
        BOOST_TEST(!got);
        BOOST_TEST(m.locked());
        // Nor does another thread.
        plain_thread other([&] { BOOST_CHECK_THROW(m.release(), fibers::error); });
        other.join();
        m.release();
    });
}

BOOST_AUTO_TEST_CASE(blocking_acquire_by_the_owner_throws_a_timed_one_times_out) {
    on_new_thread([] {
        fibers::mutex m;
        m.acquire();
        BOOST_CHECK_THROW(m.acquire(), fibers::error);
        BOOST_CHECK_THROW(m.lock(), fibers::error);
        BOOST_TEST(!m.acquire(10ms));
        BOOST_TEST(!m.acquire(0ms));
        BOOST_TEST(m.locked());
        m.release();
        BOOST_TEST(!m.locked());
    });
}

BOOST_AUTO_TEST_CASE(standard_lock_helpers) {
    on_new_thread([] {
        fibers::mutex a;
        fibers::mutex b;
        {
            std::lock_guard<fibers::mutex> g(a);
            BOOST_TEST(a.locked());
        }
        BOOST_TEST(!a.locked());
        {
            std::unique_lock<fibers::mutex> u(a, std::try_to_lock);
            BOOST_TEST(u.owns_lock());
            u.unlock();
            BOOST_TEST(!a.locked());
            u.lock();
            BOOST_TEST(a.locked());
        }
        {
            std::scoped_lock both(a, b);
            BOOST_TEST(a.locked());
            BOOST_TEST(b.locked());
        }
        BOOST_TEST(!a.locked());
        BOOST_TEST(!b.locked());
        // std::lock with one of them held by another task: it waits, then takes both.
        bool other_released = false;
        fibers::task holder = fibers::spawn([&] {
            std::lock_guard<fibers::mutex> g(b);
            fibers::sleep(5ms);
            other_released = true;
        });
        fibers::sleep(0s);
        {
            std::scoped_lock both(a, b);
            BOOST_TEST(other_released);
        }
        holder.join();
    });
}

BOOST_AUTO_TEST_CASE(contention_between_tasks_of_one_hub) {
    on_new_thread([] {
        fibers::mutex m;
        int counter = 0;
        int inside = 0;
        bool overlapped = false;
        std::vector<fibers::task> tasks;
        for (int i = 0; i < 8; ++i)
            tasks.push_back(fibers::spawn([&] {
                for (int k = 0; k < 50; ++k) {
                    std::lock_guard<fibers::mutex> g(m);
                    overlapped |= ++inside != 1;
                    int const seen = counter;
                    fibers::sleep(0s); // every other task runs now, and must wait
                    counter = seen + 1;
                    --inside;
                }
            }));
        for (auto& t : tasks)
            t.join();
        BOOST_TEST(counter == 400);
        BOOST_TEST(!overlapped);
        BOOST_TEST(!m.locked());
    });
}

BOOST_AUTO_TEST_CASE(waiters_get_it_in_arrival_order_and_a_releaser_cannot_barge) {
    on_new_thread([] {
        fibers::mutex m;
        event_log order;
        m.acquire();
        std::vector<fibers::task> tasks;
        for (std::string name : {"a", "b", "c"})
            tasks.push_back(fibers::spawn([&, name] {
                m.acquire();
                order(name);
                m.release();
            }));
        poll_in_fiber([&] { return m.waiter_count() == 3; });
        m.release();
        // Handed to "a" at once: the releaser cannot take it back before the waiters.
        BOOST_TEST(m.locked());
        BOOST_TEST(!m.acquire(false));
        m.acquire();
        order("root");
        m.release();
        for (auto& t : tasks)
            t.join();
        BOOST_TEST(order.events == (std::vector<std::string>{"a", "b", "c", "root"}));
    });
}

BOOST_AUTO_TEST_CASE(timed_acquire) {
    on_new_thread([] {
        fibers::mutex m;
        fibers::event release_it;
        fibers::task holder = fibers::spawn([&] {
            m.acquire();
            release_it.wait();
            m.release();
        });
        poll_in_fiber([&] { return m.locked(); });
        BOOST_TEST(!m.acquire(10ms));
        BOOST_TEST(!m.acquire(0ms));
        BOOST_TEST(!m.acquire(-5ms));
        BOOST_TEST(m.waiter_count() == 0u); // a waiter that timed out is gone
        release_it.set();
        BOOST_TEST(m.acquire(10s));
        m.release();
        holder.join();
    });
}

BOOST_AUTO_TEST_CASE(a_timed_waiter_that_is_handed_the_lock_has_it) {
    on_new_thread([] {
        fibers::mutex m;
        m.acquire();
        bool got = false;
        fibers::task waiter = fibers::spawn([&] {
            got = m.acquire(10s);
            if (got)
                m.release();
        });
        poll_in_fiber([&] { return m.waiter_count() == 1; });
        m.release();
        waiter.join();
        BOOST_TEST(got);
        BOOST_TEST(!m.locked());
    });
}

BOOST_AUTO_TEST_CASE(tasks_of_hubs_on_different_threads) {
    fibers::mutex m;
    long counter = 0; // guarded by m: TSan checks that it is
    std::atomic<int> inside{0};
    std::atomic<bool> overlapped{false};
    auto work = [&] {
        on_new_thread([&] {
            std::vector<fibers::task> tasks;
            for (int i = 0; i < 4; ++i)
                tasks.push_back(fibers::spawn([&] {
                    for (int k = 0; k < 200; ++k) {
                        std::lock_guard<fibers::mutex> g(m);
                        if (inside.fetch_add(1) != 0)
                            overlapped = true;
                        long const seen = counter;
                        if (k % 8 == 0)
                            fibers::sleep(0s);
                        counter = seen + 1;
                        inside.fetch_sub(1);
                    }
                }));
            for (auto& t : tasks)
                t.join();
        });
    };
    std::thread one(work);
    std::thread two(work);
    one.join();
    two.join();
    BOOST_TEST(counter == 1600);
    BOOST_TEST(!overlapped);
    BOOST_TEST(!m.locked());
}

BOOST_AUTO_TEST_CASE(plain_threads_and_tasks_together) {
    fibers::mutex m;
    long counter = 0;
    std::vector<std::thread> threads;
    for (int i = 0; i < 3; ++i)
        threads.emplace_back([&] {
            for (int k = 0; k < 300; ++k) {
                std::lock_guard<fibers::mutex> g(m); // blocks the thread
                ++counter;
            }
        });
    on_new_thread([&] {
        std::vector<fibers::task> tasks;
        for (int i = 0; i < 3; ++i)
            tasks.push_back(fibers::spawn([&] {
                for (int k = 0; k < 300; ++k) {
                    std::lock_guard<fibers::mutex> g(m);
                    long const seen = counter;
                    fibers::sleep(0s);
                    counter = seen + 1;
                }
            }));
        for (auto& t : tasks)
            t.join();
    });
    for (auto& t : threads)
        t.join();
    BOOST_TEST(counter == 1800);
}

BOOST_AUTO_TEST_CASE(a_plain_thread_hands_to_a_waiting_task_and_back) {
    on_new_thread([] {
        fibers::mutex m;
        std::atomic<int> phase{0};
        std::atomic<bool> timed_out{false};
        fibers::event task_has_it;
        plain_thread other([&] {
            m.acquire();
            phase = 1;
            poll_in_thread([&] { return m.waiter_count() == 1; }); // the task waits
            m.release();
            task_has_it.wait();         // a plain thread blocks on an event
            timed_out = !m.acquire(10ms); // and times out on the mutex
            phase = 2;
            m.acquire(); // then blocks until the task releases
            m.release();
        });
        poll_in_fiber([&] { return phase == 1; });
        BOOST_REQUIRE(m.acquire(20s)); // the root fiber waits through its hub
        task_has_it.set();
        poll_in_fiber([&] { return phase == 2 && m.waiter_count() == 1; }); // the thread blocks on it
        m.release();
        other.join();
        BOOST_TEST(timed_out);
        BOOST_TEST(!m.locked());
    });
}

BOOST_AUTO_TEST_CASE(plain_thread_timeouts) {
    fibers::mutex m;
    plain_thread holder([&] { m.acquire(); });
    holder.join(); // a thread that ended holding it: it stays held
    plain_thread other([&] {
        BOOST_TEST(!m.acquire(false));
        BOOST_TEST(!m.acquire(10ms));
        BOOST_TEST(!m.acquire(0ms));
    });
    other.join();
}

BOOST_AUTO_TEST_CASE(a_task_cancelled_while_waiting_ends_quietly) {
    on_new_thread([] {
        captured_log log;
        fibers::mutex m;
        m.acquire();
        bool got = false;
        fibers::task t = fibers::spawn([&] {
            std::lock_guard<fibers::mutex> g(m);
            got = true;
        });
        poll_in_fiber([&] { return m.waiter_count() == 1; });
        t.cancel();
        t.join();
        BOOST_TEST(!got);
        BOOST_TEST(log.size() == 0u);
        BOOST_TEST(m.waiter_count() == 0u);
        BOOST_TEST(m.locked()); // still the root's
        m.release();
        BOOST_TEST(m.acquire(false));
        m.release();
    });
}

// The cancel is queued before the resumption: "a" is handed the lock, and
// wakes to the cancel. Its acquire had completed: it returns, "a" holds the
// lock, and the cancel comes at its next wait.
BOOST_AUTO_TEST_CASE(a_lock_handed_over_before_the_cancel_came_is_kept) {
    on_new_thread([] {
        captured_log log;
        fibers::mutex m;
        m.acquire();
        bool a_got = false, a_held = false, b_got = false;
        std::string a_next;
        fibers::task a = fibers::spawn([&] {
            m.acquire();
            a_got = true;
            a_held = m.locked() && !m.try_lock(); // a mutex's owner cannot take it again
            a_next = what_a_sleep_does(10ms);
            m.release();
        });
        fibers::task b = fibers::spawn([&] {
            b_got = m.acquire(10s); // timed: a lost hand-over fails the test instead of hanging it
            if (b_got)
                m.release();
        });
        poll_in_fiber([&] { return m.waiter_count() == 2; });
        a.cancel();
        m.release();
        a.join();
        b.join();
        BOOST_TEST(a_got);
        BOOST_TEST(a_held);
        BOOST_TEST(a_next == "threw cancelled");
        BOOST_TEST(b_got); // then "a" released it: nothing was lost
        BOOST_TEST(!m.locked());
        BOOST_TEST(log.size() == 0u);
    });
}

// A fiber that cannot wait on, unwound with the lock handed to it, passes it
// on: here its hub closes before it runs again.
BOOST_AUTO_TEST_CASE(a_lock_handed_to_a_task_unwound_before_it_ran_goes_on) {
    fibers::mutex m;
    std::atomic<bool> thread_got{false};
    std::optional<plain_thread> other;
    on_new_thread([&] {
        m.acquire();
        fibers::task a = fibers::spawn([&] {
            m.acquire();
            m.release();
        });
        poll_in_fiber([&] { return m.waiter_count() == 1; });
        other.emplace([&] {
            thread_got = m.acquire(10s); // timed: a lost lock fails the test instead of hanging it
            if (thread_got)
                m.release();
        });
        poll_in_fiber([&] { return m.waiter_count() == 2; });
        m.release(); // to "a", whose resumption is queued
        fibers::get_hub().close(); // unwinds "a" first
    });
    other->join();
    BOOST_TEST(thread_got);
    BOOST_TEST(!m.locked());
}

BOOST_AUTO_TEST_CASE(a_handed_lock_goes_free_when_nobody_else_waits) {
    on_new_thread([] {
        fibers::mutex m;
        m.acquire();
        fibers::task a = fibers::spawn([&] { std::lock_guard<fibers::mutex> g(m); });
        poll_in_fiber([&] { return m.waiter_count() == 1; });
        a.cancel();
        m.release();
        a.join();
        BOOST_TEST(!m.locked());
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(recursive_mutex)

BOOST_AUTO_TEST_CASE(levels) {
    on_new_thread([] {
        fibers::recursive_mutex m;
        BOOST_CHECK_THROW(m.release(), fibers::error);
        BOOST_TEST(m.acquire());
        BOOST_TEST(m.acquire(false)); // the owner again: one more level
        BOOST_TEST(m.acquire(10ms));
        {
            std::lock_guard<fibers::recursive_mutex> g(m);
        }
        bool other_got = true;
        fibers::task t = fibers::spawn([&] {
            other_got = m.acquire(false);
            BOOST_CHECK_THROW(m.release(), fibers::error); // not the owner
        });
        t.join();
        BOOST_TEST(!other_got);
        m.release();
        m.release();
        BOOST_TEST(m.locked());
        m.release();
        BOOST_TEST(!m.locked());
        BOOST_CHECK_THROW(m.release(), fibers::error);
    });
}

BOOST_AUTO_TEST_CASE(a_waiter_gets_it_once_every_level_is_released_and_starts_at_one) {
    on_new_thread([] {
        fibers::recursive_mutex m;
        m.acquire();
        m.acquire();
        bool ended_free = false;
        fibers::task t = fibers::spawn([&] {
            m.acquire();
            m.release();
            ended_free = !m.locked(); // one level only
        });
        poll_in_fiber([&] { return m.waiter_count() == 1; });
        m.release();
        fibers::sleep(0s);
        BOOST_TEST(m.waiter_count() == 1u); // one level left: still waiting
        m.release();
        t.join();
        BOOST_TEST(ended_free);
    });
}

BOOST_AUTO_TEST_CASE(across_threads) {
    fibers::recursive_mutex m;
    long counter = 0;
    auto work = [&] {
        for (int k = 0; k < 300; ++k) {
            std::lock_guard<fibers::recursive_mutex> outer(m);
            std::lock_guard<fibers::recursive_mutex> inner(m);
            ++counter;
        }
    };
    std::thread plain(work);
    on_new_thread([&] {
        std::vector<fibers::task> tasks;
        for (int i = 0; i < 3; ++i)
            tasks.push_back(fibers::spawn([&] {
                for (int k = 0; k < 100; ++k) {
                    std::lock_guard<fibers::recursive_mutex> outer(m);
                    std::lock_guard<fibers::recursive_mutex> inner(m);
                    long const seen = counter;
                    fibers::sleep(0s);
                    counter = seen + 1;
                }
            }));
        for (auto& t : tasks)
            t.join();
    });
    plain.join();
    BOOST_TEST(counter == 600);
    BOOST_TEST(!m.locked());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(event)

BOOST_AUTO_TEST_CASE(flag) {
    on_new_thread([] {
        fibers::event e;
        BOOST_TEST(!e.is_set());
        BOOST_TEST(!e.wait(10ms));
        BOOST_TEST(!e.wait(0ms));
        e.set();
        BOOST_TEST(e.is_set());
        BOOST_TEST(e.wait());
        BOOST_TEST(e.wait(0ms));
        e.set(); // again: nothing changes
        e.clear();
        BOOST_TEST(!e.is_set());
        BOOST_TEST(!e.wait(5ms));
    });
}

BOOST_AUTO_TEST_CASE(set_wakes_every_waiter_of_every_kind) {
    fibers::event e;
    fibers::event ready_other_hub;
    std::atomic<int> woken{0};
    plain_thread blocked([&] {
        if (e.wait())
            ++woken;
    });
    std::thread other_hub([&] {
        on_new_thread([&] {
            fibers::task t = fibers::spawn([&] {
                if (e.wait(60s))
                    ++woken;
            });
            fibers::sleep(0s);
            t.join();
        });
    });
    on_new_thread([&] {
        std::vector<fibers::task> tasks;
        for (int i = 0; i < 3; ++i)
            tasks.push_back(fibers::spawn([&] {
                if (e.wait())
                    ++woken;
            }));
        poll_in_fiber([&] { return e.waiter_count() == 5; });
        e.set();
        for (auto& t : tasks)
            t.join();
    });
    blocked.join();
    other_hub.join();
    BOOST_TEST(woken == 5);
}

BOOST_AUTO_TEST_CASE(a_waiter_woken_by_set_returns_true_though_cleared_since) {
    on_new_thread([] {
        fibers::event e;
        bool result = false;
        fibers::task t = fibers::spawn([&] { result = e.wait(10s); });
        poll_in_fiber([&] { return e.waiter_count() == 1; });
        e.set();
        e.clear();
        t.join();
        BOOST_TEST(result);
    });
}

BOOST_AUTO_TEST_CASE(a_task_cancelled_while_waiting) {
    on_new_thread([] {
        captured_log log;
        fibers::event e;
        fibers::task t = fibers::spawn([&] { e.wait(); });
        poll_in_fiber([&] { return e.waiter_count() == 1; });
        t.cancel();
        t.join();
        BOOST_TEST(e.waiter_count() == 0u);
        BOOST_TEST(log.size() == 0u);
        e.set();
        BOOST_TEST(e.wait());
    });
}

// The cancel is queued before the resumption of set(): the wait had
// completed, so it returns true, and the cancel comes at the next wait.
BOOST_AUTO_TEST_CASE(a_set_that_came_before_the_cancel_is_seen) {
    on_new_thread([] {
        fibers::event e;
        bool woke = false;
        std::string next;
        fibers::task t = fibers::spawn([&] {
            woke = e.wait();
            next = what_a_sleep_does(10ms);
        });
        poll_in_fiber([&] { return e.waiter_count() == 1; });
        t.cancel();
        e.set();
        t.join();
        BOOST_TEST(woke);
        BOOST_TEST(next == "threw cancelled");
    });
}

// The same for a timed wait, woken through a switch_back of its own.
BOOST_AUTO_TEST_CASE(a_set_that_came_before_the_cancel_is_seen_by_a_timed_wait) {
    on_new_thread([] {
        fibers::event e;
        bool woke = false;
        std::string next, after;
        fibers::task t = fibers::spawn([&] {
            woke = e.wait(10s);
            next = what_a_sleep_does(10ms);
            after = what_a_sleep_does(10ms);
        });
        poll_in_fiber([&] { return e.waiter_count() == 1; });
        t.cancel();
        e.set();
        t.join();
        BOOST_TEST(woke);
        BOOST_TEST(next == "threw cancelled");
        BOOST_TEST(after == "slept");
    });
}

BOOST_AUTO_TEST_SUITE_END()

namespace {

// Runs `fn` on a fresh thread in a child process, which SIGALRM ends if `fn`
// has not returned within `limit_seconds`: for what can terminate the
// process or hang. Exit code 0: fn returned; 1: it threw.
template <class Fn>
fibers_test::child_result in_child_with_time_limit(unsigned limit_seconds, Fn fn) {
    return fibers_test::run_in_child([limit_seconds, fn] {
        ::signal(SIGALRM, SIG_DFL);
        ::alarm(limit_seconds);
        try {
            on_new_thread(fn);
        } catch (std::exception const& e) {
            std::fprintf(stderr, "%s\n", e.what());
            ::_exit(1);
        }
        ::_exit(0);
    });
}

void require(bool condition, char const* what) {
    if (!condition)
        throw std::runtime_error(what);
}

#define FIBERS_TEST_CHILD_PASSED(child)                                                                           \
    do {                                                                                                          \
        BOOST_TEST((child).exited, "killed by signal " << (child).signal << ": " << (child).stderr_text);        \
        BOOST_TEST((child).exit_code == 0, (child).stderr_text);                                                 \
    } while (false)

} // namespace

BOOST_AUTO_TEST_SUITE(condition)

// A task notified on a condition waits to take its mutex back when its hub
// closes (by close(), or at thread exit): its unwinding must leave the wait
// so that the guard's release at the end of its scope does not throw from
// a destructor. The holder is another task, older or newer (the hub unwinds
// the newest first), the root, or another thread.
BOOST_AUTO_TEST_CASE(a_notified_wait_unwound_while_another_task_holds_the_lock) {
    for (bool waiter_first : {true, false}) {
        auto child = in_child_with_time_limit(30, [waiter_first] {
            fibers::mutex m;
            fibers::condition c(m);
            int unwound = 0;
            bool notified = false;
            auto wait = [&] {
                std::unique_lock<fibers::mutex> lock(m);
                try {
                    c.wait();
                } catch (...) {
                    ++unwound;
                    throw;
                }
            };
            auto notify_and_hold = [&] {
                fibers::sleep(5ms); // the waiter waits first
                std::lock_guard<fibers::mutex> lock(m);
                c.notify();
                notified = true;
                fibers::sleep(1h); // holding the lock
            };
            fibers::task first = fibers::spawn(waiter_first ? std::function<void()>(wait) : notify_and_hold);
            fibers::sleep(0s);
            fibers::task second = fibers::spawn(waiter_first ? std::function<void()>(notify_and_hold) : wait);
            poll_in_fiber([&] { return notified && m.waiter_count() == 1; }); // taking the lock back
            fibers::get_hub().close();
            require(unwound == 1, "the waiter was not unwound");
            require(!first.alive() && !second.alive(), "a task is still alive");
            require(!m.locked(), "the mutex is still locked");
            require(m.waiter_count() == 0, "a waiter is left");
            m.acquire(); // the hub is closed: on the thread
            m.release();
        });
        BOOST_TEST_CONTEXT("waiter first: " << waiter_first) { FIBERS_TEST_CHILD_PASSED(child); }
    }
}

BOOST_AUTO_TEST_CASE(a_notified_wait_unwound_while_the_root_holds_the_lock) {
    auto child = in_child_with_time_limit(30, [] {
        fibers::recursive_mutex m;
        fibers::condition c(m);
        bool unwound = false;
        fibers::task waiter = fibers::spawn([&] {
            std::lock_guard<fibers::recursive_mutex> outer(m);
            std::lock_guard<fibers::recursive_mutex> inner(m); // two levels: two releases, both quiet
            try {
                c.wait();
            } catch (...) {
                unwound = true;
                throw;
            }
        });
        fibers::sleep(0s);
        m.acquire();
        c.notify();
        poll_in_fiber([&] { return m.waiter_count() == 1; });
        m.acquire(); // two levels of its own, which the waiter's quiet releases leave alone
        fibers::get_hub().close(); // still holding the lock
        require(unwound && !waiter.alive(), "the waiter was not unwound");
        require(m.locked(), "the root's lock went");
        m.release();
        require(m.locked(), "the root's second level went");
        m.release();
        require(!m.locked(), "the mutex is still locked");
        require(m.acquire(false), "the mutex cannot be taken");
        m.release();
        BOOST_CHECK_THROW(m.release(), fibers::error); // the quiet releases were the unwound fiber's only
    });
    FIBERS_TEST_CHILD_PASSED(child);
}

// Held by another thread, the lock is taken back before the unwinding goes
// on, the thread blocking for it, as with std::condition_variable.
BOOST_AUTO_TEST_CASE(a_notified_wait_unwound_while_another_thread_holds_the_lock) {
    auto child = in_child_with_time_limit(30, [] {
        fibers::mutex m;
        fibers::condition c(m);
        std::atomic<bool> notified{false}, released{false}, go{false};
        bool held_while_unwinding = false, unwound = false;
        fibers::task waiter = fibers::spawn([&] {
            m.acquire();
            try {
                c.wait();
            } catch (...) {
                unwound = true;
                held_while_unwinding = released && m.locked();
                m.release();
                throw;
            }
            m.release();
        });
        fibers::sleep(0s);
        plain_thread other([&] {
            m.acquire();
            c.notify();
            notified = true;
            poll_in_thread([&] { return go.load(); });
            std::this_thread::sleep_for(50ms); // the hub closes meanwhile
            released = true;
            m.release();
        });
        poll_in_fiber([&] { return notified && m.waiter_count() == 1; });
        go = true;
        fibers::get_hub().close();
        other.join();
        require(unwound && !waiter.alive(), "the waiter was not unwound");
        require(held_while_unwinding, "the lock was not taken back before the unwinding went on");
        require(!m.locked(), "the mutex is still locked");
    });
    FIBERS_TEST_CHILD_PASSED(child);
}

BOOST_AUTO_TEST_CASE(a_wait_unwound_at_thread_exit) {
    auto child = in_child_with_time_limit(30, [] {
        fibers::mutex m;
        fibers::condition c(m);
        std::thread([&] {
            fibers::spawn([&] {
                std::unique_lock<fibers::mutex> lock(m);
                c.wait();
            });
            fibers::spawn([&] {
                std::lock_guard<fibers::mutex> lock(m);
                c.notify();
                fibers::sleep(1h);
            });
            fibers::sleep(10ms);
            // The thread ends: its hub closes and unwinds both.
        }).join();
        require(!m.locked(), "the mutex is still locked");
    });
    FIBERS_TEST_CHILD_PASSED(child);
}

// Many tasks on primitives shared with another thread that keeps using
// them, and the hub closes in the middle of it.
BOOST_AUTO_TEST_CASE(closing_a_hub_whose_tasks_share_primitives_with_a_thread) {
    auto child = in_child_with_time_limit(120, [] {
        for (int round = 0; round < 10; ++round) {
            fibers::mutex m;
            fibers::condition c(m);
            std::atomic<bool> stop{false};
            plain_thread other([&] {
                while (!stop) {
                    std::lock_guard<fibers::mutex> lock(m);
                    c.notify_all();
                    std::this_thread::yield();
                }
            });
            std::thread([&] {
                for (int i = 0; i < 400; ++i) {
                    fibers::spawn([&, i] {
                        for (;;) {
                            if (i % 3 == 0) {
                                std::unique_lock<fibers::mutex> lock(m);
                                c.wait();
                                fibers::sleep(0s); // holding the lock
                            } else if (i % 3 == 1) {
                                std::unique_lock<fibers::mutex> lock(m);
                                c.wait(1ms);
                            } else {
                                std::lock_guard<fibers::mutex> lock(m);
                                c.notify(2);
                                fibers::sleep(0s);
                            }
                        }
                    });
                }
                fibers::sleep(20ms);
                // The thread ends: its hub closes and unwinds every task.
            }).join();
            stop = true;
            other.join();
            require(!m.locked(), "the mutex is still locked");
        }
    });
    FIBERS_TEST_CHILD_PASSED(child);
}

// Anything else thrown into a fiber while it takes the lock back (here a
// keyboard_interrupt in the root) waits until it has; the wait had ended,
// so it returns, and the interrupt comes at the next wait.
BOOST_AUTO_TEST_CASE(an_interrupt_while_taking_the_lock_back_comes_after_it) {
    auto child = in_child_with_time_limit(30, [] {
        fibers::mutex m;
        fibers::condition c(m);
        fibers::task notifier = fibers::spawn([&] {
            std::lock_guard<fibers::mutex> lock(m);
            c.notify();
            fibers::sleep(1ms);
            std::thread([] { ::kill(::getpid(), SIGINT); }).join();
            fibers::sleep(30ms); // the root is interrupted meanwhile
        });
        std::unique_lock<fibers::mutex> lock(m);
        bool const notified = c.wait();
        require(notified && lock.owns_lock() && m.locked() && !notifier.alive(),
                "the lock was not taken back first");
        bool interrupted = false;
        try {
            fibers::sleep(0s);
        } catch (fibers::keyboard_interrupt const&) {
            interrupted = true;
        }
        require(interrupted, "no keyboard_interrupt at the next wait");
    });
    FIBERS_TEST_CHILD_PASSED(child);
}

BOOST_AUTO_TEST_CASE(without_the_lock_throws) {
    on_new_thread([] {
        fibers::mutex m;
        fibers::condition c(m);
        BOOST_CHECK_THROW(c.wait(), fibers::error);
        BOOST_CHECK_THROW(c.wait(1ms), fibers::error);
        BOOST_CHECK_THROW(c.wait_for([] { return true; }), fibers::error);
        BOOST_CHECK_THROW(c.notify(), fibers::error);
        BOOST_CHECK_THROW(c.notify_all(), fibers::error);
        // Held by another fiber is not held.
        fibers::task holder = fibers::spawn([&] {
            m.acquire();
            fibers::sleep(20ms);
            m.release();
        });
        fibers::sleep(0s);
        BOOST_CHECK_THROW(c.wait(), fibers::error);
        BOOST_CHECK_THROW(c.notify(), fibers::error);
        holder.join();
    });
}

BOOST_AUTO_TEST_CASE(timed_wait_returns_false_with_the_lock_held) {
    on_new_thread([] {
        fibers::mutex m;
        fibers::condition c(m);
        std::unique_lock<fibers::mutex> g(m);
        BOOST_TEST(!c.wait(10ms));
        BOOST_TEST(m.locked());
        BOOST_TEST(!c.wait(0ms));
        BOOST_TEST(!c.wait(-1ms));
        BOOST_TEST(!c.wait_for([] { return false; }, 10ms));
        BOOST_TEST(c.wait_for([] { return true; }, 0ms));
        BOOST_TEST(c.wait_for([] { return true; }));
        BOOST_TEST(c.waiter_count() == 0u);
        g.unlock(); // held by the caller: no throw
        BOOST_TEST(!m.locked());
    });
}

BOOST_AUTO_TEST_CASE(wait_releases_the_lock_while_waiting) {
    on_new_thread([] {
        fibers::mutex m;
        fibers::condition c(m);
        bool result = false;
        fibers::task waiter = fibers::spawn([&] {
            std::lock_guard<fibers::mutex> g(m);
            result = c.wait(10s);
            BOOST_TEST(m.locked());
        });
        poll_in_fiber([&] { return c.waiter_count() == 1; });
        BOOST_TEST(m.acquire(false)); // the waiter let it go
        c.notify();
        BOOST_TEST(c.waiter_count() == 0u);
        fibers::sleep(0s);
        BOOST_TEST(!result); // it cannot return before it has the lock back
        m.release();
        waiter.join();
        BOOST_TEST(result);
        BOOST_TEST(!m.locked());
    });
}

BOOST_AUTO_TEST_CASE(notify_wakes_in_arrival_order) {
    on_new_thread([] {
        fibers::mutex m;
        fibers::condition c(m);
        event_log order;
        std::vector<fibers::task> tasks;
        for (std::string name : {"a", "b", "c", "d", "e"})
            tasks.push_back(fibers::spawn([&, name] {
                std::lock_guard<fibers::mutex> g(m);
                c.wait();
                order(name);
            }));
        poll_in_fiber([&] { return c.waiter_count() == 5; });
        auto notify = [&](std::size_t n) {
            std::lock_guard<fibers::mutex> g(m);
            c.notify(n);
        };
        notify(1);
        poll_in_fiber([&] { return order.events.size() == 1; });
        notify(2);
        poll_in_fiber([&] { return order.events.size() == 3; });
        BOOST_TEST(c.waiter_count() == 2u);
        {
            std::lock_guard<fibers::mutex> g(m);
            c.notify_all();
        }
        for (auto& t : tasks)
            t.join();
        BOOST_TEST(order.events == (std::vector<std::string>{"a", "b", "c", "d", "e"}));
        std::lock_guard<fibers::mutex> g(m);
        c.notify(3); // nobody waits: nothing happens
    });
}

BOOST_AUTO_TEST_CASE(wait_for_returns_the_predicate) {
    on_new_thread([] {
        fibers::mutex m;
        fibers::condition c(m);
        int value = 0;
        int calls = 0;
        fibers::task producer = fibers::spawn([&] {
            for (int i = 1; i <= 5; ++i) {
                fibers::sleep(1ms);
                std::lock_guard<fibers::mutex> g(m);
                value = i;
                c.notify_all();
            }
        });
        {
            std::unique_lock<fibers::mutex> g(m);
            BOOST_TEST(c.wait_for([&] {
                ++calls;
                return value >= 3;
            }));
            BOOST_TEST(value >= 3);
            BOOST_TEST(calls >= 2); // called again after each wake
            BOOST_TEST(c.wait_for([&] { return value == 5; }, 10s));
            BOOST_TEST(!c.wait_for([&] { return value == 6; }, 10ms));
        }
        producer.join();
    });
}

BOOST_AUTO_TEST_CASE(over_a_recursive_mutex_every_level_is_released_and_restored) {
    on_new_thread([] {
        fibers::recursive_mutex m;
        fibers::condition c(m);
        bool other_got = false;
        m.acquire();
        m.acquire();
        m.acquire();
        fibers::task other = fibers::spawn([&] {
            other_got = m.acquire(false); // free while the root waits
            if (other_got) {
                c.notify();
                m.release();
            }
        });
        BOOST_TEST(c.wait(10s));
        BOOST_TEST(other_got);
        other.join();
        m.release();
        m.release();
        BOOST_TEST(m.locked()); // three levels back
        m.release();
        BOOST_TEST(!m.locked());
        BOOST_CHECK_THROW(m.release(), fibers::error);
    });
}

BOOST_AUTO_TEST_CASE(producer_on_a_plain_thread_consumers_on_two_hubs) {
    fibers::mutex m;
    fibers::condition c(m);
    std::vector<int> items; // guarded by m
    bool finished = false;
    std::atomic<long> sum{0};
    auto consume = [&] {
        on_new_thread([&] {
            std::vector<fibers::task> tasks;
            for (int i = 0; i < 2; ++i)
                tasks.push_back(fibers::spawn([&] {
                    std::unique_lock<fibers::mutex> g(m);
                    for (;;) {
                        c.wait_for([&] { return !items.empty() || finished; });
                        if (items.empty())
                            return;
                        sum += items.back();
                        items.pop_back();
                    }
                }));
            for (auto& t : tasks)
                t.join();
        });
    };
    std::thread one(consume);
    std::thread two(consume);
    plain_thread producer([&] {
        for (int i = 1; i <= 500; ++i) {
            std::lock_guard<fibers::mutex> g(m);
            items.push_back(i);
            c.notify();
        }
        std::lock_guard<fibers::mutex> g(m);
        finished = true;
        c.notify_all();
    });
    producer.join();
    one.join();
    two.join();
    BOOST_TEST(sum == 500 * 501 / 2);
}

BOOST_AUTO_TEST_CASE(a_plain_thread_waits) {
    fibers::mutex m;
    fibers::condition c(m);
    bool flag = false;
    std::atomic<bool> timed_out{false}, waiting_for_flag{false}, saw_flag{false};
    plain_thread waiter([&] {
        std::unique_lock<fibers::mutex> g(m);
        timed_out = !c.wait(5ms);
        waiting_for_flag = true;
        saw_flag = c.wait_for([&] { return flag; }, 60s);
    });
    on_new_thread([&] {
        poll_in_fiber([&] { return waiting_for_flag && c.waiter_count() == 1; });
        std::lock_guard<fibers::mutex> g(m);
        flag = true;
        c.notify();
    });
    waiter.join();
    BOOST_TEST(timed_out);
    BOOST_TEST(saw_flag);
}

BOOST_AUTO_TEST_CASE(a_task_cancelled_while_waiting_holds_the_lock_as_it_leaves) {
    on_new_thread([] {
        captured_log log;
        fibers::mutex m;
        fibers::condition c(m);
        bool held_in_catch = false;
        fibers::task t = fibers::spawn([&] {
            std::lock_guard<fibers::mutex> g(m);
            try {
                c.wait();
            } catch (fibers::cancelled const&) {
                held_in_catch = m.locked() && !m.try_lock();
                throw;
            }
        });
        poll_in_fiber([&] { return c.waiter_count() == 1; });
        // Take the lock, so that the cancelled waiter must wait to get it back.
        m.acquire();
        t.cancel();
        fibers::sleep(0s);
        BOOST_TEST(t.alive());
        BOOST_TEST(m.waiter_count() == 1u);
        m.release();
        t.join();
        BOOST_TEST(held_in_catch);
        BOOST_TEST(!m.locked()); // its lock_guard released it
        BOOST_TEST(c.waiter_count() == 0u);
        BOOST_TEST(log.size() == 0u);
    });
}

// The cancel is queued before the notification's resumption: the wait had
// completed, so it returns true with the lock held; the cancel comes at the
// next wait, and no other waiter gets the notification.
BOOST_AUTO_TEST_CASE(a_notification_that_came_before_the_cancel_is_kept) {
    on_new_thread([] {
        captured_log log;
        fibers::mutex m;
        fibers::condition c(m);
        bool a_woke = false, a_held = false, b_woke = true;
        std::string a_next;
        fibers::task a = fibers::spawn([&] {
            std::lock_guard<fibers::mutex> g(m);
            a_woke = c.wait();
            a_held = m.locked() && !m.try_lock();
            a_next = what_a_sleep_does(10ms);
        });
        fibers::task b = fibers::spawn([&] {
            std::lock_guard<fibers::mutex> g(m);
            b_woke = c.wait(50ms);
        });
        poll_in_fiber([&] { return c.waiter_count() == 2; });
        a.cancel();
        {
            std::lock_guard<fibers::mutex> g(m);
            c.notify();
        }
        a.join();
        b.join();
        BOOST_TEST(a_woke);
        BOOST_TEST(a_held);
        BOOST_TEST(a_next == "threw cancelled");
        BOOST_TEST(!b_woke); // one notification, one waiter woken
        BOOST_TEST(!m.locked());
        BOOST_TEST(log.size() == 0u);
    });
}

// A waiter unwound with a notification in hand passes it on.
BOOST_AUTO_TEST_CASE(a_notification_to_a_task_unwound_before_it_ran_goes_on) {
    fibers::mutex m;
    fibers::condition c(m);
    std::atomic<bool> thread_woke{false};
    std::optional<plain_thread> other;
    on_new_thread([&] {
        fibers::task a = fibers::spawn([&] {
            std::lock_guard<fibers::mutex> g(m);
            c.wait();
        });
        poll_in_fiber([&] { return c.waiter_count() == 1; });
        other.emplace([&] {
            std::lock_guard<fibers::mutex> g(m);
            thread_woke = c.wait(10s);
        });
        poll_in_fiber([&] { return c.waiter_count() == 2; });
        {
            std::lock_guard<fibers::mutex> g(m);
            c.notify(); // to "a", whose resumption is queued
        }
        fibers::get_hub().close(); // unwinds "a" first
    });
    other->join();
    BOOST_TEST(thread_woke);
    BOOST_TEST(!m.locked());
}

BOOST_AUTO_TEST_SUITE_END()

namespace {

// An item whose move throws once: the move that finds `moves_left` at 0
// throws and disarms the item, so that the next move of it succeeds. Each
// other move hands the count, less one, to the new item; -1: never.
struct fragile {
    int value = 0;
    int moves_left = -1;
    explicit fragile(int v, int throw_after = -1) : value(v), moves_left(throw_after) {}
    fragile(fragile&& other) : value(other.value), moves_left(take_move(other)) {}
    fragile& operator=(fragile&& other) {
        moves_left = take_move(other);
        value = other.value;
        return *this;
    }
    static int take_move(fragile& other) {
        if (other.moves_left == 0) {
            other.moves_left = -1;
            throw std::runtime_error("move failed");
        }
        return other.moves_left > 0 ? other.moves_left - 1 : -1;
    }
};

// std::less<int> that throws while armed.
struct throwing_less {
    static inline bool armed = false;
    bool operator()(int a, int b) const {
        if (armed)
            throw std::runtime_error("compare failed");
        return a < b;
    }
};

} // namespace

BOOST_AUTO_TEST_SUITE(queue)

// A get that frees a place moves the first waiting putter's item in; if
// that move throws, the put fails with it, the get still returns its item,
// and nobody is left waiting on a queue that is not full.
BOOST_AUTO_TEST_CASE(a_putter_whose_item_cannot_be_moved_in_fails_its_put) {
    on_new_thread([] {
        fibers::queue<fragile> q(1);
        q.put(fragile(1));
        std::string put_error;
        fibers::task putter = fibers::spawn([&] {
            try {
                q.put(fragile(2, 0)); // its first move, into the queue, throws
            } catch (std::runtime_error const& e) {
                put_error = e.what();
            }
        });
        poll_in_fiber([&] { return q.waiter_count() == 1; });
        int got = 0;
        BOOST_CHECK_NO_THROW(got = q.get().value);
        BOOST_TEST(got == 1);
        BOOST_CHECK_NO_THROW(putter.join(10s));
        BOOST_TEST(put_error == "move failed");
        BOOST_TEST(q.qsize() == 0u);
        BOOST_TEST(q.waiter_count() == 0u);
        BOOST_TEST(q.unfinished_tasks() == 1u); // the first put only
    });
}

// A get whose item cannot be moved out to it throws, and the item stays
// next in the queue.
BOOST_AUTO_TEST_CASE(an_item_that_cannot_be_moved_out_stays_in_the_queue) {
    on_new_thread([] {
        fibers::queue<fragile> q;
        q.put(fragile(1, 1)); // moved in; its next move, out, throws
        q.put(fragile(2));
        BOOST_CHECK_THROW(q.get(), std::runtime_error);
        BOOST_TEST(q.qsize() == 2u);
        BOOST_TEST(q.get().value == 1);
        BOOST_TEST(q.get().value == 2);
        // Handed to a waiting getter, then its move out to it throws: given back.
        fibers::task putter = fibers::spawn([&] {
            fibers::sleep(1ms);
            q.put(fragile(3, 1));
        });
        BOOST_CHECK_THROW(q.get(), std::runtime_error);
        putter.join();
        BOOST_TEST(q.qsize() == 1u);
        BOOST_TEST(q.get().value == 3);
    });
}

// A comparison that throws leaves a priority_queue as it was, in put and
// in get.
BOOST_AUTO_TEST_CASE(a_throwing_comparison_leaves_a_priority_queue_as_it_was) {
    on_new_thread([] {
        fibers::priority_queue<int, throwing_less> q;
        for (int v : {5, 3, 8, 1, 9, 2, 7})
            q.put(v);
        throwing_less::armed = true;
        BOOST_CHECK_THROW(q.put(0), std::runtime_error);
        BOOST_CHECK_THROW(q.put_nowait(4), std::runtime_error);
        BOOST_CHECK_THROW(q.get(), std::runtime_error);
        throwing_less::armed = false;
        BOOST_TEST(q.qsize() == 7u);
        BOOST_TEST(q.unfinished_tasks() == 7u);
        std::vector<int> order;
        while (!q.empty())
            order.push_back(q.get());
        BOOST_TEST(order == (std::vector<int>{1, 2, 3, 5, 7, 8, 9}), boost::test_tools::per_element());
    });
}

BOOST_AUTO_TEST_CASE(a_priority_queue_keeps_its_order) {
    on_new_thread([] {
        fibers::priority_queue<int> q;
        std::vector<int> expected;
        unsigned x = 12345;
        for (int i = 0; i < 500; ++i) {
            x = x * 1103515245u + 12345u;
            int v = static_cast<int>((x >> 8) % 100);
            q.put(v);
            expected.push_back(v);
            if (i % 7 == 0) { // interleaved gets
                std::sort(expected.begin(), expected.end());
                BOOST_TEST(q.get() == expected.front());
                expected.erase(expected.begin());
            }
        }
        std::sort(expected.begin(), expected.end());
        std::vector<int> got;
        while (!q.empty())
            got.push_back(q.get());
        BOOST_TEST(got == expected, boost::test_tools::per_element());
    });
}

BOOST_AUTO_TEST_CASE(orders) {
    on_new_thread([] {
        fibers::queue<int> fifo;
        fibers::lifo_queue<int> lifo;
        fibers::priority_queue<int> smallest;
        for (int v : {3, 1, 4, 1, 5, 9, 2, 6}) {
            fifo.put(v);
            lifo.put(v);
            smallest.put(v);
        }
        std::vector<int> a, b, c;
        while (!fifo.empty())
            a.push_back(fifo.get());
        while (!lifo.empty())
            b.push_back(lifo.get());
        while (!smallest.empty())
            c.push_back(smallest.get());
        BOOST_TEST(a == (std::vector<int>{3, 1, 4, 1, 5, 9, 2, 6}));
        BOOST_TEST(b == (std::vector<int>{6, 2, 9, 5, 1, 4, 1, 3}));
        BOOST_TEST(c == (std::vector<int>{1, 1, 2, 3, 4, 5, 6, 9}));
        fibers::priority_queue<std::string> words;
        for (char const* w : {"pear", "apple", "fig"})
            words.put(w);
        BOOST_TEST(words.get() == "apple");
        BOOST_TEST(words.get() == "fig");
        fibers::priority_queue<int, std::greater<int>> largest;
        largest.put(1);
        largest.put(7);
        BOOST_TEST(largest.get() == 7);
    });
}

BOOST_AUTO_TEST_CASE(nowait_and_timeouts) {
    on_new_thread([] {
        fibers::queue<int> q(2);
        BOOST_TEST(q.maxsize() == 2u);
        BOOST_TEST(q.empty());
        BOOST_CHECK_THROW(q.get_nowait(), fibers::queue_empty);
        BOOST_CHECK_THROW(q.get(false), fibers::queue_empty);
        BOOST_CHECK_THROW(q.get(10ms), fibers::queue_empty);
        BOOST_CHECK_THROW(q.get(0ms), fibers::queue_empty);
        q.put_nowait(1);
        q.put(2, false);
        BOOST_TEST(q.full());
        BOOST_TEST(q.qsize() == 2u);
        BOOST_CHECK_THROW(q.put_nowait(3), fibers::queue_full);
        BOOST_CHECK_THROW(q.put(3, false), fibers::queue_full);
        BOOST_CHECK_THROW(q.put(3, 10ms), fibers::queue_full);
        BOOST_CHECK_THROW(q.put(3, -1ms), fibers::queue_full);
        BOOST_TEST(q.qsize() == 2u);
        BOOST_TEST(q.get(10ms) == 1);
        BOOST_TEST(q.get(false) == 2);
        BOOST_TEST(q.waiter_count() == 0u);
        fibers::queue<int> unbounded;
        for (int i = 0; i < 1000; ++i)
            unbounded.put_nowait(i);
        BOOST_TEST(unbounded.qsize() == 1000u);
        BOOST_TEST(!unbounded.full());
    });
}

BOOST_AUTO_TEST_CASE(a_full_queue_blocks_put_until_a_get) {
    on_new_thread([] {
        fibers::queue<int> q(2);
        int put_done = 0;
        fibers::task producer = fibers::spawn([&] {
            for (int i = 0; i < 5; ++i) {
                q.put(i);
                ++put_done;
            }
        });
        poll_in_fiber([&] { return q.waiter_count() == 1; });
        BOOST_TEST(put_done == 2);
        BOOST_TEST(q.qsize() == 2u);
        std::vector<int> got;
        for (int i = 0; i < 5; ++i)
            got.push_back(q.get());
        producer.join();
        BOOST_TEST(got == (std::vector<int>{0, 1, 2, 3, 4}));
        // A timed put that finds a place in time.
        q.put(1);
        q.put(2);
        fibers::task getter = fibers::spawn([&] {
            fibers::sleep(2ms);
            q.get();
        });
        q.put(3, 10s);
        getter.join();
        BOOST_TEST(q.get() == 2);
        BOOST_TEST(q.get() == 3);
    });
}

BOOST_AUTO_TEST_CASE(putters_and_getters_are_served_in_arrival_order) {
    on_new_thread([] {
        fibers::queue<std::string> q(1);
        event_log got;
        std::vector<fibers::task> getters;
        for (std::string name : {"a", "b", "c"})
            getters.push_back(fibers::spawn([&, name] { got(name + "=" + q.get()); }));
        poll_in_fiber([&] { return q.waiter_count() == 3; });
        q.put("1");
        q.put("2");
        q.put("3");
        for (auto& t : getters)
            t.join();
        BOOST_TEST(got.events == (std::vector<std::string>{"a=1", "b=2", "c=3"}));

        q.put("first");
        std::vector<fibers::task> putters;
        for (std::string name : {"x", "y", "z"})
            putters.push_back(fibers::spawn([&, name] { q.put(name); }));
        poll_in_fiber([&] { return q.waiter_count() == 3; });
        std::vector<std::string> order;
        for (int i = 0; i < 4; ++i)
            order.push_back(q.get());
        for (auto& t : putters)
            t.join();
        BOOST_TEST(order == (std::vector<std::string>{"first", "x", "y", "z"}));
    });
}

BOOST_AUTO_TEST_CASE(task_done_and_join) {
    on_new_thread([] {
        fibers::queue<int> q;
        q.join(); // nothing put: at once
        BOOST_CHECK_THROW(q.task_done(), std::invalid_argument);
        for (int i = 0; i < 3; ++i)
            q.put(i);
        bool joined = false;
        fibers::task joiner = fibers::spawn([&] {
            q.join();
            joined = true;
        });
        BOOST_TEST(!q.join(5ms));
        for (int i = 0; i < 3; ++i) {
            q.get();
            fibers::sleep(0s);
            BOOST_TEST(!joined);
            q.task_done();
        }
        joiner.join();
        BOOST_TEST(joined);
        BOOST_TEST(q.join(0ms));
        BOOST_TEST(q.unfinished_tasks() == 0u);
        BOOST_CHECK_THROW(q.task_done(), std::invalid_argument);
    });
}

BOOST_AUTO_TEST_CASE(move_only_items) {
    on_new_thread([] {
        fibers::queue<std::unique_ptr<int>> q(1);
        q.put(std::make_unique<int>(1));
        fibers::task putter = fibers::spawn([&] { q.put(std::make_unique<int>(2)); }); // waits: full
        poll_in_fiber([&] { return q.waiter_count() == 1; });
        BOOST_TEST(*q.get() == 1);
        BOOST_TEST(*q.get() == 2);
        putter.join();
        std::unique_ptr<int> got;
        fibers::task getter = fibers::spawn([&] { got = q.get(); }); // handed straight over
        poll_in_fiber([&] { return q.waiter_count() == 1; });
        q.put(std::make_unique<int>(3));
        getter.join();
        BOOST_TEST(*got == 3);
        fibers::lifo_queue<std::unique_ptr<int>> lifo;
        lifo.put_nowait(std::make_unique<int>(4));
        BOOST_TEST(*lifo.get_nowait() == 4);
        struct by_value {
            bool operator()(std::unique_ptr<int> const& a, std::unique_ptr<int> const& b) const { return *a < *b; }
        };
        fibers::priority_queue<std::unique_ptr<int>, by_value> smallest;
        smallest.put(std::make_unique<int>(8));
        smallest.put(std::make_unique<int>(5));
        BOOST_TEST(*smallest.get() == 5);
    });
}

BOOST_AUTO_TEST_CASE(producers_on_plain_threads_consumers_on_two_hubs) {
    fibers::queue<int> q(8);
    constexpr int per_producer = 500;
    std::atomic<long> sum{0};
    std::atomic<int> received{0};
    auto consume = [&] {
        on_new_thread([&] {
            std::vector<fibers::task> tasks;
            for (int i = 0; i < 2; ++i)
                tasks.push_back(fibers::spawn([&] {
                    for (;;) {
                        int v = q.get();
                        if (v >= 0) {
                            sum += v;
                            ++received;
                        }
                        q.task_done(); // after the work: join() waits for it
                        if (v < 0)
                            return;
                    }
                }));
            for (auto& t : tasks)
                t.join();
        });
    };
    std::thread one(consume);
    std::thread two(consume);
    std::vector<std::thread> producers;
    for (int p = 0; p < 2; ++p)
        producers.emplace_back([&] {
            for (int i = 1; i <= per_producer; ++i)
                q.put(i); // blocks the thread while the queue is full
        });
    for (auto& t : producers)
        t.join();
    q.join(); // a plain thread (the test's) blocks until every item is done
    BOOST_TEST(received == 2 * per_producer);
    for (int i = 0; i < 4; ++i)
        q.put(-1); // one stop per consumer task
    one.join();
    two.join();
    BOOST_TEST(sum == 2L * per_producer * (per_producer + 1) / 2);
    BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_CASE(a_task_cancelled_while_waiting_loses_nothing) {
    on_new_thread([] {
        captured_log log;
        fibers::queue<int> q(1);
        fibers::task getter = fibers::spawn([&] { q.get(); });
        poll_in_fiber([&] { return q.waiter_count() == 1; });
        getter.cancel();
        getter.join();
        BOOST_TEST(q.waiter_count() == 0u);
        q.put(1);
        fibers::task putter = fibers::spawn([&] { q.put(2); });
        poll_in_fiber([&] { return q.waiter_count() == 1; });
        putter.cancel();
        putter.join();
        BOOST_TEST(q.waiter_count() == 0u);
        BOOST_TEST(q.get() == 1);
        BOOST_TEST(q.empty()); // the cancelled put did not happen
        BOOST_TEST(log.size() == 0u);
    });
}

// The cancel is queued before the hand-over's resumption: the get had
// completed, so it returns the item, and the cancel comes at the next wait.
BOOST_AUTO_TEST_CASE(an_item_handed_over_before_the_cancel_came_is_kept) {
    on_new_thread([] {
        fibers::queue<int> q;
        int a_got = 0;
        bool b_got = false;
        std::string a_next;
        fibers::task a = fibers::spawn([&] {
            a_got = q.get();
            a_next = what_a_sleep_does(10ms);
        });
        fibers::task b = fibers::spawn([&] {
            try {
                q.get(50ms);
                b_got = true;
            } catch (fibers::queue_empty const&) {
            }
        });
        poll_in_fiber([&] { return q.waiter_count() == 2; });
        a.cancel();
        q.put(7);
        q.put(8);
        a.join();
        b.join();
        BOOST_TEST(a_got == 7);
        BOOST_TEST(a_next == "threw cancelled");
        BOOST_TEST(b_got); // 8
        BOOST_TEST(q.empty());
        BOOST_TEST(q.unfinished_tasks() == 2u);
    });
}

// The same for a putter on a full queue whose item a get moved in.
BOOST_AUTO_TEST_CASE(a_put_done_before_the_cancel_came_returns) {
    on_new_thread([] {
        fibers::queue<int> q(1);
        q.put(1);
        bool put = false;
        std::string next;
        fibers::task a = fibers::spawn([&] {
            q.put(2);
            put = true;
            next = what_a_sleep_does(10ms);
        });
        poll_in_fiber([&] { return q.waiter_count() == 1; });
        a.cancel();
        BOOST_TEST(q.get() == 1); // moves 2 in and wakes "a"
        a.join();
        BOOST_TEST(put);
        BOOST_TEST(next == "threw cancelled");
        BOOST_TEST(q.get_nowait() == 2);
        BOOST_TEST(q.empty());
    });
}

// The hand-over comes from another thread, so the getter's resumption waits
// in its hub's mailbox when the cancel reaches it: the getter must take it
// back from there, or it would later resume a fiber that has moved on.
BOOST_AUTO_TEST_CASE(a_getter_cancelled_after_a_hand_over_from_another_thread) {
    on_new_thread([] {
        fibers::queue<int> q;
        int a_got = 0;
        std::string a_next, a_after;
        fibers::task a = fibers::spawn([&] {
            a_got = q.get();
            a_next = what_a_sleep_does(10ms);
            a_after = what_a_sleep_does(10ms);
        });
        poll_in_fiber([&] { return q.waiter_count() == 1; });
        a.cancel();
        // The hub's thread blocks here, without a switch: the resumption
        // stays in the mailbox until the join below lets the hub run.
        std::thread([&] { q.put(7); }).join();
        a.join();
        BOOST_TEST(a_got == 7);
        BOOST_TEST(a_next == "threw cancelled");
        BOOST_TEST(a_after == "slept");
        BOOST_TEST(q.empty());
        // The hub and the queue still work.
        fibers::task b = fibers::spawn([&] { a_got = q.get(); });
        fibers::sleep(0s);
        std::thread([&] { q.put(8); }).join();
        b.join();
        BOOST_TEST(a_got == 8);
    });
}

// A getter unwound with an item in hand gives it to the next getter.
BOOST_AUTO_TEST_CASE(an_item_handed_to_a_task_unwound_before_it_ran_goes_on) {
    fibers::queue<int> q;
    std::atomic<int> thread_got{0};
    std::optional<plain_thread> other;
    on_new_thread([&] {
        fibers::task a = fibers::spawn([&] { q.get(); });
        poll_in_fiber([&] { return q.waiter_count() == 1; });
        other.emplace([&] { thread_got = q.get(10s); });
        poll_in_fiber([&] { return q.waiter_count() == 2; });
        q.put(7); // to "a", whose resumption is queued
        fibers::get_hub().close(); // unwinds "a" first
    });
    other->join();
    BOOST_TEST(thread_got == 7);
    BOOST_TEST(q.empty());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(switchpoints)

BOOST_AUTO_TEST_CASE(non_blocking_calls_work_inside_assert_no_switchpoints) {
    on_new_thread([] {
        fibers::mutex m;
        fibers::recursive_mutex rm;
        fibers::event e;
        fibers::condition c(m);
        fibers::queue<int> q(1);
        m.acquire();
        {
            fibers::assert_no_switchpoints guard;
            c.notify();
            c.notify_all();
            m.release();
            BOOST_TEST(m.acquire(false));
            BOOST_TEST(!m.try_lock());
            m.unlock();
            BOOST_TEST(rm.try_lock());
            rm.release();
            e.set();
            BOOST_TEST(e.is_set());
            e.clear();
            q.put_nowait(1);
            BOOST_CHECK_THROW(q.put(2, false), fibers::queue_full);
            BOOST_TEST(q.get_nowait() == 1);
            BOOST_CHECK_THROW(q.get(false), fibers::queue_empty);
            q.task_done();
            BOOST_TEST(q.qsize() == 0u);
        }
    });
}

BOOST_AUTO_TEST_CASE(blocking_calls_are_switchpoints_even_when_they_need_not_wait) {
    on_new_thread([] {
        fibers::mutex m;
        fibers::recursive_mutex rm;
        fibers::event e;
        fibers::condition c(m);
        fibers::queue<int> q;
        e.set();
        q.put(1);
        {
            fibers::assert_no_switchpoints guard;
            BOOST_CHECK_THROW(m.acquire(), fibers::switchpoint_violation);
            BOOST_CHECK_THROW(m.lock(), fibers::switchpoint_violation);
            BOOST_CHECK_THROW(m.acquire(1ms), fibers::switchpoint_violation);
            BOOST_CHECK_THROW(rm.acquire(), fibers::switchpoint_violation);
            BOOST_CHECK_THROW(e.wait(), fibers::switchpoint_violation);
            BOOST_CHECK_THROW(q.get(), fibers::switchpoint_violation);
            BOOST_CHECK_THROW(q.put(2), fibers::switchpoint_violation);
            BOOST_CHECK_THROW(q.join(), fibers::switchpoint_violation);
        }
        BOOST_TEST(!m.locked());
        BOOST_TEST(q.qsize() == 1u);
        m.acquire();
        {
            fibers::assert_no_switchpoints guard;
            BOOST_CHECK_THROW(c.wait(), fibers::switchpoint_violation);
            BOOST_CHECK_THROW(c.wait_for([] { return true; }), fibers::switchpoint_violation);
        }
        BOOST_TEST(m.locked()); // the refused wait kept the lock
        m.release();
    });
}

BOOST_AUTO_TEST_CASE(non_blocking_calls_from_a_hub_callback) {
    on_new_thread([] {
        fibers::mutex m;
        fibers::event e;
        fibers::queue<int> q;
        bool got = false;
        bool refused = false;
        m.acquire();
        fibers::get_hub().run_callback([&] {
            got = m.acquire(false); // held by the root: false, without waiting
            q.put_nowait(5);
            try {
                e.wait(); // the hub fiber cannot wait
            } catch (fibers::error const&) {
                refused = true;
            }
            e.set();
        });
        BOOST_TEST(e.wait(20s));
        BOOST_TEST(!got);
        BOOST_TEST(refused);
        BOOST_TEST(q.get_nowait() == 5);
        m.release();
    });
}

BOOST_AUTO_TEST_SUITE_END()

// A timeout too long for the clock waits for ever; one already passed (zero,
// negative, NaN) tries once.
BOOST_AUTO_TEST_SUITE(durations)

BOOST_AUTO_TEST_CASE(timeouts_too_long_for_the_clock_wait_for_what_comes) {
    on_new_thread([] {
        fibers_test::for_each_duration(fibers_test::durations_too_long_for_the_clock(), [](auto d) {
            fibers::mutex m;
            fibers::event e;
            fibers::queue<int> q(1);
            fibers::task helper = fibers::spawn([&] {
                m.acquire();
                fibers::sleep(5ms);
                m.release();
                fibers::sleep(5ms);
                e.set();
                fibers::sleep(5ms);
                q.put(1);
                fibers::sleep(5ms);
                q.put(2); // full: waits for the main fiber's get
            });
            fibers::sleep(0s); // the helper takes the lock first
            BOOST_TEST(m.acquire(d));
            BOOST_TEST(e.wait(d));
            BOOST_TEST(q.get(d) == 1);
            q.task_done();
            poll_in_fiber([&] { return q.full(); });
            fibers::task putter = fibers::spawn([&] { q.put(3, d); }); // waits for a place
            poll_in_fiber([&] { return q.waiter_count() == 1; });
            BOOST_TEST(q.get(d) == 2);
            q.task_done();
            putter.join();
            BOOST_TEST(q.get(d) == 3);
            fibers::spawn([&] {
                fibers::sleep(5ms);
                q.task_done();
            });
            BOOST_TEST(q.join(d));
            fibers::condition c(m);
            bool ready = false;
            fibers::spawn([&] {
                fibers::sleep(5ms);
                std::lock_guard<fibers::mutex> lock(m);
                ready = true;
                c.notify();
            });
            BOOST_TEST(c.wait(d)); // the lock is held since m.acquire(d)
            BOOST_TEST(ready);
            fibers::spawn([&] {
                fibers::sleep(5ms);
                std::lock_guard<fibers::mutex> lock(m);
                ready = false;
                c.notify();
            });
            BOOST_TEST(c.wait_for([&] { return !ready; }, d));
            m.release();
            helper.join();
        });
    });
}

BOOST_AUTO_TEST_CASE(timeouts_too_long_for_the_clock_on_a_plain_thread) {
    fibers_test::for_each_duration(fibers_test::durations_too_long_for_the_clock(), [](auto d) {
        fibers::event e;
        plain_thread setter([&] {
            std::this_thread::sleep_for(5ms);
            e.set();
        });
        plain_thread waiter([&] { BOOST_TEST(e.wait(d)); });
        waiter.join();
        setter.join();
    });
}

BOOST_AUTO_TEST_CASE(timeouts_already_passed_try_once) {
    on_new_thread([] {
        fibers_test::for_each_duration(fibers_test::durations_already_passed(), [](auto d) {
            fibers::mutex m;
            fibers::event e;
            fibers::queue<int> q(1);
            fibers::condition c(m);
            fibers::task holder = fibers::spawn([&] {
                std::lock_guard<fibers::mutex> lock(m);
                fibers::sleep(1h);
            });
            fibers::sleep(0s);
            BOOST_TEST(!m.acquire(d));
            BOOST_TEST(!e.wait(d));
            BOOST_CHECK_THROW(q.get(d), fibers::queue_empty);
            q.put(1);
            BOOST_CHECK_THROW(q.put(2, d), fibers::queue_full);
            BOOST_TEST(!q.join(d));
            holder.cancel();
            holder.join();
            std::lock_guard<fibers::mutex> lock(m);
            BOOST_TEST(!c.wait(d));
            BOOST_TEST(!c.wait_for([] { return false; }, d));
            BOOST_TEST(m.locked()); // still held: a wait already passed does not let go
        });
    });
}

BOOST_AUTO_TEST_SUITE_END()
