// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#define BOOST_TEST_MODULE switch_back
#define BOOST_TEST_NO_MAIN
#define FIBERS_TEST_DEATH_MAIN
#include <boost/test/unit_test.hpp>

#include <fibers/fiber.hpp>
#include <fibers/hub.hpp>
#include <fibers/log.hpp>
#include <fibers/switch_back.hpp>
#include <fibers/task.hpp>

#include "cancel_support.hpp"
#include "child_process.hpp"
#include "hub_support.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/system/error_code.hpp>

#include <any>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <future>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;
using boost::system::error_code;
using fibers::switch_back;
using fibers_test::on_new_thread;
using steady = std::chrono::steady_clock;

namespace {

struct some_error : std::runtime_error {
    some_error() : std::runtime_error("some error") {}
};

// Makes a fresh switch_back, has a hub callback fire it with `tag`, and
// returns what the origin's wait() got. A resumption left over from an
// earlier switch_back (one that should have been dropped or ignored) would
// arrive first and show up as a different value.
int next_resumption_value(int tag) {
    switch_back<int> fresh;
    fibers::get_hub().run_callback([c = fresh, tag] { c(tag); });
    auto [v] = fresh.wait();
    return v;
}

} // namespace

// The public names and their shapes, as API.md states them.
static_assert(std::is_same_v<switch_back<>::result_type, std::tuple<>>);
static_assert(std::is_same_v<switch_back<error_code const&, std::size_t>::result_type, std::tuple<error_code, std::size_t>>);
static_assert(std::is_same_v<decltype(std::declval<switch_back<int, std::string>&>().wait()), std::tuple<int, std::string>>);
static_assert(std::is_copy_constructible_v<switch_back<error_code>>);
static_assert(std::is_move_constructible_v<switch_back<error_code>>);

BOOST_AUTO_TEST_SUITE(completion)

BOOST_AUTO_TEST_CASE(api_compile_uses) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        switch_back<> none;
        none.switch_to();
        std::tuple<> nothing = none.wait();
        (void)nothing;

        boost::asio::steady_timer timer(hub.loop(), 1ms);
        switch_back<error_code> tsb;
        timer.async_wait(tsb);
        auto [ec] = tsb.wait();
        BOOST_TEST(!ec);
    });
}

BOOST_AUTO_TEST_CASE(timer_completion_delivers_error_code) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        auto const start = steady::now();
        boost::asio::steady_timer timer(hub.loop(), 20ms);
        switch_back<error_code> sb;
        timer.async_wait(sb);
        auto [ec] = sb.wait();
        BOOST_TEST(!ec);
        BOOST_TEST((steady::now() - start >= 20ms));
        BOOST_TEST(!sb.active());
        BOOST_TEST(!sb.timed_out());
    });
}

BOOST_AUTO_TEST_CASE(cancelled_timer_delivers_operation_aborted) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        boost::asio::steady_timer timer(hub.loop(), 1h);
        switch_back<error_code> sb;
        timer.async_wait(sb);
        hub.run_callback([&timer] { timer.cancel(); });
        auto [ec] = sb.wait();
        BOOST_TEST((ec == boost::asio::error::operation_aborted));
    });
}

BOOST_AUTO_TEST_CASE(reference_argument_is_decayed) {
    // Asio passes `error_code const&`; the origin gets its own copy.
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        boost::asio::steady_timer timer(hub.loop(), 1ms);
        switch_back<error_code const&> sb;
        timer.async_wait(sb);
        auto [ec] = sb.wait();
        static_assert(std::is_same_v<decltype(ec), error_code>);
        BOOST_TEST(!ec);
    });
}

BOOST_AUTO_TEST_CASE(socket_read_delivers_error_code_and_size) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        boost::asio::local::stream_protocol::socket reader(hub.loop()), writer(hub.loop());
        boost::asio::local::connect_pair(reader, writer);
        char buffer[64] = {};
        switch_back<error_code, std::size_t> sb;
        reader.async_read_some(boost::asio::buffer(buffer), sb);
        fibers::task w = fibers::spawn([&] { boost::asio::write(writer, boost::asio::buffer("hello", 5)); });
        auto [ec, n] = sb.wait();
        BOOST_TEST(!ec);
        BOOST_TEST(n == 5u);
        BOOST_TEST(std::string(buffer, n) == "hello");
        w.join();

        // End of stream: the error and a zero count, unpacked the same way.
        writer.close();
        switch_back<error_code, std::size_t> eof;
        reader.async_read_some(boost::asio::buffer(buffer), eof);
        auto [ec2, n2] = eof.wait();
        BOOST_TEST((ec2 == boost::asio::error::eof));
        BOOST_TEST(n2 == 0u);
    });
}

BOOST_AUTO_TEST_CASE(operator_call_with_several_arguments) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        switch_back<int, std::string, double> sb;
        hub.run_callback([c = sb] { c(7, "seven", 7.5); });
        auto [i, s, d] = sb.wait();
        BOOST_TEST(i == 7);
        BOOST_TEST(s == "seven");
        BOOST_TEST(d == 7.5);
    });
}

