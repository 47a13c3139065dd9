// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// The echo benchmark's load generator (test/perf/echo.sh), written with
// fibers: one task per connection (two when messages are pipelined), on one
// hub per thread. The example client, to read first, is
// example/echo_client.cpp.
//
//   echo_load --port 7000 --connections 100 --size 512 --depth 1 --duration 5
//
// --depth 1 is ping-pong: each connection sends a message, reads its echo
// back in full, and sends the next one. --depth N > 1 streams: a writer task
// keeps N messages in flight while a reader task takes the echoes as they
// come. Every echoed byte is checked against what was sent, and every
// message carries its number and its connection's in a pattern of its own,
// so a lost, duplicated, reordered or corrupted byte is caught. Any mismatch,
// connection error or short read makes the run fail: a message on stderr and
// exit status 1.
//
// After --warmup seconds (not counted) the client counts, for --duration
// seconds, the messages whose echo came back in full; then each connection
// finishes what it has in flight, half-closes, and expects the server to
// close it in turn without sending anything more. On success it prints one
// line, which scripts parse by key:
//
//   connections=100 size=512 depth=1 threads=1 seconds=5.00 round_trips=123456 round_trips_per_second=24691

#include <fibers/errors.hpp>
#include <fibers/hub.hpp>
#include <fibers/io.hpp>
#include <fibers/switch_back.hpp>
#include <fibers/task.hpp>
#include <fibers/yield.hpp>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/program_options.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct settings {
    std::string host;
    unsigned short port = 0;
    std::size_t connections = 0;
    std::size_t size = 0;
    std::size_t depth = 0;
    unsigned threads = 0;
    double duration = 0;
    double warmup = 0;
    double timeout = 0;
    long long idle_spin_us = 0;
};

clock_type::duration seconds(double s) {
    return std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(s));
}

// The first failure of the run, from whichever thread; the others are
// counted. Once failed, every hub stops its connections.
class outcome {
public:
    void fail(std::string message) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (failed_.exchange(true))
            ++more_;
        else
            first_ = std::move(message);
    }
    void interrupt() { // every hub gets SIGINT: one report
        if (!interrupted_.exchange(true))
            fail("interrupted");
    }
    bool failed() const noexcept { return failed_.load(std::memory_order_relaxed); }
    bool interrupted() const noexcept { return interrupted_.load(); }
    std::string report() const {
        std::lock_guard<std::mutex> lock(mutex_);
        std::string r = first_;
        if (more_ > 0)
            r += " (and " + std::to_string(more_) + " more error" + (more_ > 1 ? "s" : "") + ")";
        return r;
    }

private:
    mutable std::mutex mutex_;
    std::atomic<bool> failed_{false};
    std::atomic<bool> interrupted_{false};
    std::string first_;
    std::size_t more_ = 0;
};

// The bytes of message `m` of connection `c`: a window of a random table,
// placed by a hash of (c, m), with m stamped over the first 8 bytes and c
// over the next 8. Generating one is a memcpy.
class pattern {
public:
    explicit pattern(std::size_t message_size) : size_(message_size), table_(table_size + message_size) {
        std::uint64_t x = 0x9e3779b97f4a7c15u;
        for (auto& b : table_) {
            x ^= x << 13; // xorshift64
            x ^= x >> 7;
            x ^= x << 17;
            b = static_cast<unsigned char>(x >> 56);
        }
    }

    void fill(std::uint64_t connection, std::uint64_t message, unsigned char* out) const noexcept {
        std::size_t const offset = static_cast<std::size_t>(mix(connection * 0x100000001b3u + message) % table_size);
        std::memcpy(out, table_.data() + offset, size_);
        stamp(out, 0, message);
        stamp(out, 8, connection);
    }

private:
    static constexpr std::size_t table_size = 1 << 16;

    static std::uint64_t mix(std::uint64_t z) noexcept { // splitmix64's finalizer
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
        return z ^ (z >> 31);
    }
    void stamp(unsigned char* out, std::size_t at, std::uint64_t value) const noexcept {
        for (std::size_t i = 0; i < 8 && at + i < size_; ++i)
            out[at + i] ^= static_cast<unsigned char>(value >> (8 * i));
    }

    std::size_t size_;
    std::vector<unsigned char> table_;
};

