// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_IO_HPP
#define FIBERS_IO_HPP

// Socket reads, writes and accepts for fibers, on the fast path: the
// non-blocking call first, and a wait for readiness only when it would
// block, as Go and Photon do.
//
// With the yield token, `sock.async_read_some(buf, fibers::yield)` always
// goes through Asio's reactor: even when data is already there, Asio posts
// the completion to its scheduler, and the fiber has to let the hub run it.
// `fibers::read_some(sock, buf)` reads it with one system call and no
// switch; only on would_block does it wait, for readiness (an async_wait,
// which involves no buffer, so cancelling it is always safe). The one
// exception: right after a read that came back short, the socket is most
// likely empty, and the next read_some on it lets the loop go round once,
// then is Asio's async_read_some, which costs fewer system calls there (see
// last_drained_socket).
//
// Works with Asio's stream and datagram sockets and acceptors (anything
// with non_blocking(), the synchronous call with an error_code, and
// async_wait). The socket is put in non-blocking mode. The token's error
// handling and deadline apply as with the yield token; a deadline covers
// the whole call.

#include <fibers/detail/duration.hpp>
#include <fibers/switchpoint.hpp>
#include <fibers/yield.hpp>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

namespace fibers {

namespace detail {

// The deadline of a whole call that may wait more than once: the token's
// timeout, counted from the start of the call.
class call_deadline {
public:
    explicit call_deadline(yield_t const& token) : has_deadline_(token.timeout().has_value()) {
        if (has_deadline_)
            deadline_ = saturated_deadline(std::chrono::steady_clock::now(), *token.timeout());
    }

