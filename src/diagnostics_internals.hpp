// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_SRC_DIAGNOSTICS_INTERNALS_HPP
#define FIBERS_SRC_DIAGNOSTICS_INTERNALS_HPP

// What src/diagnostics.cpp offers the hub's own checks (the deadlock
// report). Private to the library.

#include "fiber_registry.hpp"

#include <string>

namespace fibers::detail {

// "  name: what it waits on" for each fiber of the calling thread, `ts`.
std::string describe_waits(thread_state const& ts);

} // namespace fibers::detail

#endif // FIBERS_SRC_DIAGNOSTICS_INTERNALS_HPP
