// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_LOG_HPP
#define FIBERS_LOG_HPP

#include <functional>
#include <string_view>

namespace fibers {

enum class log_level { debug, info, warning, error };

/// Where the library reports what it cannot throw: an exception escaping a
/// task or a loop callback, a fiber that swallowed its unwinding. Called from
/// whichever thread hit the problem, never on a hot path.
using log_handler = std::function<void(log_level, std::string_view message)>;

/// Installs `handler` (an empty one restores the default, which writes
/// warnings and errors to stderr) and returns the previous one. Thread-safe.
log_handler set_log_handler(log_handler handler);

/// Messages below `level` are dropped before formatting. Default: warning.
void set_log_level(log_level level) noexcept;
log_level get_log_level() noexcept;

/// Sends `message` to the handler if `level` is enabled. A handler that
/// throws is bypassed for that message, which then goes to stderr.
void log(log_level level, std::string_view message) noexcept;

char const* to_string(log_level level) noexcept;

} // namespace fibers

#endif // FIBERS_LOG_HPP
