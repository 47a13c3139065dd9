// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_SRC_WATCHDOG_HPP
#define FIBERS_SRC_WATCHDOG_HPP

// hub::set_watchdog's helper thread. Private to the library.

#include <fibers/detail/thread_state.hpp>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace fibers {
class hub;
}

namespace fibers::detail {

// Samples, from a thread of its own, which fiber of the hub's thread runs
// and how far the hub's dispatching got; when neither moved for the
// threshold while the loop had work, a fiber holds the loop: it logs that
// fiber's name and counts a stall, once per stall. Stopped and joined by
// its destructor, before the hub goes.
class hub_watchdog {
public:
    hub_watchdog(hub& h, std::chrono::milliseconds threshold);
    hub_watchdog(hub_watchdog const&) = delete;
    hub_watchdog& operator=(hub_watchdog const&) = delete;
    ~hub_watchdog();

    void set_threshold(std::chrono::milliseconds threshold);

private:
    void watch();

    hub& hub_;
    thread_state& owner_;
    std::mutex mutex_;
    std::condition_variable changed_;
    bool stopping_ = false;                // guarded by mutex_
    std::chrono::milliseconds threshold_; // guarded by mutex_
    std::thread thread_;
};

} // namespace fibers::detail

#endif // FIBERS_SRC_WATCHDOG_HPP
