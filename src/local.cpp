// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#include "fiber_internals.hpp"

#include <fibers/local.hpp>

#include <algorithm>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace fibers::detail {

namespace {

// One lock for all locals: values are reached from two sides (the local,
// and the fiber when it ends), and a value is destroyed outside it. Made on
// first use and never destroyed: a local at namespace scope may be
// destroyed after these would have been.
std::mutex& locals_mutex() {
    static auto* m = new std::mutex;
    return *m;
}

// For each fiber with values, the locals that hold them.
std::unordered_map<fiber_record const*, std::vector<local_base*>>& holders() {
    static auto* h = new std::unordered_map<fiber_record const*, std::vector<local_base*>>;
    return *h;
}

fiber_record* running_record() { return this_thread_state().current; }

} // namespace

void destroy_fiber_locals(fiber_record* record) noexcept {
    // A value's destructor may give the fiber a value again: repeat until
    // none is left.
    for (;;) {
        std::vector<std::pair<local_base::destroyer, void*>> doomed;
        {
            std::lock_guard<std::mutex> lock(locals_mutex());
            auto found = holders().find(record);
            if (found == holders().end()) {
                record->has_locals = false;
                return;
            }
            for (local_base* l : found->second) {
                auto value = l->values_.find(record);
                doomed.emplace_back(l->destroy_, value->second);
                l->values_.erase(value);
            }
            holders().erase(found);
        }
        for (auto& [destroy, value] : doomed)
            destroy(value);
    }
}

void* local_base::find() const noexcept {
    thread_state const* ts = current_thread_state;
    if (ts == nullptr)
        return nullptr;
    std::lock_guard<std::mutex> lock(locals_mutex());
    auto found = values_.find(ts->current);
    return found != values_.end() ? found->second : nullptr;
}

void* local_base::exchange(void* value) {
    fiber_record* record = running_record();
    std::lock_guard<std::mutex> lock(locals_mutex());
    auto found = values_.find(record);
    if (found != values_.end()) {
        void* previous = found->second;
        if (value != nullptr) {
            found->second = value;
        } else {
            values_.erase(found);
            auto& mine = holders()[record];
            mine.erase(std::find(mine.begin(), mine.end(), this));
            if (mine.empty())
                holders().erase(record);
        }
        return previous;
    }
    if (value == nullptr)
        return nullptr;
    auto& mine = holders()[record];
    mine.push_back(this);
    try {
        values_.emplace(record, value);
    } catch (...) {
        mine.pop_back();
        throw;
    }
    fiber_locals_destroyer.store(&destroy_fiber_locals, std::memory_order_release);
    record->has_locals = true;
    return nullptr;
}

void local_base::destroy_all() noexcept {
    std::vector<void*> doomed;
    {
        std::lock_guard<std::mutex> lock(locals_mutex());
        for (auto& [record, value] : values_) {
            auto& theirs = holders()[record];
            theirs.erase(std::find(theirs.begin(), theirs.end(), this));
            if (theirs.empty())
                holders().erase(record);
            doomed.push_back(value);
        }
        values_.clear();
    }
    for (void* value : doomed)
        destroy_(value);
}

} // namespace fibers::detail
