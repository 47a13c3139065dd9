// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// The parts of the library that depend on the processor and its ABI, in one
// program that never starts a second thread: the switch (registers, stack
// alignment, values), the per-fiber copy of the C++ runtime's exception
// state, unwinding, every stack allocator, the hub and what runs on it, and
// the overflow report. It runs in the native suite and, for each
// cross-built architecture, under qemu-user (./build.sh test --arch NAME).
#define BOOST_TEST_MODULE arch
#define BOOST_TEST_NO_MAIN
#define FIBERS_TEST_DEATH_MAIN
#include <boost/test/unit_test.hpp>

#include <fibers/detail/jump.hpp>
#include <fibers/fiber.hpp>
#include <fibers/hub.hpp>
#include <fibers/stack.hpp>
#include <fibers/switch_back.hpp>
#include <fibers/sync.hpp>
#include <fibers/task.hpp>
#include <fibers/yield.hpp>

#include "child_process.hpp"
#include "hub_support.hpp"
#include "socket_support.hpp"

#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/context/fixedsize_stack.hpp>
#include <boost/context/pooled_fixedsize_stack.hpp>
#include <boost/context/protected_fixedsize_stack.hpp>
#include <boost/system/error_code.hpp>

#include <cxxabi.h>

#include <algorithm>
#include <any>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

using fibers::fiber;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace ctx = boost::context;

namespace {

struct first_error : std::runtime_error {
    first_error() : std::runtime_error("first") {}
};
struct second_error : std::runtime_error {
    second_error() : std::runtime_error("second") {}
};

std::any to_parent(std::any value = {}) { return fiber::current().parent().switch_to(std::move(value)); }

// What the C++ runtime keeps for the calling thread, seen through the
// library's copy of its layout.
fibers::detail::exception_state const& runtime_exception_state() {
    return *reinterpret_cast<fibers::detail::exception_state const*>(abi::__cxa_get_globals());
}

// A value of the runtime's caught-exception stack names the exception
// header, which the runtime places just before the thrown object.
bool names_header_of(void const* header, void const* thrown_object) {
    auto const h = reinterpret_cast<std::uintptr_t>(header);
    auto const o = reinterpret_cast<std::uintptr_t>(thrown_object);
    return h != 0 && h < o && o - h <= 256;
}

} // namespace

BOOST_AUTO_TEST_SUITE(switching)

BOOST_AUTO_TEST_CASE(values_travel_both_ways) {
    fiber f([] {
        int total = 0;
        for (int i = 0; i != 100; ++i)
            total += std::any_cast<int>(to_parent(i));
        std::string s = std::any_cast<std::string>(to_parent(total));
        return s + "!";
    });
    BOOST_TEST(std::any_cast<int>(f.switch_to()) == 0);
    for (int i = 1; i != 100; ++i)
        BOOST_TEST(std::any_cast<int>(f.switch_to(i)) == i);
    BOOST_TEST(std::any_cast<int>(f.switch_to(1000)) == 1000 + 99 * 100 / 2);
    BOOST_TEST(std::any_cast<std::string>(f.switch_to(std::string(200, 'x'))) == std::string(200, 'x') + "!");
    BOOST_TEST(!f.is_alive());
}

// Many values live across a switch, in integer and floating-point
// registers: the switch keeps every callee-saved register of the ABI. The
// values are exact in a double, so that x87's wider registers (i386)
// cannot change the sums.
template <class T>
T mix(T seed, fiber& other) {
    T a = seed + 1, b = seed * 3, c = seed - 7, d = seed * seed, e = seed / 2 + 5, f = seed + 11, g = seed * 5 - 1,
      h = seed + 100, i = seed * 7, j = seed - 3;
    other.switch_to();
    return a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f + 7 * g + 8 * h + 9 * i + 10 * j;
}

