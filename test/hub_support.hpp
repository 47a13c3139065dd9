// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_TEST_HUB_SUPPORT_HPP
#define FIBERS_TEST_HUB_SUPPORT_HPP

// For tests of the hub and what runs on it.

#include "test_support.hpp"

#include <fibers/hub.hpp>
#include <fibers/switch_back.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <limits>
#include <ratio>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace fibers_test {

// For a test whose fiber waits for something that might never come (a
// timeout, a resumption): if nothing has resumed the fiber that made the
// backstop after `d`, resumes it with a std::string, so that the test fails
// (the wait returns early, or throws std::bad_any_cast) instead of hanging.
// Make it in the fiber that waits; keep it alive while that fiber waits.
class backstop {
public:
    explicit backstop(std::chrono::steady_clock::duration d = std::chrono::seconds(10))
        : timer_(fibers::get_hub().loop(), d) {
        timer_.async_wait([c = rescue_](boost::system::error_code const& ec) {
            if (!ec)
                c.switch_to(std::string("backstop"));
        });
    }
    backstop(backstop const&) = delete;
    backstop& operator=(backstop const&) = delete;

private:
    fibers::switch_back<> rescue_;
    boost::asio::steady_timer timer_;
};

// An ordered record of what happened, for tests about the order of events.
// Used from one thread (the fibers of one hub).
struct event_log {
    std::vector<std::string> events;
    void operator()(std::string e) { events.push_back(std::move(e)); }
};

// Durations past what the steady clock counts in nanoseconds: each means
// "for ever" to a function that takes a timeout.
inline auto durations_too_long_for_the_clock() {
    return std::make_tuple(std::chrono::hours::max(), std::chrono::nanoseconds::max(),
                           std::chrono::duration<double>(1e300),
                           std::chrono::duration<double>(std::numeric_limits<double>::infinity()),
                           std::chrono::duration<float, std::ratio<3600>>(1e30f),
                           std::chrono::duration<long long, std::ratio<31556952>>(std::numeric_limits<long long>::max()));
}

// Durations that have passed already: zero, negative ones down to their
// limits, and a NaN.
inline auto durations_already_passed() {
    return std::make_tuple(std::chrono::seconds(0), std::chrono::seconds(-1), std::chrono::hours::min(),
                           std::chrono::nanoseconds::min(), std::chrono::duration<double>(-1e300),
                           std::chrono::duration<double>(-std::numeric_limits<double>::infinity()),
                           std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN()));
}

// Calls fn(d) for each duration of the tuple.
template <class Tuple, class Fn>
void for_each_duration(Tuple const& durations, Fn fn) {
    std::apply([&fn](auto const&... d) { (fn(d), ...); }, durations);
}

} // namespace fibers_test

#endif // FIBERS_TEST_HUB_SUPPORT_HPP
