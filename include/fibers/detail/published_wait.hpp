// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_DETAIL_PUBLISHED_WAIT_HPP
#define FIBERS_DETAIL_PUBLISHED_WAIT_HPP

// How a wait publishes what it waits on (see wait_publication.hpp). Each
// wait does so on its slow path, once it knows it must wait, and clears it
// when it returns: the switch itself never touches it.

#include <fibers/detail/thread_state.hpp>
#include <fibers/detail/wait_publication.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>

namespace fibers::detail {

// The steady clock's reading as a publication's deadline.
inline std::int64_t publication_deadline(std::chrono::steady_clock::time_point t) noexcept {
    if (t == std::chrono::steady_clock::time_point::max())
        return wait_publication::no_deadline;
    auto const ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
    return ns == wait_publication::no_deadline ? 1 : static_cast<std::int64_t>(ns);
}
inline std::int64_t publication_deadline(std::optional<std::chrono::steady_clock::time_point> const& t) noexcept {
    return t ? publication_deadline(*t) : wait_publication::no_deadline;
}

// Publishes a wait of the running fiber for the life of the object. The
// outermost publication wins: a sleep that waits through a switch_back
// stays a sleep.
class published_wait {
public:
    published_wait(char const* what, waited_object kind = waited_object::none, void const* object = nullptr,
                   std::int64_t deadline = wait_publication::no_deadline, holder_reader holder = nullptr) noexcept {
        thread_state* ts = current_thread_state;
        if (ts == nullptr)
            return;
        wait_publication& p = ts->current->waiting;
        if (p.what.load(std::memory_order_relaxed) != nullptr)
            return;
        p.object_kind.store(kind, std::memory_order_relaxed);
        p.object.store(object, std::memory_order_relaxed);
        p.deadline.store(deadline, std::memory_order_relaxed);
        p.holder.store(holder, std::memory_order_relaxed);
        p.what.store(what, std::memory_order_release);
        publication_ = &p;
    }
    published_wait(published_wait const&) = delete;
    published_wait& operator=(published_wait const&) = delete;
    ~published_wait() {
        if (publication_ != nullptr)
            publication_->what.store(nullptr, std::memory_order_relaxed);
    }

private:
    wait_publication* publication_ = nullptr;
};

// Static text naming the completion signature `Signature`, for a wait on
// an Asio operation: "... [with Signature = void(boost::system::error_code, long unsigned int)]".
// The diagnostics print what follows "Signature = ".
template <class Signature>
char const* signature_text() noexcept {
    return __PRETTY_FUNCTION__;
}

} // namespace fibers::detail

#endif // FIBERS_DETAIL_PUBLISHED_WAIT_HPP