template <class T>
T mix_expected(T seed) {
    return (seed + 1) + 2 * (seed * 3) + 3 * (seed - 7) + 4 * (seed * seed) + 5 * (seed / 2 + 5) +
           6 * (seed + 11) + 7 * (seed * 5 - 1) + 8 * (seed + 100) + 9 * (seed * 7) + 10 * (seed - 3);
}

BOOST_AUTO_TEST_CASE(registers_survive_switches) {
    fiber root = fiber::current();
    double fiber_double = 0;
    long long fiber_integer = 0;
    fiber f([&] {
        fiber_double = mix(2.5, root);
        fiber_integer = mix(1234567LL, root);
    });
    double const root_double = mix(-1.25, f);
    long long const root_integer = mix(-7654321LL, f);
    f.switch_to();
    BOOST_TEST(!f.is_alive());
    BOOST_TEST(root_double == mix_expected(-1.25));
    BOOST_TEST(root_integer == mix_expected(-7654321LL));
    BOOST_TEST(fiber_double == mix_expected(2.5));
    BOOST_TEST(fiber_integer == mix_expected(1234567LL));
}

BOOST_AUTO_TEST_CASE(stack_is_aligned_for_the_abi) {
    // The compiler relies on the ABI's stack alignment and does not
    // realign for these; a misaligned fiber stack shows here.
    auto aligned = [] {
        alignas(std::max_align_t) unsigned char buffer[sizeof(std::max_align_t)];
        auto const address = reinterpret_cast<std::uintptr_t>(&buffer[0]);
        return address % alignof(std::max_align_t) == 0;
    };
    fiber f([&] {
        bool ok = aligned();
        to_parent();
        ok = ok && aligned();
        // Variadic calls with floating-point values read them from the
        // aligned stack on some ABIs.
        char text[64];
        std::snprintf(text, sizeof text, "%.3f %lld %.1f", 1.5, 42LL, -2.25);
        return ok && std::string(text) == "1.500 42 -2.2";
    });
    f.switch_to();
    BOOST_TEST(std::any_cast<bool>(f.switch_to()));
}

BOOST_AUTO_TEST_CASE(own_switch_where_intended) {
    // The library's own jump is x86-64 ELF and MIPS64 n64 code, and on
    // MIPS64 it also makes the contexts; everywhere else the switch is
    // Boost.Context's make_fcontext and jump_fcontext.
#if defined(__x86_64__) && defined(__ELF__) && !defined(FIBERS_SAVE_FP_CONTROL)
    BOOST_TEST(FIBERS_OWN_JUMP == 1);
    BOOST_TEST(FIBERS_OWN_MAKE == 0);
#elif defined(__mips64) && _MIPS_SIM == _ABI64
    BOOST_TEST(FIBERS_OWN_JUMP == 1);
    BOOST_TEST(FIBERS_OWN_MAKE == 1);
#else
    BOOST_TEST(FIBERS_OWN_JUMP == 0);
    BOOST_TEST(FIBERS_OWN_MAKE == 0);
#endif
}

#if defined(__mips64) && _MIPS_SIM == _ABI64 && defined(__mips_hard_float)
// registers_through_call(fn, arg, in, out): loads s0-s8 from in[0..8] and
// f24-f31 from in[9..16], calls fn(arg), and stores what those registers
// hold when fn returns into out[0..16]. Around that it keeps the ABI itself:
// the caller's s0-s8, gp, ra and f24-f31 are saved in its frame and
// restored. Which registers hold the values is certain only in assembly:
// the compiler may keep a C++ variable in any of them, or in none.
extern "C" void fibers_test_registers_through_call(void (*fn)(void*), void* arg, std::uint64_t const* in,
                                                   std::uint64_t* out);
