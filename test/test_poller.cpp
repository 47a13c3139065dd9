// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
// GCC 12 warns that ThreadSanitizer cannot see the atomic_thread_fence in
// Asio's handler invocation; our handlers never cross threads, so the
// warning is noise here.
#if defined(__SANITIZE_THREAD__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wtsan"
#endif
#define BOOST_TEST_MODULE poller
#include <boost/test/unit_test.hpp>

#include <fibers/errors.hpp>
#include <fibers/log.hpp>
#include <fibers/poller.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/system/system_error.hpp>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace std::chrono_literals;
using fibers::poll_events;
using fibers::poll_handle;
using fibers::poller;

namespace {

constexpr poll_events readable = poll_events::readable;
constexpr poll_events writable = poll_events::writable;
constexpr poll_events both = readable | writable;

void ignore(int, poll_events) {}

// Two connected fds (a pipe: [0] reads, [1] writes; or a socketpair),
// closed by the test unless it closed them itself.
struct fd_pair {
    std::array<int, 2> fd{-1, -1};

    static fd_pair pipe(int flags = O_CLOEXEC) {
        fd_pair p;
        BOOST_TEST_REQUIRE(::pipe2(p.fd.data(), flags) == 0);
        return p;
    }
    static fd_pair sockets() {
        fd_pair p;
        BOOST_TEST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p.fd.data()) == 0);
        return p;
    }
    fd_pair() = default;
    fd_pair(fd_pair&& o) noexcept : fd(o.fd) { o.fd = {-1, -1}; }
    fd_pair& operator=(fd_pair&&) = delete;
    ~fd_pair() {
        for (int f : fd)
            if (f >= 0)
                ::close(f);
    }
    int operator[](int i) const { return fd[i]; }
    void close(int i) {
        ::close(fd[i]);
        fd[i] = -1;
    }
};

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

void put(int fd, char const* text = "x") {
    std::string s(text);
    BOOST_TEST_REQUIRE(::write(fd, s.data(), s.size()) == static_cast<ssize_t>(s.size()));
}

std::string take(int fd) {
    char buf[256];
    ssize_t n = ::read(fd, buf, sizeof buf);
    BOOST_TEST_REQUIRE(n >= 0);
    return std::string(buf, static_cast<std::size_t>(n));
}

// Runs handlers one at a time until `done()` or the limit. One handler at a
// time because io_context::poll() never returns while a level-triggered
// callback keeps finding its fd ready.
template <class Pred>
bool run_until(boost::asio::io_context& io, Pred done, std::chrono::milliseconds limit = 10s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() >= deadline)
            return false;
        if (io.stopped())
            io.restart();
        io.run_one_for(10ms);
    }
    return true;
}

// Lets the loop run for a while: to show that something does not happen.
void spin(boost::asio::io_context& io, std::chrono::milliseconds d = 30ms) {
    io.restart();
    io.run_for(d);
}

// What one callback saw.
struct calls {
    std::vector<poll_events> seen;
    std::size_t size() const { return seen.size(); }
    poll_events last() const { return seen.empty() ? poll_events::none : seen.back(); }
    auto recorder(int expected_fd) {
        return [this, expected_fd](int fd, poll_events ready) {
            BOOST_TEST(fd == expected_fd);
            seen.push_back(ready);
        };
    }
};

struct log_capture {
    std::vector<std::pair<fibers::log_level, std::string>> lines;
    fibers::log_handler previous;
    log_capture()
        : previous(fibers::set_log_handler(
              [this](fibers::log_level l, std::string_view m) { lines.emplace_back(l, std::string(m)); })) {}
    ~log_capture() { fibers::set_log_handler(previous); }
};

} // namespace

// ---------------------------------------------------------------------------
// poll_events and poll_handle

BOOST_AUTO_TEST_CASE(events_algebra) {
    static_assert((readable | writable) == both);
    static_assert((both & readable) == readable);
    static_assert((both ^ readable) == writable);
    static_assert(~readable == writable);
    static_assert(~poll_events::none == both);
    static_assert(~both == poll_events::none);
    static_assert(fibers::has(both, readable) && !fibers::has(writable, readable));
    static_assert(fibers::has(readable, poll_events::none));
    constexpr poll_events e = [] {
        poll_events x = readable;
        x |= writable;
        x &= writable;
        x ^= both;
        return x;
    }();
    static_assert(e == readable);
    std::ostringstream os;
    os << poll_events::none << ' ' << readable << ' ' << writable << ' ' << both << ' ' << static_cast<poll_events>(4);
    BOOST_TEST(os.str() == "none readable writable readable|writable poll_events(4)");
}

