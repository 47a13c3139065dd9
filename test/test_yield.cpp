// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#define BOOST_TEST_MODULE yield
#define BOOST_TEST_NO_MAIN
#define FIBERS_TEST_DEATH_MAIN
#include <boost/test/unit_test.hpp>

#include <fibers/switchpoint.hpp>
#include <fibers/task.hpp>
#include <fibers/yield.hpp>

#include "cancel_support.hpp"
#include "child_process.hpp"
#include "hub_support.hpp"
#include "socket_support.hpp"

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using fibers_test::connected_pair;
using fibers_test::on_new_thread;
using fibers_test::tcp;
using fibers_test::what_a_sleep_does;

namespace {

using clock_type = std::chrono::steady_clock;

// What a fill operation did.
struct fill_probe {
    bool started = false;
    bool cancel_seen = false;
    bool wrote = false;
    bool completed = false;
};

// A custom Asio operation: after `delay` it writes `byte` into `*target` and
// completes. With `honour_cancel`, a per-operation cancellation stops it
// early, completing with operation_aborted and writing nothing.
template <class Token>
auto async_fill(asio::io_context& io, char* target, char byte, std::chrono::milliseconds delay, bool honour_cancel,
                fill_probe& probe, Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code)>(
        [&io, target, byte, delay, honour_cancel, &probe](auto handler) {
            probe.started = true;
            auto timer = std::make_shared<asio::steady_timer>(io, delay);
            auto slot = asio::get_associated_cancellation_slot(handler);
            if (honour_cancel && slot.is_connected())
                slot.assign([timer, &probe](asio::cancellation_type) {
                    probe.cancel_seen = true;
                    timer->cancel();
                });
            timer->async_wait([timer, target, byte, &probe, h = std::move(handler)](boost::system::error_code ec) mutable {
                auto slot = asio::get_associated_cancellation_slot(h);
                if (slot.is_connected())
                    slot.clear();
                if (!ec) {
                    *target = byte;
                    probe.wrote = true;
                }
                probe.completed = true;
                std::move(h)(ec);
            });
        },
        token);
}

// A custom operation that completes when the test calls `complete`, which
// holds its handler. It ignores per-operation cancellation.
struct held_operation {
    std::function<void(boost::system::error_code, std::size_t)> complete;
};

template <class Token>
auto async_held(held_operation& op, Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [&op](auto handler) {
            auto held = std::make_shared<decltype(handler)>(std::move(handler));
            op.complete = [held](boost::system::error_code ec, std::size_t n) { std::move(*held)(ec, n); };
        },
        token);
}

struct cancel_race {
    std::string operation;  // what the yield call did
    std::string next_wait;  // the task's next wait, a sleep
    std::string wait_after; // and the one after it
};

// A task waits on a held operation with the yield token; another task, in
// one go, cancels it and completes the operation (in the order given), then
// drops its handle, the last one. The cancel and the completion land in the
// same loop turn. With `goes_on`, the task waits twice more; else it ends.
cancel_race race_cancel_with_completion(bool cancel_first, bool goes_on) {
    cancel_race out;
    on_new_thread([&] {
        held_operation op;
        bool ended = false;
        fibers::task t = fibers::spawn([&] {
            try {
                std::size_t const n = async_held(op, fibers::yield);
                out.operation = "returned " + std::to_string(n);
            } catch (fibers::cancelled const&) {
                out.operation = "threw cancelled";
                throw;
            }
            if (!goes_on)
                return;
            out.next_wait = what_a_sleep_does(20ms);
            out.wait_after = what_a_sleep_does(20ms);
        });
        t.add_done_callback([&] { ended = true; });
        while (!op.complete)
            fibers::sleep(0s);
        fibers::spawn([&op, cancel_first, t = std::move(t)]() mutable {
            if (cancel_first)
                t.cancel();
            op.complete({}, 42);
            if (!cancel_first)
                t.cancel();
            t = fibers::task();
        });
        while (!ended)
            fibers::sleep(1ms);
        for (int i = 0; i < 10; ++i)
            fibers::sleep(0s); // a stray resumption left queued would run now
    });
    return out;
}

