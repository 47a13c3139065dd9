// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// A client for the echo server, written as plain sequential code: one task
// per connection sends numbered lines, reads each echo back and checks it,
// then half-closes and expects the server to close in turn. See
// doc/example.md. (The load generator that measures servers is
// test/perf/echo_load.cpp.)
//
//   echo_client [--host 127.0.0.1] [--port 7000] [--connections 3] [--messages 5]
//
// Exit status: 0 when every line came back as sent, 1 otherwise.

#include <fibers/hub.hpp>
#include <fibers/task.hpp>
#include <fibers/yield.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <boost/program_options.hpp>

#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// One connection's conversation; returns what went wrong, empty if nothing.
std::string talk(tcp::endpoint const& server, int connection, int messages) {
    tcp::socket socket(fibers::get_hub().loop());
    socket.async_connect(server, fibers::yield); // throws system_error, like every call below
    socket.set_option(tcp::no_delay(true));
    std::string received; // what came back and is not checked yet
    for (int i = 1; i <= messages; ++i) {
        std::string const line = "connection " + std::to_string(connection) + ", line " + std::to_string(i) + "\n";
        asio::async_write(socket, asio::buffer(line), fibers::yield);
        std::size_t n = asio::async_read_until(socket, asio::dynamic_buffer(received), '\n', fibers::yield);
        if (received.compare(0, n, line) != 0)
            return "sent \"" + line.substr(0, line.size() - 1) + "\", got back \"" + received.substr(0, n - 1) + "\"";
        received.erase(0, n);
    }
    // Done: say so, and the server, having echoed everything, closes too.
    socket.shutdown(tcp::socket::shutdown_send);
    char extra;
    boost::system::error_code ec;
    socket.async_read_some(asio::buffer(&extra, 1), fibers::yield[ec]);
    if (ec != asio::error::eof)
        return ec ? ec.message() : "the server sent more than it was sent";
    return {};
}

} // namespace

int main(int argc, char** argv) {
    namespace po = boost::program_options;
    std::string host;
    int port = 0, connections = 0, messages = 0;
    tcp::endpoint server;
    po::options_description options("echo_client options");
    options.add_options()("help", "this text")(
        "host", po::value(&host)->default_value("127.0.0.1"), "the server's address")(
        "port", po::value(&port)->default_value(7000), "the server's port")(
        "connections", po::value(&connections)->default_value(3), "connections, each in a task of its own")(
        "messages", po::value(&messages)->default_value(5), "lines sent on each connection");
    try {
        po::variables_map vm;
        po::store(po::parse_command_line(argc, argv, options), vm);
        po::notify(vm);
        if (vm.count("help")) {
            std::cout << options << '\n';
            return 0;
        }
        if (port < 1 || port > 65535 || connections < 1 || messages < 0)
            throw std::invalid_argument("--port must be in 1..65535, --connections positive, --messages not negative");
        server = tcp::endpoint(asio::ip::make_address(host), static_cast<unsigned short>(port));
    } catch (std::exception const& e) {
        std::cerr << "echo_client: " << e.what() << " (see --help)\n";
        return 2;
    }

    std::vector<std::string> problems(connections);
    std::vector<fibers::task> tasks;
    for (int c = 0; c < connections; ++c)
        tasks.push_back(fibers::spawn([&, c] {
            try {
                problems[c] = talk(server, c + 1, messages);
            } catch (std::exception const& e) {
                problems[c] = e.what();
            }
        }));
    for (auto& t : tasks) // the root fiber waits; the hub runs the tasks meanwhile
        t.join();
    fibers::get_hub().close();

    int failed = 0;
    for (int c = 0; c < connections; ++c)
        if (!problems[c].empty()) {
            std::cerr << "echo_client: connection " << c + 1 << ": " << problems[c] << '\n';
            ++failed;
        }
    std::cout << connections - failed << " of " << connections << " connections echoed " << messages
              << " lines each\n";
    return failed == 0 ? 0 : 1;
}