BOOST_AUTO_TEST_CASE(operator_call_reaches_hub_switch_to_as_a_tuple) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        switch_back<int, std::string> sb;
        hub.run_callback([c = sb] { c(3, "three"); });
        std::any v = hub.switch_to();
        auto const* got = std::any_cast<std::tuple<int, std::string>>(&v);
        BOOST_TEST_REQUIRE(got != nullptr);
        BOOST_TEST(std::get<0>(*got) == 3);
        BOOST_TEST(std::get<1>(*got) == "three");
    });
}

BOOST_AUTO_TEST_CASE(switch_to_value_is_returned_by_hub_switch_to) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        switch_back<> sb;
        hub.run_callback([c = sb] { c.switch_to(std::string("value")); });
        std::any v = hub.switch_to();
        BOOST_TEST_REQUIRE(v.has_value());
        BOOST_TEST(std::any_cast<std::string>(v) == "value");

        // Without a value: an empty std::any.
        switch_back<> empty;
        hub.run_callback([c = empty] { c.switch_to(); });
        BOOST_TEST(!hub.switch_to().has_value());
    });
}

BOOST_AUTO_TEST_CASE(wait_on_a_foreign_value_throws_bad_any_cast) {
    on_new_thread([] {
        switch_back<int> sb;
        sb.switch_to(std::string("not a tuple"));
        BOOST_CHECK_THROW(sb.wait(), std::bad_any_cast);
    });
}

BOOST_AUTO_TEST_CASE(throw_to_raises_in_the_origin) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        switch_back<int> sb;
        hub.run_callback([c = sb] { c.throw_to(std::make_exception_ptr(some_error())); });
        BOOST_CHECK_THROW(sb.wait(), some_error);
        BOOST_TEST(!sb.active());

        // Through hub.switch_to() as well.
        switch_back<> direct;
        hub.run_callback([c = direct] { c.throw_to(std::make_exception_ptr(std::out_of_range("x"))); });
        BOOST_CHECK_THROW(hub.switch_to(), std::out_of_range);

        // The hub and the origin go on as before.
        BOOST_TEST(next_resumption_value(11) == 11);
    });
}

BOOST_AUTO_TEST_CASE(throw_to_in_a_task) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        bool caught = false;
        fibers::task t = fibers::spawn([&] {
            switch_back<error_code> sb;
            hub.run_callback([c = sb] { c.throw_to(std::make_exception_ptr(some_error())); });
            try {
                sb.wait();
            } catch (some_error const&) {
                caught = true;
            }
        });
        t.join();
        BOOST_TEST(caught);
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(first_call_wins)

BOOST_AUTO_TEST_CASE(later_calls_are_ignored) {
    on_new_thread([] {
        switch_back<int> sb;
        BOOST_TEST(sb.active());
        sb(1);
        BOOST_TEST(!sb.active());
        sb(2);
        sb.switch_to(std::tuple<int>(3));
        sb.throw_to(std::make_exception_ptr(some_error()));
        auto [v] = sb.wait();
        BOOST_TEST(v == 1);
        BOOST_TEST(!sb.active());
        // None of the ignored calls resumes the origin later.
        BOOST_TEST(next_resumption_value(4) == 4);
        BOOST_TEST(next_resumption_value(5) == 5);
    });
}

BOOST_AUTO_TEST_CASE(throw_first_then_value) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        switch_back<int> sb;
        hub.run_callback([c = sb] { c.throw_to(std::make_exception_ptr(some_error())); });
        hub.run_callback([c = sb] { c(2); });
        BOOST_CHECK_THROW(sb.wait(), some_error);
        BOOST_TEST(next_resumption_value(3) == 3);
    });
}

BOOST_AUTO_TEST_CASE(value_first_then_throw) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        switch_back<int> sb;
        hub.run_callback([c = sb] { c(1); });
        hub.run_callback([c = sb] { c.throw_to(std::make_exception_ptr(some_error())); });
        int v = 0;
        BOOST_CHECK_NO_THROW(v = std::get<0>(sb.wait()));
        BOOST_TEST(v == 1);
        BOOST_TEST(next_resumption_value(3) == 3);
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(timeouts)

BOOST_AUTO_TEST_CASE(timeout_raises_and_late_call_is_ignored) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        // An operation that outlasts the timeout, and completes after it
        // (or without a timeout, ends the wait without an exception).
        boost::asio::steady_timer timer(hub.loop(), 10s);
        // The timeout counts from the construction of the switch_back.
        auto const start = steady::now();
        switch_back<error_code> sb(30ms);
        BOOST_TEST(!sb.timed_out());
        timer.async_wait(sb);
        BOOST_CHECK_THROW(sb.wait(), fibers::timeout);
        BOOST_TEST((steady::now() - start >= 30ms));
        BOOST_TEST(sb.timed_out());
        BOOST_TEST(!sb.active());

        // The late completion (operation_aborted) is ignored.
        timer.cancel();
        switch_back<int> fresh;
        hub.run_callback([c = fresh] { c(6); });
        auto [v] = fresh.wait();
        BOOST_TEST(v == 6);
        BOOST_TEST(sb.timed_out());

        // So is a late call made by hand.
        sb(error_code());
        BOOST_TEST(next_resumption_value(7) == 7);
        BOOST_TEST(sb.timed_out());
    });
}

