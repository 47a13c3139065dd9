// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_DETAIL_CONFIG_HPP
#define FIBERS_DETAIL_CONFIG_HPP

// Sanitizer and valgrind support is compiled in only where it is on: every
// context switch is annotated for them, and that costs time on the hot path.

#if defined(__SANITIZE_ADDRESS__)
#define FIBERS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FIBERS_ASAN 1
#endif
#endif

#if defined(__SANITIZE_THREAD__)
#define FIBERS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FIBERS_TSAN 1
#endif
#endif

#ifndef FIBERS_ASAN
#define FIBERS_ASAN 0
#endif
#ifndef FIBERS_TSAN
#define FIBERS_TSAN 0
#endif
// Defined to 1 by the build (CMake option FIBERS_VALGRIND, b2 <valgrind>on).
#ifndef FIBERS_VALGRIND
#define FIBERS_VALGRIND 0
#endif

#define FIBERS_SANITIZED (FIBERS_ASAN || FIBERS_TSAN)

#if defined(__GNUC__)
#define FIBERS_LIKELY(x) __builtin_expect(!!(x), 1)
#define FIBERS_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define FIBERS_NOINLINE __attribute__((noinline))
#define FIBERS_ALWAYS_INLINE inline __attribute__((always_inline))
#define FIBERS_COLD __attribute__((cold, noinline))
#define FIBERS_INITIAL_EXEC_TLS __attribute__((tls_model("initial-exec")))
#else
#define FIBERS_LIKELY(x) (x)
#define FIBERS_UNLIKELY(x) (x)
#define FIBERS_NOINLINE
#define FIBERS_ALWAYS_INLINE inline
#define FIBERS_COLD
#define FIBERS_INITIAL_EXEC_TLS
#endif

#endif // FIBERS_DETAIL_CONFIG_HPP
