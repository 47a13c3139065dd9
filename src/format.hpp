// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_SRC_FORMAT_HPP
#define FIBERS_SRC_FORMAT_HPP

// The library's one formatter for text that must be written where nothing
// may allocate: fiber names (describe()) and the stack-overflow report,
// written from a signal handler, and the fiber dumps, written from one
// too. No stdio, no locale, no allocation.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include <unistd.h>

namespace fibers::detail {

// Appends text to a caller's buffer of `capacity` bytes, truncating what
// does not fit and keeping it NUL-terminated (a capacity of 0 takes
// nothing).
class text_writer {
public:
    text_writer(char* buffer, std::size_t capacity) noexcept : buffer_(buffer), capacity_(capacity) {
        if (capacity_ != 0)
            buffer_[0] = '\0';
    }
    text_writer(text_writer const&) = delete;
    text_writer& operator=(text_writer const&) = delete;

    // Characters written, the NUL not counted.
    std::size_t size() const noexcept { return size_; }

    char const* c_str() const noexcept { return capacity_ != 0 ? buffer_ : ""; }

    text_writer& put(char c) noexcept {
        if (size_ + 1 < capacity_) {
            buffer_[size_++] = c;
            buffer_[size_] = '\0';
            if (c == '\n')
                line_start_ = size_;
        }
        return *this;
    }
    text_writer& put(char const* s) noexcept {
        while (*s != '\0')
            put(*s++);
        return *this;
    }
    text_writer& put(char const* s, std::size_t n) noexcept {
        for (std::size_t i = 0; i != n; ++i)
            put(s[i]);
        return *this;
    }
    text_writer& put_hex(std::uintptr_t v) noexcept {
        char digits[2 * sizeof v];
        std::size_t n = 0;
        do {
            digits[n++] = "0123456789abcdef"[v & 0xf];
            v >>= 4;
        } while (v != 0);
        put("0x");
        while (n != 0)
            put(digits[--n]);
        return *this;
    }
    text_writer& put_dec(std::uint64_t v) noexcept {
        char digits[24];
        std::size_t n = 0;
        do {
            digits[n++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v != 0);
        while (n != 0)
            put(digits[--n]);
        return *this;
    }
    // Seconds with milliseconds ("1.250 s"), from nanoseconds.
    text_writer& put_seconds(std::int64_t ns) noexcept {
        if (ns < 0) {
            put('-');
            ns = -ns;
        }
        auto const ms = static_cast<std::uint64_t>(ns / 1'000'000);
        put_dec(ms / 1000).put('.');
        std::uint64_t const fraction = ms % 1000;
        put(static_cast<char>('0' + fraction / 100)).put(static_cast<char>('0' + fraction / 10 % 10));
        return put(static_cast<char>('0' + fraction % 10)).put(" s");
    }
    // Pads the current line with spaces up to `column`, at least one: the
    // columns of a table.
    text_writer& pad_to(std::size_t column) noexcept {
        do
            put(' ');
        while (size_ - line_start_ < column && size_ + 1 < capacity_);
        return *this;
    }
    // A name that an application chose, kept on one line and free of the
    // quote it is printed in: control characters, '"' and '\\' become '?';
    // bytes of UTF-8 sequences pass through. At most `max` bytes, or up to
    // the first NUL.
    text_writer& put_name(char const* s, std::size_t max) noexcept {
        for (std::size_t i = 0; i != max && s[i] != '\0'; ++i) {
            auto const c = static_cast<unsigned char>(s[i]);
            put(c < 0x20 || c == 0x7f || c == '"' || c == '\\' ? '?' : static_cast<char>(c));
        }
        return *this;
    }

private:
    char* buffer_;
    std::size_t capacity_;
    std::size_t size_ = 0;
    std::size_t line_start_ = 0; // where the line being written starts
};

// Writes "fibers: fatal: MESSAGE" to stderr and aborts: for states the
// library cannot continue from, on any layer (a context function that
// returned, an ended fiber resumed), where nothing may allocate.
[[noreturn]] inline void fatal(char const* message) noexcept {
    char const prefix[] = "fibers: fatal: ";
    [[maybe_unused]] auto a = ::write(2, prefix, sizeof prefix - 1);
    [[maybe_unused]] auto b = ::write(2, message, std::strlen(message));
    [[maybe_unused]] auto c = ::write(2, "\n", 1);
    std::abort();
}

} // namespace fibers::detail

#endif // FIBERS_SRC_FORMAT_HPP
