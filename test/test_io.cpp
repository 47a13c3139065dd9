// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#define BOOST_TEST_MODULE io
#include <boost/test/unit_test.hpp>

#include <fibers/io.hpp>
#include <fibers/switchpoint.hpp>
#include <fibers/task.hpp>

#include "cancel_support.hpp"
#include "hub_support.hpp"
#include "socket_support.hpp"

#include <boost/asio/write.hpp>

#include <array>
#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using fibers_test::connected_pair;
using fibers_test::on_new_thread;
using fibers_test::tcp;

namespace {

// Counts the turns of a task that yields forever: if it did not move, the
// calling fiber did not switch.
struct turn_counter {
    long turns = 0;
    fibers::task ticker = fibers::spawn([this] {
        for (;;) {
            ++turns;
            fibers::sleep(0s);
        }
    });
    ~turn_counter() {
        ticker.cancel();
        ticker.join();
    }
};

void wait_until_readable(tcp::socket& s, std::size_t bytes) {
    auto const give_up = std::chrono::steady_clock::now() + 10s;
    while (s.available() < bytes && std::chrono::steady_clock::now() < give_up)
        std::this_thread::sleep_for(1ms);
}

std::vector<char> pattern(std::size_t size, unsigned seed) {
    std::vector<char> v(size);
    for (std::size_t i = 0; i < size; ++i)
        v[i] = static_cast<char>((i * 131 + seed) & 0xff);
    return v;
}

} // namespace

BOOST_AUTO_TEST_SUITE(fast_path)

BOOST_AUTO_TEST_CASE(available_data_is_read_without_a_switch) {
    on_new_thread([] {
        auto [client, server] = connected_pair(fibers::get_hub().loop());
        turn_counter counter;
        fibers::sleep(0s); // the ticker is running now
        asio::write(client, asio::buffer("ready", 5));
        wait_until_readable(server, 5);
        long const before = counter.turns;
        char buffer[16];
        std::size_t n = fibers::read_some(server, asio::buffer(buffer));
        BOOST_TEST(std::string(buffer, n) == "ready");
        BOOST_TEST(counter.turns == before);
        fibers::write(server, asio::buffer("back", 4)); // room to write: no switch either
        BOOST_TEST(counter.turns == before);
    });
}

BOOST_AUTO_TEST_CASE(a_pending_connection_is_accepted_without_a_switch) {
    on_new_thread([] {
        auto& io = fibers::get_hub().loop();
        tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
        tcp::socket dialer(io);
        dialer.connect(acceptor.local_endpoint());
        turn_counter counter;
        fibers::sleep(0s);
        long const before = counter.turns;
        tcp::socket accepted = fibers::accept(acceptor);
        BOOST_TEST(accepted.is_open());
        BOOST_TEST(counter.turns == before);
    });
}

BOOST_AUTO_TEST_CASE(waits_when_nothing_is_there) {
    on_new_thread([] {
        auto& io = fibers::get_hub().loop();
        auto [client, server] = connected_pair(io);
        tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
        fibers::spawn([&client = client, &acceptor] {
            fibers::sleep(5ms);
            asio::write(client, asio::buffer("later", 5));
            tcp::socket dialer(acceptor.get_executor());
            dialer.connect(acceptor.local_endpoint());
            fibers::sleep(20ms);
        });
        char buffer[16];
        std::size_t n = fibers::read_some(server, asio::buffer(buffer));
        BOOST_TEST(std::string(buffer, n) == "later");
        BOOST_TEST(fibers::accept(acceptor).is_open());
    });
}

BOOST_AUTO_TEST_SUITE_END()

// A read that came back short takes another path for the next read on that
// socket (Asio's read, queued in its reactor, rather than a read tried
// first): every guarantee holds on that path too.
BOOST_AUTO_TEST_SUITE(after_a_short_read)

// Runs `test(client, server)` in a fresh thread's hub, right after a short
// read on `server` (into a buffer larger than what was there).
template <class Test>
void after_a_short_read_on(Test test) {
    on_new_thread([&] {
        auto [client, server] = connected_pair(fibers::get_hub().loop());
        asio::write(client, asio::buffer("first", 5));
        wait_until_readable(server, 5);
        char buffer[64];
        std::size_t n = fibers::read_some(server, asio::buffer(buffer));
        BOOST_TEST(std::string(buffer, n) == "first");
        test(client, server);
    });
}

