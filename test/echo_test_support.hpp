// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_TEST_ECHO_TEST_SUPPORT_HPP
#define FIBERS_TEST_ECHO_TEST_SUPPORT_HPP

// Helpers for test_echo_server.cpp, which tests the example echo server as
// a child process:
//
// - server_process: the echo_server binary, started with fork/exec (an
//   optional RLIMIT_NOFILE set in the child before exec), its stdout and
//   stderr captured by a thread of the test. Its destructor always kills
//   (SIGKILL) and reaps the server if it still runs, so that a failing test
//   never leaves one behind; it prints the server's stderr when the test
//   case has failed.
// - client sockets with deadlines: non-blocking descriptors and poll(), so
//   that a broken server fails a test instead of hanging it.
// - a byte pattern that depends on a seed and on the position in the
//   stream, so that a lost, repeated, reordered or foreign byte is seen.
// - what /proc tells about the server: how busy its threads are, the
//   memory it has written, open descriptors.
//
// Nothing here asserts: the callers do, on the test thread. Boost.Test is
// used only to find the binary (the module's arguments) and, in
// server_process's destructor, to know whether the test case failed.

#include <boost/test/results_collector.hpp>
#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace echo_test {

using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------
// The binary under test.

// The echo_server binary: the first free command-line argument of the test
// module (after Boost.Test's `--`), else the environment variable
// FIBERS_ECHO_SERVER; empty if neither is given.
inline std::string server_path() {
    auto& suite = boost::unit_test::framework::master_test_suite();
    if (suite.argc > 1 && suite.argv[1] != nullptr && suite.argv[1][0] != '\0')
        return suite.argv[1];
    if (char const* env = std::getenv("FIBERS_ECHO_SERVER"); env != nullptr && *env != '\0')
        return env;
    return {};
}

// ---------------------------------------------------------------------------
// Small POSIX helpers.

