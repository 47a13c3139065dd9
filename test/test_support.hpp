// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_TEST_TEST_SUPPORT_HPP
#define FIBERS_TEST_TEST_SUPPORT_HPP

// For tests that run on threads of their own and look at what is logged.

#include <fibers/log.hpp>

#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace fibers_test {

// Runs `fn` on a thread of its own and rethrows what escaped it: each test
// gets a fresh fiber tree, and a fresh hub closed at the end, and nothing of
// either leaks into the next test.
template <class Fn>
void on_new_thread(Fn fn) {
    std::exception_ptr failure;
    std::thread t([&] {
        try {
            fn();
        } catch (...) {
            failure = std::current_exception();
        }
    });
    t.join();
    if (failure)
        std::rethrow_exception(failure);
}

// Records what the library logs while alive.
class captured_log {
public:
    captured_log() {
        auto sink = lines_;
        previous_ = fibers::set_log_handler([sink](fibers::log_level, std::string_view message) {
            std::lock_guard<std::mutex> lock(sink->mutex);
            sink->lines.emplace_back(message);
        });
    }
    ~captured_log() { fibers::set_log_handler(previous_); }
    captured_log(captured_log const&) = delete;
    captured_log& operator=(captured_log const&) = delete;

    std::vector<std::string> lines() const {
        std::lock_guard<std::mutex> lock(lines_->mutex);
        return lines_->lines;
    }
    bool contains(std::string const& text) const {
        for (auto const& line : lines())
            if (line.find(text) != std::string::npos)
                return true;
        return false;
    }
    std::size_t size() const {
        std::lock_guard<std::mutex> lock(lines_->mutex);
        return lines_->lines.size();
    }

private:
    struct store {
        std::mutex mutex;
        std::vector<std::string> lines;
    };
    std::shared_ptr<store> lines_ = std::make_shared<store>();
    fibers::log_handler previous_;
};

} // namespace fibers_test

#endif // FIBERS_TEST_TEST_SUPPORT_HPP