BOOST_AUTO_TEST_CASE(timeout_through_hub_switch_to) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        switch_back<> sb(10ms);
        fibers_test::backstop guard;
        BOOST_CHECK_THROW(hub.switch_to(), fibers::timeout);
        BOOST_TEST(sb.timed_out());
    });
}

BOOST_AUTO_TEST_CASE(resumed_before_the_timeout_no_timeout_later) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        auto const start = steady::now();
        switch_back<int> sb(100ms);
        hub.run_callback([c = sb] { c(1); });
        auto [v] = sb.wait();
        BOOST_TEST(v == 1);
        BOOST_TEST(!sb.timed_out());
        // Wait well past the deadline while the object still lives: the
        // sleep is not cut short by a stray timeout or resumption.
        BOOST_CHECK_NO_THROW(fibers::sleep(300ms));
        BOOST_TEST((steady::now() - start >= 300ms));
        BOOST_TEST(!sb.timed_out());
        BOOST_TEST(!sb.active());
        BOOST_TEST(next_resumption_value(2) == 2);
    });
}

BOOST_AUTO_TEST_CASE(no_timeout_means_not_timed_out) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        boost::asio::steady_timer timer(hub.loop(), 30ms);
        switch_back<error_code> sb;
        timer.async_wait(sb);
        BOOST_CHECK_NO_THROW(sb.wait());
        BOOST_TEST(!sb.timed_out());
    });
}

BOOST_AUTO_TEST_CASE(timeout_in_a_task) {
    on_new_thread([] {
        bool timed_out = false;
        bool flag = false;
        fibers::task t = fibers::spawn([&] {
            switch_back<int> sb(10ms);
            fibers_test::backstop guard;
            try {
                sb.wait();
            } catch (fibers::timeout const&) {
                timed_out = true;
            }
            flag = sb.timed_out();
        });
        t.join();
        BOOST_TEST(timed_out);
        BOOST_TEST(flag);
    });
}

BOOST_AUTO_TEST_CASE(a_timeout_too_long_for_the_clock_never_fires) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        fibers_test::for_each_duration(fibers_test::durations_too_long_for_the_clock(), [&](auto d) {
            switch_back<int> sb(d);
            boost::asio::steady_timer timer(hub.loop(), 20ms);
            timer.async_wait([c = sb](error_code const&) { c(5); });
            int v = 0;
            BOOST_CHECK_NO_THROW(v = std::get<0>(sb.wait()));
            BOOST_TEST(v == 5);
            BOOST_TEST(!sb.timed_out());
        });
    });
}

BOOST_AUTO_TEST_CASE(a_timeout_already_passed_fires_at_once) {
    on_new_thread([] {
        fibers_test::for_each_duration(fibers_test::durations_already_passed(), [](auto d) {
            switch_back<int> sb(d);
            fibers_test::backstop guard;
            BOOST_CHECK_THROW(sb.wait(), fibers::timeout);
            BOOST_TEST(sb.timed_out());
        });
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(threads)

BOOST_AUTO_TEST_CASE(call_from_another_thread_wakes_an_idle_hub) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        switch_back<error_code, std::size_t> sb;
        std::promise<void> waiting;
        std::future<void> origin_waits = waiting.get_future();
        // Runs in the hub once the origin waits.
        hub.run_callback([&waiting] { waiting.set_value(); });
        std::thread caller([c = sb, f = std::move(origin_waits)]() mutable {
            f.wait();
            // Not for synchronisation: lets the loop block in its poll, so
            // that the call must wake it.
            std::this_thread::sleep_for(20ms);
            c(error_code(), 42);
        });
        auto [ec, n] = sb.wait();
        caller.join();
        BOOST_TEST(!ec);
        BOOST_TEST(n == 42u);
        BOOST_TEST(next_resumption_value(1) == 1);
    });
}

BOOST_AUTO_TEST_CASE(throw_to_from_another_thread) {
    on_new_thread([] {
        switch_back<int> sb;
        std::thread caller([c = sb] { c.throw_to(std::make_exception_ptr(some_error())); });
        BOOST_CHECK_THROW(sb.wait(), some_error);
        caller.join();
        BOOST_TEST(next_resumption_value(1) == 1);
    });
}

