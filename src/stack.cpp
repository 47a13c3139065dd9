// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)

#include <fibers/stack.hpp>
#include "stack_overflow.hpp"

#include <algorithm>
#include <iterator>
#include <atomic>
#include <cassert>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#if FIBERS_ASAN
#include <sanitizer/asan_interface.h>
#endif

// Linux 6.13 uapi. Older headers lack it; the running kernel decides
// whether it works, and an older kernel answers EINVAL.
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
// Linux 5.14 uapi.
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace fibers {
namespace detail {
namespace {

std::size_t page_size() noexcept {
    static std::size_t const size = [] {
        long const v = ::sysconf(_SC_PAGESIZE);
        return v > 0 ? static_cast<std::size_t>(v) : std::size_t(4096);
    }();
    return size;
}

// ---------------------------------------------------------------------------
// Arena records, read by the SIGSEGV handler.
//
// A fixed array of atomics: the handler can neither lock nor follow
// pointers into structures that may be reallocated under it. Arenas are
// never unmapped, so a published record stays valid forever.

// Big enough that a million default stacks need a few hundred arenas, small
// enough that strict overcommit accounting rarely refuses it. A 32-bit
// process has 3 or 4 GiB of address space in all, and each stack size
// reserves its own arenas, never unmapped: there an arena holds 256 default
// stacks.
constexpr std::size_t arena_reservation = sizeof(void*) >= 8 ? std::size_t(1) << 30 : std::size_t(64) << 20;

// 16 TiB of stacks at 1 GiB per arena (1 TiB, more than a 32-bit address
// space, at 64 MiB); arenas beyond that still work, their overflows are
// then only recognised through the running fiber's bounds.
constexpr std::size_t max_arena_records = 16384;

struct arena_record {
    std::atomic<std::uintptr_t> base;
    std::atomic<std::uintptr_t> end;
    std::atomic<std::uintptr_t> slot;
    std::atomic<std::uintptr_t> guard;
};

arena_record arena_records[max_arena_records];
std::atomic<std::size_t> arena_record_count{0};

// ---------------------------------------------------------------------------
// Guard pages.

struct guard_config {
    stack_guard_kind kind;
    std::size_t max_map_count;
    std::size_t budget;
    bool markers_in_batches; // process_madvise(2) takes MADV_GUARD_INSTALL
};

std::size_t read_max_map_count() noexcept {
    std::size_t value = 65530; // the kernel's default
    int const fd = ::open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return value;
    char buf[32];
    ssize_t const n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n > 0) {
        std::size_t parsed = 0;
        ssize_t i = 0;
        for (; i < n && buf[i] >= '0' && buf[i] <= '9'; ++i)
            parsed = parsed * 10 + static_cast<std::size_t>(buf[i] - '0');
        if (i > 0)
            value = parsed;
    }
    return value;
}

// Ranges given to one process_madvise call: the calls that install guard
// markers ahead, the ones that fault in new stacks' top pages, and the
// ones that release a full cache's cold stacks.
constexpr std::size_t ranges_per_advice = 64;
static_assert(thread_stack_cache_capacity - thread_stack_cache_kept == ranges_per_advice,
              "a full cache's release is one call");

#if defined(SYS_process_madvise)
// Linux's name for the calling process where a pidfd is expected (since
// 6.14): no descriptor to open, and none that a fork() leaves naming the
// parent.
constexpr int pidfd_self_process = -10001;

long advise_ranges(iovec const* ranges, std::size_t n, int advice) noexcept {
    return ::syscall(SYS_process_madvise, pidfd_self_process, ranges, n, advice, 0u);
}

#endif

// Whether the kernel refuses to read `p` for a system call, as it does for
// a guard page; no signal is raised.
bool reads_fault(void const* p) noexcept {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
        return false;
    ssize_t const n = ::write(fds[1], p, 1);
    bool const faulted = n < 0 && errno == EFAULT;
    ::close(fds[0]);
    ::close(fds[1]);
    return faulted;
}

bool kernel_has_guard_markers() noexcept {
    std::size_t const page = page_size();
    void* const p = ::mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return false;
    int r;
    do
        r = ::madvise(p, page, MADV_GUARD_INSTALL);
    while (r != 0 && (errno == EINTR || errno == EAGAIN));
    // Success alone proves nothing: qemu-user answers 0 to advice it does
    // not pass on, and the page would not fault.
    bool const guarded = r == 0 && reads_fault(p);
    ::munmap(p, 2 * page);
    return guarded;
}

// Whether process_madvise(2) installs guard markers: tried on a page of its
// own, which must then fault.
bool kernel_marks_in_batches() noexcept {
#if defined(SYS_process_madvise)
    std::size_t const page = page_size();
    void* const p = ::mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return false;
    iovec const range{p, page};
    bool const marked = advise_ranges(&range, 1, MADV_GUARD_INSTALL) == static_cast<long>(page) && reads_fault(p);
    ::munmap(p, 2 * page);
    return marked;
#else
    return false;
#endif
}

guard_config make_guard_config() noexcept {
    guard_config cfg{};
    char const* const env = std::getenv("FIBERS_STACK_GUARD");
    bool const forced = env != nullptr && std::strcmp(env, "mprotect") == 0;
    cfg.kind = !forced && kernel_has_guard_markers() ? stack_guard_kind::marker : stack_guard_kind::mprotect;
    cfg.markers_in_batches = cfg.kind == stack_guard_kind::marker && kernel_marks_in_batches();
    cfg.max_map_count = read_max_map_count();
    // Half the limit stays with the rest of the process (libraries, malloc,
    // thread stacks, other allocators); an mprotect guard in the middle of
    // an arena costs two mappings, the guard itself and the split-off rest.
    std::size_t const headroom = std::max(cfg.max_map_count / 2, std::size_t(8192));
    cfg.budget = cfg.max_map_count > headroom ? (cfg.max_map_count - headroom) / 2 : 0;
    return cfg;
}

guard_config const& guard() noexcept {
    static guard_config const cfg = make_guard_config();
    return cfg;
}

// mprotect guards in place, never more than the budget.
std::atomic<std::size_t> mprotect_guards{0};
std::atomic<bool> unguarded_warned{false};

bool take_from_budget(guard_config const& cfg) noexcept {
    std::size_t n = mprotect_guards.load(std::memory_order_relaxed);
    do {
        if (n >= cfg.budget)
            return false;
    } while (!mprotect_guards.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
    return true;
}

FIBERS_COLD void warn_unguarded(guard_config const& cfg) noexcept {
    if (unguarded_warned.exchange(true, std::memory_order_relaxed))
        return;
    std::fprintf(stderr,
                 "fibers: stack guard budget of %zu pages used up (vm.max_map_count=%zu); "
                 "new fiber stacks have no guard page\n",
                 cfg.budget, cfg.max_map_count);
}

enum class guard_installed { marker, protection, none };

guard_installed install_guard(char* guard_page) noexcept {
    std::size_t const page = page_size();
    guard_config const& cfg = guard();
    if (cfg.kind == stack_guard_kind::marker) {
        int r;
        do
            r = ::madvise(guard_page, page, MADV_GUARD_INSTALL);
        while (r != 0 && (errno == EINTR || errno == EAGAIN));
        if (FIBERS_LIKELY(r == 0))
            return guard_installed::marker;
    }
    if (take_from_budget(cfg)) {
        if (::mprotect(guard_page, page, PROT_NONE) == 0)
            return guard_installed::protection;
        mprotect_guards.fetch_sub(1, std::memory_order_relaxed);
    }
    warn_unguarded(cfg);
    return guard_installed::none;
}

// ---------------------------------------------------------------------------
// Size classes: one per usable size, never destroyed, so that deallocations
// during static destruction or late thread exit find them intact.

struct size_class {
    explicit size_class(std::size_t usable_size)
        : usable(usable_size), slot(usable_size + page_size()),
          slots_per_arena(std::max<std::size_t>(1, arena_reservation / (usable_size + page_size()))) {}

    std::size_t const usable;
    std::size_t const slot;
    size_class* next = nullptr;

    std::mutex mutex;
    // Low ends of free stacks whose memory went back to the kernel. Its
    // capacity is kept at least at `carved` while carving, which may throw,
    // so that releasing, which must not, never reallocates.
    std::vector<char*> released;
    char* cursor = nullptr;
    char* limit = nullptr;
    // Slots of the current arena below this have their guard markers.
    char* marked_until = nullptr;
    // Slots of the current arena below this have been handed to a batch
    // that faults their top pages in.
    char* faulted_until = nullptr;
    std::size_t carved = 0;
    std::size_t slots_per_arena;

    // Which slots have an mprotect guard, one bit per slot of each arena.
    // A slot whose memory goes back to the kernel gives its guard back to
    // the budget, so that the budget limits the guarded stacks that exist,
    // not those ever carved: after a burst beyond it, new stacks are
    // guarded again. (A guard marker costs no mapping and stays.)
    struct arena_guards {
        char* base;
        char* end;
        std::vector<std::uint64_t> bits;
    };
    std::vector<arena_guards> arenas; // by address: a release finds its slot's in log time
    std::size_t protected_slots = 0;   // bits set: while none, a release looks for none
};

struct registry {
    std::mutex mutex;
    std::atomic<size_class*> head{nullptr};
};

registry& reg() {
    static registry* const r = new registry;
    return *r;
}

size_class* find_class(std::size_t usable) noexcept {
    for (size_class* c = reg().head.load(std::memory_order_acquire); c != nullptr; c = c->next)
        if (c->usable == usable)
            return c;
    return nullptr;
}

size_class& class_for(std::size_t usable) {
    if (size_class* c = find_class(usable))
        return *c;
    registry& r = reg();
    std::lock_guard<std::mutex> lock(r.mutex);
    if (size_class* c = find_class(usable))
        return *c;
    size_class* c = new size_class(usable);
    c->next = r.head.load(std::memory_order_relaxed);
    r.head.store(c, std::memory_order_release);
    return *c;
}

void record_arena(char* base, std::size_t bytes, std::size_t slot) noexcept {
    std::lock_guard<std::mutex> lock(reg().mutex);
    std::size_t const i = arena_record_count.load(std::memory_order_relaxed);
    if (i == max_arena_records)
        return;
    arena_record& rec = arena_records[i];
    rec.base.store(reinterpret_cast<std::uintptr_t>(base), std::memory_order_relaxed);
    rec.end.store(reinterpret_cast<std::uintptr_t>(base + bytes), std::memory_order_relaxed);
    rec.slot.store(slot, std::memory_order_relaxed);
    rec.guard.store(page_size(), std::memory_order_relaxed);
    arena_record_count.store(i + 1, std::memory_order_release);
}

// Called with c.mutex held.
void map_arena(size_class& c) {
    for (;;) {
        std::size_t const bytes = c.slots_per_arena * c.slot;
        void* const p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p != MAP_FAILED) {
            char* const base = static_cast<char*>(p);
            try {
                auto const after = std::upper_bound(c.arenas.begin(), c.arenas.end(), base,
                                                    [](char* b, auto const& a) { return b < a.base; });
                c.arenas.insert(after, {base, base + bytes, std::vector<std::uint64_t>((c.slots_per_arena + 63) / 64)});
            } catch (...) {
                ::munmap(p, bytes);
                throw;
            }
            // A transparent huge page would commit 2 MiB wherever a stack
            // touches its first bytes.
            ::madvise(base, bytes, MADV_NOHUGEPAGE);
            record_arena(base, bytes, c.slot);
            c.cursor = base;
            c.limit = base + bytes;
            c.marked_until = base;
            c.faulted_until = base;
            return;
        }
        int const err = errno;
        if (err != ENOMEM)
            throw std::system_error(err, std::system_category(), "fibers: cannot reserve stack arena");
        if (c.slots_per_arena == 1)
            throw std::bad_alloc();
        // Strict overcommit (vm.overcommit_memory=2) charges a reservation
        // in full despite MAP_NORESERVE; smaller arenas still fit there.
        c.slots_per_arena /= 2;
    }
}

// Called with c.mutex held: guard markers for the slots from the cursor on,
// a batch in one system call, where a call per slot made it most of the
// cost of a new stack. What the call leaves undone gets its guard when
// handed out.
void mark_ahead(size_class& c) noexcept {
#if defined(SYS_process_madvise)
    constexpr std::size_t batch = ranges_per_advice;
    std::size_t const page = page_size();
    iovec ranges[batch];
    std::size_t count = 0;
    for (char* slot = c.cursor; slot != c.limit && count != batch; slot += c.slot)
        ranges[count++] = {slot, page};
    long const marked = advise_ranges(ranges, count, MADV_GUARD_INSTALL);
    if (marked > 0)
        c.marked_until = c.cursor + static_cast<std::size_t>(marked) / page * c.slot;
#else
    (void)c;
#endif
}

// Slots whose top pages are to be faulted in together, after the lock is
// let go: the first slot's base and how many follow it in the arena.
struct slots_ahead {
    char* first = nullptr;
    std::size_t count = 0;
};

// Called with c.mutex held; returns the slot's base, i.e. its guard page,
// and whether its guard is in place already. When it reaches the end of
// the slots faulted in ahead, `ahead` names the next batch, this one first.
char* carve(size_class& c, bool& guarded, slots_ahead& ahead) {
    if (c.released.capacity() <= c.carved)
        c.released.reserve(std::max<std::size_t>({c.carved + 1, 2 * c.released.capacity(), 64}));
    if (c.cursor == c.limit)
        map_arena(c);
    if (c.cursor == c.marked_until && guard().markers_in_batches)
        mark_ahead(c);
    char* const slot = c.cursor;
    if (slot == c.faulted_until) {
        ahead.first = slot;
        ahead.count = std::min(ranges_per_advice, static_cast<std::size_t>(c.limit - slot) / c.slot);
        c.faulted_until = slot + ahead.count * c.slot;
    }
    guarded = slot < c.marked_until;
    c.cursor += c.slot;
    ++c.carved;
    return slot;
}

// Called with c.mutex held: the bit of the slot whose guard page is
// `guard_page`, or null for a slot outside the arenas.
std::uint64_t* protection_word(size_class& c, char const* guard_page, std::uint64_t& mask) noexcept {
    auto const after = std::upper_bound(c.arenas.begin(), c.arenas.end(), guard_page,
                                        [](char const* p, auto const& a) { return p < a.base; });
    if (after == c.arenas.begin())
        return nullptr;
    auto& a = *std::prev(after);
    if (guard_page >= a.end)
        return nullptr;
    std::size_t const index = static_cast<std::size_t>(guard_page - a.base) / c.slot;
    mask = std::uint64_t(1) << (index % 64);
    return &a.bits[index / 64];
}

// Gives a slot, not yet handed out, its guard page.
void guard_slot(size_class& c, char* guard_page) noexcept {
    if (install_guard(guard_page) != guard_installed::protection)
        return;
    std::lock_guard<std::mutex> lock(c.mutex);
    std::uint64_t mask = 0;
    if (std::uint64_t* word = protection_word(c, guard_page, mask)) {
        *word |= mask;
        ++c.protected_slots;
    }
}

#if defined(SYS_process_madvise)
// Whether process_madvise(2) takes `advice` for the calling process: tried
// on a page of its own, first `prepare`d. The call must report the page
// done and `took` must then see the effect, since an emulator may answer
// success to advice it does not pass on.
template <class Prepare, class Took>
bool kernel_takes_in_batches(int advice, Prepare prepare, Took took) noexcept {
    std::size_t const page = page_size();
    void* const mapped = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapped == MAP_FAILED)
        return false;
    char* const p = static_cast<char*>(mapped);
    prepare(p);
    iovec const range{p, page};
    bool const taken = advise_ranges(&range, 1, advice) == static_cast<long>(page) && took(p);
    ::munmap(mapped, page);
    return taken;
}

// Whether process_madvise(2) gives the calling process's memory back: the
// page written must read zero after it.
bool kernel_discards_in_batches() noexcept {
    return kernel_takes_in_batches(
        MADV_DONTNEED, [](char* p) { *static_cast<char volatile*>(p) = 1; },
        [](char* p) { return *static_cast<char volatile*>(p) == 0; });
}

// Whether process_madvise(2) faults pages in for the calling process
// (Linux 6.13 and later take any advice for it): the page must then be
// resident.
bool kernel_faults_in_batches() noexcept {
    return kernel_takes_in_batches(
        MADV_POPULATE_WRITE, [](char*) {},
        [](char* p) {
            unsigned char resident = 0;
            return ::mincore(p, page_size(), &resident) == 0 && (resident & 1) != 0;
        });
}
#endif

// Gives the memory of `n` stacks of `usable` bytes back to the kernel. In
// one process_madvise call where the kernel takes it: madvise flushes the
// TLBs of every CPU once per call, and on a virtual machine that costs
// more than the rest of a release (4.7 us a stack one by one, 1.2 us in
// batches of 8, on the 2-core VM the benchmarks run on).
void discard_memory(char* const* lows, std::size_t n, std::size_t usable) noexcept {
#if defined(SYS_process_madvise)
    static bool const batched = kernel_discards_in_batches();
    if (batched) {
        constexpr std::size_t batch = ranges_per_advice;
        for (std::size_t first = 0; first < n; first += batch) {
            iovec ranges[batch];
            std::size_t const count = std::min(batch, n - first);
            for (std::size_t k = 0; k != count; ++k)
                ranges[k] = {lows[first + k], usable};
            long const advised = advise_ranges(ranges, count, MADV_DONTNEED);
            // The ranges go in order: redo those not wholly done.
            std::size_t const done = advised > 0 ? static_cast<std::size_t>(advised) / usable : 0;
            for (std::size_t k = done; k < count; ++k)
                ::madvise(lows[first + k], usable, MADV_DONTNEED);
        }
        return;
    }
#endif
    for (std::size_t i = 0; i != n; ++i)
        ::madvise(lows[i], usable, MADV_DONTNEED);
}

bool faults_in_batches() noexcept {
#if defined(SYS_process_madvise)
    static bool const batched = kernel_faults_in_batches();
    return batched;
#else
    return false;
#endif
}

// Faults in the top page of stacks about to be handed out, where every
// fiber's first frames go, `n` (at most ranges_per_advice) in one system
// call where the kernel takes it; elsewhere each faults when first touched.
// A page faulted in by such a call costs about two thirds of one faulted
// by a trap (1.05 against 1.62 us on the benchmarks' 2-core VM, a million
// stacks' top pages). What the call leaves undone faults when touched.
//
// The call writes nothing: a page another thread has meanwhile carved,
// used and even given back is at worst committed again, and its content is
// zero either way.
void fault_in_tops(char* const* lows, std::size_t n, std::size_t usable) noexcept {
#if defined(SYS_process_madvise)
    if (n == 0 || !faults_in_batches())
        return;
    std::size_t const page = page_size();
    iovec ranges[ranges_per_advice];
    assert(n <= ranges_per_advice);
    for (std::size_t i = 0; i != n; ++i)
        ranges[i] = {lows[i] + usable - page, page};
    advise_ranges(ranges, n, MADV_POPULATE_WRITE);
#else
    (void)lows;
    (void)n;
    (void)usable;
#endif
}

// Hands memory back to the kernel and the slots to the global list. A guard
// marker survives MADV_DONTNEED (the kernel keeps it on zapping) and stays
// with the slot; an mprotect guard is lifted and goes back to the budget,
// and the slot gets one again when it is reused.
void release(size_class& c, char* const* lows, std::size_t n) noexcept {
    std::size_t const page = page_size();
    discard_memory(lows, n, c.usable);
    std::lock_guard<std::mutex> lock(c.mutex);
    for (std::size_t i = 0; i != n; ++i) {
        char* const guard_page = lows[i] - page;
        std::uint64_t mask = 0;
        std::uint64_t* const word = c.protected_slots != 0 ? protection_word(c, guard_page, mask) : nullptr;
        if (word != nullptr && (*word & mask) != 0 && ::mprotect(guard_page, page, PROT_READ | PROT_WRITE) == 0) {
            *word &= ~mask;
            --c.protected_slots;
            mprotect_guards.fetch_sub(1, std::memory_order_relaxed);
        }
        c.released.push_back(lows[i]);
    }
}

// ---------------------------------------------------------------------------
// Per-thread cache.
//
// Plain data in TLS: no constructor means no first-use check, and no
// destructor means it cannot be used after destruction. A pthread key
// flushes it, because key destructors run after every thread_local
// destructor of the exiting thread, which is where fibers get unwound.

constexpr std::size_t cache_bins = 4; // distinct stack sizes cached per thread

struct cache_bin {
    std::size_t usable; // 0: free bin
    size_class* cls;
    std::size_t count;
    char* lows[thread_stack_cache_capacity]; // LIFO: the top is the warmest
};

enum cache_state : unsigned char { cache_unused = 0, cache_active, cache_retired };

struct thread_cache {
    cache_bin bins[cache_bins];
    unsigned char state;
};

thread_local thread_cache tls_cache;

void flush(thread_cache& tc) noexcept {
    for (cache_bin& b : tc.bins) {
        if (b.count != 0) {
            release(*b.cls, b.lows, b.count);
            b.count = 0;
        }
    }
}

void retire_thread_cache(void* p) noexcept {
    thread_cache& tc = *static_cast<thread_cache*>(p);
    flush(tc);
    // Whatever the remaining key destructors free goes straight to the
    // global lists.
    tc.state = cache_retired;
}

pthread_key_t cache_key;

bool cache_key_ready() noexcept {
    static bool const ready = ::pthread_key_create(&cache_key, &retire_thread_cache) == 0;
    return ready;
}

thread_cache* this_thread_cache() noexcept {
    thread_cache& tc = tls_cache;
    if (FIBERS_LIKELY(tc.state == cache_active))
        return &tc;
    if (tc.state == cache_retired)
        return nullptr;
    if (!cache_key_ready() || ::pthread_setspecific(cache_key, &tc) != 0) {
        tc.state = cache_retired;
        return nullptr;
    }
    tc.state = cache_active;
    return &tc;
}

cache_bin* bin_for(thread_cache& tc, std::size_t usable) noexcept {
    for (cache_bin& b : tc.bins)
        if (b.usable == usable)
            return &b;
    return nullptr;
}

cache_bin* claim_bin(thread_cache& tc, size_class& c) noexcept {
    if (cache_bin* b = bin_for(tc, c.usable))
        return b;
    for (cache_bin& b : tc.bins) {
        if (b.count == 0) {
            b.usable = c.usable;
            b.cls = &c;
            return &b;
        }
    }
    return nullptr;
}

boost::context::stack_context make_context(char* low, std::size_t usable, bool reused) noexcept {
#if FIBERS_ASAN
    // Frames of the previous fiber may have left redzones poisoned, e.g.
    // when it was abandoned rather than unwound.
    if (reused)
        __asan_unpoison_memory_region(low, usable);
#else
    (void)reused;
#endif
    boost::context::stack_context sctx;
    sctx.size = usable;
    sctx.sp = low + usable;
    return sctx;
}

FIBERS_NOINLINE boost::context::stack_context allocate_slow(std::size_t usable, thread_cache* tc) {
    size_class& c = class_for(usable);
    cache_bin* const b = tc != nullptr ? claim_bin(*tc, c) : nullptr;
    char* low = nullptr;
    char* slot = nullptr;
    bool guarded = false;
    slots_ahead ahead;
    std::size_t refilled = 0;
    {
        std::lock_guard<std::mutex> lock(c.mutex);
        if (!c.released.empty()) {
            low = c.released.back();
            c.released.pop_back();
            if (b != nullptr) {
                // A few more now spare the next allocations the lock; the
                // most recently released end up on top of the cache.
                refilled = std::min({c.released.size(), thread_stack_cache_capacity / 2 - 1,
                                     thread_stack_cache_capacity - b->count});
                std::copy(c.released.end() - static_cast<std::ptrdiff_t>(refilled), c.released.end(),
                          b->lows + b->count);
                b->count += refilled;
                c.released.resize(c.released.size() - refilled);
            }
        } else {
            slot = carve(c, guarded, ahead);
        }
    }
    std::size_t const page = page_size();
    char* lows[ranges_per_advice];
    if (low != nullptr) {
        // Released slots kept their guard markers, but gave their mprotect
        // guards back.
        if (guard().kind == stack_guard_kind::mprotect) {
            guard_slot(c, low - page);
            for (std::size_t i = 0; i != refilled; ++i)
                guard_slot(c, b->lows[b->count - 1 - i] - page);
        }
        static_assert(thread_stack_cache_capacity / 2 <= ranges_per_advice, "a refill is faulted in by one call");
        lows[0] = low;
        if (refilled != 0)
            std::copy(b->lows + (b->count - refilled), b->lows + b->count, lows + 1);
        fault_in_tops(lows, refilled + 1, usable);
        return make_context(low, usable, true);
    }
    if (!guarded)
        guard_slot(c, slot);
    for (std::size_t i = 0; i != ahead.count; ++i)
        lows[i] = ahead.first + i * c.slot + page;
    fault_in_tops(lows, ahead.count, usable);
    return make_context(slot + page, usable, false);
}

FIBERS_NOINLINE void deallocate_slow(char* low, std::size_t usable, thread_cache* tc) noexcept {
    size_class* const c = find_class(usable);
    assert(c != nullptr && "stack not from fibers::arena_stack");
    if (c == nullptr)
        return; // leaking a foreign stack beats corrupting a pool
    cache_bin* const b = tc != nullptr ? claim_bin(*tc, *c) : nullptr;
    if (b == nullptr) {
        release(*c, &low, 1);
        return;
    }
    if (b->count == thread_stack_cache_capacity) {
        // The bottom is the coldest, least likely to be in the CPU caches;
        // its memory goes back to the kernel.
        std::size_t const cold = thread_stack_cache_capacity - thread_stack_cache_kept;
        release(*c, b->lows, cold);
        std::memmove(b->lows, b->lows + cold, thread_stack_cache_kept * sizeof(char*));
        b->count = thread_stack_cache_kept;
    }
    b->lows[b->count++] = low;
}

} // namespace

