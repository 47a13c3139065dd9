// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// A million tasks: what one costs in memory, page faults and time, and
// whether the costs of scheduling stay flat as the number of live tasks
// grows. A benchmark, not a test: it prints figures beside their goals.
//
//   perf_million [--tasks N] [--growth 10,1000,100000,1000000] [--repetitions R]
//
// The scale run spawns N tasks (default 1,000,000) from the root fiber, on
// the default stacks (arena_stack: a guard page below each), each sleeping
// 1 s, then joins them all in spawn order. It prints:
//
//   - peak RSS per task: the process's peak resident set (getrusage) less
//     its resident set before the first spawn, over N;
//   - page tables per task (VmPTE after the run, for information: the
//     kernel keeps them outside the resident set);
//   - page faults per task: minor and major faults (getrusage) during the
//     run, over N;
//   - the wall time of the run, and the same less the 1 s that the last
//     task sleeps, which no implementation can avoid ("work");
//   - the floor: the time this process takes for as many first-touch page
//     faults as the run took, measured right after it by writing one byte
//     to each page of fresh anonymous mappings (64 MiB at a time, no
//     transparent huge pages; only the writes are timed). A fault is the
//     bulk of what a task costs, so the work cannot go much below it.
//   - for information, the kernel's part of as many default stacks, with
//     no fiber: in fresh mappings laid out as arena_stack lays out its
//     slots, a guard marker installed below each slot, the top page of
//     each faulted in (MADV_POPULATE_WRITE), and each handed back with
//     MADV_DONTNEED, each advice given in batches of 64 where
//     process_madvise(2) takes it, as the library does; where it does not
//     take MADV_POPULATE_WRITE, the top pages are touched instead. Each step is timed apart; this is what a guarded stack
//     that is given back costs whoever makes it, before any scheduling.
//
// Goals: at most 6 KiB and 1.25 faults per task, work at most 1.3x the
// floor, on the stock vm.max_map_count (read and printed, with the number
// of mappings while the most tasks are alive).
//
// Cost growth: with 10, 1k, 100k and 1M live tasks (capped at N) parked on
// an event that nobody sets while measuring, the cost of
//
//   - a switch: fibers::fiber::switch_to() there and back between the root
//     fiber and a plain fiber;
//   - sleep(0s): two tasks calling it in turn, per call;
//   - a wake-up: two tasks taking turns through two events (set one, wait
//     on the other, clear it), per wake-up;
//
// each the best of R repetitions (default 5); the costs with the fewest
// live tasks are measured again once the parked tasks are gone, and the
// better of the two is the baseline. Goal: flat, every cost at most 1.25x
// its baseline.
//
// Besides the table, every figure is printed as a RESULT line for
// test/perf/collect.py (see test/perf/README.md).

#include <fibers/fiber.hpp>
#include <fibers/hub.hpp>
#include <fibers/sync.hpp>
#include <fibers/task.hpp>

#include "interleaved.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

double seconds_since(clock_type::time_point start) {
    return std::chrono::duration<double>(clock_type::now() - start).count();
}

std::size_t page_size() { return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)); }

long long faults_so_far() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return static_cast<long long>(u.ru_minflt) + static_cast<long long>(u.ru_majflt);
}

double peak_rss_kib() {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_maxrss); // KiB on Linux
}

double rss_kib() {
    std::ifstream in("/proc/self/statm");
    std::size_t size = 0, resident = 0;
    in >> size >> resident;
    return static_cast<double>(resident * page_size()) / 1024.0;
}

// Page tables are not in the resident set, but are memory all the same.
double page_table_kib() {
    std::ifstream in("/proc/self/status");
    for (std::string line; std::getline(in, line);)
        if (line.rfind("VmPTE:", 0) == 0)
            return std::strtod(line.c_str() + 6, nullptr);
    return 0;
}

std::size_t read_number(char const* path) {
    std::ifstream in(path);
    std::size_t n = 0;
    in >> n;
    return n;
}

std::size_t mappings() {
    std::ifstream in("/proc/self/maps");
    std::size_t n = 0;
    for (std::string line; std::getline(in, line);)
        ++n;
    return n;
}

[[noreturn]] void fail(char const* what) {
    std::fprintf(stderr, "perf_million: %s\n", what);
    std::exit(1);
}

