// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_TEST_SOCKET_SUPPORT_HPP
#define FIBERS_TEST_SOCKET_SUPPORT_HPP

// Real sockets on loopback for the tests of the Asio glue.

#include <boost/asio/ip/tcp.hpp>

#include <sys/socket.h>

#include <utility>

namespace fibers_test {

using tcp = boost::asio::ip::tcp;

// Two connected TCP sockets on 127.0.0.1, both on `io`. Blocking set-up:
// on loopback, connect completes into the listen backlog at once.
inline std::pair<tcp::socket, tcp::socket> connected_pair(boost::asio::io_context& io) {
    tcp::acceptor acceptor(io, tcp::endpoint(boost::asio::ip::address_v4::loopback(), 0));
    tcp::socket client(io);
    client.connect(acceptor.local_endpoint());
    tcp::socket server = acceptor.accept();
    return {std::move(client), std::move(server)};
}

// Closes with an RST instead of a FIN.
inline void reset(tcp::socket& s) {
    ::linger l{1, 0};
    ::setsockopt(s.native_handle(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
    s.close();
}

} // namespace fibers_test

#endif // FIBERS_TEST_SOCKET_SUPPORT_HPP
