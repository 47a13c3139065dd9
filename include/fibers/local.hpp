// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_LOCAL_HPP
#define FIBERS_LOCAL_HPP

#include <fibers/detail/fiber_record.hpp>

#include <memory>
#include <stdexcept>
#include <unordered_map>
#include <utility>

namespace fibers {

namespace detail {

// The type-independent part of local<T>: one value per fiber, keyed by the
// fiber's record. Thread-safe: a local may be shared by fibers of many
// threads; each fiber only ever sees its own value.
class local_base {
public:
    local_base(local_base const&) = delete;
    local_base& operator=(local_base const&) = delete;

protected:
    using destroyer = void (*)(void*) noexcept;
    // `destroy` deletes a value: called without the local, which may be
    // gone by then (a fiber ending on one thread, the local destroyed on
    // another).
    explicit local_base(destroyer destroy) noexcept : destroy_(destroy) {}
    ~local_base() = default;

    // The running fiber's value, or null.
    void* find() const noexcept;
    // Sets the running fiber's value (null unsets it); returns the previous.
    void* exchange(void* value);
    // Takes every fiber's value out and destroys them: in ~local().
    void destroy_all() noexcept;

private:
    friend void destroy_fiber_locals(fiber_record* record) noexcept;
    destroyer const destroy_;
    std::unordered_map<fiber_record const*, void*> values_; // guarded by one mutex for all locals
};

} // namespace detail

/// Per-fiber data (Gruvi's `local`): each fiber sees its own value, or none.
/// A value lives until it is reset, its fiber ends, or the local is
/// destroyed. Accesses take a lock shared by all locals: read a value once
/// into a reference rather than in a tight loop.
template <class T>
class local : private detail::local_base {
public:
    local() noexcept : local_base(&destroy_value) {}
    ~local() { destroy_all(); }

    /// The running fiber's value, or nullptr where unset.
    T* get() const noexcept { return static_cast<T*>(find()); }

    /// The running fiber's value; std::out_of_range where unset.
    T& value() const {
        if (T* p = get())
            return *p;
        throw std::out_of_range("fibers::local: no value in the running fiber");
    }

    /// Sets the running fiber's value, destroying a previous one.
    template <class... A>
    T& emplace(A&&... args) {
        auto fresh = std::make_unique<T>(std::forward<A>(args)...);
        T& made = *fresh;
        std::unique_ptr<T> previous(static_cast<T*>(exchange(fresh.get())));
        fresh.release();
        return made;
    }

    /// Unsets the running fiber's value.
    void reset() noexcept { delete static_cast<T*>(exchange_noexcept()); }

    bool has_value() const noexcept { return find() != nullptr; }

private:
    void* exchange_noexcept() noexcept {
        try {
            return exchange(nullptr); // unsetting allocates nothing
        } catch (...) {
            return nullptr;
        }
    }
    static void destroy_value(void* value) noexcept { delete static_cast<T*>(value); }
};

} // namespace fibers

#endif // FIBERS_LOCAL_HPP