BOOST_AUTO_TEST_CASE(handles_are_values) {
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe();
    poll_handle null;
    BOOST_TEST(!null);
    BOOST_TEST((null == poll_handle()));
    poll_handle h1 = p.add_callback(a[0], readable, ignore);
    poll_handle h2 = p.add_callback(a[0], readable, ignore);
    poll_handle copy = h1;
    BOOST_TEST(bool(h1));
    BOOST_TEST((copy == h1));
    BOOST_TEST((h1 != h2));
    BOOST_TEST((h1 != null));
    std::unordered_set<poll_handle> set{h1, h2, copy};
    BOOST_TEST(set.size() == 2u);
}

// ---------------------------------------------------------------------------
// Readiness

BOOST_AUTO_TEST_CASE(readable_fires_when_data_is_written_and_only_then) {
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe();
    calls c;
    p.add_callback(a[0], readable, c.recorder(a[0]));
    spin(io);
    BOOST_TEST(c.size() == 0u);
    put(a[1]);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return c.size() >= 1; }));
    BOOST_TEST(c.seen[0] == readable);
}

BOOST_AUTO_TEST_CASE(writable_fires_on_an_empty_pipe) {
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe();
    calls c;
    p.add_callback(a[1], writable, c.recorder(a[1]));
    BOOST_TEST_REQUIRE(run_until(io, [&] { return c.size() >= 1; }));
    BOOST_TEST(c.seen[0] == writable);
}

BOOST_AUTO_TEST_CASE(both_bits_when_both_are_ready) {
    boost::asio::io_context io;
    poller p(io);
    auto s = fd_pair::sockets();
    put(s[1]);
    calls c;
    p.add_callback(s[0], both, c.recorder(s[0]));
    BOOST_TEST_REQUIRE(run_until(io, [&] { return c.size() >= 1; }));
    BOOST_TEST(c.seen[0] == both);
}

BOOST_AUTO_TEST_CASE(writable_fires_when_room_is_made) {
    // Ready while the poller waits, not at its first look.
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe(O_CLOEXEC | O_NONBLOCK);
    // Fill the pipe so that the write end is not writable.
    std::string block(65536, 'x');
    while (::write(a[1], block.data(), block.size()) > 0) {
    }
    calls c;
    p.add_callback(a[1], writable, c.recorder(a[1]));
    spin(io);
    BOOST_TEST(c.size() == 0u);
    // Drain: writable again.
    while (::read(a[0], block.data(), block.size()) > 0) {
    }
    BOOST_TEST_REQUIRE(run_until(io, [&] { return c.size() >= 1; }));
    BOOST_TEST(c.seen[0] == writable);
}

BOOST_AUTO_TEST_CASE(both_become_ready_while_waiting) {
    // Both waits complete in the same loop iteration: one call, both bits.
    boost::asio::io_context io;
    poller p(io);
    auto s = fd_pair::sockets();
    std::string block(65536, 'x');
    while (::send(s[0], block.data(), block.size(), MSG_DONTWAIT) > 0) {
    }
    calls c;
    p.add_callback(s[0], both, c.recorder(s[0]));
    spin(io);
    BOOST_TEST(c.size() == 0u);
    while (::recv(s[1], block.data(), block.size(), MSG_DONTWAIT) > 0) {
    }
    put(s[1]);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return c.size() >= 1; }));
    BOOST_TEST(c.seen[0] == both);
}

BOOST_AUTO_TEST_CASE(several_callbacks_each_get_what_they_asked) {
    boost::asio::io_context io;
    poller p(io);
    auto s = fd_pair::sockets();
    calls r, w, rw, none;
    p.add_callback(s[0], readable, r.recorder(s[0]));
    p.add_callback(s[0], writable, w.recorder(s[0]));
    p.add_callback(s[0], both, rw.recorder(s[0]));
    p.add_callback(s[0], poll_events::none, none.recorder(s[0]));
    BOOST_TEST(p.callback_count(s[0]) == 4u);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return w.size() >= 3; }));
    BOOST_TEST(r.size() == 0u);
    for (poll_events e : rw.seen)
        BOOST_TEST(e == writable);
    put(s[1]);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return r.size() >= 2; }));
    for (poll_events e : r.seen)
        BOOST_TEST(e == readable);
    for (poll_events e : w.seen)
        BOOST_TEST(e == writable);
    BOOST_TEST(rw.last() == both);
    BOOST_TEST(none.size() == 0u);
}