class unique_fd {
public:
    unique_fd() noexcept = default;
    explicit unique_fd(int fd) noexcept : fd_(fd) {}
    unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    unique_fd& operator=(unique_fd&& other) noexcept {
        if (this != &other)
            reset(std::exchange(other.fd_, -1));
        return *this;
    }
    ~unique_fd() { reset(); }
    int get() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

inline std::string errno_text(int e) { return std::string(std::strerror(e)) + " (errno " + std::to_string(e) + ")"; }

inline std::chrono::milliseconds left_until(clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    return std::max(left, 0ms);
}

// poll() on one descriptor until `events` or the deadline; returns revents
// (0 on timeout).
inline short poll_one(int fd, short events, clock::time_point deadline) {
    for (;;) {
        pollfd p{fd, events, 0};
        int const n = ::poll(&p, 1, static_cast<int>(left_until(deadline).count()));
        if (n > 0)
            return p.revents;
        if (n == 0)
            return 0;
        if (errno != EINTR)
            return POLLERR;
    }
}

inline std::string describe_wait_status(int status) {
    std::ostringstream out;
    if (WIFEXITED(status))
        out << "exit status " << WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        out << "killed by signal " << WTERMSIG(status) << " (" << ::strsignal(WTERMSIG(status)) << ")";
    else
        out << "wait status " << status;
    return out.str();
}

// ---------------------------------------------------------------------------
// What /proc says about a process.

// User plus system CPU time of the whole process, in seconds, for failure
// messages; negative if unreadable.
inline double cpu_seconds(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto const paren = text.rfind(')');
    if (paren == std::string::npos)
        return -1;
    std::istringstream fields(text.substr(paren + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    for (int i = 3; i <= 15 && fields >> field; ++i) {
        if (i == 14)
            utime = std::stoull(field);
        if (i == 15)
            stime = std::stoull(field);
    }
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// For each thread of the process, the nanoseconds it has spent running or
// ready to run on a run queue (/proc/PID/task/TID/schedstat). A thread that
// spins is the one or the other all the time, whether it gets a core or
// waits for one on a loaded machine; a thread that sleeps in the kernel is
// neither. Empty if unreadable.
inline std::map<pid_t, unsigned long long> busy_ns_by_thread(pid_t pid) {
    std::map<pid_t, unsigned long long> out;
    std::string const tasks = "/proc/" + std::to_string(pid) + "/task";
    DIR* dir = ::opendir(tasks.c_str());
    if (dir == nullptr)
        return out;
    while (dirent* entry = ::readdir(dir)) {
        if (entry->d_name[0] == '.')
            continue;
        std::ifstream in(tasks + "/" + entry->d_name + "/schedstat");
        unsigned long long running = 0, waiting = 0;
        if (in >> running >> waiting)
            out[static_cast<pid_t>(std::stol(entry->d_name))] = running + waiting;
    }
    ::closedir(dir);
    return out;
}

// The largest share of `wall` that a thread of the process spent running
// or ready to run between two readings of busy_ns_by_thread.
inline double busiest_thread_share(std::map<pid_t, unsigned long long> const& before,
                                   std::map<pid_t, unsigned long long> const& after, clock::duration wall) {
    double busiest = 0;
    for (auto const& [tid, ns] : after) {
        auto const was = before.find(tid);
        unsigned long long const spent = ns - (was != before.end() ? was->second : 0);
        busiest = std::max(busiest, static_cast<double>(spent) /
                                        static_cast<double>(std::chrono::nanoseconds(wall).count()));
    }
    return busiest;
}

// The state letter of /proc/PID/stat (R, S, Z...), '?' if unreadable.
inline char process_state(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto const paren = text.rfind(')');
    return paren != std::string::npos && paren + 2 < text.size() ? text[paren + 2] : '?';
}

// The process's private memory that it has written (Private_Dirty of
// /proc/PID/smaps_rollup), in KiB; -1 if unreadable. Unlike RSS it leaves
// out pages only read, such as the shared zero page that a read of untouched
// memory maps (which some kernels count in RSS), and code paged in.
inline long private_dirty_kib(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
    std::string const key = "Private_Dirty:";
    for (std::string line; std::getline(in, line);)
        if (line.compare(0, key.size(), key) == 0)
            return std::stol(line.substr(key.size()));
    return -1;
}

// The number of descriptors the process has open; -1 if unreadable.
inline int open_fd_count(pid_t pid) {
    DIR* dir = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
    if (dir == nullptr)
        return -1;
    int count = 0;
    while (dirent* entry = ::readdir(dir))
        if (entry->d_name[0] != '.')
            ++count;
    ::closedir(dir);
    return count;
}

// ---------------------------------------------------------------------------
// The server as a child process.

struct spawn_options {
    std::optional<rlim_t> max_open_files; // RLIMIT_NOFILE of the child
    int signal_when_listening = 0;        // sent by the reading thread as soon as "listening on" arrives
};

// Text a sanitizer writes when it finds something (not its mere warnings).
inline std::string sanitizer_report_in(std::string const& text) {
    for (char const* marker : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                               "WARNING: ThreadSanitizer", "ERROR: ThreadSanitizer", "SUMMARY: "})
        if (auto at = text.find(marker); at != std::string::npos)
            return text.substr(at > 2000 ? at - 2000 : 0, 6000);
    return {};
}

class server_process {
public:
    explicit server_process(std::string const& binary, std::vector<std::string> args, spawn_options options = {}) {
        command_ = binary;
        for (auto const& a : args)
            command_ += " " + a;

        // Everything the child needs is ready before fork(): after it the
        // child calls only async-signal-safe functions.
        std::vector<std::string> storage;
        storage.push_back(binary);
        storage.insert(storage.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& s : storage)
            argv.push_back(s.data());
        argv.push_back(nullptr);

        int out[2], err[2];
        if (::pipe2(out, O_CLOEXEC) != 0)
            throw std::runtime_error("pipe2: " + errno_text(errno));
        if (::pipe2(err, O_CLOEXEC) != 0) {
            int const e = errno;
            ::close(out[0]);
            ::close(out[1]);
            throw std::runtime_error("pipe2: " + errno_text(e));
        }
        rlimit limit{};
        if (options.max_open_files)
            limit.rlim_cur = limit.rlim_max = *options.max_open_files;
        long const max_fd = std::max(::sysconf(_SC_OPEN_MAX), 1024L);
        pid_t const parent = ::getpid();

        pid_ = ::fork();
        if (pid_ < 0) {
            int const e = errno;
            for (int fd : {out[0], out[1], err[0], err[1]})
                ::close(fd);
            throw std::runtime_error("fork: " + errno_text(e));
        }
        if (pid_ == 0) {
            // The child: killed if the test dies without its destructors
            // (forks come from the test thread, which lives as long as the
            // test process), stdout and stderr to the pipes, stdin from
            // nothing, no other descriptor of the test (its client sockets
            // least of all), default signal dispositions, an empty mask.
            if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent)
                ::_exit(125);
            int const null = ::open("/dev/null", O_RDONLY);
            if (null < 0 || ::dup2(null, 0) < 0 || ::dup2(out[1], 1) < 0 || ::dup2(err[1], 2) < 0)
                ::_exit(126);
            for (long fd = 3; fd < std::min(max_fd, 65536L); ++fd)
                ::close(static_cast<int>(fd));
            sigset_t none;
            ::sigemptyset(&none);
            ::sigprocmask(SIG_SETMASK, &none, nullptr);
            for (int sig : {SIGINT, SIGTERM, SIGPIPE, SIGHUP, SIGQUIT})
                ::signal(sig, SIG_DFL);
            if (options.max_open_files && ::setrlimit(RLIMIT_NOFILE, &limit) != 0)
                ::_exit(126);
            ::execv(argv[0], argv.data());
            static char const message[] = "echo test: execv of the server failed\n";
            [[maybe_unused]] auto ignored = ::write(2, message, sizeof message - 1);
            ::_exit(127);
        }
        ::close(out[1]);
        ::close(err[1]);
        out_.reset(out[0]);
        err_.reset(err[0]);
        signal_when_listening_ = options.signal_when_listening;
        drainer_ = std::thread([this] { drain(); });
    }

    server_process(server_process const&) = delete;
    server_process& operator=(server_process const&) = delete;

    ~server_process() {
        if (!reaped_) {
            ::kill(pid_, SIGKILL);
            int status = 0;
            while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
            }
            reaped_ = true;
            status_ = status;
        }
        if (drainer_.joinable())
            drainer_.join();
        try {
            auto const& results =
                boost::unit_test::results_collector.results(boost::unit_test::framework::current_test_case().p_id);
            std::string const err = stderr_text();
            if (!results.passed() && !err.empty())
                std::cerr << "---- stderr of `" << command_ << "` (pid " << pid_ << ") ----\n"
                          << (err.size() > 20000 ? err.substr(0, 20000) + "\n[...]\n" : err)
                          << "---- end of stderr ----\n";
        } catch (...) {
        }
    }

    pid_t pid() const noexcept { return pid_; }
    std::string const& command() const noexcept { return command_; }

    std::string stdout_text() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return out_text_;
    }
    std::string stderr_text() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return err_text_;
    }

    // Waits for the line "listening on HOST:PORT"; the port, or 0 if the
    // server ended or did not print it in time.
    unsigned short wait_listening(std::chrono::milliseconds timeout = 10s) {
        std::unique_lock<std::mutex> lock(mutex_);
        auto const deadline = clock::now() + timeout;
        for (;;) {
            auto const at = out_text_.find("listening on ");
            auto const end = at == std::string::npos ? std::string::npos : out_text_.find('\n', at);
            if (end != std::string::npos) {
                std::string const line = out_text_.substr(at, end - at);
                auto const colon = line.rfind(':');
                if (colon == std::string::npos)
                    return 0;
                try {
                    int const port = std::stoi(line.substr(colon + 1));
                    return port > 0 && port < 65536 ? static_cast<unsigned short>(port) : 0;
                } catch (std::exception const&) {
                    return 0;
                }
            }
            if (out_closed_ || clock::now() >= deadline)
                return 0;
            changed_.wait_until(lock, deadline);
        }
    }

    // Waits until the server's stderr contains `text`.
    bool wait_stderr_contains(std::string const& text, std::chrono::milliseconds timeout) {
        std::unique_lock<std::mutex> lock(mutex_);
        return changed_.wait_until(lock, clock::now() + timeout, [&] {
            return err_text_.find(text) != std::string::npos || err_closed_;
        }) && err_text_.find(text) != std::string::npos;
    }

    void send_signal(int sig) {
        if (!reaped_)
            ::kill(pid_, sig);
    }

    // True while the process has not ended (it may be a zombie not yet
    // reaped: this reaps it).
    bool running() {
        if (reaped_)
            return false;
        int status = 0;
        pid_t const r = ::waitpid(pid_, &status, WNOHANG);
        if (r == pid_) {
            reaped_ = true;
            status_ = status;
            return false;
        }
        return true;
    }

    // Waits until the process ends, and its output has been read; its wait
    // status, or nothing on timeout.
    std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
        auto const deadline = clock::now() + timeout;
        while (running()) {
            if (clock::now() >= deadline)
                return std::nullopt;
            std::this_thread::sleep_for(5ms);
        }
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait_until(lock, std::max(deadline, clock::now() + 2s), [&] { return out_closed_ && err_closed_; });
        return status_;
    }

    // Kills (SIGKILL) and reaps the process if it still runs.
    void kill_now() {
        if (running()) {
            ::kill(pid_, SIGKILL);
            wait_exit(10s);
        }
    }

    std::optional<int> status() const { return reaped_ ? std::optional<int>(status_) : std::nullopt; }

    // A line about the process for failure messages: state and CPU time.
    std::string describe() {
        std::ostringstream out;
        out << "`" << command_ << "` (pid " << pid_ << ")";
        if (running())
            out << ": running, state " << process_state(pid_) << ", " << cpu_seconds(pid_) << " s of CPU, "
                << open_fd_count(pid_) << " open descriptors";
        else
            out << ": " << describe_wait_status(status_);
        return out.str();
    }

