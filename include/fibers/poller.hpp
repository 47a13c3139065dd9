// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_POLLER_HPP
#define FIBERS_POLLER_HPP

// Readiness callbacks for file descriptors that belong to someone else (a
// third-party library's socket, a pipe handed over by a child process): the
// poller watches them on an io_context, never reads, writes, closes them or
// changes their flags. Gruvi's Hub.poll. See doc/poller.md.

#include <fibers/errors.hpp>

#include <boost/asio/io_context.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <type_traits>
#include <utility>

namespace fibers {

/// What a callback waits for, and what it is told is ready.
enum class poll_events : unsigned { none = 0, readable = 1, writable = 2 };

constexpr poll_events operator|(poll_events a, poll_events b) noexcept {
    return static_cast<poll_events>(static_cast<unsigned>(a) | static_cast<unsigned>(b));
}
constexpr poll_events operator&(poll_events a, poll_events b) noexcept {
    return static_cast<poll_events>(static_cast<unsigned>(a) & static_cast<unsigned>(b));
}
constexpr poll_events operator^(poll_events a, poll_events b) noexcept {
    return static_cast<poll_events>(static_cast<unsigned>(a) ^ static_cast<unsigned>(b));
}
/// Complement within readable|writable, so that `ev & ~poll_events::readable`
/// never makes bits that add_callback would refuse.
constexpr poll_events operator~(poll_events a) noexcept {
    return static_cast<poll_events>(~static_cast<unsigned>(a) & 3u);
}
constexpr poll_events& operator|=(poll_events& a, poll_events b) noexcept { return a = a | b; }
constexpr poll_events& operator&=(poll_events& a, poll_events b) noexcept { return a = a & b; }
constexpr poll_events& operator^=(poll_events& a, poll_events b) noexcept { return a = a ^ b; }

/// True when every bit of `bits` is in `set` (so `has(x, poll_events::none)`
/// is true). To ask "anything at all", compare with poll_events::none.
constexpr bool has(poll_events set, poll_events bits) noexcept { return (set & bits) == bits; }

/// Writes "none", "readable", "writable" or "readable|writable"; other bits
/// as a number.
std::ostream& operator<<(std::ostream& os, poll_events ev);

class poller;

/// Names one callback of a poller. A default-constructed handle is null and
/// names nothing. Handles are unique in the process and never reused, so a
/// stale handle, or one from another poller, is always recognised as unknown.
class poll_handle {
public:
    constexpr poll_handle() noexcept = default;

    explicit constexpr operator bool() const noexcept { return id_ != 0; }
    constexpr std::uint64_t value() const noexcept { return id_; }

    friend constexpr bool operator==(poll_handle a, poll_handle b) noexcept { return a.id_ == b.id_; }
    friend constexpr bool operator!=(poll_handle a, poll_handle b) noexcept { return a.id_ != b.id_; }
    friend constexpr bool operator<(poll_handle a, poll_handle b) noexcept { return a.id_ < b.id_; }

private:
    friend class poller;
    explicit constexpr poll_handle(std::uint64_t id) noexcept : id_(id) {}
    std::uint64_t id_ = 0;
};

namespace detail {
struct poller_state;
}

/// Level-triggered readiness callbacks on file descriptors, run as
/// completion handlers of one io_context (in a hub: in the hub fiber).
///
/// Single-threaded: every member, the destructor included, must be called on
/// the thread that runs the io_context, and the poller must be closed or
/// destroyed before the io_context is.
class poller {
public:
    using callback_type = std::function<void(int fd, poll_events ready)>;

    explicit poller(boost::asio::io_context& loop);
    /// As close().
    ~poller();
    poller(poller const&) = delete;
    poller& operator=(poller const&) = delete;

    /// Calls `cb(fd, ready)` in a coming loop iteration, and again in each
    /// iteration after it, while `fd` is ready for something in `ev`; `ready`
    /// holds only bits of `ev`. The first callback of an fd starts watching
    /// it. Throws std::invalid_argument for fd < 0, bits outside
    /// readable|writable or an empty `cb`; fibers::error once closed;
    /// boost::system::system_error if the io_context refuses the fd (for
    /// instance EEXIST: another Asio object on this io_context has the same
    /// fd number). On any exception nothing has changed.
    template <class Fn>
    poll_handle add_callback(int fd, poll_events ev, Fn cb) {
        static_assert(std::is_invocable_v<Fn&, int, poll_events>,
                      "a poll callback is called as cb(int fd, fibers::poll_events ready)");
        static_assert(std::is_copy_constructible_v<Fn>,
                      "a poll callback is kept in a std::function: it must be copyable");
        return add_erased(fd, ev, callback_type(std::move(cb)));
    }

    /// Replaces the events of `h`, a callback of `fd`. poll_events::none
    /// keeps it registered without calling it. std::invalid_argument for bad
    /// events or an unknown fd/handle pair; fibers::error once closed.
    void update_callback(int fd, poll_handle h, poll_events ev);

    /// Drops `h`, a callback of `fd`; it is not called again, not even later
    /// in a dispatch under way. The last callback of an fd stops watching it
    /// (the fd stays open). std::invalid_argument for an unknown fd/handle
    /// pair; after close() it does nothing, since every callback is gone.
    void remove_callback(int fd, poll_handle h);

    /// Stops watching every fd (none is closed) and drops every callback; no
    /// callback runs after it. Idempotent. Later add_callback and
    /// update_callback throw fibers::error.
    void close() noexcept;

    bool closed() const noexcept;

    /// The number of callbacks registered for `fd` (0 when it is not watched).
    std::size_t callback_count(int fd) const noexcept;

    boost::asio::io_context& loop() const noexcept { return *loop_; }

private:
    poll_handle add_erased(int fd, poll_events ev, callback_type cb);

    boost::asio::io_context* loop_;
    std::unique_ptr<detail::poller_state> state_;
};

} // namespace fibers

namespace std {
template <>
struct hash<fibers::poll_handle> {
    std::size_t operator()(fibers::poll_handle h) const noexcept { return std::hash<std::uint64_t>()(h.value()); }
};
} // namespace std

#endif // FIBERS_POLLER_HPP
