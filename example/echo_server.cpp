// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// An echo server written as plain sequential code: one task per connection
// that reads and writes back, one task that accepts, all of them in one
// task_group, and a root fiber that waits for SIGINT or SIGTERM and then
// cancels the group. See doc/example.md for a walk-through.
//
//   echo_server [--host 127.0.0.1] [--port 7000] [--threads 1]
//               [--idle-timeout SECONDS] [--max-connections N] [--idle-spin MICROSECONDS]
//               [--io direct|hybrid|token] [--dump-signal SIGUSR1|SIGUSR2|N|none]

#include <fibers/diagnostics.hpp>
#include <fibers/hub.hpp>
#include <fibers/io.hpp>
#include <fibers/log.hpp>
#include <fibers/scope.hpp>
#include <fibers/switch_back.hpp>
#include <fibers/task.hpp>
#include <fibers/yield.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/write.hpp>
#include <boost/program_options.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <future>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

struct config {
    std::string host;
    asio::ip::address address; // host, parsed
    unsigned short port = 0;
    unsigned threads = 1;
    std::chrono::milliseconds idle_timeout{0}; // 0: none
    std::size_t max_connections = 0;          // 0: no limit
    // No idle spin by default, unlike the hub's: all of this server's work
    // comes from the network, and a poll of epoll is a system call, where a
    // blocking wait is one call in all; the spin pays off for work that other
    // threads hand over, which it sees without a call (doc/example.md).
    std::chrono::microseconds idle_spin{0};
    // direct by default: the fewest system calls (doc/example.md). A read
    // finds data that is there in one call, and after a short read waits
    // without re-arming epoll; a write almost never waits, and skips a
    // completion's trip through the loop.
    enum class io_path { hybrid, direct, token } io = io_path::direct;
    int dump_signal = SIGUSR1; // prints every fiber to stderr; 0: none
};

using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

// Out of descriptors or kernel memory: accepting again at once would fail
// again, so the acceptor backs off instead of spinning.
bool is_resource_exhaustion(boost::system::error_code const& ec) {
    return ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space ||
           ec == asio::error::no_memory || ec.value() == ENFILE;
}

// One per thread: a hub, a listening socket, its connections.
class server {
public:
    // SIGTERM is caught from here on, before main says it is listening: a
    // signal that comes before run() waits for it is kept until then.
    server(config const& cfg, tcp::endpoint const& where)
        : cfg_(cfg), acceptor_(fibers::get_hub().loop()), terminate_(fibers::get_hub().loop(), SIGTERM) {
        fibers::get_hub().idle_spin(cfg_.idle_spin);
        acceptor_.open(where.protocol());
        acceptor_.set_option(tcp::acceptor::reuse_address(true));
        if (cfg_.threads > 1)
            acceptor_.set_option(reuse_port(true)); // the kernel spreads connections over the threads
        acceptor_.bind(where);
        acceptor_.listen(asio::socket_base::max_listen_connections);
    }

    unsigned short port() const { return acceptor_.local_endpoint().port(); }

    // In the root fiber: serves until SIGINT or SIGTERM, then stops cleanly;
    // or until a task fails with an exception it did not expect, which
    // run() then rethrows.
    void run() {
        fibers::hub& hub = fibers::get_hub();
        tasks_.spawn([this] { accept_connections(); }, fibers::task_options{"acceptor"});
        try {
            // SIGINT is thrown here, in the root, as keyboard_interrupt.
            fibers::race([this] { wait_for_sigterm(); }, [this] { tasks_.join(); });
        } catch (fibers::keyboard_interrupt const&) {
        }
        hub.ignore_interrupt(true); // a second Ctrl-C does not cut the stop short
        // The acceptor and every connection, in one call; each closes its
        // socket as it unwinds.
        tasks_.cancel("stopping");
        tasks_.join();
        acceptor_.close();
        hub.close();
    }

private:
    void wait_for_sigterm() {
        fibers::switch_back<boost::system::error_code, int> signalled;
        terminate_.async_wait(signalled);
        signalled.wait();
    }

    void accept_connections() {
        auto backoff = 10ms;
        for (;;) {
            if (cfg_.max_connections != 0 && connections_ >= cfg_.max_connections) {
                wait_for_a_free_slot();
                continue;
            }
            boost::system::error_code ec;
            tcp::socket peer = cfg_.io == config::io_path::token ? acceptor_.async_accept(fibers::yield[ec])
                                                                 : fibers::accept(acceptor_, fibers::yield[ec]);
            if (ec) {
                if (is_resource_exhaustion(ec)) {
                    fibers::log(fibers::log_level::warning,
                                "accept: " + ec.message() + "; retrying in " + std::to_string(backoff.count()) + " ms");
                    fibers::sleep(backoff);
                    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
                }
                continue; // e.g. a connection reset while queued: nothing to do
            }
            backoff = 10ms;
            peer.set_option(tcp::no_delay(true));
            try {
                start_connection(std::move(peer));
            } catch (fibers::error const&) {
                // The accept had completed when the stop cancelled the
                // group, which takes no more tasks: the peer is closed, and
                // the cancellation comes at this task's next wait.
                return;
            }
        }
    }

