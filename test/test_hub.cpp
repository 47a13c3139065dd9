// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#define BOOST_TEST_MODULE hub
#define BOOST_TEST_NO_MAIN
#define FIBERS_TEST_DEATH_MAIN
#include <boost/test/unit_test.hpp>

#include <fibers/hub.hpp>
#include <fibers/switch_back.hpp>
#include <fibers/task.hpp>

#include "child_process.hpp"
#include "hub_support.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using fibers_test::captured_log;
using fibers_test::on_new_thread;

namespace {

struct destruction_flag {
    std::atomic<bool>& flag;
    explicit destruction_flag(std::atomic<bool>& f) : flag(f) {}
    destruction_flag(destruction_flag const&) = delete;
    ~destruction_flag() { flag = true; }
};

} // namespace

BOOST_AUTO_TEST_SUITE(making)

BOOST_AUTO_TEST_CASE(one_hub_per_thread_made_from_the_root) {
    fibers::hub* mine = nullptr;
    fibers::hub* theirs = nullptr;
    on_new_thread([&] {
        mine = &fibers::get_hub();
        BOOST_TEST(mine == &fibers::hub::get());
        BOOST_TEST(mine->is_alive());
        BOOST_TEST(mine->name() == "Hub");
        BOOST_TEST(mine->as_fiber().parent() == fibers::current()); // a child of the root
        BOOST_TEST(mine->as_fiber().is_alive());
        std::thread([&] { theirs = &fibers::get_hub(); }).join();
    });
    BOOST_TEST(mine != theirs);
}

BOOST_AUTO_TEST_CASE(first_use_outside_the_root_is_an_error) {
    on_new_thread([] {
        bool threw = false;
        fibers::fiber f([&] {
            try {
                fibers::get_hub();
            } catch (fibers::error const&) {
                threw = true;
            }
        });
        f.switch_to();
        BOOST_TEST(threw);
        // From the root it works, and then from anywhere on the thread.
        fibers::hub& h = fibers::get_hub();
        fibers::fiber g([&] { BOOST_TEST(&fibers::get_hub() == &h); });
        g.switch_to();
    });
}

// Out of file descriptors, making a hub fails at one step or another (the
// event loop's epoll, eventfd and timerfd, the signal set's pipe); each is
// tried by leaving 0 to 7 descriptors free. The failed hub leaves nothing
// behind: once descriptors are free again, the same thread makes a hub
// that works. In a child process: it lowers the process's descriptor limit.
// UBSan's vptr check cannot run out of descriptors: builds with it skip
// this case (--run_test=!@out_of_descriptors).
BOOST_AUTO_TEST_CASE(a_hub_that_cannot_start_leaves_nothing_behind, *boost::unit_test::label("out_of_descriptors")) {
    auto child = fibers_test::run_in_child([] {
        rlimit limit{};
        ::getrlimit(RLIMIT_NOFILE, &limit);
        limit.rlim_cur = std::min<rlim_t>(limit.rlim_cur, 256);
        if (::setrlimit(RLIMIT_NOFILE, &limit) != 0)
            ::_exit(10);
        int failures = 0;
        for (int left_free = 0; left_free < 8; ++left_free) {
            int code = 0;
            std::thread([&] {
                std::vector<int> filler;
                for (int fd; (fd = ::open("/dev/null", O_RDONLY)) >= 0;)
                    filler.push_back(fd);
                for (int i = 0; i < left_free && !filler.empty(); ++i) {
                    ::close(filler.back());
                    filler.pop_back();
                }
                bool made = false;
                try {
                    fibers::get_hub();
                    made = true;
                } catch (std::exception const& e) {
                    if (std::string(e.what()).empty())
                        code = 11; // a failure must say what failed
                    ++failures;
                }
                for (int fd : filler)
                    ::close(fd);
                try {
                    fibers::hub& h = fibers::get_hub();
                    if (!h.is_alive())
                        code = 12;
                    int ran = 0;
                    fibers::task t = fibers::spawn([&] {
                        fibers::sleep(1ms);
                        ++ran;
                    });
                    t.join();
                    fibers::sleep(1ms);
                    if (ran != 1)
                        code = 13;
                    if (made && &h != &fibers::get_hub())
                        code = 14;
                } catch (std::exception const& e) {
                    std::fprintf(stderr, "after freeing descriptors: %s\n", e.what());
                    code = 15;
                }
            }).join();
            if (code != 0)
                ::_exit(code);
        }
        ::_exit(failures > 0 ? 0 : 16); // at least one hub could not start
    });
    BOOST_TEST(child.exited);
    BOOST_TEST(child.exit_code == 0, "exit code " << child.exit_code << ", stderr: " << child.stderr_text);
}