void flush_thread_stack_cache() noexcept {
    thread_cache& tc = tls_cache;
    if (tc.state == cache_active)
        flush(tc);
}

stack_guard_kind stack_guard_mode() noexcept { return guard().kind; }

bool stack_tops_faulted_in_batches() noexcept { return faults_in_batches(); }

std::size_t stack_guard_budget() noexcept { return guard().budget; }

bool find_arena_guard(void const* addr, arena_guard_hit& hit) noexcept {
    auto const a = reinterpret_cast<std::uintptr_t>(addr);
    std::size_t const n = arena_record_count.load(std::memory_order_acquire);
    for (std::size_t i = 0; i != n; ++i) {
        arena_record const& rec = arena_records[i];
        std::uintptr_t const base = rec.base.load(std::memory_order_relaxed);
        if (a < base || a >= rec.end.load(std::memory_order_relaxed))
            continue;
        std::uintptr_t const slot = rec.slot.load(std::memory_order_relaxed);
        std::uintptr_t const guard_size = rec.guard.load(std::memory_order_relaxed);
        std::uintptr_t const slot_base = base + (a - base) / slot * slot;
        if (a - slot_base >= guard_size)
            return false;
        hit.low = reinterpret_cast<char const*>(slot_base + guard_size);
        hit.high = reinterpret_cast<char const*>(slot_base + slot);
        return true;
    }
    return false;
}

} // namespace detail

