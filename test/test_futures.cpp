// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#define BOOST_TEST_MODULE futures
#include <boost/test/unit_test.hpp>

#include <fibers/futures.hpp>
#include <fibers/hub.hpp>
#include <fibers/switchpoint.hpp>
#include <fibers/sync.hpp>
#include <fibers/task.hpp>

#include "cancel_support.hpp"
#include "hub_support.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using fibers_test::captured_log;
using fibers_test::on_new_thread;
using fibers_test::what_a_sleep_does;

namespace {

// Closed until opened, from any thread. A wait gives up after a backstop,
// so that a broken pool fails the test instead of hanging it.
class gate {
public:
    void open() {
        std::lock_guard<std::mutex> lock(mutex_);
        open_ = true;
        changed_.notify_all();
    }
    bool wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        return changed_.wait_for(lock, 10s, [this] { return open_; });
    }
    bool is_open() {
        std::lock_guard<std::mutex> lock(mutex_);
        return open_;
    }

private:
    std::mutex mutex_;
    std::condition_variable changed_;
    bool open_ = false;
};

// `parties` threads meet: each arrival waits for all (false on the backstop).
class rendezvous {
public:
    explicit rendezvous(std::size_t parties) : parties_(parties) {}
    bool arrive_and_wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        ++arrived_;
        all_.notify_all();
        return all_.wait_for(lock, 10s, [this] { return arrived_ >= parties_; });
    }

private:
    std::mutex mutex_;
    std::condition_variable all_;
    std::size_t const parties_;
    std::size_t arrived_ = 0;
};

// From a fiber: lets the hub run until `pred` holds (false on the backstop).
template <class Pred>
bool serve_until(Pred pred) {
    for (int i = 0; i < 10'000 && !pred(); ++i)
        fibers::sleep(1ms);
    return pred();
}

} // namespace

BOOST_AUTO_TEST_SUITE(future_basics)

BOOST_AUTO_TEST_CASE(result_and_exception_of_a_value) {
    on_new_thread([] {
        fibers::thread_pool pool(2);
        fibers::future<int> f = pool.submit([] { return 42; });
        BOOST_TEST(f.result() == 42);
        BOOST_TEST(f.done());
        BOOST_TEST(!f.running());
        BOOST_TEST(!f.cancelled());
        BOOST_TEST(!f.cancel()); // finished: too late
        BOOST_TEST(!f.exception());
        BOOST_TEST(f.result(0s) == 42); // done: no wait, no timeout
    });
}

BOOST_AUTO_TEST_CASE(result_rethrows_what_the_work_threw) {
    on_new_thread([] {
        fibers::thread_pool pool(1);
        fibers::future<int> f = pool.submit([]() -> int { throw std::runtime_error("boom"); });
        BOOST_CHECK_EXCEPTION(f.result(), std::runtime_error,
                              [](std::runtime_error const& e) { return std::string(e.what()) == "boom"; });
        std::exception_ptr e = f.exception();
        BOOST_REQUIRE(e);
        BOOST_CHECK_THROW(std::rethrow_exception(e), std::runtime_error);
        BOOST_TEST(f.done());
        BOOST_TEST(!f.cancelled());
    });
}

BOOST_AUTO_TEST_CASE(void_futures_and_conversion) {
    on_new_thread([] {
        fibers::thread_pool pool(1);
        bool ran = false;
        fibers::future<void> f = pool.submit([&] { ran = true; });
        f.result();
        BOOST_TEST(ran);
        fibers::future<void> g = pool.submit([] { return 7; }); // any future as a future<void>
        g.result();
        fibers::future<void> h = pool.submit([]() -> int { throw std::logic_error("bad"); });
        BOOST_CHECK_THROW(h.result(), std::logic_error);
    });
}

BOOST_AUTO_TEST_CASE(copies_share_one_state) {
    on_new_thread([] {
        fibers::thread_pool pool(1);
        gate g;
        fibers::future<std::string> f = pool.submit([&] {
            g.wait();
            return std::string("shared");
        });
        fibers::future<std::string> copy = f;
        fibers::future<std::string> other = pool.submit([] { return std::string(); });
        BOOST_TEST((copy == f));
        BOOST_TEST((copy != other));
        g.open();
        BOOST_TEST(copy.result() == "shared");
        BOOST_TEST(f.done());
        BOOST_TEST(&copy.result() == &f.result()); // one value, not a copy each
    });
}

BOOST_AUTO_TEST_CASE(an_empty_future_is_an_error) {
    fibers::future<int> f;
    BOOST_TEST(!f.valid());
    BOOST_CHECK_THROW(f.result(), fibers::error);
    BOOST_CHECK_THROW(f.done(), fibers::error);
    BOOST_CHECK_THROW(f.add_done_callback([] {}), fibers::error);
}