BOOST_AUTO_TEST_CASE(eventfd_counter) {
    boost::asio::io_context io;
    poller p(io);
    int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    BOOST_TEST_REQUIRE(fd >= 0);
    int seen = 0;
    std::uint64_t total = 0;
    p.add_callback(fd, readable, [&](int f, poll_events) {
        std::uint64_t v;
        while (::read(f, &v, sizeof v) == sizeof v)
            total += v;
        ++seen;
    });
    std::uint64_t one = 1;
    BOOST_TEST_REQUIRE(::write(fd, &one, sizeof one) == 8);
    BOOST_TEST_REQUIRE(::write(fd, &one, sizeof one) == 8);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return total == 2; }));
    spin(io);
    BOOST_TEST(seen == 1); // drained at once: no second call
    p.close();
    BOOST_TEST(is_open(fd));
    ::close(fd);
}

// ---------------------------------------------------------------------------
// Level triggering

BOOST_AUTO_TEST_CASE(fires_again_while_unread_and_stops_once_drained) {
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe();
    int count = 0;
    bool drain = false;
    p.add_callback(a[0], readable, [&](int fd, poll_events) {
        ++count;
        if (drain)
            take(fd);
    });
    put(a[1], "abc");
    BOOST_TEST_REQUIRE(run_until(io, [&] { return count >= 5; }));
    drain = true;
    int before = count;
    BOOST_TEST_REQUIRE(run_until(io, [&] { return count > before; }));
    int drained_at = count;
    spin(io);
    BOOST_TEST(count == drained_at);
    // And it comes back with new data.
    put(a[1]);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return count > drained_at; }));
}

BOOST_AUTO_TEST_CASE(one_call_per_loop_iteration) {
    // Each check is one handler: run_one() calls a stuck-readable callback at
    // most once, so the loop stays fair to everything else.
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe();
    int count = 0;
    p.add_callback(a[0], readable, [&](int, poll_events) { ++count; });
    put(a[1]);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return count >= 1; }));
    for (int i = 0; i < 10; ++i) {
        int before = count;
        io.restart();
        io.run_one();
        BOOST_TEST(count - before <= 1);
    }
    BOOST_TEST(count >= 5);
}

BOOST_AUTO_TEST_CASE(update_to_none_stops_update_back_resumes) {
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe();
    calls c;
    poll_handle h = p.add_callback(a[0], readable, c.recorder(a[0]));
    put(a[1]);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return c.size() >= 2; }));
    p.update_callback(a[0], h, poll_events::none);
    std::size_t stopped_at = c.size();
    spin(io);
    BOOST_TEST(c.size() == stopped_at);
    BOOST_TEST(p.callback_count(a[0]) == 1u);
    p.update_callback(a[0], h, readable);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return c.size() > stopped_at; }));
}

BOOST_AUTO_TEST_CASE(update_changes_what_is_reported) {
    boost::asio::io_context io;
    poller p(io);
    auto s = fd_pair::sockets();
    calls c;
    poll_handle h = p.add_callback(s[0], readable, c.recorder(s[0]));
    spin(io);
    BOOST_TEST(c.size() == 0u); // writable, but not asked
    p.update_callback(s[0], h, writable);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return c.size() >= 1; }));
    BOOST_TEST(c.last() == writable);
    put(s[1]);
    p.update_callback(s[0], h, readable);
    std::size_t n = c.size();
    BOOST_TEST_REQUIRE(run_until(io, [&] { return c.size() > n + 2; }));
    for (std::size_t i = n; i < c.size(); ++i)
        BOOST_TEST(c.seen[i] == readable);
    // readable, then writable alone while data is pending: the cancelled
    // read wait must not leave the write wait dead, nor report readable.
    p.update_callback(s[0], h, writable);
    n = c.size();
    BOOST_TEST_REQUIRE(run_until(io, [&] { return c.size() > n + 2; }));
    for (std::size_t i = n; i < c.size(); ++i)
        BOOST_TEST(c.seen[i] == writable);
}

BOOST_AUTO_TEST_CASE(dropping_one_direction_keeps_the_other_waiting) {
    // Asio cancels both directions of a descriptor at once; the poller must
    // re-arm the direction still wanted.
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe(O_CLOEXEC | O_NONBLOCK);
    std::string block(65536, 'x');
    while (::write(a[1], block.data(), block.size()) > 0) {
    }
    // a[1] is full (not writable); a second pair gives a read end to watch.
    calls r, w;
    poll_handle hw = p.add_callback(a[1], writable, w.recorder(a[1]));
    poll_handle hr = p.add_callback(a[1], readable, r.recorder(a[1])); // never readable: a write end
    spin(io);                                                            // both waits are pending
    p.update_callback(a[1], hr, poll_events::none);                     // cancels the read wait (and the write wait)
    spin(io);
    BOOST_TEST(w.size() == 0u);
    while (::read(a[0], block.data(), block.size()) > 0) {
    }
    BOOST_TEST_REQUIRE(run_until(io, [&] { return w.size() >= 1; }));
    BOOST_TEST(w.last() == writable);
    BOOST_TEST(r.size() == 0u);
    (void)hw;
}

