// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_FIBERS_HPP
#define FIBERS_FIBERS_HPP

// The whole library.

#include <fibers/diagnostics.hpp>
#include <fibers/errors.hpp>
#include <fibers/fiber.hpp>
#include <fibers/futures.hpp>
#include <fibers/hub.hpp>
#include <fibers/io.hpp>
#include <fibers/local.hpp>
#include <fibers/log.hpp>
#include <fibers/poller.hpp>
#include <fibers/scope.hpp>
#include <fibers/stack.hpp>
#include <fibers/switch_back.hpp>
#include <fibers/switchpoint.hpp>
#include <fibers/sync.hpp>
#include <fibers/task.hpp>
#include <fibers/yield.hpp>

#endif // FIBERS_FIBERS_HPP