BOOST_AUTO_TEST_CASE(data_that_came_meanwhile_is_read) {
    after_a_short_read_on([](tcp::socket& client, tcp::socket& server) {
        asio::write(client, asio::buffer("second", 6));
        wait_until_readable(server, 6);
        char buffer[64];
        std::size_t n = fibers::read_some(server, asio::buffer(buffer));
        BOOST_TEST(std::string(buffer, n) == "second");
    });
}

BOOST_AUTO_TEST_CASE(the_next_read_waits_for_data) {
    after_a_short_read_on([](tcp::socket& client, tcp::socket& server) {
        fibers::task writer = fibers::spawn([&client] {
            fibers::sleep(5ms);
            asio::write(client, asio::buffer("later", 5));
        });
        char buffer[64];
        std::size_t n = fibers::read_some(server, asio::buffer(buffer));
        BOOST_TEST(std::string(buffer, n) == "later");
        writer.join();
    });
}

BOOST_AUTO_TEST_CASE(a_buffer_filled_to_the_brim_is_not_a_short_read) {
    on_new_thread([] {
        auto [client, server] = connected_pair(fibers::get_hub().loop());
        asio::write(client, asio::buffer("abcdef", 6));
        wait_until_readable(server, 6);
        char buffer[3];
        BOOST_TEST(fibers::read_some(server, asio::buffer(buffer)) == 3u);
        BOOST_TEST(std::string(buffer, 3) == "abc");
        BOOST_TEST(fibers::read_some(server, asio::buffer(buffer)) == 3u);
        BOOST_TEST(std::string(buffer, 3) == "def");
    });
}

BOOST_AUTO_TEST_CASE(a_deadline_then_a_read_loses_no_byte) {
    after_a_short_read_on([](tcp::socket& client, tcp::socket& server) {
        char buffer[64];
        BOOST_CHECK_THROW(fibers::read_some(server, asio::buffer(buffer), fibers::yield.after(10ms)), fibers::timeout);
        asio::write(client, asio::buffer("kept", 4));
        std::size_t n = fibers::read_some(server, asio::buffer(buffer), fibers::yield.after(5s));
        BOOST_TEST(std::string(buffer, n) == "kept");
    });
}

BOOST_AUTO_TEST_CASE(end_of_stream_every_time) {
    after_a_short_read_on([](tcp::socket& client, tcp::socket& server) {
        fibers::task closer = fibers::spawn([&client] {
            fibers::sleep(5ms);
            client.shutdown(tcp::socket::shutdown_send);
        });
        char buffer[64];
        for (int i = 0; i < 3; ++i) {
            boost::system::error_code ec;
            BOOST_TEST(fibers::read_some(server, asio::buffer(buffer), fibers::yield[ec].after(5s)) == 0u);
            BOOST_TEST((ec == asio::error::eof));
        }
        closer.join();
    });
}

// A short read does not prove the socket empty: when the peer's end of
// stream came with its last bytes, or before the read, the read returns the
// bytes and the end of stream waits behind them, with no readiness edge
// still to come. The loop must look at I/O meanwhile (sleeps), so that the
// reactor has taken that edge before the reads.
BOOST_AUTO_TEST_CASE(the_end_of_stream_that_came_with_the_last_bytes_is_read) {
    on_new_thread([] {
        auto [client, server] = connected_pair(fibers::get_hub().loop());
        asio::write(client, asio::buffer("last", 4));
        client.shutdown(tcp::socket::shutdown_send);
        wait_until_readable(server, 4);
        for (int i = 0; i < 3; ++i)
            fibers::sleep(1ms);
        char buffer[64];
        boost::system::error_code ec;
        std::size_t n = fibers::read_some(server, asio::buffer(buffer), fibers::yield[ec].after(5s));
        BOOST_TEST(std::string(buffer, n) == "last");
        BOOST_TEST(!ec);
        n = fibers::read_some(server, asio::buffer(buffer), fibers::yield[ec].after(5s));
        BOOST_TEST(n == 0u);
        BOOST_TEST((ec == asio::error::eof));
    });
}

