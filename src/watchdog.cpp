// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#include "watchdog.hpp"

#include "fiber_registry.hpp"
#include "hub_internals.hpp"

#include <fibers/log.hpp>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace fibers {

namespace detail {

hub_watchdog::hub_watchdog(hub& h, std::chrono::milliseconds threshold)
    : hub_(h), owner_(hub_access::thread(h)), threshold_(threshold) {
    thread_ = std::thread([this] { watch(); });
}

hub_watchdog::~hub_watchdog() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    changed_.notify_all();
    thread_.join();
}

void hub_watchdog::set_threshold(std::chrono::milliseconds threshold) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        threshold_ = threshold;
    }
    changed_.notify_all();
}

void hub_watchdog::watch() {
    using clock = std::chrono::steady_clock;
    std::unique_lock<std::mutex> lock(mutex_);
    fiber_record const* last_running = nullptr;
    unsigned last_dispatched = 0;
    bool last_waiting = true;
    clock::time_point since = clock::now();
    bool reported = false;
    while (!stopping_) {
        // Four looks per threshold: a stall is seen within 1.25 thresholds.
        changed_.wait_for(lock, std::max<std::chrono::milliseconds>(threshold_ / 4, std::chrono::milliseconds(1)));
        if (stopping_)
            break;
        clock::time_point const now = clock::now();
        bool const waiting = hub_access::waiting_for_work(hub_);
        fiber_record const* const running = read_racy(owner_.current);
        unsigned const dispatched = read_racy(hub_access::dispatched(hub_));
        if (waiting || last_waiting || running != last_running || dispatched != last_dispatched) {
            last_waiting = waiting;
            last_running = running;
            last_dispatched = dispatched;
            since = now;
            reported = false;
            continue;
        }
        if (reported || now - since < threshold_)
            continue;
        reported = true;
        hub_access::count_stall(hub_);
        char name[96];
        bool const live = describe_live_fiber(owner_, running, name, sizeof name) != 0;
        auto const held = std::chrono::duration_cast<std::chrono::milliseconds>(now - since);
        char const* const who = live ? name : "a fiber that has ended";
        log(log_level::warning, std::string("fibers: watchdog: ") + who + " has held the loop of thread " +
                                    std::to_string(owner_.os_thread_id) + " for " + std::to_string(held.count()) +
                                    " ms or more without a switch (threshold " + std::to_string(threshold_.count()) +
                                    " ms)");
    }
}

} // namespace detail

void hub::set_watchdog(std::chrono::milliseconds threshold) {
    if (threshold.count() < 0)
        throw std::invalid_argument("fibers: hub::set_watchdog with a negative threshold");
    std::unique_ptr<detail::hub_watchdog> stopped;
    std::lock_guard<std::mutex> lock(watchdog_mutex_);
    if (threshold.count() == 0) {
        stopped = std::move(watchdog_); // joined once the lock is released
        return;
    }
    if (state_.load(std::memory_order_acquire) != hub_state::open)
        throw error("fibers: the hub is closed");
    if (watchdog_)
        watchdog_->set_threshold(threshold);
    else
        watchdog_ = std::make_unique<detail::hub_watchdog>(*this, threshold);
}

std::uint64_t hub::stalls() const noexcept { return stalls_.load(std::memory_order_relaxed); }

void hub::stop_watchdog() noexcept {
    std::unique_ptr<detail::hub_watchdog> stopped;
    std::lock_guard<std::mutex> lock(watchdog_mutex_);
    stopped = std::move(watchdog_);
}

} // namespace fibers
