// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// Builds only where Boost.Fiber is installed: b2 checks it before it builds
// the benchmarks that compare against Boost.Fiber.
#include <boost/fiber/all.hpp>

int main() {
    boost::fibers::fiber f([] {});
    f.join();
}
