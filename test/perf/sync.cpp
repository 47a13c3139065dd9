// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// The sync primitives and futures beside Boost.Fiber, the standard library
// and Asio, measured in the same run:
//
//   mutex uncontended    lock()+unlock() of a fibers::mutex in a task, per
//                        pair; boost::fibers::mutex in a Boost.Fiber fiber;
//                        std::mutex from main, as a second row
//   mutex contended      two tasks take turns: lock, sleep(0s), unlock, per
//                        lock+unlock; the same with boost::fibers::mutex and
//                        this_fiber::yield(). The workloads are the same, the
//                        schedules are not: fibers hands a released mutex to
//                        its first waiter, so the two tasks alternate; Boost
//                        lets the releaser take it back at once, so one fiber
//                        runs all its rounds while the other wakes and waits
//                        again each time. Each round costs a switch away and
//                        back, and a failed lock, in both.
//   queue ping-pong      two tasks send a number back and forth (plus one)
//                        through two fibers::queue<int>(1), per round trip;
//                        two Boost.Fiber fibers through two
//                        buffered_channel<int>(2), which hold one item each.
//                        One item at most is ever in a queue: bounded or not
//                        changes nothing here, capacity 1 mirrors the channel
//   condition hand-off   a producer task hands numbers one at a time to a
//                        consumer task through one slot guarded by a
//                        fibers::mutex and two fibers::condition (not full,
//                        not empty), per number; the same with
//                        boost::fibers::mutex and condition_variable
//   queue thread<->task  a plain thread puts a number into a fibers::queue,
//                        a task of the main thread's hub gets it and puts it
//                        plus one into another, which the thread gets: per
//                        round trip (the thread blocks, the task waits
//                        through the hub); the same with two
//                        buffered_channel between the plain thread and a
//                        Boost.Fiber fiber of the main thread, which Boost
//                        supports (a thread that uses a channel gets a
//                        scheduler of its own, and blocks in it)
//   pool submit+result   thread_pool(1).submit(fn).result() from the root
//                        fiber, which waits through its hub; post(fn) to an
//                        asio::thread_pool(1), fn setting a std::promise whose
//                        future main waits on. (Not std::async: libstdc++
//                        starts a thread per call, a cost a pool avoids.)
//
// Every variant checks what it computed (counters, sums, each number that
// comes back), so that none can be optimised away or measure a broken run;
// a wrong result fails the program.
//
// Goal: the pool round trip at most 1.0x Asio's pool with a promise; none
// for the other rows yet. The machine is shared and noisy: the variants
// are interleaved and each keeps its best repetition; compare ratios, not
// nanoseconds. The cross-thread rows depend on the OS waking a thread as
// much as on the libraries.

#include <fibers/futures.hpp>
#include <fibers/sync.hpp>
#include <fibers/task.hpp>

#include "interleaved.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/fiber/all.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <mutex>
#include <thread>