__asm__(R"(
    .text
    .set    push
    .set    noreorder
    .set    nomacro
    .globl  fibers_test_registers_through_call
    .type   fibers_test_registers_through_call, @function
    .align  3
fibers_test_registers_through_call:
    daddiu  $sp, $sp, -176
    sd      $s0,   0($sp)
    sd      $s1,   8($sp)
    sd      $s2,  16($sp)
    sd      $s3,  24($sp)
    sd      $s4,  32($sp)
    sd      $s5,  40($sp)
    sd      $s6,  48($sp)
    sd      $s7,  56($sp)
    sd      $s8,  64($sp)
    sd      $gp,  72($sp)
    sd      $ra,  80($sp)
    sd      $a3,  88($sp)
    sdc1    $f24,  96($sp)
    sdc1    $f25, 104($sp)
    sdc1    $f26, 112($sp)
    sdc1    $f27, 120($sp)
    sdc1    $f28, 128($sp)
    sdc1    $f29, 136($sp)
    sdc1    $f30, 144($sp)
    sdc1    $f31, 152($sp)
    ld      $s0,   0($a2)
    ld      $s1,   8($a2)
    ld      $s2,  16($a2)
    ld      $s3,  24($a2)
    ld      $s4,  32($a2)
    ld      $s5,  40($a2)
    ld      $s6,  48($a2)
    ld      $s7,  56($a2)
    ld      $s8,  64($a2)
    ldc1    $f24,  72($a2)
    ldc1    $f25,  80($a2)
    ldc1    $f26,  88($a2)
    ldc1    $f27,  96($a2)
    ldc1    $f28, 104($a2)
    ldc1    $f29, 112($a2)
    ldc1    $f30, 120($a2)
    ldc1    $f31, 128($a2)
    move    $t9, $a0
    jalr    $t9
    move    $a0, $a1
    ld      $t0,  88($sp)
    sd      $s0,   0($t0)
    sd      $s1,   8($t0)
    sd      $s2,  16($t0)
    sd      $s3,  24($t0)
    sd      $s4,  32($t0)
    sd      $s5,  40($t0)
    sd      $s6,  48($t0)
    sd      $s7,  56($t0)
    sd      $s8,  64($t0)
    sdc1    $f24,  72($t0)
    sdc1    $f25,  80($t0)
    sdc1    $f26,  88($t0)
    sdc1    $f27,  96($t0)
    sdc1    $f28, 104($t0)
    sdc1    $f29, 112($t0)
    sdc1    $f30, 120($t0)
    sdc1    $f31, 128($t0)
    ld      $s0,   0($sp)
    ld      $s1,   8($sp)
    ld      $s2,  16($sp)
    ld      $s3,  24($sp)
    ld      $s4,  32($sp)
    ld      $s5,  40($sp)
    ld      $s6,  48($sp)
    ld      $s7,  56($sp)
    ld      $s8,  64($sp)
    ld      $gp,  72($sp)
    ld      $ra,  80($sp)
    ldc1    $f24,  96($sp)
    ldc1    $f25, 104($sp)
    ldc1    $f26, 112($sp)
    ldc1    $f27, 120($sp)
    ldc1    $f28, 128($sp)
    ldc1    $f29, 136($sp)
    ldc1    $f30, 144($sp)
    ldc1    $f31, 152($sp)
    jr      $ra
    daddiu  $sp, $sp, 176
    .size   fibers_test_registers_through_call, .-fibers_test_registers_through_call
    .set    pop
)");

constexpr char const* callee_saved_names[17] = {"s0",  "s1",  "s2",  "s3",  "s4",  "s5",  "s6",  "s7",  "s8",
                                                "f24", "f25", "f26", "f27", "f28", "f29", "f30", "f31"};

