// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

#include "stack_overflow.hpp"

#include "format.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

// Everything reachable from on_sigsegv runs in a signal handler on a thread
// whose stack is gone: no locks, no allocation, no stdio, nothing that is
// not async-signal-safe, and little stack.

namespace fibers {
namespace detail {
namespace {

static_assert(std::atomic<running_fiber_describer>::is_always_lock_free,
              "the describer is read from a signal handler");

std::atomic<running_fiber_describer> describer{nullptr};

// Written once, before the handler is installed, and read-only afterwards.
struct sigaction previous_action;
std::size_t page = 4096;
std::size_t alt_stack_size = 0;
pthread_key_t alt_stack_key;
bool alt_stack_key_ready = false;

thread_local bool thread_prepared FIBERS_INITIAL_EXEC_TLS = false;

// ---------------------------------------------------------------------------
// Message formatting without stdio.

// One line of the report, written with the library's formatter; the NUL
// that ends the text leaves room for the newline.
class line_buffer {
public:
    text_writer& text() noexcept { return text_; }

    void write_line(int fd) noexcept {
        std::size_t left = text_.size();
        data_[left++] = '\n';
        char const* p = data_;
        while (left != 0) {
            ssize_t const n = ::write(fd, p, left);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return;
            }
            p += n;
            left -= static_cast<std::size_t>(n);
        }
    }

private:
    char data_[256];
    text_writer text_{data_, sizeof data_};
};

// ---------------------------------------------------------------------------
// The handler.

struct overflow {
    std::uintptr_t low;
    std::uintptr_t high;
    bool named;
    char name[sizeof running_fiber_info::name];
};

bool identify_overflow(void const* addr, overflow& ov) noexcept {
    running_fiber_info fiber;
    fiber.name[0] = '\0';
    fiber.stack_low = nullptr;
    fiber.stack_high = nullptr;
    bool have_fiber = false;
    if (running_fiber_describer const d = describer.load(std::memory_order_acquire))
        have_fiber = d(fiber);
    auto const lo = reinterpret_cast<std::uintptr_t>(fiber.stack_low);
    auto const hi = reinterpret_cast<std::uintptr_t>(fiber.stack_high);
    have_fiber = have_fiber && lo != 0 && hi > lo;

    auto const a = reinterpret_cast<std::uintptr_t>(addr);
    arena_guard_hit hit;
    if (find_arena_guard(addr, hit)) {
        ov.low = reinterpret_cast<std::uintptr_t>(hit.low);
        ov.high = reinterpret_cast<std::uintptr_t>(hit.high);
        // A stray access into another stack's guard is reported as that
        // stack's overflow, but without borrowing the running fiber's name.
        ov.named = have_fiber && lo < ov.high && hi > ov.low;
    } else if (have_fiber) {
        // Allocators disagree on whether stack_context::size counts the
        // guard page (Boost's protected_fixedsize_stack does), so the page
        // on either side of the low end counts as the guard.
        if (a < lo - std::min(lo, page) || a >= lo + page)
            return false;
        ov.low = lo;
        ov.high = hi;
        ov.named = true;
    } else {
        return false;
    }
    if (ov.named) {
        std::memcpy(ov.name, fiber.name, sizeof ov.name);
        ov.name[sizeof ov.name - 1] = '\0';
        ov.named = ov.name[0] != '\0';
    }
    return true;
}

void report(overflow const& ov) noexcept {
    line_buffer buffer;
    text_writer& line = buffer.text();
    line.put("fibers: stack overflow in ");
    if (ov.named) {
        line.put("fiber \"");
        line.put_name(ov.name, sizeof ov.name);
        line.put('"');
    } else {
        line.put("a fiber");
    }
    line.put(" (stack ");
    line.put_hex(ov.low);
    line.put('-');
    line.put_hex(ov.high);
    line.put(", ");
    line.put_dec(ov.high - ov.low);
    line.put(" bytes); aborting");
    buffer.write_line(STDERR_FILENO);
}

void forward(int sig, siginfo_t* info, void* context, int saved_errno) noexcept {
    struct sigaction const& prev = previous_action;
    if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
        errno = saved_errno;
        if ((prev.sa_flags & SA_SIGINFO) != 0)
            prev.sa_sigaction(sig, info, context);
        else
            prev.sa_handler(sig);
        return;
    }
    ::sigaction(SIGSEGV, &prev, nullptr);
    // A fault re-fires when the handler returns; a SIGSEGV sent with kill()
    // does not, so it is sent again, pending until the handler returns.
    if (info == nullptr || info->si_code <= 0)
        ::raise(sig);
}

void on_sigsegv(int sig, siginfo_t* info, void* context) {
    int const saved_errno = errno;
    overflow ov;
    if (info != nullptr && info->si_code > 0 && identify_overflow(info->si_addr, ov)) {
        report(ov);
        // The faulting instruction runs again on return and meets the
        // previous disposition: the default action dumps core, a sanitizer
        // or crash reporter sees the original fault.
        ::sigaction(SIGSEGV, &previous_action, nullptr);
    } else {
        forward(sig, info, context, saved_errno);
    }
    errno = saved_errno;
}

// ---------------------------------------------------------------------------
// Installation.

void release_alt_stack(void* p) noexcept {
    char* const base = static_cast<char*>(p);
    // Another thread_local or key destructor may run fibers after this one
    // and call install again; let it start over.
    thread_prepared = false;
    stack_t current;
    if (::sigaltstack(nullptr, &current) != 0)
        return;
    if ((current.ss_flags & SS_DISABLE) != 0) {
        // Whoever disabled it may have unmapped it already (sanitizers unmap
        // the current alternate stack at thread exit): leave it.
        return;
    }
    if (current.ss_sp == base + page) {
        stack_t off{};
        off.ss_flags = SS_DISABLE;
        if (::sigaltstack(&off, nullptr) != 0)
            return;
    }
    ::munmap(base, alt_stack_size + page);
}

void install_process_handler() noexcept {
    long const ps = ::sysconf(_SC_PAGESIZE);
    if (ps > 0)
        page = static_cast<std::size_t>(ps);
    // The handler itself needs little, but the previous handler it defers
    // to (a sanitizer's report, a crash reporter) may need much more.
    std::size_t const wanted = std::max<std::size_t>(64 * 1024, 4 * static_cast<std::size_t>(SIGSTKSZ));
    alt_stack_size = (wanted + page - 1) / page * page;
    alt_stack_key_ready = ::pthread_key_create(&alt_stack_key, &release_alt_stack) == 0;

    // Read first, then install: a fault on another thread between the two
    // must find previous_action complete.
    ::sigaction(SIGSEGV, nullptr, &previous_action);
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = &on_sigsegv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    ::sigemptyset(&sa.sa_mask);
    ::sigaction(SIGSEGV, &sa, nullptr);
}

void prepare_alt_stack() noexcept {
    stack_t current;
    if (::sigaltstack(nullptr, &current) != 0)
        return;
    // An enabled alternate stack (a sanitizer's, the application's) serves
    // as well, and its owner frees it.
    if ((current.ss_flags & SS_DISABLE) == 0)
        return;
    if (!alt_stack_key_ready)
        return; // it could not be freed at thread exit
    std::size_t const total = alt_stack_size + page;
    void* const p = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (p == MAP_FAILED)
        return;
    char* const base = static_cast<char*>(p);
    // A handler overflowing the alternate stack must fault, not scribble
    // over whatever lies below it.
    ::mprotect(base, page, PROT_NONE);
    stack_t ss{};
    ss.ss_sp = base + page;
    ss.ss_size = alt_stack_size;
    ss.ss_flags = 0;
    if (::sigaltstack(&ss, nullptr) != 0) {
        ::munmap(base, total);
        return;
    }
    if (::pthread_setspecific(alt_stack_key, base) != 0) {
        stack_t off{};
        off.ss_flags = SS_DISABLE;
        ::sigaltstack(&off, nullptr);
        ::munmap(base, total);
    }
}

} // namespace

void set_running_fiber_describer(running_fiber_describer d) noexcept {
    describer.store(d, std::memory_order_release);
}

void install_overflow_handler_for_this_thread() noexcept {
    if (FIBERS_LIKELY(thread_prepared))
        return;
    thread_prepared = true;
    static bool const process_ready = (install_process_handler(), true);
    (void)process_ready;
    prepare_alt_stack();
}

} // namespace detail
} // namespace fibers
