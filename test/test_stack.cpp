// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

#define BOOST_TEST_MODULE stack
#include <boost/test/unit_test.hpp>

#include <fibers/detail/jump.hpp>
#include <fibers/stack.hpp>
#include "stack_overflow.hpp" // src/: the library's own, tested here

#include <boost/context/protected_fixedsize_stack.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#if FIBERS_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace ctx = boost::context;
namespace fd = fibers::detail;

namespace {

// ---------------------------------------------------------------------------
// Process helpers.

std::size_t page() { return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)); }

char* low_of(ctx::stack_context const& s) { return static_cast<char*>(s.sp) - s.size; }

// The SIGSEGV disposition before Boost.Test replaced it: a sanitizer's
// handler or the default action. Death-test children restore it, so that
// our handler sees what it would see in an application.
struct sigaction original_segv;
bool const original_segv_saved = ::sigaction(SIGSEGV, nullptr, &original_segv) == 0;

void restore_original_segv() {
    BOOST_TEST_REQUIRE(original_segv_saved);
    ::sigaction(SIGSEGV, &original_segv, nullptr);
}

struct child_result {
    int status = 0;
    std::string err; // the child's stderr
};

std::string read_all(int fd) {
    std::string out;
    char buf[4096];
    for (;;) {
        ssize_t const n = ::read(fd, buf, sizeof buf);
        if (n > 0)
            out.append(buf, static_cast<std::size_t>(n));
        else if (n == 0 || errno != EINTR)
            return out;
    }
}

child_result wait_child(pid_t pid, int err_fd) {
    child_result r;
    r.err = read_all(err_fd);
    ::close(err_fd);
    while (::waitpid(pid, &r.status, 0) < 0 && errno == EINTR) {
    }
    return r;
}

// Runs f in a forked child whose stderr is captured. The child never
// returns into Boost.Test: it leaves with _exit(0) after f, or _exit(99)
// if f throws.
template <class F>
child_result run_in_child(F f) {
    int fds[2];
    BOOST_TEST_REQUIRE(::pipe(fds) == 0);
    std::fflush(nullptr);
    pid_t const pid = ::fork();
    BOOST_TEST_REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(fds[0]);
        ::dup2(fds[1], STDERR_FILENO);
        ::close(fds[1]);
        // A handler that keeps re-entering must fail the test, not hang it.
        ::alarm(30);
        try {
            f();
        } catch (...) {
            ::_exit(99);
        }
        ::_exit(0);
    }
    ::close(fds[1]);
    return wait_child(pid, fds[0]);
}

std::vector<std::string> lines_from_us(std::string const& err) {
    std::vector<std::string> out;
    std::istringstream in(err);
    for (std::string line; std::getline(in, line);)
        if (line.rfind("fibers: ", 0) == 0)
            out.push_back(line);
    return out;
}

// What a death by an unhandled fault looks like: the default action, or
// under a sanitizer the exit after its own report.
bool died_of_segv(int status) {
#if FIBERS_SANITIZED
    return WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0);
#else
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV;
#endif
}

std::string hex(void const* p) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(reinterpret_cast<std::uintptr_t>(p)));
    return buf;
}

// ---------------------------------------------------------------------------
// /proc helpers.

struct mapping {
    std::uintptr_t start;
    std::uintptr_t end;
    std::string perms;
};

std::vector<mapping> read_maps() {
    std::vector<mapping> out;
    std::ifstream in("/proc/self/maps");
    for (std::string line; std::getline(in, line);) {
        mapping m;
        char perms[8] = {};
        unsigned long s = 0, e = 0;
        if (std::sscanf(line.c_str(), "%lx-%lx %7s", &s, &e, perms) == 3) {
            m.start = s;
            m.end = e;
            m.perms = perms;
            out.push_back(m);
        }
    }
    // The kernel lists mappings in address order; qemu-user, which makes
    // up the file for its guest, not always.
    std::sort(out.begin(), out.end(), [](mapping const& a, mapping const& b) { return a.start < b.start; });
    return out;
}

std::size_t count_mappings() { return read_maps().size(); }

// The kernel's VmFlags of the mapping holding addr, e.g. "rd wr mr mw me nr nh".
std::string vm_flags_at(void const* addr) {
    auto const a = reinterpret_cast<std::uintptr_t>(addr);
    std::ifstream in("/proc/self/smaps");
    bool inside = false;
    for (std::string line; std::getline(in, line);) {
        unsigned long s = 0, e = 0;
        if (std::sscanf(line.c_str(), "%lx-%lx ", &s, &e) == 2 && line.find('-') < line.find(' '))
            inside = a >= s && a < e;
        else if (inside && line.rfind("VmFlags:", 0) == 0)
            return line.substr(8) + " ";
    }
    return "";
}

// Whether the kernel refuses to read the byte at p for a system call, as
// for a guard page. Not from /proc/self/maps: qemu-user, which makes that
// file up for its guest, shows a 32-bit guest's PROT_NONE page next to
// unmapped space as unmapped.
bool unreadable(void const* p) {
    static int fds[2] = {-1, -1};
    if (fds[0] < 0)
        BOOST_TEST_REQUIRE(::pipe(fds) == 0);
    if (::write(fds[1], p, 1) == 1) {
        char byte;
        BOOST_TEST_REQUIRE(::read(fds[0], &byte, 1) == 1);
        return false;
    }
    return errno == EFAULT;
}

