// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#define BOOST_TEST_MODULE fiber
#define BOOST_TEST_NO_MAIN
#define FIBERS_TEST_DEATH_MAIN
#include <boost/test/unit_test.hpp>

#include <fibers/fiber.hpp>
#include <fibers/log.hpp>

#include "child_process.hpp"
#include "test_support.hpp"

#include <boost/context/fixedsize_stack.hpp>
#include <boost/context/pooled_fixedsize_stack.hpp>
#include <boost/context/protected_fixedsize_stack.hpp>

#if FIBERS_ASAN
#include <sanitizer/asan_interface.h>
#endif

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

using fibers::fiber;
using fibers_test::captured_log;
using fibers_test::on_new_thread;

namespace {

struct some_error : std::runtime_error {
    some_error() : std::runtime_error("some error") {}
};

// Switches to the running fiber's parent, as python-fibers'
// `current().parent.switch(value)`. The temporary handle to the running
// fiber lives on its own stack until the switch returns, where it holds no
// reference.
std::any to_parent(std::any value = {}) { return fiber::current().parent().switch_to(std::move(value)); }

// Suspends the running fiber without holding a handle to it.
void suspend_into(fiber const& to) { fiber(to).switch_to(); }

// Sets a flag when destroyed: shows that a fiber's stack was unwound.
struct destruction_flag {
    std::atomic<bool>* flag;
    std::thread::id* where;
    destruction_flag(std::atomic<bool>* f, std::thread::id* w) : flag(f), where(w) {}
    destruction_flag(destruction_flag const&) = delete;
    destruction_flag& operator=(destruction_flag const&) = delete;
    ~destruction_flag() {
        if (where)
            *where = std::this_thread::get_id();
        flag->store(true);
    }
};

} // namespace

BOOST_AUTO_TEST_SUITE(handles)

BOOST_AUTO_TEST_CASE(empty_handle) {
    fiber empty;
    BOOST_TEST(!empty);
    BOOST_TEST(!empty.is_alive());
    BOOST_TEST(empty == fiber());
    BOOST_TEST((empty.thread_id() == std::thread::id()));
    BOOST_CHECK_THROW(empty.switch_to(), fibers::error);
    BOOST_CHECK_THROW(empty.throw_to(some_error()), fibers::error);
    BOOST_CHECK_THROW(empty.parent(), fibers::error);
    BOOST_CHECK_THROW(empty.set_parent(fiber::current()), fibers::error);
}

BOOST_AUTO_TEST_CASE(root_fiber) {
    on_new_thread([] {
        fiber root = fiber::current();
        BOOST_TEST(static_cast<bool>(root));
        BOOST_TEST(root == fibers::current());
        BOOST_TEST(root.is_alive());
        BOOST_TEST(!root.parent());
        BOOST_TEST((root.thread_id() == std::this_thread::get_id()));
        BOOST_CHECK_THROW(root.switch_to(), fibers::error);
        BOOST_CHECK_THROW(root.set_parent(fiber([] {})), std::invalid_argument);
    });
}

BOOST_AUTO_TEST_CASE(copies_compare_by_identity) {
    fiber a([] {});
    fiber b([] {});
    fiber a2 = a;
    BOOST_TEST(a == a2);
    BOOST_TEST(a != b);
    std::unordered_set<fiber> set{a, a2, b};
    BOOST_TEST(set.size() == 2u);
    fiber moved = std::move(a2);
    BOOST_TEST(!a2);
    BOOST_TEST(moved == a);
}