BOOST_AUTO_TEST_CASE(four_threads_race_one_wins) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        for (int round = 0; round < 100; ++round) {
            switch_back<int> sb;
            std::atomic<bool> go{false};
            std::vector<std::thread> callers;
            for (int i = 0; i < 4; ++i)
                callers.emplace_back([c = sb, i, &go] {
                    while (!go.load(std::memory_order_acquire))
                        std::this_thread::yield();
                    if (i % 2 == 0)
                        c(i);
                    else
                        c.switch_to(std::tuple<int>(i));
                });
            hub.run_callback([&go] { go.store(true, std::memory_order_release); });
            auto [v] = sb.wait();
            for (auto& t : callers)
                t.join();
            BOOST_TEST((v >= 0 && v < 4));
            BOOST_TEST(!sb.active());
            // The three losers never reach the origin.
            BOOST_TEST(next_resumption_value(100 + round) == 100 + round);
        }
    });
}

BOOST_AUTO_TEST_CASE(origin_on_one_thread_many_callers) {
    // Several origins (tasks) on one hub, each resumed by its own thread.
    on_new_thread([] {
        constexpr int count = 8;
        std::vector<int> got(count, -1);
        std::vector<std::thread> callers;
        std::vector<fibers::task> tasks;
        for (int i = 0; i < count; ++i)
            tasks.push_back(fibers::spawn([i, &got, &callers] {
                switch_back<int> sb;
                callers.emplace_back([c = sb, i] { c(i * 10); });
                got[i] = std::get<0>(sb.wait());
            }));
        for (auto& t : tasks)
            t.join();
        for (auto& c : callers)
            c.join();
        for (int i = 0; i < count; ++i)
            BOOST_TEST(got[i] == i * 10);
    });
}

BOOST_AUTO_TEST_CASE(copy_called_after_the_origin_thread_ended) {
    std::optional<switch_back<int>> copy;
    on_new_thread([&] {
        switch_back<int> sb(1h);
        copy.emplace(sb);
    });
    BOOST_TEST(!copy->active());
    (*copy)(1);
    copy->switch_to();
    copy->throw_to(std::make_exception_ptr(some_error()));
    BOOST_TEST(!copy->active());
    copy.reset(); // the last reference, dropped on another thread
}

namespace {
// An argument whose move constructor, on its `pause_at`-th move, lets
// the origin's thread go and waits for it to have ended: to make a call
// that races the end of the origin's thread reproducible.
struct pausing_move {
    static std::atomic<int> moves;
    static int pause_at;
    static std::promise<void>* reached;
    static std::future<void>* origin_gone;
    pausing_move() = default;
    pausing_move(pausing_move const&) = default;
    pausing_move(pausing_move&&) noexcept {
        if (++moves == pause_at) {
            reached->set_value();
            origin_gone->wait_for(5s);
        }
    }
};
std::atomic<int> pausing_move::moves{0};
int pausing_move::pause_at = 0;
std::promise<void>* pausing_move::reached = nullptr;
std::future<void>* pausing_move::origin_gone = nullptr;
} // namespace

BOOST_AUTO_TEST_CASE(call_racing_the_end_of_the_origin_thread) {
    // Another thread calls a copy while the origin's thread ends (its object
    // is destroyed, then its hub). Whichever moment of the call the origin's
    // end falls on, the call is ignored and touches nothing that is gone.
    // Each round lets the origin end during another move of the argument
    // made by the call. In a child, so that a crash fails this test alone.
    auto result = fibers_test::run_in_child([] {
        for (int pause_at = 1; pause_at <= 4; ++pause_at) {
            std::promise<void> reached;
            std::future<void> reached_f = reached.get_future();
            std::promise<void> gone;
            std::future<void> gone_f = gone.get_future();
            pausing_move::moves = 0;
            pausing_move::pause_at = pause_at;
            pausing_move::reached = &reached;
            pausing_move::origin_gone = &gone_f;

            std::promise<switch_back<pausing_move>> handed;
            std::future<switch_back<pausing_move>> handed_f = handed.get_future();
            std::thread origin([&] {
                switch_back<pausing_move> sb;
                handed.set_value(sb);
                reached_f.wait(); // the call is under way
            }); // the origin's object goes, then (at thread exit) its hub
            std::thread ender([&] {
                origin.join();
                gone.set_value();
            });
            bool still_active = false;
            {
                switch_back<pausing_move> copy = handed_f.get();
                copy(pausing_move());
                still_active = copy.active();
            }
            if (pausing_move::moves.load() < pause_at) // no such move: let the origin end now
                reached.set_value();
            ender.join();
            if (still_active)
                std::_Exit(2);
        }
    });
    BOOST_TEST(!result.died_abnormally(), "the child ended abnormally (exit code " << result.exit_code << ", signal "
                                                                                    << result.signal << "):\n"
                                                                                    << result.stderr_text);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(scheduling)

BOOST_AUTO_TEST_CASE(call_from_a_task_does_not_switch) {
    on_new_thread([] {
        fibers_test::event_log log;
        switch_back<int> sb;
        fibers::task t = fibers::spawn([&, c = sb] {
            log("task: before call");
            c(5);
            log("task: after call");
            fibers::sleep(0s);
            log("task: after yield");
        });
        auto [v] = sb.wait();
        log("root: resumed");
        t.join();
        BOOST_TEST(v == 5);
        BOOST_TEST(log.events == (std::vector<std::string>{"task: before call", "task: after call", "root: resumed",
                                                           "task: after yield"}));
    });
}

BOOST_AUTO_TEST_CASE(call_from_a_hub_callback_does_not_switch) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        fibers_test::event_log log;
        switch_back<int> sb;
        hub.run_callback([&, c = sb] {
            c(1);
            log("callback: after call");
        });
        sb.wait();
        log("root: resumed");
        BOOST_TEST(log.events == (std::vector<std::string>{"callback: after call", "root: resumed"}));
    });
}

