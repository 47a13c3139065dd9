// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#define BOOST_TEST_MODULE diagnostics
#include <boost/test/unit_test.hpp>

#include <fibers/diagnostics.hpp>
#include <fibers/fiber.hpp>
#include <fibers/hub.hpp>
#include <fibers/log.hpp>
#include <fibers/stack.hpp>
#include <fibers/switch_back.hpp>
#include <fibers/sync.hpp>
#include <fibers/task.hpp>
#include <fibers/yield.hpp>

#include "child_process.hpp"
#include "fiber_registry.hpp" // src/: the lock on a thread's list of fibers, tested here
#include "socket_support.hpp"
#include "test_support.hpp"

#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <alloca.h>
#include <sys/syscall.h>
#include <unistd.h>

using namespace std::chrono_literals;
using fibers::fiber_info;
using fibers::fiber_state;
using fibers_test::on_new_thread;

namespace {

fiber_info const* find(std::vector<fiber_info> const& fibers, std::string const& name) {
    auto it = std::find_if(fibers.begin(), fibers.end(), [&](fiber_info const& f) { return f.name == name; });
    return it == fibers.end() ? nullptr : &*it;
}

bool starts_with(std::string const& s, std::string const& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

std::string describe(std::vector<fiber_info> const& fibers) {
    std::ostringstream out;
    for (fiber_info const& f : fibers)
        out << "  " << f.name << " (" << f.kind << ") waiting on `" << f.waiting_on << "`\n";
    return out.str();
}

// Lets every task that was spawned run up to its first wait.
void let_tasks_settle() {
    for (int k = 0; k < 10; ++k)
        fibers::sleep(0s);
}

} // namespace

BOOST_AUTO_TEST_SUITE(listing)

BOOST_AUTO_TEST_CASE(a_thread_without_fibers_lists_its_root) {
    on_new_thread([] {
        std::vector<fiber_info> fibers = fibers::list_fibers();
        BOOST_REQUIRE_EQUAL(fibers.size(), 1u);
        fiber_info const& root = fibers[0];
        BOOST_TEST(root.name == "Root");
        BOOST_TEST(root.kind == "root");
        BOOST_TEST(root.parent_id == 0u);
        BOOST_TEST(root.id != 0u);
        BOOST_TEST((root.state == fiber_state::running));
        BOOST_TEST(root.stack_size == 0u);
        BOOST_TEST(root.waiting_on.empty());
    });
}

BOOST_AUTO_TEST_CASE(fibers_are_listed_from_birth_to_end_with_their_tree) {
    on_new_thread([] {
        std::uintptr_t const root_id = fibers::list_fibers().at(0).id;
        fibers::fiber plain([] { fibers::fiber::current().parent().switch_to(); });
        std::vector<fiber_info> before = fibers::list_fibers();
        BOOST_REQUIRE_EQUAL(before.size(), 2u);
        fiber_info const& made = before[1];
        BOOST_TEST(made.kind == "fiber");
        BOOST_TEST(starts_with(made.name, "fiber-0x"));
        BOOST_TEST((made.state == fiber_state::not_started));
        BOOST_TEST(made.parent_id == root_id);

        plain.switch_to(); // it runs, and switches back at once
        std::vector<fiber_info> during = fibers::list_fibers();
        BOOST_REQUIRE_EQUAL(during.size(), 2u);
        BOOST_TEST((during[1].state == fiber_state::suspended));
        BOOST_TEST(during[1].id == made.id);
        BOOST_TEST(during[1].stack_size > 0u);
        BOOST_TEST(during[1].waiting_on.empty()); // a plain switch publishes nothing

        plain.switch_to(); // it returns
        BOOST_TEST(!plain.is_alive());
        BOOST_TEST(fibers::list_fibers().size() == 1u);
    });
}

BOOST_AUTO_TEST_CASE(the_running_fiber_is_running_and_its_callers_suspended) {
    on_new_thread([] {
        std::vector<fiber_info> seen;
        fibers::fiber f([&] { seen = fibers::list_fibers(); });
        f.switch_to();
        BOOST_REQUIRE_EQUAL(seen.size(), 2u);
        BOOST_TEST((seen[0].state == fiber_state::suspended));
        BOOST_TEST((seen[1].state == fiber_state::running));
    });
}

BOOST_AUTO_TEST_CASE(each_wait_publishes_what_it_waits_on) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        fibers::mutex m;
        fibers::event never;
        fibers::mutex cm;
        fibers::condition cond(cm);
        fibers::queue<int> q;
        fibers::queue<int> full(1);
        full.put(1);
        boost::asio::steady_timer timer(h.loop(), 1h);
        std::vector<fibers::task> tasks;
        m.lock();
        auto named = [](char const* name) { return fibers::task_options{name}; };
        tasks.push_back(fibers::spawn([] { fibers::sleep(1h); }, named("sleeper")));
        fibers::task sleeper = tasks.back();
        tasks.push_back(fibers::spawn([&] { sleeper.join(); }, named("joiner")));
        tasks.push_back(fibers::spawn([&] { sleeper.join(1h); }, named("timed joiner")));
        tasks.push_back(fibers::spawn([&] { m.lock(); m.unlock(); }, named("locker")));
        tasks.push_back(fibers::spawn([&] { never.wait(); }, named("event waiter")));
        tasks.push_back(fibers::spawn([&] { never.wait(1h); }, named("timed event waiter")));
        tasks.push_back(fibers::spawn([&] {
            std::lock_guard<fibers::mutex> lock(cm);
            cond.wait();
        }, named("condition waiter")));
        tasks.push_back(fibers::spawn([&] { q.get(); }, named("getter")));
        tasks.push_back(fibers::spawn([&] { full.put(2); }, named("putter")));
        tasks.push_back(fibers::spawn([&] { timer.async_wait(fibers::yield); }, named("asio waiter")));
        tasks.push_back(fibers::spawn([] { fibers::switch_back<> sb; sb.wait(); }, named("switch_back waiter")));
        let_tasks_settle();

