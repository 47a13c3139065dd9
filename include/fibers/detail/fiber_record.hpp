// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_DETAIL_FIBER_RECORD_HPP
#define FIBERS_DETAIL_FIBER_RECORD_HPP

#include <fibers/detail/config.hpp>
#include <fibers/detail/wait_publication.hpp>

#include <boost/context/detail/fcontext.hpp>
#include <boost/context/stack_context.hpp>
#include <boost/intrusive/list.hpp>

#if defined(__arm__) && defined(__GNUC__) && !defined(__clang__)
#include <unwind.h> // __ARM_EABI_UNWINDER__, checked below
#endif

#include <any>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

namespace fibers::detail {

struct thread_anchor;
class fiber_record;

// What a higher layer keeps for one fiber, told once when the fiber ends
// (on its thread, before its stack goes) or, for one that never ends (a
// root), when its record goes. So a layer above keeps state per fiber
// without a field here. Unlinked before it is told; may delete itself.
class fiber_end_hook
    : public boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
public:
    virtual void fiber_ended(fiber_record& ended) noexcept = 0;

protected:
    fiber_end_hook() = default;
    ~fiber_end_hook() = default;
};

// Whether a started fiber is running or suspended is not stored: the
// running one is its thread's `current`, which spares a store per switch.
enum class fiber_status : std::uint8_t {
    created, // not switched to yet: no stack
    started, // running, or suspended in a switch
    ended    // returned or threw; its stack is released
};

// What a thread saves of the C++ runtime's exception-handling state so that
// each fiber has its own: the stack of caught exceptions (for `throw;` and
// std::current_exception()), the uncaught-exception count and, with ARM
// EHABI, the stack of exceptions whose cleanups (destructors) are running.
// It mirrors the runtime's per-thread record, __cxa_eh_globals, which
// <cxxabi.h> leaves incomplete; libstdc++ (libsupc++/unwind-cxx.h) and
// libc++abi (cxa_exception.h) lay it out alike, with the third field under
// the condition below. It is copied whole, padding included: one move each
// way on 64-bit targets. test/test_arch.cpp checks each field against the
// runtime on every architecture the project is built for.
#if defined(__arm__) && defined(__ARM_EABI__) && !defined(__USING_SJLJ_EXCEPTIONS__) && !defined(__ARM_DWARF_EH__)
#define FIBERS_ARM_EHABI 1
#else
#define FIBERS_ARM_EHABI 0
#endif
#if defined(__arm__) && defined(__GNUC__) && !defined(__clang__) && FIBERS_ARM_EHABI != defined(__ARM_EABI_UNWINDER__)
#error "libstdc++ keeps a third field in __cxa_eh_globals exactly when GCC's <unwind.h> defines __ARM_EABI_UNWINDER__"
#endif
struct exception_state {
    void* caught = nullptr;
    unsigned int uncaught = 0;
#if FIBERS_ARM_EHABI
    void* propagating = nullptr;
#endif
};
static_assert(sizeof(exception_state) == (FIBERS_ARM_EHABI ? 3 : 2) * sizeof(void*),
              "exception_state must have the size of the runtime's __cxa_eh_globals");

// The shared state behind `fiber` handles. Reference counted: every handle
// but those on the fiber's own stack, every child (through its parent link)
// and, between its start and its end, the fiber itself hold one reference.
class fiber_record {
public:
    fiber_record(fiber_record const&) = delete;
    fiber_record& operator=(fiber_record const&) = delete;
    virtual ~fiber_record();

    // Runs the target on the fiber's own stack and returns its result.
    virtual std::any run() = 0;
    // Destroys the target (and what it captured) without running it.
    virtual void discard_target() noexcept = 0;
    virtual boost::context::stack_context allocate_stack() = 0;
    virtual void deallocate_stack(boost::context::stack_context& stack) noexcept = 0;
    // Writes a short name for messages; async-signal-safe (no allocation).
    virtual std::size_t describe(char* buffer, std::size_t capacity) const noexcept;
    // Whether `switcher`, a fiber of the same thread, may switch to this one
    // (or become its parent). Asked on the checked path only: the inline
    // path relies on switch_key, which a fiber gets at its start only if it
    // accepts any switcher.
    virtual bool accepts_switch_from(fiber_record const* switcher) const noexcept;
    virtual bool accepts_any_switcher() const noexcept;
    // "root", "hub", "task" or "fiber", for diagnostics: static text.
    virtual char const* kind() const noexcept;
    // Told on the owner thread just before set_parent or an unwinding
    // replaces the parent: a layer above that relies on the parent to keep
    // something alive takes a hold of its own.
    virtual void before_parent_change() noexcept {}

    // Read on every switch: kept together at the front.
    boost::context::detail::fcontext_t context = nullptr;
    // The owner's anchor while the fiber is started and anyone may switch to
    // it, null otherwise: one compare on the inline switch path covers the
    // thread, the status and the restriction below.
    void const* switch_key = nullptr;
    // Hand-counted, not an intrusive_ref_counter: the last reference to a
    // suspended fiber unwinds it rather than deleting it, the root's two go
    // at once (fetch_sub(2)), and handles read the count they left.
    std::atomic<std::uint32_t> references{1};
    std::atomic<fiber_status> status{fiber_status::created};
    bool is_root = false;
    exception_state saved_exceptions;