// The same, raced: a peer on another thread sends a few bytes at a time and
// its end of stream at random moments against a reader that echoes what it
// reads (a read, a write, a read again: the path after a short read). The
// reader must see every byte, then the end of stream, within its deadline.
BOOST_AUTO_TEST_CASE(an_echoing_reader_sees_the_end_of_stream_however_it_comes) {
    on_new_thread([] {
        std::minstd_rand random(11);
        for (int round = 0; round < 200; ++round) {
            auto [client, server] = connected_pair(fibers::get_hub().loop());
            int const chunks = 1 + static_cast<int>(random() % 4);
            unsigned const pause_us = static_cast<unsigned>(random() % 200);
            std::thread peer([&client = client, chunks, pause_us] {
                for (int i = 0; i < chunks; ++i) {
                    asio::write(client, asio::buffer("abcd", 4));
                    if (pause_us != 0 && i + 1 < chunks)
                        std::this_thread::sleep_for(std::chrono::microseconds(pause_us));
                }
                client.shutdown(tcp::socket::shutdown_send);
            });
            std::size_t received = 0;
            boost::system::error_code ec;
            char buffer[64];
            if (random() % 2)
                fibers::sleep(1ms); // the first read may find it all there
            try {
                for (;;) {
                    std::size_t const n =
                        fibers::read_some(server, asio::buffer(buffer), fibers::yield[ec].after(5s));
                    received += n;
                    if (ec)
                        break;
                    fibers::write(server, asio::buffer(buffer, n));
                    if (random() % 2)
                        fibers::sleep(0s); // the loop looks at I/O
                }
            } catch (fibers::timeout const&) {
                ec = asio::error::timed_out;
            }
            peer.join();
            BOOST_TEST((ec == asio::error::eof), "round " << round << ": " << ec.message());
            BOOST_TEST(received == static_cast<std::size_t>(chunks) * 4u);
        }
    });
}

BOOST_AUTO_TEST_CASE(a_switchpoint_even_with_data_there) {
    after_a_short_read_on([](tcp::socket& client, tcp::socket& server) {
        asio::write(client, asio::buffer("x", 1));
        wait_until_readable(server, 1);
        char buffer[4];
        {
            fibers::assert_no_switchpoints guard;
            BOOST_CHECK_THROW(fibers::read_some(server, asio::buffer(buffer)), fibers::switchpoint_violation);
        }
        BOOST_TEST(server.available() == 1u);
    });
}