namespace {

using fibers_perf::clock_type;
using fibers_perf::nanoseconds_per;
using namespace std::chrono_literals;

// Called from main's own code only, after every task and thread has been
// joined: exiting from a task would leave the hub to static destruction.
void require(bool ok, char const* what) {
    if (!ok) {
        std::fprintf(stderr, "perf_sync: wrong result: %s\n", what);
        std::exit(1);
    }
}

// The numbers sent are ints; counts stay far below INT_MAX.
int number(long i) { return static_cast<int>(i); }

// ---- mutex uncontended ----

double fibers_mutex(long count) {
    fibers::mutex m;
    long counter = 0;
    double ns = 0;
    // Timed inside the task: spawn+join is perf_hub's business, not the lock's.
    fibers::spawn([&] {
        auto start = clock_type::now();
        for (long i = 0; i < count; ++i) {
            m.lock();
            ++counter;
            m.unlock();
        }
        ns = nanoseconds_per(start, count);
    }).join();
    require(counter == count && !m.locked(), "fibers::mutex uncontended");
    return ns;
}

double boost_mutex(long count) {
    boost::fibers::mutex m;
    long counter = 0;
    double ns = 0;
    boost::fibers::fiber([&] {
        auto start = clock_type::now();
        for (long i = 0; i < count; ++i) {
            m.lock();
            ++counter;
            m.unlock();
        }
        ns = nanoseconds_per(start, count);
    }).join();
    require(counter == count, "boost::fibers::mutex uncontended");
    return ns;
}

double std_mutex(long count) {
    std::mutex m;
    long counter = 0;
    auto start = clock_type::now();
    for (long i = 0; i < count; ++i) {
        m.lock();
        ++counter;
        m.unlock();
    }
    double const ns = nanoseconds_per(start, count);
    require(counter == count, "std::mutex uncontended");
    return ns;
}

// ---- mutex contended ----

// What both contended variants check: the lock excluded the other side
// across the switch, and every round ran.
struct contended_state {
    int holder = 0;
    long rounds = 0;
    long breaches = 0;
};

double fibers_mutex_contended(long count) {
    long const each = count / 2;
    fibers::mutex m;
    contended_state s;
    auto body = [&](int me) {
        for (long i = 0; i < each; ++i) {
            std::lock_guard<fibers::mutex> lock(m);
            s.holder = me;
            fibers::sleep(0s); // the other task runs now, and finds the lock held
            s.breaches += s.holder != me;
            ++s.rounds;
        }
    };
    auto start = clock_type::now();
    fibers::task a = fibers::spawn([&] { body(1); });
    fibers::task b = fibers::spawn([&] { body(2); });
    a.join();
    b.join();
    double const ns = nanoseconds_per(start, 2 * each);
    require(s.rounds == 2 * each && s.breaches == 0 && !m.locked(), "fibers::mutex contended");
    return ns;
}

double boost_mutex_contended(long count) {
    long const each = count / 2;
    boost::fibers::mutex m;
    contended_state s;
    auto body = [&](int me) {
        for (long i = 0; i < each; ++i) {
            std::lock_guard<boost::fibers::mutex> lock(m);
            s.holder = me;
            boost::this_fiber::yield();
            s.breaches += s.holder != me;
            ++s.rounds;
        }
    };
    auto start = clock_type::now();
    boost::fibers::fiber a([&] { body(1); });
    boost::fibers::fiber b([&] { body(2); });
    a.join();
    b.join();
    double const ns = nanoseconds_per(start, 2 * each);
    require(s.rounds == 2 * each && s.breaches == 0, "boost::fibers::mutex contended");
    return ns;
}

// ---- queue ping-pong ----

double fibers_queue_ping_pong(long count) {
    fibers::queue<int> ping(1);
    fibers::queue<int> pong(1);
    long wrong = 0;
    auto start = clock_type::now();
    fibers::task a = fibers::spawn([&] {
        for (long i = 0; i < count; ++i) {
            ping.put(number(i));
            wrong += pong.get() != number(i) + 1;
        }
    });
    fibers::task b = fibers::spawn([&] {
        for (long i = 0; i < count; ++i)
            pong.put(ping.get() + 1);
    });
    a.join();
    b.join();
    double const ns = nanoseconds_per(start, count);
    require(wrong == 0 && ping.empty() && pong.empty(), "fibers::queue ping-pong");
    return ns;
}

double boost_channel_ping_pong(long count) {
    // A buffered_channel's capacity is a power of two, at least 2, and it
    // holds one item less: 2 is the channel of one item.
    boost::fibers::buffered_channel<int> ping(2);
    boost::fibers::buffered_channel<int> pong(2);
    long wrong = 0;
    auto start = clock_type::now();
    boost::fibers::fiber a([&] {
        for (long i = 0; i < count; ++i) {
            ping.push(number(i));
            wrong += pong.value_pop() != number(i) + 1;
        }
    });
    boost::fibers::fiber b([&] {
        for (long i = 0; i < count; ++i)
            pong.push(ping.value_pop() + 1);
    });
    a.join();
    b.join();
    double const ns = nanoseconds_per(start, count);
    require(wrong == 0, "boost::fibers::buffered_channel ping-pong");
    return ns;
}

// ---- condition hand-off ----

// One slot: the producer fills it with 1, 2, ..., the consumer empties it.
struct slot_state {
    bool full = false;
    long item = 0;
    long sum = 0;
    long out_of_order = 0;
};

bool handed_over_all(slot_state const& s, long count) {
    return s.out_of_order == 0 && !s.full && s.sum == count * (count + 1) / 2;
}

double fibers_condition(long count) {
    fibers::mutex m;
    fibers::condition not_full(m);
    fibers::condition not_empty(m);
    slot_state s;
    auto start = clock_type::now();
    fibers::task producer = fibers::spawn([&] {
        for (long i = 1; i <= count; ++i) {
            std::unique_lock<fibers::mutex> lock(m);
            not_full.wait_for([&] { return !s.full; });
            s.item = i;
            s.full = true;
            not_empty.notify();
        }
    });
    fibers::task consumer = fibers::spawn([&] {
        for (long i = 1; i <= count; ++i) {
            std::unique_lock<fibers::mutex> lock(m);
            not_empty.wait_for([&] { return s.full; });
            s.out_of_order += s.item != i;
            s.sum += s.item;
            s.full = false;
            not_full.notify();
        }
    });
    producer.join();
    consumer.join();
    double const ns = nanoseconds_per(start, count);
    require(handed_over_all(s, count) && !m.locked(), "fibers::condition hand-off");
    return ns;
}

double boost_condition(long count) {
    boost::fibers::mutex m;
    boost::fibers::condition_variable not_full;
    boost::fibers::condition_variable not_empty;
    slot_state s;
    auto start = clock_type::now();
    boost::fibers::fiber producer([&] {
        for (long i = 1; i <= count; ++i) {
            std::unique_lock<boost::fibers::mutex> lock(m);
            not_full.wait(lock, [&] { return !s.full; });
            s.item = i;
            s.full = true;
            not_empty.notify_one();
        }
    });
    boost::fibers::fiber consumer([&] {
        for (long i = 1; i <= count; ++i) {
            std::unique_lock<boost::fibers::mutex> lock(m);
            not_empty.wait(lock, [&] { return s.full; });
            s.out_of_order += s.item != i;
            s.sum += s.item;
            s.full = false;
            not_full.notify_one();
        }
    });
    producer.join();
    consumer.join();
    double const ns = nanoseconds_per(start, count);
    require(handed_over_all(s, count), "boost::fibers::condition_variable hand-off");
    return ns;
}

// ---- queue thread<->task ----

double fibers_queue_cross_thread(long count) {
    fibers::queue<int> to_task(1);
    fibers::queue<int> from_task(1);
    long wrong = 0; // the thread's, read after its join
    auto start = clock_type::now();
    fibers::task echo = fibers::spawn([&] {
        for (long i = 0; i < count; ++i)
            from_task.put(to_task.get() + 1);
    });
    std::thread sender([&] {
        for (long i = 0; i < count; ++i) {
            to_task.put(number(i));
            wrong += from_task.get() != number(i) + 1;
        }
    });
    echo.join(); // the root waits through the hub, which runs the task
    sender.join();
    double const ns = nanoseconds_per(start, count);
    require(wrong == 0 && to_task.empty() && from_task.empty(), "fibers::queue thread<->task");
    return ns;
}

double boost_channel_cross_thread(long count) {
    boost::fibers::buffered_channel<int> to_fiber(2);
    boost::fibers::buffered_channel<int> from_fiber(2);
    long wrong = 0;
    auto start = clock_type::now();
    boost::fibers::fiber echo([&] {
        for (long i = 0; i < count; ++i)
            from_fiber.push(to_fiber.value_pop() + 1);
    });
    std::thread sender([&] {
        for (long i = 0; i < count; ++i) {
            to_fiber.push(number(i));
            wrong += from_fiber.value_pop() != number(i) + 1;
        }
    });
    echo.join();
    sender.join();
    double const ns = nanoseconds_per(start, count);
    require(wrong == 0, "boost::fibers::buffered_channel thread<->fiber");
    return ns;
}

// ---- pool submit+result ----

// Made and destroyed by main, around the measurements: a thread_pool must
// not outlive the hub it was joined through, and both anchors' workers are
// started by the warm-up, not by a timed repetition.
fibers::thread_pool* our_pool = nullptr;
boost::asio::thread_pool* asio_pool = nullptr;

long expected_results(long count) { return count * count; } // the sum of 2i+1 for i < count

double fibers_pool(long count) {
    long sum = 0;
    auto start = clock_type::now();
    for (long i = 0; i < count; ++i)
        sum += our_pool->submit([i] { return 2 * i + 1; }).result();
    double const ns = nanoseconds_per(start, count);
    require(sum == expected_results(count), "fibers::thread_pool submit+result");
    return ns;
}

double asio_pool_promise(long count) {
    long sum = 0;
    auto start = clock_type::now();
    for (long i = 0; i < count; ++i) {
        std::promise<long> result;
        std::future<long> f = result.get_future();
        boost::asio::post(*asio_pool, [&result, i] { result.set_value(2 * i + 1); });
        sum += f.get();
    }
    double const ns = nanoseconds_per(start, count);
    require(sum == expected_results(count), "asio::thread_pool post+promise");
    return ns;
}

} // namespace

