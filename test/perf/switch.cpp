// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// The round trip of a switch (there and back) with fibers::fiber::switch_to,
// beside raw jump_fcontext and boost::context::fiber::resume measured in the
// same run. The machine is shared and noisy: the variants are interleaved
// and each keeps its best repetition; compare ratios, not nanoseconds.
//
// A switch resumes with an indirect jump, and on some CPUs what that jump
// costs depends on where its two alternating targets happen to sit in the
// code: the very same raw jump_fcontext loop took 8 ns at some placements
// and 117 ns at others on one of ours. That measures the code layout, not a
// library, so every variant is built at a grid of placements of both of its
// ends and reports its best. The state each variant switches through is on
// the heap for a similar reason: a stack slot reloaded right after the
// stack pointer moves can mislead a CPU's stack-memory predictor.

#include <fibers/fiber.hpp>

#include <boost/context/detail/fcontext.hpp>
#include <boost/context/fiber.hpp>
#include <boost/context/fixedsize_stack.hpp>

#include <algorithm>
#include <any>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "interleaved.hpp"

namespace {

namespace ctx = boost::context::detail;
using clock_type = std::chrono::steady_clock;

double nanoseconds_since(clock_type::time_point start, long round_trips) {
    std::chrono::duration<double, std::nano> elapsed = clock_type::now() - start;
    return elapsed.count() / static_cast<double>(round_trips);
}

constexpr long bounce_forever = -1;

// Starts the code that follows `Pad` bytes past a 64-byte boundary.
#define FIBERS_PLACE_AT(Pad) asm volatile(".p2align 6\n\t.fill %c0, 1, 0x90" ::"i"(Pad))

// ---- raw jump_fcontext
struct raw_state {
    ctx::fcontext_t other = nullptr;
};

template <int Here, int There>
__attribute__((noinline)) double raw_ends(raw_state* s, ctx::transfer_t t, long round_trips) {
    if (round_trips == bounce_forever) {
        FIBERS_PLACE_AT(There);
        for (;;)
            t = ctx::jump_fcontext(t.fctx, nullptr);
    }
    auto start = clock_type::now();
    FIBERS_PLACE_AT(Here);
    for (long i = 0; i < round_trips; ++i)
        s->other = ctx::jump_fcontext(s->other, nullptr).fctx;
    return nanoseconds_since(start, round_trips);
}

template <int Here, int There>
struct raw_variant {
    boost::context::fixedsize_stack salloc{64 * 1024};
    boost::context::stack_context stack = salloc.allocate();
    raw_state state;
    raw_variant() {
        state.other = ctx::make_fcontext(stack.sp, stack.size, [](ctx::transfer_t t) {
            raw_ends<Here, There>(nullptr, t, bounce_forever);
        });
    }
    ~raw_variant() { salloc.deallocate(stack); } // the bouncing end never returns: nothing to unwind
    double measure(long n) { return raw_ends<Here, There>(&state, {}, n); }
};

// ---- boost::context::fiber
struct boost_state {
    boost::context::fiber other;
};

template <int Here, int There>
__attribute__((noinline)) boost::context::fiber boost_ends(boost_state* s, boost::context::fiber&& back,
                                                           long round_trips, double* ns) {
    if (round_trips == bounce_forever) {
        FIBERS_PLACE_AT(There);
        for (;;)
            back = std::move(back).resume();
        return std::move(back);
    }
    auto start = clock_type::now();
    FIBERS_PLACE_AT(Here);
    for (long i = 0; i < round_trips; ++i)
        s->other = std::move(s->other).resume();
    *ns = nanoseconds_since(start, round_trips);
    return {};
}

template <int Here, int There>
struct boost_variant {
    boost_state state{boost::context::fiber(std::allocator_arg, boost::context::fixedsize_stack(64 * 1024),
                                            [](boost::context::fiber&& back) {
                                                return boost_ends<Here, There>(nullptr, std::move(back),
                                                                               bounce_forever, nullptr);
                                            })};
    double measure(long n) {
        double ns = 0;
        boost_ends<Here, There>(&state, {}, n, &ns);
        return ns;
    }
};

// ---- fibers::fiber, no value and an int each way
struct fibers_state {
    fibers::fiber root;
    fibers::fiber other;
    long sum = 0;
};

template <bool WithValue, int Here, int There>
__attribute__((noinline)) double fibers_ends(fibers_state* s, long round_trips) {
    if (round_trips == bounce_forever) {
        std::any v;
        FIBERS_PLACE_AT(There);
        for (;;) {
            if (WithValue)
                v = s->root.switch_to(std::move(v));
            else
                s->root.switch_to();
        }
    }
    auto start = clock_type::now();
    s->sum = 0;
    FIBERS_PLACE_AT(Here);
    for (long i = 0; i < round_trips; ++i) {
        if (WithValue)
            s->sum += std::any_cast<int>(s->other.switch_to(1));
        else
            s->other.switch_to();
    }
    double ns = nanoseconds_since(start, round_trips);
    if (WithValue && s->sum != round_trips)
        std::abort();
    return ns;
}

template <bool WithValue, int Here, int There>
struct fibers_variant {
    std::unique_ptr<fibers_state> state = std::make_unique<fibers_state>();
    fibers_variant() {
        state->root = fibers::fiber::current();
        state->other = fibers::fiber([s = state.get()] { fibers_ends<WithValue, Here, There>(s, bounce_forever); });
        state->other.switch_to(); // started: the first switch carries no value
    }
    double measure(long n) { return fibers_ends<WithValue, Here, There>(state.get(), n); }
};
template <int Here, int There>
using fibers_no_value = fibers_variant<false, Here, There>;
template <int Here, int There>
using fibers_int_value = fibers_variant<true, Here, There>;

// The best of `repetitions` at one placement of both ends.
template <class Variant>
double best_of(long round_trips, int repetitions) {
    auto variant = std::make_unique<Variant>();
    variant->measure(round_trips / 10); // warm up: stacks touched, caches and predictors trained
    double best = std::numeric_limits<double>::max();
    for (int rep = 0; rep < repetitions; ++rep)
        best = std::min(best, variant->measure(round_trips));
    return best;
}

constexpr int placements = 4; // per end: 0, 16, 32 and 48 bytes into a 64-byte block

template <template <int, int> class Variant, int... Layouts>
double best_layout(long round_trips, int repetitions, std::integer_sequence<int, Layouts...>) {
    return std::min({best_of<Variant<(Layouts / placements) * 16, (Layouts % placements) * 16>>(
        round_trips, repetitions)...});
}

template <template <int, int> class Variant>
double measure_variant(long round_trips, int repetitions) {
    return best_layout<Variant>(round_trips, repetitions,
                                std::make_integer_sequence<int, placements * placements>{});
}

} // namespace

