// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#include "format.hpp"
#include "task_internals.hpp"

#include <fibers/log.hpp>
#include <fibers/switch_back.hpp>
#include <fibers/switchpoint.hpp>
#include <fibers/task.hpp>

#include <algorithm>
#include <cstring>
#include <string>

namespace fibers {

namespace detail {

namespace {

// The entries a task queues in its hub: its first run, its cancellation.
resumption take_start(ready_entry& e) { return {e.resumes}; }

resumption take_cancel(ready_entry& e) {
    auto* t = static_cast<task_record*>(e.resumes);
    switch (t->status.load(std::memory_order_relaxed)) {
    case fiber_status::created:
        // It has not run: start it now; it sees the request before its target.
        t->start_entry.unqueue();
        return {t};
    case fiber_status::started:
        t->cancel_requested = false;
        take_due_interruption(t); // delivered now, whether or not it was
        return {t, nullptr, std::make_exception_ptr(task_cancellation(t->cancel_message, t))};
    case fiber_status::ended:
        break;
    }
    return {};
}

void link_joiner(task_record& task, join_waiter& j) noexcept { task.joiners.push_front(j); }

// Once woken, a waiter is no longer listed: unlinking does nothing.
void unlink_joiner(task_record& task, join_waiter& j) noexcept {
    if (j.is_linked())
        task.joiners.erase(task.joiners.iterator_to(j));
}

// A fiber waiting in task::join(): woken by the task's end, through its hub.
struct stack_joiner final : join_waiter {
    struct entry : ready_entry {
        stack_joiner* joiner = nullptr;
    } resume_entry;
    task_record& task;
    bool woken = false;

