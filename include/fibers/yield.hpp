// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_YIELD_HPP
#define FIBERS_YIELD_HPP

// fibers::yield: a completion token that makes any Asio asynchronous
// operation a plain call for the fiber that makes it.
//
//   std::size_t n = sock.async_read_some(buf, fibers::yield);       // throws boost::system::system_error
//   std::size_t n = sock.async_read_some(buf, fibers::yield[ec]);   // sets ec instead
//   std::size_t n = sock.async_read_some(buf, fibers::yield.after(5s)); // fibers::timeout

#include <fibers/detail/duration.hpp>
#include <fibers/detail/published_wait.hpp>
#include <fibers/detail/ready_queue.hpp>
#include <fibers/errors.hpp>
#include <fibers/fiber.hpp>
#include <fibers/hub.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/error.hpp>
#include <boost/intrusive_ptr.hpp>
#include <boost/smart_ptr/intrusive_ref_counter.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

namespace fibers {

/// The type of fibers::yield. A literal type: copies are cheap.
class yield_t {
public:
    constexpr yield_t() noexcept = default;

    /// Errors are stored in `ec` (cleared on success) instead of thrown.
    constexpr yield_t operator[](boost::system::error_code& ec) const noexcept {
        yield_t t(*this);
        t.ec_ = &ec;
        return t;
    }

    /// A deadline: past it the operation is cancelled and, once it has
    /// completed, fibers::timeout is thrown. A zero or negative timeout
    /// has passed already; one too long for the clock never passes.
    template <class Rep, class Period>
    constexpr yield_t after(std::chrono::duration<Rep, Period> timeout) const {
        yield_t t(*this);
        t.timeout_ = detail::saturated_nanoseconds(timeout);
        t.has_timeout_ = true;
        return t;
    }

    boost::system::error_code* error_sink() const noexcept { return ec_; }
    std::optional<std::chrono::nanoseconds> timeout() const noexcept {
        return has_timeout_ ? std::optional<std::chrono::nanoseconds>(timeout_) : std::nullopt;
    }

private:
    boost::system::error_code* ec_ = nullptr;
    std::chrono::nanoseconds timeout_{};
    bool has_timeout_ = false;
};

/// The completion token. The calling fiber suspends until the operation
/// completes and gets its result. On a deadline (`after`) or an
/// interruption (task::cancel, keyboard_interrupt), the operation is
/// cancelled through Asio's per-operation cancellation, and the fiber
/// resumes only after its handler has run, so that buffers on the fiber's
/// stack are never written after it moved on. An operation that completed
/// all the same returns its result, and the interruption comes at the
/// fiber's next wait (doc/hub.md, "Cancellation").
inline constexpr yield_t yield{};

namespace detail {

// Reports `ec` as the token wants: stored in its error_code (cleared on
// success), or thrown as boost::system::system_error.
inline void report_error(boost::system::error_code const& ec, yield_t const& token) {
    if (boost::system::error_code* sink = token.error_sink())
        *sink = ec;
    else if (ec)
        throw boost::system::system_error(ec);
}


// What the waiting fiber and the completion handler share. On the heap: the
// handler may outlive the fiber's frame (the fiber unwound while waiting).
// Counted: the waiting fiber holds one reference, the handler the other.
class yield_core : public boost::intrusive_ref_counter<yield_core, boost::thread_safe_counter> {
public:
    yield_core(hub& h, boost::asio::any_io_executor io_executor);
    yield_core(yield_core const&) = delete;
    yield_core& operator=(yield_core const&) = delete;

    boost::asio::cancellation_slot slot() noexcept { return signal_.slot(); }
    // The handler ran: wake the waiting fiber (from any thread).
    void complete() noexcept;
    // Suspends the calling fiber until complete(); see yield.cpp for what a
    // deadline, a cancellation or an interruption meanwhile do. Returns the
    // interruption that came meanwhile, if any, for the caller to throw or
    // defer once it has seen the result.
    std::exception_ptr wait(std::optional<std::chrono::nanoseconds> timeout);
    bool timed_out() const noexcept { return timed_out_; }
    // Public for the last intrusive_ptr_release only: the core is counted.
    virtual ~yield_core();

private:
    friend class yield_core_access;
    void request_cancel() noexcept;
    // The fiber stops waiting: no resumption of it may stay queued.
    void stop_waiting() noexcept;
    static resumption take_entry(ready_entry& e);

    std::atomic<bool> done_{false};
    std::atomic<bool> waiter_gone_{false};
    bool timed_out_ = false;
    bool cancel_requested_ = false;
    bool entry_taken_ = false; // the completion resumed the waiting fiber
    hub* hub_;             // the waiting fiber's: used on its thread only
    hub_mailbox* mailbox_; // counted: the handler may complete on another thread after the hub is gone
    // Not counted: resumed only until waiter_gone_, which it sets before it
    // leaves the wait.
    fiber_record* waiting_;
    boost::asio::any_io_executor io_executor_;
    struct queued_entry : ready_entry {
        yield_core* core;
    } entry_;
    boost::asio::cancellation_signal signal_;
};

template <class... Args>
class typed_yield_core final : public yield_core {
public:
    using yield_core::yield_core;
    std::optional<std::tuple<Args...>> result;
};

// The completion handler handed to the operation.
template <class... Args>
class yield_handler {
public:
    using cancellation_slot_type = boost::asio::cancellation_slot;