BOOST_AUTO_TEST_CASE(result_with_a_timeout) {
    on_new_thread([] {
        fibers::thread_pool pool(1);
        gate g;
        fibers::future<int> f = pool.submit([&] {
            g.wait();
            return 5;
        });
        BOOST_CHECK_THROW(f.result(10ms), fibers::timeout);
        BOOST_CHECK_THROW(f.exception(1ms), fibers::timeout);
        BOOST_CHECK_THROW(f.result(0s), fibers::timeout); // not done, and no wait
        BOOST_TEST(!f.wait(1ms));
        BOOST_TEST(!f.done());
        g.open();
        BOOST_TEST(f.result(10s) == 5);
        BOOST_TEST(f.wait(0s));
    });
}

BOOST_AUTO_TEST_CASE(cancel_succeeds_only_before_the_work_starts) {
    on_new_thread([] {
        fibers::thread_pool pool(1);
        gate started, release;
        std::atomic<bool> second_ran{false};
        fibers::future<int> first = pool.submit([&] {
            started.open();
            release.wait();
            return 1;
        });
        fibers::future<int> second = pool.submit([&] {
            second_ran = true;
            return 2;
        });
        BOOST_REQUIRE(started.wait());
        BOOST_TEST(first.running());
        BOOST_TEST(!first.cancel()); // running
        BOOST_TEST(second.cancel()); // queued behind it
        BOOST_TEST(second.cancel()); // already cancelled: still true
        BOOST_TEST(second.cancelled());
        BOOST_TEST(second.done());
        BOOST_CHECK_THROW(second.result(), fibers::cancelled);
        std::exception_ptr e = second.exception();
        BOOST_CHECK_THROW(std::rethrow_exception(e), fibers::cancelled);
        release.open();
        BOOST_TEST(first.result() == 1);
        BOOST_TEST(!first.cancelled());
        pool.join();
        BOOST_TEST(!second_ran); // a cancelled item is dropped, never run
    });
}