    // `token` with what is left of the call's deadline; past it,
    // fibers::timeout.
    yield_t left(yield_t const& token) const {
        if (!has_deadline_)
            return token;
        auto left = deadline_ - std::chrono::steady_clock::now();
        if (left <= left.zero())
            throw_timeout();
        return token.after(left);
    }

private:
    // Not a std::optional: g++ 12 warns that its value may be used
    // uninitialized once inlined (-Wmaybe-uninitialized), in users' builds.
    bool has_deadline_;
    std::chrono::steady_clock::time_point deadline_{};
};

// One non-blocking attempt, then readiness waits, until `attempt` gives
// something else than would_block. A wait that fails reports its error.
template <class Socket, class Attempt>
auto attempt_until_done(Socket& s, typename Socket::wait_type what, yield_t const& token, Attempt attempt) {
    using result_type = decltype(attempt(std::declval<boost::system::error_code&>()));
    switchpoint();
    if (!s.non_blocking()) {
        // A closed socket fails here: its error goes where the token says,
        // as the call's own would.
        boost::system::error_code ec;
        s.non_blocking(true, ec);
        if (ec) {
            report_error(ec, token);
            return result_type{};
        }
    }
    call_deadline const deadline(token);
    for (;;) {
        boost::system::error_code ec;
        auto result = attempt(ec);
        if (ec != boost::asio::error::would_block && ec != boost::asio::error::try_again) {
            report_error(ec, token);
            return result;
        }
        boost::system::error_code wait_error;
        s.async_wait(what, deadline.left(yield[wait_error]));
        if (wait_error) {
            report_error(wait_error, token);
            return result_type{};
        }
    }
}

// The socket whose last read_some on this thread came back short. A short
// read emptied the receive queue, so a read tried at once would most likely
// fail, and its readiness wait would cost an epoll_ctl (Asio's async_wait
// re-arms the descriptor every time): two system calls in vain. So the next
// read on that socket first lets the loop go round once (a post: other
// fibers run and the loop polls for I/O, while the peer's next message may
// arrive), then goes to Asio's async_read_some, which tries the read once
// and, if it would block, waits in the edge-triggered registration that
// Asio keeps for every socket, with no epoll_ctl. That first try is needed:
// a short read leaves no data, but the peer's end of stream may still wait
// behind it with no edge to come (test_io's after_a_short_read tests, and
// doc/asio.md). One socket per thread is enough for the usual loop (read,
// write, read again on the same socket without a switch in between); a
// wrong guess costs nothing but the choice of path, so the address is all
// that is kept.
inline thread_local void const* last_drained_socket = nullptr;

// Moves the front of `rest` past `n` bytes.
template <class Buffer>
void consume(std::vector<Buffer>& rest, std::size_t n) {
    auto it = rest.begin();
    while (n > 0 && it != rest.end()) {
        std::size_t const step = std::min(n, it->size());
        *it += step;
        n -= step;
        if (it->size() == 0)
            ++it;
    }
    rest.erase(rest.begin(), it);
}

// Calls `some(rest, token[ec])` until `buffers` are all transferred or it
// fails; returns the bytes transferred. A deadline covers the whole call.
template <class Buffer, class BufferSequence, class Some>
std::size_t transfer_all(BufferSequence const& buffers, yield_t const& token, Some some) {
    std::size_t const total = boost::asio::buffer_size(buffers);
    if (total == 0)
        return 0;
    call_deadline const deadline(token);
    boost::system::error_code ec;
    // Most calls finish at once: the buffers are copied only when not.
    std::size_t done = some(buffers, token[ec]);
    if (done < total && !ec) {
        std::vector<Buffer> rest(boost::asio::buffer_sequence_begin(buffers),
                                 boost::asio::buffer_sequence_end(buffers));
        consume(rest, done);
        while (done < total && !ec) {
            std::size_t n = some(rest, deadline.left(token[ec]));
            done += n;
            consume(rest, n);
        }
    }
    report_error(ec, token);
    return done;
}

} // namespace detail

/// Reads at least one byte into `buffers` (0 for empty buffers), waiting
/// only if nothing is there yet. End of stream: boost::asio::error::eof.
template <class Socket, class MutableBufferSequence>
std::size_t read_some(Socket& s, MutableBufferSequence const& buffers, yield_t token = yield) {
    std::size_t const wanted = boost::asio::buffer_size(buffers);
    std::size_t n;
    if (detail::last_drained_socket == &s && wanted != 0) {
        // Forgotten first: a read that ends in an exception (a cancel
        // during the round of the loop, say) leaves the next one to try
        // first, so that data that is there is read without a wait, and
        // cancels that come faster than the loop goes round cannot starve
        // the reader.
        detail::last_drained_socket = nullptr;
        detail::call_deadline const deadline(token);
        // The post is the switchpoint: its wait checks before it starts.
        boost::asio::post(s.get_executor(), yield);
        n = s.async_read_some(buffers, deadline.left(token));
    } else {
        n = detail::attempt_until_done(s, Socket::wait_read, token, [&](boost::system::error_code& ec) {
            return s.read_some(buffers, ec);
        });
    }
    detail::last_drained_socket = n != 0 && n < wanted ? &s : nullptr;
    return n;
}

/// Writes at least one byte of `buffers`, waiting only while the socket's
/// send buffer is full.
template <class Socket, class ConstBufferSequence>
std::size_t write_some(Socket& s, ConstBufferSequence const& buffers, yield_t token = yield) {
    return detail::attempt_until_done(s, Socket::wait_write, token, [&](boost::system::error_code& ec) {
        return s.write_some(buffers, ec);
    });
}

/// Reads until `buffers` are full; returns the bytes read (fewer only
/// when an error is stored in the token's error_code).
template <class Socket, class MutableBufferSequence>
std::size_t read(Socket& s, MutableBufferSequence const& buffers, yield_t token = yield) {
    return detail::transfer_all<boost::asio::mutable_buffer>(
        buffers, token, [&s](auto const& rest, yield_t t) { return read_some(s, rest, t); });
}

/// Writes all of `buffers`; returns the bytes written (fewer only when an
/// error is stored in the token's error_code).
template <class Socket, class ConstBufferSequence>
std::size_t write(Socket& s, ConstBufferSequence const& buffers, yield_t token = yield) {
    return detail::transfer_all<boost::asio::const_buffer>(
        buffers, token, [&s](auto const& rest, yield_t t) { return write_some(s, rest, t); });
}

/// Accepts a connection, waiting only if none is pending. With an
/// error_code in the token, a failed accept returns a closed socket.
template <class Acceptor>
typename Acceptor::protocol_type::socket accept(Acceptor& a, yield_t token = yield) {
    using socket_type = typename Acceptor::protocol_type::socket;
    std::optional<socket_type> accepted;
    detail::attempt_until_done(a, Acceptor::wait_read, token, [&](boost::system::error_code& ec) {
        accepted.emplace(a.accept(ec));
        return 0;
    });
    if (!accepted)
        return socket_type(a.get_executor());
    return std::move(*accepted);
}

} // namespace fibers

#endif // FIBERS_IO_HPP