BOOST_AUTO_TEST_CASE(wanting_nothing_leaves_no_work_in_the_loop) {
    // A wait nobody needs is cancelled, not left pending: io_context::run()
    // returns once the poller wants nothing.
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe();
    poll_handle h1 = p.add_callback(a[0], readable, ignore);
    poll_handle h2 = p.add_callback(a[0], both, ignore);
    spin(io);
    BOOST_TEST(!io.stopped()); // waiting
    p.update_callback(a[0], h1, poll_events::none);
    p.update_callback(a[0], h2, writable); // a read end is never writable
    spin(io);
    BOOST_TEST(!io.stopped()); // still waiting, for writable
    p.update_callback(a[0], h2, poll_events::none);
    io.restart();
    io.run_for(2s);
    BOOST_TEST(io.stopped()); // ran out of work: returned early
    BOOST_TEST(p.callback_count(a[0]) == 2u);
}

// ---------------------------------------------------------------------------
// Removing, releasing

BOOST_AUTO_TEST_CASE(remove_stops_calls_and_leaves_the_fd_open) {
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe();
    auto token = std::make_shared<int>(0);
    int count = 0;
    poll_handle h = p.add_callback(a[0], readable, [&count, token](int, poll_events) { ++count; });
    BOOST_TEST(token.use_count() == 2);
    put(a[1], "ab");
    BOOST_TEST_REQUIRE(run_until(io, [&] { return count >= 1; }));
    p.remove_callback(a[0], h);
    BOOST_TEST(token.use_count() == 1); // the callback is gone, not just silenced
    int at = count;
    spin(io);
    BOOST_TEST(count == at);
    BOOST_TEST(p.callback_count(a[0]) == 0u);
    BOOST_TEST(is_open(a[0]));
    BOOST_TEST(is_open(a[1]));
    BOOST_TEST(take(a[0]) == "ab");
    put(a[1], "cd");
    BOOST_TEST(take(a[0]) == "cd");
}

BOOST_AUTO_TEST_CASE(removing_the_last_callback_releases_the_descriptor) {
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe();
    poll_handle h1 = p.add_callback(a[0], readable, ignore);
    poll_handle h2 = p.add_callback(a[0], writable, ignore);
    spin(io);
    // While watched, the io_context knows the fd: another Asio object
    // cannot take the same fd number.
    {
        boost::asio::posix::stream_descriptor sd(io);
        BOOST_CHECK_THROW(sd.assign(a[0]), boost::system::system_error);
    }
    BOOST_TEST(is_open(a[0]));
    p.remove_callback(a[0], h1);
    {
        boost::asio::posix::stream_descriptor sd(io);
        BOOST_CHECK_THROW(sd.assign(a[0]), boost::system::system_error);
    }
    p.remove_callback(a[0], h2);
    BOOST_TEST(is_open(a[0]));
    // Released: now it can be registered again.
    {
        boost::asio::posix::stream_descriptor sd(io);
        sd.assign(a[0]);
        sd.release(); // not ours to close
    }
    BOOST_TEST(is_open(a[0]));
    // A descriptor that owns a dup of it reads it.
    {
        boost::asio::posix::stream_descriptor sd(io, ::dup(a[0]));
        put(a[1], "hi");
        char buf[8];
        std::size_t got = 0;
        sd.async_read_some(boost::asio::buffer(buf), [&](boost::system::error_code ec, std::size_t n) {
            BOOST_TEST(!ec);
            got = n;
        });
        BOOST_TEST_REQUIRE(run_until(io, [&] { return got != 0; }));
        BOOST_TEST(std::string(buf, got) == "hi");
    } // closes the dup only
    BOOST_TEST(is_open(a[0]));
    // And the poller can watch it again.
    calls c;
    p.add_callback(a[0], readable, c.recorder(a[0]));
    put(a[1]);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return c.size() >= 1; }));
}

