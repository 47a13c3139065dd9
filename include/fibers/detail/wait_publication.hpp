// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_DETAIL_WAIT_PUBLICATION_HPP
#define FIBERS_DETAIL_WAIT_PUBLICATION_HPP

// What a suspended fiber waits on, for diagnostics (list_fibers, the dumps,
// the gdb extension, the deadlock report), kept in its fiber_record.
//
// Other threads and signal handlers read a publication while its fiber
// runs, so every field is an atomic of its own and the texts are static:
// a reader sees each field of this wait or of a later one, never a
// dangling pointer. The fiber itself writes it; nobody else does.

#include <atomic>
#include <cstdint>

namespace fibers::detail {

// What `object` of a publication is.
enum class waited_object : std::uint8_t {
    none,
    primitive, // the address of a mutex, event, queue...: printed as such
    fiber,     // the record of a fiber (a joined task): printed by name
    signature  // static text: an Asio completion signature
};

// Who holds an owned primitive (a mutex) now, read from the primitive: a
// fiber_record, or null.
using holder_reader = void const* (*)(void const* primitive) noexcept;

// A wait whose deadline is wait_publication::no_deadline waits for ever.
struct wait_publication {
    static constexpr std::int64_t no_deadline = 0;
    std::atomic<char const*> what{nullptr}; // static text; null: no wait published
    std::atomic<void const*> object{nullptr};
    std::atomic<std::int64_t> deadline{no_deadline}; // steady_clock's nanoseconds since its epoch
    std::atomic<waited_object> object_kind{waited_object::none};
    std::atomic<holder_reader> holder{nullptr}; // an owned primitive's: who can release it
};

} // namespace fibers::detail

#endif // FIBERS_DETAIL_WAIT_PUBLICATION_HPP