        std::vector<fiber_info> fibers = fibers::list_fibers();
        BOOST_TEST_MESSAGE("listed:\n" << describe(fibers));
        auto waiting_on = [&](std::string const& name) {
            fiber_info const* f = find(fibers, name);
            BOOST_REQUIRE_MESSAGE(f != nullptr, name << " is not listed");
            BOOST_TEST((f->state == fiber_state::suspended));
            BOOST_TEST(f->kind == "task");
            return f->waiting_on;
        };
        auto address = [](void const* p) {
            std::ostringstream out;
            out << std::hex << "0x" << reinterpret_cast<std::uintptr_t>(p);
            return out.str();
        };
        std::string const sleep = waiting_on("sleeper");
        BOOST_TEST(starts_with(sleep, "sleep, "), sleep);
        BOOST_TEST(sleep.find(" s left") != std::string::npos, sleep);
        BOOST_TEST(waiting_on("joiner") == "join sleeper");
        BOOST_TEST(starts_with(waiting_on("timed joiner"), "join sleeper, "));
        BOOST_TEST(starts_with(waiting_on("locker"), "mutex 0x"));
        BOOST_TEST(waiting_on("event waiter") == "event " + address(&never));
        BOOST_TEST(starts_with(waiting_on("timed event waiter"), "event " + address(&never) + ", "));
        BOOST_TEST(waiting_on("condition waiter") == "condition " + address(&cond));
        BOOST_TEST(waiting_on("getter") == "queue get " + address(&q));
        BOOST_TEST(waiting_on("putter") == "queue put " + address(&full));
        std::string const asio = waiting_on("asio waiter");
        BOOST_TEST(starts_with(asio, "asio void("), asio);
        BOOST_TEST(asio.find("error_code") != std::string::npos, asio);
        BOOST_TEST(waiting_on("switch_back waiter") == "switch_back");

        fiber_info const* hub = find(fibers, "Hub");
        BOOST_REQUIRE(hub != nullptr);
        BOOST_TEST(hub->kind == "hub");
        BOOST_TEST(hub->parent_id == fibers.at(0).id);
        for (fiber_info const& f : fibers)
            if (f.kind == "task")
                BOOST_TEST(f.parent_id == hub->id);

        m.unlock();
        for (fibers::task& t : tasks)
            t.cancel();
        for (fibers::task& t : tasks)
            t.join();
        BOOST_TEST(fibers::list_fibers().size() == 2u); // the root and the hub
        h.close();
    });
}

BOOST_AUTO_TEST_CASE(a_wait_that_returned_publishes_nothing) {
    on_new_thread([] {
        fibers::event go;
        fibers::event back;
        fibers::task t = fibers::spawn([&] {
            go.wait();
            back.set();
            fibers::get_hub().switch_to(); // resumed by nothing: a plain switch
        }, fibers::task_options{"waiter"});
        let_tasks_settle();
        BOOST_TEST(find(fibers::list_fibers(), "waiter")->waiting_on.find("event") == 0u);
        go.set();
        back.wait();
        let_tasks_settle();
        BOOST_TEST(find(fibers::list_fibers(), "waiter")->waiting_on.empty());
        t.cancel();
        t.join();
        fibers::get_hub().close();
    });
}

