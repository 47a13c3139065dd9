// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#include "fiber_registry.hpp"
#include "fiber_internals.hpp"
#include "format.hpp"

#include "stack_overflow.hpp"
#include <fibers/fiber.hpp>
#include <fibers/log.hpp>

#include <cxxabi.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <ostream>
#include <string>

#if FIBERS_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if FIBERS_TSAN
#include <sanitizer/tsan_interface.h>

#include <csignal>
#endif
#if FIBERS_VALGRIND
#include <valgrind/valgrind.h>
#endif

#if FIBERS_TSAN
// TSan wants the switch announced from code it does not instrument, right
// before the jump.
#define FIBERS_JUMP_ATTRIBUTES __attribute__((no_sanitize("thread"), noinline))
#else
#define FIBERS_JUMP_ATTRIBUTES inline
#endif

namespace fibers::detail {

namespace ctx = boost::context::detail;

__thread thread_state* current_thread_state FIBERS_INITIAL_EXEC_TLS = nullptr;
char const no_switch_key = 0;

namespace {

// Set once the thread's exit hook has run: a state made after that (by
// another thread_local's destructor) cannot be hooked again.
thread_local bool state_retired FIBERS_INITIAL_EXEC_TLS = false;

void shutdown_thread(thread_state& ts) noexcept;

struct thread_exit_hook {
    bool armed = false;
    ~thread_exit_hook() {
        if (armed && current_thread_state != nullptr)
            shutdown_thread(*current_thread_state);
    }
};
thread_local thread_exit_hook exit_hook;

class root_record final : public fiber_record {
public:
    root_record() {
        is_root = true;
        status.store(fiber_status::started, std::memory_order_relaxed);
        // The thread holds the root's handle and its self reference.
        references.store(2, std::memory_order_relaxed);
        thread = std::this_thread::get_id();
    }
    std::any run() override { fatal("the root fiber has no target"); }
    void discard_target() noexcept override {}
    boost::context::stack_context allocate_stack() override { fatal("the root fiber has no stack to allocate"); }
    void deallocate_stack(boost::context::stack_context&) noexcept override {}
    std::size_t describe(char* buffer, std::size_t capacity) const noexcept override {
        return text_writer(buffer, capacity).put("root").size();
    }
    char const* kind() const noexcept override { return "root"; }
};

bool describe_running_fiber(running_fiber_info& info) noexcept {
    thread_state const* ts = current_thread_state;
    if (ts == nullptr || ts->current == nullptr || ts->current->is_root)
        return false;
    fiber_record const* running = ts->current;
    running->describe(info.name, sizeof info.name);
    info.stack_high = running->stack.sp;
    info.stack_low = static_cast<char const*>(running->stack.sp) - running->stack.size;
    return true;
}

thread_state& make_thread_state() {
    auto owned = std::make_unique<thread_state>();
    owned->anchor = new thread_anchor;
    intrusive_ptr_add_ref(owned->anchor); // the thread state's
    auto* root = new root_record;
    root->anchor = owned->anchor;
    intrusive_ptr_add_ref(owned->anchor); // the root fiber's
    owned->root = owned->current = root;
    owned->switch_key = owned->anchor;
    root->switch_key = owned->anchor;
    owned->runtime_exceptions = reinterpret_cast<exception_state*>(abi::__cxa_get_globals());
#if FIBERS_TSAN
    root->tsan_fiber = __tsan_get_current_fiber();
#endif
    set_running_fiber_describer(&describe_running_fiber);
    register_thread(*owned);
    current_thread_state = owned.release();
    if (!state_retired)
        exit_hook.armed = true;
    return *current_thread_state;
}

inline thread_state& state() {
    if (FIBERS_LIKELY(current_thread_state != nullptr))
        return *current_thread_state;
    return make_thread_state();
}

#if FIBERS_TSAN
// The thread's signal mask while a switch holds the asynchronous signals.
thread_local sigset_t mask_before_the_switch;

// Every signal but those a fault raises: a fault in the switch must still
// reach its handler (the stack overflow report).
sigset_t const& signals_held_across_a_switch() noexcept {
    static sigset_t const held = [] {
        sigset_t s;
        sigfillset(&s);
        for (int fault : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS})
            sigdelset(&s, fault);
        return s;
    }();
    return held;
}

// TSan makes a fiber's state current while it creates or destroys it: a
// signal that came then would be held in that state, and lost with it.
class signals_held_by_tsan_bookkeeping {
public:
    signals_held_by_tsan_bookkeeping() noexcept {
        pthread_sigmask(SIG_BLOCK, &signals_held_across_a_switch(), &mask_);
    }
    ~signals_held_by_tsan_bookkeeping() { pthread_sigmask(SIG_SETMASK, &mask_, nullptr); }
    signals_held_by_tsan_bookkeeping(signals_held_by_tsan_bookkeeping const&) = delete;
    signals_held_by_tsan_bookkeeping& operator=(signals_held_by_tsan_bookkeeping const&) = delete;

private:
    sigset_t mask_;
};
#endif

// Everything a switch needs besides the jump itself.
FIBERS_JUMP_ATTRIBUTES ctx::transfer_t jump(fiber_record* from, fiber_record* to, bool from_ends) noexcept {
#if FIBERS_ASAN
    __sanitizer_start_switch_fiber(from_ends ? nullptr : &from->asan_fake_stack, to->asan_stack_bottom,
                                   to->asan_stack_size);
#else
    (void)from_ends;
#endif
#if FIBERS_TSAN
    // TSan holds a signal that arrives while ordinary code runs until the
    // next intercepted call, in the state of the fiber that was running: a
    // fiber that switched away before making one would keep it until it ran
    // again, maybe never (a SIGTERM for a root fiber waiting on a
    // signal_set, lost in a connection's task). Blocking the asynchronous
    // signals is such a call: TSan runs the handlers it holds for the fiber
    // being left, and the kernel holds any signal that comes later until
    // landed() unblocks it on the fiber arriving.
    pthread_sigmask(SIG_BLOCK, &signals_held_across_a_switch(), &mask_before_the_switch);
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
    ctx::transfer_t const arrived = jump_to(to->context, from);
    // Not a tail call: a suspended fiber's saved pc stays in this frame, and
    // `fiber bt` in gdb shows the switch it waits in.
    asm volatile("" ::: "memory");
    return arrived;
}

inline void landed(fiber_record* self, fiber_record* from) noexcept {
#if FIBERS_TSAN
    pthread_sigmask(SIG_SETMASK, &mask_before_the_switch, nullptr);
#endif
#if FIBERS_ASAN
    void const* bottom = nullptr;
    std::size_t size = 0;
    __sanitizer_finish_switch_fiber(self->asan_fake_stack, &bottom, &size);
    // The root's stack bounds are known only once we have left it.
    if (from->is_root) {
        from->asan_stack_bottom = bottom;
        from->asan_stack_size = size;
    }
#else
    (void)self;
    (void)from;
#endif
}

// The library's own switch: the header's fast path, plus the sanitizer
// annotations in builds that have them.
FIBERS_ALWAYS_INLINE std::any switch_annotated(thread_state& ts, fiber_record* target) {
#if FIBERS_SANITIZED
    fiber_record* self = ts.current;
    hand_over_exceptions(ts, self, target);
    ts.current = target;
    ctx::transfer_t transfer = jump(self, target, false);
    landed(self, static_cast<fiber_record*>(transfer.data));
    return arrive(ts, transfer);
#else
    return switch_inline(ts, target);
#endif
}

void fiber_entry(ctx::transfer_t from) noexcept {
    thread_state& ts = *current_thread_state;
    fiber_record* self = ts.current;
    landed(self, static_cast<fiber_record*>(from.data));
    std::any result;
    std::exception_ptr error;
    try {
        arrive(ts, from); // the first switch carries no value
        result = self->run();
    } catch (...) {
        error = std::current_exception();
    }
    self->discard_target();
    // Its fiber-local values go now, while it still runs.
    if (!self->end_hooks.empty())
        self->tell_end_hooks();
    ts.finish(self, std::move(result), std::move(error));
}

std::string name_of(fiber_record const* record) {
    char buffer[96];
    std::size_t n = record->describe(buffer, sizeof buffer);
    return std::string(buffer, n);
}

[[noreturn]] FIBERS_COLD void reject_switch(thread_state const& ts, fiber_record const* target) {
    if (ts.no_switch_depth != 0)
        throw switchpoint_violation("fibers: switch inside assert_no_switchpoints");
    if (target == nullptr)
        throw error("fibers: empty fiber handle");
    if (target->anchor != ts.anchor)
        throw error("fibers: cannot switch to a fiber of another thread");
    if (target == ts.current)
        throw error("fibers: cannot switch from a fiber to itself");
    if (target->status.load(std::memory_order_relaxed) == fiber_status::ended)
        throw error("fibers: the fiber has ended");
    throw error(std::string("fibers: only its scheduler may switch to a ") + target->kind());
}

inline void check_switch(thread_state const& ts, fiber_record const* target) {
    if (FIBERS_UNLIKELY(ts.no_switch_depth != 0 || target == nullptr || target->anchor != ts.anchor ||
                        target == ts.current ||
                        target->status.load(std::memory_order_relaxed) == fiber_status::ended ||
                        !target->accepts_switch_from(ts.current)))
        reject_switch(ts, target);
}

void release_from_other_thread(fiber_record* record) noexcept {
    // While more than two references remain, this one is not the last handle
    // and cannot leave a suspended fiber unreachable.
    std::uint32_t count = record->references.load(std::memory_order_relaxed);
    while (count > 2) {
        if (record->references.compare_exchange_weak(count, count - 1, std::memory_order_acq_rel,
                                                     std::memory_order_relaxed))
            return;
    }
    // Perhaps the last handle: only the owner thread may unwind the fiber or
    // run its target's destructor, so the reference goes to it.
    thread_anchor* anchor = record->anchor;
    {
        std::lock_guard<std::mutex> lock(anchor->mutex);
        if (anchor->alive) {
            try {
                anchor->orphans.push_back(record);
            } catch (...) {
                return; // out of memory: leaking beats running code on the wrong thread
            }
            anchor->has_orphans.store(true, std::memory_order_release);
            if (anchor->wake != nullptr)
                anchor->wake(anchor->wake_argument);
            return;
        }
    }
    // The owner has ended, and every fiber of it with it: only memory is left.
    if (record->references.fetch_sub(1, std::memory_order_acq_rel) == 1)
        delete record;
}

void shutdown_thread(thread_state& ts) noexcept {
    state_retired = true;
    if (ts.current != ts.root) {
        // The thread ends inside a fiber (exit() called on a fiber's stack):
        // nothing can be unwound from here, so the fibers stay as they are.
        current_thread_state = nullptr;
        return;
    }
    ts.drain_orphans();
    // Newest first: children are usually newer than their parents.
    while (fiber_record* record = ts.newest_live) {
        add_reference(record);
        if (record->status.load(std::memory_order_relaxed) == fiber_status::created)
            ts.discard_unstarted(record);
        else
            ts.unwind(record);
        ts.release_here(record);
        ts.drain_orphans();
    }
    std::vector<fiber_record*> late;
    {
        std::lock_guard<std::mutex> lock(ts.anchor->mutex);
        ts.anchor->alive = false;
        ts.anchor->wake = nullptr;
        late.swap(ts.anchor->orphans);
    }
    for (fiber_record* record : late)
        ts.release_here(record);
    flush_thread_stack_cache();

    fiber_record* root = ts.root;
    root->tell_end_hooks();
    root->status.store(fiber_status::ended, std::memory_order_relaxed);
    root->switch_key = nullptr;
    current_thread_state = nullptr;
    thread_anchor* anchor = ts.anchor;
    unregister_thread(ts);
    delete &ts;
    if (root->references.fetch_sub(2, std::memory_order_acq_rel) == 2)
        delete root;
    intrusive_ptr_release(anchor);
}

} // namespace