BOOST_AUTO_TEST_CASE(the_fd_flags_are_left_alone) {
    boost::asio::io_context io;
    poller p(io);
    auto blocking = fd_pair::pipe();
    auto nonblocking = fd_pair::pipe(O_CLOEXEC | O_NONBLOCK);
    int count = 0;
    p.add_callback(blocking[0], readable, [&](int, poll_events) { ++count; });
    p.add_callback(nonblocking[0], readable, [&](int, poll_events) { ++count; });
    spin(io); // waits started
    put(blocking[1]);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return count >= 1; }));
    BOOST_TEST((::fcntl(blocking[0], F_GETFL) & O_NONBLOCK) == 0);
    BOOST_TEST((::fcntl(nonblocking[0], F_GETFL) & O_NONBLOCK) != 0);
    p.close();
    BOOST_TEST((::fcntl(blocking[0], F_GETFL) & O_NONBLOCK) == 0);
    BOOST_TEST((::fcntl(nonblocking[0], F_GETFL) & O_NONBLOCK) != 0);
}

// ---------------------------------------------------------------------------
// Changes made by callbacks while they run

BOOST_AUTO_TEST_CASE(a_callback_removes_itself) {
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe();
    int self_count = 0, other_count = 0;
    poll_handle self;
    self = p.add_callback(a[0], readable, [&](int fd, poll_events) {
        ++self_count;
        p.remove_callback(fd, self);
    });
    p.add_callback(a[0], readable, [&](int, poll_events) { ++other_count; });
    put(a[1]);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return other_count >= 3; }));
    BOOST_TEST(self_count == 1);
    BOOST_TEST(p.callback_count(a[0]) == 1u);
}

BOOST_AUTO_TEST_CASE(the_last_callback_removes_itself_and_adds_a_new_one) {
    // The descriptor is released under the running dispatch and a new one
    // made for the same fd.
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe();
    int first = 0;
    calls second;
    poll_handle self;
    self = p.add_callback(a[0], readable, [&](int fd, poll_events) {
        ++first;
        p.remove_callback(fd, self);
        BOOST_TEST(p.callback_count(fd) == 0u);
        p.add_callback(fd, readable, second.recorder(fd));
    });
    put(a[1]);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return second.size() >= 2; }));
    BOOST_TEST(first == 1);
    BOOST_TEST(is_open(a[0]));
}

BOOST_AUTO_TEST_CASE(a_callback_removes_a_later_one) {
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe();
    int first = 0, second = 0;
    poll_handle victim;
    p.add_callback(a[0], readable, [&](int fd, poll_events) {
        if (++first == 1)
            p.remove_callback(fd, victim);
    });
    victim = p.add_callback(a[0], readable, [&](int, poll_events) { ++second; });
    put(a[1]);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return first >= 3; }));
    BOOST_TEST(second == 0); // removed before its turn in the same dispatch
}

BOOST_AUTO_TEST_CASE(a_callback_adds_one) {
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe();
    auto b = fd_pair::pipe();
    int adder = 0;
    calls added_same_fd, added_other_fd;
    p.add_callback(a[0], readable, [&](int fd, poll_events) {
        if (++adder == 1) {
            p.add_callback(fd, readable, added_same_fd.recorder(fd));
            p.add_callback(b[1], writable, added_other_fd.recorder(b[1]));
            BOOST_TEST(added_same_fd.size() == 0u); // not in the dispatch under way
        }
    });
    put(a[1]);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return adder >= 1; }));
    BOOST_TEST(added_same_fd.size() == 0u);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return added_same_fd.size() >= 2 && added_other_fd.size() >= 1; }));
    BOOST_TEST(added_other_fd.last() == writable);
}

BOOST_AUTO_TEST_CASE(a_callback_updates_itself) {
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe();
    int count = 0;
    poll_handle self;
    self = p.add_callback(a[0], readable, [&](int fd, poll_events) {
        ++count;
        p.update_callback(fd, self, poll_events::none);
    });
    put(a[1]);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return count >= 1; }));
    spin(io);
    BOOST_TEST(count == 1);
}

BOOST_AUTO_TEST_CASE(a_callback_closes_the_poller) {
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe();
    int first = 0, second = 0;
    p.add_callback(a[0], readable, [&](int, poll_events) {
        ++first;
        p.close();
    });
    p.add_callback(a[0], readable, [&](int, poll_events) { ++second; });
    put(a[1]);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return first >= 1; }));
    spin(io);
    BOOST_TEST(first == 1);
    BOOST_TEST(second == 0);
    BOOST_TEST(is_open(a[0]));
}