// A task's operation completes on another thread when asked to cancel (its
// cancellation handler does that), after which the task waits twice more:
// its completion waits in the hub's mailbox as the task leaves the wait.
cancel_race cancel_completed_from_another_thread() {
    cancel_race out;
    on_new_thread([&] {
        std::function<void(boost::system::error_code, std::size_t)> complete;
        fibers::task t = fibers::spawn([&] {
            try {
                std::size_t const n = asio::async_initiate<fibers::yield_t const&,
                                                           void(boost::system::error_code, std::size_t)>(
                    [&complete](auto handler) {
                        auto slot = asio::get_associated_cancellation_slot(handler);
                        auto held = std::make_shared<decltype(handler)>(std::move(handler));
                        complete = [held](boost::system::error_code ec, std::size_t n) { std::move(*held)(ec, n); };
                        slot.assign([&complete](asio::cancellation_type) {
                            std::thread([&complete] { complete({}, 42); }).join();
                        });
                    },
                    fibers::yield);
                out.operation = "returned " + std::to_string(n);
            } catch (fibers::cancelled const&) {
                out.operation = "threw cancelled";
            }
            out.next_wait = what_a_sleep_does(20ms);
            out.wait_after = what_a_sleep_does(20ms);
        });
        while (!complete)
            fibers::sleep(0s);
        t.cancel();
        t.join();
    });
    return out;
}

// Runs the race in a child process, as it may crash: the operation returns
// its result, the cancellation comes at the next wait, and nothing resumes
// the task later by mistake.
void check_cancel_race_in_a_child(bool cancel_first, bool goes_on) {
    auto child = fibers_test::run_in_child([=] {
        cancel_race const out = race_cancel_with_completion(cancel_first, goes_on);
        std::fprintf(stderr, "operation: %s; next wait: %s; wait after: %s\n", out.operation.c_str(),
                     out.next_wait.c_str(), out.wait_after.c_str());
        bool const ok = out.operation == "returned 42" &&
                        (!goes_on || (out.next_wait == "threw cancelled" && out.wait_after == "slept"));
        std::fflush(stderr);
        ::_exit(ok ? 0 : 1);
    });
    BOOST_TEST(!child.died_abnormally(), (cancel_first ? "cancel, then completion" : "completion, then cancel")
                                             << (goes_on ? ", the task waits on" : ", the task ends") << ": "
                                             << (child.signaled ? "killed by signal " + std::to_string(child.signal)
                                                                : "exit status " + std::to_string(child.exit_code))
                                             << "\n"
                                             << child.stderr_text);
}

} // namespace

BOOST_AUTO_TEST_SUITE(completion)

BOOST_AUTO_TEST_CASE(timer_wait) {
    on_new_thread([] {
        auto const start = clock_type::now();
        asio::steady_timer timer(fibers::get_hub().loop(), 20ms);
        timer.async_wait(fibers::yield);
        BOOST_TEST((clock_type::now() - start >= 20ms));
    });
}

BOOST_AUTO_TEST_CASE(values_are_returned) {
    on_new_thread([] {
        auto& io = fibers::get_hub().loop();
        auto [client, server] = connected_pair(io);
        BOOST_TEST(client.async_write_some(asio::buffer("hello", 5), fibers::yield) == 5u);
        char got[5];
        BOOST_TEST(asio::async_read(server, asio::buffer(got), fibers::yield) == 5u);
        BOOST_TEST(std::string(got, 5) == "hello");
        // A completion with a value besides the error: accept's socket.
        tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
        tcp::socket dialer(io);
        dialer.async_connect(acceptor.local_endpoint(), fibers::yield);
        tcp::socket accepted = acceptor.async_accept(fibers::yield);
        BOOST_TEST(accepted.is_open());
    });
}

