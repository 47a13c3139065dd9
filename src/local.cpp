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

void destroy_fiber_locals(fiber_record* record) noexcept;

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

// Destroys a fiber's values when it ends: hung on the fiber by its first
// value, so that a fiber without any pays nothing. A value's destructor
// may give the fiber a value again, which hangs a new one: the fiber's end
// tells hooks until none is left.
class values_of_fiber final : public fiber_end_hook {
public:
    static void hang_on(fiber_record* record) {
        for (fiber_end_hook& hook : record->end_hooks)
            if (dynamic_cast<values_of_fiber*>(&hook) != nullptr)
                return;
        record->end_hooks.push_back(*new values_of_fiber);
    }
    void fiber_ended(fiber_record& record) noexcept override {
        delete this;
        destroy_fiber_locals(&record);
    }
};

} // namespace

void destroy_fiber_locals(fiber_record* record) noexcept {
    std::vector<std::pair<local_base::destroyer, void*>> doomed;
    {
        std::lock_guard<std::mutex> lock(locals_mutex());
        auto found = holders().find(record);
        if (found == holders().end())
            return;
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
    if (value != nullptr)
        values_of_fiber::hang_on(record); // its own thread's: no lock
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