BOOST_AUTO_TEST_CASE(a_callback_destroys_the_poller) {
    boost::asio::io_context io;
    auto p = std::make_unique<poller>(io);
    auto a = fd_pair::pipe();
    auto token = std::make_shared<int>(0);
    int first = 0, second = 0;
    p->add_callback(a[0], readable, [&](int, poll_events) {
        ++first;
        p.reset();
    });
    p->add_callback(a[0], readable, [&second, token](int, poll_events) { ++second; });
    put(a[1]);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return first >= 1; }));
    spin(io);
    BOOST_TEST(first == 1);
    BOOST_TEST(second == 0);
    BOOST_TEST(token.use_count() == 1);
    BOOST_TEST(is_open(a[0]));
}

// ---------------------------------------------------------------------------
// Closing

BOOST_AUTO_TEST_CASE(close_with_pending_waits) {
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe();
    auto s = fd_pair::sockets();
    auto token = std::make_shared<int>(0);
    int count = 0;
    auto cb = [&count, token](int, poll_events) { ++count; };
    p.add_callback(a[0], readable, cb);
    p.add_callback(a[1], writable, cb);
    p.add_callback(s[0], both, cb);
    p.add_callback(s[1], readable, cb);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return count >= 3; })); // waits and checks under way
    p.close();
    BOOST_TEST(p.closed());
    BOOST_TEST(token.use_count() == 2); // ours and `cb`'s
    int at = count;
    put(a[1]);
    put(s[0]);
    spin(io, 50ms);
    BOOST_TEST(count == at);
    for (int fd : {a[0], a[1], s[0], s[1]})
        BOOST_TEST(is_open(fd));
    BOOST_TEST(take(a[0]) == "x");
    BOOST_CHECK_THROW(p.add_callback(a[0], readable, ignore), fibers::error);
    BOOST_CHECK_THROW(p.update_callback(a[0], poll_handle(), readable), fibers::error);
    p.remove_callback(a[0], poll_handle()); // nothing left to remove: quietly nothing
    p.close();                              // idempotent
    // The same fds can go to a fresh poller (nothing registered lingers).
    poller q(io);
    calls c;
    q.add_callback(s[1], readable, c.recorder(s[1]));
    BOOST_TEST_REQUIRE(run_until(io, [&] { return c.size() >= 1; }));
}

BOOST_AUTO_TEST_CASE(destruction_is_close) {
    boost::asio::io_context io;
    auto a = fd_pair::pipe();
    int count = 0;
    {
        poller p(io);
        p.add_callback(a[0], readable, [&](int, poll_events) { ++count; });
        p.add_callback(a[1], writable, [&](int, poll_events) { ++count; });
        BOOST_TEST_REQUIRE(run_until(io, [&] { return count >= 1; }));
    }
    int at = count;
    put(a[1]);
    spin(io, 50ms);
    BOOST_TEST(count == at);
    BOOST_TEST(is_open(a[0]));
    BOOST_TEST(is_open(a[1]));
}

BOOST_AUTO_TEST_CASE(closed_then_the_io_context_goes_without_running) {
    // Handlers disowned by close() are still queued when the io_context is
    // destroyed: they must be freed, and must not touch anything.
    auto a = fd_pair::pipe();
    int count = 0;
    {
        boost::asio::io_context io;
        poller p(io);
        p.add_callback(a[0], readable, [&](int, poll_events) { ++count; });
        p.add_callback(a[1], writable, [&](int, poll_events) { ++count; });
        io.run_one_for(100ms);
        p.close();
        put(a[1]);
    }
    {
        boost::asio::io_context io;
        auto p = std::make_unique<poller>(io);
        p->add_callback(a[0], readable, [&](int, poll_events) { ++count; });
        p.reset(); // a check is posted, never run
    }
    BOOST_TEST(count <= 1);
    BOOST_TEST(is_open(a[0]));
    BOOST_TEST(is_open(a[1]));
}

// ---------------------------------------------------------------------------
// Bad input and refusals