int main(int argc, char** argv) {
    auto const [round_trips, repetitions] = fibers_perf::parse_size_arguments(argc, argv, 200000, 5, "ROUND_TRIPS");

    struct row {
        char const* name;
        double (*measure)(long, int);
        double best;
    };
    std::vector<row> rows{
        {"raw jump_fcontext", &measure_variant<raw_variant>, 0},
        {"boost::context::fiber::resume", &measure_variant<boost_variant>, 0},
        {"fibers::fiber::switch_to()", &measure_variant<fibers_no_value>, 0},
        {"fibers::fiber::switch_to(int)", &measure_variant<fibers_int_value>, 0},
    };
    for (auto& r : rows)
        r.best = r.measure(round_trips, repetitions);

    double const anchor = rows.front().best;
    std::printf("switch round trip (there and back): best of %d x %ld at each of %d code placements\n",
                repetitions, round_trips, placements * placements);
    std::printf("%-32s %10s %16s\n", "", "ns", "x jump_fcontext");
    for (auto const& r : rows)
        std::printf("%-32s %10.2f %16.2f\n", r.name, r.best, r.best / anchor);
    // For test/perf/collect.py.
    std::printf("RESULT id=switch.switch_to figure=\"switch round trip, switch_to()\" fibers=%.2f anchor=%.2f "
                "anchor_name=\"raw jump_fcontext\" unit=ns goal=-\n",
                rows[2].best, rows[0].best);
    std::printf("RESULT id=switch.switch_to_boost figure=\"switch round trip, switch_to()\" fibers=%.2f anchor=%.2f "
                "anchor_name=\"boost::context::fiber\" unit=ns goal=-\n",
                rows[2].best, rows[1].best);
    std::printf("RESULT id=switch.switch_to_int figure=\"switch round trip, switch_to(int)\" fibers=%.2f "
                "anchor=%.2f anchor_name=\"raw jump_fcontext\" unit=ns goal=-\n",
                rows[3].best, rows[0].best);
    return 0;
}
