// Copyright the fibers authors.
// Distributed under the Boost Software License, Version 1.0.
// (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#ifndef FIBERS_DIAGNOSTICS_HPP
#define FIBERS_DIAGNOSTICS_HPP

// Seeing the fibers of a process: a list for the calling thread, a dump of
// every thread's (on demand or on a signal), and the error a wait throws
// instead of hanging for ever. See doc/diagnostics.md; the watchdog is the
// hub's (hub::set_watchdog), the gdb extension is tools/gdb/fibers.py.

#include <fibers/errors.hpp>

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace fibers {

enum class fiber_state {
    running,     // the calling thread's running fiber (another thread's: the one it last switched to)
    ready,       // suspended, and already due to be resumed
    suspended,   // suspended in a switch or a wait
    not_started, // made, never switched to
    ended        // returned or threw
};

/// One fiber as list_fibers() and dump_fibers() see it.
struct fiber_info {
    std::uintptr_t id = 0;        // stable while the fiber lives
    std::uintptr_t parent_id = 0; // 0 for a root
    std::string name;             // a task's name, "Root", "Hub", or "fiber-<id>"
    std::string kind;             // "root", "hub", "task" or "fiber"
    fiber_state state = fiber_state::suspended;
    std::string waiting_on;       // what a suspended fiber waits for where known, else empty
    std::size_t stack_size = 0;   // bytes of stack (0 for a root)
    std::size_t stack_used = 0;   // deepest use seen where known, else 0
};

/// The calling thread's live fibers: its root first, then the others in the
/// order they were made. Exact: nothing else changes them meanwhile.
std::vector<fiber_info> list_fibers();

/// Every thread's live fibers as a readable table, one block per thread.
/// Callable from any thread. Another thread's block is a snapshot: the
/// fibers it had and what each had published when it was copied.
void dump_fibers(std::ostream& out);

/// Installs a handler of `signo` (e.g. SIGUSR1) that writes the dump to
/// standard error and returns: the program goes on. The handler allocates
/// nothing and takes no lock (a thread busy changing its list is shown as
/// such). std::system_error if the signal cannot be caught.
void dump_fibers_on_signal(int signo);

/// On: the stack of every fiber that starts from now on is filled with a
/// pattern first, so that fiber_info::stack_used reports the deepest use
/// seen (where the pattern ends). Off (the default): stack_used is 0. The
/// fill costs a write of the whole stack at each start, and commits its
/// memory. Process-wide; callable from any thread.
void measure_stack_use(bool on) noexcept;

/// Thrown from the root fiber's wait when nothing can ever resume anything
/// on its hub: every fiber waits on what only a fiber of that hub could
/// release, and no handler, timer, I/O or other thread can. what() lists
/// the fibers and what each waits on.
class deadlock : public error {
public:
    using error::error;
};

} // namespace fibers

#endif // FIBERS_DIAGNOSTICS_HPP
