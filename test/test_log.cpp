// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#define BOOST_TEST_MODULE log
#include <boost/test/unit_test.hpp>

#include <fibers/log.hpp>

#include "child_process.hpp"

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

struct recorder {
    std::mutex mutex;
    std::vector<std::pair<fibers::log_level, std::string>> lines;
};

struct install {
    fibers::log_handler previous;
    explicit install(fibers::log_handler h) : previous(fibers::set_log_handler(std::move(h))) {}
    ~install() {
        fibers::set_log_handler(previous);
        fibers::set_log_level(fibers::log_level::warning);
    }
};

} // namespace

BOOST_AUTO_TEST_CASE(handler_gets_enabled_levels) {
    auto r = std::make_shared<recorder>();
    install guard([r](fibers::log_level l, std::string_view m) {
        std::lock_guard<std::mutex> lock(r->mutex);
        r->lines.emplace_back(l, std::string(m));
    });
    BOOST_TEST((fibers::get_log_level() == fibers::log_level::warning));
    fibers::log(fibers::log_level::info, "dropped");
    fibers::log(fibers::log_level::warning, "kept");
    fibers::log(fibers::log_level::error, "kept too");
    fibers::set_log_level(fibers::log_level::debug);
    fibers::log(fibers::log_level::debug, "now kept");
    BOOST_TEST_REQUIRE(r->lines.size() == 3u);
    BOOST_TEST(r->lines[0].second == "kept");
    BOOST_TEST((r->lines[1].first == fibers::log_level::error));
    BOOST_TEST(r->lines[2].second == "now kept");
}

BOOST_AUTO_TEST_CASE(set_returns_the_previous_handler) {
    int first = 0, second = 0;
    install guard([&](fibers::log_level, std::string_view) { ++first; });
    fibers::log_handler previous = fibers::set_log_handler([&](fibers::log_level, std::string_view) { ++second; });
    fibers::log(fibers::log_level::error, "x");
    BOOST_TEST(first == 0);
    BOOST_TEST(second == 1);
    fibers::set_log_handler(previous);
    fibers::log(fibers::log_level::error, "x");
    BOOST_TEST(first == 1);
}

BOOST_AUTO_TEST_CASE(default_writes_warnings_and_errors_to_stderr) {
    auto result = fibers_test::run_in_child([] {
        fibers::log(fibers::log_level::info, "quiet");
        fibers::log(fibers::log_level::warning, "careful");
        fibers::log(fibers::log_level::error, "broken");
    });
    BOOST_TEST(result.exit_code == 0);
    BOOST_TEST(result.stderr_text == "fibers: warning: careful\nfibers: error: broken\n");
}

BOOST_AUTO_TEST_CASE(throwing_handler_falls_back_to_stderr) {
    auto result = fibers_test::run_in_child([] {
        fibers::set_log_handler([](fibers::log_level, std::string_view) { throw std::runtime_error("x"); });
        fibers::log(fibers::log_level::error, "still visible");
    });
    BOOST_TEST(result.exit_code == 0);
    BOOST_TEST(result.stderr_text == "fibers: error: still visible\n");
}

BOOST_AUTO_TEST_CASE(handlers_replaced_while_logging_from_threads) {
    std::atomic<int> calls{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> loggers;
    install guard([&](fibers::log_level, std::string_view) { ++calls; });
    for (int i = 0; i < 3; ++i)
        loggers.emplace_back([&] {
            while (!stop)
                fibers::log(fibers::log_level::error, "x");
        });
    // Replace the handler over and over while the loggers use it.
    int replacements = 0;
    while (calls.load() < 10000 || replacements < 1000) {
        fibers::set_log_handler([&](fibers::log_level, std::string_view) { ++calls; });
        ++replacements;
    }
    stop = true;
    for (auto& t : loggers)
        t.join();
    BOOST_TEST(calls.load() >= 10000);
}