fiber_record::~fiber_record() {
    tell_end_hooks();
    if (parent != nullptr)
        release(parent);
    if (is_root)
        intrusive_ptr_release(anchor);
}

bool fiber_record::accepts_switch_from(fiber_record const*) const noexcept { return true; }

bool fiber_record::accepts_any_switcher() const noexcept { return true; }
char const* fiber_record::kind() const noexcept { return "fiber"; }

std::size_t fiber_record::describe(char* buffer, std::size_t capacity) const noexcept {
    return text_writer(buffer, capacity).put("fiber ").put_hex(reinterpret_cast<std::uintptr_t>(this)).size();
}

thread_state& this_thread_state() { return state(); }

std::string describe_exception(std::exception_ptr const& e) {
    try {
        std::rethrow_exception(e);
    } catch (std::exception const& x) {
        return x.what();
    } catch (...) {
        return "an exception not derived from std::exception";
    }
}

void log_current_exception(char const* where) noexcept {
    try {
        log(log_level::error, std::string(where) + ": " + describe_exception(std::current_exception()));
    } catch (...) {
        log(log_level::error, where);
    }
}

std::any thread_state::switch_unchecked(fiber_record* target) { return switch_annotated(*this, target); }

std::any thread_state::arrive_with_care(fiber_record* from) {
    // Ending or unwinding `from` may switch again: take our message first.
    arrival_needs_care = false;
    std::exception_ptr e = std::exchange(incoming_error, nullptr);
    std::any value(std::move(*incoming_value));
    if (from->status.load(std::memory_order_relaxed) == fiber_status::ended)
        retire(from);
    else if (!from->is_root && from->references.load(std::memory_order_relaxed) == 1)
        unwind(from); // it dropped its last handle while running: nobody can resume it
    if (e)
        std::rethrow_exception(std::move(e));
    return value;
}