BOOST_AUTO_TEST_CASE(errors_throw_or_are_stored) {
    on_new_thread([] {
        auto& io = fibers::get_hub().loop();
        // A port that refuses: a listener's port, closed again.
        tcp::endpoint refused;
        {
            tcp::acceptor a(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
            refused = a.local_endpoint();
        }
        tcp::socket s(io);
        BOOST_CHECK_EXCEPTION(s.async_connect(refused, fibers::yield), boost::system::system_error,
                              [](boost::system::system_error const& e) {
                                  return e.code() == asio::error::connection_refused;
                              });
        boost::system::error_code ec;
        tcp::socket t(io);
        t.async_connect(refused, fibers::yield[ec]);
        BOOST_TEST((ec == asio::error::connection_refused));
        // Success clears it.
        asio::steady_timer timer(io, 1ms);
        timer.async_wait(fibers::yield[ec]);
        BOOST_TEST(!ec);
    });
}

BOOST_AUTO_TEST_CASE(root_tasks_and_plain_fibers_all_wait) {
    on_new_thread([] {
        auto& io = fibers::get_hub().loop();
        int woke = 0;
        auto wait_a_bit = [&] {
            asio::steady_timer timer(io, 1ms);
            timer.async_wait(fibers::yield);
            ++woke;
        };
        wait_a_bit(); // the root
        fibers::spawn(wait_a_bit).join();
        fibers::fiber plain(wait_a_bit); // not a task: the hub resumes it too
        plain.switch_to();
        while (plain.is_alive())
            fibers::sleep(1ms);
        BOOST_TEST(woke == 3);
    });
}

BOOST_AUTO_TEST_CASE(many_at_once) {
    on_new_thread([] {
        auto& io = fibers::get_hub().loop();
        int done = 0;
        std::vector<fibers::task> tasks;
        for (int i = 0; i < 200; ++i)
            tasks.push_back(fibers::spawn([&io, &done, i] {
                asio::steady_timer timer(io, std::chrono::milliseconds(i % 10));
                timer.async_wait(fibers::yield);
                ++done;
            }));
        for (auto& t : tasks)
            t.join();
        BOOST_TEST(done == 200);
    });
}

BOOST_AUTO_TEST_CASE(completion_on_another_threads_io_context) {
    on_new_thread([] {
        asio::io_context other;
        auto work = asio::make_work_guard(other);
        std::thread runner([&] { other.run(); });
        auto [client, server] = connected_pair(other);
        std::thread([&] {
            std::this_thread::sleep_for(10ms);
            asio::write(client, asio::buffer("far", 3));
        }).join();
        char got[3];
        BOOST_TEST(asio::async_read(server, asio::buffer(got), fibers::yield) == 3u); // completes over there
        BOOST_TEST(std::string(got, 3) == "far");
        // A deadline there: the cancellation is emitted on that thread.
        BOOST_CHECK_THROW(server.async_read_some(asio::buffer(got), fibers::yield.after(20ms)), fibers::timeout);
        client.close();
        server.close();
        work.reset();
        runner.join();
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(deadlines)

BOOST_AUTO_TEST_CASE(a_deadline_throws_timeout) {
    on_new_thread([] {
        auto [client, server] = connected_pair(fibers::get_hub().loop());
        char buffer[8];
        auto start = clock_type::now();
        BOOST_CHECK_THROW(server.async_read_some(asio::buffer(buffer), fibers::yield.after(30ms)), fibers::timeout);
        BOOST_TEST((clock_type::now() - start >= 30ms));
        boost::system::error_code ec; // the deadline throws even with an error_code
        BOOST_CHECK_THROW(server.async_read_some(asio::buffer(buffer), fibers::yield[ec].after(10ms)), fibers::timeout);
    });
}

BOOST_AUTO_TEST_CASE(a_cancelled_read_is_really_gone) {
    on_new_thread([] {
        auto [client, server] = connected_pair(fibers::get_hub().loop());
        char buffer[16] = {};
        BOOST_CHECK_THROW(server.async_read_some(asio::buffer(buffer), fibers::yield.after(10ms)), fibers::timeout);
        asio::write(client, asio::buffer("after", 5));
        std::size_t n = server.async_read_some(asio::buffer(buffer), fibers::yield.after(5s));
        BOOST_TEST(std::string(buffer, n) == "after"); // nothing was taken by the cancelled read
    });
}

BOOST_AUTO_TEST_CASE(done_before_the_deadline) {
    on_new_thread([] {
        auto& io = fibers::get_hub().loop();
        auto [client, server] = connected_pair(io);
        fibers::spawn([&client = client] {
            fibers::sleep(5ms);
            asio::write(client, asio::buffer("in time", 7));
        });
        char buffer[16];
        std::size_t n = server.async_read_some(asio::buffer(buffer), fibers::yield.after(10s));
        BOOST_TEST(std::string(buffer, n) == "in time");
        fibers::sleep(20ms); // nothing fires later
        asio::steady_timer timer(io, 1ms);
        BOOST_CHECK_NO_THROW(timer.async_wait(fibers::yield.after(1s)));
    });
}

BOOST_AUTO_TEST_CASE(the_fiber_resumes_only_after_the_handler_ran) {
    on_new_thread([] {
        auto& io = fibers::get_hub().loop();
        char target = '-';
        fill_probe probe;
        BOOST_CHECK_THROW(async_fill(io, &target, 'X', 10000ms, true, probe, fibers::yield.after(10ms)),
                          fibers::timeout);
        BOOST_TEST(probe.cancel_seen);
        BOOST_TEST(probe.completed); // its handler had run when the fiber went on
        BOOST_TEST(!probe.wrote);
        BOOST_TEST(target == '-');
    });
}

BOOST_AUTO_TEST_CASE(an_operation_that_ignores_cancellation_is_waited_for) {
    on_new_thread([] {
        auto& io = fibers::get_hub().loop();
        char target = '-';
        fill_probe probe;
        auto start = clock_type::now();
        // Past the deadline, but completed successfully: its result stands.
        BOOST_CHECK_NO_THROW(async_fill(io, &target, 'X', 50ms, false, probe, fibers::yield.after(5ms)));
        BOOST_TEST((clock_type::now() - start >= 50ms));
        BOOST_TEST(probe.wrote);
        BOOST_TEST(target == 'X');
    });
}

BOOST_AUTO_TEST_CASE(a_deadline_too_long_for_the_clock_never_passes) {
    on_new_thread([] {
        auto& io = fibers::get_hub().loop();
        fibers_test::for_each_duration(fibers_test::durations_too_long_for_the_clock(), [&](auto d) {
            auto const start = clock_type::now();
            asio::steady_timer timer(io, 20ms);
            BOOST_CHECK_NO_THROW(timer.async_wait(fibers::yield.after(d)));
            BOOST_TEST((clock_type::now() - start >= 20ms)); // it waited for the timer
        });
    });
}

BOOST_AUTO_TEST_CASE(a_deadline_already_passed_times_out_at_once) {
    on_new_thread([] {
        auto& io = fibers::get_hub().loop();
        fibers_test::for_each_duration(fibers_test::durations_already_passed(), [&](auto d) {
            asio::steady_timer timer(io, 1h);
            fibers_test::backstop guard;
            BOOST_CHECK_THROW(timer.async_wait(fibers::yield.after(d)), fibers::timeout);
        });
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(cancellation)

BOOST_AUTO_TEST_CASE(task_cancel_cancels_the_operation) {
    on_new_thread([] {
        auto& io = fibers::get_hub().loop();
        char target = '-';
        fill_probe probe;
        bool cancelled = false;
        fibers::task t = fibers::spawn([&] {
            try {
                async_fill(io, &target, 'X', 10000ms, true, probe, fibers::yield);
            } catch (fibers::cancelled const&) {
                cancelled = probe.completed; // the handler ran before this
                throw;
            }
        });
        fibers::sleep(5ms);
        t.cancel();
        t.join(5s);
        BOOST_TEST(cancelled);
        BOOST_TEST(probe.cancel_seen);
        BOOST_TEST(target == '-');
    });
}

BOOST_AUTO_TEST_CASE(task_cancel_during_a_socket_read_loses_nothing) {
    on_new_thread([] {
        auto& io = fibers::get_hub().loop();
        auto [client, server] = connected_pair(io);
        fibers::task reader = fibers::spawn([&server = server] {
            char buffer[16];
            server.async_read_some(asio::buffer(buffer), fibers::yield);
        });
        fibers::sleep(5ms);
        reader.cancel();
        reader.join(5s);
        BOOST_TEST(!reader.alive());
        asio::write(client, asio::buffer("kept", 4));
        char buffer[16];
        std::size_t n = server.async_read_some(asio::buffer(buffer), fibers::yield.after(5s));
        BOOST_TEST(std::string(buffer, n) == "kept");
    });
}

// The cancel is queued first, so it resumes the task before the completion
// does: the operation had completed all the same, and returns its result.
BOOST_AUTO_TEST_CASE(a_cancel_queued_before_the_completion_then_the_task_waits_on) {
    check_cancel_race_in_a_child(true, true);
}

// The same, and the task ends at once and its last handle goes: nothing
// queued may resume it after that.
BOOST_AUTO_TEST_CASE(a_cancel_queued_before_the_completion_then_the_task_ends) {
    check_cancel_race_in_a_child(true, false);
}

BOOST_AUTO_TEST_CASE(a_cancel_queued_after_the_completion_then_the_task_waits_on) {
    check_cancel_race_in_a_child(false, true);
}

BOOST_AUTO_TEST_CASE(a_cancel_queued_after_the_completion_then_the_task_ends) {
    check_cancel_race_in_a_child(false, false);
}

BOOST_AUTO_TEST_CASE(a_completion_from_another_thread_as_the_cancel_comes) {
    auto child = fibers_test::run_in_child([] {
        cancel_race const out = cancel_completed_from_another_thread();
        std::fprintf(stderr, "operation: %s; next wait: %s; wait after: %s\n", out.operation.c_str(),
                     out.next_wait.c_str(), out.wait_after.c_str());
        bool const ok =
            out.operation == "returned 42" && out.next_wait == "threw cancelled" && out.wait_after == "slept";
        std::fflush(stderr);
        ::_exit(ok ? 0 : 1);
    });
    BOOST_TEST(!child.died_abnormally(), (child.signaled ? "killed by signal " + std::to_string(child.signal)
                                                         : "exit status " + std::to_string(child.exit_code))
                                             << "\n"
                                             << child.stderr_text);
}

// A read that completed returns its bytes, however the cancels fall.
BOOST_AUTO_TEST_CASE(a_reader_cancelled_at_random_loses_no_byte) {
    on_new_thread([] {
        auto read_some = [](tcp::socket& s, asio::mutable_buffer b, boost::system::error_code& ec) {
            return s.async_read_some(b, fibers::yield[ec]);
        };
        auto const r = fibers_test::read_while_cancelled_at_random(read_some, 60000, 7);
        BOOST_TEST(r.failure.empty(), r.failure);
        BOOST_TEST(r.received == 60000u);
        BOOST_TEST(r.cancels > 0u);
    });
}

// An operation cancelled before it completed still throws, with nothing
// taken: it is the completion, not the cancel, that decides.
BOOST_AUTO_TEST_CASE(a_cancel_before_the_completion_still_throws) {
    on_new_thread([] {
        held_operation op;
        std::string what;
        fibers::task t = fibers::spawn([&] {
            try {
                async_held(op, fibers::yield);
                what = "returned";
            } catch (fibers::cancelled const&) {
                what = "threw cancelled";
            }
        });
        while (!op.complete)
            fibers::sleep(0s);
        t.cancel();
        fibers::sleep(0s); // the task is cancelled, and still waits for the handler
        BOOST_TEST(t.alive());
        op.complete(asio::error::operation_aborted, 0);
        t.join();
        BOOST_TEST(what == "threw cancelled");
    });
}

// An operation without an error code in its completion has completed
// whenever its handler runs.
BOOST_AUTO_TEST_CASE(a_completion_without_an_error_code_is_a_result) {
    on_new_thread([] {
        std::function<void(int)> complete;
        std::string what, next;
        fibers::task t = fibers::spawn([&] {
            try {
                int const v = asio::async_initiate<decltype(fibers::yield) const&, void(int)>(
                    [&complete](auto handler) {
                        auto held = std::make_shared<decltype(handler)>(std::move(handler));
                        complete = [held](int v) { std::move(*held)(v); };
                    },
                    fibers::yield);
                what = "returned " + std::to_string(v);
            } catch (fibers::cancelled const&) {
                what = "threw cancelled";
            }
            next = what_a_sleep_does(10ms);
        });
        while (!complete)
            fibers::sleep(0s);
        t.cancel();
        complete(5);
        t.join();
        BOOST_TEST(what == "returned 5");
        BOOST_TEST(next == "threw cancelled");
    });
}

// A cancel deferred by an operation that had completed comes before the
// next operation starts: were it delivered in the next one's wait, an
// operation that completes at once would defer it again, each time.
BOOST_AUTO_TEST_CASE(a_deferred_cancel_comes_before_the_next_operation_starts) {
    on_new_thread([] {
        auto& io = fibers::get_hub().loop();
        held_operation op;
        std::string what;
        int starts = 0;
        fibers::task t = fibers::spawn([&] {
            what = "returned " + std::to_string(async_held(op, fibers::yield));
            try {
                for (int i = 0; i < 100; ++i)
                    fibers_test::async_at_once(io, starts, fibers::yield);
                what += ", then 100 operations";
            } catch (fibers::cancelled const&) {
                what += ", then threw cancelled";
            }
        });
        while (!op.complete)
            fibers::sleep(0s);
        t.cancel();
        op.complete({}, 42);
        t.join();
        BOOST_TEST(what == "returned 42, then threw cancelled");
        BOOST_TEST(starts == 0);
    });
}

// Once the deferred cancel was delivered (here by a sleep), the next
// operation starts at once: no turn is given first to what is queued.
BOOST_AUTO_TEST_CASE(a_delivered_deferred_cancel_leaves_the_next_operation_alone) {
    on_new_thread([] {
        auto& io = fibers::get_hub().loop();
        held_operation op;
        std::string what;
        bool bystander_ran = false;
        bool started_after_the_bystander = true;
        fibers::task t = fibers::spawn([&] {
            what = "returned " + std::to_string(async_held(op, fibers::yield));
            what += ", then the sleep " + what_a_sleep_does(10s);
            fibers::task bystander = fibers::spawn([&] { bystander_ran = true; });
            asio::async_initiate<fibers::yield_t const&, void(boost::system::error_code)>(
                [&](auto handler) {
                    started_after_the_bystander = bystander_ran;
                    asio::post(io, [h = std::move(handler)]() mutable { std::move(h)(boost::system::error_code()); });
                },
                fibers::yield);
            bystander.join();
        });
        while (!op.complete)
            fibers::sleep(0s);
        t.cancel();
        op.complete({}, 42);
        t.join();
        BOOST_TEST(what == "returned 42, then the sleep threw cancelled");
        BOOST_TEST(!started_after_the_bystander);
        BOOST_TEST(bystander_ran);
    });
}

BOOST_AUTO_TEST_CASE(keyboard_interrupt_cancels_and_is_rethrown) {
    on_new_thread([] {
        auto& io = fibers::get_hub().loop();
        char target = '-';
        fill_probe probe;
        std::thread([] {
            std::this_thread::sleep_for(10ms);
            ::kill(::getpid(), SIGINT);
        }).detach();
        BOOST_CHECK_THROW(async_fill(io, &target, 'X', 10000ms, true, probe, fibers::yield),
                          fibers::keyboard_interrupt);
        BOOST_TEST(probe.completed);
        BOOST_TEST(target == '-');
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(misuse)

BOOST_AUTO_TEST_CASE(inside_assert_no_switchpoints_nothing_starts) {
    on_new_thread([] {
        auto& io = fibers::get_hub().loop();
        char target = '-';
        fill_probe probe;
        {
            fibers::assert_no_switchpoints guard;
            BOOST_CHECK_THROW(async_fill(io, &target, 'X', 1ms, true, probe, fibers::yield),
                              fibers::switchpoint_violation);
        }
        BOOST_TEST(!probe.started);
    });
}

BOOST_AUTO_TEST_CASE(on_a_closed_hub) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        asio::steady_timer timer(h.loop(), 1ms);
        h.close();
        BOOST_CHECK_THROW(timer.async_wait(fibers::yield), fibers::error);
    });
}

BOOST_AUTO_TEST_SUITE_END()