arena_stack::arena_stack(std::size_t size) : size_(0) {
    if (size > maximum_size())
        throw std::length_error("fibers::arena_stack: size above maximum_size()");
    size = std::max(size, minimum_size());
    std::size_t const page = detail::page_size();
    size_ = (size + page - 1) / page * page;
}

boost::context::stack_context arena_stack::allocate() {
    detail::thread_cache* const tc = detail::this_thread_cache();
    if (FIBERS_LIKELY(tc != nullptr)) {
        detail::cache_bin* const b = detail::bin_for(*tc, size_);
        if (FIBERS_LIKELY(b != nullptr && b->count != 0))
            return detail::make_context(b->lows[--b->count], size_, true);
    }
    return detail::allocate_slow(size_, tc);
}

void arena_stack::deallocate(boost::context::stack_context& sctx) noexcept {
    assert(sctx.sp != nullptr);
    char* const low = static_cast<char*>(sctx.sp) - sctx.size;
    detail::thread_cache* const tc = detail::this_thread_cache();
    if (FIBERS_LIKELY(tc != nullptr)) {
        detail::cache_bin* const b = detail::bin_for(*tc, sctx.size);
        if (FIBERS_LIKELY(b != nullptr && b->count < detail::thread_stack_cache_capacity)) {
            b->lows[b->count++] = low;
            return;
        }
    }
    detail::deallocate_slow(low, sctx.size, tc);
}

} // namespace fibers