// What a failing connection throws: the message is already complete.
struct connection_failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// All threads connect first; the last one in sets the clock for everyone.
class start_line {
public:
    explicit start_line(unsigned threads) : waiting_(threads) {}
    clock_type::time_point arrive() {
        std::unique_lock<std::mutex> lock(mutex_);
        if (--waiting_ == 0) {
            start_ = clock_type::now();
            open_ = true;
            opened_.notify_all();
        } else {
            opened_.wait(lock, [this] { return open_; });
        }
        return start_;
    }

private:
    std::mutex mutex_;
    std::condition_variable opened_;
    unsigned waiting_;
    bool open_ = false;
    clock_type::time_point start_;
};

enum class phase { warming_up, measuring, stopping };

struct connection {
    connection(asio::io_context& io, std::uint64_t connection_id) : id(connection_id), socket(io) {}

    std::uint64_t id;
    tcp::socket socket;
    // Ping-pong: the message sent. Streaming: a ring of `depth` message
    // slots, message m in slot m % depth, kept until its echo is checked.
    std::vector<unsigned char> sent;
    std::vector<unsigned char> received;
    std::uint64_t messages_sent = 0;  // put in `sent` and handed to write
    std::uint64_t bytes_echoed = 0;   // received and checked
    std::uint64_t round_trips = 0;    // echoes completed while measuring
    bool writer_done = false;         // the send side is shut down
    unsigned tasks = 0;               // its traffic tasks still running
    fibers::switch_back<>* writer_waiting = nullptr; // streaming: the writer waits for room
};

// What the fibers of one hub (one thread) share; only they touch it.
struct hub_state {
    hub_state(settings const& c, pattern const& m, outcome& r) : config(c), messages(m), result(r) {}

    settings const& config;
    pattern const& messages;
    outcome& result;
    std::vector<std::unique_ptr<connection>> connections;
    std::vector<fibers::task> traffic;
    phase now = phase::warming_up;
    std::size_t busy = 0; // traffic tasks still running
    clock_type::time_point measured_from, measured_to;
};

std::string describe(connection const& c) { return "connection " + std::to_string(c.id); }

std::string hex(unsigned v) {
    char text[8];
    std::snprintf(text, sizeof text, "0x%02x", v & 0xffu);
    return text;
}

// Compares `n` echoed bytes at stream offset `at` with what was sent.
void check(connection const& c, std::size_t message_size, std::uint64_t at, unsigned char const* got,
           unsigned char const* expected, std::size_t n) {
    if (std::memcmp(got, expected, n) == 0)
        return;
    std::size_t i = 0;
    while (got[i] == expected[i])
        ++i;
    std::uint64_t const byte = at + i;
    throw connection_failure(describe(c) + ": echoed byte " + std::to_string(byte) + " (message " +
                             std::to_string(byte / message_size) + ", offset " +
                             std::to_string(byte % message_size) + ") is " + hex(got[i]) + ", expected " +
                             hex(expected[i]));
}

[[noreturn]] void io_failure(connection const& c, char const* what, boost::system::error_code const& ec) {
    throw connection_failure(describe(c) + ": " + what + ": " + ec.message());
}

[[noreturn]] void short_read(connection const& c, std::uint64_t got, std::uint64_t expected) {
    throw connection_failure(describe(c) + ": the server closed the connection after echoing " +
                             std::to_string(got) + " of " + std::to_string(expected) + " bytes");
}

// After the last message: half-close, then the server must close too,
// with nothing more to say.
void expect_close(connection& c) {
    unsigned char extra[64];
    boost::system::error_code ec;
    std::size_t n = fibers::read_some(c.socket, asio::buffer(extra), fibers::yield[ec]);
    if (ec == asio::error::eof)
        return;
    if (ec)
        io_failure(c, "waiting for the server to close", ec);
    throw connection_failure(describe(c) + ": the server sent " + std::to_string(n) +
                             " byte(s) more than it was sent");
}

void shut_down_sending(connection& c) {
    boost::system::error_code ec;
    c.socket.shutdown(tcp::socket::shutdown_send, ec);
    if (ec)
        io_failure(c, "shutdown", ec);
    c.writer_done = true;
}

