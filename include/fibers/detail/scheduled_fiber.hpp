// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_DETAIL_SCHEDULED_FIBER_HPP
#define FIBERS_DETAIL_SCHEDULED_FIBER_HPP

// What a hub schedules: the hub layer's base of a task's record.

#include <fibers/detail/fiber_record.hpp>

#include <boost/intrusive/list.hpp>

#include <cstdint>
#include <exception>

namespace fibers {
class hub;
}

namespace fibers::detail {

// A child of its hub's fiber that only the hub switches to. The hub lists
// it from its making, holds a reference to it from its start to its end,
// and at its close unwinds it, or discards it if it never ran.
class scheduled_fiber : public fiber_record {
public:
    ~scheduled_fiber() override; // leaves its hub's list

    bool accepts_switch_from(fiber_record const* switcher) const noexcept final { return switcher == scheduler; }
    bool accepts_any_switcher() const noexcept final { return false; }

    // Its hub closed before it ran: its target is gone, it has ended; what
    // the layer above does at a fiber's end comes now.
    virtual void ended_unrun() noexcept = 0;
    // An exception thrown into it after what it waited for had come (see
    // defer_interruption): true if it is its own kind of request, re-armed
    // to come at its next wait; false to defer it as any other.
    virtual bool rearm_interruption(std::exception_ptr const& e) noexcept = 0;

    hub* owner = nullptr;                  // null once its hub is gone; used on its thread
    fiber_record const* scheduler = nullptr; // the hub's fiber
    // Its place among the fibers its hub has scheduled, from 1: set before
    // other threads can list it, so that a name made from it reads whole.
    std::uint64_t schedule_number = 0;

    // In the hub's list of the fibers it schedules that have not ended.
    boost::intrusive::list_member_hook<boost::intrusive::link_mode<boost::intrusive::safe_link>> scheduled_hook;
    bool held_by_hub = false;

protected:
    scheduled_fiber() = default;
};

// A hub's unended fibers, newest first.
using scheduled_fibers = boost::intrusive::list<
    scheduled_fiber,
    boost::intrusive::member_hook<scheduled_fiber, decltype(scheduled_fiber::scheduled_hook),
                                  &scheduled_fiber::scheduled_hook>,
    boost::intrusive::constant_time_size<false>>;

} // namespace fibers::detail

#endif // FIBERS_DETAIL_SCHEDULED_FIBER_HPP
