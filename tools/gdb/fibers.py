# Copyright the fibers authors.
# Distributed under the Boost Software License, Version 1.0.
# (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
"""gdb commands for programs built with the fibers library.

    (gdb) source tools/gdb/fibers.py
    (gdb) info fibers          every fiber of every thread of the inferior
    (gdb) fiber bt ID          the backtrace of a suspended fiber (ID from `info fibers`)

Works on a live process (gdb -p PID) and on a core file, with the library's
debug information (a RelWithDebInfo or Debug build). It reads the registry
that src/diagnostics.cpp keeps: fibers::detail::newest_thread, the list of
every thread's state, and in each the list of its live fibers.

`fiber bt` needs the registers a suspended fiber saved when it switched
away: on x86-64 (the library's own jump and Boost.Context's jump_fcontext
leave the same frame) they lie at its context pointer:

    0x10 r12  0x18 r13  0x20 r14  0x28 r15  0x30 rbx  0x38 rbp  0x40 return address

and its stack pointer is the context plus 0x48. The command shows the
fiber's frames through an unwinder that, while it runs, makes the selected
thread's innermost frame return into the fiber: frame #0 is where the
thread is, frames #1 and up are the fiber's. Nothing in the inferior is
written, so it works on a core file too.
"""

import gdb
import gdb.unwinder

SAVED_REGISTERS = {"r12": 0x10, "r13": 0x18, "r14": 0x20, "r15": 0x28, "rbx": 0x30, "rbp": 0x38}
RETURN_ADDRESS = 0x40
FRAME_SIZE = 0x48


def _atomic(value):
    """The value inside a libstdc++ std::atomic."""
    for path in (("_M_b", "_M_p"), ("_M_i",)):
        v = value
        try:
            for field in path:
                v = v[field]
            return v
        except gdb.error:
            continue
    raise gdb.GdbError("fibers.py: unknown std::atomic layout: %s" % value.type)


def _std_string(value):
    length = int(value["_M_string_length"])
    if length == 0:
        return ""
    return value["_M_dataplus"]["_M_p"].string(length=length)


def _pointer(value):
    return int(value.cast(gdb.lookup_type("unsigned long")))