void ping_pong(hub_state& hs, connection& c) {
    std::size_t const size = hs.config.size;
    unsigned char* out = c.sent.data();
    unsigned char* in = c.received.data();
    while (hs.now != phase::stopping) {
        hs.messages.fill(c.id, c.messages_sent, out);
        ++c.messages_sent;
        boost::system::error_code ec;
        fibers::write(c.socket, asio::buffer(out, size), fibers::yield[ec]);
        if (ec)
            io_failure(c, "write", ec);
        // The echo cannot be there yet: wait for it rather than try a read
        // bound to fail. One system call less per round trip: the client
        // must not cost more than the servers it measures.
        c.socket.async_wait(tcp::socket::wait_read, fibers::yield[ec]);
        std::size_t n = ec ? 0 : fibers::read(c.socket, asio::buffer(in, size), fibers::yield[ec]);
        if (ec == asio::error::eof)
            short_read(c, c.bytes_echoed + n, c.messages_sent * size);
        if (ec)
            io_failure(c, "read", ec);
        check(c, size, c.bytes_echoed, in, out, size);
        c.bytes_echoed += size;
        if (hs.now == phase::measuring)
            ++c.round_trips;
    }
    shut_down_sending(c);
    expect_close(c);
}

// Streaming, the send side: keeps `depth` messages in flight, writing all
// the free slots it can in one call.
void stream_writer(hub_state& hs, connection& c) {
    std::size_t const size = hs.config.size;
    std::size_t const depth = hs.config.depth;
    unsigned char* ring = c.sent.data();
    while (hs.now != phase::stopping) {
        std::uint64_t const in_flight = c.messages_sent - c.bytes_echoed / size;
        if (in_flight == depth) {
            fibers::switch_back<> room;
            c.writer_waiting = &room;
            struct forget {
                connection& c;
                ~forget() { c.writer_waiting = nullptr; }
            } forget_on_exit{c};
            room.wait();
            continue;
        }
        std::size_t const slot = static_cast<std::size_t>(c.messages_sent % depth);
        std::size_t const count = std::min<std::size_t>(static_cast<std::size_t>(depth - in_flight), depth - slot);
        for (std::size_t i = 0; i < count; ++i)
            hs.messages.fill(c.id, c.messages_sent + i, ring + (slot + i) * size);
        c.messages_sent += count;
        boost::system::error_code ec;
        fibers::write(c.socket, asio::buffer(ring + slot * size, count * size), fibers::yield[ec]);
        if (ec)
            io_failure(c, "write", ec);
    }
    shut_down_sending(c);
}

// Streaming, the receive side: checks the echoes as they come, frees their
// slots, and expects the server's close once the writer is done.
void stream_reader(hub_state& hs, connection& c) {
    std::size_t const size = hs.config.size;
    std::size_t const ring_size = c.sent.size();
    unsigned char const* ring = c.sent.data();
    for (;;) {
        boost::system::error_code ec;
        if (c.bytes_echoed == c.messages_sent * size) {
            // Nothing in flight, so nothing to read yet: wait rather than
            // try (as in ping_pong).
            c.socket.async_wait(tcp::socket::wait_read, fibers::yield[ec]);
            if (ec)
                io_failure(c, "read", ec);
        }
        std::size_t const n = fibers::read_some(c.socket, asio::buffer(c.received), fibers::yield[ec]);
        std::uint64_t const sent_bytes = c.messages_sent * size;
        if (ec == asio::error::eof) {
            if (!c.writer_done || c.bytes_echoed != sent_bytes)
                short_read(c, c.bytes_echoed, sent_bytes);
            return;
        }
        if (ec)
            io_failure(c, "read", ec);
        if (c.bytes_echoed + n > sent_bytes)
            throw connection_failure(describe(c) + ": the server echoed " +
                                     std::to_string(c.bytes_echoed + n - sent_bytes) +
                                     " byte(s) more than it was sent");
        std::size_t const at = static_cast<std::size_t>(c.bytes_echoed % ring_size);
        std::size_t const first = std::min(n, ring_size - at);
        check(c, size, c.bytes_echoed, c.received.data(), ring + at, first);
        check(c, size, c.bytes_echoed + first, c.received.data() + first, ring, n - first);
        std::uint64_t const completed = (c.bytes_echoed + n) / size - c.bytes_echoed / size;
        c.bytes_echoed += n;
        if (hs.now == phase::measuring)
            c.round_trips += completed;
        if (completed > 0 && c.writer_waiting != nullptr)
            (*std::exchange(c.writer_waiting, nullptr))();
    }
}