    void wait_for_a_free_slot() {
        fibers::switch_back<> slot;
        slot_free_ = &slot;
        struct forget {
            server* s;
            ~forget() { s->slot_free_ = nullptr; }
        } when_done{this};
        slot.wait();
    }

    void start_connection(tcp::socket peer) {
        // Named after the peer, for the dumps.
        boost::system::error_code unknown;
        tcp::endpoint const from = peer.remote_endpoint(unknown);
        std::string name = "connection " + (unknown ? std::string("?") : from.address().to_string() + ':' +
                                                                        std::to_string(from.port()));
        tasks_.spawn([this, peer = std::move(peer)]() mutable {
            // However serve() ends (cancelled by the stop included), the
            // socket closes and the slot frees: the acceptor may wait for one.
            struct leave {
                server* s;
                tcp::socket& peer;
                ~leave() {
                    boost::system::error_code ignored;
                    peer.close(ignored);
                    --s->connections_;
                    if (s->slot_free_ != nullptr)
                        std::exchange(s->slot_free_, nullptr)->switch_to();
                }
            } when_done{this, peer};
            serve(peer);
        }, fibers::task_options{std::move(name)});
        ++connections_; // the task runs in a coming loop iteration
    }

    // --idle-timeout is a deadline on each read and write (yield.after)
    // rather than a cancel_scope: idle means one wait that lasts too long,
    // which is what a per-operation deadline says, and it costs nothing
    // when there is none. A scope would have to be made anew around each
    // read; scopes suit a deadline on a sequence of waits (doc/scope.md).
    void serve(tcp::socket& peer) {
        char buffer[16 * 1024];
        auto token = cfg_.idle_timeout.count() != 0 ? fibers::yield.after(cfg_.idle_timeout) : fibers::yield;
        try {
            for (;;) {
                std::size_t n = cfg_.io == config::io_path::direct
                                    ? fibers::read_some(peer, asio::buffer(buffer), token)
                                    : peer.async_read_some(asio::buffer(buffer), token);
                if (cfg_.io == config::io_path::token)
                    asio::async_write(peer, asio::buffer(buffer, n), token);
                else
                    fibers::write(peer, asio::buffer(buffer, n), token);
            }
        } catch (boost::system::system_error const& e) {
            // The peer finished sending (everything was echoed: say so), reset
            // the connection, or went away.
            if (e.code() == asio::error::eof) {
                boost::system::error_code ignored;
                peer.shutdown(tcp::socket::shutdown_send, ignored);
            }
        } catch (fibers::timeout const&) {
            // idle for too long
        }
    }

    config const& cfg_;
    tcp::acceptor acceptor_;
    asio::signal_set terminate_;
    std::size_t connections_ = 0;                // being served
    fibers::switch_back<>* slot_free_ = nullptr; // the acceptor, waiting for a connection to end
    // Last: destroyed first, it cancels and waits for what still runs
    // (run() ended by an exception) while the rest of the server lives.
    fibers::task_group tasks_;
};

// A count from the command line: parsed signed, so that "-1" is refused
// rather than wrapped around to a huge unsigned value.
template <class Unsigned>
Unsigned count_option(long long value, long long least, long long most, char const* name) {
    if (value < least || value > most)
        throw std::invalid_argument(std::string("--") + name + " must be between " + std::to_string(least) +
                                    " and " + std::to_string(most));
    return static_cast<Unsigned>(value);
}