int main(int argc, char** argv) {
    auto const [scale, repetitions] = fibers_perf::parse_size_arguments(argc, argv, 1, 7, "SCALE");
    if (scale < 1 || repetitions < 1) { // a count of 0 would time nothing and print a best of "infinity"
        std::fprintf(stderr, "usage: %s [scale=1] [repetitions=7], both at least 1\n", argv[0]);
        return 2;
    }

    // The root fiber waits through the hub (the pool row) only if there is one.
    fibers::get_hub();
    fibers::thread_pool pool(1);
    boost::asio::thread_pool asio(1);
    our_pool = &pool;
    asio_pool = &asio;

    fibers_perf::row rows[] = {
        {"mutex uncontended", &fibers_mutex, &boost_mutex, "boost::fibers::mutex", 0, 2000000 * scale},
        {"mutex uncontended/std", &fibers_mutex, &std_mutex, "std::mutex", 0, 2000000 * scale},
        {"mutex contended", &fibers_mutex_contended, &boost_mutex_contended, "boost mutex + yield", 0,
         200000 * scale},
        {"queue ping-pong", &fibers_queue_ping_pong, &boost_channel_ping_pong, "boost buffered_channel", 0,
         100000 * scale},
        {"condition hand-off", &fibers_condition, &boost_condition, "boost condition_variable", 0, 100000 * scale},
        {"queue thread<->task", &fibers_queue_cross_thread, &boost_channel_cross_thread,
         "boost channel thread<->fiber", 0, 10000 * scale},
        {"pool submit+result", &fibers_pool, &asio_pool_promise, "asio thread_pool+promise", 1.0, 10000 * scale},
    };
    fibers_perf::run_and_print(rows, repetitions, "sync");

    our_pool = nullptr;
    asio_pool = nullptr;
    pool.close();
    pool.join();
    fibers::get_hub().close();
    return 0;
}