// Runs `body` as a traffic task: failures are recorded, cancellation (the
// run is stopping) is quiet.
template <class Body>
fibers::task spawn_traffic(hub_state& hs, connection& c, Body body) {
    ++hs.busy;
    ++c.tasks;
    return fibers::spawn([&hs, &c, body] {
        struct done {
            hub_state& hs;
            connection& c;
            ~done() {
                --hs.busy;
                --c.tasks;
            }
        } count_down{hs, c};
        try {
            body(hs, c);
        } catch (fibers::cancelled const&) {
            throw;
        } catch (connection_failure const& e) {
            hs.result.fail(e.what());
        } catch (std::exception const& e) {
            hs.result.fail(describe(c) + ": " + e.what());
        }
    });
}

// Sleeps until `t`, waking often enough to see another thread's failure.
// False if the run failed meanwhile.
bool wait_until(hub_state& hs, clock_type::time_point t) {
    for (;;) {
        if (hs.result.failed())
            return false;
        auto const now = clock_type::now();
        if (now >= t)
            return true;
        fibers::sleep(std::min<clock_type::duration>(t - now, 20ms));
    }
}

// The drain took too long: says which connections wait, and for what.
void report_stuck(hub_state& hs) {
    std::size_t const size = hs.config.size;
    std::size_t stuck = 0;
    std::ostringstream text;
    for (auto const& c : hs.connections) {
        if (c->tasks == 0)
            continue;
        if (stuck++ > 0)
            continue;
        text << describe(*c) << ": ";
        std::uint64_t const sent = c->messages_sent * size;
        if (c->bytes_echoed < sent)
            text << "no echo for " << sent - c->bytes_echoed << " of " << sent << " bytes";
        else
            text << "all " << sent << " bytes echoed, but the server did not close the connection";
        text << " " << hs.config.timeout << " s after the end";
    }
    if (stuck > 1)
        text << " (" << stuck - 1 << " other connection" << (stuck > 2 ? "s" : "") << " too)";
    hs.result.fail(text.str());
}

// The hub's clock: warm-up, measurement, then the drain, bounded by
// --timeout. On failure or a stuck drain it cancels the traffic.
void control(hub_state& hs, clock_type::time_point start) {
    auto const measure_from = start + seconds(hs.config.warmup);
    auto const measure_to = measure_from + seconds(hs.config.duration);
    bool ok = wait_until(hs, measure_from);
    if (ok) {
        hs.measured_from = clock_type::now();
        hs.now = phase::measuring;
        ok = wait_until(hs, measure_to);
    }
    hs.measured_to = clock_type::now();
    hs.now = phase::stopping;
    if (ok) {
        auto const deadline = hs.measured_to + seconds(hs.config.timeout);
        while (hs.busy > 0 && !hs.result.failed() && clock_type::now() < deadline)
            fibers::sleep(5ms);
        if (hs.busy > 0 && !hs.result.failed())
            report_stuck(hs);
    }
    if (hs.busy > 0)
        for (auto& t : hs.traffic)
            t.cancel("the run is stopping");
}

struct hub_job {
    settings const& config;
    pattern const& messages;
    outcome& result;
    start_line& start;
    tcp::endpoint server;
    std::uint64_t first_id, count;
    // Results.
    std::uint64_t round_trips = 0;
    clock_type::duration measured{};
};

