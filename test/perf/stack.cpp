// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// Costs of fibers::arena_stack against Boost.Context's allocators: the
// allocate/deallocate cycle, and what it takes to hold a million stacks.
// Prints figures; asserts nothing. Every figure is the best of several runs
// because shared machines are noisy.
//
// g++ -std=c++17 -O2 -DNDEBUG -Iinclude src/stack.cpp src/stack_overflow.cpp
//     test/perf/stack.cpp -lboost_context -lpthread -o perf_stack

#include <fibers/stack.hpp>
#include "stack_overflow.hpp" // src/: the library's own, tested here

#include <boost/context/fixedsize_stack.hpp>
#include <boost/context/pooled_fixedsize_stack.hpp>
#include <boost/context/protected_fixedsize_stack.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <new>
#include <string>
#include <vector>

#include <unistd.h>

namespace {

using clock_type = std::chrono::steady_clock;
using stack_context = boost::context::stack_context;

double ns_since(clock_type::time_point t0) {
    return std::chrono::duration<double, std::nano>(clock_type::now() - t0).count();
}

// What a fiber does at the least: write its first frame at the top.
void touch_top(stack_context const& s) { static_cast<char volatile*>(s.sp)[-64] = 1; }

std::size_t page() { return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)); }

std::size_t resident_bytes() {
    std::ifstream in("/proc/self/statm");
    std::size_t size = 0, resident = 0;
    in >> size >> resident;
    return resident * page();
}

// Page tables are not in the resident set but are memory all the same.
std::size_t page_table_bytes() {
    std::ifstream in("/proc/self/status");
    for (std::string line; std::getline(in, line);)
        if (line.rfind("VmPTE:", 0) == 0)
            return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
    return 0;
}

std::size_t mappings() {
    std::ifstream in("/proc/self/maps");
    std::size_t n = 0;
    for (std::string line; std::getline(in, line);)
        ++n;
    return n;
}

std::size_t max_map_count() {
    std::ifstream in("/proc/sys/vm/max_map_count");
    std::size_t n = 0;
    in >> n;
    return n;
}

constexpr int repetitions = 7;

// One stack at a time: the fiber create/destroy cycle.
template <class Alloc>
double cycle(Alloc& a, std::size_t iterations, bool touch) {
    double best = 1e300;
    for (int r = 0; r != repetitions; ++r) {
        auto const t0 = clock_type::now();
        for (std::size_t i = 0; i != iterations; ++i) {
            stack_context s = a.allocate();
            if (touch)
                touch_top(s);
            a.deallocate(s);
        }
        best = std::min(best, ns_since(t0) / static_cast<double>(iterations));
    }
    return best;
}

// Many alive at once, each touched: more than any per-thread cache holds.
template <class Alloc>
double batch(Alloc& a, std::size_t alive, std::size_t rounds) {
    std::vector<stack_context> v(alive);
    double best = 1e300;
    for (int r = 0; r != repetitions; ++r) {
        auto const t0 = clock_type::now();
        for (std::size_t k = 0; k != rounds; ++k) {
            for (auto& s : v) {
                s = a.allocate();
                touch_top(s);
            }
            for (auto& s : v)
                a.deallocate(s);
        }
        best = std::min(best, ns_since(t0) / static_cast<double>(rounds * alive));
    }
    return best;
}

struct row {
    char const* name;
    double bare;
    double touched;
    double batched;
};

template <class Alloc>
row measure(char const* name, Alloc a) {
    row r{name, 0, 0, 0};
    r.bare = cycle(a, 200000, false);
    r.touched = cycle(a, 200000, true);
    r.batched = batch(a, 256, 100);
    return r;
}

struct hold_result {
    std::size_t held = 0;
    double alloc_ns = 0; // per stack, including the touch
    double free_ns = 0;
    std::size_t rss = 0; // growth
    std::size_t pte = 0; // growth
    std::size_t maps = 0; // total while held
    bool failed = false;
};