BOOST_AUTO_TEST_CASE(the_work_is_released_before_its_result_is_seen) {
    on_new_thread([] {
        fibers::thread_pool pool(1);
        auto held = std::make_shared<int>(1);
        std::weak_ptr<int> watch = held;
        fibers::future<void> f = pool.submit([held = std::move(held)] {});
        f.result();
        BOOST_TEST(watch.expired());
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(done_callbacks)

BOOST_AUTO_TEST_CASE(after_completion_runs_at_once) {
    on_new_thread([] {
        fibers::thread_pool pool(1);
        fibers::future<int> f = pool.submit([] { return 3; });
        f.wait();
        int seen = 0;
        bool nullary = false;
        f.add_done_callback([&](fibers::future<int> done) { seen = done.result(); });
        f.add_done_callback([&] { nullary = true; });
        BOOST_TEST(seen == 3);
        BOOST_TEST(nullary);
    });
}

BOOST_AUTO_TEST_CASE(before_completion_runs_in_the_completing_thread_in_order) {
    on_new_thread([] {
        fibers::thread_pool pool(1);
        gate g;
        std::thread::id worker;
        fibers::future<int> f = pool.submit([&] {
            worker = std::this_thread::get_id();
            g.wait();
            return 9;
        });
        std::mutex mutex;
        std::vector<std::string> order;
        std::thread::id ran_on;
        f.add_done_callback([&](fibers::future<int> done) {
            std::lock_guard<std::mutex> lock(mutex);
            order.push_back("first " + std::to_string(done.result()));
            ran_on = std::this_thread::get_id();
        });
        f.add_done_callback([&] {
            std::lock_guard<std::mutex> lock(mutex);
            order.push_back("second");
        });
        {
            std::lock_guard<std::mutex> lock(mutex);
            BOOST_TEST(order.empty());
        }
        g.open();
        f.result();
        pool.join(); // the callbacks ran before the worker counted the item done
        std::lock_guard<std::mutex> lock(mutex);
        BOOST_TEST(order == (std::vector<std::string>{"first 9", "second"}));
        BOOST_TEST((ran_on == worker));
        BOOST_TEST((ran_on != std::this_thread::get_id()));
    });
}

BOOST_AUTO_TEST_CASE(exceptions_from_callbacks_are_logged) {
    on_new_thread([] {
        captured_log log;
        fibers::thread_pool pool(1);
        gate g;
        fibers::future<int> f = pool.submit([&] {
            g.wait();
            return 1;
        });
        std::atomic<bool> next{false};
        f.add_done_callback([] { throw std::runtime_error("callback broke"); });
        f.add_done_callback([&] { next = true; });
        g.open();
        BOOST_TEST(f.result() == 1); // not propagated to the waiter
        pool.join();
        BOOST_TEST(log.contains("callback broke"));
        BOOST_TEST(next.load());
        f.add_done_callback([] { throw std::runtime_error("late callback broke"); }); // at once: logged too
        BOOST_TEST(log.contains("late callback broke"));
    });
}

BOOST_AUTO_TEST_CASE(a_cancel_runs_the_callbacks) {
    on_new_thread([] {
        fibers::thread_pool pool(1);
        gate g;
        fibers::future<void> busy = pool.submit([&] { g.wait(); });
        fibers::future<int> queued = pool.submit([] { return 1; });
        bool seen_cancelled = false;
        queued.add_done_callback([&](fibers::future<int> f) { seen_cancelled = f.cancelled(); });
        BOOST_TEST(queued.cancel());
        BOOST_TEST(seen_cancelled); // in the canceller
        g.open();
    });
}

BOOST_AUTO_TEST_CASE(a_state_dropped_unfinished_deletes_its_callbacks_uncalled) {
    // As for work no pool ever ran: the detail API makes such a state.
    auto captured = std::make_shared<int>(0);
    bool called = false;
    {
        fibers::future<int> f = fibers::detail::future_access::share<int>(new fibers::detail::future_value<int>);
        f.add_done_callback([&called, captured] { called = true; });
        f.add_done_callback([&called, captured] { called = true; });
        BOOST_TEST(captured.use_count() == 3);
    }
    BOOST_TEST(captured.use_count() == 1);
    BOOST_TEST(!called);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(thread_pools)

BOOST_AUTO_TEST_CASE(workers_run_concurrently_up_to_maxsize) {
    on_new_thread([] {
        fibers::thread_pool pool(3);
        BOOST_TEST(pool.maxsize() == 3u);
        BOOST_TEST(pool.size() == 0u); // made on demand
        rendezvous all(3);
        std::vector<fibers::future<std::thread::id>> futures;
        for (int i = 0; i < 3; ++i)
            futures.push_back(pool.submit([&] {
                if (!all.arrive_and_wait())
                    throw std::runtime_error("the workers never met");
                return std::this_thread::get_id();
            }));
        std::set<std::thread::id> threads;
        for (auto& f : futures)
            threads.insert(f.result());
        BOOST_TEST(threads.size() == 3u);
        BOOST_TEST(threads.count(std::this_thread::get_id()) == 0u);
    });
}

BOOST_AUTO_TEST_CASE(maxsize_is_respected) {
    on_new_thread([] {
        fibers::thread_pool pool(2);
        gate g;
        std::atomic<int> active{0};
        std::atomic<int> most{0};
        std::vector<fibers::future<void>> futures;
        for (int i = 0; i < 6; ++i)
            futures.push_back(pool.submit([&] {
                int now = ++active;
                int seen = most.load();
                while (now > seen && !most.compare_exchange_weak(seen, now)) {
                }
                g.wait();
                --active;
            }));
        BOOST_TEST(pool.size() == 2u);
        g.open();
        for (auto& f : futures)
            f.result();
        BOOST_TEST(most.load() <= 2);
        BOOST_TEST(pool.size() == 2u);
    });
}

BOOST_AUTO_TEST_CASE(an_idle_worker_is_reused) {
    on_new_thread([] {
        fibers::thread_pool pool(4);
        pool.submit([] {}).result();
        pool.join(); // the worker is idle again
        pool.submit([] {}).result();
        BOOST_TEST(pool.size() == 1u);
    });
}

BOOST_AUTO_TEST_CASE(join_waits_for_all_work) {
    on_new_thread([] {
        fibers::thread_pool pool(2);
        gate g;
        std::atomic<int> finished{0};
        for (int i = 0; i < 5; ++i)
            pool.submit([&] {
                g.wait();
                ++finished;
            });
        std::thread opener([&] {
            std::this_thread::sleep_for(20ms);
            g.open();
        });
        pool.join();
        BOOST_TEST(finished.load() == 5);
        BOOST_TEST(pool.size() == 2u); // not closed: the workers stay
        opener.join();
    });
}

BOOST_AUTO_TEST_CASE(close_then_join) {
    on_new_thread([] {
        fibers::thread_pool pool(2);
        gate g;
        fibers::future<int> queued_before = pool.submit([&] {
            g.wait();
            return 1;
        });
        pool.close();
        BOOST_CHECK_THROW(pool.submit([] { return 2; }), fibers::error);
        g.open();
        pool.join();
        BOOST_TEST(queued_before.done());
        BOOST_TEST(queued_before.result() == 1); // queued before close: still run
        BOOST_TEST(pool.size() == 0u);           // the workers exited and were joined
        pool.join();                              // again: nothing to do
    });
}

BOOST_AUTO_TEST_CASE(the_destructor_runs_the_queued_work) {
    on_new_thread([] {
        std::atomic<int> ran{0};
        fibers::future<void> last;
        {
            fibers::thread_pool pool(1);
            gate g;
            pool.submit([&] {
                g.wait();
                ++ran;
            });
            last = pool.submit([&] { ++ran; });
            g.open();
        }
        BOOST_TEST(ran.load() == 2);
        BOOST_TEST(last.done());
    });
}

BOOST_AUTO_TEST_CASE(maxsize_zero_is_invalid) {
    BOOST_CHECK_THROW(fibers::thread_pool(0), std::invalid_argument);
    on_new_thread([] { BOOST_CHECK_THROW(fibers::fiber_pool(0), std::invalid_argument); });
}

BOOST_AUTO_TEST_CASE(map_returns_the_results_in_order) {
    on_new_thread([] {
        fibers::thread_pool pool(3);
        std::vector<int> in{1, 2, 3, 4, 5};
        std::vector<int> out = pool.map([](int x) { return x * x; }, in);
        BOOST_TEST(out == (std::vector<int>{1, 4, 9, 16, 25}));
        std::atomic<int> sum{0};
        pool.map([&](int x) { sum += x; }, in); // void: waits, returns nothing
        BOOST_TEST(sum.load() == 15);
        BOOST_TEST(pool.map([](int x) { return x; }, std::vector<int>{}).empty());
        // Each call has its own copy of fn: a mutable one works, and starts afresh.
        std::vector<int> firsts = pool.map([calls = 0](int) mutable { return ++calls; }, in);
        BOOST_TEST(firsts == (std::vector<int>{1, 1, 1, 1, 1}));
    });
}

BOOST_AUTO_TEST_CASE(map_rethrows_and_cancels_the_rest) {
    on_new_thread([] {
        fibers::thread_pool pool(1);
        gate g;
        std::atomic<int> ran_after{0};
        auto fn = [&](int x) {
            if (x == 0)
                throw std::runtime_error("first failed");
            if (x == 1)
                g.wait(); // holds the only worker
            else
                ++ran_after;
            return x;
        };
        BOOST_CHECK_THROW(pool.map(fn, std::vector<int>{0, 1, 2, 3}), std::runtime_error);
        g.open();
        pool.join();
        BOOST_TEST(ran_after.load() == 0); // 2 and 3 were cancelled before they started
    });
}

BOOST_AUTO_TEST_CASE(the_process_wide_pools) {
    on_new_thread([] {
        fibers::thread_pool& io = fibers::get_io_pool();
        fibers::thread_pool& cpu = fibers::get_cpu_pool();
        BOOST_TEST(&io == &fibers::get_io_pool());
        BOOST_TEST(&io != &cpu);
        BOOST_TEST(io.maxsize() == 20u);
        BOOST_TEST(cpu.maxsize() >= 1u);
        BOOST_TEST(cpu.submit([] { return 4; }).result() == 4);
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(fiber_pools)

BOOST_AUTO_TEST_CASE(runs_work_in_tasks_of_the_hub) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        fibers::fiber root = fibers::current_fiber();
        fibers::fiber_pool pool(2);
        fibers::future<bool> f = pool.submit([&] {
            fibers::fiber me = fibers::current_fiber();
            return me != root && me != h.as_fiber() && me.parent() == h.as_fiber();
        });
        BOOST_TEST(f.result()); // the root fiber waits through the hub
        BOOST_TEST(pool.submit([] { return std::this_thread::get_id(); }).result() == std::this_thread::get_id());
    });
}

BOOST_AUTO_TEST_CASE(limited_to_maxsize_tasks) {
    on_new_thread([] {
        fibers::fiber_pool pool(2);
        int active = 0;
        int most = 0;
        std::vector<fibers::future<void>> futures;
        for (int i = 0; i < 5; ++i)
            futures.push_back(pool.submit([&] {
                most = std::max(most, ++active);
                fibers::sleep(1ms); // lets the others run
                --active;
            }));
        BOOST_TEST(pool.size() == 2u);
        for (auto& f : futures)
            f.result();
        BOOST_TEST(most == 2); // both ran at once, never a third
    });
}

BOOST_AUTO_TEST_CASE(submit_and_wait_from_another_thread) {
    on_new_thread([] {
        fibers::fiber_pool pool(1);
        fibers::thread_pool threads(1);
        // A plain thread submits to the hub's pool and blocks on the result
        // while the root fiber waits for it through the hub.
        fibers::future<std::thread::id> outer = threads.submit([&] {
            fibers::future<std::thread::id> inner = pool.submit([] { return std::this_thread::get_id(); });
            return inner.result();
        });
        BOOST_TEST(outer.result() == std::this_thread::get_id());
    });
}

BOOST_AUTO_TEST_CASE(close_join_and_submit_after_close) {
    on_new_thread([] {
        fibers::fiber_pool pool(2);
        int ran = 0;
        for (int i = 0; i < 4; ++i)
            pool.submit([&] {
                fibers::sleep(0s);
                ++ran;
            });
        pool.close();
        BOOST_CHECK_THROW(pool.submit([] {}), fibers::error);
        pool.join();
        BOOST_TEST(ran == 4);
        BOOST_TEST(pool.size() == 0u);
    });
}

BOOST_AUTO_TEST_CASE(join_without_close_waits_for_the_work) {
    on_new_thread([] {
        fibers::fiber_pool pool(3);
        int ran = 0;
        for (int i = 0; i < 6; ++i)
            pool.submit([&] {
                fibers::sleep(1ms);
                ++ran;
            });
        pool.join();
        BOOST_TEST(ran == 6);
        BOOST_TEST(pool.submit([] { return 1; }).result() == 1); // still open
    });
}

BOOST_AUTO_TEST_CASE(map_on_a_fiber_pool) {
    on_new_thread([] {
        fibers::fiber_pool pool(4);
        std::vector<std::string> out = pool.map([](int x) { return std::to_string(x); }, std::vector<int>{3, 1, 2});
        BOOST_TEST(out == (std::vector<std::string>{"3", "1", "2"}));
    });
}

BOOST_AUTO_TEST_CASE(a_closing_hub_cancels_what_never_ends) {
    std::vector<fibers::future<int>> futures;
    on_new_thread([&] {
        fibers::fiber_pool pool(1);
        futures.push_back(pool.submit([] {
            fibers::sleep(1h);
            return 1;
        }));
        futures.push_back(pool.submit([] { return 2; })); // queued behind it
        fibers::sleep(1ms);
        BOOST_TEST(futures[0].running());
        fibers::get_hub().close();
        BOOST_TEST(futures[0].cancelled()); // unwound
        BOOST_TEST(futures[1].cancelled()); // never ran
        BOOST_CHECK_THROW(pool.submit([] { return 3; }), fibers::error);
    });
    // From a thread whose hub is gone, waiting does not hang either.
    BOOST_CHECK_THROW(futures[1].result(), fibers::cancelled);
}

BOOST_AUTO_TEST_CASE(a_pool_destroyed_first_still_runs_its_queue) {
    on_new_thread([] {
        fibers::future<int> f;
        {
            fibers::fiber_pool pool(1);
            f = pool.submit([] {
                fibers::sleep(1ms);
                return 7;
            });
        }
        BOOST_TEST(f.result() == 7);
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(blocking_calls)

BOOST_AUTO_TEST_CASE(returns_values_and_void) {
    on_new_thread([] {
        BOOST_TEST(fibers::blocking([] { return 3; }) == 3);
        bool ran = false;
        fibers::blocking([&] { ran = true; });
        BOOST_TEST(ran);
        std::unique_ptr<int> p = fibers::blocking([] { return std::make_unique<int>(4); }); // moved out
        BOOST_TEST(*p == 4);
        BOOST_TEST((fibers::blocking([] { return std::this_thread::get_id(); }) != std::this_thread::get_id()));
    });
}

BOOST_AUTO_TEST_CASE(rethrows) {
    on_new_thread([] {
        BOOST_CHECK_EXCEPTION(fibers::blocking([]() -> int { throw std::runtime_error("io failed"); }),
                              std::runtime_error,
                              [](std::runtime_error const& e) { return std::string(e.what()) == "io failed"; });
    });
}

BOOST_AUTO_TEST_CASE(the_hub_serves_other_tasks_meanwhile) {
    on_new_thread([] {
        gate handshake;
        fibers::task other = fibers::spawn([&] { handshake.open(); });
        // The blocking function waits for a task of this hub: it can only
        // finish if the hub runs that task while the root fiber waits.
        bool met = fibers::blocking([&] { return handshake.wait(); });
        BOOST_TEST(met);
        other.join();
    });
}

BOOST_AUTO_TEST_CASE(from_a_plain_thread) {
    on_new_thread([] { BOOST_TEST(fibers::blocking([] { return 5; }) == 5); }); // no hub: the thread blocks
}

// Cancelled while `fn` runs, the caller waits for it, as `fn` may refer to
// its stack; `fn` then completed, so its result is returned and the cancel
// comes at the next wait.
BOOST_AUTO_TEST_CASE(a_cancelled_caller_waits_for_running_work_and_gets_its_result) {
    on_new_thread([] {
        std::atomic<bool> entered{false};
        gate release;
        std::atomic<bool> fn_finished{false};
        bool returned_after_fn = false;
        int result = 0;
        std::string next;
        fibers::task t = fibers::spawn([&] {
            int on_my_stack = 0;
            result = fibers::blocking([&] {
                entered = true;
                release.wait();
                on_my_stack = 1; // the caller's frame must still be there
                fn_finished = true;
                return 5;
            });
            returned_after_fn = fn_finished.load() && on_my_stack == 1;
            next = what_a_sleep_does(10ms);
        });
        BOOST_REQUIRE(serve_until([&] { return entered.load(); }));
        t.cancel();
        fibers::sleep(20ms); // had it not waited, the task would have ended by now
        BOOST_TEST(t.alive());
        release.open();
        t.join();
        BOOST_TEST(returned_after_fn);
        BOOST_TEST(result == 5);
        BOOST_TEST(next == "threw cancelled");
    });
}

// Work that has not started when the caller is cancelled never runs.
BOOST_AUTO_TEST_CASE(a_caller_cancelled_before_its_work_started_throws) {
    on_new_thread([] {
        // The process-wide IO pool has 20 workers: keep them all busy.
        gate release;
        std::vector<fibers::future<void>> busy;
        std::atomic<int> started{0};
        for (int i = 0; i < 20; ++i)
            busy.push_back(fibers::get_io_pool().submit([&] {
                ++started;
                release.wait();
            }));
        BOOST_REQUIRE(serve_until([&] { return started.load() == 20; }));
        std::atomic<bool> ran{false};
        std::string what;
        fibers::task t = fibers::spawn([&] {
            try {
                fibers::blocking([&] { ran = true; });
                what = "returned";
            } catch (fibers::cancelled const&) {
                what = "threw cancelled";
            }
        });
        fibers::sleep(5ms);
        t.cancel();
        t.join();
        release.open();
        for (auto& f : busy)
            f.wait();
        BOOST_TEST(what == "threw cancelled");
        BOOST_TEST(!ran);
    });
}

BOOST_AUTO_TEST_CASE(is_a_switchpoint) {
    on_new_thread([] {
        std::atomic<bool> ran{false};
        {
            fibers::assert_no_switchpoints guard;
            BOOST_CHECK_THROW(fibers::blocking([&] { ran = true; }), fibers::switchpoint_violation);
        }
        fibers::get_io_pool().join();
        BOOST_TEST(!ran); // refused before it was submitted
        fibers::future<int> f = fibers::get_io_pool().submit([] { return 1; });
        f.wait();
        fibers::assert_no_switchpoints guard;
        BOOST_CHECK_THROW(f.result(), fibers::switchpoint_violation); // done or not: a switchpoint
        BOOST_TEST(f.done()); // the queries are not
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(waiting_on_many)

BOOST_AUTO_TEST_CASE(wait_for_all) {
    on_new_thread([] {
        fibers::thread_pool pool(3);
        std::vector<fibers::future<int>> futures;
        for (int i = 0; i < 3; ++i)
            futures.push_back(pool.submit([i] { return i; }));
        fibers::wait_result<int> r = fibers::wait(futures);
        BOOST_TEST(r.done.size() == 3u);
        BOOST_TEST(r.not_done.empty());
        BOOST_TEST((r.done[0] == futures[0]));
        BOOST_TEST((r.done[2] == futures[2])); // in the order given
    });
}

BOOST_AUTO_TEST_CASE(wait_for_a_count) {
    on_new_thread([] {
        fibers::thread_pool pool(3);
        gate a, b, c;
        std::vector<fibers::future<char>> futures{
            pool.submit([&] { return a.wait() ? 'a' : '!'; }),
            pool.submit([&] { return b.wait() ? 'b' : '!'; }),
            pool.submit([&] { return c.wait() ? 'c' : '!'; }),
        };
        b.open();
        fibers::wait_result<char> r = fibers::wait(futures, 1);
        BOOST_REQUIRE(r.done.size() == 1u);
        BOOST_TEST(r.done[0].result() == 'b');
        BOOST_REQUIRE(r.not_done.size() == 2u);
        BOOST_TEST((r.not_done[0] == futures[0]));
        BOOST_TEST((r.not_done[1] == futures[2]));
        c.open();
        r = fibers::wait(futures, 2);
        BOOST_TEST(r.done.size() == 2u);
        a.open();
        r = fibers::wait(futures, 10); // more than there are: all
        BOOST_TEST(r.done.size() == 3u);
    });
}

BOOST_AUTO_TEST_CASE(wait_with_a_timeout) {
    on_new_thread([] {
        fibers::thread_pool pool(2);
        gate g;
        std::vector<fibers::future<void>> futures{pool.submit([] {}), pool.submit([&] { g.wait(); })};
        futures[0].wait();
        fibers::wait_result<void> r = fibers::wait(futures, 0, 10ms); // no exception: a partial answer
        BOOST_TEST(r.done.size() == 1u);
        BOOST_TEST(r.not_done.size() == 1u);
        r = fibers::wait(futures, 5ms);
        BOOST_TEST(r.not_done.size() == 1u);
        r = fibers::wait(futures, 1, 10ms); // satisfied already
        BOOST_TEST(r.done.size() == 1u);
        g.open();
        r = fibers::wait(futures, 0, 10s);
        BOOST_TEST(r.done.size() == 2u);
    });
}

BOOST_AUTO_TEST_CASE(futures_of_different_types_together) {
    on_new_thread([] {
        fibers::thread_pool pool(2);
        fibers::future<int> i = pool.submit([] { return 1; });
        fibers::future<std::string> s = pool.submit([] { return std::string("x"); });
        std::vector<fibers::future<void>> both{i, s};
        BOOST_TEST(fibers::wait(both).done.size() == 2u);
    });
}

BOOST_AUTO_TEST_CASE(as_completed_yields_in_completion_order) {
    on_new_thread([] {
        fibers::thread_pool pool(3);
        gate a, b, c;
        std::vector<fibers::future<char>> futures{
            pool.submit([&] { return a.wait() ? 'a' : '!'; }),
            pool.submit([&] { return b.wait() ? 'b' : '!'; }),
            pool.submit([&] { return c.wait() ? 'c' : '!'; }),
        };
        c.open();
        std::string order;
        for (fibers::future<char> const& f : fibers::as_completed(futures, 10s)) {
            order += f.result();
            // The next one completes only once this one was yielded.
            if (order.size() == 1)
                a.open();
            else if (order.size() == 2)
                b.open();
        }
        BOOST_TEST(order == "cab");
    });
}

BOOST_AUTO_TEST_CASE(as_completed_yields_those_done_first_in_order_given) {
    on_new_thread([] {
        fibers::thread_pool pool(1);
        std::vector<fibers::future<int>> futures;
        for (int i = 0; i < 4; ++i)
            futures.push_back(pool.submit([i] { return i; }));
        fibers::wait(futures);
        std::vector<int> seen;
        for (auto const& f : fibers::as_completed(futures))
            seen.push_back(f.result());
        BOOST_TEST(seen == (std::vector<int>{0, 1, 2, 3}));
        auto none = fibers::as_completed(std::vector<fibers::future<int>>{});
        BOOST_TEST((none.begin() == none.end()));
    });
}

BOOST_AUTO_TEST_CASE(as_completed_times_out) {
    on_new_thread([] {
        fibers::thread_pool pool(2);
        gate g;
        std::vector<fibers::future<int>> futures{pool.submit([] { return 1; }), pool.submit([&] {
                                                      g.wait();
                                                      return 2;
                                                  })};
        futures[0].wait();
        auto completed = fibers::as_completed(futures, 10ms);
        std::optional<fibers::future<int>> first = completed.next();
        BOOST_REQUIRE(first.has_value());
        BOOST_TEST(first->result() == 1);
        BOOST_CHECK_THROW(completed.next(), fibers::timeout);
        g.open();
        auto again = fibers::as_completed(futures);
        BOOST_TEST(again.next().has_value());
        BOOST_TEST(again.next().has_value());
        BOOST_TEST(!again.next().has_value());
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(waiting_contexts)

BOOST_AUTO_TEST_CASE(a_task_waits_while_the_hub_serves_others) {
    on_new_thread([] {
        fibers::thread_pool pool(1);
        gate handshake;
        fibers::future<bool> f = pool.submit([&] { return handshake.wait(); });
        bool got = false;
        fibers::task waiter = fibers::spawn([&] { got = f.result(); });
        fibers::task other = fibers::spawn([&] { handshake.open(); }); // runs while `waiter` waits
        waiter.join();
        other.join();
        BOOST_TEST(got);
    });
}

BOOST_AUTO_TEST_CASE(a_task_times_out) {
    on_new_thread([] {
        fibers::thread_pool pool(1);
        gate g;
        fibers::future<int> f = pool.submit([&] { return g.wait() ? 1 : 0; });
        bool timed_out = false;
        fibers::spawn([&] {
            try {
                f.result(10ms);
            } catch (fibers::timeout const&) {
                timed_out = true;
            }
        }).join();
        BOOST_TEST(timed_out);
        g.open();
        BOOST_TEST(f.result() == 1);
    });
}

BOOST_AUTO_TEST_CASE(a_task_cancelled_while_waiting_ends_quietly) {
    on_new_thread([] {
        captured_log log;
        fibers::thread_pool pool(2);
        gate g;
        fibers::future<int> one = pool.submit([&] { return g.wait() ? 1 : 0; });
        fibers::future<int> two = pool.submit([&] { return g.wait() ? 2 : 0; });
        std::vector<fibers::future<int>> both{one, two};
        std::vector<fibers::task> waiters{
            fibers::spawn([&] { one.result(); }),
            fibers::spawn([&] { fibers::wait(both); }),
            fibers::spawn([&] {
                for (auto const& f : fibers::as_completed(both))
                    f.result();
            }),
        };
        fibers::sleep(1ms); // all three wait
        for (auto& t : waiters)
            t.cancel();
        for (auto& t : waiters)
            t.join();
        for (auto& t : waiters)
            BOOST_TEST(!t.alive());
        // Completing now touches nothing of the waiters that went away.
        g.open();
        BOOST_TEST(one.result() + two.result() == 3);
        BOOST_TEST(log.size() == 0u);
    });
}

// The work completes its future after the cancel was queued, before the
// waiter ran again: result() had completed, so it returns the value and the
// cancel comes at the next wait.
BOOST_AUTO_TEST_CASE(a_result_that_came_before_the_cancel_is_returned) {
    on_new_thread([] {
        fibers::fiber_pool pool(1);
        fibers::event go;
        fibers::task waiter;
        fibers::future<int> f = pool.submit([&] {
            go.wait();
            waiter.cancel(); // then the completion, in the same turn
            return 42;
        });
        bool waiting = false;
        int got = 0;
        std::string next;
        waiter = fibers::spawn([&] {
            waiting = true;
            got = f.result();
            next = what_a_sleep_does(10ms);
        });
        BOOST_REQUIRE(serve_until([&] { return waiting; }));
        go.set();
        waiter.join();
        BOOST_TEST(got == 42);
        BOOST_TEST(next == "threw cancelled");
    });
}

BOOST_AUTO_TEST_CASE(the_hub_fiber_cannot_wait) {
    on_new_thread([] {
        fibers::thread_pool pool(1);
        gate g;
        fibers::future<int> f = pool.submit([&] { return g.wait() ? 1 : 0; });
        bool refused = false;
        fibers::get_hub().run_callback([&] {
            try {
                f.result();
            } catch (fibers::error const&) {
                refused = true;
            }
        });
        fibers::sleep(0s);
        BOOST_TEST(refused);
        g.open();
        BOOST_TEST(f.result() == 1);
    });
}

BOOST_AUTO_TEST_CASE(a_plain_thread_blocks) {
    on_new_thread([] {
        fibers::thread_pool pool(1);
        gate g;
        fibers::future<int> f = pool.submit([&] { return g.wait() ? 1 : 0; });
        std::thread opener([&] { g.open(); });
        BOOST_TEST(f.result() == 1); // no hub on this thread
        opener.join();
    });
}

BOOST_AUTO_TEST_CASE(many_waiters_of_every_kind) {
    on_new_thread([] {
        fibers::thread_pool pool(1);
        gate g;
        fibers::future<int> f = pool.submit([&] { return g.wait() ? 6 : 0; });
        int in_tasks = 0;
        std::vector<fibers::task> tasks;
        for (int i = 0; i < 3; ++i)
            tasks.push_back(fibers::spawn([&] { in_tasks += f.result(); }));
        std::atomic<int> in_threads{0};
        std::vector<std::thread> threads;
        for (int i = 0; i < 2; ++i)
            threads.emplace_back([&] { in_threads += f.result(); });
        fibers::sleep(1ms);
        g.open();
        BOOST_TEST(f.result() == 6); // the root fiber
        for (auto& t : tasks)
            t.join();
        for (auto& t : threads)
            t.join();
        BOOST_TEST(in_tasks == 18);
        BOOST_TEST(in_threads.load() == 12);
    });
}

BOOST_AUTO_TEST_SUITE_END()

// A timeout too long for the clock waits for ever; one already passed tries once.
BOOST_AUTO_TEST_SUITE(durations)

BOOST_AUTO_TEST_CASE(timeouts_too_long_for_the_clock_wait_for_the_work) {
    on_new_thread([] {
        fibers::thread_pool pool(1);
        fibers_test::for_each_duration(fibers_test::durations_too_long_for_the_clock(), [&](auto d) {
            auto slow = [] {
                std::this_thread::sleep_for(5ms);
                return 7;
            };
            BOOST_TEST(pool.submit(slow).result(d) == 7);
            BOOST_TEST(!pool.submit(slow).exception(d));
            BOOST_TEST(pool.submit(slow).wait(d));
            std::vector<fibers::future<int>> many{pool.submit(slow), pool.submit(slow)};
            BOOST_TEST(fibers::wait(many, d).done.size() == 2u);
            BOOST_TEST(fibers::wait(many, 1, d).done.size() == 2u);
            std::vector<fibers::future<int>> more{pool.submit(slow), pool.submit(slow)};
            int seen = 0;
            for (auto& f : fibers::as_completed(more, d))
                seen += f.result();
            BOOST_TEST(seen == 14);
        });
    });
}

BOOST_AUTO_TEST_CASE(timeouts_already_passed_try_once) {
    on_new_thread([] {
        fibers::thread_pool pool(1);
        gate g;
        fibers::future<int> blocked = pool.submit([&] {
            g.wait();
            return 1;
        });
        fibers_test::for_each_duration(fibers_test::durations_already_passed(), [&](auto d) {
            BOOST_CHECK_THROW(blocked.result(d), fibers::timeout);
            BOOST_CHECK_THROW(blocked.exception(d), fibers::timeout);
            BOOST_TEST(!blocked.wait(d));
            std::vector<fibers::future<int>> many{blocked};
            BOOST_TEST(fibers::wait(many, d).not_done.size() == 1u);
            auto range = fibers::as_completed(many, d);
            BOOST_CHECK_THROW(range.begin(), fibers::timeout);
        });
        g.open();
        BOOST_TEST(blocked.result() == 1);
    });
}

BOOST_AUTO_TEST_SUITE_END()
