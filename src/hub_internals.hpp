// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_SRC_HUB_INTERNALS_HPP
#define FIBERS_SRC_HUB_INTERNALS_HPP

// What tasks, switch_back and sleep need of the hub. Private to the library.

#include "fiber_internals.hpp"

#include <fibers/detail/task_record.hpp>
#include <fibers/errors.hpp>
#include <fibers/hub.hpp>

#include <any>
#include <exception>
#include <string>

namespace fibers::detail {

// What task::cancel throws into a task: a fibers::cancelled that knows
// whose cancellation it is, so that a wait that had completed before it
// came re-arms that task's cancellation rather than queueing it apart.
struct task_cancellation final : cancelled {
    task_record const* task;
    task_cancellation(std::string const& message, task_record const* t) : cancelled(message), task(t) {}
};

struct hub_access {
    static thread_state& thread(hub const& h) noexcept { return *h.thread_; }
    static fiber_record* record(hub const& h) noexcept { return h.record_; }
    static bool on_own_thread(hub const& h) noexcept {
        thread_state const* ts = current_thread_state;
        return ts != nullptr && ts->anchor == h.thread_->anchor;
    }
    static bool is_open(hub const& h) noexcept { return h.is_alive(); }
    // On the hub's thread: runs `e` in a coming iteration.
    static void push(hub& h, ready_entry& e) noexcept { h.push_here(e); }
    // From any thread; false (and nothing queued) if the hub has closed.
    static bool push_from_anywhere(hub_mailbox& m, ready_entry& e) noexcept;
    static hub_mailbox& mailbox(hub const& h) noexcept { return *h.mailbox_; }
    // On the hub's thread: takes back an entry pushed (from any thread) and
    // not yet run, wherever it waits: the run queue or the mailbox. Whether
    // it was there.
    static bool retract(hub& h, ready_entry& e) noexcept;
    static std::uint64_t next_task_number(hub& h) noexcept { return ++h.tasks_made_; }
    // A new task joins the hub's list; once started the hub holds a
    // reference to it until its end, which releases it.
    static void link_task(hub& h, task_record* t) noexcept { h.link_task(t); }
    static void adopt_task(hub& h, task_record* t) noexcept;
    static void release_task(hub& h, task_record* t) noexcept;
    static void forget_task(hub& h, task_record* t) noexcept { h.unlink_task(t); }
    // Throws unless the calling fiber may wait on `h`: its thread, open,
    // not the hub fiber itself. Runs switchpoint() first.
    static void check_may_wait(hub const& h);
};

} // namespace fibers::detail

#endif // FIBERS_SRC_HUB_INTERNALS_HPP
