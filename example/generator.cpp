// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

// A generator built from a fiber: the producer runs on its own stack and
// hands each value to its consumer with a switch, so it can be written as a
// plain loop (here, a recursive tree walk, which an iterator could not do
// without an explicit stack).

#include <fibers/fiber.hpp>

#include <any>
#include <iostream>
#include <memory>
#include <optional>
#include <utility>

template <class T>
class generator {
public:
    // `produce(yield)` calls `yield(value)` for each value.
    template <class Producer>
    explicit generator(Producer produce)
        : consumer_(fibers::fiber::current()),
          producer_([this, produce = std::move(produce)]() mutable {
              produce([this](T value) { consumer_.switch_to(std::move(value)); });
          }) {}

    generator(generator const&) = delete; // the producer refers to this object
    generator& operator=(generator const&) = delete;

    // The next value, or nothing once the producer has returned.
    std::optional<T> next() {
        consumer_ = fibers::fiber::current();
        producer_.set_parent(consumer_);
        std::any value = producer_.switch_to();
        if (!producer_.is_alive())
            return std::nullopt;
        return std::any_cast<T>(std::move(value));
    }

private:
    fibers::fiber consumer_;
    fibers::fiber producer_;
};

struct node {
    int value;
    std::unique_ptr<node> left, right;
};

std::unique_ptr<node> insert(std::unique_ptr<node> tree, int value) {
    if (!tree)
        return std::unique_ptr<node>(new node{value, nullptr, nullptr});
    auto& side = value < tree->value ? tree->left : tree->right;
    side = insert(std::move(side), value);
    return tree;
}

template <class Yield>
void in_order(node const* n, Yield& yield) {
    if (!n)
        return;
    in_order(n->left.get(), yield);
    yield(n->value);
    in_order(n->right.get(), yield);
}

int main() {
    std::unique_ptr<node> tree;
    for (int v : {50, 30, 70, 20, 40, 60, 80, 35, 65})
        tree = insert(std::move(tree), v);

    generator<int> values([&tree](auto yield) { in_order(tree.get(), yield); });
    while (auto v = values.next())
        std::cout << *v << ' ';
    std::cout << '\n';
}