private:
    void drain() {
        pollfd fds[2] = {{out_.get(), POLLIN, 0}, {err_.get(), POLLIN, 0}};
        bool open[2] = {true, true};
        char buffer[8192];
        while (open[0] || open[1]) {
            for (int i = 0; i < 2; ++i)
                fds[i].fd = open[i] ? (i == 0 ? out_.get() : err_.get()) : -1;
            if (::poll(fds, 2, -1) < 0) {
                if (errno == EINTR)
                    continue;
                break;
            }
            for (int i = 0; i < 2; ++i) {
                if (!open[i] || fds[i].revents == 0)
                    continue;
                ssize_t const n = ::read(fds[i].fd, buffer, sizeof buffer);
                std::lock_guard<std::mutex> lock(mutex_);
                if (n > 0) {
                    (i == 0 ? out_text_ : err_text_).append(buffer, static_cast<std::size_t>(n));
                    // At once, with no test thread to wake first: the
                    // narrowest gap after the line that can be made.
                    if (i == 0 && signal_when_listening_ != 0 && out_text_.find("listening on") != std::string::npos)
                        ::kill(pid_, std::exchange(signal_when_listening_, 0));
                } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                    open[i] = false;
                    (i == 0 ? out_closed_ : err_closed_) = true;
                }
                changed_.notify_all();
            }
        }
        std::lock_guard<std::mutex> lock(mutex_);
        out_closed_ = err_closed_ = true;
        changed_.notify_all();
    }

    std::string command_;
    pid_t pid_ = -1;
    bool reaped_ = false;
    int status_ = 0;
    unique_fd out_, err_;
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::string out_text_, err_text_;
    bool out_closed_ = false, err_closed_ = false;
    int signal_when_listening_ = 0; // the drainer's
    std::thread drainer_;
};