BOOST_AUTO_TEST_CASE(bad_arguments) {
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe();
    auto b = fd_pair::pipe();
    BOOST_CHECK_THROW(p.add_callback(-1, readable, ignore), std::invalid_argument);
    BOOST_CHECK_THROW(p.add_callback(a[0], static_cast<poll_events>(4), ignore), std::invalid_argument);
    BOOST_CHECK_THROW(p.add_callback(a[0], static_cast<poll_events>(5), ignore), std::invalid_argument);
    BOOST_CHECK_THROW(p.add_callback(a[0], readable, poller::callback_type()), std::invalid_argument);
    void (*null_fn)(int, poll_events) = nullptr;
    BOOST_CHECK_THROW(p.add_callback(a[0], readable, null_fn), std::invalid_argument);
    BOOST_TEST(p.callback_count(a[0]) == 0u);

    poll_handle h = p.add_callback(a[0], readable, ignore);
    poll_handle hb = p.add_callback(b[0], readable, ignore);
    BOOST_CHECK_THROW(p.update_callback(a[0], h, static_cast<poll_events>(8)), std::invalid_argument);
    BOOST_CHECK_THROW(p.update_callback(a[0], poll_handle(), readable), std::invalid_argument);
    BOOST_CHECK_THROW(p.update_callback(a[0], hb, readable), std::invalid_argument); // another fd's
    BOOST_CHECK_THROW(p.update_callback(a[1], h, readable), std::invalid_argument);  // an unwatched fd
    BOOST_CHECK_THROW(p.remove_callback(a[0], hb), std::invalid_argument);
    BOOST_CHECK_THROW(p.remove_callback(-3, h), std::invalid_argument);
    BOOST_TEST(p.callback_count(a[0]) == 1u);
    BOOST_TEST(p.callback_count(b[0]) == 1u);

    boost::asio::io_context other_io;
    poller other(other_io);
    poll_handle ho = other.add_callback(a[1], writable, ignore);
    BOOST_CHECK_THROW(p.remove_callback(a[1], ho), std::invalid_argument); // another poller's

    p.remove_callback(a[0], h);
    BOOST_CHECK_THROW(p.remove_callback(a[0], h), std::invalid_argument); // stale
    BOOST_CHECK_THROW(p.update_callback(a[0], h, readable), std::invalid_argument);

    // None is allowed: registered, never called.
    calls c;
    poll_handle hn = p.add_callback(a[1], poll_events::none, c.recorder(a[1]));
    spin(io);
    BOOST_TEST(c.size() == 0u);
    BOOST_TEST(p.callback_count(a[1]) == 1u);
    p.remove_callback(a[1], hn);
}

BOOST_AUTO_TEST_CASE(an_fd_asio_already_has_is_refused_with_no_change) {
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe();
    boost::asio::posix::stream_descriptor sd(io);
    sd.assign(a[0]);
    try {
        p.add_callback(a[0], readable, ignore);
        BOOST_ERROR("add_callback accepted an fd the io_context already manages");
    } catch (boost::system::system_error const& e) {
        BOOST_TEST(e.code().value() == EEXIST);
    }
    BOOST_TEST(p.callback_count(a[0]) == 0u);
    BOOST_TEST(is_open(a[0]));
    sd.release();
    // Nothing was left behind: the fd can be watched now.
    calls c;
    p.add_callback(a[0], readable, c.recorder(a[0]));
    put(a[1]);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return c.size() >= 1; }));
}

BOOST_AUTO_TEST_CASE(a_closed_fd_is_refused) {
    boost::asio::io_context io;
    poller p(io);
    int fd;
    {
        auto a = fd_pair::pipe();
        fd = a[0];
    }
    BOOST_CHECK_THROW(p.add_callback(fd, readable, ignore), boost::system::system_error);
    BOOST_TEST(p.callback_count(fd) == 0u);
}

// ---------------------------------------------------------------------------
// Failures

BOOST_AUTO_TEST_CASE(exceptions_from_callbacks_are_logged_and_dropped) {
    log_capture log;
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe();
    int thrower = 0, other = 0;
    p.add_callback(a[0], readable, [&](int, poll_events) {
        if (++thrower == 1)
            throw std::runtime_error("boom");
        if (thrower == 2)
            throw 42;
    });
    p.add_callback(a[0], readable, [&](int, poll_events) { ++other; });
    put(a[1]);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return thrower >= 4 && other >= 4; }));
    BOOST_TEST_REQUIRE(log.lines.size() == 2u);
    BOOST_TEST((log.lines[0].first == fibers::log_level::error));
    BOOST_TEST(log.lines[0].second.find("boom") != std::string::npos);
    BOOST_TEST(log.lines[0].second.find("fd " + std::to_string(a[0])) != std::string::npos);
    BOOST_TEST((log.lines[1].first == fibers::log_level::error));
}

BOOST_AUTO_TEST_CASE(hang_up_wakes_a_reader) {
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe();
    std::string got = "unset";
    poll_handle h;
    h = p.add_callback(a[0], readable, [&](int fd, poll_events ready) {
        BOOST_TEST(ready == readable);
        got = take(fd);
        p.remove_callback(fd, h);
    });
    spin(io);
    BOOST_TEST(got == "unset");
    a.close(1);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return got != "unset"; }));
    BOOST_TEST(got.empty()); // end of file
}