BOOST_AUTO_TEST_CASE(data_belongs_to_the_hub) {
    on_new_thread([] {
        fibers::get_hub().data()["answer"] = 42;
        BOOST_TEST(std::any_cast<int>(fibers::hub::get().data().at("answer")) == 42);
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(switching)

BOOST_AUTO_TEST_CASE(switch_to_returns_what_resumes_the_caller) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        fibers::switch_back<> back;
        h.run_callback([&] { back.switch_to(std::string("hello")); });
        BOOST_TEST(std::any_cast<std::string>(h.switch_to()) == "hello");
    });
}

BOOST_AUTO_TEST_CASE(switching_from_the_hub_itself_is_an_error) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        std::atomic<int> errors{0};
        h.run_callback([&] {
            try {
                h.switch_to();
            } catch (fibers::error const&) {
                ++errors;
            }
            try {
                fibers::sleep(0s);
            } catch (fibers::error const&) {
                ++errors;
            }
        });
        fibers::sleep(0s);
        fibers::sleep(0s);
        BOOST_TEST(errors.load() == 2);
    });
}

BOOST_AUTO_TEST_CASE(switching_from_another_thread_is_an_error) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        std::atomic<bool> threw{false};
        std::thread([&] {
            fibers::current(); // a thread with fibers, but not this hub's
            try {
                h.switch_to();
            } catch (fibers::error const&) {
                threw = true;
            }
        }).join();
        BOOST_TEST(threw.load());
    });
}

BOOST_AUTO_TEST_CASE(hub_ended_by_an_exception_rethrows_it_in_the_root) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        fibers::spawn([&] { h.as_fiber().throw_to(std::runtime_error("hub killed")); });
        BOOST_CHECK_EXCEPTION(h.switch_to(), std::runtime_error,
                              [](std::runtime_error const& e) { return std::string(e.what()) == "hub killed"; });
        BOOST_TEST(!h.is_alive());
        BOOST_CHECK_THROW(h.switch_to(), fibers::error);
    });
}

BOOST_AUTO_TEST_CASE(stopping_the_loop_ends_the_hub) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        std::atomic<bool> unwound{false};
        fibers::spawn([&] {
            destruction_flag guard{unwound};
            fibers::sleep(1h);
        });
        fibers::sleep(1ms); // that task waits in its sleep now
        fibers::spawn([&] { h.loop().stop(); });
        BOOST_TEST(!h.switch_to().has_value()); // the root gets an empty value
        BOOST_TEST(!h.is_alive());
        BOOST_TEST(unwound.load());
        BOOST_CHECK_THROW(h.switch_to(), fibers::error);
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(callbacks)

BOOST_AUTO_TEST_CASE(callbacks_run_in_order_in_the_hub) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        std::vector<int> order;
        bool in_hub = true;
        for (int i = 0; i < 100; ++i)
            h.run_callback([&, i] {
                order.push_back(i);
                in_hub = in_hub && fibers::current_fiber() == h.as_fiber();
            });
        fibers::sleep(0s); // behind all of them
        BOOST_TEST(order.size() == 100u);
        BOOST_TEST(std::is_sorted(order.begin(), order.end()));
        BOOST_TEST(in_hub);
    });
}

BOOST_AUTO_TEST_CASE(callbacks_from_four_threads) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        constexpr int threads = 4, each = 100;
        std::map<int, std::vector<int>> seen; // touched in the hub only
        int total = 0;
        fibers::switch_back<> all_done;
        std::vector<std::thread> posters;
        for (int t = 0; t < threads; ++t)
            posters.emplace_back([&, t] {
                for (int i = 0; i < each; ++i)
                    h.run_callback([&, t, i] {
                        seen[t].push_back(i);
                        if (++total == threads * each)
                            all_done.switch_to();
                    });
            });
        all_done.wait();
        for (auto& p : posters)
            p.join();
        BOOST_TEST(total == threads * each);
        for (auto& [t, numbers] : seen) // each thread's callbacks in its own order
            BOOST_TEST(std::is_sorted(numbers.begin(), numbers.end()));
    });
}