// The time for `pages` first-touch faults: fresh anonymous mappings, one
// byte written per page; mapping and unmapping are not timed.
double first_touch_seconds(long long pages) {
    std::size_t const page = page_size();
    std::size_t const chunk_pages = (std::size_t(64) << 20) / page;
    double timed = 0;
    while (pages > 0) {
        std::size_t const n = static_cast<std::size_t>(std::min<long long>(pages, static_cast<long long>(chunk_pages)));
        void* p = ::mmap(nullptr, n * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            fail("mmap failed while measuring the floor");
        ::madvise(p, n * page, MADV_NOHUGEPAGE); // one fault per page, as a stack takes them
        auto* bytes = static_cast<unsigned char volatile*>(p);
        auto const start = clock_type::now();
        for (std::size_t i = 0; i < n; ++i)
            bytes[i * page] = 1;
        timed += seconds_since(start);
        ::munmap(p, n * page);
        pages -= static_cast<long long>(n);
    }
    return timed;
}

// The kernel's part of `stacks` default stacks (see the top of the file).
struct stack_kernel_work {
    bool guards = true;            // the kernel took every guard marker
    bool faulted_in_batches = true; // top pages faulted in 64 per call, not touched
    double guard_seconds = 0;
    double touch_seconds = 0;
    double discard_seconds = 0;
    double total() const { return guard_seconds + touch_seconds + discard_seconds; }
};

// Advice for `n` ranges in one process_madvise(2) call: whether the kernel
// did it all.
bool advise_in_one_call(iovec const* ranges, std::size_t n, int advice, long& advised) {
#if defined(SYS_process_madvise)
    constexpr int pidfd_self_process = -10001; // Linux 6.14
    std::size_t bytes = 0;
    for (std::size_t i = 0; i != n; ++i)
        bytes += ranges[i].iov_len;
    advised = ::syscall(SYS_process_madvise, pidfd_self_process, ranges, n, advice, 0u);
    return advised == static_cast<long>(bytes);
#else
    static_cast<void>(ranges);
    static_cast<void>(n);
    static_cast<void>(advice);
    advised = -1;
    return false;
#endif
}

// Advice for `n` ranges: one process_madvise(2) call while `batched` (the
// kernel took that advice so far), else one madvise(2) per range. Returns
// false if any was refused.
bool advise(iovec const* ranges, std::size_t n, int advice, bool& batched) {
    if (batched) {
        long advised = 0;
        if (advise_in_one_call(ranges, n, advice, advised))
            return true;
        if (advised < 0)
            batched = false; // not taken here: range by range from now on
        // else partly done: the ranges are redone below, which is harmless
    }
    bool all = true;
    for (std::size_t i = 0; i != n; ++i)
        all = ::madvise(ranges[i].iov_base, ranges[i].iov_len, advice) == 0 && all;
    return all;
}

// Faults in `n` pages in one call, as the library faults in new stacks' top
// pages; false if the kernel does not take it.
bool fault_in(iovec const* ranges, std::size_t n) {
    long advised = 0;
    return advise_in_one_call(ranges, n, MADV_POPULATE_WRITE, advised);
}

stack_kernel_work stack_kernel_seconds(std::size_t stacks) {
    stack_kernel_work w;
    std::size_t const page = page_size();
    std::size_t const usable = fibers::arena_stack::default_size();
    std::size_t const slot = usable + page;
    std::size_t const chunk_slots = 4096; // 1 GiB of address space at a time, at the default size
    constexpr std::size_t batch = 64;
    bool guards_batched = true, discards_batched = true; // as the library, each advice probed apart
    for (std::size_t done = 0; done < stacks;) {
        std::size_t const n = std::min(chunk_slots, stacks - done);
        void* p = ::mmap(nullptr, n * slot, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
            fail("mmap failed while measuring the kernel's part of the stacks");
        ::madvise(p, n * slot, MADV_NOHUGEPAGE);
        auto* const base = static_cast<char*>(p);
        iovec ranges[batch];
        auto start = clock_type::now();
        for (std::size_t first = 0; first < n; first += batch) {
            std::size_t const count = std::min(batch, n - first);
            for (std::size_t k = 0; k != count; ++k)
                ranges[k] = {base + (first + k) * slot, page};
            w.guards = advise(ranges, count, MADV_GUARD_INSTALL, guards_batched) && w.guards;
        }
        w.guard_seconds += seconds_since(start);
        start = clock_type::now();
        if (w.faulted_in_batches) {
            for (std::size_t first = 0; first < n && w.faulted_in_batches; first += batch) {
                std::size_t const count = std::min(batch, n - first);
                for (std::size_t k = 0; k != count; ++k)
                    ranges[k] = {base + (first + k + 1) * slot - page, page};
                w.faulted_in_batches = fault_in(ranges, count);
            }
        }
        for (std::size_t i = 0; i != n; ++i) // no fault left where the batches took them
            static_cast<char volatile*>(p)[(i + 1) * slot - 64] = 1;
        w.touch_seconds += seconds_since(start);
        start = clock_type::now();
        for (std::size_t first = 0; first < n; first += batch) {
            std::size_t const count = std::min(batch, n - first);
            for (std::size_t k = 0; k != count; ++k)
                ranges[k] = {base + (first + k) * slot + page, usable};
            advise(ranges, count, MADV_DONTNEED, discards_batched);
        }
        w.discard_seconds += seconds_since(start);
        ::munmap(p, n * slot);
        done += n;
    }
    return w;
}

struct scale_result {
    std::size_t tasks = 0;
    double rss_per_task_kib = 0;
    double page_tables_per_task_kib = 0; // at the end of the run, not at its peak
    double faults_per_task = 0;
    long long faults = 0;
    double spawn_seconds = 0;
    double wall_seconds = 0;
    double floor_seconds = 0;
    stack_kernel_work stacks;
};

scale_result scale_run(std::size_t n) {
    scale_result r;
    r.tasks = n;
    std::vector<fibers::task> tasks;
    tasks.reserve(n); // its pages are faulted in during the run, as a program's own list of tasks would be
    double const rss_before = rss_kib();
    double const page_tables_before = page_table_kib();
    long long const faults_before = faults_so_far();
    auto const start = clock_type::now();
    for (std::size_t i = 0; i < n; ++i)
        tasks.push_back(fibers::spawn([] { fibers::sleep(1s); }));
    r.spawn_seconds = seconds_since(start);
    for (auto& t : tasks)
        t.join();
    r.wall_seconds = seconds_since(start);
    r.page_tables_per_task_kib = (page_table_kib() - page_tables_before) / static_cast<double>(n);
    r.faults = faults_so_far() - faults_before;
    r.rss_per_task_kib = (peak_rss_kib() - rss_before) / static_cast<double>(n);
    r.faults_per_task = static_cast<double>(r.faults) / static_cast<double>(n);
    tasks.clear();
    tasks.shrink_to_fit();
    r.floor_seconds = first_touch_seconds(r.faults);
    r.stacks = stack_kernel_seconds(n);
    return r;
}

// ---- cost growth

struct costs {
    double switch_ns = std::numeric_limits<double>::max();
    double sleep_ns = std::numeric_limits<double>::max();
    double wake_ns = std::numeric_limits<double>::max();
};

double switch_round_trip(long round_trips) {
    struct state {
        fibers::fiber root = fibers::fiber::current();
        fibers::fiber other;
        bool done = false;
    };
    auto s = std::make_unique<state>();
    s->other = fibers::fiber([p = s.get()] {
        while (!p->done)
            p->root.switch_to();
    });
    s->other.switch_to(); // started
    auto const start = clock_type::now();
    for (long i = 0; i < round_trips; ++i)
        s->other.switch_to();
    double const ns = fibers_perf::nanoseconds_per(start, round_trips);
    s->done = true;
    s->other.switch_to(); // lets it end
    return ns;
}

double sleep_zero(long sleeps) {
    long const each = sleeps / 2;
    auto body = [each] {
        for (long i = 0; i < each; ++i)
            fibers::sleep(0s);
    };
    auto const start = clock_type::now();
    fibers::task a = fibers::spawn(body);
    fibers::task b = fibers::spawn(body);
    a.join();
    b.join();
    return fibers_perf::nanoseconds_per(start, 2 * each);
}

double wake_up(long wakes) {
    long const rounds = wakes / 2;
    fibers::event ping, pong;
    long seen = 0;
    auto const start = clock_type::now();
    fibers::task a = fibers::spawn([&] {
        for (long i = 0; i < rounds; ++i) {
            ping.set();
            pong.wait();
            pong.clear();
        }
    });
    fibers::task b = fibers::spawn([&] {
        for (long i = 0; i < rounds; ++i) {
            ping.wait();
            ping.clear();
            ++seen;
            pong.set();
        }
    });
    a.join();
    b.join();
    double const ns = fibers_perf::nanoseconds_per(start, 2 * rounds);
    if (seen != rounds)
        fail("the wake-up ping-pong lost a round");
    return ns;
}

costs measure_costs(int repetitions) {
    costs c;
    switch_round_trip(20000); // warm-up
    sleep_zero(20000);
    wake_up(20000);
    for (int rep = 0; rep < repetitions; ++rep) {
        c.switch_ns = std::min(c.switch_ns, switch_round_trip(200000));
        c.sleep_ns = std::min(c.sleep_ns, sleep_zero(200000));
        c.wake_ns = std::min(c.wake_ns, wake_up(100000));
    }
    return c;
}

struct growth_point {
    std::size_t live = 0;
    std::size_t mappings = 0;
    costs cost;
};

std::vector<growth_point> growth_run(std::vector<std::size_t> const& counts, int repetitions) {
    std::vector<growth_point> points;
    fibers::event release;
    std::vector<fibers::task> parked;
    parked.reserve(counts.empty() ? 0 : counts.back());
    for (std::size_t live : counts) {
        while (parked.size() < live)
            parked.push_back(fibers::spawn([&release] { release.wait(); }));
        fibers::sleep(0s); // every parked task has started and waits
        for (int i = 0; i < 3 && release.waiter_count() < live; ++i)
            fibers::sleep(10ms);
        if (release.waiter_count() != live)
            fail("the parked tasks did not all wait on their event");
        growth_point p;
        p.live = live;
        p.mappings = mappings();
        p.cost = measure_costs(repetitions);
        points.push_back(p);
    }
    release.set();
    for (auto& t : parked)
        t.join();
    // The first count again, now that the others are gone: the baseline is
    // the better of the two, so that a burst of load during the first
    // measurement does not make every later count look cheap.
    costs const again = measure_costs(repetitions);
    costs& base = points.front().cost;
    base.switch_ns = std::min(base.switch_ns, again.switch_ns);
    base.sleep_ns = std::min(base.sleep_ns, again.sleep_ns);
    base.wake_ns = std::min(base.wake_ns, again.wake_ns);
    return points;
}

std::string count_name(std::size_t n) {
    if (n >= 1000000 && n % 1000000 == 0)
        return std::to_string(n / 1000000) + "M";
    if (n >= 1000 && n % 1000 == 0)
        return std::to_string(n / 1000) + "k";
    return std::to_string(n);
}

void usage() {
    std::fprintf(stderr, "usage: perf_million [--tasks N] [--growth 10,1000,100000,1000000] [--repetitions R]\n");
}

} // namespace

int main(int argc, char** argv) {
    std::size_t tasks = 1000000;
    std::vector<std::size_t> growth{10, 1000, 100000, 1000000};
    int repetitions = 5;
    for (int i = 1; i < argc; ++i) {
        std::string const arg = argv[i];
        if (i + 1 >= argc) {
            usage();
            return 2;
        }
        std::string const value = argv[++i];
        if (arg == "--tasks") {
            tasks = std::strtoull(value.c_str(), nullptr, 10);
        } else if (arg == "--repetitions") {
            repetitions = std::atoi(value.c_str());
        } else if (arg == "--growth") {
            growth.clear();
            std::istringstream in(value);
            for (std::string item; std::getline(in, item, ',');)
                growth.push_back(std::strtoull(item.c_str(), nullptr, 10));
        } else {
            usage();
            return 2;
        }
    }
    if (tasks < 1 || repetitions < 1 || growth.empty() ||
        std::any_of(growth.begin(), growth.end(), [](std::size_t n) { return n < 1; })) {
        usage();
        return 2;
    }
    // Growth goes no further than the scale run.
    for (auto& n : growth)
        n = std::min(n, tasks);
    std::sort(growth.begin(), growth.end());
    growth.erase(std::unique(growth.begin(), growth.end()), growth.end());

    std::size_t const max_map_count = read_number("/proc/sys/vm/max_map_count");
    std::printf("vm.max_map_count %zu, page %zu bytes, default stack %zu KiB (arena_stack, guarded)\n",
                max_map_count, page_size(), fibers::arena_stack::default_size() / 1024);
    std::fflush(stdout);

    scale_result const s = scale_run(tasks);
    double const work = std::max(s.wall_seconds - 1.0, 0.0);
    std::printf("\n%zu tasks sleeping 1 s, spawned and joined from the root fiber\n", s.tasks);
    std::printf("  %-34s %10.2f KiB   goal <= 6\n", "peak RSS per task", s.rss_per_task_kib);
    std::printf("  %-34s %10.2f KiB   (not in the RSS)\n", "page tables per task, after the run",
                s.page_tables_per_task_kib);
    std::printf("  %-34s %10.3f       goal <= 1.25 (%lld faults)\n", "page faults per task", s.faults_per_task,
                s.faults);
    std::printf("  %-34s %10.2f s     (spawning: %.2f s, %.0f ns per task)\n", "wall", s.wall_seconds,
                s.spawn_seconds, s.spawn_seconds * 1e9 / static_cast<double>(s.tasks));
    std::printf("  %-34s %10.2f s\n", "work: wall less the 1 s sleep", work);
    std::printf("  %-34s %10.2f s     (%.2f us per fault)\n", "floor: as many first-touch faults", s.floor_seconds,
                s.floor_seconds * 1e6 / static_cast<double>(std::max<long long>(s.faults, 1)));
    std::printf("  %-34s %10.2fx      goal <= 1.3\n", "work / floor", work / s.floor_seconds);
    std::printf("  %-34s %10.2f s     (%.2fx the floor: guard markers %.2f s%s, top pages %s %.2f s, "
                "discards %.2f s)\n",
                "kernel's part of as many stacks", s.stacks.total(), s.stacks.total() / s.floor_seconds,
                s.stacks.guard_seconds, s.stacks.guards ? "" : " (refused: no markers on this kernel)",
                s.stacks.faulted_in_batches ? "faulted in" : "touched", s.stacks.touch_seconds,
                s.stacks.discard_seconds);
    std::printf("  %-34s %10.2fx\n", "work / kernel's part of the stacks", work / s.stacks.total());
    std::fflush(stdout);

    std::vector<growth_point> const points = growth_run(growth, repetitions);
    std::printf("\ncost growth: best of %d, ns per operation, with that many other tasks parked\n", repetitions);
    std::printf("  %-12s %10s %12s %12s %12s\n", "live tasks", "mappings", "switch", "sleep(0s)", "wake-up");
    for (auto const& p : points)
        std::printf("  %-12s %10zu %12.1f %12.1f %12.1f\n", count_name(p.live).c_str(), p.mappings, p.cost.switch_ns,
                    p.cost.sleep_ns, p.cost.wake_ns);
    growth_point const& base = points.front();
    std::printf("  %-12s %10s %11.2fx %11.2fx %11.2fx   goal: flat, <= 1.25x at every count\n",
                ("at " + count_name(points.back().live)).c_str(), "", points.back().cost.switch_ns / base.cost.switch_ns,
                points.back().cost.sleep_ns / base.cost.sleep_ns, points.back().cost.wake_ns / base.cost.wake_ns);
    std::size_t const most_mappings = points.back().mappings;
    std::printf("  %zu mappings with %s tasks alive, vm.max_map_count %zu\n", most_mappings,
                count_name(points.back().live).c_str(), max_map_count);

    std::string const n = count_name(s.tasks);
    std::printf("\n");
    std::printf("RESULT id=million.rss figure=\"%s tasks: peak RSS per task\" fibers=%.3f unit=KiB goal=value<=6\n",
                n.c_str(), s.rss_per_task_kib);
    std::printf("RESULT id=million.faults figure=\"%s tasks: page faults per task\" fibers=%.4f unit=faults "
                "goal=value<=1.25\n",
                n.c_str(), s.faults_per_task);
    std::printf("RESULT id=million.wall figure=\"%s tasks: wall less the 1 s sleep\" fibers=%.3f anchor=%.3f "
                "anchor_name=\"as many first-touch faults\" unit=s goal=ratio<=1.3\n",
                n.c_str(), work, s.floor_seconds);
    std::printf("RESULT id=million.stacks figure=\"%s tasks: work against the kernel's part of their stacks\" "
                "fibers=%.3f anchor=%.3f anchor_name=\"guard markers, top pages and discards alone\" unit=s\n",
                n.c_str(), work, s.stacks.total());
    std::printf("RESULT id=million.mappings figure=\"mappings with %s tasks alive\" fibers=%zu anchor=%zu "
                "anchor_name=\"vm.max_map_count\" unit=mappings goal=ratio<=1\n",
                count_name(points.back().live).c_str(), most_mappings, max_map_count);
    struct {
        char const* id;
        char const* name;
        double costs::*field;
    } const kinds[] = {{"switch", "switch", &costs::switch_ns},
                       {"sleep0", "sleep(0s)", &costs::sleep_ns},
                       {"wake", "wake-up", &costs::wake_ns}};
    for (auto const& k : kinds)
        for (std::size_t i = 1; i < points.size(); ++i)
            std::printf("RESULT id=growth.%s.%zu figure=\"%s, %s live tasks\" fibers=%.2f anchor=%.2f "
                        "anchor_name=\"the same, %s live tasks\" unit=ns goal=ratio<=1.25\n",
                        k.id, points[i].live, k.name, count_name(points[i].live).c_str(), points[i].cost.*k.field,
                        base.cost.*k.field, count_name(base.live).c_str());
    fibers::get_hub().close();
    return 0;
}