// ---------------------------------------------------------------------------
// The byte pattern: byte `i` of the stream seeded `seed`.

inline std::uint64_t mix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

inline void fill_pattern(unsigned char* out, std::size_t n, std::uint64_t seed, std::uint64_t offset) {
    std::uint64_t word_index = ~std::uint64_t(0);
    std::uint64_t word = 0;
    for (std::size_t k = 0; k < n; ++k) {
        std::uint64_t const i = offset + k;
        if (i / 8 != word_index) {
            word_index = i / 8;
            word = mix(seed * 0x100000001b3ULL ^ word_index);
        }
        out[k] = static_cast<unsigned char>(word >> (8 * (i % 8)));
    }
}

inline std::vector<unsigned char> pattern(std::size_t n, std::uint64_t seed, std::uint64_t offset = 0) {
    std::vector<unsigned char> v(n);
    fill_pattern(v.data(), n, seed, offset);
    return v;
}

// The index of the first byte of `data` that differs from the pattern, or
// npos.
inline std::size_t first_mismatch(unsigned char const* data, std::size_t n, std::uint64_t seed,
                                  std::uint64_t offset) {
    unsigned char expected[4096];
    for (std::size_t done = 0; done < n;) {
        std::size_t const step = std::min(n - done, sizeof expected);
        fill_pattern(expected, step, seed, offset + done);
        if (std::memcmp(expected, data + done, step) != 0)
            for (std::size_t k = 0; k < step; ++k)
                if (expected[k] != data[done + k])
                    return done + k;
        done += step;
    }
    return std::string::npos;
}