def _field(address, type_name, name):
    """Field `name` of the `type_name` at `address`, read without looking at
    the object's dynamic type (gdb warns of missing RTTI for the records of
    lambdas' fibers otherwise)."""
    struct = gdb.lookup_type(type_name)
    for f in struct.fields():
        if f.name == name:
            return gdb.Value(address + f.bitpos // 8).cast(f.type.pointer()).dereference()
    raise gdb.GdbError("fibers.py: %s has no field %s" % (type_name, name))


def _record_field(address, name):
    return _field(address, "fibers::detail::fiber_record", name)


class Fiber:
    def __init__(self, address, thread_state):
        self.address = address
        self.thread_state = thread_state
        self.kind = _kind_of(address)
        if self.kind == "root":
            self.name = "Root"
        elif self.kind == "task":
            task = "fibers::detail::task_record"
            self.name = _std_string(_field(address, task, "given_name")) or "Fiber-%d" % int(
                _field(address, task, "number"))
        elif self.kind == "hub":
            self.name = "Hub"
        else:
            self.name = "fiber-0x%x" % self.address
        status = str(_atomic(_record_field(address, "status")))
        running = _pointer(thread_state["current"]) == self.address
        if status.endswith("created"):
            self.state = "not started"
        elif status.endswith("ended"):
            self.state = "ended"
        elif running:
            self.state = "running"
        else:
            self.state = "suspended"
        self.parent = _pointer(_record_field(address, "parent"))
        self.context = _pointer(_record_field(address, "context"))
        self.stack_size = 0 if self.kind == "root" else int(_atomic(_record_field(address, "stack_extent")))

    def waiting_on(self, fibers_by_address):
        if self.state != "suspended":
            return ""
        published = _record_field(self.address, "waiting")
        what = _atomic(published["what"])
        if _pointer(what) == 0:
            return ""
        text = what.string()
        kind = str(_atomic(published["object_kind"]))
        target = _atomic(published["object"])
        if kind.endswith("primitive"):
            text += " 0x%x" % _pointer(target)
        elif kind.endswith("fiber"):
            joined = fibers_by_address.get(_pointer(target))
            text += " " + (joined.name if joined else "0x%x" % _pointer(target))
        elif kind.endswith("signature"):
            signature = target.cast(gdb.lookup_type("char").const().pointer()).string()
            start = signature.find("Signature = ")
            if start >= 0:
                signature = signature[start + len("Signature = "):].rstrip("]")
            text += " " + signature
        deadline = int(_atomic(published["deadline"]))
        if deadline != 0:
            text += ", deadline %.3f s (steady clock)" % (deadline / 1e9)
        return text


def _kind_of(address):
    """root, hub, task or fiber: from the record's vtable, whose symbol names
    its class (the library's records are record_with_target<Base, ...>)."""
    if bool(_record_field(address, "is_root")):
        return "root"
    vtable = int.from_bytes(bytes(gdb.selected_inferior().read_memory(address, 8)), "little")
    symbol = gdb.execute("info symbol 0x%x" % vtable, to_string=True)
    if "hub_fiber_base" in symbol:
        return "hub"
    if "task_record" in symbol:
        return "task"
    return "fiber"


def _threads():
    """(os thread id, thread_state) of every thread that used fibers, oldest first."""
    symbol = gdb.lookup_global_symbol("fibers::detail::newest_thread")
    if symbol is None:
        raise gdb.GdbError("fibers.py: no fibers registry in the inferior (fibers::detail::newest_thread); is it "
                           "built with debug information and linked with the fibers library?")
    state = symbol.value()
    threads = []
    while _pointer(state) != 0:
        threads.append((int(state["os_thread_id"]), state))
        state = state["older_thread"]
    threads.reverse()
    return threads


def _fibers_of(thread_state):
    fibers = [Fiber(_pointer(thread_state["root"]), thread_state)]
    live = []
    record = _pointer(thread_state["newest_live"])
    while record != 0:
        live.append(record)
        record = _pointer(_record_field(record, "older_live"))
    for record in reversed(live):
        fibers.append(Fiber(record, thread_state))
    return fibers


def _all_fibers():
    return [(tid, _fibers_of(state)) for tid, state in _threads()]


class InfoFibers(gdb.Command):
    """List every fiber of the inferior: id, parent, kind, state, stack size, name, what it waits on."""

    def __init__(self):
        super().__init__("info fibers", gdb.COMMAND_STATUS)

    def invoke(self, argument, from_tty):
        threads = _all_fibers()
        if not threads:
            print("No thread of the inferior has used fibers.")
            return
        for tid, fibers in threads:
            by_address = {f.address: f for f in fibers}
            print("thread %d (LWP %d): %d fiber%s" % (tid, tid, len(fibers), "" if len(fibers) == 1 else "s"))
            print("  %-16s %-16s %-5s %-11s %-9s %-20s %s" % ("id", "parent", "kind", "state", "stack", "name",
                                                              "waiting on"))
            for f in fibers:
                parent = "0x%x" % f.parent if f.parent else "-"
                print("  %-16s %-16s %-5s %-11s %-9d %-20s %s" % ("0x%x" % f.address, parent, f.kind, f.state,
                                                                  f.stack_size, f.name, f.waiting_on(by_address)))


class FiberPrefix(gdb.Command):
    """Commands on one fiber of the inferior (see `info fibers`)."""

    def __init__(self):
        super().__init__("fiber", gdb.COMMAND_STACK, gdb.COMPLETE_NONE, True)


class _FrameId:
    """What create_unwind_info takes (gdb.unwinder.FrameId from gdb 14 on)."""

    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


class _FiberUnwinder(gdb.unwinder.Unwinder):
    """While `fiber bt` runs: the selected thread's innermost frame returns into the fiber."""

    def __init__(self):
        super().__init__("fibers")
        self.fiber_registers = None  # {register: value} of the fiber, with rsp and rip
        self.innermost_sp = None

    def __call__(self, pending_frame):
        if self.fiber_registers is None or pending_frame.level() != 0:
            return None
        sp = pending_frame.read_register("rsp")
        pc = pending_frame.read_register("rip")
        frame_id = _FrameId(sp, pc)
        unwind = pending_frame.create_unwind_info(frame_id)
        for name, value in self.fiber_registers.items():
            unwind.add_saved_register(name, gdb.Value(value).cast(pending_frame.read_register(name).type))
        return unwind


_unwinder = _FiberUnwinder()
gdb.unwinder.register_unwinder(None, _unwinder, replace=True)


def _saved_registers(fiber):
    arch = gdb.selected_inferior().architecture().name()
    if arch != "i386:x86-64":
        raise gdb.GdbError("fibers.py: `fiber bt` knows the saved frame of x86-64 only, not %s" % arch)
    inferior = gdb.selected_inferior()

    def word(offset):
        return int.from_bytes(bytes(inferior.read_memory(fiber.context + offset, 8)), "little")

    registers = {name: word(offset) for name, offset in SAVED_REGISTERS.items()}
    registers["rip"] = word(RETURN_ADDRESS)
    registers["rsp"] = fiber.context + FRAME_SIZE
    return registers


class FiberBacktrace(gdb.Command):
    """fiber bt ID [bt options]: the backtrace of the suspended fiber ID (from `info fibers`).

Frame #0 is where the selected thread is; frames #1 and up are the fiber's,
from the switch it is suspended in."""

    def __init__(self):
        super().__init__("fiber bt", gdb.COMMAND_STACK)

    def invoke(self, argument, from_tty):
        words = gdb.string_to_argv(argument)
        if not words:
            raise gdb.GdbError("usage: fiber bt ID [backtrace options]")
        try:
            wanted = int(words[0], 0)
        except ValueError:
            raise gdb.GdbError("fibers.py: %s is not a fiber id (see `info fibers`)" % words[0])
        found = None
        for tid, fibers in _all_fibers():
            for f in fibers:
                if f.address == wanted:
                    found = f
        if found is None:
            raise gdb.GdbError("fibers.py: no live fiber 0x%x (see `info fibers`)" % wanted)
        if found.state != "suspended":
            raise gdb.GdbError("fibers.py: fiber 0x%x (%s) is %s: only a suspended one has saved registers; "
                               "a running one is its thread's own backtrace" % (wanted, found.name, found.state))
        registers = _saved_registers(found)
        print("fiber 0x%x (%s, %s), suspended at pc 0x%x sp 0x%x:" % (found.address, found.name, found.kind,
                                                                    registers["rip"], registers["rsp"]))
        selected = gdb.selected_frame()
        _unwinder.fiber_registers = registers
        gdb.invalidate_cached_frames()
        try:
            gdb.execute("backtrace " + " ".join(words[1:]), from_tty)
        finally:
            _unwinder.fiber_registers = None
            gdb.invalidate_cached_frames()
            try:
                selected.select()
            except gdb.error:
                gdb.newest_frame().select()


InfoFibers()
FiberPrefix()
FiberBacktrace()
