// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#include "diagnostics_internals.hpp"
#include "fiber_registry.hpp"
#include "fiber_internals.hpp"
#include "format.hpp"
#include "hub_internals.hpp"

#include <fibers/diagnostics.hpp>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>
#include <optional>
#include <ostream>
#include <system_error>
#include <vector>

namespace fibers::detail {

namespace {

// One fiber, copied without allocating.
struct fiber_snapshot {
    std::uintptr_t id = 0;
    std::uintptr_t parent_id = 0;
    char name[64] = {};
    char const* kind = "";
    fiber_state state = fiber_state::suspended;
    char waiting_on[192] = {};
    std::size_t stack_size = 0;
    std::size_t stack_used = 0;
};

// Bytes of the filled stack of `r` that were ever written: from its top
// down to the deepest word that no longer holds the pattern. Another
// thread's fiber may be writing its stack meanwhile: a snapshot, read
// without the sanitizers' instrumentation (ASan poisons the redzones of
// live frames).
__attribute__((no_sanitize("address", "thread"))) std::size_t deepest_use(fiber_record const& r) noexcept {
    std::uintptr_t const top = r.stack_top.load(std::memory_order_relaxed);
    std::size_t const size = r.stack_extent.load(std::memory_order_relaxed);
    if (!r.stack_filled || top == 0 || size == 0)
        return 0;
    auto const* word = reinterpret_cast<std::uint64_t const volatile*>(top - size);
    auto const* const end = reinterpret_cast<std::uint64_t const volatile*>(top);
    while (word != end && *word == stack_fill_pattern)
        ++word;
    return static_cast<std::size_t>(top - reinterpret_cast<std::uintptr_t>(word));
}

std::int64_t steady_now_ns() noexcept {
    timespec now{};
    ::clock_gettime(CLOCK_MONOTONIC, &now); // steady_clock's clock, async-signal-safe
    return static_cast<std::int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

// The calling thread's anchor, null if it has no fibers.
void const* own_anchor() noexcept {
    thread_state const* ts = current_thread_state;
    return ts != nullptr ? ts->anchor : nullptr;
}

// What `r` waits on, as published. A joined fiber is named only if it is a
// live fiber of `ts` (whose list the caller may read): otherwise it may be
// gone, and only its address is given.
void write_waiting_on(thread_state const& ts, fiber_record const& r, std::int64_t now, char* buffer,
                      std::size_t capacity) noexcept {
    text_writer out(buffer, capacity);
    wait_publication const& p = r.waiting;
    char const* what = p.what.load(std::memory_order_acquire);
    if (what == nullptr)
        return;
    void const* object = p.object.load(std::memory_order_relaxed);
    waited_object const kind = p.object_kind.load(std::memory_order_relaxed);
    std::int64_t const deadline = p.deadline.load(std::memory_order_relaxed);
    out.put(what);
    switch (kind) {
    case waited_object::none:
        break;
    case waited_object::primitive:
        out.put(' ').put_hex(reinterpret_cast<std::uintptr_t>(object));
        // Read in the primitive, which only its own thread knows to be
        // alive: the wait that published it has not returned.
        if (holder_reader holder = ts.anchor == own_anchor() ? p.holder.load(std::memory_order_relaxed) : nullptr) {
            void const* by = holder(object);
            if (by != nullptr && is_live_fiber_of(ts, by)) {
                char name[64];
                write_name(*static_cast<fiber_record const*>(by), name, sizeof name);
                out.put(" held by ").put(name);
            }
        }
        break;
    case waited_object::fiber:
        out.put(' ');
        if (is_live_fiber_of(ts, object)) {
            char name[64];
            write_name(*static_cast<fiber_record const*>(object), name, sizeof name);
            out.put(name);
        } else {
            out.put_hex(reinterpret_cast<std::uintptr_t>(object));
        }
        break;
    case waited_object::signature: {
        // __PRETTY_FUNCTION__ of signature_text<Signature>: its template argument.
        char const* s = static_cast<char const*>(object);
        char const* from = std::strstr(s, "Signature = ");
        if (from == nullptr) {
            out.put(' ').put(s);
            break;
        }
        from += std::strlen("Signature = ");
        char const* to = std::strchr(from, ']');
        out.put(' ').put(from, to != nullptr ? static_cast<std::size_t>(to - from) : std::strlen(from));
        break;
    }
    }
    if (deadline != wait_publication::no_deadline) {
        if (deadline > now)
            out.put(", ").put_seconds(deadline - now).put(" left");
        else
            out.put(", deadline passed ").put_seconds(now - deadline).put(" ago");
    }
}

// The fibers that entries queued on a hub are to resume, sorted; known on
// the hub's own thread only, outside a signal handler.
using ready_fibers = std::vector<fiber_record const*>;

ready_fibers ready_fibers_of_this_thread() {
    ready_fibers ready;
    if (thread_hub != nullptr && hub_access::is_open(*thread_hub)) {
        hub_access::add_ready_fibers(*thread_hub, ready);
        std::sort(ready.begin(), ready.end());
    }
    return ready;
}

void take_snapshot(thread_state const& ts, fiber_record const& r, fiber_record const* running,
                   ready_fibers const* ready, std::int64_t now, fiber_snapshot& s) noexcept {
    s.id = reinterpret_cast<std::uintptr_t>(&r);
    s.parent_id = reinterpret_cast<std::uintptr_t>(read_racy(r.parent));
    write_name(r, s.name, sizeof s.name);
    s.kind = r.kind();
    switch (r.status.load(std::memory_order_relaxed)) {
    case fiber_status::created:
        s.state = fiber_state::not_started;
        break;
    case fiber_status::started:
        if (&r == running)
            s.state = fiber_state::running;
        else if (ready != nullptr && std::binary_search(ready->begin(), ready->end(), &r))
            s.state = fiber_state::ready;
        else
            s.state = fiber_state::suspended;
        break;
    case fiber_status::ended:
        s.state = fiber_state::ended;
        break;
    }
    s.waiting_on[0] = '\0';
    if (s.state == fiber_state::suspended)
        write_waiting_on(ts, r, now, s.waiting_on, sizeof s.waiting_on);
    s.stack_size = r.is_root ? 0 : r.stack_extent.load(std::memory_order_relaxed);
    s.stack_used = s.state == fiber_state::not_started || s.state == fiber_state::ended ? 0 : deepest_use(r);
}

// Calls `each(snapshot)` for the fibers of `ts`: its root, then the others
// oldest first. The caller is the thread itself or holds its flag. Without
// `ready`, a fiber due to be resumed shows as suspended.
template <class Each>
void for_each_fiber(thread_state const& ts, ready_fibers const* ready, Each&& each) noexcept {
    std::int64_t const now = steady_now_ns();
    fiber_record const* running = read_racy(ts.current);
    fiber_snapshot s;
    take_snapshot(ts, *ts.root, running, ready, now, s);
    each(s);
    fiber_record const* oldest = ts.newest_live;
    while (oldest != nullptr && oldest->older_live != nullptr)
        oldest = oldest->older_live;
    for (fiber_record const* r = oldest; r != nullptr; r = r->newer_live) {
        take_snapshot(ts, *r, running, ready, now, s);
        each(s);
    }
}

char const* state_name(fiber_state s) noexcept {
    switch (s) {
    case fiber_state::running:
        return "running";
    case fiber_state::ready:
        return "ready";
    case fiber_state::suspended:
        return "suspended";
    case fiber_state::not_started:
        return "not started";
    case fiber_state::ended:
        return "ended";
    }
    return "?";
}

// The table's lines, shared by both dumps.
void write_thread_heading(text_writer& out, long os_thread_id, bool is_caller, std::size_t count) {
    out.put("thread ").put_dec(static_cast<std::uint64_t>(os_thread_id)).put(is_caller ? " (this thread)" : "");
    out.put(": ").put_dec(count).put(count == 1 ? " fiber\n" : " fibers\n");
}

void write_column_heading(text_writer& out) {
    out.put("  id").pad_to(18).put("parent").pad_to(34).put("kind").pad_to(40).put("state").pad_to(52);
    out.put("stack").pad_to(62).put("used").pad_to(72).put("name").pad_to(92).put("waiting on\n");
}

void write_fiber_line(text_writer& out, fiber_snapshot const& f) noexcept {
    out.put("  ").put_hex(f.id).pad_to(18);
    if (f.parent_id != 0)
        out.put_hex(f.parent_id);
    else
        out.put('-');
    out.pad_to(34).put(f.kind).pad_to(40).put(state_name(f.state)).pad_to(52).put_dec(f.stack_size).pad_to(62);
    out.put_dec(f.stack_used).pad_to(72).put(f.name).pad_to(92).put(f.waiting_on).put('\n');
}

struct thread_snapshot {
    long os_thread_id = 0;
    bool is_caller = false;
    std::vector<fiber_snapshot> fibers;
};

fiber_info to_info(fiber_snapshot const& s) {
    fiber_info f;
    f.id = s.id;
    f.parent_id = s.parent_id;
    f.name = s.name;
    f.kind = s.kind;
    f.state = s.state;
    f.waiting_on = s.waiting_on;
    f.stack_size = s.stack_size;
    f.stack_used = s.stack_used;
    return f;
}

// ---- the dump from a signal handler: no allocation, no lock, write(2).

void write_to_stderr(text_writer const& t) noexcept {
    char const* p = t.c_str();
    std::size_t left = t.size();
    while (left > 0) {
        ssize_t n = ::write(2, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        p += n;
        left -= static_cast<std::size_t>(n);
    }
}

void dump_from_signal(int) {
    int const saved_errno = errno;
    char buffer[512];
    text_writer out(buffer, sizeof buffer);
    thread_state const* const me = current_thread_state;
    // Tried for a while, never waited for: its holder may be the very code
    // this handler interrupted.
    if (!try_flag(threads_busy, 1000)) {
        write_to_stderr(out.put("fibers: a thread is starting or exiting; no dump this time\n"));
        errno = saved_errno;
        return;
    }
    thread_state* oldest = newest_thread;
    std::size_t threads = 0;
    for (thread_state* ts = newest_thread; ts != nullptr; ts = ts->older_thread) {
        oldest = ts;
        ++threads;
    }
    write_to_stderr(out.put("fibers: dump of ").put_dec(threads).put(threads == 1 ? " thread\n" : " threads\n"));
    for (thread_state* ts = oldest; ts != nullptr; ts = ts->newer_thread) {
        bool const own = ts == me;
        // On its own thread, the list is being changed exactly when the
        // flag is held: by the code this handler interrupted.
        bool const readable = own ? !ts->live_list_busy.load(std::memory_order_relaxed) : try_live_list_read(*ts, 1000);
        text_writer line(buffer, sizeof buffer);
        if (!readable) {
            line.put("thread ").put_dec(static_cast<std::uint64_t>(ts->os_thread_id));
            write_to_stderr(line.put(": busy changing its list of fibers; skipped\n"));
            continue;
        }
        std::size_t count = 0;
        for_each_fiber(*ts, nullptr, [&](fiber_snapshot const&) noexcept { ++count; });
        write_thread_heading(line, ts->os_thread_id, own, count);
        write_column_heading(line);
        write_to_stderr(line);
        for_each_fiber(*ts, nullptr, [&](fiber_snapshot const& s) noexcept {
            text_writer row(buffer, sizeof buffer);
            write_fiber_line(row, s);
            write_to_stderr(row);
        });
        if (!own)
            end_live_list_read(*ts);
    }
    release_flag(threads_busy);
    errno = saved_errno;
}

} // namespace

std::string describe_waits(thread_state const& ts) {
    std::string out;
    for_each_fiber(ts, nullptr, [&](fiber_snapshot const& s) {
        if (std::strcmp(s.kind, "hub") == 0)
            return; // it runs the check
        out += "  ";
        out += s.name;
        out += " (";
        out += s.kind;
        out += "): ";
        out += s.waiting_on[0] != '\0' ? s.waiting_on : state_name(s.state);
        out += '\n';
    });
    return out;
}

} // namespace fibers::detail

namespace fibers {

std::vector<fiber_info> list_fibers() {
    detail::thread_state& ts = detail::this_thread_state();
    std::vector<fiber_info> fibers;
    detail::ready_fibers const ready = detail::ready_fibers_of_this_thread();
    detail::for_each_fiber(ts, &ready, [&](detail::fiber_snapshot const& s) { fibers.push_back(detail::to_info(s)); });
    return fibers;
}

void dump_fibers(std::ostream& out) {
    using namespace detail;
    thread_state const* const me = current_thread_state;
    std::vector<thread_snapshot> threads;
    ready_fibers const ready = ready_fibers_of_this_thread();
    {
        // Copied first, printed after: the stream may block, and the
        // threads must not wait for it.
        flag_guard all(threads_busy);
        for (thread_state* ts = newest_thread; ts != nullptr; ts = ts->older_thread) {
            thread_snapshot& t = threads.emplace_back();
            t.os_thread_id = ts->os_thread_id;
            t.is_caller = ts == me;
            std::optional<live_list_read> list;
            if (!t.is_caller)
                list.emplace(*ts);
            for_each_fiber(*ts, t.is_caller ? &ready : nullptr, [&](fiber_snapshot const& s) { t.fibers.push_back(s); });
        }
    }
    char buffer[512];
    text_writer heading(buffer, sizeof buffer);
    out << heading.put("fibers: dump of ").put_dec(threads.size()).put(threads.size() == 1 ? " thread\n" : " threads\n").c_str();
    for (auto t = threads.rbegin(); t != threads.rend(); ++t) {
        text_writer lines(buffer, sizeof buffer);
        write_thread_heading(lines, t->os_thread_id, t->is_caller, t->fibers.size());
        write_column_heading(lines);
        out << lines.c_str();
        for (fiber_snapshot const& s : t->fibers) {
            text_writer row(buffer, sizeof buffer);
            write_fiber_line(row, s);
            out << row.c_str();
        }
    }
    out.flush();
}

void measure_stack_use(bool on) noexcept { detail::fill_new_stacks.store(on, std::memory_order_relaxed); }

void dump_fibers_on_signal(int signo) {
    struct sigaction action {};
    action.sa_handler = &detail::dump_from_signal;
    sigemptyset(&action.sa_mask);
    // On the thread's alternate stack where it has one (every thread that
    // ran a fiber does): a fiber's stack may have little room left.
    action.sa_flags = SA_RESTART | SA_ONSTACK;
    if (::sigaction(signo, &action, nullptr) != 0)
        throw std::system_error(errno, std::generic_category(), "fibers: dump_fibers_on_signal");
}

} // namespace fibers
