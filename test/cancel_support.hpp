// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_TEST_CANCEL_SUPPORT_HPP
#define FIBERS_TEST_CANCEL_SUPPORT_HPP

// For the rule that an interruption (a task's cancel...) that reaches a
// wait after it completed lets the wait return its result and comes at the
// next wait instead: what a next wait does, and a reader cancelled at
// random while a writer streams to it, on real loopback sockets, which must
// lose no byte.

#include "socket_support.hpp"

#include <fibers/task.hpp>
#include <fibers/yield.hpp>

#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/system/error_code.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <exception>
#include <random>
#include <string>
#include <vector>

namespace fibers_test {

// An Asio operation that has completed by the time its caller waits (its
// handler is posted as it starts), counting its starts: the load of a
// server whose every read finds data and every write finds room.
template <class Token>
auto async_at_once(boost::asio::io_context& io, int& starts, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [&io, &starts](auto handler) {
            ++starts;
            boost::asio::post(io, [h = std::move(handler)]() mutable { std::move(h)(boost::system::error_code()); });
        },
        token);
}

// What a sleep of `d` (the calling fiber's next wait) did, in words.
inline std::string what_a_sleep_does(std::chrono::milliseconds d) {
    auto const start = std::chrono::steady_clock::now();
    try {
        fibers::sleep(d);
        return std::chrono::steady_clock::now() - start >= d ? "slept" : "returned early";
    } catch (fibers::timeout const&) {
        return "threw timeout";
    } catch (fibers::cancelled const&) {
        return "threw cancelled";
    } catch (std::exception const& e) {
        return std::string("threw ") + e.what();
    }
}

struct random_cancel_report {
    std::size_t received = 0; // bytes, each checked against the byte sent
    std::size_t cancels = 0;  // fibers::cancelled caught by the reader
    std::string failure;      // empty, or what went wrong
};

inline unsigned char streamed_byte(std::size_t i) { return static_cast<unsigned char>((i * 7919 + i / 251) & 0xff); }

// On the calling fiber's hub: a writer task sends `total` bytes in chunks of
// random sizes with random pauses; a reader task calls `read_some(server,
// buffer, ec)` until it has them all, catching fibers::cancelled and reading
// on; a third task cancels the reader after a random number of turns, again
// and again, until the reader ends. Seeds make a run reproducible.
template <class ReadSome>
random_cancel_report read_while_cancelled_at_random(ReadSome read_some, std::size_t total, unsigned seed) {
    auto& io = fibers::get_hub().loop();
    auto [client, server] = connected_pair(io);
    random_cancel_report report;
    fibers::task reader = fibers::spawn([&, &server = server] {
        unsigned char buffer[700];
        while (report.received < total) {
            try {
                boost::system::error_code ec;
                std::size_t const n = read_some(server, boost::asio::buffer(buffer), ec);
                if (ec) {
                    report.failure = "read: " + ec.message() + " after " + std::to_string(report.received) + " bytes";
                    return;
                }
                for (std::size_t k = 0; k < n; ++k)
                    if (buffer[k] != streamed_byte(report.received + k)) {
                        report.failure = "byte " + std::to_string(report.received + k) + " differs from the byte sent";
                        return;
                    }
                report.received += n;
            } catch (fibers::cancelled const&) {
                ++report.cancels;
            }
        }
    });
    fibers::task writer = fibers::spawn([&, &client = client] {
        std::minstd_rand random(seed);
        std::vector<unsigned char> chunk;
        for (std::size_t sent = 0; sent < total;) {
            std::size_t const n = std::min<std::size_t>(total - sent, 1 + random() % 1000);
            chunk.resize(n);
            for (std::size_t k = 0; k < n; ++k)
                chunk[k] = streamed_byte(sent + k);
            boost::asio::async_write(client, boost::asio::buffer(chunk), fibers::yield);
            sent += n;
            for (int turns = static_cast<int>(random() % 3); turns > 0; --turns)
                fibers::sleep(std::chrono::seconds(0));
        }
    });
    bool stop_cancelling = false;
    fibers::task canceller = fibers::spawn([&] {
        std::minstd_rand random(seed + 1);
        while (reader.alive() && !stop_cancelling) {
            for (int turns = static_cast<int>(random() % 4); turns > 0; --turns)
                fibers::sleep(std::chrono::seconds(0));
            reader.cancel();
        }
    });
    writer.join();
    try {
        reader.join(std::chrono::seconds(10));
    } catch (fibers::timeout const&) {
        // Bytes were lost, or no read ever completed: the reader would wait
        // for ever. The end of the stream stops it.
        stop_cancelling = true;
        canceller.join();
        client.close();
        reader.join();
        if (report.failure.empty())
            report.failure = "the reader got " + std::to_string(report.received) + " bytes, and no more for 10 s";
    }
    canceller.join();
    return report;
}

} // namespace fibers_test

#endif // FIBERS_TEST_CANCEL_SUPPORT_HPP
