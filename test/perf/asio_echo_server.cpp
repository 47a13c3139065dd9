// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// The anchor of test/perf/echo.sh: an echo server written the classic Asio
// way, with callbacks and no fibers, as an experienced Asio user writes one.
// Each connection is a session held by a shared_ptr, with a 16 KiB buffer
// (the size the fibers example server uses): async_read_some, then
// async_write of what came, then async_read_some again. The acceptor loops
// on async_accept. One io_context per thread, made with a concurrency hint
// of 1 (no locking, as the hub's loop); with --threads N, N of them, each
// with its own acceptor on the same port (SO_REUSEPORT), like the fibers
// server. Accepted sockets get TCP_NODELAY, as the fibers server's do.
//
//   asio_echo_server --host 127.0.0.1 --port 0 --threads 1
//
// Prints "listening on HOST:PORT" once it accepts; exits 0 on SIGINT or
// SIGTERM.

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/asio/write.hpp>
#include <boost/program_options.hpp>

#include <array>
#include <csignal>
#include <cstddef>
#include <exception>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <sys/socket.h>

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

class session : public std::enable_shared_from_this<session> {
public:
    explicit session(tcp::socket socket) : socket_(std::move(socket)) {}

    void start() { read(); }

private:
    void read() {
        socket_.async_read_some(asio::buffer(data_),
                                [self = shared_from_this()](boost::system::error_code const& ec, std::size_t n) {
                                    if (!ec)
                                        self->write(n);
                                    // eof or an error: the last reference goes, the socket closes
                                });
    }

    void write(std::size_t n) {
        asio::async_write(socket_, asio::buffer(data_, n),
                          [self = shared_from_this()](boost::system::error_code const& ec, std::size_t) {
                              if (!ec)
                                  self->read();
                          });
    }

    tcp::socket socket_;
    std::array<char, 16 * 1024> data_;
};

class server {
public:
    server(asio::io_context& io, tcp::endpoint const& where, bool share_port) : acceptor_(io) {
        acceptor_.open(where.protocol());
        acceptor_.set_option(tcp::acceptor::reuse_address(true));
        if (share_port)
            acceptor_.set_option(reuse_port(true));
        acceptor_.bind(where);
        acceptor_.listen(asio::socket_base::max_listen_connections);
    }

    tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

    void start() { accept(); }

private:
    void accept() {
        acceptor_.async_accept([this](boost::system::error_code const& ec, tcp::socket socket) {
            if (ec == asio::error::operation_aborted)
                return; // the acceptor closed
            if (!ec) {
                boost::system::error_code ignored;
                socket.set_option(tcp::no_delay(true), ignored);
                std::make_shared<session>(std::move(socket))->start();
            }
            // Other errors (out of descriptors, a connection reset before
            // it was accepted) concern one connection: keep accepting.
            accept();
        });
    }

    tcp::acceptor acceptor_;
};

} // namespace

int main(int argc, char** argv) {
    namespace po = boost::program_options;
    std::string host;
    unsigned port = 0;
    unsigned threads = 1;
    po::options_description options("asio_echo_server: an Asio callback echo server, the benchmark's anchor.\n"
                                    "Options");
    options.add_options()
        ("help,h", "print this help")
        ("host", po::value(&host)->default_value("127.0.0.1"), "the address to listen on")
        ("port", po::value(&port)->default_value(7000), "the port; 0 = a free one")
        ("threads", po::value(&threads)->default_value(1), "threads, each with its own io_context and acceptor");
    try {
        po::variables_map vm;
        po::store(po::parse_command_line(argc, argv, options), vm);
        po::notify(vm);
        if (vm.count("help")) {
            std::cout << options;
            return 0;
        }
        if (port > 65535 || threads < 1 || threads > 1024) {
            std::cerr << "asio_echo_server: --port must be in 0..65535 and --threads in 1..1024\n";
            return 2;
        }
    } catch (po::error const& e) {
        std::cerr << "asio_echo_server: " << e.what() << "\n" << options;
        return 2;
    }

    try {
        std::signal(SIGPIPE, SIG_IGN);
        std::vector<std::unique_ptr<asio::io_context>> contexts;
        std::vector<std::unique_ptr<server>> servers;
        tcp::endpoint where(asio::ip::make_address(host), static_cast<unsigned short>(port));
        for (unsigned i = 0; i < threads; ++i) {
            contexts.push_back(std::make_unique<asio::io_context>(1));
            servers.push_back(std::make_unique<server>(*contexts.back(), where, threads > 1));
            where = servers.back()->local_endpoint(); // port 0: the others take the port the first got
        }

        asio::signal_set signals(*contexts.front(), SIGINT, SIGTERM);
        signals.async_wait([&contexts](boost::system::error_code const& ec, int) {
            if (ec)
                return;
            for (auto& io : contexts)
                io->stop();
        });

        for (auto& s : servers)
            s->start();
        std::cout << "listening on " << where.address().to_string() << ":" << where.port() << std::endl;

        std::vector<std::thread> workers;
        for (unsigned i = 1; i < threads; ++i)
            workers.emplace_back([&io = *contexts[i]] { io.run(); });
        contexts.front()->run();
        for (auto& w : workers)
            w.join();
        // The sessions still open go with their io_contexts, after the
        // signal_set and the acceptors.
    } catch (std::exception const& e) {
        std::cerr << "asio_echo_server: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