BOOST_AUTO_TEST_CASE(callee_saved_registers_survive_switches) {
    // Each side puts values of its own in every callee-saved register of
    // the n64 ABI (s0-s8 and, with hard float, f24-f31), switches to the
    // other, which puts in its own, and finds its values again when it is
    // resumed. The floating-point values are distinct doubles, not raw
    // patterns that might be signalling NaNs.
    struct side {
        std::uint64_t in[17];
        std::uint64_t out[17];
    };
    auto fill = [](side& s, std::uint64_t base, double fbase) {
        for (int i = 0; i != 9; ++i)
            s.in[i] = base + 0x0101010101010101ULL * static_cast<std::uint64_t>(i + 1);
        for (int i = 9; i != 17; ++i) {
            double const d = fbase + i;
            std::memcpy(&s.in[i], &d, sizeof d);
        }
        std::fill(std::begin(s.out), std::end(s.out), 0);
    };
    side root_side, fiber_side;
    fill(root_side, 0x1000000000000000ULL, 1.5);
    fill(fiber_side, 0x2000000000000000ULL, -1024.25);

    auto switch_to = [](void* target) { static_cast<fiber*>(target)->switch_to(); };
    fiber root = fiber::current();
    fiber f([&] { fibers_test_registers_through_call(switch_to, &root, fiber_side.in, fiber_side.out); });
    fibers_test_registers_through_call(switch_to, &f, root_side.in, root_side.out);
    f.switch_to(); // the fiber's call returns, and the fiber ends
    BOOST_TEST(!f.is_alive());
    for (int i = 0; i != 17; ++i) {
        BOOST_TEST(root_side.out[i] == root_side.in[i], "root's " << callee_saved_names[i]);
        BOOST_TEST(fiber_side.out[i] == fiber_side.in[i], "the fiber's " << callee_saved_names[i]);
    }
}
#endif

#if FIBERS_OWN_MAKE
BOOST_AUTO_TEST_CASE(a_context_function_that_returns_ends_the_process) {
    // A context function must leave with a jump; the library's own
    // make_context ends the process with a message if it returns instead.
    auto const r = fibers_test::run_in_child([] {
        fibers::arena_stack salloc(64 * 1024);
        ctx::stack_context stack = salloc.allocate();
        auto const c = fibers::detail::make_context(stack.sp, stack.size, [](ctx::detail::transfer_t) {});
        fibers::detail::jump_to(c, nullptr);
        std::fputs("the jump came back\n", stderr);
    });
    BOOST_TEST_INFO("child stderr:\n" << r.stderr_text);
    BOOST_TEST(r.died_abnormally());
    BOOST_TEST(r.stderr_text.find("fibers: fatal: a context function returned") != std::string::npos);
    BOOST_TEST(r.stderr_text.find("came back") == std::string::npos);
}
#endif

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(exceptions)

// A frame with a cleanup (the destructor) and no handler: on ARM EHABI the
// unwinder pushes the exception on the runtime's propagating stack before
// the cleanup runs and pops it after. (A frame that also has the handler
// runs its destructors inside the handler's landing pad, not as a cleanup.)
struct check_during_cleanup {
    bool* checked;
    ~check_during_cleanup() {
        auto const& s = runtime_exception_state();
        BOOST_TEST(s.uncaught == 1u);
        BOOST_TEST(std::uncaught_exceptions() == 1);
#if FIBERS_ARM_EHABI
        BOOST_TEST(s.propagating != nullptr);
#endif
        *checked = true;
    }
};

[[gnu::noinline]] void throw_through_cleanup(bool* checked) {
    check_during_cleanup probe{checked};
    throw first_error();
}

BOOST_AUTO_TEST_CASE(exception_state_layout_matches_the_runtime) {
    auto const& state = runtime_exception_state();
    BOOST_TEST(state.caught == nullptr);
    BOOST_TEST(state.uncaught == 0u);
    try {
        throw first_error();
    } catch (first_error& outer) {
        BOOST_TEST(names_header_of(state.caught, &outer));
        void const* const outer_header = state.caught;
        try {
            throw second_error();
        } catch (second_error& inner) {
            BOOST_TEST(names_header_of(state.caught, &inner));
            BOOST_TEST(state.caught != outer_header);
        }
        BOOST_TEST(state.caught == outer_header);
    }
    BOOST_TEST(state.caught == nullptr);

    // Counted from the throw to the handler; on ARM EHABI the exception is
    // also on the propagating stack while a cleanup runs.
    bool checked = false;
    try {
        throw_through_cleanup(&checked);
    } catch (first_error const&) {
        BOOST_TEST(state.uncaught == 0u);
#if FIBERS_ARM_EHABI
        BOOST_TEST(state.propagating == nullptr);
#endif
    }
    BOOST_TEST(checked);
}

