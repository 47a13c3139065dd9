// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_SWITCHPOINT_HPP
#define FIBERS_SWITCHPOINT_HPP

// Switchpoints: the places where a fiber may be suspended. Code that
// changes shared state in several steps can rely on no other fiber of its
// thread running in between, as long as no switchpoint is called there;
// assert_no_switchpoints turns that assumption into a check.

#include <fibers/errors.hpp>

namespace fibers {

/// Marks a function that may switch: throws switchpoint_violation inside
/// assert_no_switchpoints, and fibers::error in the hub fiber (a hub
/// callback), whether or not the caller would have to wait. Every switching
/// function of the library calls it first; call it at the top of your own.
void switchpoint();

/// While alive, any switchpoint or switch of the calling thread throws
/// switchpoint_violation. Guards nest. Create and destroy it on the same
/// fiber (it cannot switch in between anyway).
class assert_no_switchpoints {
public:
    assert_no_switchpoints();
    ~assert_no_switchpoints();
    assert_no_switchpoints(assert_no_switchpoints const&) = delete;
    assert_no_switchpoints& operator=(assert_no_switchpoints const&) = delete;
};

} // namespace fibers

#endif // FIBERS_SWITCHPOINT_HPP