void drive(hub_job& job, hub_state& hs, bool& arrived) {
    fibers::hub& hub = fibers::get_hub();
    settings const& cfg = job.config;
    hub.idle_spin(std::chrono::microseconds(cfg.idle_spin_us));
    bool const streaming = cfg.depth > 1;
    for (std::uint64_t i = 0; i < job.count; ++i) {
        auto c = std::make_unique<connection>(hub.loop(), job.first_id + i);
        c->sent.resize(cfg.size * cfg.depth);
        c->received.resize(streaming ? std::min<std::size_t>(cfg.size * cfg.depth, 64 * 1024) : cfg.size);
        hs.connections.push_back(std::move(c));
    }

    std::vector<fibers::task> connecting;
    for (auto& c : hs.connections)
        connecting.push_back(fibers::spawn([&hs, &job, &c = *c] {
            boost::system::error_code ec;
            try {
                c.socket.open(job.server.protocol(), ec);
                if (!ec)
                    c.socket.set_option(tcp::no_delay(true), ec);
                if (!ec)
                    c.socket.async_connect(job.server, fibers::yield[ec].after(seconds(hs.config.timeout)));
            } catch (fibers::timeout const&) {
                std::ostringstream text;
                text << describe(c) << ": connecting to " << job.server << ": no answer in " << hs.config.timeout
                     << " s";
                hs.result.fail(text.str());
                return;
            }
            if (ec) {
                std::ostringstream text;
                text << describe(c) << ": connecting to " << job.server << ": " << ec.message();
                hs.result.fail(text.str());
            }
        }));
    for (auto& t : connecting)
        t.join();

    arrived = true;
    clock_type::time_point const start = job.start.arrive();
    if (job.result.failed())
        return;

    for (auto& c : hs.connections) {
        if (streaming) {
            hs.traffic.push_back(spawn_traffic(hs, *c, stream_reader));
            hs.traffic.push_back(spawn_traffic(hs, *c, stream_writer));
        } else {
            hs.traffic.push_back(spawn_traffic(hs, *c, ping_pong));
        }
    }
    fibers::task controller = fibers::spawn([&hs, start] { control(hs, start); });
    controller.join();
    for (auto& t : hs.traffic)
        t.join();

    for (auto& c : hs.connections) {
        job.round_trips += c->round_trips;
        boost::system::error_code ignored; // both sides have shut down: nothing can be lost
        c->socket.close(ignored);
    }
    job.measured = hs.measured_to - hs.measured_from;
}

// One thread's share of the connections, on that thread's hub.
void run_hub(hub_job& job) {
    hub_state hs(job.config, job.messages, job.result);
    bool arrived = false;
    try {
        drive(job, hs, arrived);
    } catch (fibers::keyboard_interrupt const&) {
        job.result.interrupt();
    } catch (std::exception const& e) {
        job.result.fail(std::string("unexpected error: ") + e.what());
    }
    if (!arrived)
        job.start.arrive();
    // Unwinds whatever still runs (only after a failure) while the
    // connections it uses still exist.
    try {
        fibers::get_hub().close();
    } catch (std::exception const& e) {
        job.result.fail(std::string("closing the hub: ") + e.what());
    }
}

tcp::endpoint resolve(settings const& cfg) {
    asio::io_context io;
    tcp::resolver resolver(io);
    auto results = resolver.resolve(cfg.host, std::to_string(cfg.port), tcp::resolver::numeric_service);
    if (results.empty())
        throw std::runtime_error("no address for " + cfg.host);
    return results.begin()->endpoint();
}