    // Destroyed unrun (its io_context went away), it drops its reference.
    explicit yield_handler(boost::intrusive_ptr<typed_yield_core<std::decay_t<Args>...>> core) noexcept
        : core_(std::move(core)) {}
    yield_handler(yield_handler&& other) noexcept = default;
    yield_handler(yield_handler const&) = delete;
    yield_handler& operator=(yield_handler const&) = delete;

    cancellation_slot_type get_cancellation_slot() const noexcept { return core_->slot(); }

    void operator()(Args... args) {
        auto* core = core_.detach(); // complete() hands the reference on to the hub's queue
        core->result.emplace(std::forward<Args>(args)...);
        core->complete();
    }

private:
    boost::intrusive_ptr<typed_yield_core<std::decay_t<Args>...>> core_;
};

template <class... Args>
inline constexpr bool leads_with_error_code = false;
template <class First, class... Rest>
inline constexpr bool leads_with_error_code<First, Rest...> =
    std::is_same_v<std::decay_t<First>, boost::system::error_code>;

// What the call returns for a completion `void(Args...)`: without a leading
// error_code, nothing, the one value, or a tuple of them.
template <class... Args>
struct yield_value {
    using type = std::tuple<Args...>;
    static type from(std::tuple<Args...>&& t) { return std::move(t); }
};
template <>
struct yield_value<> {
    using type = void;
    static void from(std::tuple<>&&) {}
};
template <class T>
struct yield_value<T> {
    using type = T;
    static T from(std::tuple<T>&& t) { return std::move(std::get<0>(t)); }
};

template <class... Args>
struct yield_result : yield_value<std::decay_t<Args>...> {
    using value = yield_value<std::decay_t<Args>...>;
    static typename value::type take(std::tuple<std::decay_t<Args>...>&& all, yield_t const&) {
        return value::from(std::move(all));
    }
};
template <class... Args>
struct yield_result<boost::system::error_code, Args...> : yield_value<std::decay_t<Args>...> {
    using value = yield_value<std::decay_t<Args>...>;
    static typename value::type take(std::tuple<boost::system::error_code, std::decay_t<Args>...>&& all,
                                     yield_t const& token) {
        report_error(std::get<0>(all), token);
        return std::apply([](auto&&, auto&&... rest) { return value::from(std::tuple<std::decay_t<Args>...>(
                                                               std::move(rest)...)); },
                          std::move(all));
    }
};
template <class... Args>
struct yield_result<boost::system::error_code const&, Args...> : yield_result<boost::system::error_code, Args...> {};

// The calling fiber's hub; throws unless the fiber may wait on it.
hub& hub_to_wait_on();

// Where an operation runs, to cancel it there: Asio's own initiations say;
// one made with async_initiate and a lambda is taken to run on the hub.
template <class Initiation, class = void>
struct has_executor : std::false_type {};
template <class Initiation>
struct has_executor<Initiation, std::void_t<decltype(std::declval<Initiation&>().get_executor())>> : std::true_type {};

template <class Initiation>
boost::asio::any_io_executor executor_of(Initiation& initiation, hub& h) {
    if constexpr (has_executor<Initiation>::value)
        return boost::asio::any_io_executor(initiation.get_executor());
    else
        return boost::asio::any_io_executor(h.loop().get_executor());
}
[[noreturn]] void throw_timeout();

} // namespace detail

} // namespace fibers

template <class R, class... Args>
class boost::asio::async_result<fibers::yield_t, R(Args...)> {
public:
    using return_type = typename fibers::detail::yield_result<Args...>::type;

    template <class Initiation, class... InitArgs>
    static return_type initiate(Initiation&& initiation, fibers::yield_t token, InitArgs&&... args) {
        using core_type = fibers::detail::typed_yield_core<std::decay_t<Args>...>;
        fibers::hub& h = fibers::detail::hub_to_wait_on(); // a switchpoint: before anything starts
        // The waiting fiber's reference; the handler takes the other.
        boost::intrusive_ptr<core_type> const core(new core_type(h, fibers::detail::executor_of(initiation, h)));
        std::move(initiation)(fibers::detail::yield_handler<Args...>(core), std::forward<InitArgs>(args)...);
        std::exception_ptr interruption;
        {
            fibers::detail::published_wait note(
                "asio", fibers::detail::waited_object::signature, fibers::detail::signature_text<R(Args...)>(),
                token.timeout() ? fibers::detail::publication_deadline(fibers::detail::saturated_deadline(
                                      std::chrono::steady_clock::now(), *token.timeout()))
                                : fibers::detail::wait_publication::no_deadline);
            interruption = core->wait(token.timeout());
        }
        // Aborted because an interruption or the deadline cancelled it: the
        // interruption, else a timeout. Completed otherwise, even past the
        // deadline or the interruption: its result, and the interruption at
        // the next wait.
        if constexpr (fibers::detail::leads_with_error_code<Args...>) {
            if (std::get<0>(*core->result) == boost::asio::error::operation_aborted) {
                if (interruption)
                    std::rethrow_exception(std::move(interruption));
                if (core->timed_out())
                    fibers::detail::throw_timeout();
            }
        }
        if (interruption && !fibers::detail::defer_interruption(interruption))
            std::rethrow_exception(std::move(interruption));
        return fibers::detail::yield_result<Args...>::take(std::move(*core->result), token);
    }
};

#endif // FIBERS_YIELD_HPP
