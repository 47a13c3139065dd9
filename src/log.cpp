// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#include <fibers/log.hpp>

#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>

namespace fibers {
namespace {

std::atomic<log_level> min_level{log_level::warning};

std::mutex handler_mutex;
// Shared so that a handler replaced while another thread is inside it stays
// alive until that call returns.
std::shared_ptr<log_handler> installed_handler;

void write_to_stderr(log_level level, std::string_view message) noexcept {
    std::fprintf(stderr, "fibers: %s: %.*s\n", to_string(level), static_cast<int>(message.size()),
                 message.data());
}

} // namespace

char const* to_string(log_level level) noexcept {
    switch (level) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warning: return "warning";
    case log_level::error: return "error";
    }
    return "?";
}

log_handler set_log_handler(log_handler handler) {
    auto next = handler ? std::make_shared<log_handler>(std::move(handler)) : nullptr;
    std::lock_guard<std::mutex> lock(handler_mutex);
    log_handler previous = installed_handler ? *installed_handler : log_handler();
    installed_handler = std::move(next);
    return previous;
}

void set_log_level(log_level level) noexcept { min_level.store(level, std::memory_order_relaxed); }

log_level get_log_level() noexcept { return min_level.load(std::memory_order_relaxed); }

void log(log_level level, std::string_view message) noexcept {
    if (level < min_level.load(std::memory_order_relaxed))
        return;
    std::shared_ptr<log_handler> handler;
    {
        std::lock_guard<std::mutex> lock(handler_mutex);
        handler = installed_handler;
    }
    if (handler) {
        try {
            (*handler)(level, message);
            return;
        } catch (...) {
        }
    }
    write_to_stderr(level, message);
}

} // namespace fibers