void thread_state::start(fiber_record* target) {
    if (FIBERS_UNLIKELY(!overflow_handler_ready)) {
        install_overflow_handler_for_this_thread();
        overflow_handler_ready = true;
    }
    target->stack = target->allocate_stack();
    target->stack_top.store(reinterpret_cast<std::uintptr_t>(target->stack.sp), std::memory_order_relaxed);
    target->stack_extent.store(target->stack.size, std::memory_order_relaxed);
    void* bottom = static_cast<char*>(target->stack.sp) - target->stack.size;
    if (FIBERS_UNLIKELY(fill_new_stacks.load(std::memory_order_relaxed)))
        fill_stack(*target);
    target->context = make_context(target->stack.sp, target->stack.size, &fiber_entry);
    target->asan_stack_bottom = bottom;
    target->asan_stack_size = target->stack.size;
#if FIBERS_VALGRIND
    target->valgrind_stack_id = VALGRIND_STACK_REGISTER(bottom, target->stack.sp);
#endif
#if FIBERS_TSAN
    {
        signals_held_by_tsan_bookkeeping held;
        target->tsan_fiber = __tsan_create_fiber(0);
    }
#endif
    add_reference(target);
    target->status.store(fiber_status::started, std::memory_order_relaxed);
    if (target->accepts_any_switcher())
        target->switch_key = target->anchor;
}

