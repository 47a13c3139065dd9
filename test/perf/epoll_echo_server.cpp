// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// The floor of test/perf/echo.sh: an echo server in plain C++ against epoll,
// no library. One thread, one epoll set; each connection is registered once,
// edge-triggered, for input and output, with a 16 KiB buffer (the size of
// the fibers example server's). On an input edge it reads; a read that
// fills less than the buffer has drained the socket, so it does not read
// again until the next edge (a read bound to fail is a system call wasted).
// That holds only until the peer's end of stream has come: it may wait
// behind the last bytes with no edge still to come, so once an event has
// said EPOLLRDHUP the connection reads on until the read returns 0.
// What it read it writes back at once; what the socket does not take waits
// for the output edge, and the connection reads nothing more until it is
// gone. Accepted sockets get TCP_NODELAY, as every server of the benchmark.
// After the peer's end of stream, and everything echoed, it closes.
//
//   epoll_echo_server --host 127.0.0.1 --port 0
//
// Prints "listening on HOST:PORT" once it accepts; exits 0 on SIGINT or
// SIGTERM (read through a signalfd in the same epoll set).

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

[[noreturn]] void die(char const* what) {
    std::fprintf(stderr, "epoll_echo_server: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

constexpr std::size_t buffer_size = 16 * 1024;

struct connection {
    int fd;
    char buffer[buffer_size];
    std::size_t pending = 0;  // bytes in `buffer` not yet written back
    std::size_t written = 0;  // of those, already written
    bool peer_done = false;   // end of stream seen
    bool peer_closing = false; // EPOLLRDHUP came: a short read no longer proves the socket empty
};

// Writes what is pending; false once the socket takes no more for now.
bool flush(connection& c) {
    while (c.written < c.pending) {
        ssize_t n = ::send(c.fd, c.buffer + c.written, c.pending - c.written, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return false;
            c.peer_done = true; // reset or gone: drop what is left
            c.pending = c.written = 0;
            return true;
        }
        c.written += static_cast<std::size_t>(n);
    }
    c.pending = c.written = 0;
    return true;
}

// Echoes until the socket is drained or backed up; false: close it.
// `readable`: the event says there is input (or its end) to read.
bool serve(connection& c, bool readable) {
    bool const was_backed_up = c.pending != 0;
    if (!flush(c))
        return true; // the output edge resumes it
    if (!readable && !was_backed_up)
        return !c.peer_done; // an output edge with nothing to write: no read bound to fail
    while (!c.peer_done) {
        ssize_t n = ::recv(c.fd, c.buffer, buffer_size, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return true;
            return false;
        }
        if (n == 0) {
            c.peer_done = true;
            break;
        }
        c.pending = static_cast<std::size_t>(n);
        if (!flush(c))
            return true;
        if (static_cast<std::size_t>(n) < buffer_size && !c.peer_closing)
            return true; // drained: the next input edge says when there is more
    }
    return false; // the peer finished and everything is echoed
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
                std::fprintf(stderr, "epoll_echo_server: one thread only (--threads 1)\n");
                return 2;
            }
        } else {
            std::fprintf(stderr, "usage: epoll_echo_server [--host ADDRESS] [--port PORT] [--threads 1]\n");
            return arg == "--help" || arg == "-h" ? 0 : 2;
        }
    }
    sockaddr_in where{};
    where.sin_family = AF_INET;
    where.sin_port = htons(static_cast<unsigned short>(port));
    if (port < 0 || port > 65535 || ::inet_pton(AF_INET, host.c_str(), &where.sin_addr) != 1) {
        std::fprintf(stderr, "epoll_echo_server: --host must be an IPv4 address and --port in 0..65535\n");
        return 2;
    }

    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    if (::sigprocmask(SIG_BLOCK, &stop_signals, nullptr) != 0)
        die("sigprocmask");
    int const stop = ::signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC);
    if (stop < 0)
        die("signalfd");

    int const listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int const one = 1;
    if (listener < 0 || ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        die("socket");
    if (::bind(listener, reinterpret_cast<sockaddr*>(&where), sizeof where) != 0)
        die("bind");
    if (::listen(listener, SOMAXCONN) != 0)
        die("listen");
    socklen_t length = sizeof where;
    ::getsockname(listener, reinterpret_cast<sockaddr*>(&where), &length);

    int const poll = ::epoll_create1(EPOLL_CLOEXEC);
    if (poll < 0)
        die("epoll_create1");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr; // the listener; the signalfd is marked by its own address
    ::epoll_ctl(poll, EPOLL_CTL_ADD, listener, &ev);
    ev.data.ptr = const_cast<int*>(&stop);
    ::epoll_ctl(poll, EPOLL_CTL_ADD, stop, &ev);

    std::printf("listening on %s:%u\n", host.c_str(), ntohs(where.sin_port));
    std::fflush(stdout);

    std::unordered_map<connection*, std::unique_ptr<connection>> connections;
    auto close_connection = [&](connection* c) {
        ::close(c->fd); // also takes it out of the epoll set
        connections.erase(c);
    };
    epoll_event ready[256];
    for (;;) {
        int const n = ::epoll_wait(poll, ready, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; ++i) {
            void* const what = ready[i].data.ptr;
            if (what == &stop) {
                for (auto& entry : connections)
                    ::close(entry.first->fd);
                return 0;
            }
            if (what == nullptr) {
                for (;;) {
                    int const fd = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0)
                        break; // drained, or an error that concerns one connection
                    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    auto c = std::make_unique<connection>();
                    c->fd = fd;
                    epoll_event cev{};
                    cev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
                    cev.data.ptr = c.get();
                    if (::epoll_ctl(poll, EPOLL_CTL_ADD, fd, &cev) != 0) {
                        ::close(fd);
                        continue;
                    }
                    connection* const raw = c.get();
                    connections.emplace(raw, std::move(c));
                    // Data may have come before the registration: its edge is not lost
                    // (the first epoll_wait reports a ready socket), so nothing to do here.
                }
                continue;
            }
            auto* c = static_cast<connection*>(what);
            std::uint32_t const events = ready[i].events;
            if ((events & (EPOLLRDHUP | EPOLLHUP)) != 0)
                c->peer_closing = true;
            if ((events & EPOLLERR) != 0 || !serve(*c, (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) != 0))
                close_connection(c);
        }
    }
}