// qemu-user answers 0 to madvise advice it does not pass on to the kernel,
// MADV_NOHUGEPAGE among them; advice that no kernel knows tells.
bool madvise_reaches_the_kernel() {
    void* const p = ::mmap(nullptr, page(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    BOOST_TEST_REQUIRE(p != MAP_FAILED);
    int const r = ::madvise(p, page(), 0x7ffe);
    ::munmap(p, page());
    return r != 0;
}

std::string perms_at(std::vector<mapping> const& maps, void const* addr) {
    auto const a = reinterpret_cast<std::uintptr_t>(addr);
    auto it = std::upper_bound(maps.begin(), maps.end(), a,
                               [](std::uintptr_t v, mapping const& m) { return v < m.start; });
    if (it == maps.begin())
        return "unmapped";
    --it;
    return a < it->end ? it->perms : "unmapped";
}

// How many pages of [p, p + n) are in memory, asked of the kernel with
// mincore(2), which faults nothing in. Neither a read nor /proc's RSS will
// do after a release: a read of a released page maps the shared zero page,
// which mincore reports as resident and some kernels count in RSS.
std::size_t resident_pages(char const* p, std::size_t n) {
    std::vector<unsigned char> in_core((n + page() - 1) / page());
    BOOST_TEST_REQUIRE(::mincore(const_cast<char*>(p), n, in_core.data()) == 0);
    return static_cast<std::size_t>(
        std::count_if(in_core.begin(), in_core.end(), [](unsigned char v) { return (v & 1) != 0; }));
}

// ---------------------------------------------------------------------------
// Running code on a stack with the library's raw switch, detail::make_context
// and detail::jump_to (Boost.Context's make_fcontext and jump_fcontext,
// except where the library has its own).

struct trampoline {
    void (*fn)(void*);
    void* arg;
#if FIBERS_ASAN
    void const* caller_bottom;
    std::size_t caller_size;
#endif
};

void trampoline_entry(ctx::detail::transfer_t t) {
    auto* tr = static_cast<trampoline*>(t.data);
#if FIBERS_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &tr->caller_bottom, &tr->caller_size);
#endif
    tr->fn(tr->arg);
#if FIBERS_ASAN
    __sanitizer_start_switch_fiber(nullptr, tr->caller_bottom, tr->caller_size);
#endif
    fibers::detail::jump_to(t.fctx, nullptr);
}

// Runs f to completion on the stack; f must not throw.
template <class F>
void run_on_stack(ctx::stack_context const& s, F f) {
    trampoline tr{};
    tr.fn = [](void* p) { (*static_cast<F*>(p))(); };
    tr.arg = &f;
    ctx::detail::fcontext_t const c = fibers::detail::make_context(s.sp, s.size, &trampoline_entry);
#if FIBERS_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, low_of(s), s.size);
#endif
    fibers::detail::jump_to(c, &tr);
#if FIBERS_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

// Recursion the compiler can neither bound nor turn into a loop.
volatile std::size_t recursion_limit = ~std::size_t(0);

FIBERS_NOINLINE std::size_t recurse(std::size_t depth) {
    volatile char frame[256];
    frame[0] = static_cast<char>(depth);
    frame[sizeof frame - 1] = static_cast<char>(depth >> 8);
    if (depth == recursion_limit)
        return 0;
    std::size_t const r = recurse(depth + 1);
    return r + static_cast<std::size_t>(frame[0] + frame[sizeof frame - 1]);
}

// The describer used by the death tests: one fiber, set up by the test.
fd::running_fiber_info current_fiber;
std::atomic<bool> fiber_running{false};

bool describe_current(fd::running_fiber_info& info) noexcept {
    if (!fiber_running.load(std::memory_order_relaxed))
        return false;
    info = current_fiber;
    return true;
}

void set_current_fiber(char const* name, ctx::stack_context const& s) {
    std::memset(&current_fiber, 0, sizeof current_fiber);
    std::strncpy(current_fiber.name, name, sizeof current_fiber.name - 1);
    current_fiber.stack_low = low_of(s);
    current_fiber.stack_high = s.sp;
    fiber_running.store(true);
}

// In a child: our handler in front of the original disposition, then an
// unbounded recursion on the stack. Never returns normally. The describer
// names the fiber and reports the bounds of `described`, by default s.
void overflow_on(ctx::stack_context const& s, char const* name, ctx::stack_context const* described = nullptr) {
    restore_original_segv();
    fd::install_overflow_handler_for_this_thread();
    fd::set_running_fiber_describer(&describe_current);
    if (name != nullptr)
        set_current_fiber(name, described != nullptr ? *described : s);
    run_on_stack(s, [] { recurse(0); });
}

void check_overflow_report(child_result const& r, std::string const& expected) {
    BOOST_TEST_INFO("child stderr:\n" << r.err);
    BOOST_TEST(died_of_segv(r.status));
    std::vector<std::string> const ours = lines_from_us(r.err);
    BOOST_TEST_REQUIRE(ours.size() == 1u);
    BOOST_TEST(ours[0] == expected);
}

std::string expected_line(std::string const& who, void const* low, void const* high) {
    return "fibers: stack overflow in " + who + " (stack " + hex(low) + "-" + hex(high) + ", " +
           std::to_string(static_cast<char const*>(high) - static_cast<char const*>(low)) + " bytes); aborting";
}

// A child touches one byte and reports the fault, if any, through its exit
// status: 0 no fault, 10 expected si_addr and si_code, 11 something else.
volatile std::uintptr_t expected_fault_addr = 0;
volatile int expected_fault_code = 0;

void report_fault(int, siginfo_t* info, void*) {
    bool const ok = reinterpret_cast<std::uintptr_t>(info->si_addr) == expected_fault_addr &&
                    info->si_code == expected_fault_code;
    ::_exit(ok ? 10 : 11);
}

int touch_in_child(void* addr, int code) {
    child_result const r = run_in_child([=] {
        expected_fault_addr = reinterpret_cast<std::uintptr_t>(addr);
        expected_fault_code = code;
        struct sigaction sa;
        std::memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = &report_fault;
        sa.sa_flags = SA_SIGINFO;
        ::sigaction(SIGSEGV, &sa, nullptr);
        *static_cast<char volatile*>(addr) = 1;
    });
    BOOST_TEST_INFO("child stderr:\n" << r.err);
    BOOST_TEST_REQUIRE(WIFEXITED(r.status));
    return WEXITSTATUS(r.status);
}

int guard_fault_code() {
    return fd::stack_guard_mode() == fd::stack_guard_kind::marker ? SEGV_MAPERR : SEGV_ACCERR;
}

bool reads_zero(char const* p, std::size_t n) {
    for (std::size_t i = 0; i < n; i += page())
        if (static_cast<char const volatile*>(p)[i] != 0)
            return false;
    return static_cast<char const volatile*>(p)[n - 1] == 0;
}

} // namespace

// ---------------------------------------------------------------------------
// Sizes.

BOOST_AUTO_TEST_CASE(sizes_round_up_to_pages_and_minimum) {
    std::size_t const pg = page();
    BOOST_TEST(fibers::arena_stack().size() == fibers::arena_stack::default_size());
#if FIBERS_SANITIZED
    BOOST_TEST(fibers::arena_stack::default_size() == 1024u * 1024u);
#else
    BOOST_TEST(fibers::arena_stack::default_size() == 256u * 1024u);
#endif
    BOOST_TEST(fibers::arena_stack(0).size() == fibers::arena_stack::minimum_size());
    BOOST_TEST(fibers::arena_stack(1).size() == fibers::arena_stack::minimum_size());
    BOOST_TEST(fibers::arena_stack(fibers::arena_stack::minimum_size() + 1).size() ==
               fibers::arena_stack::minimum_size() + pg);
    BOOST_TEST(fibers::arena_stack(100 * 1024 + 1).size() == (100 * 1024 + pg) / pg * pg);
    BOOST_TEST(fibers::arena_stack(fibers::arena_stack::maximum_size()).size() ==
               fibers::arena_stack::maximum_size());
    BOOST_CHECK_THROW(fibers::arena_stack(fibers::arena_stack::maximum_size() + 1), std::length_error);
    BOOST_TEST((std::is_same<fibers::default_stack, fibers::arena_stack>::value));
}

BOOST_AUTO_TEST_CASE(allocate_deallocate_round_trip) {
    std::size_t const pg = page();
    for (std::size_t size : {std::size_t(1), std::size_t(64 * 1024 + 5), fibers::arena_stack::default_size()}) {
        fibers::arena_stack a(size);
        ctx::stack_context s = a.allocate();
        BOOST_TEST_REQUIRE(s.sp != nullptr);
        BOOST_TEST(s.size == a.size());
        BOOST_TEST(reinterpret_cast<std::uintptr_t>(s.sp) % pg == 0u);
        BOOST_TEST(reinterpret_cast<std::uintptr_t>(low_of(s)) % pg == 0u);
        std::vector<mapping> const maps = read_maps();
        BOOST_TEST(perms_at(maps, low_of(s)).substr(0, 2) == "rw");
        BOOST_TEST(perms_at(maps, static_cast<char*>(s.sp) - 1).substr(0, 2) == "rw");
        // Reserved, not committed, and never backed by huge pages.
        std::string const flags = vm_flags_at(low_of(s));
        BOOST_TEST(flags.find(" nr ") != std::string::npos, "VmFlags:" << flags);
        if (madvise_reaches_the_kernel())
            BOOST_TEST(flags.find(" nh ") != std::string::npos, "VmFlags:" << flags);
        else
            BOOST_TEST_MESSAGE("madvise advice does not reach the kernel here: MADV_NOHUGEPAGE is not checked");
        a.deallocate(s);
    }
}

BOOST_AUTO_TEST_CASE(whole_usable_range_from_a_context_on_the_stack) {
    fibers::arena_stack a;
    ctx::stack_context s = a.allocate();
    char* const lo = low_of(s);
    char* const hi = static_cast<char*>(s.sp);
    std::uintptr_t local_addr = 0;
    bool lowest_ok = false, highest_ok = false;
    run_on_stack(s, [&] {
        // Not the address of a local: with detect_stack_use_after_return,
        // ASan moves locals to a heap-allocated fake frame.
        local_addr = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
        char volatile* const first = lo;
        char volatile* const last = hi - 1;
        first[0] = 0x5a;
        lowest_ok = first[0] == 0x5a;
        // The context's own bookkeeping lives at the top: put it back.
        char const saved = last[0];
        last[0] = static_cast<char>(0xa5);
        highest_ok = last[0] == static_cast<char>(0xa5);
        last[0] = saved;
    });
    BOOST_TEST(lowest_ok);
    BOOST_TEST(highest_ok);
    BOOST_TEST(local_addr >= reinterpret_cast<std::uintptr_t>(lo));
    BOOST_TEST(local_addr < reinterpret_cast<std::uintptr_t>(hi));
    a.deallocate(s);
}

// ---------------------------------------------------------------------------
// Reuse and threads.

BOOST_AUTO_TEST_CASE(hot_cache_reuses_lifo) {
    fibers::arena_stack a;
    fd::flush_thread_stack_cache();
    ctx::stack_context s1 = a.allocate();
    ctx::stack_context s2 = a.allocate();
    BOOST_TEST(s1.sp != s2.sp);
    void* const p1 = s1.sp;
    void* const p2 = s2.sp;
    // Memory in the hot cache stays committed: the content survives.
    static_cast<char*>(p1)[-1] = 'x';
    a.deallocate(s1);
    a.deallocate(s2);
    ctx::stack_context r2 = a.allocate();
    ctx::stack_context r1 = a.allocate();
    BOOST_TEST(r2.sp == p2);
    BOOST_TEST(r1.sp == p1);
    BOOST_TEST(static_cast<char*>(r1.sp)[-1] == 'x');

    // Another size comes from another pool.
    fibers::arena_stack small(32 * 1024);
    ctx::stack_context o = small.allocate();
    BOOST_TEST(o.size == 32u * 1024u);
    small.deallocate(o);
    ctx::stack_context o2 = small.allocate();
    BOOST_TEST(o2.sp == o.sp);
    ctx::stack_context r3 = a.allocate();
    BOOST_TEST(r3.sp != o.sp);
    small.deallocate(o2);
    a.deallocate(r3);
    a.deallocate(r1);
    a.deallocate(r2);
}

#if FIBERS_ASAN
BOOST_AUTO_TEST_CASE(reused_stacks_are_unpoisoned) {
    // Frames abandoned on a stack leave their redzones poisoned; the next
    // fiber on that stack must not trip over them.
    fibers::arena_stack a;
    fd::flush_thread_stack_cache();
    ctx::stack_context s = a.allocate();
    __asan_poison_memory_region(low_of(s) + 4096, 256);
    __asan_poison_memory_region(static_cast<char*>(s.sp) - 512, 64);
    BOOST_TEST_REQUIRE(__asan_region_is_poisoned(low_of(s), s.size) != nullptr);
    a.deallocate(s);
    ctx::stack_context t = a.allocate(); // from the hot cache
    BOOST_TEST_REQUIRE(t.sp == s.sp);
    BOOST_TEST(__asan_region_is_poisoned(low_of(t), t.size) == nullptr);

    __asan_poison_memory_region(low_of(t) + 8192, 256);
    a.deallocate(t);
    fd::flush_thread_stack_cache();
    ctx::stack_context u = a.allocate(); // from the global list
    BOOST_TEST_REQUIRE(u.sp == s.sp);
    BOOST_TEST(__asan_region_is_poisoned(low_of(u), u.size) == nullptr);
    a.deallocate(u);
}
#endif

BOOST_AUTO_TEST_CASE(stacks_do_not_overlap) {
    fibers::arena_stack a(20 * 1024);
    std::vector<ctx::stack_context> v;
    for (int i = 0; i != 300; ++i)
        v.push_back(a.allocate());
    std::vector<std::pair<std::uintptr_t, std::uintptr_t>> ranges;
    for (auto const& s : v) // guard page included
        ranges.emplace_back(reinterpret_cast<std::uintptr_t>(low_of(s)) - page(),
                            reinterpret_cast<std::uintptr_t>(s.sp));
    std::sort(ranges.begin(), ranges.end());
    for (std::size_t i = 1; i < ranges.size(); ++i)
        BOOST_TEST(ranges[i - 1].second <= ranges[i].first);
    for (auto& s : v)
        a.deallocate(s);
}

BOOST_AUTO_TEST_CASE(cross_thread_deallocate) {
    fibers::arena_stack a;
    ctx::stack_context s = a.allocate();
    void* const p = s.sp;
    void* again = nullptr;
    std::thread([&] {
        a.deallocate(s); // into this thread's cache...
        ctx::stack_context t = a.allocate();
        again = t.sp; // ...and straight back out of it
        a.deallocate(t);
    }).join();
    BOOST_TEST(again == p);

    ctx::stack_context from_thread;
    std::thread([&] { from_thread = a.allocate(); }).join();
    BOOST_TEST_REQUIRE(from_thread.sp != nullptr);
    static_cast<char*>(from_thread.sp)[-1] = 1;
    a.deallocate(from_thread);
}

BOOST_AUTO_TEST_CASE(concurrent_allocate_deallocate) {
    fibers::arena_stack a(24 * 1024);
    std::mutex m;
    std::vector<ctx::stack_context> exchange;
    std::atomic<bool> clash{false};
    auto worker = [&](unsigned id) {
        std::vector<ctx::stack_context> mine;
        for (unsigned i = 0; i != 20000; ++i) {
            ctx::stack_context s = a.allocate();
            // A stack handed out twice would see its tag overwritten.
            auto* tag = reinterpret_cast<unsigned*>(static_cast<char*>(s.sp) - sizeof(unsigned));
            *tag = id * 1000000u + i;
            mine.push_back(s);
            if (mine.size() == 40 || i % 7 == 0) {
                for (auto const& t : mine) {
                    auto* tt = reinterpret_cast<unsigned*>(static_cast<char*>(t.sp) - sizeof(unsigned));
                    if (*tt / 1000000u != id)
                        clash = true;
                }
                std::lock_guard<std::mutex> lock(m);
                // Half goes to whichever thread frees next.
                for (std::size_t k = 0; k < mine.size(); k += 2)
                    exchange.push_back(mine[k]);
                for (std::size_t k = 1; k < mine.size(); k += 2)
                    a.deallocate(mine[k]);
                mine.clear();
                std::size_t const n = std::min<std::size_t>(exchange.size(), 10);
                for (std::size_t k = 0; k != n; ++k) {
                    a.deallocate(exchange.back());
                    exchange.pop_back();
                }
            }
        }
        for (auto& s : mine)
            a.deallocate(s);
    };
    std::vector<std::thread> threads;
    for (unsigned id = 1; id <= 4; ++id)
        threads.emplace_back(worker, id);
    for (auto& t : threads)
        t.join();
    for (auto& s : exchange)
        a.deallocate(s);
    BOOST_TEST(!clash);
}

namespace {

struct deallocate_on_destruction {
    fibers::arena_stack* alloc = nullptr;
    ctx::stack_context s;
    ~deallocate_on_destruction() {
        if (alloc != nullptr)
            alloc->deallocate(s);
    }
};

ctx::stack_context key_stack;
fibers::arena_stack* key_alloc = nullptr;

void deallocate_from_key(void*) {
    key_alloc->deallocate(key_stack);
}

// After thread exit, a stack the thread freed must be in the global list:
// its memory given back (no page resident, then reads zero: in that order,
// since the read maps pages) and the next allocation, from an empty hot
// cache, returns it.
void check_freed_to_global(fibers::arena_stack& a, void* sp) {
    char* const lo = static_cast<char*>(sp) - a.size();
    BOOST_TEST(resident_pages(lo, a.size()) == 0u);
    BOOST_TEST(reads_zero(lo, a.size()));
    ctx::stack_context s = a.allocate();
    BOOST_TEST(s.sp == sp);
    a.deallocate(s);
}

} // namespace

BOOST_AUTO_TEST_CASE(deallocate_during_thread_exit) {
    fibers::arena_stack a(40 * 1024);

    // From a thread_local destructor, i.e. before the cache is flushed.
    fd::flush_thread_stack_cache();
    void* sp = nullptr;
    std::thread([&] {
        ctx::stack_context s = a.allocate();
        std::memset(low_of(s), 0x77, s.size);
        static thread_local deallocate_on_destruction holder;
        holder.alloc = &a;
        holder.s = s;
        sp = s.sp;
    }).join();
    check_freed_to_global(a, sp);

    // From a pthread key destructor running after the allocator's own,
    // i.e. after the cache was flushed and retired.
    fd::flush_thread_stack_cache();
    pthread_key_t key;
    BOOST_TEST_REQUIRE(::pthread_key_create(&key, &deallocate_from_key) == 0);
    key_alloc = &a;
    std::thread([&] {
        key_stack = a.allocate();
        std::memset(low_of(key_stack), 0x77, key_stack.size);
        ::pthread_setspecific(key, &key_stack);
        sp = key_stack.sp;
    }).join();
    ::pthread_key_delete(key);
    check_freed_to_global(a, sp);

    // After an explicit flush the cache still works, and exit flushes it.
    fd::flush_thread_stack_cache();
    std::thread([&] {
        ctx::stack_context s = a.allocate();
        std::memset(low_of(s), 0x77, s.size);
        fd::flush_thread_stack_cache();
        a.deallocate(s);
        ctx::stack_context t = a.allocate();
        if (t.sp != s.sp)
            std::abort();
        a.deallocate(t);
        sp = s.sp;
    }).join();
    check_freed_to_global(a, sp);
}

// Residency is asked of the kernel per stack with mincore(2), before
// anything reads the released stacks: what the process as a whole has
// resident, and how a kernel counts a page that was only read, are beside
// the point.
BOOST_AUTO_TEST_CASE(released_memory_goes_back_to_the_kernel) {
    fibers::arena_stack a;
    // Twice what the cache holds: freeing them fills it, releases its cold
    // part and fills it again.
    std::size_t const n = 2 * fd::thread_stack_cache_capacity;
    std::size_t const pages = a.size() / page();
    fd::flush_thread_stack_cache();
    std::vector<ctx::stack_context> v;
    for (std::size_t i = 0; i != n; ++i)
        v.push_back(a.allocate());
    for (auto const& s : v)
        std::memset(low_of(s), 0x33, s.size);
    std::size_t touched = 0;
    for (auto const& s : v)
        touched += resident_pages(low_of(s), s.size);
    BOOST_TEST_REQUIRE(touched == n * pages, "written stacks are resident, or this test cannot see a release");

    std::vector<char*> lows;
    for (auto& s : v) {
        lows.push_back(low_of(s));
        a.deallocate(s);
    }
    // Only what fits the hot cache keeps its memory, and its content; the
    // rest is released whole.
    std::vector<bool> kept;
    for (char* lo : lows) {
        std::size_t const resident = resident_pages(lo, a.size());
        BOOST_TEST((resident == 0u || resident == pages), resident << " of " << pages << " pages resident");
        kept.push_back(resident != 0);
    }
    std::size_t const kept_count = static_cast<std::size_t>(std::count(kept.begin(), kept.end(), true));
    BOOST_TEST(kept_count <= fd::thread_stack_cache_capacity);
    BOOST_TEST(kept_count >= fd::thread_stack_cache_kept);
    // What goes back is the coldest: the stacks freed first.
    for (std::size_t i = 0; i != n; ++i)
        BOOST_TEST(kept[i] == (i >= n - kept_count), "stack freed " << i << "th kept: " << kept[i]);
    for (std::size_t i = 0; i != n; ++i)
        if (kept[i])
            BOOST_TEST(lows[i][0] == 0x33);

    fd::flush_thread_stack_cache();
    for (char* lo : lows)
        BOOST_TEST(resident_pages(lo, a.size()) == 0u);
    for (char* lo : lows)
        BOOST_TEST(reads_zero(lo, a.size()));
}

// Every fiber's first frames go in the top page of its stack, so a stack
// leaves the global lists with that page in, faulted in with many others
// in one system call where the kernel takes the advice for the calling
// process; elsewhere it faults when first touched. Nothing below the top
// page is committed before it is touched, whether the slot is new or
// reused.
BOOST_AUTO_TEST_CASE(stacks_come_with_their_top_page_in_and_nothing_more) {
    bool const batched = fd::stack_tops_faulted_in_batches();
    BOOST_TEST_MESSAGE("top pages faulted in batches: " << batched);
    fibers::arena_stack a(136 * 1024); // a size no other test uses: its slots are new
    std::size_t const n = 2 * fd::thread_stack_cache_capacity;
    auto const check = [&](ctx::stack_context const& s, char const* which) {
        char const* const top = static_cast<char const*>(s.sp) - page();
        BOOST_TEST(resident_pages(top, page()) == (batched ? 1u : 0u), which << " stack's top page");
        BOOST_TEST(resident_pages(low_of(s), s.size - page()) == 0u, which << " stack below its top page");
    };
    fd::flush_thread_stack_cache();
    std::vector<ctx::stack_context> v;
    for (std::size_t i = 0; i != n; ++i)
        v.push_back(a.allocate());
    for (auto const& s : v)
        check(s, "new");
    for (auto& s : v)
        static_cast<char*>(s.sp)[-1] = 1;
    for (auto& s : v)
        a.deallocate(s);
    fd::flush_thread_stack_cache(); // all of them to the global list, their memory given back
    v.clear();
    for (std::size_t i = 0; i != n; ++i)
        v.push_back(a.allocate());
    for (auto const& s : v)
        check(s, "reused");
    for (auto const& s : v)
        BOOST_TEST(reads_zero(low_of(s), s.size));
    for (auto& s : v)
        a.deallocate(s);
}

// ---------------------------------------------------------------------------
// Guards.

BOOST_AUTO_TEST_CASE(guard_page_faults) {
    BOOST_TEST_MESSAGE("guard mode: " << (fd::stack_guard_mode() == fd::stack_guard_kind::marker ? "marker" : "mprotect"));
    fibers::arena_stack a;
    fd::flush_thread_stack_cache();
    ctx::stack_context s = a.allocate();
    char* const lo = low_of(s);
    BOOST_TEST(touch_in_child(lo, 0) == 0);
    BOOST_TEST(touch_in_child(static_cast<char*>(s.sp) - 1, 0) == 0);
    BOOST_TEST(touch_in_child(lo - 1, guard_fault_code()) == 10);
    BOOST_TEST(touch_in_child(lo - page(), guard_fault_code()) == 10);

    // The guard survives MADV_DONTNEED of the stack and reuse.
    a.deallocate(s);
    fd::flush_thread_stack_cache();
    ctx::stack_context t = a.allocate();
    BOOST_TEST_REQUIRE(t.sp == s.sp);
    BOOST_TEST(touch_in_child(lo - 1, guard_fault_code()) == 10);
    BOOST_TEST(touch_in_child(lo, 0) == 0);

    fd::arena_guard_hit hit{};
    BOOST_TEST(fd::find_arena_guard(lo - 1, hit));
    // As pointers: Boost.Test would compare char pointers as C strings.
    BOOST_TEST(static_cast<void const*>(hit.low) == static_cast<void const*>(lo));
    BOOST_TEST(static_cast<void const*>(hit.high) == t.sp);
    BOOST_TEST(!fd::find_arena_guard(lo, hit));
    BOOST_TEST(!fd::find_arena_guard(static_cast<char*>(t.sp) - 1, hit));
    BOOST_TEST(!fd::find_arena_guard(&hit, hit));
    a.deallocate(t);
}

BOOST_AUTO_TEST_CASE(many_stacks_alive_at_once) {
    // 26 GB of address space; a 32-bit process holds 4000 of these stacks.
    std::size_t const n = sizeof(void*) >= 8 ? 100000 : 4000;
    fibers::arena_stack a;
    std::size_t const maps_before = count_mappings();
    std::vector<ctx::stack_context> v;
    v.reserve(n);
    for (std::size_t i = 0; i != n; ++i) {
        v.push_back(a.allocate());
        static_cast<char*>(v.back().sp)[-1] = 1;
    }
    std::size_t const maps_alive = count_mappings();
    BOOST_TEST_MESSAGE(n << " stacks: " << maps_before << " mappings before, " << maps_alive << " with them alive");
    BOOST_TEST(maps_alive < 65530u);
    if (fd::stack_guard_mode() == fd::stack_guard_kind::marker)
        BOOST_TEST(maps_alive < maps_before + 1000);
    std::vector<void*> sps;
    for (auto const& s : v)
        sps.push_back(s.sp);
    std::sort(sps.begin(), sps.end());
    BOOST_TEST((std::adjacent_find(sps.begin(), sps.end()) == sps.end()));
    // Guard markers have no budget: every stack has its guard, those whose
    // markers went in by the batch and the arenas' first and last among
    // them.
    if (fd::stack_guard_mode() == fd::stack_guard_kind::marker) {
        std::size_t unguarded = 0;
        for (auto const& s : v)
            unguarded += unreadable(static_cast<char const*>(s.sp) - s.size - 1) ? 0 : 1;
        BOOST_TEST(unguarded == 0u);
    }
    for (auto& s : v)
        a.deallocate(s);
    fd::flush_thread_stack_cache();
    // Releasing memory does not split arenas either.
    if (fd::stack_guard_mode() == fd::stack_guard_kind::marker)
        BOOST_TEST(count_mappings() < maps_before + 1000);
}

// The mprotect fallback, in a process started with FIBERS_STACK_GUARD set,
// because the guard mode is decided once per process.
BOOST_AUTO_TEST_CASE(guard_mode_mprotect) {
    int fds[2];
    BOOST_TEST_REQUIRE(::pipe(fds) == 0);
    std::fflush(nullptr);
    pid_t const pid = ::fork();
    BOOST_TEST_REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(fds[0]);
        ::dup2(fds[1], STDOUT_FILENO);
        ::dup2(fds[1], STDERR_FILENO);
        ::close(fds[1]);
        ::setenv("FIBERS_STACK_GUARD", "mprotect", 1);
        ::execl("/proc/self/exe", "test_stack", "--run_test=mprotect_mode_child", "--log_level=error",
                static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::close(fds[1]);
    child_result const r = wait_child(pid, fds[0]);
    BOOST_TEST_INFO("child output:\n" << r.err);
    BOOST_TEST_REQUIRE(WIFEXITED(r.status));
    BOOST_TEST(WEXITSTATUS(r.status) == 0);
    // The stacks beyond the budget are announced once.
    std::vector<std::string> const ours = lines_from_us(r.err);
    BOOST_TEST_REQUIRE(ours.size() == 2u);
    BOOST_TEST(ours[0].find("stack overflow in fiber \"mprotect-overflow\"") != std::string::npos);
    BOOST_TEST(ours[1].find("new fiber stacks have no guard page") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(mprotect_mode_child, *boost::unit_test::disabled()) {
    BOOST_TEST_REQUIRE((fd::stack_guard_mode() == fd::stack_guard_kind::mprotect));
    fibers::arena_stack a(48 * 1024);
    ctx::stack_context s = a.allocate();
    char* const lo = low_of(s);
    std::vector<mapping> maps = read_maps();
    BOOST_TEST(unreadable(lo - 1));
    BOOST_TEST(perms_at(maps, lo).substr(0, 2) == "rw");
    BOOST_TEST(touch_in_child(lo - 1, SEGV_ACCERR) == 10);

    child_result const r = run_in_child([&] { overflow_on(s, "mprotect-overflow"); });
    check_overflow_report(r, expected_line("fiber \"mprotect-overflow\"", lo, s.sp));
    std::fputs(lines_from_us(r.err).at(0).c_str(), stderr);
    std::fputc('\n', stderr);

    // Past the budget, stacks come without guard but keep coming.
    std::size_t const budget = fd::stack_guard_budget();
    BOOST_TEST_MESSAGE("mprotect guard budget: " << budget << " stacks");
    BOOST_TEST_REQUIRE(budget > 1000u);
    std::size_t const maps_before = count_mappings();
    std::vector<ctx::stack_context> v;
    for (std::size_t i = 0; i != budget + 100; ++i)
        v.push_back(a.allocate());
    maps = read_maps();
    // Sanitizers map shadow memory of their own beside the arenas.
    BOOST_TEST(maps.size() <= maps_before + 2 * budget + 256);
    std::size_t guarded = 0, unguarded = 0;
    bool order_ok = true;
    for (auto const& t : v) {
        bool const g = unreadable(low_of(t) - 1);
        if (g && unguarded != 0)
            order_ok = false;
        (g ? guarded : unguarded) += 1;
    }
    BOOST_TEST(order_ok);
    BOOST_TEST(unguarded >= 100u);
    BOOST_TEST(guarded + 1 == budget); // s took the first
    for (auto& t : v)
        a.deallocate(t);
    a.deallocate(s);

    // The budget counts the guards that exist: stacks given back to the
    // kernel give theirs back, and the next stacks are guarded again.
    fd::flush_thread_stack_cache();
    v.clear();
    for (int i = 0; i != 100; ++i)
        v.push_back(a.allocate());
    std::size_t guarded_again = 0;
    for (auto const& t : v)
        guarded_again += unreadable(low_of(t) - 1) ? 1 : 0;
    BOOST_TEST(guarded_again == v.size());
    for (auto& t : v)
        a.deallocate(t);
}

// ---------------------------------------------------------------------------
// Overflow reporting. Each case runs in a child, where our handler goes in
// front of the SIGSEGV disposition the process started with.

BOOST_AUTO_TEST_CASE(overflow_on_arena_stack_is_reported) {
    fibers::arena_stack a;
    ctx::stack_context s = a.allocate();
    child_result const r = run_in_child([&] { overflow_on(s, "overflow-test"); });
    check_overflow_report(r, expected_line("fiber \"overflow-test\"", low_of(s), s.sp));
    BOOST_TEST(lines_from_us(r.err).at(0).find("stack overflow") != std::string::npos);

    // Without a describer the arena still knows the stack.
    child_result const anon = run_in_child([&] { overflow_on(s, nullptr); });
    check_overflow_report(anon, expected_line("a fiber", low_of(s), s.sp));

    // A describer speaking of another stack does not lend its name.
    ctx::stack_context other = a.allocate();
    child_result const wrong = run_in_child([&] { overflow_on(s, "bystander", &other); });
    check_overflow_report(wrong, expected_line("a fiber", low_of(s), s.sp));

    // Whatever the name holds, the report stays one line.
    child_result const odd = run_in_child([&] { overflow_on(s, "two\nlines \"quoted\"\x01"); });
    check_overflow_report(odd, expected_line("fiber \"two?lines ?quoted??\"", low_of(s), s.sp));
    std::string long_name(200, 'n');
    child_result const trunc = run_in_child([&] { overflow_on(s, long_name.c_str()); });
    check_overflow_report(trunc, expected_line("fiber \"" + std::string(63, 'n') + "\"", low_of(s), s.sp));
    a.deallocate(other);
    a.deallocate(s);
}

BOOST_AUTO_TEST_CASE(overflow_on_protected_fixedsize_stack_is_reported) {
    ctx::protected_fixedsize_stack a(fibers::arena_stack::default_size());
    ctx::stack_context s = a.allocate();
    // On a fresh thread, which gets an alternate signal stack from us
    // unless a sanitizer gave it one already.
    child_result const r = run_in_child([&] {
        std::thread([&] { overflow_on(s, "overflow-test"); }).join();
    });
    check_overflow_report(r, expected_line("fiber \"overflow-test\"", low_of(s), s.sp));

    // Without a describer nothing identifies this stack: no report, the
    // default action alone.
    child_result const anon = run_in_child([&] { overflow_on(s, nullptr); });
    BOOST_TEST_INFO("child stderr:\n" << anon.err);
    BOOST_TEST(died_of_segv(anon.status));
    BOOST_TEST(lines_from_us(anon.err).empty());
    a.deallocate(s);
}

BOOST_AUTO_TEST_CASE(overflow_then_previous_handler_runs) {
    fibers::arena_stack a;
    ctx::stack_context s = a.allocate();
    child_result const r = run_in_child([&] {
        struct sigaction sa;
        std::memset(&sa, 0, sizeof sa);
        sa.sa_handler = [](int) { ::_exit(42); };
        sa.sa_flags = SA_ONSTACK;
        ::sigaction(SIGSEGV, &sa, nullptr);
        fd::install_overflow_handler_for_this_thread();
        fd::set_running_fiber_describer(&describe_current);
        set_current_fiber("chained", s);
        run_on_stack(s, [] { recurse(0); });
    });
    BOOST_TEST_INFO("child stderr:\n" << r.err);
    BOOST_TEST_REQUIRE(WIFEXITED(r.status));
    BOOST_TEST(WEXITSTATUS(r.status) == 42);
    std::vector<std::string> const ours = lines_from_us(r.err);
    BOOST_TEST_REQUIRE(ours.size() == 1u);
    BOOST_TEST(ours[0] == expected_line("fiber \"chained\"", low_of(s), s.sp));
    a.deallocate(s);
}

namespace {

char* recoverable_page = nullptr;
volatile int errno_seen_by_previous = 0;
volatile int previous_calls = 0;

void recover_fault(int, siginfo_t* info, void*) {
    errno_seen_by_previous = errno;
    previous_calls = previous_calls + 1;
    if (info->si_addr == recoverable_page)
        ::mprotect(recoverable_page, page(), PROT_READ | PROT_WRITE);
    else
        ::_exit(12);
}

bool clobbering_describer(fd::running_fiber_info& info) noexcept {
    errno = EBADF;
    std::strcpy(info.name, "not-this-one");
    info.stack_low = recoverable_page + 64 * 4096;
    info.stack_high = recoverable_page + 128 * 4096;
    return true;
}

} // namespace

BOOST_AUTO_TEST_CASE(other_faults_reach_the_previous_handler) {
    // A handler that repairs the fault, as in a garbage collector's write
    // barrier: it must be called, see the interrupted code's errno, and the
    // code must go on with its errno intact.
    child_result const r = run_in_child([] {
        recoverable_page = static_cast<char*>(
            ::mmap(nullptr, page(), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        struct sigaction sa;
        std::memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = &recover_fault;
        sa.sa_flags = SA_SIGINFO;
        ::sigaction(SIGSEGV, &sa, nullptr);
        fd::install_overflow_handler_for_this_thread();
        fd::set_running_fiber_describer(&clobbering_describer);
        errno = 77;
        *static_cast<char volatile*>(recoverable_page) = 1;
        int const after = errno;
        if (previous_calls != 1)
            ::_exit(2);
        // ThreadSanitizer sets errno to a marker before it calls a handler,
        // to catch handlers that spoil it, and checks it on return.
        if (!FIBERS_TSAN && errno_seen_by_previous != 77)
            ::_exit(3);
        if (after != 77)
            ::_exit(4);
        // The handler stayed installed.
        struct sigaction now;
        ::sigaction(SIGSEGV, nullptr, &now);
        if (now.sa_sigaction == &recover_fault)
            ::_exit(6);
        ::mprotect(recoverable_page, page(), PROT_NONE);
        *static_cast<char volatile*>(recoverable_page) = 2;
        if (previous_calls != 2)
            ::_exit(5);
    });
    BOOST_TEST_INFO("child stderr:\n" << r.err);
    BOOST_TEST_REQUIRE(WIFEXITED(r.status));
    BOOST_TEST(WEXITSTATUS(r.status) == 0);
    BOOST_TEST(lines_from_us(r.err).empty());

    // With the default action behind us, an ordinary fault still kills.
    child_result const d = run_in_child([] {
        restore_original_segv();
        fd::install_overflow_handler_for_this_thread();
        char* const p = static_cast<char*>(::mmap(nullptr, page(), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        *static_cast<char volatile*>(p) = 1;
    });
    BOOST_TEST_INFO("child stderr:\n" << d.err);
    BOOST_TEST(died_of_segv(d.status));
    BOOST_TEST(lines_from_us(d.err).empty());

    // And so does a SIGSEGV sent by kill().
    child_result const k = run_in_child([] {
        restore_original_segv();
        fd::install_overflow_handler_for_this_thread();
        ::kill(::getpid(), SIGSEGV);
    });
    BOOST_TEST(died_of_segv(k.status));
    BOOST_TEST(lines_from_us(k.err).empty());
}

BOOST_AUTO_TEST_CASE(alternate_signal_stacks) {
    child_result const r = run_in_child([] {
        restore_original_segv();
        std::size_t const pg = page();
        // A thread without an alternate stack gets one, freed at exit.
        stack_t got{};
        std::thread([&] {
            stack_t off{};
            off.ss_flags = SS_DISABLE;
            ::sigaltstack(&off, nullptr);
            fd::install_overflow_handler_for_this_thread();
            ::sigaltstack(nullptr, &got);
            fd::install_overflow_handler_for_this_thread();
            stack_t again{};
            ::sigaltstack(nullptr, &again);
            if (again.ss_sp != got.ss_sp)
                ::_exit(2);
        }).join();
        if ((got.ss_flags & SS_DISABLE) != 0)
            ::_exit(3);
        if (got.ss_size < 64 * 1024)
            ::_exit(4);
        unsigned char vec[64];
        if (::mincore(got.ss_sp, pg, vec) != -1 || errno != ENOMEM)
            ::_exit(5);

        // One that has an alternate stack keeps it, and gets it back alive.
        static char own[128 * 1024];
        stack_t kept{};
        std::thread([&] {
            stack_t mine{};
            mine.ss_sp = own;
            mine.ss_size = sizeof own;
            ::sigaltstack(&mine, nullptr);
            fd::install_overflow_handler_for_this_thread();
            ::sigaltstack(nullptr, &kept);
            // Sanitizers unmap the current alternate stack at thread exit;
            // this one is static storage.
            stack_t off{};
            off.ss_flags = SS_DISABLE;
            ::sigaltstack(&off, nullptr);
        }).join();
        if (kept.ss_sp != own || (kept.ss_flags & SS_DISABLE) != 0)
            ::_exit(6);
    });
    BOOST_TEST_INFO("child stderr:\n" << r.err);
    BOOST_TEST_REQUIRE(WIFEXITED(r.status));
    BOOST_TEST(WEXITSTATUS(r.status) == 0);
}