// Queues `fn` on `h` from another thread, and returns once that thread has
// told this one, which meanwhile polls an atomic without running the loop.
template <class Fn>
void queue_from_another_thread(fibers::hub& h, Fn fn) {
    std::atomic<bool> queued{false};
    std::thread poster([&] {
        h.run_callback(std::move(fn));
        queued.store(true, std::memory_order_release);
    });
    while (!queued.load(std::memory_order_acquire))
        std::this_thread::yield();
    poster.join();
}

constexpr int order_rounds = 200;

BOOST_AUTO_TEST_CASE(one_order_across_threads) {
    // Another thread queues A and then tells the hub's thread, which then
    // queues B: A runs first, as in Gruvi's single queue.
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        int out_of_order = 0;
        for (int round = 0; round < order_rounds; ++round) {
            std::string order;
            queue_from_another_thread(h, [&] { order += 'A'; });
            h.run_callback([&] { order += 'B'; });
            for (int i = 0; i < 100 && order.size() < 2; ++i)
                fibers::sleep(0s);
            BOOST_TEST_REQUIRE(order.size() == 2u);
            out_of_order += order != "AB";
        }
        BOOST_TEST(out_of_order == 0);
    });
}

BOOST_AUTO_TEST_CASE(a_switch_back_completes_after_what_another_thread_queued_first) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        int out_of_order = 0;
        for (int round = 0; round < order_rounds; ++round) {
            std::string order;
            fibers::switch_back<>* waiting = nullptr;
            fibers::task t = fibers::spawn([&] {
                fibers::switch_back<> back;
                waiting = &back;
                back.wait();
                order += 'T';
            });
            while (waiting == nullptr)
                fibers::sleep(0s);
            queue_from_another_thread(h, [&] { order += 'A'; });
            waiting->switch_to(); // the task's resumption is queued here, on the hub's thread
            t.join(10s);
            BOOST_TEST_REQUIRE(order.size() == 2u);
            out_of_order += order != "AT";
        }
        BOOST_TEST(out_of_order == 0);
    });
}

BOOST_AUTO_TEST_CASE(sleep_zero_waits_behind_what_another_thread_queued_first) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        int out_of_order = 0;
        for (int round = 0; round < order_rounds; ++round) {
            bool ran = false;
            queue_from_another_thread(h, [&] { ran = true; });
            fibers::sleep(0s);
            out_of_order += !ran;
            for (int i = 0; i < 100 && !ran; ++i)
                fibers::sleep(0s);
        }
        BOOST_TEST(out_of_order == 0);
    });
}

BOOST_AUTO_TEST_CASE(a_callback_from_another_thread_wakes_an_idle_loop) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        fibers::switch_back<> back(30s); // nothing else would wake the loop before that
        std::thread poster([&] {
            std::this_thread::sleep_for(20ms);
            h.run_callback([&] { back.switch_to(1); });
        });
        auto start = std::chrono::steady_clock::now();
        BOOST_TEST(std::any_cast<int>(h.switch_to()) == 1);
        BOOST_TEST((std::chrono::steady_clock::now() - start < 10s));
        poster.join();
    });
}

BOOST_AUTO_TEST_CASE(a_throwing_callback_is_logged_and_dropped) {
    on_new_thread([] {
        captured_log log;
        fibers::hub& h = fibers::get_hub();
        bool after = false;
        h.run_callback([] { throw std::runtime_error("callback failed"); });
        h.run_callback([&] { after = true; });
        fibers::sleep(0s);
        BOOST_TEST(after);
        BOOST_TEST(log.contains("callback failed"));
    });
}