BOOST_AUTO_TEST_CASE(call_by_the_origin_itself_does_not_switch) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        bool callback_ran = false;
        switch_back<int> sb;
        sb(1);
        // Still here, and the queued callback has not run: nothing switched.
        BOOST_TEST(!callback_ran);
        hub.run_callback([&] { callback_ran = true; });
        auto [v] = sb.wait();
        BOOST_TEST(v == 1);
        // FIFO: the callback queued after the call has not run either.
        BOOST_TEST(!callback_ran);
        fibers::sleep(0s);
        BOOST_TEST(callback_ran);
    });
}

BOOST_AUTO_TEST_CASE(fifo_with_run_callback_from_the_origin) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        fibers_test::event_log log;
        switch_back<> sb;
        switch_back<> after_b;
        hub.run_callback([&] { log("a"); });
        sb.switch_to();
        hub.run_callback([&, c = after_b] {
            log("b");
            c.switch_to();
        });
        sb.wait();
        log("origin");
        after_b.wait();
        BOOST_TEST(log.events == (std::vector<std::string>{"a", "origin", "b"}));
    });
}

BOOST_AUTO_TEST_CASE(fifo_with_run_callback_from_a_task) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        fibers_test::event_log log;
        switch_back<> sb;
        switch_back<> after_b;
        fibers::task t = fibers::spawn([&, c = sb, c2 = after_b] {
            hub.run_callback([&] { log("a"); });
            c.switch_to();
            hub.run_callback([&, c2] {
                log("b");
                c2.switch_to();
            });
            log("task: done");
        });
        sb.wait();
        log("origin");
        after_b.wait();
        t.join();
        BOOST_TEST(log.events == (std::vector<std::string>{"task: done", "a", "origin", "b"}));
    });
}

BOOST_AUTO_TEST_CASE(fifo_with_run_callback_from_another_thread) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        for (int round = 0; round < 50; ++round) {
            // Recorded in the hub's thread only.
            fibers_test::event_log log;
            switch_back<> sb;
            switch_back<> after_b;
            std::thread other([&hub, &log, c = sb, c2 = after_b] {
                hub.run_callback([&log] { log("a"); });
                c.switch_to();
                hub.run_callback([&log, c2] {
                    log("b");
                    c2.switch_to();
                });
            });
            sb.wait();
            log("origin");
            after_b.wait();
            other.join();
            BOOST_TEST(log.events == (std::vector<std::string>{"a", "origin", "b"}));
        }
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(lifetime)

BOOST_AUTO_TEST_CASE(destroying_a_copy_changes_nothing) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        switch_back<int> sb;
        int cleanups = 0;
        sb.add_cleanup([&] { ++cleanups; });
        {
            switch_back<int> copy = sb;
            switch_back<int> moved = std::move(copy);
            BOOST_TEST(moved.active());
        }
        BOOST_TEST(sb.active());
        BOOST_TEST(cleanups == 0);
        switch_back<int> another = sb;
        hub.run_callback([another] { another(8); });
        auto [v] = sb.wait();
        BOOST_TEST(v == 8);
        BOOST_TEST(cleanups == 0);
    });
}

BOOST_AUTO_TEST_CASE(moving_the_origin_object_moves_ownership) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        std::vector<int> order;
        std::optional<switch_back<int>> moved;
        {
            switch_back<int> sb;
            sb.add_cleanup([&] { order.push_back(1); });
            moved.emplace(std::move(sb));
        } // the moved-from object goes: nothing happens
        BOOST_TEST(order.empty());
        BOOST_TEST(moved->active());
        BOOST_TEST((moved->origin() == fibers::current()));
        hub.run_callback([c = *moved] { c(2); });
        auto [v] = moved->wait();
        BOOST_TEST(v == 2);
        switch_back<int> copy = *moved;
        moved.reset(); // the owner goes: cleanups run, copies deactivated
        BOOST_TEST(order == (std::vector<int>{1}));
        BOOST_TEST(!copy.active());
    });
}

