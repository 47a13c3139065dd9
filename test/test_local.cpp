// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#define BOOST_TEST_MODULE local
#define BOOST_TEST_NO_MAIN
#define FIBERS_TEST_DEATH_MAIN
#include <boost/test/unit_test.hpp>

#include <fibers/fiber.hpp>
#include <fibers/hub.hpp>
#include <fibers/local.hpp>
#include <fibers/switch_back.hpp>
#include <fibers/task.hpp>

#include "child_process.hpp"
#include "hub_support.hpp"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using fibers::fiber;
using fibers::local;
using fibers_test::on_new_thread;

namespace {

// Counts its destructions; `id` tells the values apart.
struct counted {
    static std::atomic<int> destroyed;
    static std::atomic<int> alive;
    int id;
    explicit counted(int i) : id(i) { ++alive; }
    counted(counted const&) = delete;
    counted& operator=(counted const&) = delete;
    ~counted() {
        ++destroyed;
        --alive;
    }
};
std::atomic<int> counted::destroyed{0};
std::atomic<int> counted::alive{0};

// Resets the counters for one test and checks, at its end, that nothing
// is left over.
struct counting {
    counting() {
        counted::destroyed = 0;
        counted::alive = 0;
    }
    ~counting() { BOOST_TEST(counted::alive.load() == 0); }
};

// Suspends a plain fiber into its parent.
void to_parent() { fiber::current().parent().switch_to(); }

// Suspends the running fiber without holding a handle to it.
void suspend_into(fiber const& to) { fiber(to).switch_to(); }

// A local at namespace scope, as Gruvi programs keep theirs; only a forked
// child (local_at_namespace_scope_with_values_left_at_exit) gives it values.
local<int> namespace_scope_local;

} // namespace

static_assert(std::is_same_v<decltype(std::declval<local<int> const&>().get()), int*>);
static_assert(std::is_same_v<decltype(std::declval<local<int> const&>().value()), int&>);
static_assert(std::is_same_v<decltype(std::declval<local<int>&>().emplace(1)), int&>);
static_assert(noexcept(std::declval<local<int>&>().reset()));
static_assert(noexcept(std::declval<local<int> const&>().has_value()));
static_assert(noexcept(std::declval<local<int> const&>().get()));

BOOST_AUTO_TEST_SUITE(values)

BOOST_AUTO_TEST_CASE(unset_by_default) {
    on_new_thread([] {
        local<int> l;
        BOOST_TEST(l.get() == nullptr);
        BOOST_TEST(!l.has_value());
        BOOST_CHECK_THROW(l.value(), std::out_of_range);
    });
}

BOOST_AUTO_TEST_CASE(unset_on_a_thread_that_never_used_fibers) {
    // A thread with no fiber state at all: still unset, no crash.
    on_new_thread([] {
        local<std::string> l;
        BOOST_TEST(!l.has_value());
        BOOST_TEST(l.get() == nullptr);
        BOOST_CHECK_THROW(l.value(), std::out_of_range);
    });
}

BOOST_AUTO_TEST_CASE(emplace_value_reset) {
    on_new_thread([] {
        local<std::string> l;
        std::string& made = l.emplace(3, 'x');
        BOOST_TEST(made == "xxx");
        BOOST_TEST(l.has_value());
        BOOST_TEST(l.get() == &made);
        BOOST_TEST(&l.value() == &made);
        l.value() += "y";
        BOOST_TEST(*l.get() == "xxxy");
        l.reset();
        BOOST_TEST(!l.has_value());
        BOOST_TEST(l.get() == nullptr);
        BOOST_CHECK_THROW(l.value(), std::out_of_range);
        l.reset(); // unset already: nothing happens
        BOOST_TEST(!l.has_value());
        l.emplace("again");
        BOOST_TEST(l.value() == "again");
    });
}

BOOST_AUTO_TEST_CASE(locals_are_independent_of_each_other) {
    on_new_thread([] {
        local<int> a;
        local<int> b;
        a.emplace(1);
        BOOST_TEST(!b.has_value());
        b.emplace(2);
        BOOST_TEST(a.value() == 1);
        BOOST_TEST(b.value() == 2);
        a.reset();
        BOOST_TEST(!a.has_value());
        BOOST_TEST(b.value() == 2);
    });
}