    // Identifies the owner thread, and outlives it. Only the root counts a
    // reference to it: every other record holds its parent until its
    // destructor ends, so a chain of counted parents, which set_parent and
    // unwinding keep within the thread, keeps the root alive, and the root
    // the anchor. That spares two atomic operations per fiber, and no anchor
    // can be freed and its address reused while a record still names it.
    thread_anchor* anchor = nullptr;
    // Non-null: switchpoint() in this fiber throws fibers::error with this
    // message (a fiber that must never wait, such as a scheduler's own).
    char const* switchpoint_refusal = nullptr;

    fiber_record* parent = nullptr; // strong; the owner writes it under the anchor's mutex
    boost::context::stack_context stack{};
    // The same stack for handles on any thread: its top and size from just
    // before the fiber first runs until just before its stack is released,
    // zero otherwise. A handle that lies there is one of the fiber's own
    // and holds no reference (see lies_on_own_stack). A reader racing with
    // either write may see one field set and the other zero: no handle lies
    // in the range that gives.
    std::atomic<std::uintptr_t> stack_top{0};
    std::atomic<std::size_t> stack_extent{0};
    std::thread::id thread;
    // The owner thread's list of fibers that have not ended, newest first.
    fiber_record* newer_live = nullptr;
    fiber_record* older_live = nullptr;

    // Sanitizer and valgrind bookkeeping, present in every build so that the
    // layout does not depend on how the including code was compiled.
    void* asan_fake_stack = nullptr;
    void const* asan_stack_bottom = nullptr;
    std::size_t asan_stack_size = 0;
    void* tsan_fiber = nullptr;
    unsigned valgrind_stack_id = 0;

    // Owned by their layers; touched on the owner thread only.
    boost::intrusive::list<fiber_end_hook, boost::intrusive::constant_time_size<false>> end_hooks;
    // Tells each hook of the fiber's end, once.
    void tell_end_hooks() noexcept {
        while (!end_hooks.empty()) {
            fiber_end_hook& hook = end_hooks.front();
            end_hooks.pop_front();
            hook.fiber_ended(*this);
        }
    }

    // What it waits on while suspended, published by the wait (diagnostics).
    wait_publication waiting;
    // Its stack was filled with stack_fill_pattern before it first ran
    // (measure_stack_use): the untouched part still holds it.
    bool stack_filled = false;

protected:
    fiber_record() = default;
};

// Calls a fiber's (or a task's) target and returns its result as the
// std::any that a fiber delivers: empty for a void target.
template <class Fn>
std::any invoke_target(Fn& target) {
    using result = std::invoke_result_t<Fn&>;
    if constexpr (std::is_void_v<result>) {
        std::invoke(target);
        return {};
    } else {
        static_assert(std::is_copy_constructible_v<std::decay_t<result>>,
                      "a fiber's result is delivered as std::any, so it must be copy-constructible");
        return std::any(std::invoke(target));
    }
}

// A record that owns its target `Fn` and its stack allocator. `Base` is
// fiber_record or a subclass that adds state (tasks).
template <class Base, class Fn, class StackAllocator>
class record_with_target final : public Base {
public:
    template <class F, class... BaseArgs>
    record_with_target(StackAllocator salloc, F&& target, BaseArgs&&... base_args)
        : Base(std::forward<BaseArgs>(base_args)...), salloc_(std::move(salloc)) {
        target_.emplace(std::forward<F>(target));
    }

    std::any run() override { return invoke_target(*target_); }
    void discard_target() noexcept override { target_.reset(); }
    boost::context::stack_context allocate_stack() override { return salloc_.allocate(); }
    void deallocate_stack(boost::context::stack_context& stack) noexcept override {
        salloc_.deallocate(stack);
    }

private:
    StackAllocator salloc_;
    std::optional<Fn> target_;
};

// Out of line, in the library.

// Takes ownership of `record`, makes it a fiber of the calling thread with
// `parent` (null: the running fiber). Throws std::invalid_argument for an
// ended parent or one of another thread, deleting the record.
void attach_new_fiber(fiber_record* record, fiber_record* parent);
// Drops one reference; the last reference to a suspended fiber unwinds it.
void release(fiber_record* record) noexcept;
inline void add_reference(fiber_record* record) noexcept {
    record->references.fetch_add(1, std::memory_order_relaxed);
}

// Whether the handle at `slot` lies on the stack of the fiber it refers to.
// Such a handle holds no reference: it can only be reached from that fiber
// (or through a pointer into its frame), so it must not keep a suspended
// fiber that nothing else refers to from being unwound. The answer is the
// same for the whole life of the handle: a stack is set before anything
// lies on it and cleared after everything on it is gone, and a record gets
// one stack only.
inline bool lies_on_stack_of(void const* slot, fiber_record const* record) noexcept {
    // Unsigned: a top of zero gives a range at the very end of the address
    // space, and a size of zero an empty one.
    return record->stack_top.load(std::memory_order_relaxed) - reinterpret_cast<std::uintptr_t>(slot) - 1 <
           record->stack_extent.load(std::memory_order_relaxed);
}

#if FIBERS_ASAN
// With detect_stack_use_after_return, AddressSanitizer moves a frame's
// locals to a "fake stack" on the heap: this also finds a handle there in
// a frame of the fiber's own stack.
bool lies_on_own_stack(void const* slot, fiber_record const* record) noexcept;
#else
FIBERS_ALWAYS_INLINE bool lies_on_own_stack(void const* slot, fiber_record const* record) noexcept {
    return lies_on_stack_of(slot, record);
}
#endif

} // namespace fibers::detail

#endif // FIBERS_DETAIL_FIBER_RECORD_HPP