BOOST_AUTO_TEST_CASE(switch_back_outlives_hub_close) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        fibers::sleep(1ms); // the hub runs
        int cleanups = 0;
        {
            switch_back<int> sb(20ms);
            sb.add_cleanup([&] { ++cleanups; });
            switch_back<int> copy = sb;
            hub.close();
            BOOST_TEST(!hub.is_alive());
            // Calls are ignored, waiting is refused, nothing crashes.
            copy(1);
            std::thread([copy] { copy(2); }).join();
            BOOST_CHECK_THROW(sb.wait(), fibers::error);
            std::this_thread::sleep_for(40ms); // past the deadline: the loop is gone, nothing fires
            BOOST_TEST(!sb.timed_out());
            BOOST_TEST(cleanups == 0);
        }
        BOOST_TEST(cleanups == 1);
    });
}

BOOST_AUTO_TEST_CASE(destroying_the_origin_object_deactivates_every_copy) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        std::optional<switch_back<int>> sb(std::in_place);
        switch_back<int> copy = *sb;
        switch_back<int> copy_of_copy = copy;
        BOOST_TEST(copy.active());
        sb.reset();
        BOOST_TEST(!copy.active());
        BOOST_TEST(!copy_of_copy.active());
        // Fired after the destruction, from the hub: nothing arrives.
        hub.run_callback([copy] { copy(1); });
        hub.run_callback([copy_of_copy] { copy_of_copy.switch_to(std::tuple<int>(2)); });
        BOOST_TEST(next_resumption_value(3) == 3);
        // From another thread: nothing arrives either.
        std::thread([copy] { copy(4); }).join();
        BOOST_TEST(next_resumption_value(5) == 5);
    });
}

BOOST_AUTO_TEST_CASE(copy_held_by_a_pending_operation_after_destruction) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        boost::asio::steady_timer timer(hub.loop(), 10ms);
        {
            switch_back<error_code> sb;
            timer.async_wait(sb);
        }
        // The timer fires during this sleep; its handler's copy must not cut
        // the sleep short.
        auto const start = steady::now();
        fibers::sleep(60ms);
        BOOST_TEST((steady::now() - start >= 60ms));
        BOOST_TEST(next_resumption_value(1) == 1);
    });
}

BOOST_AUTO_TEST_CASE(destruction_cancels_the_timeout) {
    on_new_thread([] {
        {
            switch_back<> sb(20ms);
        }
        BOOST_CHECK_NO_THROW(fibers::sleep(100ms));
        BOOST_TEST(next_resumption_value(1) == 1);
    });
}

BOOST_AUTO_TEST_CASE(destruction_releases_state_without_waiting_for_the_deadline) {
    // The timer is cancelled, not left to expire: what an undelivered
    // resumption held is released once the loop has run, long before the
    // (one hour) deadline.
    on_new_thread([] {
        auto token = std::make_shared<int>(1);
        std::weak_ptr<int> watch = token;
        {
            switch_back<> sb(1h);
            sb.switch_to(std::any(std::move(token)));
        }
        fibers::sleep(10ms);
        BOOST_TEST(watch.expired());
    });
}

BOOST_AUTO_TEST_CASE(queued_resumption_is_dropped_on_destruction) {
    on_new_thread([] {
        {
            switch_back<int> sb;
            sb(1); // queued on the hub, never waited for
        }
        BOOST_TEST(next_resumption_value(2) == 2);

        // The same for a call made from another thread, still in the hub's
        // cross-thread queue when the object goes.
        {
            switch_back<int> sb;
            std::thread([c = sb] { c(3); }).join();
        }
        BOOST_TEST(next_resumption_value(4) == 4);

    });
}

BOOST_AUTO_TEST_CASE(cleanups_run_in_order_on_destruction) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        std::vector<int> order;
        {
            switch_back<int> sb;
            sb.add_cleanup([&] { order.push_back(1); });
            sb.add_cleanup([&] { order.push_back(2); });
            sb.add_cleanup([&] { order.push_back(3); });
            hub.run_callback([c = sb] { c(0); });
            sb.wait();
            // Not when resumed: when the origin's object goes.
            BOOST_TEST(order.empty());
            {
                switch_back<int> copy = sb;
            }
            BOOST_TEST(order.empty());
        }
        BOOST_TEST(order == (std::vector<int>{1, 2, 3}));
    });
}

BOOST_AUTO_TEST_CASE(cleanups_run_after_a_timeout_and_when_never_fired) {
    on_new_thread([] {
        std::vector<int> order;
        {
            switch_back<> sb(5ms);
            fibers_test::backstop guard;
            sb.add_cleanup([&] { order.push_back(1); });
            BOOST_CHECK_THROW(sb.wait(), fibers::timeout);
            BOOST_TEST(order.empty());
        }
        BOOST_TEST(order == (std::vector<int>{1}));
        {
            switch_back<> sb;
            sb.add_cleanup([&] { order.push_back(2); });
        }
        BOOST_TEST(order == (std::vector<int>{1, 2}));
    });
}