void thread_state::retire(fiber_record* ended) noexcept {
#if FIBERS_TSAN
    {
        signals_held_by_tsan_bookkeeping held;
        __tsan_destroy_fiber(ended->tsan_fiber);
    }
    ended->tsan_fiber = nullptr;
#endif
#if FIBERS_VALGRIND
    VALGRIND_STACK_DEREGISTER(ended->valgrind_stack_id);
#endif
    // Cleared first: once released, the stack may be another fiber's.
    ended->stack_top.store(0, std::memory_order_relaxed);
    ended->stack_extent.store(0, std::memory_order_relaxed);
    ended->deallocate_stack(ended->stack);
    ended->stack = {};
    release_here(ended); // its reference to itself
}

void thread_state::finish(fiber_record* self, std::any&& result, std::exception_ptr&& error) noexcept {
    self->status.store(fiber_status::ended, std::memory_order_relaxed);
    self->switch_key = nullptr;
    unlink_live(self);
    if (FIBERS_UNLIKELY(!self->end_hooks.empty()))
        self->tell_end_hooks();
    fiber_record* receiver = resumable_ancestor(self);
    incoming_value = &result; // this frame outlives the jump: the stack goes after
    incoming_error = std::move(error);
    arrival_needs_care = true;
    hand_over_exceptions(*this, self, receiver);
    current = receiver;
    jump(self, receiver, true);
    fatal("an ended fiber was resumed");
}

fiber_record* thread_state::resumable_ancestor(fiber_record const* record) const noexcept {
    for (fiber_record* p = record->parent; p != nullptr; p = p->parent) {
        if (p->status.load(std::memory_order_relaxed) == fiber_status::started)
            return p;
    }
    return root;
}

void thread_state::discard_unstarted(fiber_record* record) noexcept {
    record->status.store(fiber_status::ended, std::memory_order_relaxed);
    unlink_live(record);
    record->discard_target();
}