// Every kind of resumption, queued on the hub's own thread or, through its
// mailbox, from another: each fiber it is for is `ready` until it runs.
BOOST_AUTO_TEST_CASE(a_fiber_whose_resumption_is_queued_is_ready) {
    on_new_thread([] {
        fibers::event go;
        std::optional<fibers::switch_back<>> called_from_afar;
        bool yielding = true;
        std::vector<fibers::task> tasks;
        tasks.push_back(fibers::spawn([&] { go.wait(); }, fibers::task_options{"set"}));
        tasks.push_back(fibers::spawn([] { fibers::event().wait(); }, fibers::task_options{"cancelled"}));
        tasks.push_back(fibers::spawn([&] {
            called_from_afar.emplace();
            called_from_afar->wait();
        }, fibers::task_options{"remote"}));
        tasks.push_back(fibers::spawn([&] {
            while (yielding)
                fibers::sleep(0s);
        }, fibers::task_options{"yielding"}));
        tasks.push_back(fibers::spawn([] { fibers::sleep(1h); }, fibers::task_options{"sleeping"}));
        fibers::task joined = fibers::spawn([&] { go.wait(); }, fibers::task_options{"joined"});
        tasks.push_back(fibers::spawn([&] { joined.join(); }, fibers::task_options{"joiner"}));
        let_tasks_settle();
        std::vector<fiber_info> const before = fibers::list_fibers();
        for (char const* name : {"set", "cancelled", "remote", "sleeping", "joined", "joiner"})
            BOOST_TEST((find(before, name)->state == fiber_state::suspended), name);
        BOOST_TEST((find(before, "yielding")->state == fiber_state::ready));

        go.set();
        tasks[1].cancel();
        std::thread([c = *called_from_afar] { c(); }).join();
        std::vector<fiber_info> const after = fibers::list_fibers();
        BOOST_TEST_MESSAGE(describe(after));
        for (char const* name : {"set", "cancelled", "remote", "yielding", "joined"}) {
            BOOST_TEST((find(after, name)->state == fiber_state::ready), name);
            BOOST_TEST(find(after, name)->waiting_on.empty(), name);
        }
        BOOST_TEST((find(after, "sleeping")->state == fiber_state::suspended));
        BOOST_TEST((find(after, "joiner")->state == fiber_state::suspended)); // until "joined" ends
        BOOST_TEST((find(after, "Hub")->state == fiber_state::suspended));
        std::ostringstream dump;
        fibers::dump_fibers(dump);
        BOOST_TEST(dump.str().find(" ready ") != std::string::npos, dump.str());

        // The root's turn comes after each of them has run once: "joined"
        // ends then, and wakes its joiner.
        yielding = false;
        fibers::sleep(0s);
        BOOST_TEST(!find(fibers::list_fibers(), "joined"));
        BOOST_TEST((find(fibers::list_fibers(), "joiner")->state == fiber_state::ready));
        tasks[4].cancel();
        for (fibers::task& t : tasks)
            t.join();
        for (fiber_info const& f : fibers::list_fibers())
            BOOST_TEST((f.state != fiber_state::ready), f.name);
        fibers::get_hub().close();
    });
}

