// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// A peer of test/perf/echo.sh: the echo server written with Asio's C++20
// coroutines (co_spawn, use_awaitable), as Asio's own coroutine examples do
// it. A coroutine per connection with a 16 KiB buffer in its frame (the size
// of the fibers example server's): co_await async_read_some, then
// async_write of what came. One io_context with a concurrency hint of 1, one
// thread. Accepted sockets get TCP_NODELAY, as every server of the benchmark.
// Built as C++20, the only target that is.
//
//   asio_coro_echo_server --host 127.0.0.1 --port 0
//
// Prints "listening on HOST:PORT" once it accepts; exits 0 on SIGINT or
// SIGTERM.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

asio::awaitable<void> session(tcp::socket socket) {
    char data[16 * 1024];
    try {
        for (;;) {
            std::size_t n = co_await socket.async_read_some(asio::buffer(data), asio::use_awaitable);
            co_await asio::async_write(socket, asio::buffer(data, n), asio::use_awaitable);
        }
    } catch (boost::system::system_error const&) {
        // end of stream, reset: the socket closes with the coroutine
    }
}

asio::awaitable<void> listen(tcp::acceptor& acceptor) {
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
        if (ec == asio::error::operation_aborted)
            co_return;
        if (ec)
            continue; // concerns one connection: keep accepting
        socket.set_option(tcp::no_delay(true), ec);
        asio::co_spawn(acceptor.get_executor(), session(std::move(socket)), asio::detached);
    }
}

} // namespace

int main(int argc, char** argv) {
    std::string host = "127.0.0.1";
    long port = 7000;
    for (int i = 1; i < argc; ++i) {
        std::string const arg = argv[i];
        if ((arg == "--host" || arg == "--port" || arg == "--threads") && i + 1 < argc) {
            std::string const value = argv[++i];
            if (arg == "--host")
                host = value;
            else if (arg == "--port")
                port = std::strtol(value.c_str(), nullptr, 10);
            else if (value != "1") {
                std::fprintf(stderr, "asio_coro_echo_server: one thread only (--threads 1)\n");
                return 2;
            }
        } else {
            std::fprintf(stderr, "usage: asio_coro_echo_server [--host ADDRESS] [--port PORT] [--threads 1]\n");
            return arg == "--help" || arg == "-h" ? 0 : 2;
        }
    }
    if (port < 0 || port > 65535) {
        std::fprintf(stderr, "asio_coro_echo_server: --port must be in 0..65535\n");
        return 2;
    }
    try {
        std::signal(SIGPIPE, SIG_IGN);
        asio::io_context io(1);
        tcp::acceptor acceptor(io);
        tcp::endpoint const where(asio::ip::make_address(host), static_cast<unsigned short>(port));
        acceptor.open(where.protocol());
        acceptor.set_option(tcp::acceptor::reuse_address(true));
        acceptor.bind(where);
        acceptor.listen(asio::socket_base::max_listen_connections);
        asio::signal_set signals(io, SIGINT, SIGTERM);
        signals.async_wait([&io](boost::system::error_code const& ec, int) {
            if (!ec)
                io.stop();
        });
        asio::co_spawn(io, listen(acceptor), asio::detached);
        std::cout << "listening on " << host << ":" << acceptor.local_endpoint().port() << std::endl;
        io.run();
    } catch (std::exception const& e) {
        std::cerr << "asio_coro_echo_server: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
