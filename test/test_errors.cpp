// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#define BOOST_TEST_MODULE errors
#include <boost/test/unit_test.hpp>

#include <fibers/errors.hpp>

#include <string>
#include <type_traits>

// The hierarchy is part of the contract: users catch by these bases.
static_assert(std::is_base_of_v<std::runtime_error, fibers::error>);
static_assert(std::is_base_of_v<std::runtime_error, fibers::timeout>);
static_assert(std::is_base_of_v<std::runtime_error, fibers::cancelled>);
static_assert(std::is_base_of_v<std::runtime_error, fibers::keyboard_interrupt>);
static_assert(std::is_base_of_v<std::logic_error, fibers::switchpoint_violation>);
static_assert(std::is_base_of_v<std::runtime_error, fibers::queue_empty>);
static_assert(std::is_base_of_v<std::runtime_error, fibers::queue_full>);

template <class E>
std::string what_of(E const& e) {
    try {
        throw e;
    } catch (std::exception const& caught) {
        return caught.what();
    }
}

BOOST_AUTO_TEST_CASE(messages_are_kept) {
    BOOST_TEST(what_of(fibers::error("bad switch")) == "bad switch");
    BOOST_TEST(what_of(fibers::cancelled("shutting down")) == "shutting down");
    BOOST_TEST(what_of(fibers::timeout("read")) == "read");
    BOOST_TEST(what_of(fibers::switchpoint_violation("no")) == "no");
}

BOOST_AUTO_TEST_CASE(defaults_say_what_happened) {
    BOOST_TEST(what_of(fibers::timeout()) == "timeout");
    BOOST_TEST(what_of(fibers::cancelled()) == "cancelled");
    BOOST_TEST(what_of(fibers::keyboard_interrupt()) == "keyboard interrupt");
    BOOST_TEST(what_of(fibers::queue_empty()) == "queue is empty");
    BOOST_TEST(what_of(fibers::queue_full()) == "queue is full");
}

BOOST_AUTO_TEST_CASE(caught_by_their_bases) {
    BOOST_CHECK_THROW(throw fibers::error("x"), std::runtime_error);
    BOOST_CHECK_THROW(throw fibers::switchpoint_violation("x"), std::logic_error);
    BOOST_CHECK_THROW(throw fibers::cancelled(), std::runtime_error);
}