BOOST_AUTO_TEST_CASE(throwing_cleanup_is_logged_and_the_rest_run) {
    on_new_thread([] {
        fibers_test::captured_log captured;
        std::vector<int> order;
        {
            switch_back<> sb;
            sb.add_cleanup([&] { order.push_back(1); });
            sb.add_cleanup([&] {
                order.push_back(2);
                throw some_error();
            });
            sb.add_cleanup([&] { order.push_back(3); });
        }
        BOOST_TEST(order == (std::vector<int>{1, 2, 3}));
        BOOST_TEST(captured.lines().size() == 1u);
        BOOST_TEST(captured.contains("cleanup"));
    });
}

BOOST_AUTO_TEST_CASE(cleanups_run_when_the_origin_task_is_unwound_at_thread_exit) {
    std::atomic<int> cleanups{0};
    std::atomic<bool> reached_wait{false};
    on_new_thread([&] {
        auto& hub = fibers::get_hub();
        auto timer = std::make_shared<boost::asio::steady_timer>(hub.loop(), 1h);
        fibers::spawn([&, timer] {
            switch_back<error_code> sb(1h);
            sb.add_cleanup([&] { ++cleanups; });
            timer->async_wait(sb);
            reached_wait = true;
            sb.wait();
        });
        fibers::sleep(0s);
        // The thread ends with the task waiting: its hub closes and unwinds it.
    });
    BOOST_TEST(reached_wait.load());
    BOOST_TEST(cleanups.load() == 1);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(origins)

BOOST_AUTO_TEST_CASE(origin_is_the_root_fiber) {
    on_new_thread([] {
        switch_back<int> sb;
        BOOST_TEST((sb.origin() == fibers::current()));
        switch_back<int> copy = sb;
        BOOST_TEST((copy.origin() == fibers::current()));
        BOOST_TEST((sb.origin() != fibers::get_hub().as_fiber()));
    });
}

BOOST_AUTO_TEST_CASE(switch_back_made_in_a_task_resumes_that_task) {
    on_new_thread([] {
        std::optional<switch_back<int>> slot;
        fibers::fiber origin;
        int got = 0;
        bool origin_is_task = false;
        fibers::task t = fibers::spawn([&] {
            switch_back<int> sb;
            origin = sb.origin();
            slot.emplace(sb);
            got = std::get<0>(sb.wait());
            origin_is_task = sb.origin() == fibers::current();
        });
        fibers::sleep(0s); // the task starts and waits
        BOOST_TEST_REQUIRE(slot.has_value());
        BOOST_TEST((origin == t));
        (*slot)(9); // from the root: the task resumes, not the root
        BOOST_TEST(got == 0);
        t.join();
        BOOST_TEST(got == 9);
        BOOST_TEST(origin_is_task);
    });
}

BOOST_AUTO_TEST_CASE(switch_back_made_in_a_plain_fiber_resumes_it) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        int got = 0;
        bool origin_ok = false;
        fibers::fiber plain([&] {
            switch_back<int> sb;
            origin_ok = sb.origin() == fibers::current();
            hub.run_callback([c = sb] { c(12); });
            got = std::get<0>(sb.wait());
        });
        plain.switch_to(); // returns when the fiber ends, into its parent
        BOOST_TEST(origin_ok);
        BOOST_TEST(got == 12);
        BOOST_TEST(!plain.is_alive());
    });
}