    stack_joiner(task_record& t, fiber_record* waiting) : task(t) {
        resume_entry.joiner = this;
        resume_entry.resumes = waiting;
        resume_entry.take = [](ready_entry& e) -> resumption {
            static_cast<entry&>(e).joiner->woken = true;
            return {e.resumes};
        };
        link_joiner(task, *this);
    }
    ~stack_joiner() {
        unlink_joiner(task, *this);
    }
    void wake() noexcept override {
        if (task.owner != nullptr && hub_access::is_open(*task.owner))
            hub_access::push(*task.owner, resume_entry);
    }
};

// The same for join(timeout): woken through a switch_back.
struct timed_joiner final : join_waiter {
    task_record& task;
    switch_back<> wakeup;
    timed_joiner(task_record& t, switch_back<> const& sb) : task(t), wakeup(sb) { link_joiner(task, *this); }
    ~timed_joiner() { unlink_joiner(task, *this); }
    void wake() noexcept override { wakeup.switch_to(); }
};

} // namespace

task_record::task_record() noexcept {
    start_entry.resumes = this;
    start_entry.take = &take_start;
    cancel_entry.resumes = this;
    cancel_entry.take = &take_cancel;
}

void task_record::unqueue_entries() noexcept {
    start_entry.unqueue();
    cancel_entry.unqueue();
}

task_record::~task_record() {
    if (counts_mailbox)
        intrusive_ptr_release(mailbox);
}

void task_record::before_parent_change() noexcept {
    if (mailbox != nullptr && !counts_mailbox) {
        intrusive_ptr_add_ref(mailbox);
        counts_mailbox = true;
    }
}

std::string const& task_record::name() const {
    if (!given_name.empty())
        return given_name;
    if (made_name.empty())
        made_name = "Fiber-" + std::to_string(schedule_number);
    return made_name;
}

std::size_t task_record::describe(char* buffer, std::size_t capacity) const noexcept {
    // Without allocating: this also runs in a signal handler.
    text_writer out(buffer, capacity);
    if (!given_name.empty())
        out.put(given_name.data(), given_name.size());
    else
        out.put("Fiber-").put_dec(schedule_number);
    return out.size();
}

void task_record::ended_unrun() noexcept { end_task(*this); }

bool task_record::rearm_interruption(std::exception_ptr const& e) noexcept {
    try {
        std::rethrow_exception(e);
    } catch (task_cancellation const& c) {
        if (c.task != this)
            return false;
    } catch (...) {
        return false;
    }
    cancel_requested = true;
    if (!cancel_entry.queued())
        hub_access::push(*owner, cancel_entry);
    return true;
}

void attach_task(task_record* record, std::string name, hub* on, task_start when) {
    hub* h = on;
    try {
        if (h == nullptr)
            h = &get_hub();
    } catch (...) {
        delete record;
        throw;
    }
    // Named before it is scheduled: from then on, other threads' dumps
    // read the name (its number, the hub sets before that too).
    record->given_name = std::move(name);
    hub_access::schedule(*h, record); // deletes it if it throws
    record->mailbox = &hub_access::mailbox(*h); // kept by the parent, the hub's fiber
    if (when == task_start::at_once) {
        // What task::start checks, schedule has: this cannot fail.
        record->start_requested = true;
        hub_access::adopt_unshared(*h, record);
        hub_access::push(*h, record->start_entry);
    }
}

std::any run_as_task(std::any (*invoke)(void*), void* target) {
    auto& self = static_cast<task_record&>(*current_thread_state->current);
    std::any result;
    try {
        if (self.cancel_requested) {
            self.cancel_requested = false;
            throw cancelled(self.cancel_message);
        }
        result = invoke(target);
    } catch (cancelled const&) {
        // The way a task is asked to stop: it ends quietly.
    } catch (forced_unwind const&) {
        end_task(self);
        throw;
    } catch (...) {
        log(log_level::error,
            "task " + self.name() + " ended with an exception: " + describe_exception(std::current_exception()));
    }
    end_task(self);
    return result;
}

void end_task(task_record& t) noexcept {
    if (std::exchange(t.done, true))
        return;
    auto callbacks = std::move(t.done_callbacks);
    for (auto& [id, fn] : callbacks) {
        try {
            fn();
        } catch (...) {
            log(log_level::error, "done callback of task " + t.name() + " threw: " +
                                      describe_exception(std::current_exception()));
        }
    }
    while (!t.joiners.empty()) {
        join_waiter& j = t.joiners.front();
        t.joiners.pop_front();
        j.wake();
    }
    t.unqueue_entries();
    if (t.owner != nullptr)
        hub_access::release(*t.owner, &t);
}

void sleep_for(std::chrono::nanoseconds d) {
    hub& h = get_hub();
    hub_access::check_may_wait(h);
    auto const until = saturated_deadline(std::chrono::steady_clock::now(), d);
    published_wait note("sleep", waited_object::none, nullptr, publication_deadline(until));
    hub_access::sleep_until(h, until);
}

} // namespace detail

using detail::hub_access;

bool task::on_own_thread(detail::task_record const& t) noexcept {
    detail::thread_state const* ts = detail::current_thread_state;
    return ts != nullptr && ts->anchor == t.anchor;
}

detail::task_record& task::record() const {
    detail::fiber_record* r = detail::fiber_access::record(*this);
    if (r == nullptr)
        throw error("fibers: empty task handle");
    return static_cast<detail::task_record&>(*r);
}

std::string const& task::name() const { return record().name(); }

void task::start() {
    detail::task_record& t = record();
    if (t.status.load(std::memory_order_relaxed) != detail::fiber_status::created || t.start_requested)
        throw error("fibers: task " + t.name() + " was already started");
    if (!on_own_thread(t) || t.owner == nullptr)
        throw error("fibers: a task is started from its hub's thread");
    if (!hub_access::is_open(*t.owner))
        throw error("fibers: the hub is closed");
    t.start_requested = true;
    hub_access::adopt(*t.owner, &t);
    hub_access::push(*t.owner, t.start_entry);
}

void task::cancel(std::string message) {
    detail::task_record& t = record();
    if (!is_alive())
        return;
    // The task's own anchor says whose thread this is, without touching a
    // hub that may be gone.
    if (!on_own_thread(t)) {
        // From another thread: the request travels through the hub's
        // mailbox, which may be closed, and the hub gone.
        auto* request = new detail::callback_entry<std::function<void()>>(
            std::function<void()>([self = *this, message = std::move(message)]() mutable {
                self.cancel(std::move(message));
            }));
        if (!hub_access::push_from_anywhere(*t.mailbox, *request))
            request->discard(*request);
        return;
    }
    if (t.done || t.owner == nullptr || !hub_access::is_open(*t.owner))
        return;
    t.cancel_message = std::move(message);
    t.cancel_requested = true;
    if (!t.start_requested) {
        t.start_requested = true;
        hub_access::adopt(*t.owner, &t);
    }
    if (!t.cancel_entry.queued())
        hub_access::push(*t.owner, t.cancel_entry);
}

detail::task_record* task::record_to_join() const {
    switchpoint(); // first, even when there is nothing to wait for
    detail::task_record& t = record();
    if (t.done || !is_alive())
        return nullptr;
    hub_access::check_may_wait(*t.owner);
    if (detail::current_thread_state->current == &t)
        throw error("fibers: a task cannot join itself");
    return &t;
}

void task::join() {
    detail::task_record* pending = record_to_join();
    if (pending == nullptr)
        return;
    detail::task_record& t = *pending;
    hub& h = *t.owner;
    detail::stack_joiner joiner(t, detail::current_thread_state->current);
    detail::published_wait note("join", detail::waited_object::fiber, &t);
    try {
        while (!joiner.woken) {
            h.switch_to();
            if (!joiner.woken && t.done)
                break;
        }
    } catch (...) {
        // The task had ended: the join is over, and the interruption comes
        // at the next wait. (The joiner takes its resumption back.)
        if (!t.done || !detail::defer_interruption(std::current_exception()))
            throw;
    }
}

void task::join_for(std::chrono::nanoseconds timeout) {
    detail::task_record* pending = record_to_join();
    if (pending == nullptr)
        return;
    switch_back<> wakeup(timeout);
    detail::timed_joiner joiner(*pending, wakeup);
    detail::published_wait note("join", detail::waited_object::fiber, pending,
                                detail::publication_deadline(detail::saturated_deadline(
                                    std::chrono::steady_clock::now(), timeout)));
    wakeup.wait();
}

std::size_t task::add_done_callback_erased(std::function<void()> fn) {
    detail::task_record& t = record();
    if (!on_own_thread(t))
        throw error("fibers: add_done_callback from another thread than the task's");
    std::size_t id = t.next_callback_id++;
    if (t.done || !is_alive()) {
        fn();
        return id;
    }
    t.done_callbacks.emplace_back(id, std::move(fn));
    return id;
}

void task::remove_done_callback(std::size_t handle) {
    detail::task_record& t = record();
    if (!on_own_thread(t))
        throw error("fibers: remove_done_callback from another thread than the task's");
    auto& callbacks = t.done_callbacks;
    callbacks.erase(std::remove_if(callbacks.begin(), callbacks.end(),
                                   [handle](auto const& entry) { return entry.first == handle; }),
                    callbacks.end());
}

fiber current_fiber() { return fiber::current(); }

task current_task() {
    detail::thread_state const* ts = detail::current_thread_state;
    if (ts == nullptr || dynamic_cast<detail::task_record*>(ts->current) == nullptr)
        return task();
    return task(detail::fiber_access::share(ts->current));
}

} // namespace fibers