BOOST_AUTO_TEST_CASE(a_throwing_asio_handler_is_logged_and_not_fatal) {
    on_new_thread([] {
        captured_log log;
        fibers::hub& h = fibers::get_hub();
        boost::asio::post(h.loop(), [] { throw std::runtime_error("handler failed"); });
        fibers::sleep(10ms);
        BOOST_TEST(log.contains("handler failed"));
        BOOST_TEST(h.is_alive());
        fibers::sleep(1ms); // still running
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(closing)

BOOST_AUTO_TEST_CASE(close_ends_the_hub_and_unwinds_its_tasks) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        std::atomic<bool> unwound{false};
        std::atomic<bool> discarded{false};
        bool done_callback = false;
        fibers::task sleeper = fibers::spawn([&] {
            destruction_flag guard{unwound};
            fibers::sleep(1h);
        });
        sleeper.add_done_callback([&] { done_callback = true; });
        fibers::task never([guard = std::make_shared<destruction_flag>(discarded)] {});
        fibers::sleep(1ms); // the sleeper is waiting now
        h.close();
        BOOST_TEST(!h.is_alive());
        BOOST_TEST(unwound.load());
        BOOST_TEST(done_callback);
        BOOST_TEST(!sleeper.alive());
        BOOST_TEST(!never.alive()); // never started: discarded with the hub
        BOOST_TEST(&fibers::get_hub() == &h); // the same, closed hub
        h.close();                            // twice is fine
        BOOST_CHECK_THROW(h.run_callback([] {}), fibers::error);
        BOOST_CHECK_THROW(h.switch_to(), fibers::error);
        BOOST_CHECK_THROW(fibers::sleep(0s), fibers::error);
        BOOST_CHECK_THROW(fibers::spawn([] {}), fibers::error);
    });
}

BOOST_AUTO_TEST_CASE(close_from_a_task_is_an_error) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        bool threw = false;
        fibers::spawn([&] {
            try {
                h.close();
            } catch (fibers::error const&) {
                threw = true;
            }
        }).join();
        BOOST_TEST(threw);
        BOOST_TEST(h.is_alive());
    });
}

BOOST_AUTO_TEST_CASE(close_from_another_thread_is_an_error) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        std::atomic<bool> threw{false};
        std::thread([&] {
            try {
                h.close();
            } catch (fibers::error const&) {
                threw = true;
            }
        }).join();
        BOOST_TEST(threw.load());
        BOOST_TEST(h.is_alive());
        fibers::sleep(0s);
    });
}

BOOST_AUTO_TEST_CASE(close_before_the_loop_ever_ran) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        std::atomic<bool> discarded{false};
        fibers::task t = fibers::spawn([guard = std::make_shared<destruction_flag>(discarded)] {});
        h.close();
        BOOST_TEST(!h.is_alive());
        BOOST_TEST(discarded.load());
        BOOST_TEST(!t.alive());
    });
}

BOOST_AUTO_TEST_CASE(thread_exit_closes_the_hub) {
    std::atomic<bool> unwound{false};
    on_new_thread([&] {
        fibers::spawn([&] {
            destruction_flag guard{unwound};
            fibers::sleep(1h);
        });
        fibers::sleep(1ms);
    });
    BOOST_TEST(unwound.load());
}

BOOST_AUTO_TEST_CASE(a_handle_dropped_elsewhere_is_settled_by_the_loop) {
    on_new_thread([] {
        std::atomic<bool> unwound{false};
        fibers::fiber root = fibers::current();
        fibers::fiber f([&] {
            destruction_flag guard{unwound};
            fibers::fiber(root).switch_to();
        });
        f.switch_to();
        std::thread([moved = std::move(f)]() mutable { moved = fibers::fiber(); }).join();
        fibers::switch_back<> never(5s);
        // The loop is woken and settles it without any new fiber being made.
        auto const give_up = std::chrono::steady_clock::now() + 10s;
        while (!unwound.load() && std::chrono::steady_clock::now() < give_up)
            fibers::sleep(1ms);
        BOOST_TEST(unwound.load());
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(interrupts)

BOOST_AUTO_TEST_CASE(sigint_from_another_thread_interrupts_the_root) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        BOOST_TEST(!h.ignore_interrupt());
        std::thread([] { ::kill(::getpid(), SIGINT); }).join();
        BOOST_CHECK_THROW(fibers::sleep(30s), fibers::keyboard_interrupt);
        BOOST_TEST(h.is_alive());
    });
}

BOOST_AUTO_TEST_CASE(ignore_interrupt_ignores_sigint) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        h.ignore_interrupt(true);
        BOOST_TEST(h.ignore_interrupt());
        std::thread([] { ::kill(::getpid(), SIGINT); }).join();
        BOOST_CHECK_NO_THROW(fibers::sleep(100ms)); // the signal arrives and is ignored
        h.ignore_interrupt(false);
        std::thread([] { ::kill(::getpid(), SIGINT); }).join();
        BOOST_CHECK_THROW(fibers::sleep(30s), fibers::keyboard_interrupt);
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(polling)

