// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
// GCC 12 warns that ThreadSanitizer cannot see the atomic_thread_fence in
// Asio's handler invocation; our handlers never cross threads, so the
// warning is noise here.
#if defined(__SANITIZE_THREAD__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic ignored "-Wtsan"
#endif
#include <fibers/poller.hpp>

#include <fibers/log.hpp>

#include "fiber_internals.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/system/system_error.hpp>

#include <atomic>
#include <cerrno>
#include <exception>
#include <ostream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include <fcntl.h>
#include <poll.h>

namespace fibers {

std::ostream& operator<<(std::ostream& os, poll_events ev) {
    switch (static_cast<unsigned>(ev)) {
    case 0: return os << "none";
    case 1: return os << "readable";
    case 2: return os << "writable";
    case 3: return os << "readable|writable";
    default: return os << "poll_events(" << static_cast<unsigned>(ev) << ')';
    }
}

namespace detail {
namespace {

constexpr poll_events both = poll_events::readable | poll_events::writable;

// Process-wide, so that a handle is never mistaken for one of another poller.
std::atomic<std::uint64_t> next_handle_id{1};

void check_events(poll_events ev) {
    if ((static_cast<unsigned>(ev) & ~static_cast<unsigned>(both)) != 0)
        throw std::invalid_argument("fibers::poller: events other than readable and writable");
}

} // namespace

struct poll_record {
    std::uint64_t id;
    poll_events events;
    poller::callback_type fn;
    // Set when removed, so that a dispatch that already holds the record
    // skips it.
    bool removed = false;
};

using record_list = std::vector<std::shared_ptr<poll_record>>;

// One watched fd. The poller's map holds the only lasting reference; the
// handlers queued in Asio hold weak ones (and a strong one while they run),
// so nothing they capture dangles once the poller has let go.
//
// Asio's epoll reactor is edge-triggered, so a second async_wait on an fd
// that is still readable would never complete. Level triggering is made
// here instead: a "check" (a posted handler) asks poll(2) what is ready now,
// dispatches, and, if anything was, posts the next check; only when nothing
// is ready does it fall back to async_wait, whose completion checks.
// The check-then-wait happens inside one handler, before the reactor runs
// again, so an edge that comes after the check still completes the wait.
struct poll_watch {
    poll_watch(boost::asio::io_context& loop, int native) : fd(native), descriptor(loop) {}
    ~poll_watch() { release(); }
    poll_watch(poll_watch const&) = delete;
    poll_watch& operator=(poll_watch const&) = delete;

    int const fd;
    boost::asio::posix::stream_descriptor descriptor;
    // Copied on write only while a dispatch iterates over it.
    std::shared_ptr<record_list> records = std::make_shared<record_list>();
    std::weak_ptr<poll_watch> self;
    // Bumped to disown every handler already queued: cancelled waits
    // complete later, and a posted check cannot be withdrawn.
    unsigned epoch = 0;
    bool check_posted = false;
    bool waiting[2] = {false, false}; // read, write
    bool error_seen = false;
    bool released = false;

    void open() {
        int flags = ::fcntl(fd, F_GETFL);
        if (flags < 0)
            throw boost::system::system_error(errno, boost::system::system_category(), "fibers::poller: fcntl");
        descriptor.assign(fd);
        // Asio makes the fd non-blocking before its first wait, but the fd
        // (and its file description) belongs to someone else. Mark the
        // descriptor non-blocking once, which is all Asio remembers, then
        // restore the owner's flags: a wait does no I/O, so it does not care.
        boost::system::error_code ignored;
        descriptor.native_non_blocking(true, ignored);
        if ((flags & O_NONBLOCK) == 0)
            ::fcntl(fd, F_SETFL, flags);
    }

    record_list& writable_records() {
        if (records.use_count() != 1)
            records = std::make_shared<record_list>(*records);
        return *records;
    }

    poll_events wanted() const noexcept {
        poll_events w = poll_events::none;
        for (auto const& r : *records)
            w |= r->events;
        return w;
    }

    // Forgets the handlers queued so far.
    void disown() noexcept {
        if (waiting[0] || waiting[1]) {
            boost::system::error_code ignored;
            descriptor.cancel(ignored);
        }
        ++epoch;
        waiting[0] = waiting[1] = false;
        check_posted = false;
    }