BOOST_AUTO_TEST_CASE(copies_across_threads) {
    // Handles are shared by many threads at once; the count must stay exact.
    std::atomic<bool> destroyed{false};
    std::thread::id destroyed_on;
    fiber f([guard = std::make_shared<destruction_flag>(&destroyed, &destroyed_on)] {});
    std::atomic<int> mismatches{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i)
        threads.emplace_back([f, &mismatches] {
            for (int j = 0; j < 10000; ++j) {
                fiber copy = f;
                fiber again(copy);
                if (again != f)
                    ++mismatches;
            }
        });
    for (auto& t : threads)
        t.join();
    BOOST_TEST(mismatches.load() == 0);
    BOOST_TEST(!destroyed.load());
    f = fiber();
    BOOST_TEST(destroyed.load());
    BOOST_TEST((destroyed_on == std::this_thread::get_id()));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(switching)

BOOST_AUTO_TEST_CASE(simple) {
    std::vector<int> seen;
    fiber g([&] {
        seen.push_back(1);
        to_parent();
        seen.push_back(3);
    });
    seen.push_back(0);
    g.switch_to();
    seen.push_back(2);
    g.switch_to();
    seen.push_back(4);
    BOOST_TEST(seen == (std::vector<int>{0, 1, 2, 3, 4}));
    BOOST_TEST(!g.is_alive());
}

BOOST_AUTO_TEST_CASE(two_fibers_interleave) {
    // The python-fibers README example: prints 1 2 3 4.
    std::string out;
    fiber f1, f2;
    f1 = fiber([&] {
        out += "1 ";
        f2.switch_to();
        out += "3 ";
        f2.switch_to();
    });
    f2 = fiber([&] {
        out += "2 ";
        f1.switch_to();
        out += "4";
    });
    f1.switch_to();
    BOOST_TEST(out == "1 2 3 4");
    f1 = f2 = fiber();
}

BOOST_AUTO_TEST_CASE(two_children) {
    std::vector<int> seen;
    auto body = [&] {
        seen.push_back(1);
        to_parent();
        seen.push_back(1);
        seen.push_back(1);
    };
    fiber g(body), h(body);
    g.switch_to();
    BOOST_TEST(seen.size() == 1u);
    h.switch_to();
    BOOST_TEST(seen.size() == 2u);
    h.switch_to();
    BOOST_TEST(seen.size() == 4u);
    BOOST_TEST(!h.is_alive());
    g.switch_to();
    BOOST_TEST(seen.size() == 6u);
    BOOST_TEST(!g.is_alive());
}

BOOST_AUTO_TEST_CASE(two_recursive_children) {
    std::vector<int> seen;
    auto f = [&] {
        seen.push_back(1);
        to_parent();
    };
    fiber g([&] {
        seen.push_back(1);
        fiber i(f);
        i.switch_to();
        seen.push_back(1);
    });
    g.switch_to();
    BOOST_TEST(seen.size() == 3u);
    BOOST_TEST(!g.is_alive());
}

BOOST_AUTO_TEST_CASE(values_travel_both_ways) {
    fiber echo([] {
        std::any v = to_parent(std::string("ready"));
        while (std::any_cast<int>(v) >= 0)
            v = to_parent(std::any_cast<int>(v) * 2);
        return std::string("done");
    });
    BOOST_TEST(std::any_cast<std::string>(echo.switch_to()) == "ready");
    BOOST_TEST(std::any_cast<int>(echo.switch_to(21)) == 42);
    BOOST_TEST(std::any_cast<int>(echo.switch_to(5)) == 10);
    BOOST_TEST(std::any_cast<std::string>(echo.switch_to(-1)) == "done");
    BOOST_TEST(!echo.is_alive());
}

BOOST_AUTO_TEST_CASE(void_target_returns_empty_any) {
    fiber f([] {});
    BOOST_TEST(!f.switch_to().has_value());
}

BOOST_AUTO_TEST_CASE(move_only_target) {
    auto owned = std::make_unique<int>(7);
    fiber f([p = std::move(owned)] { return *p; });
    BOOST_TEST(std::any_cast<int>(f.switch_to()) == 7);
}

BOOST_AUTO_TEST_CASE(value_on_first_switch_is_rejected) {
    bool ran = false;
    fiber f([&] { ran = true; });
    BOOST_CHECK_THROW(f.switch_to(1), std::invalid_argument);
    BOOST_TEST(!ran);
    BOOST_TEST(f.is_alive());
    f.switch_to();
    BOOST_TEST(ran);
}

BOOST_AUTO_TEST_CASE(switch_to_self_is_an_error) {
    fiber f([] {
        BOOST_CHECK_THROW(fiber::current().switch_to(), fibers::error);
        BOOST_CHECK_THROW(fiber::current().throw_to(some_error()), fibers::error);
        return 1;
    });
    BOOST_TEST(std::any_cast<int>(f.switch_to()) == 1);
    BOOST_CHECK_THROW(fiber::current().switch_to(), fibers::error);
}

BOOST_AUTO_TEST_CASE(switch_to_ended_is_an_error) {
    fiber f([] {});
    f.switch_to();
    BOOST_TEST(!f.is_alive());
    BOOST_CHECK_THROW(f.switch_to(), fibers::error);
    BOOST_CHECK_THROW(f.throw_to(some_error()), fibers::error);
}

BOOST_AUTO_TEST_CASE(is_alive_from_construction_to_end) {
    fiber f;
    f = fiber([&] {
        BOOST_TEST(f.is_alive());
        to_parent();
    });
    BOOST_TEST(f.is_alive());
    f.switch_to();
    BOOST_TEST(f.is_alive());
    f.switch_to();
    BOOST_TEST(!f.is_alive());
}

BOOST_AUTO_TEST_CASE(end_goes_to_parent_not_to_switcher) {
    // a switches to b; b's parent is the root, so b's result goes there.
    std::vector<std::string> seen;
    fiber root = fiber::current();
    fiber b([&] {
        seen.push_back("b");
        return std::string("from b");
    });
    fiber a([&] {
        seen.push_back("a");
        b.switch_to();
        seen.push_back("a again");
    });
    BOOST_TEST(std::any_cast<std::string>(a.switch_to()) == "from b");
    BOOST_TEST(a.is_alive());
    BOOST_TEST(!b.is_alive());
    a.switch_to();
    BOOST_TEST(seen == (std::vector<std::string>{"a", "b", "a again"}));
}

BOOST_AUTO_TEST_CASE(deep_nesting) {
    // Each fiber starts a child and ends when it does: 1000 levels.
    std::function<int(int)> nest = [&](int depth) -> int {
        if (depth == 0)
            return 0;
        fiber child([&nest, depth] { return nest(depth - 1) + 1; });
        return std::any_cast<int>(child.switch_to());
    };
    BOOST_TEST(nest(1000) == 1000);
}

BOOST_AUTO_TEST_CASE(hundred_thousand_fibers) {
#if FIBERS_TSAN
    constexpr int count = 4000; // ThreadSanitizer counts each fiber as a thread, at most 8128 at once
#else
    // 100 000 default stacks take 26 GB of address space: a 32-bit process
    // (3 or 4 GiB) holds 4000 beside everything else.
    constexpr int count = sizeof(void*) >= 8 ? 100000 : 4000;
#endif
    std::vector<fiber> all;
    all.reserve(count);
    long sum = 0;
    for (int i = 0; i < count; ++i) {
        all.emplace_back([i, &sum] {
            to_parent();
            sum += i;
        });
        all.back().switch_to();
    }
    for (auto& f : all)
        f.switch_to();
    for (auto& f : all)
        BOOST_TEST_REQUIRE(!f.is_alive());
    BOOST_TEST(sum == static_cast<long>(count) * (count - 1) / 2);
}

BOOST_AUTO_TEST_CASE(generator) {
    auto squares = [](int n) {
        return fiber([n] {
            for (int i = 0; i < n; ++i)
                to_parent(i * i);
        });
    };
    std::vector<int> got;
    fiber gen = squares(5);
    for (std::any v = gen.switch_to(); gen.is_alive(); v = gen.switch_to())
        got.push_back(std::any_cast<int>(v));
    BOOST_TEST(got == (std::vector<int>{0, 1, 4, 9, 16}));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(exceptions)

// Waits for the parent, records what interrupted it, then fails itself.
void wait_then_fail(std::vector<std::string>& seen) {
    try {
        to_parent();
    } catch (some_error const&) {
        seen.push_back("some_error");
        throw;
    } catch (std::exception const& e) {
        seen.push_back(e.what());
        throw;
    }
    throw some_error();
}

BOOST_AUTO_TEST_CASE(exception_goes_to_parent) {
    fiber f([] { throw some_error(); });
    BOOST_CHECK_THROW(f.switch_to(), some_error);
    BOOST_TEST(!f.is_alive());
}

BOOST_AUTO_TEST_CASE(exception_through_reparented_chain) {
    std::vector<std::string> seen;
    fiber g1([&] { wait_then_fail(seen); });
    fiber g2([&] { wait_then_fail(seen); });
    g1.switch_to();
    g2.switch_to();
    g2.set_parent(g1);
    BOOST_TEST(seen.empty());
    // g2 fails; g1, its parent now, sees the error and fails with it too.
    BOOST_CHECK_THROW(g2.switch_to(), some_error);
    BOOST_TEST(seen == (std::vector<std::string>{"some_error"}));
    BOOST_TEST(!g1.is_alive());
    BOOST_TEST(!g2.is_alive());
}

BOOST_AUTO_TEST_CASE(exception_sent_by_a_crashing_child) {
    std::vector<std::string> seen;
    fiber g1([&] { wait_then_fail(seen); });
    g1.switch_to();
    fiber crasher([] { throw std::out_of_range("key"); }, g1);
    BOOST_CHECK_THROW(crasher.switch_to(), std::out_of_range);
    BOOST_TEST(seen == (std::vector<std::string>{"key"}));
}

BOOST_AUTO_TEST_CASE(throw_into_started_fiber) {
    fiber f([] {
        try {
            to_parent(std::string("ok"));
        } catch (std::runtime_error const& e) {
            to_parent(std::string(e.what()));
            return;
        }
        to_parent(std::string("fail"));
    });
    BOOST_TEST(std::any_cast<std::string>(f.switch_to()) == "ok");
    BOOST_TEST(std::any_cast<std::string>(f.throw_to(std::runtime_error("ciao"))) == "ciao");
    BOOST_TEST(f.is_alive());
    f.switch_to();
    BOOST_TEST(!f.is_alive());
}

BOOST_AUTO_TEST_CASE(throw_kills_and_result_is_returned) {
    fiber f([]() -> std::string {
        try {
            to_parent();
            to_parent();
        } catch (std::invalid_argument const& e) {
            return e.what();
        }
        return "not reached";
    });
    f.switch_to();
    BOOST_TEST(std::any_cast<std::string>(f.throw_to(std::make_exception_ptr(std::invalid_argument("x")))) ==
               "x");
    BOOST_TEST(!f.is_alive());
}

BOOST_AUTO_TEST_CASE(throw_into_unstarted_fiber_goes_to_caller) {
    std::atomic<bool> destroyed{false};
    bool ran = false;
    fiber f([&ran, guard = std::make_shared<destruction_flag>(&destroyed, nullptr)] {
        ran = true;
    });
    BOOST_TEST(f.is_alive());
    BOOST_CHECK_THROW(f.throw_to(some_error()), some_error);
    BOOST_TEST(!ran);
    BOOST_TEST(!f.is_alive());
    BOOST_TEST(destroyed.load()); // the target is gone at once, not at the last handle
}

struct index_error : std::runtime_error {
    index_error() : std::runtime_error("index") {}
};

BOOST_AUTO_TEST_CASE(throw_goes_to_original_parent) {
    fiber main = fiber::current();
    auto f1 = [main]() mutable -> std::string {
        try {
            main.switch_to(std::string("f1 ready to catch"));
        } catch (index_error const&) {
            return "caught";
        }
        return "normal exit";
    };
    auto f2 = [main]() mutable { main.switch_to(std::string("from f2")); };

    {   // neither started: g1 is skipped, the error comes back here
        fiber g1(f1);
        fiber g2(f2, g1);
        BOOST_CHECK_THROW(g2.throw_to(index_error()), index_error);
        BOOST_TEST(!g2.is_alive());
        BOOST_TEST(g1.is_alive());
    }
    {   // g1 started, g2 not: g1 catches it
        fiber g1(f1);
        fiber g2(f2, g1);
        BOOST_TEST(std::any_cast<std::string>(g1.switch_to()) == "f1 ready to catch");
        BOOST_TEST(std::any_cast<std::string>(g2.throw_to(index_error())) == "caught");
        BOOST_TEST(!g2.is_alive());
        BOOST_TEST(!g1.is_alive());
    }
    {   // both started
        fiber g1(f1);
        fiber g2(f2, g1);
        BOOST_TEST(std::any_cast<std::string>(g1.switch_to()) == "f1 ready to catch");
        BOOST_TEST(std::any_cast<std::string>(g2.switch_to()) == "from f2");
        BOOST_TEST(std::any_cast<std::string>(g2.throw_to(index_error())) == "caught");
        BOOST_TEST(!g2.is_alive());
        BOOST_TEST(!g1.is_alive());
    }
}

BOOST_AUTO_TEST_CASE(null_exception_is_rejected) {
    fiber f([] {});
    BOOST_CHECK_THROW(f.throw_to(std::exception_ptr()), std::invalid_argument);
    BOOST_TEST(f.is_alive());
}

BOOST_AUTO_TEST_CASE(caught_exceptions_are_per_fiber) {
    // A catch block in one fiber and a catch block in another interleave;
    // each keeps its own `throw;` and std::current_exception().
    fiber other([] {
        BOOST_TEST(!std::current_exception());
        try {
            throw std::out_of_range("other");
        } catch (...) {
            to_parent();
            try {
                throw;
            } catch (std::out_of_range const& e) {
                BOOST_TEST(std::string(e.what()) == "other");
            }
        }
    });
    try {
        throw some_error();
    } catch (...) {
        other.switch_to();
        BOOST_TEST(std::uncaught_exceptions() == 0);
        BOOST_CHECK_THROW(throw, some_error);
    }
    other.switch_to();
    BOOST_TEST(!other.is_alive());
}

BOOST_AUTO_TEST_CASE(uncaught_exceptions_are_per_fiber) {
    // A destructor that switches while an exception unwinds its frame.
    struct switch_in_destructor {
        fiber* helper;
        ~switch_in_destructor() {
            BOOST_TEST(std::uncaught_exceptions() == 1);
            helper->switch_to();
            BOOST_TEST(std::uncaught_exceptions() == 1);
        }
    };
    int seen_by_helper = -1;
    fiber helper, thrower;
    helper = fiber([&] {
        seen_by_helper = std::uncaught_exceptions();
        suspend_into(thrower);
    });
    thrower = fiber([&] {
        switch_in_destructor guard{&helper};
        throw some_error();
    });
    BOOST_CHECK_THROW(thrower.switch_to(), some_error);
    BOOST_TEST(seen_by_helper == 0);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(parents)

BOOST_AUTO_TEST_CASE(default_parent_is_current) {
    fiber outer([] {
        fiber inner([] {});
        BOOST_TEST(inner.parent() == fiber::current());
        fiber explicit_empty([] {}, fiber());
        BOOST_TEST(explicit_empty.parent() == fiber::current());
    });
    BOOST_TEST(outer.parent() == fiber::current());
    outer.switch_to();
}

BOOST_AUTO_TEST_CASE(set_parent_changes_who_gets_the_end) {
    fiber a([] { return to_parent(); });
    a.switch_to();
    fiber b([] { return 5; });
    b.set_parent(a);
    BOOST_TEST(b.parent() == a);
    // b ends into a; a returns what it got, to the root.
    BOOST_TEST(std::any_cast<int>(b.switch_to()) == 5);
    BOOST_TEST(!a.is_alive());
}

BOOST_AUTO_TEST_CASE(set_parent_errors) {
    fiber a([] { to_parent(); });
    fiber b([] {}, a);
    fiber c([] {}, b);
    BOOST_CHECK_THROW(a.set_parent(a), std::invalid_argument);
    BOOST_CHECK_THROW(a.set_parent(c), std::invalid_argument); // a cycle
    BOOST_CHECK_THROW(a.set_parent(fiber()), std::invalid_argument);
    fiber ended([] {});
    ended.switch_to();
    BOOST_CHECK_THROW(a.set_parent(ended), std::invalid_argument);
    BOOST_CHECK_THROW(fiber([] {}, ended), std::invalid_argument);
    BOOST_TEST(c.parent() == b); // nothing changed
    BOOST_TEST(b.parent() == a);
    BOOST_TEST(a.parent() == fiber::current());
}

BOOST_AUTO_TEST_CASE(foreign_parent_is_rejected) {
    fiber foreign;
    std::thread([&] { foreign = fiber([] {}); }).join();
    fiber mine([] {});
    BOOST_CHECK_THROW(mine.set_parent(foreign), std::invalid_argument);
    BOOST_CHECK_THROW(fiber([] {}, foreign), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(reparenting_a_foreign_fiber_is_an_error) {
    fiber foreign;
    std::thread([&] { foreign = fiber([] {}); }).join();
    BOOST_CHECK_THROW(foreign.set_parent(fiber::current()), fibers::error);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(threads)

BOOST_AUTO_TEST_CASE(ten_threads_ten_trees) {
    std::atomic<int> success{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 10; ++t)
        threads.emplace_back([&] {
            std::vector<int> seen;
            fiber root = fiber::current();
            fiber g([&] {
                for (int i = 0; i < 1000; ++i) {
                    seen.push_back(1);
                    root.switch_to();
                }
            });
            for (int i = 0; i < 1000; ++i)
                g.switch_to();
            g.switch_to();
            if (seen.size() == 1000 && !g.is_alive() && g.thread_id() == std::this_thread::get_id())
                ++success;
        });
    for (auto& t : threads)
        t.join();
    BOOST_TEST(success.load() == 10);
}

BOOST_AUTO_TEST_CASE(switch_to_another_threads_fiber_is_an_error) {
    std::mutex m;
    std::condition_variable cv;
    bool created = false, done = false;
    fiber foreign;
    std::thread owner([&] {
        std::unique_lock<std::mutex> lock(m);
        foreign = fiber([] {});
        created = true;
        cv.notify_all();
        cv.wait(lock, [&] { return done; });
    });
    {
        std::unique_lock<std::mutex> lock(m);
        cv.wait(lock, [&] { return created; });
    }
    BOOST_CHECK_THROW(foreign.switch_to(), fibers::error);
    BOOST_CHECK_THROW(foreign.throw_to(some_error()), fibers::error);
    BOOST_TEST(foreign.is_alive());
    BOOST_TEST((foreign.thread_id() != std::this_thread::get_id()));
    {
        std::lock_guard<std::mutex> lock(m);
        done = true;
    }
    cv.notify_all();
    owner.join();
    foreign = fiber();
}

BOOST_AUTO_TEST_CASE(fiber_of_an_ended_thread) {
    // python-fibers' test_throw_doesnt_crash: the thread ended with its
    // fiber suspended; the fiber was unwound there, and using it is an error.
    std::atomic<bool> unwound{false};
    std::thread::id unwound_on;
    std::thread::id creator_id;
    fiber orphan;
    std::thread creator([&] {
        creator_id = std::this_thread::get_id();
        orphan = fiber([&] {
            destruction_flag guard{&unwound, &unwound_on};
            to_parent();
        });
        orphan.switch_to();
    });
    creator.join();
    BOOST_TEST(unwound.load());
    BOOST_TEST((unwound_on == creator_id));
    BOOST_TEST(!orphan.is_alive());
    BOOST_CHECK_THROW(orphan.throw_to(some_error()), fibers::error);
    BOOST_CHECK_THROW(orphan.switch_to(), fibers::error);
    BOOST_TEST(!orphan.parent().is_alive()); // that thread's root ended too
    orphan = fiber();                        // memory only: nothing runs here
}

BOOST_AUTO_TEST_CASE(fibers_of_an_ended_thread_still_tell_it_from_later_threads) {
    // Only a thread's root counts a reference to what identifies the
    // thread; its other fibers keep it through their parents. Here handles
    // to a child and a grandchild outlive their thread, new threads come
    // (and may get the same addresses), and the handles are used and
    // dropped there in either order: under AddressSanitizer any use of
    // what the thread left behind would be reported.
    for (int round = 0; round < 50; ++round) {
        fiber child, grandchild;
        std::thread([&] {
            child = fiber([&] {
                grandchild = fiber([] { to_parent(); });
                grandchild.switch_to();
                to_parent();
            });
            child.switch_to();
        }).join();
        bool alive = true, parent_alive = true, switch_refused = false;
        std::thread([&] {
            alive = child.is_alive() || grandchild.is_alive();
            parent_alive = grandchild.parent().is_alive();
            try {
                grandchild.switch_to();
            } catch (fibers::error const&) {
                switch_refused = true;
            }
            if (round % 2 == 0) {
                child = fiber();
                grandchild = fiber();
            } else {
                grandchild = fiber();
                child = fiber();
            }
        }).join();
        BOOST_TEST(!alive);
        BOOST_TEST(!parent_alive);
        BOOST_TEST(switch_refused);
    }
}

BOOST_AUTO_TEST_CASE(thread_exit_discards_unstarted_fibers_on_their_thread) {
    std::atomic<bool> destroyed{false};
    std::thread::id destroyed_on, creator_id;
    fiber unstarted;
    std::thread creator([&] {
        creator_id = std::this_thread::get_id();
        unstarted = fiber([guard = std::make_shared<destruction_flag>(&destroyed, &destroyed_on)] {});
    });
    creator.join();
    BOOST_TEST(destroyed.load());
    BOOST_TEST((destroyed_on == creator_id));
    BOOST_TEST(!unstarted.is_alive());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(lifetime)

BOOST_AUTO_TEST_CASE(last_handle_unwinds_the_stack) {
    std::atomic<bool> unwound{false};
    std::vector<std::string> order;
    fiber root = fiber::current();
    {
        fiber f([&] {
            destruction_flag guard{&unwound, nullptr};
            order.push_back("suspended");
            suspend_into(root);
            order.push_back("never");
        });
        f.switch_to();
        BOOST_TEST(!unwound.load());
    }
    BOOST_TEST(unwound.load());
    BOOST_TEST(order == (std::vector<std::string>{"suspended"}));
}

BOOST_AUTO_TEST_CASE(temporary_handle_unwinds_at_once) {
    std::atomic<bool> unwound{false};
    fiber root = fiber::current();
    fiber([&] {
        destruction_flag guard{&unwound, nullptr};
        suspend_into(root);
    }).switch_to();
    BOOST_TEST(unwound.load());
}

BOOST_AUTO_TEST_CASE(parent_link_keeps_a_fiber_alive) {
    std::atomic<bool> parent_unwound{false};
    fiber root = fiber::current();
    fiber child;
    {
        fiber parent([&] {
            destruction_flag guard{&parent_unwound, nullptr};
            suspend_into(root);
        });
        parent.switch_to();
        child = fiber([] {}, parent);
    }
    BOOST_TEST(!parent_unwound.load());
    BOOST_TEST(child.parent().is_alive());
    child = fiber(); // the child's link was the last reference
    BOOST_TEST(parent_unwound.load());
}

BOOST_AUTO_TEST_CASE(running_fiber_that_drops_its_own_handle) {
    // The only handle goes away while the fiber runs; when it then
    // suspends, nobody can resume it, so it is unwound.
    std::atomic<bool> unwound{false};
    fiber root = fiber::current();
    auto holder = std::make_shared<fiber>();
    *holder = fiber([&unwound, &root, holder] {
        destruction_flag guard{&unwound, nullptr};
        *holder = fiber();
        suspend_into(root);
    });
    holder->switch_to();
    BOOST_TEST(unwound.load());
}

BOOST_AUTO_TEST_CASE(swallowed_unwinding_is_detected) {
    captured_log log;
    bool after_catch = false;
    fiber root = fiber::current();
    {
        fiber f([&] {
            try {
                suspend_into(root);
            } catch (...) {
                // A user error: this swallows the unwinding.
            }
            after_catch = true;
        });
        f.switch_to();
    }
    BOOST_TEST(after_catch);
    BOOST_TEST(log.contains("swallowed"));
}

BOOST_AUTO_TEST_CASE(exception_during_unwinding_is_logged) {
    captured_log log;
    fiber root = fiber::current();
    {
        fiber f([&] {
            try {
                suspend_into(root);
            } catch (...) {
                throw some_error(); // replaces the unwinding
            }
        });
        f.switch_to();
    }
    BOOST_TEST(log.contains("some error"));
}

BOOST_AUTO_TEST_CASE(resumed_elsewhere_while_unwinding_is_fatal) {
    auto result = fibers_test::run_in_child([] {
        fiber root = fiber::current();
        fiber f([&root] {
            try {
                suspend_into(root);
            } catch (...) {
                suspend_into(root); // not allowed while being unwound
            }
        });
        f.switch_to();
        f = fiber();
    });
    BOOST_TEST(result.died_abnormally());
    BOOST_TEST(result.stderr_text.find("while its stack was being unwound") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(last_handle_dropped_on_another_thread) {
    // The fiber is unwound on its own thread, never on the dropping one.
    std::atomic<bool> unwound{false};
    std::thread::id unwound_on;
    fiber root = fiber::current();
    fiber f([&] {
        destruction_flag guard{&unwound, &unwound_on};
        suspend_into(root);
    });
    f.switch_to();
    std::thread([moved = std::move(f)]() mutable { moved = fiber(); }).join();
    BOOST_TEST(!unwound.load());
    fiber([] {}); // the owner's next fiber creation handles it
    BOOST_TEST(unwound.load());
    BOOST_TEST((unwound_on == std::this_thread::get_id()));
}

BOOST_AUTO_TEST_CASE(unstarted_fiber_dropped_on_another_thread) {
    std::atomic<bool> destroyed{false};
    std::thread::id destroyed_on;
    fiber f([guard = std::make_shared<destruction_flag>(&destroyed, &destroyed_on)] {});
    std::thread([moved = std::move(f)]() mutable { moved = fiber(); }).join();
    fiber([] {});
    BOOST_TEST(destroyed.load());
    BOOST_TEST((destroyed_on == std::this_thread::get_id()));
}

BOOST_AUTO_TEST_CASE(target_is_destroyed_when_the_fiber_ends) {
    std::atomic<bool> destroyed{false};
    fiber f([guard = std::make_shared<destruction_flag>(&destroyed, nullptr)] {});
    f.switch_to();
    BOOST_TEST(destroyed.load()); // while a handle still exists
    BOOST_TEST(!f.is_alive());
}

BOOST_AUTO_TEST_SUITE_END()

// Handles that lie on the stack of the fiber they refer to hold no
// reference: a suspended fiber that only they refer to is unwound when its
// last other handle goes, as python-fibers' garbage collector does.
BOOST_AUTO_TEST_SUITE(self_references)

// A stack allocator whose copies show how many fiber records exist: a
// record keeps its allocator until it is freed. With `reuse`, every fiber
// gets the same stack, the one the previous fiber ran on.
struct watched_stack {
    struct state {
        boost::context::fixedsize_stack inner{64 * 1024};
        boost::context::stack_context kept{};
        ~state() {
            if (kept.sp != nullptr)
                inner.deallocate(kept);
        }
    };
    std::shared_ptr<state> shared = std::make_shared<state>();
    bool reuse = false;

    boost::context::stack_context allocate() {
        if (!reuse)
            return shared->inner.allocate();
        if (shared->kept.sp == nullptr)
            shared->kept = shared->inner.allocate();
#if FIBERS_ASAN
        // What the previous fiber left poisoned there is not this one's.
        ASAN_UNPOISON_MEMORY_REGION(static_cast<char*>(shared->kept.sp) - shared->kept.size, shared->kept.size);
#endif
        return shared->kept;
    }
    void deallocate(boost::context::stack_context& sctx) noexcept {
        if (!reuse)
            shared->inner.deallocate(sctx);
    }
    // Records that hold a copy, besides this one.
    long records() const { return shared.use_count() - 1; }
};

BOOST_AUTO_TEST_CASE(parked_in_a_switch_to_its_parent) {
    // fibers::current().parent().switch_to(): the temporary handle to the
    // fiber lives on its stack while it is parked there.
    for (bool with_value : {false, true}) {
        std::atomic<bool> unwound{false};
        watched_stack salloc;
        fiber f(std::allocator_arg, salloc, [&] {
            destruction_flag guard{&unwound, nullptr};
            if (with_value)
                to_parent(1);
            else
                fibers::current().parent().switch_to();
        });
        std::any got = f.switch_to();
        BOOST_TEST(got.has_value() == with_value);
        BOOST_TEST(!unwound.load());
        BOOST_TEST(salloc.records() == 1);
        f = fiber();
        BOOST_TEST(unwound.load());
        BOOST_TEST(salloc.records() == 0);
    }
}

BOOST_AUTO_TEST_CASE(own_handle_in_a_local) {
    std::atomic<bool> unwound{false};
    watched_stack salloc;
    fiber root = fiber::current();
    fiber f(std::allocator_arg, salloc, [&] {
        destruction_flag guard{&unwound, nullptr};
        fiber me = fiber::current();
        fiber copy = me;
        fiber assigned;
        assigned = copy;
        fiber moved = std::move(copy);
        suspend_into(root);
    });
    f.switch_to();
    BOOST_TEST(!unwound.load());
    f = fiber();
    BOOST_TEST(unwound.load());
    BOOST_TEST(salloc.records() == 0);
}

BOOST_AUTO_TEST_CASE(own_handle_in_a_local_and_parked_in_a_switch_to_its_parent) {
    std::atomic<bool> unwound{false};
    watched_stack salloc;
    fiber f(std::allocator_arg, salloc, [&] {
        destruction_flag guard{&unwound, nullptr};
        fiber me = fibers::current();
        fibers::current().parent().switch_to();
    });
    f.switch_to();
    fiber second = f;
    f = fiber();
    BOOST_TEST(!unwound.load()); // `second` is still there
    second = fiber();
    BOOST_TEST(unwound.load());
    BOOST_TEST(salloc.records() == 0);
}

BOOST_AUTO_TEST_CASE(own_handle_inside_objects_on_its_stack) {
    std::atomic<bool> unwound{false};
    watched_stack salloc;
    fiber root = fiber::current();
    fiber f(std::allocator_arg, salloc, [&] {
        destruction_flag guard{&unwound, nullptr};
        struct holder {
            int before = 0;
            fiber handle;
        } member{0, fiber::current()};
        auto closure = [me = fiber::current()] { return me.is_alive(); };
        std::optional<fiber> maybe(fiber::current());
        fiber several[2] = {fiber::current(), root};
        BOOST_TEST(closure());
        suspend_into(root);
    });
    f.switch_to();
    f = fiber();
    BOOST_TEST(unwound.load());
    BOOST_TEST(salloc.records() == 0);
}

BOOST_AUTO_TEST_CASE(swaps_and_assignments_on_its_stack) {
    std::atomic<bool> unwound{false};
    watched_stack salloc;
    fiber root = fiber::current();
    auto outside = std::make_unique<fiber>();
    fiber f(std::allocator_arg, salloc, [&] {
        destruction_flag guard{&unwound, nullptr};
        fiber me = fiber::current();
        fiber other = root;
        me.swap(other);
        other.swap(me);
        std::swap(me, other);
        std::swap(me, other);
        fiber& alias = me;
        me = alias;
        outside->swap(me); // out to the heap and back
        me.swap(*outside);
        me = std::move(alias);
        suspend_into(root);
    });
    f.switch_to();
    BOOST_TEST(!*outside);
    f = fiber();
    BOOST_TEST(unwound.load());
    BOOST_TEST(salloc.records() == 0);
}

BOOST_AUTO_TEST_CASE(handle_copied_to_the_heap_keeps_it_alive) {
    for (bool move : {false, true}) {
        std::atomic<bool> unwound{false};
        bool resumed = false;
        watched_stack salloc;
        std::unique_ptr<fiber> kept;
        fiber f(std::allocator_arg, salloc, [&] {
            destruction_flag guard{&unwound, nullptr};
            fiber me = fiber::current();
            if (move)
                kept = std::make_unique<fiber>(std::move(me));
            else
                kept = std::make_unique<fiber>(me);
            to_parent();
            resumed = true;
            return 7;
        });
        f.switch_to();
        f = fiber();
        BOOST_TEST(!unwound.load());
        BOOST_TEST(kept->is_alive());
        BOOST_TEST(std::any_cast<int>(kept->switch_to()) == 7); // resumes where it was parked
        BOOST_TEST(resumed);
        BOOST_TEST(unwound.load());
        BOOST_TEST(!kept->is_alive());
        BOOST_TEST(salloc.records() == 1);
        kept.reset();
        BOOST_TEST(salloc.records() == 0);
    }
}

BOOST_AUTO_TEST_CASE(handle_switched_out_keeps_it_alive) {
    // Its own handle, sent to the parent as the value of a switch.
    std::atomic<bool> unwound{false};
    watched_stack salloc;
    fiber f(std::allocator_arg, salloc, [&] {
        destruction_flag guard{&unwound, nullptr};
        to_parent(fiber::current());
        return fiber::current(); // and once more as its result
    });
    fiber got = std::any_cast<fiber>(f.switch_to());
    BOOST_TEST((got == f));
    f = fiber();
    BOOST_TEST(!unwound.load());
    fiber result = std::any_cast<fiber>(got.switch_to());
    BOOST_TEST(unwound.load());
    BOOST_TEST((result == got));
    got = fiber();
    BOOST_TEST(salloc.records() == 1);
    result = fiber();
    BOOST_TEST(salloc.records() == 0);
}

BOOST_AUTO_TEST_CASE(handle_moved_onto_its_stack_holds_nothing) {
    // Its only handle moves from the heap into a local: once it suspends,
    // nothing can resume it.
    std::atomic<bool> unwound{false};
    watched_stack salloc;
    fiber root = fiber::current();
    auto holder = std::make_unique<fiber>();
    *holder = fiber(std::allocator_arg, salloc, [&] {
        destruction_flag guard{&unwound, nullptr};
        fiber me = std::move(*holder);
        suspend_into(root);
    });
    holder->switch_to();
    BOOST_TEST(unwound.load());
    BOOST_TEST(salloc.records() == 0);
}

BOOST_AUTO_TEST_CASE(handle_copied_out_on_another_thread) {
    // Another thread copies the fiber's own handle out of its frame, and
    // later drops the copy, the last handle: the fiber is unwound on its own
    // thread.
    std::atomic<bool> unwound{false};
    std::thread::id unwound_on;
    watched_stack salloc;
    fiber root = fiber::current();
    std::unique_ptr<fiber> kept;
    fiber f(std::allocator_arg, salloc, [&] {
        destruction_flag guard{&unwound, &unwound_on};
        fiber me = fiber::current();
        std::thread([&] { kept = std::make_unique<fiber>(me); }).join();
        suspend_into(root);
    });
    f.switch_to();
    f = fiber();
    BOOST_TEST(!unwound.load());
    std::thread([&] { kept.reset(); }).join();
    BOOST_TEST(!unwound.load());
    fiber([] {}); // the owner's next fiber creation settles it
    BOOST_TEST(unwound.load());
    BOOST_TEST((unwound_on == std::this_thread::get_id()));
    BOOST_TEST(salloc.records() == 0);
}

BOOST_AUTO_TEST_CASE(set_parent_from_the_parents_own_stack) {
    // The parent link holds a reference even when the handle it was given
    // lay on the parent's stack.
    std::atomic<bool> unwound{false};
    watched_stack salloc;
    fiber root = fiber::current();
    fiber child([] {}, root);
    fiber parent(std::allocator_arg, salloc, [&] {
        destruction_flag guard{&unwound, nullptr};
        child.set_parent(fiber::current());
        suspend_into(root);
    });
    parent.switch_to();
    parent = fiber();
    BOOST_TEST(!unwound.load()); // the child's link keeps it
    BOOST_TEST(child.parent().is_alive());
    child = fiber();
    BOOST_TEST(unwound.load());
    BOOST_TEST(salloc.records() == 0);
}

BOOST_AUTO_TEST_CASE(handle_on_a_reused_stack_to_the_fiber_that_had_it) {
    // A handle to an ended fiber lying on the stack that fiber ran on,
    // since given to another: an ordinary handle.
    watched_stack salloc;
    salloc.reuse = true;
    fiber root = fiber::current();
    fiber first(std::allocator_arg, salloc, [] {});
    first.switch_to();
    bool ended_seen = false;
    fiber second(std::allocator_arg, salloc, [&] {
        fiber held = first;
        suspend_into(root);
        ended_seen = !held.is_alive();
    });
    second.switch_to();
    first = fiber();
    BOOST_TEST(salloc.records() == 2); // `held` keeps the first record
    second.switch_to();
    BOOST_TEST(ended_seen);
    BOOST_TEST(salloc.records() == 1);
    second = fiber();
    BOOST_TEST(salloc.records() == 0);
}

BOOST_AUTO_TEST_CASE(root_handles_on_the_roots_stack_hold_references) {
    std::thread([] {
        fiber root = fiber::current();
        fiber copy = root;
        BOOST_TEST(root.is_alive());
        fiber child([&] { return copy == fiber::current().parent(); });
        BOOST_TEST(std::any_cast<bool>(child.switch_to()));
    }).join();
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(stacks)

// Counts what a Boost.Context allocator is asked for.
struct counting_stack {
    std::shared_ptr<std::atomic<int>> allocated = std::make_shared<std::atomic<int>>(0);
    std::shared_ptr<std::atomic<int>> deallocated = std::make_shared<std::atomic<int>>(0);
    boost::context::fixedsize_stack inner{64 * 1024};
    boost::context::stack_context allocate() {
        ++*allocated;
        return inner.allocate();
    }
    void deallocate(boost::context::stack_context& sctx) noexcept {
        ++*deallocated;
        inner.deallocate(sctx);
    }
};

BOOST_AUTO_TEST_CASE(boost_context_allocators) {
    using namespace boost::context;
    auto run = [](fiber f) { return std::any_cast<int>(f.switch_to()); };
    BOOST_TEST(run(fiber(std::allocator_arg, protected_fixedsize_stack(64 * 1024), [] { return 1; })) == 1);
    BOOST_TEST(run(fiber(std::allocator_arg, fixedsize_stack(64 * 1024), [] { return 2; })) == 2);
    pooled_fixedsize_stack pool(64 * 1024);
    BOOST_TEST(run(fiber(std::allocator_arg, pool, [] { return 3; })) == 3);
    BOOST_TEST(run(fiber(std::allocator_arg, fibers::arena_stack(32 * 1024), [] { return 4; })) == 4);
    fiber root = fiber::current();
    BOOST_TEST(run(fiber(std::allocator_arg, fixedsize_stack(64 * 1024), [] { return 5; }, root)) == 5);
}

BOOST_AUTO_TEST_CASE(stack_is_allocated_at_start_and_freed_at_end) {
    counting_stack salloc;
    auto allocated = salloc.allocated;
    auto deallocated = salloc.deallocated;
    {
        fiber never(std::allocator_arg, salloc, [] {});
    }
    BOOST_TEST(allocated->load() == 0);
    fiber f(std::allocator_arg, salloc, [] { to_parent(); });
    f.switch_to();
    BOOST_TEST(allocated->load() == 1);
    BOOST_TEST(deallocated->load() == 0);
    f.switch_to();
    BOOST_TEST(deallocated->load() == 1); // at the end, not at the last handle
    BOOST_TEST(!f.is_alive());
}

BOOST_AUTO_TEST_CASE(stack_overflow_names_the_fiber) {
    for (bool boost_allocator : {false, true}) {
        auto result = fibers_test::run_in_child([boost_allocator] {
            struct recurse {
                static int down(int n) {
                    volatile char frame[512];
                    frame[0] = static_cast<char>(n);
                    if (n < 0) // never: keeps the compiler from calling this infinite
                        return 0;
                    return down(n + 1) + frame[0];
                }
            };
            auto body = [] { return recurse::down(0); };
            fiber f = boost_allocator
                          ? fiber(std::allocator_arg, boost::context::protected_fixedsize_stack(64 * 1024), body)
                          : fiber(std::allocator_arg, fibers::arena_stack(64 * 1024), body);
            f.switch_to();
        });
        BOOST_TEST(result.died_abnormally());
        BOOST_TEST(result.stderr_text.find("stack overflow") != std::string::npos, result.stderr_text);
        BOOST_TEST(result.stderr_text.find("fiber 0x") != std::string::npos, result.stderr_text);
    }
}

BOOST_AUTO_TEST_SUITE_END()
