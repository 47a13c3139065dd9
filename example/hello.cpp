// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// python-fibers' README example: two fibers hand control to each other and
// print "1 2 3 4" between them.

#include <fibers/fiber.hpp>

#include <iostream>

int main() {
    fibers::fiber f1, f2;
    f1 = fibers::fiber([&] {
        std::cout << "1 ";
        f2.switch_to();
        std::cout << "3 ";
        f2.switch_to();
    });
    f2 = fibers::fiber([&] {
        std::cout << "2 ";
        f1.switch_to();
        std::cout << "4\n";
    });
    f1.switch_to();
    // f2 ended into its parent, this root fiber; f1 waits forever inside its
    // last switch_to(), and is unwound when its last handle goes.
}