    // After a change of the callbacks' events.
    void refresh() {
        if (released)
            return;
        poll_events w = wanted();
        if ((waiting[0] && !has(w, poll_events::readable)) || (waiting[1] && !has(w, poll_events::writable)) ||
            (w == poll_events::none && check_posted))
            disown(); // Asio can only cancel both directions at once: the check re-arms the other
        if (w == poll_events::none)
            return;
        if ((has(w, poll_events::readable) && !waiting[0]) || (has(w, poll_events::writable) && !waiting[1]))
            schedule_check(); // a new event may be ready already: no edge would tell
    }

    void schedule_check() {
        if (check_posted)
            return;
        boost::asio::post(descriptor.get_executor(), [weak = self, epoch = epoch] {
            if (auto w = weak.lock(); w && w->epoch == epoch)
                w->on_check();
        });
        check_posted = true;
    }

    void start_wait(int direction) {
        if (waiting[direction])
            return;
        descriptor.async_wait(
            direction == 0 ? boost::asio::posix::stream_descriptor::wait_read
                           : boost::asio::posix::stream_descriptor::wait_write,
            [weak = self, epoch = epoch, direction](boost::system::error_code const& ec) {
                if (auto w = weak.lock(); w && w->epoch == epoch)
                    w->on_wait(direction, ec);
            });
        waiting[direction] = true;
    }

    void on_wait(int direction, boost::system::error_code const& ec) {
        waiting[direction] = false;
        // Our own cancels bumped the epoch, so operation_aborted here came
        // from elsewhere: look again, quietly. Any other error is the fd's:
        // wake everyone, as libuv does, so that their own I/O reports it.
        if (ec && ec != boost::asio::error::operation_aborted)
            error_seen = true;
        // A check already queued looks at both directions; otherwise look
        // now rather than a handler later. When both waits complete in one
        // go, the first one's check posts the next, so the second does
        // nothing: one dispatch with both bits, not two.
        if (!check_posted)
            on_check();
    }

    poll_events ready_now(poll_events w) const noexcept {
        ::pollfd p{};
        p.fd = fd;
        p.events = static_cast<short>((has(w, poll_events::readable) ? POLLIN : 0) |
                                      (has(w, poll_events::writable) ? POLLOUT : 0));
        int n;
        do
            n = ::poll(&p, 1, 0);
        while (n < 0 && errno == EINTR);
        if (n <= 0)
            return poll_events::none; // on failure the wait takes over
        if ((p.revents & (POLLERR | POLLHUP | POLLNVAL)) != 0)
            return w; // as libuv: the callbacks' own read or write sees the error or the end
        poll_events ready = poll_events::none;
        if ((p.revents & POLLIN) != 0)
            ready |= poll_events::readable;
        if ((p.revents & POLLOUT) != 0)
            ready |= poll_events::writable;
        return ready & w;
    }

    void on_check() {
        check_posted = false;
        poll_events w = wanted();
        if (w == poll_events::none)
            return;
        poll_events ready = error_seen ? w : ready_now(w);
        error_seen = false;
        if (ready == poll_events::none) {
            if (has(w, poll_events::readable))
                start_wait(0);
            if (has(w, poll_events::writable))
                start_wait(1);
            return;
        }
        // Level-triggered: look again next iteration. Posted before the
        // callbacks run so that whatever they do (remove themselves, close
        // the poller) finds the state it expects and can disown it.
        schedule_check();
        dispatch(ready);
    }

    void dispatch(poll_events ready) {
        std::shared_ptr<record_list> snapshot = records; // callbacks added now wait for the next round
        for (auto const& r : *snapshot) {
            if (r->removed) // also after close(), or the removal of the watch's last callback
                continue;
            poll_events mine = r->events & ready;
            if (mine == poll_events::none)
                continue;
            try {
                r->fn(fd, mine);
            } catch (forced_unwind const&) {
                throw; // the hub fiber is being unwound: not ours to stop
            } catch (std::exception const& e) {
                log(log_level::error,
                    "poll callback for fd " + std::to_string(fd) + " threw (dropped): " + e.what());
            } catch (...) {
                log(log_level::error, "poll callback for fd " + std::to_string(fd) +
                                          " threw something that is not a std::exception (dropped)");
            }
        }
    }