BOOST_AUTO_TEST_CASE(the_root_publishes_its_waits_too) {
    on_new_thread([] {
        std::vector<fiber_info> seen;
        fibers::task t = fibers::spawn([&] { seen = fibers::list_fibers(); }, fibers::task_options{"looker"});
        t.join();
        BOOST_REQUIRE(!seen.empty());
        BOOST_TEST(seen[0].waiting_on == "join looker");
        BOOST_TEST((find(seen, "looker")->state == fiber_state::running));
        fibers::get_hub().close();
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(dumps)

// A thread with a hub and named tasks waiting, until told to stop.
class busy_thread {
public:
    explicit busy_thread(std::vector<std::string> names) : names_(std::move(names)) {
        thread_ = std::thread([this] { run(); });
        while (!ready_.load())
            std::this_thread::sleep_for(1ms);
    }
    ~busy_thread() {
        stop_.set();
        thread_.join();
    }
    long os_thread_id() const { return tid_; }

private:
    void run() {
        tid_ = static_cast<long>(::syscall(SYS_gettid));
        std::vector<fibers::task> tasks;
        for (std::string const& name : names_)
            tasks.push_back(fibers::spawn([this] { stop_.wait(); }, fibers::task_options{name}));
        let_tasks_settle();
        ready_.store(true);
        stop_.wait();
        for (fibers::task& t : tasks)
            t.join();
        fibers::get_hub().close();
    }

    std::vector<std::string> names_;
    fibers::event stop_;
    std::atomic<bool> ready_{false};
    long tid_ = 0;
    std::thread thread_;
};

BOOST_AUTO_TEST_CASE(a_dump_shows_every_thread_and_its_fibers) {
    busy_thread one({"alpha", "beta"});
    busy_thread two({"gamma"});
    std::string dump;
    long caller = 0;
    on_new_thread([&] {
        fibers::list_fibers(); // the caller has fibers too
        caller = static_cast<long>(::syscall(SYS_gettid));
        std::ostringstream out;
        fibers::dump_fibers(out);
        dump = out.str();
    });
    BOOST_TEST_MESSAGE(dump);
    // The root, the hub and the tasks.
    BOOST_TEST(dump.find("thread " + std::to_string(one.os_thread_id()) + ": 4 fibers\n") != std::string::npos);
    BOOST_TEST(dump.find("thread " + std::to_string(two.os_thread_id()) + ": 3 fibers\n") != std::string::npos);
    for (char const* name : {"alpha", "beta", "gamma"})
        BOOST_TEST(dump.find(name) != std::string::npos, name);
    BOOST_TEST(dump.find("waiting on") != std::string::npos);
    BOOST_TEST(dump.find("thread " + std::to_string(caller) + " (this thread): 1 fiber\n") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_signal_dumps_to_stderr_and_the_program_goes_on) {
    fibers_test::child_result r = fibers_test::run_in_child([] {
        fibers::event never;
        fibers::task t = fibers::spawn([&] { never.wait(); }, fibers::task_options{"patient"});
        let_tasks_settle();
        fibers::dump_fibers_on_signal(SIGUSR1);
        ::raise(SIGUSR1);
        ::write(2, "went on\n", 8);
        t.cancel();
        t.join();
        fibers::get_hub().close();
    });
    BOOST_TEST_MESSAGE(r.stderr_text);
    BOOST_TEST(r.exited);
    BOOST_TEST(r.exit_code == 0);
    std::string const& err = r.stderr_text;
    BOOST_TEST(err.find("fibers: dump of 1 thread") != std::string::npos, err);
    BOOST_TEST(err.find("patient") != std::string::npos, err);
    BOOST_TEST(err.find("event 0x") != std::string::npos, err);
    BOOST_TEST(err.find("went on") != std::string::npos, err);
}

BOOST_AUTO_TEST_CASE(a_signal_that_cannot_be_caught_is_refused) {
    BOOST_CHECK_THROW(fibers::dump_fibers_on_signal(SIGKILL), std::system_error);
    BOOST_CHECK_THROW(fibers::dump_fibers_on_signal(-1), std::system_error);
}

// Hostile: threads come and go, fibers start and end, while other threads
// dump and list in a loop.
BOOST_AUTO_TEST_CASE(dumping_while_fibers_and_threads_come_and_go) {
    std::atomic<bool> stop{false};
    std::atomic<std::size_t> dumps{0};
    std::atomic<std::size_t> short_lists{0}; // Boost.Test checks only on this thread
    std::vector<std::thread> churners;
    for (int k = 0; k < 2; ++k) {
        churners.emplace_back([&] {
            while (!stop.load()) {
                std::thread([&short_lists] {
                    for (int round = 0; round < 20; ++round) {
                        std::vector<fibers::task> tasks;
                        auto m = std::make_unique<fibers::mutex>(); // gone after the round, as its waits are
                        for (int n = 0; n < 5; ++n)
                            tasks.push_back(fibers::spawn([&m] {
                                std::lock_guard<fibers::mutex> hold(*m);
                                fibers::sleep(0s);
                            }));
                        fibers::fiber f([] {});
                        if (round % 2 == 0)
                            f.switch_to();
                        for (fibers::task& t : tasks)
                            t.join();
                        m.reset();
                        if (fibers::list_fibers().size() < 2u) // the root and the hub at least
                            ++short_lists;
                    }
                    fibers::get_hub().close();
                }).join();
            }
        });
    }
    std::thread dumper([&] {
        while (!stop.load()) {
            std::ostringstream out;
            fibers::dump_fibers(out);
            if (out.str().find("fibers: dump of") == 0)
                ++dumps;
        }
    });
    std::this_thread::sleep_for(1s);
    stop.store(true);
    dumper.join();
    for (std::thread& t : churners)
        t.join();
    BOOST_TEST(dumps.load() > 0u);
    BOOST_TEST(short_lists.load() == 0u);
}

namespace fd = fibers::detail;

void yield_until(std::atomic<bool> const& flag) {
    while (!flag.load())
        std::this_thread::yield();
}

// The lock on a thread's list of live fibers, from both sides.
BOOST_AUTO_TEST_CASE(a_reader_of_another_threads_list_waits_out_its_change) {
    std::atomic<fd::thread_state*> owner_state{nullptr};
    std::atomic<bool> changing{false}, may_end_change{false}, changed{false}, may_exit{false};
    std::thread owner([&] {
        (void)fibers::fiber::current(); // the thread's state, registered
        fd::thread_state& ts = *fd::current_thread_state;
        owner_state = &ts;
        {
            fd::live_list_change change(ts);
            changing = true;
            yield_until(may_end_change);
        }
        changed = true;
        yield_until(may_exit);
    });
    yield_until(changing);
    bool const read_during_change = fd::try_live_list_read(*owner_state.load(), 3);
    if (read_during_change)
        fd::end_live_list_read(*owner_state.load());
    BOOST_TEST(!read_during_change);
    may_end_change = true;
    yield_until(changed);
    BOOST_TEST_REQUIRE(fd::try_live_list_read(*owner_state.load(), 3));
    fd::end_live_list_read(*owner_state.load());
    may_exit = true;
    owner.join();
}

BOOST_AUTO_TEST_CASE(a_thread_waits_out_a_reader_of_its_list_before_it_changes_it) {
    std::atomic<fd::thread_state*> owner_state{nullptr};
    std::atomic<bool> may_make_fiber{false}, read_over{false}, made_after_the_read{false};
    std::thread owner([&] {
        (void)fibers::fiber::current();
        owner_state = fd::current_thread_state;
        yield_until(may_make_fiber);
        fibers::fiber f([] {}); // goes on the list
        made_after_the_read = read_over.load();
    });
    while (owner_state.load() == nullptr)
        std::this_thread::yield();
    {
        fd::live_list_read hold(*owner_state.load());
        may_make_fiber = true;
        std::this_thread::sleep_for(100ms);
        read_over = true;
    }
    owner.join();
    BOOST_TEST(made_after_the_read.load());
}

// A thread changes its list of live fibers without a locked instruction
// where the kernel allows it (src/fiber_registry.hpp): every dump from
// another thread must still find the list whole. Under AddressSanitizer a
// dump that walked into a fiber being taken off the list would read freed
// memory; here it would also list a fiber twice or a name torn.
BOOST_AUTO_TEST_CASE(dumping_a_thread_that_makes_and_ends_fibers_without_pause) {
    std::atomic<bool> stop{false};
    std::atomic<std::size_t> made{0};
    std::thread churner([&] {
        while (!stop.load(std::memory_order_relaxed)) {
            std::vector<fibers::task> tasks;
            for (int n = 0; n < 8; ++n)
                tasks.push_back(fibers::spawn([] { fibers::sleep(0s); }, {"churned"}));
            fibers::fiber([] {}).switch_to();
            for (fibers::task& t : tasks)
                t.join();
            made.fetch_add(9, std::memory_order_relaxed);
        }
        fibers::get_hub().close();
    });
    std::size_t dumps = 0, bad_lines = 0, most_listed = 0;
    auto const until = std::chrono::steady_clock::now() + 1s;
    while (std::chrono::steady_clock::now() < until || dumps < 20) {
        std::ostringstream out;
        fibers::dump_fibers(out);
        ++dumps;
        std::istringstream lines(out.str());
        std::size_t listed = 0;
        for (std::string line; std::getline(lines, line);) {
            if (line.rfind("  0x", 0) != 0)
                continue; // a heading
            std::istringstream fields(line);
            std::string id, parent, kind;
            fields >> id >> parent >> kind;
            if (kind != "root" && kind != "hub" && kind != "task" && kind != "fiber")
                ++bad_lines;
            if (kind == "task" && line.find(" churned ") != std::string::npos)
                ++listed;
        }
        most_listed = std::max(most_listed, listed);
    }
    stop.store(true);
    churner.join();
    BOOST_TEST_MESSAGE(dumps << " dumps while " << made.load() << " fibers came and went");
    BOOST_TEST(made.load() > 0u);
    BOOST_TEST(bad_lines == 0u);
    BOOST_TEST(most_listed <= 8u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(watchdog)

namespace {

std::size_t threads_of_this_process() {
    std::size_t n = 0;
    for (auto const& entry : std::filesystem::directory_iterator("/proc/self/task")) {
        (void)entry;
        ++n;
    }
    return n;
}

// The count once it reaches `expected`, or after 10 s the last one seen: a
// thread that has been joined can stay listed in /proc for a moment while
// the kernel finishes taking it down, one that has not stays for good.
std::size_t threads_of_this_process_settled_at(std::size_t expected) {
    auto const until = std::chrono::steady_clock::now() + 10s;
    std::size_t n = threads_of_this_process();
    while (n != expected && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(1ms);
        n = threads_of_this_process();
    }
    return n;
}

// Keeps the calling fiber busy for `d` without a switch.
void spin_for(std::chrono::milliseconds d) {
    auto const until = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < until) {
    }
}

} // namespace

BOOST_AUTO_TEST_CASE(off_by_default_and_then_without_a_thread) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        std::size_t const threads = threads_of_this_process();
        fibers::task t = fibers::spawn([] { spin_for(300ms); });
        t.join();
        BOOST_TEST(h.stalls() == 0u);
        h.set_watchdog(100ms);
        BOOST_TEST(threads_of_this_process_settled_at(threads + 1) == threads + 1);
        h.set_watchdog(0ms);
        BOOST_TEST(threads_of_this_process_settled_at(threads) == threads);
        h.set_watchdog(100ms);
        h.close(); // stops it
        BOOST_TEST(threads_of_this_process_settled_at(threads) == threads);
        BOOST_CHECK_THROW(h.set_watchdog(100ms), fibers::error);
    });
}

BOOST_AUTO_TEST_CASE(a_task_that_holds_the_loop_is_named_and_counted_once) {
    fibers_test::captured_log log;
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        h.set_watchdog(50ms);
        fibers::task t = fibers::spawn([] { spin_for(1s); }, fibers::task_options{"spinner"});
        t.join();
        BOOST_TEST(h.stalls() == 1u);
        fibers::sleep(200ms); // the loop idles: no stall
        BOOST_TEST(h.stalls() == 1u);
        h.close();
    });
    BOOST_TEST(log.contains("fibers: watchdog: spinner has held the loop of thread "));
}