BOOST_AUTO_TEST_CASE(throw_to_a_suspended_fiber) {
    fiber f([]() -> std::string {
        try {
            to_parent();
        } catch (first_error const& e) {
            // Caught, and still rethrowable after a switch.
            to_parent(std::string("caught"));
            try {
                throw;
            } catch (first_error const&) {
                return "rethrown";
            }
        }
        return "nothing";
    });
    f.switch_to();
    BOOST_TEST(std::any_cast<std::string>(f.throw_to(first_error())) == "caught");
    BOOST_TEST(!std::current_exception());
    BOOST_TEST(std::any_cast<std::string>(f.switch_to()) == "rethrown");
    BOOST_TEST(!f.is_alive());

    // Uncaught in the fiber, it ends it and reaches the parent.
    fiber g([] { to_parent(); });
    g.switch_to();
    BOOST_CHECK_THROW(g.throw_to(second_error()), second_error);
    BOOST_TEST(!g.is_alive());
}

BOOST_AUTO_TEST_CASE(exceptions_held_in_catch_blocks_are_per_fiber) {
    std::vector<std::string> seen;
    fiber other([&] {
        BOOST_TEST(!std::current_exception());
        BOOST_TEST(std::uncaught_exceptions() == 0);
        try {
            throw second_error();
        } catch (second_error const&) {
            to_parent();
            BOOST_TEST(std::uncaught_exceptions() == 0);
            try {
                throw first_error();
            } catch (first_error const&) {
                to_parent();
            }
            try {
                std::rethrow_exception(std::current_exception());
            } catch (std::exception const& e) {
                seen.push_back(std::string("other: ") + e.what());
            }
        }
        BOOST_TEST(!std::current_exception());
    });
    try {
        throw first_error();
    } catch (first_error const&) {
        other.switch_to();
        BOOST_TEST(std::uncaught_exceptions() == 0);
        try {
            throw;
        } catch (std::exception const& e) {
            seen.push_back(std::string("root: ") + e.what());
        }
        other.switch_to();
        try {
            std::rethrow_exception(std::current_exception());
        } catch (std::exception const& e) {
            seen.push_back(std::string("root: ") + e.what());
        }
    }
    BOOST_TEST(!std::current_exception());
    other.switch_to();
    BOOST_TEST(!other.is_alive());
    BOOST_TEST(seen == (std::vector<std::string>{"root: first", "root: first", "other: second"}));
}

// Two exceptions unwind at the same time, one per fiber: each fiber's
// cleanup switches to the other in the middle of its unwinding. On ARM
// EHABI each cleanup also pushes the exception on the runtime's
// propagating stack, and pops it when the cleanup ends; were that stack
// shared, a fiber would go on unwinding with the other fiber's exception.
struct switch_while_unwinding {
    fiber* to;
    int* uncaught_seen;
    ~switch_while_unwinding() {
        *uncaught_seen = std::uncaught_exceptions();
        to->switch_to();
        BOOST_TEST(std::uncaught_exceptions() == 1);
    }
};

template <class Error>
[[gnu::noinline]] void throw_through_switch(fiber* to, int* uncaught_seen) {
    switch_while_unwinding guard{to, uncaught_seen};
    throw Error();
}