BOOST_AUTO_TEST_CASE(peer_gone_wakes_a_writer) {
    boost::asio::io_context io;
    poller p(io);
    auto s = fd_pair::sockets();
    // Fill s[0] so that it is not writable, then make the peer go away.
    std::string block(65536, 'x');
    while (::send(s[0], block.data(), block.size(), MSG_DONTWAIT | MSG_NOSIGNAL) > 0) {
    }
    int error = 0;
    poll_handle h;
    h = p.add_callback(s[0], writable, [&](int fd, poll_events ready) {
        BOOST_TEST(ready == writable);
        if (::send(fd, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
            error = errno;
        p.remove_callback(fd, h);
    });
    spin(io);
    BOOST_TEST(error == 0);
    s.close(1);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return error != 0; }));
    BOOST_TEST((error == EPIPE || error == ECONNRESET));
}

BOOST_AUTO_TEST_CASE(an_fd_in_error_wakes_everyone_with_what_they_asked) {
    // The write end of a full pipe whose reader has gone reports only
    // POLLERR: neither readable nor writable, yet every callback must wake
    // with its own events so that its write sees EPIPE.
    struct sigpipe_ignored {
        struct sigaction old{};
        sigpipe_ignored() {
            struct sigaction ign{};
            ign.sa_handler = SIG_IGN;
            ::sigaction(SIGPIPE, &ign, &old);
        }
        ~sigpipe_ignored() { ::sigaction(SIGPIPE, &old, nullptr); }
    } guard;
    boost::asio::io_context io;
    poller p(io);
    auto a = fd_pair::pipe(O_CLOEXEC | O_NONBLOCK);
    std::string block(65536, 'x');
    while (::write(a[1], block.data(), block.size()) > 0) {
    }
    calls w, r;
    int error = 0;
    poll_handle hw, hr;
    hw = p.add_callback(a[1], writable, [&](int fd, poll_events ready) {
        w.seen.push_back(ready);
        if (::write(fd, "x", 1) < 0)
            error = errno;
    });
    hr = p.add_callback(a[1], readable, r.recorder(a[1])); // a write end: readable only by error
    spin(io);
    BOOST_TEST(w.size() == 0u);
    BOOST_TEST(r.size() == 0u);
    a.close(0);
    BOOST_TEST_REQUIRE(run_until(io, [&] { return w.size() >= 1 && r.size() >= 1; }));
    BOOST_TEST(w.seen[0] == writable);
    BOOST_TEST(r.seen[0] == readable);
    BOOST_TEST(error == EPIPE);
    p.remove_callback(a[1], hw);
    p.remove_callback(a[1], hr);
    BOOST_TEST(is_open(a[1]));
}

BOOST_AUTO_TEST_CASE(a_regular_file_is_always_ready) {
    // As with poll(2); epoll refuses regular files and Asio lets them be.
    boost::asio::io_context io;
    poller p(io);
    std::FILE* f = std::tmpfile();
    BOOST_TEST_REQUIRE(f != nullptr);
    int fd = ::fileno(f);
    calls c;
    poll_handle h = p.add_callback(fd, both, c.recorder(fd));
    BOOST_TEST_REQUIRE(run_until(io, [&] { return c.size() >= 2; }));
    BOOST_TEST(c.seen[0] == both);
    p.remove_callback(fd, h);
    BOOST_TEST(is_open(fd));
    std::fclose(f);
}

// ---------------------------------------------------------------------------
// Threads: a poller per thread, each on its own io_context.

BOOST_AUTO_TEST_CASE(one_poller_per_thread) {
    // No Boost.Test macros in the threads: Boost.Test is not thread-safe.
    std::atomic<int> done{0};
    auto body = [&] {
        boost::asio::io_context io;
        poller p(io);
        int fd[2];
        if (::pipe2(fd, O_CLOEXEC) != 0)
            return;
        int count = 0;
        std::vector<poll_handle> hs;
        for (int i = 0; i < 50; ++i)
            hs.push_back(p.add_callback(fd[0], readable, [&](int f, poll_events) {
                if (++count % 50 == 0) {
                    char c;
                    (void)!::read(f, &c, 1);
                }
            }));
        for (int i = 0; i < 20; ++i) {
            (void)!::write(fd[1], "x", 1);
            int target = count + 50;
            run_until(io, [&] { return count >= target; });
        }
        for (poll_handle h : hs)
            p.remove_callback(fd[0], h);
        if (count == 1000 && ::fcntl(fd[0], F_GETFD) != -1)
            ++done;
        ::close(fd[0]);
        ::close(fd[1]);
    };
    std::thread t1(body), t2(body);
    t1.join();
    t2.join();
    BOOST_TEST(done.load() == 2);
}