// Parses the command line; false: exit with `status`.
bool parse(int argc, char** argv, settings& cfg, int& status) {
    namespace po = boost::program_options;
    long long port = 0, connections = 0, size = 0, depth = 0, threads = 0;
    long long const default_spin =
        std::chrono::duration_cast<std::chrono::microseconds>(fibers::hub::default_idle_spin).count();
    po::options_description options("echo_load: drives an echo server and checks every byte it echoes.\nOptions");
    options.add_options()
        ("help,h", "print this help")
        ("host", po::value(&cfg.host)->default_value("127.0.0.1"), "the server's address or name")
        ("port", po::value(&port)->default_value(7000), "the server's port")
        ("connections", po::value(&connections)->default_value(100), "connections, spread over the threads")
        ("size", po::value(&size)->default_value(512), "bytes per message")
        ("depth", po::value(&depth)->default_value(1),
         "messages in flight per connection: 1 = ping-pong, more = streaming")
        ("duration", po::value(&cfg.duration)->default_value(5.0, "5"), "seconds measured")
        ("warmup", po::value(&cfg.warmup)->default_value(0.5, "0.5"), "seconds run first, not counted")
        ("threads", po::value(&threads)->default_value(1), "threads, each with its own hub")
        ("idle-spin", po::value(&cfg.idle_spin_us)->default_value(default_spin),
         "microseconds a hub out of work polls for I/O before it sleeps, while busy (0: never)")
        ("timeout", po::value(&cfg.timeout)->default_value(10.0, "10"),
         "seconds allowed for a connect, and for the last echoes after the end");
    po::variables_map vm;
    try {
        po::store(po::parse_command_line(argc, argv, options), vm);
        po::notify(vm);
    } catch (po::error const& e) {
        std::cerr << "echo_load: " << e.what() << "\n" << options;
        status = 2;
        return false;
    }
    if (vm.count("help")) {
        std::cout << options;
        status = 0;
        return false;
    }
    std::string bad;
    if (port < 1 || port > 65535)
        bad = "--port must be in 1..65535";
    else if (connections < 1 || connections > 1000000)
        bad = "--connections must be in 1..1000000";
    else if (size < 1 || size > (64ll << 20))
        bad = "--size must be in 1..67108864";
    else if (depth < 1 || depth > 65536 || size * depth > (256ll << 20))
        bad = "--depth must be at least 1, with size*depth at most 256 MiB";
    else if (threads < 1 || threads > 1024)
        bad = "--threads must be in 1..1024";
    else if (!(cfg.duration > 0) || cfg.duration > 1e6)
        bad = "--duration must be positive";
    else if (!(cfg.warmup >= 0) || cfg.warmup > 1e6)
        bad = "--warmup must not be negative";
    else if (!(cfg.timeout > 0) || cfg.timeout > 1e6)
        bad = "--timeout must be positive";
    else if (cfg.idle_spin_us < 0 || cfg.idle_spin_us > 1000000)
        bad = "--idle-spin must be in 0..1000000";
    if (!bad.empty()) {
        std::cerr << "echo_load: " << bad << "\n";
        status = 2;
        return false;
    }
    cfg.port = static_cast<unsigned short>(port);
    cfg.connections = static_cast<std::size_t>(connections);
    cfg.size = static_cast<std::size_t>(size);
    cfg.depth = static_cast<std::size_t>(depth);
    cfg.threads = static_cast<unsigned>(std::min<long long>(threads, connections));
    return true;
}

} // namespace

int main(int argc, char** argv) {
    settings cfg;
    int status = 0;
    if (!parse(argc, argv, cfg, status))
        return status;
    std::signal(SIGPIPE, SIG_IGN); // a peer's reset is an error to report, not a reason to die

    tcp::endpoint server;
    try {
        server = resolve(cfg);
    } catch (boost::system::system_error const& e) {
        std::cerr << "echo_load: " << cfg.host << ":" << cfg.port << ": " << e.code().message() << "\n";
        return 1;
    } catch (std::exception const& e) {
        std::cerr << "echo_load: " << cfg.host << ":" << cfg.port << ": " << e.what() << "\n";
        return 1;
    }

    pattern const messages(cfg.size);
    outcome result;
    start_line start(cfg.threads);
    std::vector<std::unique_ptr<hub_job>> jobs;
    for (unsigned t = 0; t < cfg.threads; ++t) {
        std::uint64_t const from = cfg.connections * t / cfg.threads;
        std::uint64_t const to = cfg.connections * (t + 1) / cfg.threads;
        jobs.push_back(std::unique_ptr<hub_job>(new hub_job{cfg, messages, result, start, server, from, to - from}));
    }
    std::vector<std::thread> threads;
    for (unsigned t = 1; t < cfg.threads; ++t)
        threads.emplace_back([&job = *jobs[t]] { run_hub(job); });
    run_hub(*jobs[0]); // the main thread drives the first share
    for (auto& t : threads)
        t.join();

    if (result.failed()) {
        std::cerr << "echo_load: " << result.report() << "\n";
        return result.interrupted() ? 130 : 1;
    }
    std::uint64_t round_trips = 0;
    double seconds_measured = 0;
    for (auto const& job : jobs) {
        round_trips += job->round_trips;
        seconds_measured += std::chrono::duration<double>(job->measured).count();
    }
    seconds_measured /= static_cast<double>(jobs.size()); // the hubs' windows are the same, give or take a tick
    std::printf("connections=%zu size=%zu depth=%zu threads=%u seconds=%.2f round_trips=%llu "
                "round_trips_per_second=%.0f\n",
                cfg.connections, cfg.size, cfg.depth, cfg.threads, seconds_measured,
                static_cast<unsigned long long>(round_trips), static_cast<double>(round_trips) / seconds_measured);
    std::fflush(stdout);
    return 0;
}