// ---------------------------------------------------------------------------
// Client sockets with deadlines (non-blocking, poll).

// How a wait for the end of a stream ended.
enum class stream_end { eof, reset, timeout, data, error };

inline char const* to_string(stream_end e) {
    switch (e) {
    case stream_end::eof:
        return "end of stream";
    case stream_end::reset:
        return "connection reset";
    case stream_end::timeout:
        return "timeout";
    case stream_end::data:
        return "unexpected data";
    case stream_end::error:
        return "error";
    }
    return "?";
}

class client {
public:
    client() = default;

    // The port of this end, 0 if it has none.
    unsigned short local_port() const {
        sockaddr_in self{};
        socklen_t size = sizeof self;
        if (!fd_ || ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&self), &size) != 0)
            return 0;
        return ntohs(self.sin_port);
    }

    // Connects to 127.0.0.1:port. On failure, ok() is false and error()
    // is the errno (ECONNREFUSED, ETIMEDOUT for the deadline...).
    static client connect(unsigned short port, std::chrono::milliseconds timeout = 5s) {
        client c;
        c.fd_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!c.fd_) {
            c.error_ = errno;
            return c;
        }
        int one = 1;
        ::setsockopt(c.fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_port = htons(port);
        to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(c.fd_.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
            if (errno != EINPROGRESS) {
                c.error_ = errno;
                c.fd_.reset();
                return c;
            }
            short const ev = poll_one(c.fd_.get(), POLLOUT, clock::now() + timeout);
            if (ev == 0) {
                c.error_ = ETIMEDOUT;
                c.fd_.reset();
                return c;
            }
            int err = 0;
            socklen_t len = sizeof err;
            ::getsockopt(c.fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
            if (err != 0) {
                c.error_ = err;
                c.fd_.reset();
                return c;
            }
        }
        return c;
    }

    bool ok() const noexcept { return static_cast<bool>(fd_); }
    int error() const noexcept { return error_; }
    int fd() const noexcept { return fd_.get(); }

    // Sends all of `data`; false (error() set) on error or deadline.
    bool send_all(void const* data, std::size_t n, clock::time_point deadline) {
        auto const* p = static_cast<unsigned char const*>(data);
        while (n > 0) {
            ssize_t const r = ::send(fd_.get(), p, n, MSG_NOSIGNAL);
            if (r > 0) {
                p += r;
                n -= static_cast<std::size_t>(r);
                continue;
            }
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                error_ = errno;
                return false;
            }
            if (poll_one(fd_.get(), POLLOUT, deadline) == 0) {
                error_ = ETIMEDOUT;
                return false;
            }
        }
        return true;
    }
    bool send_all(std::vector<unsigned char> const& data, std::chrono::milliseconds timeout = 5s) {
        return send_all(data.data(), data.size(), clock::now() + timeout);
    }
    bool send_text(std::string const& text, std::chrono::milliseconds timeout = 5s) {
        return send_all(text.data(), text.size(), clock::now() + timeout);
    }

    // Sends what the socket takes now, without waiting; bytes sent, or -1
    // on error (error() set).
    long send_now(void const* data, std::size_t n) {
        for (;;) {
            ssize_t const r = ::send(fd_.get(), data, n, MSG_NOSIGNAL);
            if (r >= 0)
                return r;
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            error_ = errno;
            return -1;
        }
    }

    struct received {
        std::vector<unsigned char> bytes;
        stream_end end = stream_end::data; // data: all the bytes asked for arrived
    };

    // Receives exactly `n` bytes, unless the stream ends or the deadline
    // passes first.
    received receive(std::size_t n, clock::time_point deadline) {
        received r;
        r.bytes.resize(n);
        std::size_t got = 0;
        while (got < n) {
            ssize_t const k = ::recv(fd_.get(), r.bytes.data() + got, n - got, 0);
            if (k > 0) {
                got += static_cast<std::size_t>(k);
                continue;
            }
            if (k == 0) {
                r.end = stream_end::eof;
                break;
            }
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                error_ = errno;
                r.end = errno == ECONNRESET || errno == EPIPE ? stream_end::reset : stream_end::error;
                break;
            }
            if (poll_one(fd_.get(), POLLIN, deadline) == 0) {
                r.end = stream_end::timeout;
                break;
            }
        }
        r.bytes.resize(got);
        return r;
    }
    received receive(std::size_t n, std::chrono::milliseconds timeout = 5s) {
        return receive(n, clock::now() + timeout);
    }

    // Reads until the stream ends or the deadline; `data` if bytes come
    // first (counted in *extra). Reads the bytes already queued only when
    // `drain` is set.
    stream_end wait_for_end(clock::time_point deadline, std::size_t* extra = nullptr, bool drain = false) {
        unsigned char buffer[65536];
        std::size_t got = 0;
        for (;;) {
            ssize_t const k = ::recv(fd_.get(), buffer, sizeof buffer, 0);
            if (k == 0)
                return stream_end::eof;
            if (k > 0) {
                got += static_cast<std::size_t>(k);
                if (extra != nullptr)
                    *extra = got;
                if (!drain)
                    return stream_end::data;
                continue;
            }
            if (errno == EINTR)
                continue;
            if (errno == ECONNRESET || errno == EPIPE)
                return stream_end::reset;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                error_ = errno;
                return stream_end::error;
            }
            if (poll_one(fd_.get(), POLLIN, deadline) == 0)
                return stream_end::timeout;
        }
    }
    stream_end wait_for_end(std::chrono::milliseconds timeout, std::size_t* extra = nullptr, bool drain = false) {
        return wait_for_end(clock::now() + timeout, extra, drain);
    }

    // True if nothing is readable and no error or hang-up is pending now.
    bool quiet() const {
        pollfd p{fd_.get(), POLLIN, 0};
        return ::poll(&p, 1, 0) == 0;
    }

    // Sends `n` pattern bytes and checks they come back; an empty string,
    // or what went wrong. Uses and advances this client's stream offsets.
    std::string echo(std::size_t n, std::chrono::milliseconds timeout = 5s) {
        auto const deadline = clock::now() + timeout;
        auto const data = pattern(n, seed_, sent_);
        // Send and receive together: the echo of a large message comes back
        // while the rest is still being sent.
        std::size_t out = 0, in = 0;
        std::vector<unsigned char> back(n);
        while (in < n) {
            short events = POLLIN;
            if (out < n)
                events |= POLLOUT;
            short const ev = poll_one(fd_.get(), events, deadline);
            if (ev == 0)
                return "timeout after sending " + std::to_string(out) + " and receiving " + std::to_string(in) +
                       " of " + std::to_string(n) + " bytes";
            if (out < n && (ev & (POLLOUT | POLLERR | POLLHUP))) {
                long const k = send_now(data.data() + out, n - out);
                if (k < 0)
                    return "send failed: " + errno_text(error_);
                out += static_cast<std::size_t>(k);
            }
            if (ev & (POLLIN | POLLERR | POLLHUP)) {
                ssize_t const k = ::recv(fd_.get(), back.data() + in, n - in, 0);
                if (k == 0)
                    return "end of stream after " + std::to_string(in) + " of " + std::to_string(n) + " bytes";
                if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                    return "receive failed: " + errno_text(errno);
                if (k > 0)
                    in += static_cast<std::size_t>(k);
            }
        }
        sent_ += n;
        if (auto at = first_mismatch(back.data(), n, seed_, received_); at != std::string::npos)
            return "echoed byte " + std::to_string(received_ + at) + " differs from the byte sent";
        received_ += n;
        return {};
    }

    void set_seed(std::uint64_t seed) { seed_ = seed; }
    // Counts `n` pattern bytes sent and echoed outside echo().
    void exchanged_outside(std::uint64_t n) {
        sent_ += n;
        received_ += n;
    }
    std::uint64_t seed() const noexcept { return seed_; }

    // A reset: SO_LINGER {1, 0}, then close; the peer gets an RST.
    void reset_close() {
        if (!fd_)
            return;
        linger l{1, 0};
        ::setsockopt(fd_.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
        fd_.reset();
    }
    void close() { fd_.reset(); }
    void shutdown_send() { ::shutdown(fd_.get(), SHUT_WR); }

private:
    unique_fd fd_;
    int error_ = 0;
    std::uint64_t seed_ = 1;
    std::uint64_t sent_ = 0, received_ = 0;
};