BOOST_AUTO_TEST_CASE(fd_readiness_runs_callbacks_in_the_hub) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        int fds[2];
        BOOST_TEST_REQUIRE(::pipe(fds) == 0);
        fibers::switch_back<int, fibers::poll_events> ready(10s);
        fibers::poll_handle handle = h.poll().add_callback(fds[0], fibers::poll_events::readable, ready);
        BOOST_TEST_REQUIRE(::write(fds[1], "x", 1) == 1);
        auto [fd, events] = ready.wait();
        BOOST_TEST(fd == fds[0]);
        BOOST_TEST((events == fibers::poll_events::readable));
        h.poll().remove_callback(fds[0], handle);
        char c;
        BOOST_TEST(::read(fds[0], &c, 1) == 1); // not closed by the poller
        ::close(fds[0]);
        ::close(fds[1]);
    });
}

namespace {

// Runs `fn` on a fresh thread in a child process that SIGALRM ends if `fn`
// has not returned within `limit`: a loop that never lets go fails the
// test instead of hanging it. Exit code 0: fn returned; 1: it threw.
template <class Fn>
fibers_test::child_result run_with_time_limit(unsigned limit_seconds, Fn fn) {
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

} // namespace

// A callback that leaves its fd readable is called in every loop turn
// (level-triggered), and each call queues the next: the loop must still
// serve timers and the ready queue, spinning or not.
BOOST_AUTO_TEST_CASE(an_fd_that_stays_ready_does_not_starve_timers) {
    for (auto spin : {fibers::hub::default_idle_spin, std::chrono::nanoseconds(0), std::chrono::nanoseconds(10ms)}) {
        auto child = run_with_time_limit(30, [spin] {
            fibers::hub& h = fibers::get_hub();
            h.idle_spin(spin);
            int fds[2];
            if (::pipe(fds) != 0)
                throw std::runtime_error("pipe");
            if (::write(fds[1], "x", 1) != 1)
                throw std::runtime_error("write");
            long calls = 0;
            fibers::poll_handle handle =
                h.poll().add_callback(fds[0], fibers::poll_events::readable, [&](int, fibers::poll_events) { ++calls; });
            while (calls < 2) // called again and again, and the timers still fire
                fibers::sleep(1ms);
            long const before = calls;
            fibers::sleep(10ms);
            bool ticked = false;
            fibers::spawn([&] { ticked = true; }).join();
            if (calls == before || !ticked)
                throw std::runtime_error("the callback or the task did not run");
            h.poll().remove_callback(fds[0], handle);
            ::close(fds[0]);
            ::close(fds[1]);
        });
        BOOST_TEST(child.exited, "idle spin " << spin.count() << " ns: killed by signal " << child.signal);
        BOOST_TEST(child.exit_code == 0, child.stderr_text);
    }
}

// poller.md's wait_readable(), next to a task that keeps the ready queue
// busy: the loop looks at I/O between dispatches only, and must come back.
BOOST_AUTO_TEST_CASE(wait_readable_next_to_a_busy_task) {
    auto child = run_with_time_limit(30, [] {
        auto wait_readable = [](int fd) {
            fibers::poller& p = fibers::get_hub().poll();
            fibers::switch_back<fibers::poll_events> sb;
            fibers::poll_handle h =
                p.add_callback(fd, fibers::poll_events::readable, [sb](int, fibers::poll_events ready) { sb(ready); });
            struct remove_on_exit {
                fibers::poller& p;
                int fd;
                fibers::poll_handle h;
                ~remove_on_exit() { p.remove_callback(fd, h); }
            } guard{p, fd, h};
            auto [ready] = sb.wait();
            return ready;
        };
        int fds[2];
        if (::pipe(fds) != 0)
            throw std::runtime_error("pipe");
        bool stop = false;
        long turns = 0;
        fibers::task busy = fibers::spawn([&] {
            while (!stop) {
                ++turns;
                fibers::sleep(0s);
            }
        });
        for (int i = 0; i < 200; ++i) {
            if (::write(fds[1], "x", 1) != 1)
                throw std::runtime_error("write");
            if (wait_readable(fds[0]) != fibers::poll_events::readable)
                throw std::runtime_error("not readable");
            char c;
            if (::read(fds[0], &c, 1) != 1)
                throw std::runtime_error("read");
        }
        fibers::sleep(5ms); // timers still fire next to the busy task
        stop = true;
        busy.join();
        ::close(fds[0]);
        ::close(fds[1]);
    });
    BOOST_TEST(child.exited, "killed by signal " << child.signal);
    BOOST_TEST(child.exit_code == 0, child.stderr_text);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(idle_spin)

namespace {

// How many times the calling thread has blocked in the kernel, as the
// kernel counts it (voluntary context switches). A loop that polls never
// blocks, however loaded the machine: it is preempted, which counts apart;
// a loop that sleeps in epoll_wait blocks at each wait not over already.
long times_blocked() {
    std::ifstream in("/proc/thread-self/status");
    std::string const key = "voluntary_ctxt_switches:";
    for (std::string line; std::getline(in, line);)
        if (line.rfind(key, 0) == 0)
            return std::stol(line.substr(key.size()));
    BOOST_FAIL("no voluntary_ctxt_switches in /proc/thread-self/status");
    return -1;
}

// How many times the thread blocked in sleep(d).
long times_blocked_in_sleep(std::chrono::milliseconds d) {
    long const before = times_blocked();
    fibers::sleep(d);
    return times_blocked() - before;
}

void warm_up() {
    for (int i = 0; i < 3; ++i)
        fibers::sleep(1ms); // waits short enough to turn spinning on
}

} // namespace

BOOST_AUTO_TEST_CASE(set_and_read_from_any_thread) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        BOOST_TEST(h.idle_spin().count() == fibers::hub::default_idle_spin.count());
        h.idle_spin(10us);
        BOOST_TEST(h.idle_spin().count() == std::chrono::nanoseconds(10us).count());
        std::thread([&] { h.idle_spin(0ns); }).join();
        BOOST_TEST(h.idle_spin().count() == 0);
        BOOST_CHECK_THROW(h.idle_spin(-1ns), std::invalid_argument);
        BOOST_TEST(h.idle_spin().count() == 0);
    });
}

