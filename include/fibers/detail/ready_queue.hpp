// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_DETAIL_READY_QUEUE_HPP
#define FIBERS_DETAIL_READY_QUEUE_HPP

// The hub's run queue: what runs in its next loop iterations, FIFO.
//
// Entries are intrusive and most live inside the object that queued them
// (a waiting fiber's frame, a switch_back's state, a task), so that a
// resumption allocates nothing. An entry that goes away while queued
// unlinks itself (an auto-unlink hook); the queue is touched only on the
// hub's thread.

#include <fibers/detail/config.hpp>

#include <boost/intrusive/list.hpp>

#include <any>
#include <cstddef>
#include <exception>
#include <utility>

namespace fibers::detail {

class fiber_record;

// A fiber to resume and the message it gets.
struct resumption {
    fiber_record* target = nullptr; // null: nothing to resume after all
    std::any* value = nullptr;      // null: an empty value
    std::exception_ptr error;       // raised in the target instead

    resumption() = default;
    resumption(fiber_record* t, std::any* v = nullptr, std::exception_ptr e = nullptr) noexcept
        : target(t), value(v), error(std::move(e)) {}
};

// One of two kinds, so that most entries can be dispatched by any fiber
// that waits on the hub, without a trip through the hub fiber:
struct ready_entry : boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
    // A callback: runs in the hub fiber, once unlinked. May destroy the entry.
    void (*run)(ready_entry& self) = nullptr;
    // Or a resumption: does the entry's bookkeeping, once unlinked, and says
    // whom to resume. May destroy the entry.
    resumption (*take)(ready_entry& self) = nullptr;
    // Disposes of an entry that will never run (its hub closed); null for
    // entries that their owner disposes of.
    void (*discard)(ready_entry& self) noexcept = nullptr;
    // The fiber a resumption is meant for, null for a callback: list_fibers
    // shows it `ready` while the entry is queued. Entries keep their target
    // here rather than in a field of their own, so it costs no store more.
    fiber_record* resumes = nullptr;

    bool queued() const noexcept { return is_linked(); }
    // Takes the entry out of its queue, if it is in one.
    void unqueue() noexcept { unlink(); }
};

// The rule for an exception thrown into a waiting fiber (task::cancel's
// `cancelled`, keyboard_interrupt, a switch_back's throw_to) that reaches
// it after what it waited for had come: the wait returns what it got, and
// the exception is thrown into the fiber at its next wait on its hub
// instead, so that nothing completed is lost. Queues it for that, or, for a
// task's own cancellation, re-arms the cancellation (later cancels merge
// with it), and returns true. False, with nothing queued, when it must
// propagate at once: it unwinds a dropped fiber, the fiber has no live hub
// to wait on, or another such exception is pending for it already.
bool defer_interruption(std::exception_ptr const& e) noexcept;

class ready_queue {
public:
    ready_queue() = default;
    ready_queue(ready_queue const&) = delete;
    ready_queue& operator=(ready_queue const&) = delete;

    bool empty() const noexcept { return entries_.empty(); }
    ready_entry* front() noexcept { return entries_.empty() ? nullptr : &entries_.front(); }

    void push_back(ready_entry& e) noexcept { entries_.push_back(e); }

    ready_entry* pop_front() noexcept {
        if (entries_.empty())
            return nullptr;
        ready_entry& e = entries_.front();
        entries_.pop_front();
        return &e;
    }

    template <class Each>
    void for_each(Each&& each) const {
        for (ready_entry const& e : entries_)
            each(e);
    }

private:
    // Without a size: an entry unlinks itself, unknown to the queue.
    boost::intrusive::list<ready_entry, boost::intrusive::constant_time_size<false>> entries_;
};

} // namespace fibers::detail

#endif // FIBERS_DETAIL_READY_QUEUE_HPP