// `count` connections that stream to the server without a pause, driven by
// a thread of their own with poll(): each sends the pattern (at most
// `in_flight` bytes ahead of its echo) and checks every byte echoed back,
// until stop() or until the server closes it. Made for stopping a server
// under load: once the end is expected, a connection closed is not an
// error; a wrong byte echoed, or a connection lost before, is.
class streaming_clients {
public:
    streaming_clients(unsigned short port, std::size_t count, std::size_t in_flight = 256 * 1024)
        : thread_([this, port, count, in_flight] { run(port, count, in_flight); }) {}
    streaming_clients(streaming_clients const&) = delete;
    streaming_clients& operator=(streaming_clients const&) = delete;
    ~streaming_clients() { stop(); }

    // Waits until every connection has had at least `bytes` echoed; false
    // if that does not happen within `timeout` (see failure()).
    bool wait_all_echoed(std::uint64_t bytes, std::chrono::milliseconds timeout) {
        std::unique_lock<std::mutex> lock(mutex_);
        return changed_.wait_for(lock, timeout, [&] { return least_echoed_ >= bytes || !failure_.empty(); }) &&
               failure_.empty();
    }
    // From now on the server may close the connections.
    void expect_the_end() {
        std::lock_guard<std::mutex> lock(mutex_);
        end_expected_ = true;
    }
    // Everything stops, and the connections close.
    void stop() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            end_expected_ = stopping_ = true;
        }
        if (thread_.joinable())
            thread_.join();
    }
    // Empty, or what went wrong before the end was expected.
    std::string failure() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return failure_;
    }
    // Bytes echoed on all connections so far.
    std::uint64_t echoed() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return echoed_;
    }