// Whether the hub's thread blocks in the kernel while it waits, not how
// much CPU it gets, which depends on the load. A wait that follows short
// ones polls through, never blocking (the budget, 10 s, outlasts each
// 100 ms sleep); a wait that follows a long one, or with the spin off,
// blocks. One sleep of five may block for reasons of the kernel's own (a
// contended lock); a hub that did not spin would block in all five.
BOOST_AUTO_TEST_CASE(a_busy_hub_polls_while_it_waits) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        h.idle_spin(10s);
        warm_up();
        int blocked = 0;
        for (int i = 0; i < 5; ++i)
            blocked += times_blocked_in_sleep(100ms) != 0 ? 1 : 0;
        BOOST_TEST_MESSAGE(blocked << " of 5 sleeps of 100 ms after short waits blocked");
        BOOST_TEST(blocked <= 1);
    });
}

// The budget (1 s) outlasts the sleep measured (200 ms): a hub that spun
// first would spin through it and never block.
BOOST_AUTO_TEST_CASE(a_quiet_hub_sleeps_at_once) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        h.idle_spin(1s);
        fibers::sleep(1500ms); // longer than the budget: the next wait does not spin
        BOOST_TEST(times_blocked_in_sleep(200ms) >= 1);
    });
}

BOOST_AUTO_TEST_CASE(zero_turns_it_off) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        h.idle_spin(0ns);
        warm_up();
        BOOST_TEST(times_blocked_in_sleep(200ms) >= 1);
    });
}

// Work from another thread ends a spin as soon as it is queued. The budget
// is an hour: a spin that did not see the work would keep it until the
// backstop (the wait's timeout) fails the test.
BOOST_AUTO_TEST_CASE(a_spinning_hub_takes_work_from_another_thread) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        h.idle_spin(1h);
        warm_up();
        fibers::switch_back<> called(30s);
        std::thread other([&] {
            // Not for synchronisation: lets the hub be in its spin when the
            // work comes, which the test is about.
            std::this_thread::sleep_for(20ms);
            h.run_callback([&] { called(); });
        });
        BOOST_CHECK_NO_THROW(called.wait());
        other.join();
        BOOST_TEST(!called.timed_out());
    });
}

BOOST_AUTO_TEST_SUITE_END()