BOOST_AUTO_TEST_CASE(fibers_that_switch_or_wait_are_no_stall) {
    on_new_thread([] {
        fibers::hub& h = fibers::get_hub();
        h.set_watchdog(200ms);
        auto const until = std::chrono::steady_clock::now() + 1s;
        auto busy = [until] {
            while (std::chrono::steady_clock::now() < until)
                fibers::sleep(0s);
        };
        fibers::task a = fibers::spawn(busy);
        fibers::task b = fibers::spawn(busy);
        fibers::task idle = fibers::spawn([] { fibers::sleep(500ms); });
        a.join();
        b.join();
        idle.join();
        BOOST_TEST(h.stalls() == 0u);
        h.close();
    });
}

BOOST_AUTO_TEST_CASE(a_negative_threshold_is_refused) {
    on_new_thread([] {
        BOOST_CHECK_THROW(fibers::get_hub().set_watchdog(-1ms), std::invalid_argument);
        fibers::get_hub().close();
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(no_silent_hang)

namespace {

// Runs `fn` in a child process, the child's only thread (fork() keeps the
// caller's alone), and returns what it wrote to stderr and how it ended.
template <class Fn>
fibers_test::child_result in_single_threaded_child(Fn fn) {
    return fibers_test::run_in_child([fn] {
        try {
            fn();
        } catch (std::exception const& e) {
            std::string const text = std::string("caught: ") + e.what() + "\n";
            ::write(2, text.data(), text.size());
            ::_exit(3);
        }
    });
}

// The caught exception is a fibers::deadlock: "deadlock:" in its message,
// and the child exited through the catch.
void check_deadlock_reported(fibers_test::child_result const& r, std::vector<std::string> const& mentioned) {
    BOOST_TEST_MESSAGE(r.stderr_text);
    BOOST_TEST(r.exited);
    BOOST_TEST(r.exit_code == 0, r.stderr_text);
    BOOST_TEST(r.stderr_text.find("deadlock reported:\nfibers: deadlock: no fiber of thread ") != std::string::npos);
    for (std::string const& m : mentioned)
        BOOST_TEST(r.stderr_text.find(m) != std::string::npos, m << " in\n" << r.stderr_text);
}

void print_deadlock(fibers::deadlock const& d) {
    std::string const text = std::string("deadlock reported:\n") + d.what();
    ::write(2, text.data(), text.size());
}

// In a child: the root joins a task named "stuck" that waits on an event
// nobody can set, prints the deadlock that ends the join, and closes the
// hub, which unwinds the task while its event is still there.
void join_a_task_stuck_on_an_event_nobody_can_set() {
    fibers::event never;
    fibers::task stuck = fibers::spawn([&] { never.wait(); }, fibers::task_options{"stuck"});
    try {
        stuck.join();
        ::write(2, "joined\n", 7);
        ::_exit(4);
    } catch (fibers::deadlock const& d) {
        print_deadlock(d);
    }
    fibers::get_hub().close();
}

} // namespace

// Whether a forked child reads itself as its process's only thread in
// /proc/self/stat, as the library does before it calls an event out of
// every other thread's reach. Not under ThreadSanitizer, which runs a
// thread of its own in every process, nor under qemu-user, whose
// /proc/self/stat gives no thread count.
bool a_child_can_prove_it_is_alone() {
    fibers_test::child_result const r = fibers_test::run_in_child([] {
        std::ifstream stat("/proc/self/stat");
        std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
        std::istringstream fields(text.substr(text.rfind(')') + 1)); // fields 3 to 52
        std::string field;
        for (int i = 3; i <= 20 && fields >> field; ++i) {
        }
        ::_exit(field == "1" ? 0 : 1);
    });
    return r.exited && r.exit_code == 0;
}

BOOST_AUTO_TEST_CASE(a_join_of_a_task_stuck_on_an_event_nobody_can_set) {
    if (!a_child_can_prove_it_is_alone()) {
        BOOST_TEST_MESSAGE("a process cannot prove here that it runs one thread: not run");
        return;
    }
    check_deadlock_reported(in_single_threaded_child([] {
        join_a_task_stuck_on_an_event_nobody_can_set();
    }), {"Root (root): join stuck", "stuck (task): event 0x"});
}

// A sleep cut short takes its part of the hub's timer with it: a timer
// left for the hour would count as work that may yet resume a fiber, and
// hide the deadlock for that long.
BOOST_AUTO_TEST_CASE(a_sleep_cut_short_leaves_no_timer_that_hides_a_deadlock) {
    if (!a_child_can_prove_it_is_alone()) {
        BOOST_TEST_MESSAGE("a process cannot prove here that it runs one thread: not run");
        return;
    }
    check_deadlock_reported(in_single_threaded_child([] {
        ::alarm(30); // the failure would be a wait of an hour
        fibers::task sleeper = fibers::spawn([] { fibers::sleep(1h); });
        fibers::sleep(0s);
        sleeper.cancel();
        sleeper.join();
        join_a_task_stuck_on_an_event_nobody_can_set();
    }), {"stuck (task): event 0x"});
}

BOOST_AUTO_TEST_CASE(two_tasks_locking_two_mutexes_in_opposite_order) {
    // With other threads about: a mutex held by a fiber of the hub can only
    // be released by it, whatever the other threads do.
    on_new_thread([] {
        fibers::mutex a, b;
        auto both = [](fibers::mutex& first, fibers::mutex& second) {
            std::lock_guard<fibers::mutex> one(first);
            fibers::sleep(0s); // the other takes its first
            std::lock_guard<fibers::mutex> two(second);
        };
        fibers::task ab = fibers::spawn([&] { both(a, b); }, fibers::task_options{"ab"});
        fibers::task ba = fibers::spawn([&] { both(b, a); }, fibers::task_options{"ba"});
        std::string message;
        try {
            ab.join();
        } catch (fibers::deadlock const& d) {
            message = d.what();
        }
        BOOST_TEST_MESSAGE(message);
        BOOST_TEST(message.find("fibers: deadlock: no fiber of thread ") == 0u, message);
        BOOST_TEST(message.find("ab (task): mutex 0x") != std::string::npos, message);
        BOOST_TEST(message.find(" held by ba\n") != std::string::npos, message);
        BOOST_TEST(message.find("ba (task): mutex 0x") != std::string::npos, message);
        BOOST_TEST(message.find(" held by ab\n") != std::string::npos, message);
        BOOST_TEST(message.find("Root (root): join ab") != std::string::npos, message);
        static_assert(std::is_base_of_v<fibers::error, fibers::deadlock>);
        fibers::get_hub().close();
    });
}

BOOST_AUTO_TEST_CASE(another_thread_that_sets_the_event_later_is_no_deadlock) {
    on_new_thread([] {
        fibers::event later;
        fibers::task waiter = fibers::spawn([&] { later.wait(); }, fibers::task_options{"waiter"});
        std::thread setter([&] {
            std::this_thread::sleep_for(200ms);
            later.set();
        });
        BOOST_CHECK_NO_THROW(waiter.join());
        setter.join();
        fibers::get_hub().close();
    });
}

BOOST_AUTO_TEST_CASE(a_timer_that_sets_the_event_is_no_deadlock) {
    fibers_test::child_result r = in_single_threaded_child([] {
        fibers::event later;
        boost::asio::steady_timer timer(fibers::get_hub().loop(), 200ms);
        timer.async_wait([&](boost::system::error_code const&) { later.set(); });
        fibers::task waiter = fibers::spawn([&] { later.wait(); }, fibers::task_options{"waiter"});
        waiter.join();
        fibers::get_hub().close();
    });
    BOOST_TEST(r.exited);
    BOOST_TEST(r.exit_code == 0, r.stderr_text);
}

BOOST_AUTO_TEST_CASE(a_sleeping_task_is_no_deadlock) {
    fibers_test::child_result r = in_single_threaded_child([] {
        fibers::event done;
        fibers::task sleeper = fibers::spawn([&] {
            fibers::sleep(100ms);
            done.set();
        });
        done.wait();
        sleeper.join();
        fibers::get_hub().close();
    });
    BOOST_TEST(r.exited);
    BOOST_TEST(r.exit_code == 0, r.stderr_text);
}

BOOST_AUTO_TEST_CASE(a_task_that_switches_back_later_is_no_deadlock) {
    on_new_thread([] {
        fibers::switch_back<> wakeup;
        std::thread other([wakeup] {
            std::this_thread::sleep_for(200ms);
            wakeup.switch_to();
        });
        BOOST_CHECK_NO_THROW(wakeup.wait());
        other.join();
        fibers::get_hub().close();
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(stack_use)

namespace {

// What a task of a network service typically does: a round trip over a
// socket through yield with a deadline, an exception across a few frames,
// text formatted with a stream, a log line, a sort, a sleep.
[[noreturn]] __attribute__((noinline)) void fail_deeply(int depth) {
    if (depth == 0)
        throw std::runtime_error("deep failure");
    fail_deeply(depth - 1);
}

void typical_work() {
    auto [a, b] = fibers_test::connected_pair(fibers::get_hub().loop());
    std::string const sent = "hello over loopback";
    boost::asio::async_write(a, boost::asio::buffer(sent), fibers::yield.after(5s));
    std::string received(sent.size(), '\0');
    boost::asio::async_read(b, boost::asio::buffer(received), fibers::yield.after(5s));
    BOOST_TEST(received == sent);
    try {
        fail_deeply(8);
    } catch (std::runtime_error const& e) {
        std::ostringstream out;
        out << "caught " << e.what() << " after " << 3.25 << " s, " << std::hex << 0xbeef;
        fibers::log(fibers::log_level::debug, out.str());
    }
    std::vector<std::string> words{"delta", "alpha", "charlie", "bravo"};
    std::sort(words.begin(), words.end());
    fibers::sleep(1ms);
}

// Runs `body` in a task whose stack use is measured, and returns its
// fiber_info just before it ends.
template <class Body>
fiber_info measured(Body body) {
    fibers::measure_stack_use(true);
    fibers::event finish;
    fibers::event done_working;
    fibers::task t = fibers::spawn([&] {
        body();
        done_working.set();
        finish.wait();
    }, fibers::task_options{"measured"});
    done_working.wait();
    let_tasks_settle();
    fiber_info info = *find(fibers::list_fibers(), "measured");
    fibers::measure_stack_use(false);
    finish.set();
    t.join();
    return info;
}

} // namespace

BOOST_AUTO_TEST_CASE(the_default_stack_has_room_for_a_typical_task) {
    on_new_thread([] {
        fiber_info const f = measured(&typical_work);
        BOOST_TEST_MESSAGE("a typical task used " << f.stack_used << " of " << f.stack_size << " bytes of stack");
        BOOST_TEST(f.stack_size == fibers::arena_stack::default_size());
        BOOST_TEST(f.stack_used > 0u);
        BOOST_TEST(f.stack_used <= f.stack_size * 3 / 4,
                   "a typical task comes within 25% of the end of the default stack: "
                       << f.stack_used << " of " << f.stack_size << " bytes");
        fibers::get_hub().close();
    });
}

BOOST_AUTO_TEST_CASE(the_deepest_use_is_reported_after_the_frames_are_gone) {
    on_new_thread([] {
        std::size_t constexpr deep = 64 * 1024;
        fiber_info const f = measured([] {
            volatile char* p = static_cast<char*>(alloca(deep));
            p[0] = 1; // the lowest byte of the block, touched
        });
        BOOST_TEST(f.stack_used >= deep);
        BOOST_TEST(f.stack_used < f.stack_size);
        fibers::get_hub().close();
    });
}

BOOST_AUTO_TEST_CASE(unmeasured_stacks_report_no_use) {
    on_new_thread([] {
        fibers::event finish;
        fibers::task t = fibers::spawn([&] { finish.wait(); }, fibers::task_options{"plain"});
        let_tasks_settle();
        BOOST_TEST(find(fibers::list_fibers(), "plain")->stack_used == 0u);
        finish.set();
        t.join();
        fibers::get_hub().close();
    });
}

BOOST_AUTO_TEST_SUITE_END()