private:
    void fail(std::string what) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!end_expected_ && failure_.empty())
            failure_ = std::move(what);
        changed_.notify_all();
    }
    bool stopping() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return stopping_;
    }

    void run(unsigned short port, std::size_t count, std::size_t in_flight) {
        struct connection {
            client c;
            std::uint64_t sent = 0, received = 0;
            bool open = true;
        };
        std::vector<connection> connections(count);
        for (std::size_t i = 0; i < count; ++i) {
            connections[i].c = client::connect(port);
            if (!connections[i].c.ok())
                return fail("connection " + std::to_string(i) + ": connect: " + errno_text(connections[i].c.error()));
            connections[i].c.set_seed(0x5eed + i);
        }
        std::vector<unsigned char> out(16 * 1024), in(64 * 1024);
        std::vector<pollfd> fds(count);
        std::size_t open = count;
        while (open > 0 && !stopping()) {
            for (std::size_t i = 0; i < count; ++i) {
                connection const& k = connections[i];
                short events = POLLIN;
                if (k.sent - k.received < in_flight)
                    events |= POLLOUT;
                fds[i] = {k.open ? k.c.fd() : -1, events, 0};
            }
            if (::poll(fds.data(), fds.size(), 20) < 0 && errno != EINTR)
                return fail("poll: " + errno_text(errno));
            for (std::size_t i = 0; i < count; ++i) {
                connection& k = connections[i];
                if (!k.open || fds[i].revents == 0)
                    continue;
                auto lost = [&](std::string what) {
                    k.open = false;
                    --open;
                    k.c.close();
                    fail("connection " + std::to_string(i) + ": " + what + " after " + std::to_string(k.received) +
                         " bytes echoed");
                };
                if (fds[i].revents & POLLOUT) {
                    std::size_t const n = std::min<std::uint64_t>(out.size(), in_flight - (k.sent - k.received));
                    fill_pattern(out.data(), n, k.c.seed(), k.sent);
                    long const sent = k.c.send_now(out.data(), n);
                    if (sent < 0) {
                        lost("send: " + errno_text(k.c.error()));
                        continue;
                    }
                    k.sent += static_cast<std::uint64_t>(sent);
                }
                if (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) {
                    ssize_t const got = ::recv(k.c.fd(), in.data(), in.size(), 0);
                    if (got == 0) {
                        lost("end of stream");
                        continue;
                    }
                    if (got < 0) {
                        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                            lost("receive: " + errno_text(errno));
                        continue;
                    }
                    if (auto at = first_mismatch(in.data(), static_cast<std::size_t>(got), k.c.seed(), k.received);
                        at != std::string::npos) {
                        lost("echoed byte " + std::to_string(k.received + at) + " differs from the byte sent");
                        continue;
                    }
                    k.received += static_cast<std::uint64_t>(got);
                    std::lock_guard<std::mutex> lock(mutex_);
                    echoed_ += static_cast<std::uint64_t>(got);
                }
            }
            std::uint64_t least = ~std::uint64_t(0);
            for (auto const& k : connections)
                least = std::min(least, k.received);
            std::lock_guard<std::mutex> lock(mutex_);
            least_echoed_ = least;
            changed_.notify_all();
        }
    }

    mutable std::mutex mutex_;
    std::condition_variable changed_;
    bool end_expected_ = false;
    bool stopping_ = false;
    std::string failure_;
    std::uint64_t least_echoed_ = 0;
    std::uint64_t echoed_ = 0;
    std::thread thread_; // last: starts once the rest is made
};

