// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_DETAIL_DURATION_HPP
#define FIBERS_DETAIL_DURATION_HPP

// How every public function taking a std::chrono duration reads it: as
// whole nanoseconds of the steady clock, rounded up, and saturated. A
// duration past what the clock can count (hours::max(), 1e300 seconds, an
// infinite double) means "for ever", never a wrapped-around "now"; a
// negative one, or a NaN, means "already passed".

#include <chrono>

namespace fibers::detail {

// `d` as nanoseconds in [0, nanoseconds::max()]: 0 for a zero, negative or
// NaN duration, nanoseconds::max() for one that does not fit.
template <class Rep, class Period>
constexpr std::chrono::nanoseconds saturated_nanoseconds(std::chrono::duration<Rep, Period> d) noexcept {
    using std::chrono::nanoseconds;
    if (!(d > d.zero()))
        return nanoseconds::zero();
    // Compared in a floating type wide enough to hold both without
    // overflowing: the conversion of hours::max() to nanoseconds would.
    using wide = std::chrono::duration<long double, std::nano>;
    if (std::chrono::duration_cast<wide>(d) >= std::chrono::duration_cast<wide>(nanoseconds::max()))
        return nanoseconds::max();
    return std::chrono::ceil<nanoseconds>(d);
}

// `now + d` on the steady clock, time_point::max() where that would
// overflow; a negative or NaN `d` is `now`.
template <class Rep, class Period>
std::chrono::steady_clock::time_point saturated_deadline(std::chrono::steady_clock::time_point now,
                                                         std::chrono::duration<Rep, Period> d) noexcept {
    using clock = std::chrono::steady_clock;
    std::chrono::nanoseconds const ns = saturated_nanoseconds(d);
    if (ns >= clock::time_point::max() - now)
        return clock::time_point::max();
    return now + ns;
}

} // namespace fibers::detail

#endif // FIBERS_DETAIL_DURATION_HPP