std::optional<config> parse(int argc, char** argv) {
    namespace po = boost::program_options;
    config cfg;
    long long port = 7000, threads = 1, max_connections = 0, idle_spin = cfg.idle_spin.count();
    double idle_seconds = 0;
    std::string io;
    std::string dump_signal;
    po::options_description options("echo_server options");
    options.add_options()("help", "this text")(
        "host", po::value(&cfg.host)->default_value("127.0.0.1"), "address to listen on")(
        "port", po::value(&port)->default_value(7000), "port to listen on (0: any free port)")(
        "threads", po::value(&threads)->default_value(1), "threads, each with its own hub and listening socket")(
        "idle-timeout", po::value(&idle_seconds)->default_value(0), "seconds a connection may stay idle (0: no limit)")(
        "max-connections", po::value(&max_connections)->default_value(0),
        "connections served at once, per thread (0: no limit)")(
        "idle-spin", po::value(&idle_spin)->default_value(idle_spin),
        "microseconds a hub out of work polls for I/O before it sleeps, while busy (0: never)")(
        "io", po::value(&io)->default_value("direct"),
        "direct: non-blocking calls first (fibers::read_some, fibers::write); token: Asio's async calls with "
        "fibers::yield; hybrid: reads with the token, writes direct")(
        "dump-signal", po::value(&dump_signal)->default_value("SIGUSR1"),
        "signal that prints every fiber of the server to stderr: SIGUSR1, SIGUSR2, a number, or none");
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, options), vm);
    po::notify(vm);
    if (vm.count("help")) {
        std::cout << options << '\n';
        return std::nullopt;
    }
    boost::system::error_code bad_address;
    cfg.address = asio::ip::make_address(cfg.host, bad_address);
    if (bad_address)
        throw std::invalid_argument("--host must be an IPv4 or IPv6 address, not '" + cfg.host + "'");
    cfg.port = count_option<unsigned short>(port, 0, 65535, "port");
    cfg.threads = count_option<unsigned>(threads, 1, 1024, "threads");
    cfg.max_connections = count_option<std::size_t>(max_connections, 0, 1LL << 40, "max-connections");
    cfg.idle_spin = std::chrono::microseconds(count_option<long long>(idle_spin, 0, 1'000'000, "idle-spin"));
    // At most a year: beyond, the deadline arithmetic would overflow.
    constexpr double longest_idle = 365.0 * 24 * 3600;
    if (!(idle_seconds >= 0 && idle_seconds <= longest_idle)) // NaN fails both
        throw std::invalid_argument("--idle-timeout must be between 0 and " + std::to_string(longest_idle) +
                                    " seconds");
    cfg.idle_timeout = std::chrono::milliseconds(static_cast<long long>(std::ceil(idle_seconds * 1000)));
    if (io == "direct")
        cfg.io = config::io_path::direct;
    else if (io == "token")
        cfg.io = config::io_path::token;
    else if (io == "hybrid")
        cfg.io = config::io_path::hybrid;
    else
        throw std::invalid_argument("--io is direct, token or hybrid");
    if (dump_signal == "none")
        cfg.dump_signal = 0;
    else if (dump_signal == "SIGUSR1")
        cfg.dump_signal = SIGUSR1;
    else if (dump_signal == "SIGUSR2")
        cfg.dump_signal = SIGUSR2;
    else {
        long long number = -1;
        try {
            number = std::stoll(dump_signal);
        } catch (std::exception const&) {
        }
        cfg.dump_signal = count_option<int>(number, 1, SIGRTMAX, "dump-signal");
    }
    return cfg;
}

} // namespace

int main(int argc, char** argv) {
    std::optional<config> cfg;
    try {
        cfg = parse(argc, argv);
        if (!cfg)
            return 0;
    } catch (std::exception const& e) {
        std::cerr << "echo_server: " << e.what() << " (see --help)\n";
        return 2;
    }
    try {
        if (cfg->dump_signal != 0)
            fibers::dump_fibers_on_signal(cfg->dump_signal);
        // The first server binds (perhaps to port 0); the others share its port.
        tcp::endpoint where(cfg->address, cfg->port);
        server first(*cfg, where);
        where.port(first.port());

        std::vector<std::thread> others;
        std::vector<std::exception_ptr> failures(cfg->threads);
        std::vector<std::promise<void>> listening(cfg->threads);
        for (unsigned i = 1; i < cfg->threads; ++i)
            others.emplace_back([&, i] {
                try {
                    server s(*cfg, where);
                    listening[i].set_value();
                    s.run();
                } catch (...) {
                    failures[i] = std::current_exception();
                    try {
                        listening[i].set_value();
                    } catch (std::future_error const&) {
                    }
                }
            });
        for (unsigned i = 1; i < cfg->threads; ++i)
            listening[i].get_future().wait();
        std::cout << "listening on " << cfg->host << ':' << where.port() << std::endl;
        try {
            first.run();
        } catch (...) {
            failures[0] = std::current_exception();
        }
        for (auto& t : others)
            t.join();
        for (auto& failure : failures)
            if (failure)
                std::rethrow_exception(failure);
        return 0;
    } catch (std::exception const& e) {
        std::cerr << "echo_server: " << e.what() << '\n';
        return 1;
    }
}
