// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// No silent hang: the check the hub makes before it sleeps with its root
// fiber waiting (see find_deadlock in hub_internals.hpp).

#include "diagnostics_internals.hpp"
#include "hub_internals.hpp"

#include <fibers/diagnostics.hpp>

#include <boost/asio/detail/scheduler.hpp>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

namespace fibers::detail {

namespace {

// The count of the io_context's pending work (handlers, operations, work
// guards) that Asio keeps and does not show: its scheduler's member, named
// through an explicit instantiation, where access is not checked.
struct outstanding_work_member {
    using type = boost::asio::detail::atomic_count boost::asio::detail::scheduler::*;
    friend type member(outstanding_work_member);
};
template <class Tag, typename Tag::type Member>
struct expose {
    friend typename Tag::type member(Tag) { return Member; }
};
template struct expose<outstanding_work_member, &boost::asio::detail::scheduler::outstanding_work_>;

long outstanding_work(boost::asio::io_context& io) {
    auto& scheduler = boost::asio::use_service<boost::asio::detail::scheduler>(io);
    return static_cast<long>(scheduler.*member(outstanding_work_member{}));
}

// Whether this process runs one thread, the caller: then no other thread
// can ever set an event, notify a condition or fill a queue. (Linux:
// /proc/self/stat's 20th field; elsewhere the answer is no.)
bool only_thread_of_process() noexcept {
    std::FILE* f = std::fopen("/proc/self/stat", "r");
    if (f == nullptr)
        return false;
    char buffer[1024];
    std::size_t const n = std::fread(buffer, 1, sizeof buffer - 1, f);
    std::fclose(f);
    buffer[n] = '\0';
    char const* p = std::strrchr(buffer, ')'); // the command name may hold spaces
    if (p == nullptr)
        return false;
    // Fields 3 (state) to 20 (num_threads) follow.
    long threads = 0;
    int field = 2;
    for (char const* q = p + 1; *q != '\0'; ++q) {
        if (*q == ' ') {
            ++field;
            if (field == 20) {
                threads = std::strtol(q + 1, nullptr, 10);
                break;
            }
        }
    }
    return threads == 1;
}

enum class release { only_by_this_hub, only_by_this_process, maybe_elsewhere };

// Who could end the wait `r` has published.
release who_ends_wait_of(thread_state const& ts, fiber_record const& r) noexcept {
    wait_publication const& p = r.waiting;
    char const* what = p.what.load(std::memory_order_acquire);
    if (what == nullptr || p.deadline.load(std::memory_order_relaxed) != wait_publication::no_deadline)
        return release::maybe_elsewhere; // an unpublished switch, or a timer
    void const* object = p.object.load(std::memory_order_relaxed);
    if (std::strcmp(what, "join") == 0)
        return is_live_fiber_of(ts, object) ? release::only_by_this_hub : release::maybe_elsewhere;
    if (std::strcmp(what, "mutex") == 0) {
        // Only its holder releases a mutex. A waiter that is its holder has
        // been handed the lock by a release on another thread, and the wake
        // that release posts has not come yet.
        holder_reader holder = p.holder.load(std::memory_order_relaxed);
        void const* by = holder != nullptr ? holder(object) : nullptr;
        if (by == nullptr || by == &r || !is_live_fiber_of(ts, by))
            return release::maybe_elsewhere;
        return release::only_by_this_hub;
    }
    for (char const* local : {"event", "condition", "queue get", "queue put", "queue join"})
        if (std::strcmp(what, local) == 0)
            return release::only_by_this_process;
    return release::maybe_elsewhere; // sleep, asio, switch_back, futures, pools
}

// Resumes the root fiber with the error.
struct deadlock_entry final : ready_entry {
    std::exception_ptr error;
    deadlock_entry(fiber_record* root, std::exception_ptr e) : error(std::move(e)) {
        resumes = root;
        take = &deliver;
        discard = &drop;
    }
    static resumption deliver(ready_entry& e) {
        std::unique_ptr<deadlock_entry> self(static_cast<deadlock_entry*>(&e));
        return {self->resumes, nullptr, std::move(self->error)};
    }
    static void drop(ready_entry& e) noexcept { delete static_cast<deadlock_entry*>(&e); }
};

} // namespace

bool find_deadlock(hub& h, long own_work) {
    thread_state& ts = hub_access::thread(h);
    fiber_record* const hub_fiber = hub_access::record(h);
    fiber_record* const root = ts.root;
    if (ts.current != hub_fiber || root->waiting.what.load(std::memory_order_relaxed) == nullptr)
        return false; // the root does not wait, or not on something known
    if (!hub_access::nothing_queued(h) || outstanding_work(h.loop()) != own_work)
        return false; // a fiber or a callback is due, or a handler, timer or I/O is pending
    bool needs_only_thread = false;
    auto closed = [&](fiber_record const& r) {
        if (&r == hub_fiber || r.status.load(std::memory_order_relaxed) != fiber_status::started)
            return true; // the hub itself; a fiber never started only starts if another runs
        switch (who_ends_wait_of(ts, r)) {
        case release::only_by_this_hub:
            return true;
        case release::only_by_this_process:
            needs_only_thread = true;
            return true;
        case release::maybe_elsewhere:
            break;
        }
        return false;
    };
    if (!closed(*root))
        return false;
    for (fiber_record const* r = ts.newest_live; r != nullptr; r = r->older_live)
        if (!closed(*r))
            return false;
    if (needs_only_thread && !only_thread_of_process())
        return false;
    std::string message = "fibers: deadlock: no fiber of thread " + std::to_string(ts.os_thread_id) +
                          " can ever be resumed; each waits on what only another can release:\n" +
                          describe_waits(ts);
    try {
        hub_access::push(h, *new deadlock_entry(root, std::make_exception_ptr(deadlock(message))));
    } catch (...) {
        return false; // out of memory: the hang it is, silent
    }
    return true;
}

} // namespace fibers::detail