template <class Alloc>
hold_result hold(Alloc& a, std::size_t n) {
    hold_result r;
    std::vector<stack_context> v;
    v.reserve(n);
    std::size_t const rss0 = resident_bytes();
    std::size_t const pte0 = page_table_bytes();
    auto t0 = clock_type::now();
    try {
        while (v.size() != n) {
            v.push_back(a.allocate());
            touch_top(v.back());
        }
    } catch (std::bad_alloc const&) {
        r.failed = true;
    }
    r.alloc_ns = ns_since(t0) / static_cast<double>(std::max<std::size_t>(v.size(), 1));
    r.held = v.size();
    std::size_t const rss1 = resident_bytes();
    std::size_t const pte1 = page_table_bytes();
    r.rss = rss1 > rss0 ? rss1 - rss0 : 0;
    r.pte = pte1 > pte0 ? pte1 - pte0 : 0;
    r.maps = mappings();
    t0 = clock_type::now();
    for (auto& s : v)
        a.deallocate(s);
    r.free_ns = ns_since(t0) / static_cast<double>(std::max<std::size_t>(v.size(), 1));
    return r;
}

double mib(std::size_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

void print_hold(char const* what, hold_result const& r) {
    std::printf("  %-38s %9zu %10.0f %9.0f %10.1f %9.1f %9zu%s\n", what, r.held, r.alloc_ns, r.free_ns, mib(r.rss),
                mib(r.pte), r.maps, r.failed ? "  (allocation failed)" : "");
}

} // namespace

int main(int argc, char** argv) {
    // Stacks held at once in the second part (a million by default).
    std::size_t const held = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000000;
    if (held < 1) {
        std::fprintf(stderr, "usage: perf_stack [stacks held at once, default 1000000]\n");
        return 2;
    }
    std::size_t const size = fibers::arena_stack::default_size();
    std::printf("stack size %zu bytes, page %zu, guard mode %s, vm.max_map_count %zu\n\n", size, page(),
                fibers::detail::stack_guard_mode() == fibers::detail::stack_guard_kind::marker ? "marker"
                                                                                                : "mprotect",
                max_map_count());

    std::vector<row> rows;
    rows.push_back(measure("fibers::arena_stack", fibers::arena_stack(size)));
    rows.push_back(measure("boost fixedsize_stack", boost::context::fixedsize_stack(size)));
    rows.push_back(measure("boost protected_fixedsize_stack", boost::context::protected_fixedsize_stack(size)));
    rows.push_back(measure("boost pooled_fixedsize_stack", boost::context::pooled_fixedsize_stack(size)));

    std::printf("allocate + deallocate, ns per stack (best of %d), ratio to arena_stack\n", repetitions);
    std::printf("  %-34s %16s %20s %22s\n", "", "cycle", "cycle, top touched", "256 alive, touched");
    for (row const& r : rows)
        std::printf("  %-34s %9.1f %5.1fx %13.1f %5.1fx %15.1f %5.1fx\n", r.name, r.bare, r.bare / rows[0].bare,
                    r.touched, r.touched / rows[0].touched, r.batched, r.batched / rows[0].batched);

    // For test/perf/collect.py: against the guarded stacks of Boost.Context.
    std::printf("RESULT id=stack.cycle figure=\"stack allocate+free, top touched\" fibers=%.2f anchor=%.2f "
                "anchor_name=\"protected_fixedsize_stack\" unit=ns goal=-\n",
                rows[0].touched, rows[2].touched);
    std::printf("RESULT id=stack.batch figure=\"stack allocate+free, 256 alive\" fibers=%.2f anchor=%.2f "
                "anchor_name=\"protected_fixedsize_stack\" unit=ns goal=-\n",
                rows[0].batched, rows[2].batched);

    std::printf("\nholding many stacks alive, one page touched in each\n");
    std::printf("  %-38s %9s %10s %9s %10s %9s %9s\n", "", "stacks", "alloc ns", "free ns", "RSS MiB", "PTE MiB",
                "mappings");
    {
        fibers::arena_stack a(size);
        hold_result const fresh = hold(a, held);
        print_hold("arena_stack, fresh slots", fresh);
        fibers::detail::flush_thread_stack_cache();
        hold_result best = hold(a, held);
        for (int i = 0; i != 2; ++i) {
            hold_result const r = hold(a, held);
            if (r.alloc_ns < best.alloc_ns)
                best = r;
        }
        print_hold("arena_stack, reused slots (best of 3)", best);
    }
    {
        boost::context::protected_fixedsize_stack a(size);
        hold_result const r = hold(a, 30000);
        print_hold("protected_fixedsize_stack (stop at 30k)", r);
        std::printf("  protected_fixedsize_stack needs 2 mappings per stack: at most ~%zu under vm.max_map_count\n",
                    max_map_count() / 2);
    }
    return 0;
}