BOOST_AUTO_TEST_CASE(many_timers_resume_each_origin_exactly_once) {
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        constexpr int count = 1000;
        std::mt19937 random(12345);
        std::uniform_int_distribution<int> deadline_ms(0, 40);
        std::vector<int> resumed(count, 0);
        std::vector<int> second_value(count, -1);
        std::vector<int> strays(count, 0);
        int completions = 0;
        int timeouts = 0;
        std::vector<fibers::task> tasks;
        tasks.reserve(count);
        for (int i = 0; i < count; ++i) {
            auto deadline = std::chrono::milliseconds(deadline_ms(random));
            // Every other one races a timeout against its completion.
            std::optional<std::chrono::milliseconds> limit;
            if (i % 2 == 1)
                limit = std::chrono::milliseconds(deadline_ms(random));
            tasks.push_back(fibers::spawn([&, i, deadline, limit] {
                boost::asio::steady_timer timer(hub.loop(), deadline);
                std::optional<switch_back<error_code>> sb;
                if (limit)
                    sb.emplace(*limit);
                else
                    sb.emplace();
                timer.async_wait(*sb);
                try {
                    auto [ec] = sb->wait();
                    if (!ec)
                        ++completions;
                    ++resumed[i];
                } catch (fibers::timeout const&) {
                    ++timeouts;
                    ++resumed[i];
                }
                // A second resumption of the same switch_back would arrive
                // here instead of this value.
                switch_back<int> next;
                hub.run_callback([c = next, i] { c(i); });
                second_value[i] = std::get<0>(next.wait());
                // Stay past every deadline with the switch_back alive: a late
                // timeout or completion would end this sleep early or with an
                // exception.
                auto const before = steady::now();
                try {
                    fibers::sleep(50ms);
                    if (steady::now() - before < 50ms)
                        ++strays[i];
                } catch (...) {
                    ++strays[i];
                }
            }));
        }
        for (auto& t : tasks)
            t.join();
        int wrong = 0;
        for (int i = 0; i < count; ++i)
            if (resumed[i] != 1 || second_value[i] != i || strays[i] != 0)
                ++wrong;
        BOOST_TEST(wrong == 0);
        BOOST_TEST(completions + timeouts == count);
        BOOST_TEST(completions >= count / 2);
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(interruptions)

// The cancel is queued before the switch_back's resumption: the switch_back
// had fired, so wait() returns its value, and the cancel comes at the next
// wait; nothing of it is left to resume a later wait.
BOOST_AUTO_TEST_CASE(a_value_that_came_before_the_cancel_is_returned) {
    on_new_thread([] {
        switch_back<int>* handed = nullptr;
        int got = 0;
        std::string next, after;
        fibers::task t = fibers::spawn([&] {
            switch_back<int> sb;
            handed = &sb;
            auto [v] = sb.wait();
            got = v;
            next = fibers_test::what_a_sleep_does(10ms);
            after = fibers_test::what_a_sleep_does(10ms);
        });
        while (handed == nullptr)
            fibers::sleep(0s);
        t.cancel();
        (*handed)(5);
        t.join();
        BOOST_TEST(got == 5);
        BOOST_TEST(next == "threw cancelled");
        BOOST_TEST(after == "slept");
    });
}

namespace {

// Waits on `sb` while another task throws "stray" into the caller through
// `stray`, then gives `sb` 5: the wait returns 5 and defers the exception.
int value_after_a_stray_exception(switch_back<int>& sb, switch_back<>& stray) {
    fibers::spawn([&] {
        stray.throw_to(std::make_exception_ptr(std::runtime_error("stray")));
        sb(5);
    });
    auto [v] = sb.wait();
    return v;
}

} // namespace

// Any exception thrown into a waiting fiber follows the rule, in the root
// fiber too: a stray switch_back's throw_to lands after the value came.
BOOST_AUTO_TEST_CASE(a_stray_exception_after_the_value_came_is_thrown_at_the_next_wait) {
    on_new_thread([] {
        switch_back<int> sb;
        switch_back<> stray;
        BOOST_TEST(value_after_a_stray_exception(sb, stray) == 5);
        BOOST_TEST(fibers_test::what_a_sleep_does(10ms) == "threw stray");
        BOOST_TEST(fibers_test::what_a_sleep_does(10ms) == "slept");
    });
}

// A fiber that ends before it waits again takes a deferred exception with
// it: nothing is thrown into it, or resumes it, after its end (under ASan,
// a use after free if anything did).
BOOST_AUTO_TEST_CASE(a_deferred_exception_goes_with_a_fiber_that_ends_first) {
    on_new_thread([] {
        int got = 0;
        for (int round = 1; round <= 100; ++round) {
            // No handle: the task's record goes as soon as it ends.
            fibers::spawn([&] {
                switch_back<int> sb;
                switch_back<> stray;
                got += value_after_a_stray_exception(sb, stray);
            });
            while (got != 5 * round)
                fibers::sleep(0s);
        }
        BOOST_TEST(fibers_test::what_a_sleep_does(10ms) == "slept");
        fibers::get_hub().close();
    });
}

// A hub that closes drops a deferred exception with its other work, and
// what it kept for the fiber goes when the fiber does (under LeakSanitizer,
// a leak if it did not).
BOOST_AUTO_TEST_CASE(a_deferred_exception_goes_with_a_hub_that_closes) {
    on_new_thread([] {
        switch_back<int> sb;
        switch_back<> stray;
        BOOST_TEST(value_after_a_stray_exception(sb, stray) == 5);
        fibers::get_hub().close();
    });
}

// An exception the switch_back fired with is its result: thrown by wait(),
// the cancel that came first deferred all the same.
BOOST_AUTO_TEST_CASE(an_exception_fired_before_the_cancel_came_is_thrown) {
    on_new_thread([] {
        switch_back<>* handed = nullptr;
        std::string what, next;
        fibers::task t = fibers::spawn([&] {
            switch_back<> sb;
            handed = &sb;
            try {
                sb.wait();
                what = "returned";
            } catch (fibers::cancelled const&) {
                what = "threw cancelled";
            } catch (std::exception const& e) {
                what = e.what();
            }
            next = fibers_test::what_a_sleep_does(10ms);
        });
        while (handed == nullptr)
            fibers::sleep(0s);
        t.cancel();
        handed->throw_to(std::make_exception_ptr(std::runtime_error("fired")));
        t.join();
        BOOST_TEST(what == "fired");
        BOOST_TEST(next == "threw cancelled");
    });
}

BOOST_AUTO_TEST_SUITE_END()