BOOST_AUTO_TEST_CASE(exceptions_in_flight_are_per_fiber) {
    fiber root = fiber::current();
    fiber a, b;
    int a_uncaught = -1, b_uncaught = -1, b_before_throw = -1;
    std::vector<std::string> caught;
    a = fiber([&] {
        try {
            throw_through_switch<first_error>(&b, &a_uncaught);
        } catch (std::exception const& e) {
            caught.push_back(std::string("a: ") + e.what());
        }
        BOOST_TEST(std::uncaught_exceptions() == 0);
        b.switch_to();
    });
    b = fiber([&] {
        b_before_throw = std::uncaught_exceptions();
        try {
            throw_through_switch<second_error>(&a, &b_uncaught);
        } catch (std::exception const& e) {
            caught.push_back(std::string("b: ") + e.what());
        }
        BOOST_TEST(std::uncaught_exceptions() == 0);
        root.switch_to();
    });
    a.switch_to();
    BOOST_TEST(a_uncaught == 1);
    BOOST_TEST(b_before_throw == 0); // a's exception is not b's
    BOOST_TEST(b_uncaught == 1);
    BOOST_TEST(caught == (std::vector<std::string>{"a: first", "b: second"}));
    BOOST_TEST(std::uncaught_exceptions() == 0);
    BOOST_TEST(!std::current_exception());
}