void thread_state::unwind(fiber_record* victim) noexcept {
    add_reference(victim); // ours, so that it outlives its own end
    fiber_record* old_parent;
    add_reference(current);
    victim->before_parent_change();
    {
        std::lock_guard<std::mutex> lock(anchor->mutex);
        old_parent = victim->parent;
        victim->parent = current;
    }
    bool swallowed = false;
    try {
        std::any nothing;
        incoming_value = &nothing;
        incoming_error = std::make_exception_ptr(forced_unwind{});
        arrival_needs_care = true;
        switch_unchecked(victim);
        swallowed = true;
    } catch (forced_unwind const&) {
    } catch (...) {
        log(log_level::error, name_of(victim) + " threw while its stack was being unwound: " +
                                  describe_exception(std::current_exception()));
    }
    if (victim->status.load(std::memory_order_relaxed) != fiber_status::ended) {
        std::string message = name_of(victim) +
                              " was resumed elsewhere while its stack was being unwound (its last handle was "
                              "dropped); a catch (...) that does not rethrow, or a switch in a destructor, is "
                              "not allowed there";
        fatal(message.c_str());
    }
    if (swallowed)
        log(log_level::error, name_of(victim) +
                                  " swallowed the unwinding of its stack (a catch (...) that did not rethrow) "
                                  "and returned; its last handle had been dropped");
    if (old_parent != nullptr)
        release_here(old_parent);
    release_here(victim);
}

void thread_state::release_here(fiber_record* record) noexcept {
    std::uint32_t previous = record->references.fetch_sub(1, std::memory_order_acq_rel);
    if (previous == 1) {
        if (record->status.load(std::memory_order_relaxed) == fiber_status::created)
            discard_unstarted(record);
        delete record;
        return;
    }
    // A started fiber holds a reference to itself: if that is all that is
    // left, nothing can ever resume it. Suspended, its stack is unwound now;
    // running, once it switches away.
    if (previous == 2 && record->status.load(std::memory_order_relaxed) == fiber_status::started &&
        !record->is_root) {
        if (record == current)
            arrival_needs_care = true;
        else
            unwind(record);
    }
}

void thread_state::drain_orphans() noexcept {
    if (!anchor->has_orphans.load(std::memory_order_acquire))
        return;
    std::vector<fiber_record*> batch;
    {
        std::lock_guard<std::mutex> lock(anchor->mutex);
        batch.swap(anchor->orphans);
        anchor->has_orphans.store(false, std::memory_order_relaxed);
    }
    for (fiber_record* record : batch)
        release_here(record);
}

using live_list = newest_first_list<fiber_record, &fiber_record::newer_live, &fiber_record::older_live>;

void thread_state::link_live(fiber_record* record) noexcept {
    live_list_change guard(*this);
    live_list::link(newest_live, record);
}

void thread_state::unlink_live(fiber_record* record) noexcept {
    live_list_change guard(*this);
    live_list::unlink(newest_live, record);
}

void attach_new_fiber(fiber_record* record, fiber_record* parent) {
    std::unique_ptr<fiber_record> owned(record);
    thread_state& ts = state();
    ts.drain_orphans();
    if (parent == nullptr)
        parent = ts.current;
    else if (parent->anchor != ts.anchor)
        throw std::invalid_argument("fibers: the parent belongs to another thread");
    else if (parent->status.load(std::memory_order_relaxed) == fiber_status::ended)
        throw std::invalid_argument("fibers: the parent has ended");
    add_reference(parent);
    record->parent = parent;
    record->anchor = ts.anchor; // not counted: see fiber_record::anchor
    record->thread = std::this_thread::get_id();
    ts.link_live(owned.release());
}

std::any switch_checked(fiber_record* target, std::any* value) {
    thread_state& ts = state();
    check_switch(ts, target);
    if (target->status.load(std::memory_order_relaxed) == fiber_status::created) {
        if (value->has_value())
            throw std::invalid_argument("fibers: cannot pass a value to a fiber that has not started");
        ts.start(target);
    }
    ts.incoming_value = value;
    return switch_annotated(ts, target);
}

#if FIBERS_ASAN
bool lies_on_own_stack(void const* slot, fiber_record const* record) noexcept {
    if (lies_on_stack_of(slot, record))
        return true;
    // A frame on ASan's fake stack records where on the real stack it
    // belongs. Each fiber has a fake stack of its own, which ASan destroys
    // with the fiber's last jump, so it is only looked at on the owner
    // thread, until the fiber ends: the running fiber's, or the one saved
    // when the fiber was suspended. (A fiber's last frame, that of its
    // entry, is made before it has a fake stack: on the real stack.)
    thread_state const* ts = current_thread_state;
    if (ts == nullptr || ts->anchor != record->anchor ||
        record->status.load(std::memory_order_relaxed) != fiber_status::started || record->is_root)
        return false;
    void* fake_stack = record == ts->current ? __asan_get_current_fake_stack() : record->asan_fake_stack;
    if (fake_stack == nullptr)
        return false;
    void* frame = __asan_addr_is_in_fake_stack(fake_stack, const_cast<void*>(slot), nullptr, nullptr);
    return frame != nullptr && lies_on_stack_of(frame, record);
}
#endif