// Whether a fresh connection gets `n` bytes echoed; empty, or what failed.
inline std::string fresh_echo(unsigned short port, std::size_t n = 4096, std::chrono::milliseconds timeout = 5s) {
    client c = client::connect(port, timeout);
    if (!c.ok())
        return "connect failed: " + errno_text(c.error());
    c.set_seed(0xf00d + n);
    if (std::string e = c.echo(1); !e.empty())
        return e;
    if (std::string e = c.echo(n, timeout); !e.empty())
        return e;
    c.shutdown_send();
    stream_end const end = c.wait_for_end(timeout);
    if (end != stream_end::eof)
        return std::string("after a half-close, expected the end of the stream, got: ") + to_string(end);
    return {};
}

// Waits until the server has at most `count` descriptors open; the last
// count seen.
inline int wait_fd_count_at_most(pid_t pid, int count, std::chrono::milliseconds timeout) {
    auto const deadline = clock::now() + timeout;
    for (;;) {
        int const n = open_fd_count(pid);
        if (n <= count || clock::now() >= deadline)
            return n;
        std::this_thread::sleep_for(10ms);
    }
}

// The same, until the process has at least `count` descriptors open.
inline int wait_fd_count_at_least(pid_t pid, int count, std::chrono::milliseconds timeout) {
    auto const deadline = clock::now() + timeout;
    for (;;) {
        int const n = open_fd_count(pid);
        if (n >= count || clock::now() >= deadline)
            return n;
        std::this_thread::sleep_for(10ms);
    }
}

} // namespace echo_test

#endif // FIBERS_TEST_ECHO_TEST_SUPPORT_HPP