    // Lets go of the fd without closing it; every queued handler is
    // disowned and every callback dropped.
    void release() noexcept {
        if (released)
            return;
        released = true;
        ++epoch;
        waiting[0] = waiting[1] = false;
        check_posted = false;
        descriptor.release(); // cancels the waits; never closes
        // The callbacks themselves go with the watch: at once, or when the
        // dispatch iterating over them returns.
        for (auto const& r : *records)
            r->removed = true;
    }
};

struct poller_state {
    std::unordered_map<int, std::shared_ptr<poll_watch>> watches;
    bool closed = false;

    // The watch of `fd` and the position of `h` in it, or invalid_argument.
    std::pair<poll_watch*, std::size_t> find(int fd, poll_handle h) const {
        auto it = watches.find(fd);
        if (it != watches.end()) {
            record_list const& list = *it->second->records;
            for (std::size_t i = 0; i != list.size(); ++i)
                if (list[i]->id == h.value())
                    return {it->second.get(), i};
        }
        throw std::invalid_argument("fibers::poller: unknown fd/handle pair (fd " + std::to_string(fd) + ")");
    }
};

} // namespace detail

poller::poller(boost::asio::io_context& loop)
    : loop_(&loop), state_(std::make_unique<detail::poller_state>()) {}

poller::~poller() { close(); }

bool poller::closed() const noexcept { return state_->closed; }

std::size_t poller::callback_count(int fd) const noexcept {
    auto it = state_->watches.find(fd);
    return it == state_->watches.end() ? 0 : it->second->records->size();
}

poll_handle poller::add_erased(int fd, poll_events ev, callback_type cb) {
    if (state_->closed)
        throw error("fibers::poller: closed");
    if (fd < 0)
        throw std::invalid_argument("fibers::poller: negative file descriptor");
    detail::check_events(ev);
    if (!cb)
        throw std::invalid_argument("fibers::poller: empty callback");

    auto record = std::make_shared<detail::poll_record>();
    record->id = detail::next_handle_id.fetch_add(1, std::memory_order_relaxed);
    record->events = ev;
    record->fn = std::move(cb);

    auto it = state_->watches.find(fd);
    if (it == state_->watches.end()) {
        auto watch = std::make_shared<detail::poll_watch>(*loop_, fd);
        watch->self = watch;
        watch->open(); // EEXIST and friends leave with `watch`, which never had the fd
        watch->records->push_back(record);
        it = state_->watches.emplace(fd, watch).first;
    } else {
        it->second->writable_records().push_back(record);
    }
    detail::poll_watch& watch = *it->second;
    try {
        watch.refresh();
    } catch (...) {
        watch.writable_records().pop_back(); // ours is unshared by now: no allocation
        if (watch.records->empty()) {
            auto keep = std::move(it->second);
            state_->watches.erase(it);
            keep->release();
        }
        throw;
    }
    return poll_handle(record->id);
}

void poller::update_callback(int fd, poll_handle h, poll_events ev) {
    if (state_->closed)
        throw error("fibers::poller: closed");
    detail::check_events(ev);
    auto [watch, index] = state_->find(fd, h);
    detail::poll_record& record = *(*watch->records)[index];
    poll_events previous = record.events;
    record.events = ev;
    try {
        watch->refresh();
    } catch (...) {
        record.events = previous;
        throw;
    }
}

void poller::remove_callback(int fd, poll_handle h) {
    if (state_->closed)
        return; // everything is gone already; teardown code need not care
    auto [watch, index] = state_->find(fd, h);
    std::shared_ptr<detail::poll_record> record = (*watch->records)[index];
    if (watch->records->size() == 1) {
        auto it = state_->watches.find(fd);
        auto keep = std::move(it->second);
        state_->watches.erase(it);
        keep->release();
        return;
    }
    detail::record_list& list = watch->writable_records();
    list.erase(list.begin() + static_cast<std::ptrdiff_t>(index));
    record->removed = true;
    watch->refresh();
}

void poller::close() noexcept {
    if (state_->closed)
        return;
    state_->closed = true;
    auto watches = std::move(state_->watches);
    state_->watches.clear();
    for (auto& entry : watches)
        entry.second->release();
}

} // namespace fibers
