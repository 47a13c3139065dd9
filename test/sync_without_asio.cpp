// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// The sync primitives and the futures need no Asio header: a program that
// uses only them compiles none. Built, not run: it fails to compile if
// either header brings Asio in (every Asio header includes its config).

#include <fibers/futures.hpp>
#include <fibers/sync.hpp>

#if defined(BOOST_ASIO_DETAIL_CONFIG_HPP) || defined(BOOST_ASIO_VERSION)
#error "<fibers/sync.hpp> or <fibers/futures.hpp> includes an Asio header"
#endif

int main() {
    fibers::mutex m;
    std::lock_guard<fibers::mutex> lock(m);
    return 0;
}