// The socket closed by another fiber while a read waits on it, at random
// moments against a writer: the read ends with an error or with the bytes
// sent, in order, and nothing touches the socket or the buffer after.
BOOST_AUTO_TEST_CASE(a_close_while_reading_in_a_loop) {
    on_new_thread([] {
        std::minstd_rand random(7);
        int aborted = 0;
        for (int round = 0; round < 300; ++round) {
            auto [client, server] = connected_pair(fibers::get_hub().loop());
            std::string received;
            boost::system::error_code failure;
            fibers::task reader = fibers::spawn([&, &server = server] {
                char buffer[64];
                for (;;) {
                    boost::system::error_code ec;
                    std::size_t n = fibers::read_some(server, asio::buffer(buffer), fibers::yield[ec]);
                    received.append(buffer, n);
                    if (ec) {
                        failure = ec;
                        return;
                    }
                }
            });
            fibers::task writer = fibers::spawn([&, &client = client] {
                boost::system::error_code ec;
                for (char c = 'a'; c <= 'z' && !ec; ++c) {
                    asio::write(client, asio::buffer(&c, 1), ec);
                    if (random() % 2)
                        fibers::sleep(0s);
                }
            });
            for (int turns = static_cast<int>(random() % 40); turns > 0; --turns)
                fibers::sleep(0s);
            server.close();
            reader.join(5s);
            writer.join(5s);
            BOOST_TEST(!!failure);
            if (failure == asio::error::operation_aborted)
                ++aborted;
            BOOST_TEST(std::string("abcdefghijklmnopqrstuvwxyz").compare(0, received.size(), received) == 0);
        }
        BOOST_TEST(aborted > 0);
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(transfers)

BOOST_AUTO_TEST_CASE(big_write_and_exact_read_both_ways_at_once) {
    on_new_thread([] {
        auto [client, server] = connected_pair(fibers::get_hub().loop());
        auto const out = pattern(8 << 20, 7), back = pattern(8 << 20, 11);
        std::vector<char> got_out(out.size()), got_back(back.size());
        // Each side writes 8 MiB while the other reads: neither fits in the
        // socket buffers, so every write waits for the peer's reads.
        fibers::task a = fibers::spawn([&, &c = client] { fibers::write(c, asio::buffer(out)); });
        fibers::task b = fibers::spawn([&, &s = server] { fibers::write(s, asio::buffer(back)); });
        fibers::task c = fibers::spawn([&, &s = server] { fibers::read(s, asio::buffer(got_out)); });
        fibers::task d = fibers::spawn([&, &cl = client] { fibers::read(cl, asio::buffer(got_back)); });
        for (auto* t : {&a, &b, &c, &d})
            t->join(30s);
        BOOST_TEST((got_out == out));
        BOOST_TEST((got_back == back));
    });
}

BOOST_AUTO_TEST_CASE(buffer_sequences) {
    on_new_thread([] {
        auto [client, server] = connected_pair(fibers::get_hub().loop());
        std::string a = "first,", b = "second,", c = "third";
        std::array<asio::const_buffer, 3> out{asio::buffer(a), asio::buffer(b), asio::buffer(c)};
        BOOST_TEST(fibers::write(client, out) == a.size() + b.size() + c.size());
        char x[4], y[10], z[4];
        std::array<asio::mutable_buffer, 3> in{asio::buffer(x), asio::buffer(y), asio::buffer(z)};
        BOOST_TEST(fibers::read(server, in) == 18u);
        BOOST_TEST(std::string(x, 4) + std::string(y, 10) + std::string(z, 4) == "first,second,third");
    });
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(errors)

BOOST_AUTO_TEST_CASE(end_of_stream) {
    on_new_thread([] {
        auto [client, server] = connected_pair(fibers::get_hub().loop());
        client.shutdown(tcp::socket::shutdown_send);
        char buffer[4];
        BOOST_CHECK_EXCEPTION(fibers::read_some(server, asio::buffer(buffer)), boost::system::system_error,
                              [](auto const& e) { return e.code() == asio::error::eof; });
        boost::system::error_code ec;
        BOOST_TEST(fibers::read_some(server, asio::buffer(buffer), fibers::yield[ec]) == 0u);
        BOOST_TEST((ec == asio::error::eof));
        // A short read: the bytes that came, and the error.
        auto [c2, s2] = connected_pair(fibers::get_hub().loop());
        asio::write(c2, asio::buffer("ab", 2));
        c2.shutdown(tcp::socket::shutdown_send);
        char four[4];
        BOOST_TEST(fibers::read(s2, asio::buffer(four), fibers::yield[ec]) == 2u);
        BOOST_TEST((ec == asio::error::eof));
    });
}

BOOST_AUTO_TEST_CASE(reset_by_the_peer) {
    on_new_thread([] {
        auto [client, server] = connected_pair(fibers::get_hub().loop());
        fibers::spawn([&client = client] {
            fibers::sleep(5ms);
            fibers_test::reset(client);
        });
        char buffer[4];
        boost::system::error_code ec;
        fibers::read_some(server, asio::buffer(buffer), fibers::yield[ec]);
        BOOST_TEST((ec == asio::error::connection_reset));
    });
}

BOOST_AUTO_TEST_CASE(a_closed_socket_is_an_error_where_the_token_says) {
    on_new_thread([] {
        auto& io = fibers::get_hub().loop();
        auto [client, server] = connected_pair(io);
        server.close();
        char buffer[4];
        boost::system::error_code ec;
        BOOST_TEST(fibers::read_some(server, asio::buffer(buffer), fibers::yield[ec]) == 0u);
        BOOST_TEST((ec == asio::error::bad_descriptor));
        ec = {};
        BOOST_TEST(fibers::write_some(server, asio::buffer("x", 1), fibers::yield[ec]) == 0u);
        BOOST_TEST((ec == asio::error::bad_descriptor));
        tcp::acceptor never_opened(io);
        ec = {};
        BOOST_TEST(!fibers::accept(never_opened, fibers::yield[ec]).is_open());
        BOOST_TEST((ec == asio::error::bad_descriptor));
        BOOST_CHECK_THROW(fibers::read_some(server, asio::buffer(buffer)), boost::system::system_error);
    });
}

BOOST_AUTO_TEST_CASE(deadlines_cover_the_whole_call) {
    on_new_thread([] {
        auto [client, server] = connected_pair(fibers::get_hub().loop());
        char buffer[4];
        BOOST_CHECK_THROW(fibers::read_some(server, asio::buffer(buffer), fibers::yield.after(20ms)),
                          fibers::timeout);
        // A write that can never finish: the peer does not read.
        std::vector<char> big(64 << 20);
        auto start = std::chrono::steady_clock::now();
        BOOST_CHECK_THROW(fibers::write(client, asio::buffer(big), fibers::yield.after(50ms)), fibers::timeout);
        BOOST_TEST((std::chrono::steady_clock::now() - start < 5s));
    });
}

// A peer that trickles one byte at a time, each within the timeout: the
// deadline of read() is for the whole read, not for each wait.
BOOST_AUTO_TEST_CASE(a_trickling_peer_does_not_extend_a_read_deadline) {
    on_new_thread([] {
        auto [client, server] = connected_pair(fibers::get_hub().loop());
        fibers::task trickle = fibers::spawn([&client = client] {
            for (int i = 0; i < 10; ++i) {
                fibers::sleep(30ms);
                fibers::write(client, asio::buffer("x", 1));
            }
        });
        char buffer[10];
        BOOST_CHECK_THROW(fibers::read(server, asio::buffer(buffer), fibers::yield.after(100ms)), fibers::timeout);
        trickle.join();
    });
}

BOOST_AUTO_TEST_CASE(cancelling_a_reader_loses_nothing) {
    on_new_thread([] {
        auto [client, server] = connected_pair(fibers::get_hub().loop());
        fibers::task reader = fibers::spawn([&server = server] {
            char buffer[16];
            fibers::read_some(server, asio::buffer(buffer));
        });
        fibers::sleep(5ms);
        reader.cancel();
        reader.join(5s);
        asio::write(client, asio::buffer("kept", 4));
        char buffer[16];
        std::size_t n = fibers::read_some(server, asio::buffer(buffer), fibers::yield.after(5s));
        BOOST_TEST(std::string(buffer, n) == "kept");
    });
}

// The readiness wait of a read that completed returns, and the read takes
// the data; the cancel comes at the next wait.
BOOST_AUTO_TEST_CASE(a_reader_cancelled_at_random_loses_no_byte) {
    on_new_thread([] {
        auto read_some = [](tcp::socket& s, asio::mutable_buffer b, boost::system::error_code& ec) {
            return fibers::read_some(s, b, fibers::yield[ec]);
        };
        auto const r = fibers_test::read_while_cancelled_at_random(read_some, 60000, 11);
        BOOST_TEST(r.failure.empty(), r.failure);
        BOOST_TEST(r.received == 60000u);
        BOOST_TEST(r.cancels > 0u);
    });
}

BOOST_AUTO_TEST_CASE(a_switchpoint_even_with_data_there) {
    on_new_thread([] {
        auto [client, server] = connected_pair(fibers::get_hub().loop());
        asio::write(client, asio::buffer("x", 1));
        wait_until_readable(server, 1);
        char buffer[4];
        {
            fibers::assert_no_switchpoints guard;
            BOOST_CHECK_THROW(fibers::read_some(server, asio::buffer(buffer)), fibers::switchpoint_violation);
        }
        BOOST_TEST(server.available() == 1u); // nothing was read
    });
}

BOOST_AUTO_TEST_SUITE_END()

// A deadline of fibers::read/write too long for the clock never passes.
BOOST_AUTO_TEST_SUITE(durations)

BOOST_AUTO_TEST_CASE(a_deadline_too_long_for_the_clock_never_passes) {
    on_new_thread([] {
        auto [client, server] = connected_pair(fibers::get_hub().loop());
        fibers_test::for_each_duration(fibers_test::durations_too_long_for_the_clock(), [&](auto d) {
            fibers::task writer = fibers::spawn([&client = client] {
                fibers::sleep(10ms);
                char const data[4] = {'a', 'b', 'c', 'd'};
                fibers::write(client, asio::buffer(data));
            });
            std::array<char, 4> buffer{};
            std::size_t n = 0;
            BOOST_CHECK_NO_THROW(n = fibers::read(server, asio::buffer(buffer), fibers::yield.after(d)));
            BOOST_TEST(n == 4u);
            BOOST_TEST(std::string(buffer.data(), 4) == "abcd");
            writer.join();
        });
    });
}

BOOST_AUTO_TEST_CASE(a_deadline_already_passed_times_out) {
    on_new_thread([] {
        auto [client, server] = connected_pair(fibers::get_hub().loop());
        fibers_test::for_each_duration(fibers_test::durations_already_passed(), [&](auto d) {
            std::array<char, 4> buffer{};
            BOOST_CHECK_THROW(fibers::read(server, asio::buffer(buffer), fibers::yield.after(d)), fibers::timeout);
        });
    });
}

BOOST_AUTO_TEST_SUITE_END()