void release(fiber_record* record) noexcept {
    thread_state* ts = current_thread_state;
    if (ts != nullptr && record->anchor == ts->anchor) {
        // References that other threads handed back count first, so that
        // this one is known to be the last when it is.
        ts->drain_orphans();
        ts->release_here(record);
    } else {
        release_from_other_thread(record);
    }
}

} // namespace fibers::detail

namespace fibers {

using detail::fiber_status;

std::any fiber::throw_to(std::exception_ptr e) {
    if (!e)
        throw std::invalid_argument("fibers: throw_to needs an exception");
    detail::thread_state& ts = detail::state();
    detail::fiber_record* target = record_;
    detail::check_switch(ts, target);
    if (target->status.load(std::memory_order_relaxed) == fiber_status::created) {
        // As in python-fibers: the fiber ends at once with `e`, which goes
        // to its nearest started ancestor, perhaps the caller itself.
        ts.discard_unstarted(target);
        target = ts.resumable_ancestor(target);
        if (target == ts.current)
            std::rethrow_exception(std::move(e));
    }
    std::any nothing;
    ts.incoming_value = &nothing;
    ts.incoming_error = std::move(e);
    ts.arrival_needs_care = true;
    return detail::switch_annotated(ts, target);
}

bool fiber::is_alive() const noexcept {
    return record_ != nullptr && record_->status.load(std::memory_order_relaxed) != fiber_status::ended;
}

fiber fiber::parent() const {
    if (record_ == nullptr)
        throw error("fibers: empty fiber handle");
    detail::thread_state const* ts = detail::current_thread_state;
    auto share_parent = [this] {
        return record_->parent ? detail::fiber_access::share(record_->parent) : fiber();
    };
    if (ts != nullptr && ts->anchor == record_->anchor)
        return share_parent();
    std::lock_guard<std::mutex> lock(record_->anchor->mutex);
    return share_parent();
}

void fiber::set_parent(fiber p) {
    if (record_ == nullptr)
        throw error("fibers: empty fiber handle");
    detail::thread_state& ts = detail::state();
    if (record_->anchor != ts.anchor)
        throw error("fibers: cannot reparent a fiber of another thread");
    if (record_->is_root)
        throw std::invalid_argument("fibers: a root fiber has no parent");
    detail::fiber_record* next = p.record_;
    if (next == nullptr)
        throw std::invalid_argument("fibers: the parent must not be empty");
    if (next->anchor != record_->anchor)
        throw std::invalid_argument("fibers: the parent belongs to another thread");
    if (next->status.load(std::memory_order_relaxed) == fiber_status::ended)
        throw std::invalid_argument("fibers: the parent has ended");
    // A fiber that only some may switch to (a task: its hub) takes only such
    // a parent: its end returns there.
    if (!record_->accepts_switch_from(next))
        throw error(std::string("fibers: only its scheduler may be the parent of a ") + record_->kind());
    for (detail::fiber_record const* q = next; q != nullptr; q = q->parent)
        if (q == record_)
            throw std::invalid_argument("fibers: cyclic parent chain");
    if (!p.holds(next))
        detail::add_reference(next); // `p` lies on the new parent's stack: the link needs one of its own
    record_->before_parent_change();
    detail::fiber_record* previous;
    {
        std::lock_guard<std::mutex> lock(record_->anchor->mutex);
        previous = record_->parent;
        record_->parent = std::exchange(p.record_, nullptr); // the handle's reference moves in
    }
    if (previous != nullptr)
        ts.release_here(previous);
}

std::thread::id fiber::thread_id() const noexcept {
    return record_ != nullptr ? record_->thread : std::thread::id();
}

fiber fiber::current() { return detail::fiber_access::share(detail::state().current); }

std::ostream& operator<<(std::ostream& out, fiber const& f) {
    if (f.record_ == nullptr)
        return out << "empty fiber";
    return out << detail::name_of(f.record_);
}

} // namespace fibers