BOOST_AUTO_TEST_CASE(reset_destroys_the_value) {
    counting c;
    on_new_thread([] {
        local<counted> l;
        l.emplace(1);
        BOOST_TEST(counted::destroyed.load() == 0);
        l.reset();
        BOOST_TEST(counted::destroyed.load() == 1);
        BOOST_TEST(!l.has_value());
    });
    BOOST_TEST(counted::destroyed.load() == 1);
}

BOOST_AUTO_TEST_CASE(emplace_again_destroys_the_old_value) {
    counting c;
    on_new_thread([] {
        local<counted> l;
        l.emplace(1);
        counted& second = l.emplace(2);
        BOOST_TEST(counted::destroyed.load() == 1);
        BOOST_TEST(second.id == 2);
        BOOST_TEST(l.value().id == 2);
        BOOST_TEST(&l.value() == &second);
    });
    // The second one went with the local.
    BOOST_TEST(counted::destroyed.load() == 2);
}

BOOST_AUTO_TEST_CASE(a_throwing_constructor_keeps_the_old_value) {
    struct fussy {
        int v;
        explicit fussy(int x) : v(x) {
            if (x < 0)
                throw std::invalid_argument("negative");
        }
    };
    on_new_thread([] {
        local<fussy> l;
        l.emplace(1);
        BOOST_CHECK_THROW(l.emplace(-1), std::invalid_argument);
        BOOST_TEST_REQUIRE(l.has_value());
        BOOST_TEST(l.value().v == 1);
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(per_fiber)

BOOST_AUTO_TEST_CASE(interleaved_tasks_see_only_their_own) {
    on_new_thread([] {
        local<int> l;
        l.emplace(-1); // the root's
        constexpr int count = 4;
        std::vector<int> mismatches(count, 0);
        std::vector<bool> unset_at_start(count, false);
        std::vector<fibers::task> tasks;
        for (int i = 0; i < count; ++i)
            tasks.push_back(fibers::spawn([&, i] {
                unset_at_start[i] = !l.has_value();
                l.emplace(i * 100);
                for (int round = 0; round < 10; ++round) {
                    fibers::sleep(0s); // the others run in between
                    if (l.value() != i * 100 + round)
                        ++mismatches[i];
                    ++l.value();
                }
            }));
        for (int round = 0; round < 5; ++round) {
            fibers::sleep(0s);
            BOOST_TEST(l.value() == -1);
        }
        for (auto& t : tasks)
            t.join();
        for (int i = 0; i < count; ++i) {
            BOOST_TEST(unset_at_start[i]);
            BOOST_TEST(mismatches[i] == 0);
        }
        BOOST_TEST(l.value() == -1);
    });
}

BOOST_AUTO_TEST_CASE(plain_fibers_have_their_own_values) {
    on_new_thread([] {
        local<std::string> l;
        l.emplace("root");
        std::string seen_child;
        bool child_unset_at_start = false;
        fiber child([&] {
            child_unset_at_start = !l.has_value();
            l.emplace("child");
            to_parent();
            seen_child = l.value();
        });
        child.switch_to();
        BOOST_TEST(l.value() == "root");
        l.value() = "root, changed";
        child.switch_to();
        BOOST_TEST(child_unset_at_start);
        BOOST_TEST(seen_child == "child");
        BOOST_TEST(l.value() == "root, changed");
    });
}

BOOST_AUTO_TEST_CASE(nested_fibers_do_not_inherit) {
    on_new_thread([] {
        local<int> l;
        l.emplace(1);
        bool grandchild_unset = false;
        int child_value = 0;
        fiber child([&] {
            l.emplace(2);
            fiber grandchild([&] { grandchild_unset = !l.has_value(); });
            grandchild.switch_to();
            child_value = l.value();
        });
        child.switch_to();
        BOOST_TEST(grandchild_unset);
        BOOST_TEST(child_value == 2);
        BOOST_TEST(l.value() == 1);
    });
}

BOOST_AUTO_TEST_CASE(the_hub_fiber_has_its_own_value) {
    counting c;
    on_new_thread([] {
        auto& hub = fibers::get_hub();
        local<counted> l;
        l.emplace(0);
        fibers::switch_back<int> sb;
        hub.run_callback([&, cb = sb] {
            int before = l.has_value() ? l.value().id : -1;
            l.emplace(7);
            cb(before);
        });
        auto [seen_in_hub] = sb.wait();
        BOOST_TEST(seen_in_hub == -1);
        BOOST_TEST(l.value().id == 0);
        BOOST_TEST(counted::alive.load() == 2);
        // `l` goes first (it is the newer object): both values with it.
    });
    BOOST_TEST(counted::destroyed.load() == 2);
}

BOOST_AUTO_TEST_CASE(a_local_shared_by_two_threads) {
    local<int> l;
    std::atomic<int> ready{0};
    std::atomic<int> wrong{0};
    auto body = [&](int base) {
        return [&, base] {
            l.emplace(base);
            fibers::task t = fibers::spawn([&, base] {
                l.emplace(base + 1);
                for (int i = 0; i < 1000; ++i) {
                    if (l.value() != base + 1)
                        ++wrong;
                    fibers::sleep(0s);
                }
            });
            ++ready;
            while (ready.load() < 2) // both threads hold values now
                std::this_thread::yield();
            for (int i = 0; i < 1000; ++i) {
                if (l.value() != base)
                    ++wrong;
                fibers::sleep(0s);
            }
            t.join();
            if (l.value() != base)
                ++wrong;
        };
    };
    std::thread a(body(10));
    std::thread b(body(20));
    a.join();
    b.join();
    BOOST_TEST(wrong.load() == 0);
    // This thread has had no value all along.
    BOOST_TEST(!l.has_value());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(lifetime)

BOOST_AUTO_TEST_CASE(value_destroyed_when_its_task_ends) {
    counting c;
    on_new_thread([] {
        local<counted> l;
        int destroyed_while_running = -1;
        fibers::task t = fibers::spawn([&] {
            l.emplace(1);
            fibers::sleep(0s);
            destroyed_while_running = counted::destroyed.load();
        });
        t.join();
        BOOST_TEST(destroyed_while_running == 0);
        BOOST_TEST(counted::destroyed.load() == 1);
        BOOST_TEST(!l.has_value()); // the root never had one
    });
    BOOST_TEST(counted::destroyed.load() == 1);
}

BOOST_AUTO_TEST_CASE(value_destroyed_when_its_plain_fiber_ends) {
    counting c;
    on_new_thread([] {
        local<counted> l;
        fiber f([&] {
            l.emplace(1);
            to_parent();
        });
        f.switch_to();
        BOOST_TEST(counted::destroyed.load() == 0);
        f.switch_to(); // it returns
        BOOST_TEST(!f.is_alive());
        BOOST_TEST(counted::destroyed.load() == 1);
    });
    BOOST_TEST(counted::destroyed.load() == 1);
}

BOOST_AUTO_TEST_CASE(value_destroyed_when_its_fiber_ends_by_an_exception) {
    counting c;
    on_new_thread([] {
        local<counted> l;
        fiber f([&] {
            l.emplace(1);
            throw std::runtime_error("out");
        });
        BOOST_CHECK_THROW(f.switch_to(), std::runtime_error);
        BOOST_TEST(counted::destroyed.load() == 1);

        fibers::task t = fibers::spawn([&] {
            l.emplace(2);
            fibers::sleep(1h);
        });
        fibers::sleep(0s);
        BOOST_TEST(counted::alive.load() == 1);
        t.cancel();
        t.join();
        BOOST_TEST(counted::destroyed.load() == 2);
    });
}

BOOST_AUTO_TEST_CASE(value_destroyed_when_a_suspended_fiber_is_dropped) {
    // The last handle to a suspended fiber goes: it is unwound, and ends.
    counting c;
    on_new_thread([] {
        local<counted> l;
        fiber root = fiber::current();
        fiber f([&] {
            l.emplace(1);
            suspend_into(root);
        });
        f.switch_to();
        BOOST_TEST(counted::alive.load() == 1);
        f = fiber(); // the last handle
        BOOST_TEST(counted::destroyed.load() == 1);
    });
}

BOOST_AUTO_TEST_CASE(destroying_the_local_destroys_every_fiber_value_once) {
    counting c;
    on_new_thread([] {
        auto l = std::make_unique<local<counted>>();
        l->emplace(0); // the root's
        std::vector<fiber> plain;
        for (int i = 1; i <= 3; ++i) {
            plain.emplace_back([&l, i] {
                l->emplace(i);
                to_parent();
                // Ends after the local is gone.
            });
            plain.back().switch_to();
        }
        bool released = false;
        std::vector<fibers::task> tasks;
        for (int i = 4; i <= 5; ++i)
            tasks.push_back(fibers::spawn([&l, &released, i] {
                l->emplace(i);
                while (!released)
                    fibers::sleep(0s);
            }));
        fibers::sleep(0s); // the tasks set their values
        BOOST_TEST(counted::alive.load() == 6);

        l.reset();
        BOOST_TEST(counted::destroyed.load() == 6);
        BOOST_TEST(counted::alive.load() == 0);

        // The fibers end afterwards: nothing is destroyed twice.
        for (auto& f : plain) {
            f.switch_to();
            BOOST_TEST(!f.is_alive());
        }
        released = true;
        for (auto& t : tasks)
            t.join();
        BOOST_TEST(counted::destroyed.load() == 6);
    });
    BOOST_TEST(counted::destroyed.load() == 6);
}

BOOST_AUTO_TEST_CASE(a_new_local_after_one_is_destroyed_starts_empty) {
    // Fibers that held values in a destroyed local see nothing in a new one,
    // even if it happens to reuse the same memory.
    on_new_thread([] {
        std::optional<local<int>> l(std::in_place);
        l->emplace(1);
        bool unset_in_child = false;
        fiber child([&] {
            l->emplace(2);
            to_parent();
            unset_in_child = !l->has_value();
        });
        child.switch_to();
        l.reset();
        l.emplace();
        BOOST_TEST(!l->has_value());
        child.switch_to();
        BOOST_TEST(unset_in_child);
    });
}

BOOST_AUTO_TEST_CASE(root_value_destroyed_when_its_thread_ends) {
    counting c;
    local<counted> l;
    int during = -1;
    on_new_thread([&] {
        l.emplace(1);
        during = counted::destroyed.load();
    });
    BOOST_TEST(during == 0);
    BOOST_TEST(counted::destroyed.load() == 1);
    // And with a hub on the thread, and a task that also held one.
    on_new_thread([&] {
        fibers::get_hub();
        l.emplace(2);
        fibers::spawn([&] {
            l.emplace(3);
            fibers::sleep(1h); // still waiting when the thread ends
        });
        fibers::sleep(0s);
        during = counted::destroyed.load();
    });
    BOOST_TEST(during == 1);
    BOOST_TEST(counted::destroyed.load() == 3);
    BOOST_TEST(!l.has_value());
}

BOOST_AUTO_TEST_CASE(values_of_many_threads_destroyed_with_the_local) {
    counting c;
    auto l = std::make_unique<local<counted>>();
    std::atomic<int> set{0};
    std::atomic<bool> local_gone{false};
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i)
        threads.emplace_back([&, i] {
            l->emplace(i);
            ++set;
            while (!local_gone.load())
                std::this_thread::yield();
            // The thread ends after the local: its value is not destroyed twice.
        });
    while (set.load() < 4)
        std::this_thread::yield();
    l.reset();
    BOOST_TEST(counted::destroyed.load() == 4);
    local_gone = true;
    for (auto& t : threads)
        t.join();
    BOOST_TEST(counted::destroyed.load() == 4);
}

BOOST_AUTO_TEST_CASE(value_destructor_may_use_other_locals) {
    // A value's destructor that reads another local of the same fiber: it
    // runs in that fiber, which still sees its own values.
    struct reader {
        local<int>* other;
        int* seen;
        ~reader() { *seen = other->get() != nullptr ? *other->get() : -1; }
    };
    on_new_thread([] {
        local<int> numbers;
        local<reader> readers;
        int seen = 0;
        fiber f([&] {
            numbers.emplace(5);
            readers.emplace(reader{&numbers, &seen});
            readers.reset();
        });
        f.switch_to();
        BOOST_TEST(seen == 5);
    });
}

BOOST_AUTO_TEST_CASE(value_set_while_its_fiber_ends_is_destroyed_too) {
    // A value's destructor, run as its fiber ends, sets a value of another
    // local for that fiber (say, a per-fiber cache made on first use). That
    // value belongs to the ending fiber too: it must not outlive it, and no
    // later fiber may see it as its own.
    counting c;
    on_new_thread([] {
        local<counted> cache;
        struct uses_cache {
            local<counted>* cache;
            ~uses_cache() {
                if (!cache->has_value())
                    cache->emplace(99);
            }
        };
        local<uses_cache> first;
        fiber f([&] { first.emplace(uses_cache{&cache}); });
        f.switch_to();
        BOOST_TEST(!f.is_alive());
        BOOST_TEST(counted::alive.load() == 0);
        f = fiber();
        // New fibers (whose records may reuse the ended one's memory) start
        // with nothing.
        int saw_a_value = 0;
        for (int i = 0; i < 100; ++i) {
            fiber g([&] {
                if (cache.has_value())
                    ++saw_a_value;
            });
            g.switch_to();
        }
        BOOST_TEST(saw_a_value == 0);
    });
    BOOST_TEST(counted::alive.load() == 0);
}

BOOST_AUTO_TEST_CASE(local_destroyed_while_a_fiber_ends_on_another_thread) {
    // The local goes on one thread while a fiber that set a value in it ends
    // on another: the value is destroyed exactly once, by either side, and
    // nothing touches the local after its destructor. Run in a child, so
    // that a crash is reported as a failure of this test alone. Up to 20000
    // rounds, as many as fit in 20 s (at least 200): on a loaded machine
    // each round waits for the scheduler to run the other thread, and how
    // long that takes must not decide whether the test passes.
    auto result = fibers_test::run_in_child([] {
        counted::destroyed = 0;
        auto const until = std::chrono::steady_clock::now() + 20s;
        int rounds = 0;
        for (int round = 0; round < 20000 && (round < 200 || std::chrono::steady_clock::now() < until);
             ++round, ++rounds) {
            auto l = std::make_unique<local<counted>>();
            std::atomic<bool> set{false};
            std::thread t([&] {
                fiber f([&] {
                    l->emplace(round);
                    set = true;
                }); // ends right after setting its value
                f.switch_to();
            });
            while (!set.load())
                std::this_thread::yield();
            l.reset();
            t.join();
        }
        if (counted::destroyed.load() != rounds)
            std::_Exit(2);
    });
    BOOST_TEST(!result.died_abnormally(), "the child ended abnormally (exit code " << result.exit_code << ", signal "
                                                                                    << result.signal << "):\n"
                                                                                    << result.stderr_text);
}

BOOST_AUTO_TEST_CASE(local_at_namespace_scope_with_values_left_at_exit) {
    // At exit, a namespace-scope local still holds the value of a thread
    // that has not ended (detached). Its destructor, run among the static
    // destructors, must not depend on library state already destroyed.
    auto result = fibers_test::run_in_child([] {
        std::atomic<bool> set{false};
        std::thread([&set] {
            namespace_scope_local.emplace(1);
            set = true;
            for (;;)
                std::this_thread::sleep_for(1h);
        }).detach();
        while (!set.load())
            std::this_thread::yield();
        std::exit(0); // runs the static destructors
    });
    BOOST_TEST(!result.died_abnormally(), "the child ended abnormally (exit code " << result.exit_code << ", signal "
                                                                                    << result.signal << "):\n"
                                                                                    << result.stderr_text);
}

BOOST_AUTO_TEST_SUITE_END()