BOOST_AUTO_TEST_CASE(dropped_suspended_fiber_is_unwound) {
    bool destroyed = false;
    struct flag_on_destruction {
        bool* flag;
        ~flag_on_destruction() { *flag = true; }
    };
    fiber root = fiber::current();
    try {
        throw first_error();
    } catch (first_error const&) {
        {
            fiber f([&] {
                flag_on_destruction guard{&destroyed};
                try {
                    throw second_error();
                } catch (second_error const&) {
                    fiber(root).switch_to(); // suspended inside a catch block
                }
            });
            f.switch_to();
            BOOST_TEST(!destroyed);
        } // the last handle: the fiber is unwound here
        BOOST_TEST(destroyed);
        // The root's own caught exception is untouched.
        BOOST_CHECK_THROW(throw, first_error);
        BOOST_TEST(std::uncaught_exceptions() == 0);
    }
    BOOST_TEST(!std::current_exception());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(stacks)

// Uses about `bytes` of the stack it runs on, then switches out from the
// deepest frame and back.
int descend(std::size_t bytes, fiber& out) {
    volatile char frame[1024];
    frame[0] = static_cast<char>(bytes & 0x7f);
    if (bytes <= sizeof frame) {
        out.switch_to();
        return frame[0];
    }
    return descend(bytes - sizeof frame, out) + frame[0];
}

template <class StackAllocator>
void exercise(StackAllocator salloc, std::size_t usable) {
    fiber root = fiber::current();
    fiber f(std::allocator_arg, salloc, [&root, usable]() -> int {
        int const value = std::any_cast<int>(to_parent(std::string("started")));
        try {
            throw first_error();
        } catch (first_error const&) {
            to_parent();
        }
        return value + descend(usable / 2, root);
    });
    BOOST_TEST(std::any_cast<std::string>(f.switch_to()) == "started");
    f.switch_to(40);    // into the catch block
    f.switch_to();      // down half the stack, and out
    std::any result = f.switch_to();
    BOOST_TEST(!f.is_alive());
    BOOST_TEST(std::any_cast<int>(result) >= 40);
}

BOOST_AUTO_TEST_CASE(arena_stack_default_and_minimum) {
    exercise(fibers::arena_stack(), fibers::arena_stack::default_size());
    exercise(fibers::arena_stack(fibers::arena_stack::minimum_size()), fibers::arena_stack::minimum_size());
}

BOOST_AUTO_TEST_CASE(boost_fixedsize_stack) { exercise(ctx::fixedsize_stack(64 * 1024), 64 * 1024); }

BOOST_AUTO_TEST_CASE(boost_protected_fixedsize_stack) {
    exercise(ctx::protected_fixedsize_stack(64 * 1024), 64 * 1024);
}

BOOST_AUTO_TEST_CASE(boost_pooled_fixedsize_stack) {
    ctx::pooled_fixedsize_stack pool(64 * 1024);
    exercise(pool, 64 * 1024);
    exercise(pool, 64 * 1024);
}

int overflow_down(int n) {
    volatile char frame[512];
    frame[0] = static_cast<char>(n);
    if (n < 0) // never: keeps the compiler from seeing an endless recursion
        return 0;
    return overflow_down(n + 1) + frame[0];
}

// In a child: writes the fiber's name on the first line of stderr, then
// overflows its stack.
template <class StackAllocator>
fibers_test::child_result overflow_in_child(StackAllocator salloc) {
    return fibers_test::run_in_child([salloc] {
        fiber f(std::allocator_arg, salloc, [] { return overflow_down(0); });
        std::ostringstream name;
        name << f << '\n';
        std::fputs(name.str().c_str(), stderr);
        std::fflush(stderr);
        f.switch_to();
    });
}

void check_overflow_report(fibers_test::child_result const& r) {
    BOOST_TEST_INFO("child stderr:\n" << r.stderr_text);
    // Killed by the fault, or, under ThreadSanitizer, ended by its handler
    // after ours reported.
    BOOST_TEST(r.died_abnormally());
    std::string const name = r.stderr_text.substr(0, r.stderr_text.find('\n'));
    BOOST_TEST(name.rfind("fiber 0x", 0) == 0u);
    BOOST_TEST(r.stderr_text.find("fibers: stack overflow in fiber \"" + name + "\" (stack ") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(overflow_is_reported_by_name) {
#if FIBERS_ASAN
    // AddressSanitizer takes the overflow's SIGSEGV for its own report and
    // exits: the library's report is checked in the other builds.
    BOOST_TEST_MESSAGE("under AddressSanitizer the overflow is its report: not run");
    return;
#endif
    check_overflow_report(overflow_in_child(fibers::arena_stack(64 * 1024)));
    check_overflow_report(overflow_in_child(ctx::protected_fixedsize_stack(64 * 1024)));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(hub)

// Each case runs its tasks on the thread's one hub and joins them all.

BOOST_AUTO_TEST_CASE(tasks_sleep_and_take_turns) {
    // Sleepers wake in deadline order, none before its deadline. The
    // deadlines lie far apart, so that no delay between the two starts can
    // swap them.
    using clock = std::chrono::steady_clock;
    struct wake {
        std::string name;
        clock::time_point deadline;
        clock::time_point woke;
    };
    std::vector<wake> wakes;
    auto sleeper = [&](std::string name, std::chrono::milliseconds d) {
        return [&wakes, name, d] {
            auto const deadline = clock::now() + d;
            fibers::sleep(d);
            wakes.push_back({name, deadline, clock::now()});
        };
    };
    fibers::task slow = fibers::spawn(sleeper("slow", 1000ms));
    fibers::task fast = fibers::spawn(sleeper("fast", 10ms));
    // sleep(0s) puts the caller behind the work queued: two tasks alternate.
    fibers_test::event_log turns;
    auto take_turns = [&](std::string name) {
        for (int i = 0; i != 3; ++i) {
            turns(name);
            fibers::sleep(0s);
        }
    };
    fibers::task a = fibers::spawn([&] { take_turns("a"); });
    fibers::task b = fibers::spawn([&] { take_turns("b"); });
    for (fibers::task* t : {&slow, &fast, &a, &b})
        t->join();
    BOOST_TEST_REQUIRE(wakes.size() == 2u);
    BOOST_TEST(wakes[0].name == "fast");
    for (wake const& w : wakes)
        BOOST_TEST((w.woke >= w.deadline), w.name);
    BOOST_TEST(turns.events == (std::vector<std::string>{"a", "b", "a", "b", "a", "b"}));
}

BOOST_AUTO_TEST_CASE(timers_and_switch_back) {
    auto& hub = fibers::get_hub();
    fibers::task t = fibers::spawn([&] {
        fibers_test::backstop backstop;
        asio::steady_timer timer(hub.loop(), 5ms);
        fibers::switch_back<boost::system::error_code> sb;
        timer.async_wait(sb);
        auto [ec] = sb.wait();
        BOOST_TEST(!ec);

        timer.expires_after(5ms);
        timer.async_wait(fibers::yield);

        fibers::switch_back<int, std::string> by_callback;
        hub.run_callback([c = by_callback] { c(7, "seven"); });
        auto [n, s] = by_callback.wait();
        BOOST_TEST(n == 7);
        BOOST_TEST(s == "seven");

        fibers::switch_back<> thrown;
        hub.run_callback([c = thrown] { c.throw_to(std::make_exception_ptr(first_error())); });
        BOOST_CHECK_THROW(thrown.wait(), first_error);

        fibers::switch_back<> timed_out(5ms);
        BOOST_CHECK_THROW(timed_out.wait(), fibers::timeout);
    });
    t.join();
    BOOST_TEST(!t.alive());
}

BOOST_AUTO_TEST_CASE(sync_primitives_between_tasks) {
    fibers::mutex mutex;
    fibers::condition ready(mutex);
    fibers::event go;
    fibers::queue<int> items(2);
    int shared = 0;
    std::vector<int> received;

    fibers::task producer = fibers::spawn([&] {
        go.wait();
        for (int i = 1; i <= 5; ++i)
            items.put(i); // blocks while the queue is full
        items.put(0);
    });
    fibers::task consumer = fibers::spawn([&] {
        for (int v; (v = items.get()) != 0;)
            received.push_back(v);
        std::lock_guard<fibers::mutex> lock(mutex);
        shared = 1;
        ready.notify();
    });
    fibers::task holder = fibers::spawn([&] {
        std::lock_guard<fibers::mutex> lock(mutex);
        go.set();
        fibers::sleep(5ms); // the others run, and queue on the mutex
        BOOST_TEST(shared == 0);
    });
    bool watched = false;
    fibers::task watcher = fibers::spawn([&] {
        std::lock_guard<fibers::mutex> lock(mutex);
        watched = ready.wait_for([&] { return shared == 1; });
    });
    for (fibers::task* t : {&producer, &consumer, &holder, &watcher})
        t->join();
    BOOST_TEST(watched);
    BOOST_TEST(received == (std::vector<int>{1, 2, 3, 4, 5}));
}

BOOST_AUTO_TEST_CASE(yield_on_loopback_sockets) {
    auto sockets = fibers_test::connected_pair(fibers::get_hub().loop());
    auto& client = sockets.first;
    auto& server = sockets.second;
    // More than loopback's default socket buffers: the writer waits for
    // the reader.
    std::string const sent = [] {
        std::string s(4 << 20, '\0');
        for (std::size_t i = 0; i != s.size(); ++i)
            s[i] = static_cast<char>('a' + i * 7 % 26);
        return s;
    }();
    std::string received(sent.size(), '\0');
    fibers::task writer = fibers::spawn([&] {
        BOOST_TEST(asio::async_write(client, asio::buffer(sent), fibers::yield) == sent.size());
        client.shutdown(asio::ip::tcp::socket::shutdown_send);
    });
    fibers::task reader = fibers::spawn([&] {
        BOOST_TEST(asio::async_read(server, asio::buffer(received), fibers::yield) == received.size());
        boost::system::error_code ec;
        char extra;
        server.async_read_some(asio::buffer(&extra, 1), fibers::yield[ec]);
        BOOST_TEST((ec == asio::error::eof));
    });
    writer.join();
    reader.join();
    BOOST_TEST((received == sent));
}

BOOST_AUTO_TEST_SUITE_END()
