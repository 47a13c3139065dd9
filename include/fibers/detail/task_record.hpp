// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_DETAIL_TASK_RECORD_HPP
#define FIBERS_DETAIL_TASK_RECORD_HPP

#include <fibers/detail/fiber_record.hpp>
#include <fibers/detail/ready_queue.hpp>
#include <fibers/detail/scheduled_fiber.hpp>

#include <boost/intrusive/list.hpp>

#include <any>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace fibers {
class hub;
}

namespace fibers::detail {

struct hub_mailbox;

// A fiber waiting for a task to end, listed in the task; woken when it does.
// Safe-link hooks: a waiter taken off the list to be woken reads as
// unlinked, so that its owner's unlink afterwards does nothing.
struct join_waiter : boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::safe_link>> {
    virtual void wake() noexcept = 0;

protected:
    ~join_waiter() = default;
};

using joiner_list = boost::intrusive::list<join_waiter, boost::intrusive::constant_time_size<false>>;

// A fiber scheduled by its hub (Gruvi's Fiber).
class task_record : public scheduled_fiber {
public:
    task_record() noexcept;
    ~task_record() override;
    std::size_t describe(char* buffer, std::size_t capacity) const noexcept override;
    void ended_unrun() noexcept override;
    bool rearm_interruption(std::exception_ptr const& e) noexcept override;
    char const* kind() const noexcept override { return "task"; }
    // "Fiber-N" unless it was given a name; made on first demand.
    std::string const& name() const;

    // For requests from other threads. The task's parent, the hub's fiber,
    // keeps it alive: a task is made with the hub as its parent, and only an
    // unwinding gives it another, before which the task takes a reference
    // of its own (before_parent_change). That spares two atomic operations
    // per task.
    hub_mailbox* mailbox = nullptr;
    bool counts_mailbox = false;
    void before_parent_change() noexcept override;
    std::string given_name;
    mutable std::string made_name;

    bool start_requested = false;
    ready_entry start_entry;
    bool cancel_requested = false;
    std::string cancel_message;
    ready_entry cancel_entry;
    // Takes the start and cancel entries off the hub's queue, if there.
    void unqueue_entries() noexcept;

    bool done = false; // its end was processed: done callbacks ran, joiners woken
    std::vector<std::pair<std::size_t, std::function<void()>>> done_callbacks;
    std::size_t next_callback_id = 1;
    joiner_list joiners; // newest first, the order they are woken in
};

// The end of a task, in the task (or in the hub at close, for one that never
// ran): runs the done callbacks, wakes the joiners, lets go of the hub.
void end_task(task_record& t) noexcept;

// Runs a task's target through `invoke(target)`: a pending cancellation
// first, then the target; a `cancelled` ends it quietly, anything else is
// logged with the task's name; then the done callbacks and the joiners.
std::any run_as_task(std::any (*invoke)(void*), void* target);

// The target of a task record: the user's callable, run as a task.
template <class Fn>
struct task_body {
    Fn fn;
    std::any operator()() { return run_as_task(&invoke, &fn); }
    static std::any invoke(void* target) { return invoke_target(*static_cast<Fn*>(target)); }
};

enum class task_start : bool { later, at_once };

// Makes `record` a task of `on` (null: this thread's hub), a child of the
// hub's fiber named `name` (empty: "Fiber-N"), and starts it if `when` is
// at_once. Deletes it and throws on error: fibers::error for a closed hub,
// std::invalid_argument for a hub of another thread.
void attach_task(task_record* record, std::string name, hub* on, task_start when);

} // namespace fibers::detail

#endif // FIBERS_DETAIL_TASK_RECORD_HPP
