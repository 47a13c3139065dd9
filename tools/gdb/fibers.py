# Copyright the fibers authors.
# Distributed under the Boost Software License, Version 1.0.
# (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
"""gdb commands for programs built with the fibers library.

    (gdb) source tools/gdb/fibers.py
    (gdb) info fibers          every fiber of every thread of the inferior
    (gdb) fiber bt ID          the backtrace of a suspended fiber (ID from `info fibers`)

Works on a live process (gdb -p PID), on a core file and, with
gdb-multiarch, on a program under qemu-user's gdb stub, with the library's
debug information (a RelWithDebInfo or Debug build). It reads the registry
that src/fiber_registry.cpp keeps: fibers::detail::newest_thread, the list of
every thread's state, and in each the list of its live fibers.

`fiber bt` needs the registers a suspended fiber saved when it switched
away. The switch (the library's own jump on x86-64 ELF and MIPS64,
Boost.Context's jump_fcontext elsewhere) leaves them on the fiber's stack, at its context
pointer, in one frame per architecture: the callee-saved registers and the
return address into the fiber's code; the fiber's stack pointer follows
from the frame's size. SWITCH_FRAMES below lists each. The command
shows the fiber's frames through an unwinder that, while it runs, makes the
selected thread's innermost frame return into the fiber: frames #1 and up
are the fiber's, from the switch it is suspended in down to its entry
function, and frame #0, where the thread is, is left out. Nothing in the
inferior is written, so it works on a core file too.
"""

import gdb
import gdb.FrameDecorator
import gdb.unwinder


class SwitchFrame:
    """The frame a switch leaves at a suspended fiber's context pointer.

    saved: (register, offset, bytes) of each register the switch restores
    from the frame when it resumes the fiber; return_address: the offset of
    the address the fiber resumes at; size: what the switch pops when it
    resumes the fiber (its stack pointer is then context + size), of which
    callee_pops are its caller's argument (i386's hidden pointer to the
    transfer_t it returns). gdb unwinds a caller's stack pointer as it was
    at the call, with the argument still there: context + size - callee_pops."""

    def __init__(self, sp, pc, return_address, size, saved, callee_pops=0, thumb_bit=False):
        self.sp = sp
        self.pc = pc
        self.return_address = return_address
        self.size = size
        self.callee_pops = callee_pops
        self.saved = saved
        # ARM: bit 0 of the return address says the caller is Thumb code;
        # gdb wants the bare address in pc and the mode in cpsr's T bit.
        self.thumb_bit = thumb_bit


def _words(names, first, width):
    return [(name, first + i * width, width) for i, name in enumerate(names)]


SWITCH_FRAMES = {
    # The library's own jump (src/jump.cpp) and Boost's jump_x86_64_sysv_elf_gas:
    # 0x00 MXCSR and x87 control word, then r12-r15, rbx, rbp, the return address.
    "x86-64": SwitchFrame("rsp", "rip", 0x40, 0x48, _words(["r12", "r13", "r14", "r15", "rbx", "rbp"], 0x10, 8)),
    # Boost's jump_i386_sysv_elf_gas: 0x00 MXCSR and x87 control word, 0x08
    # unused, then edi, esi, ebx, ebp, the return address, and the hidden
    # pointer to the transfer_t it returns, which the switch pops too.
    "i386": SwitchFrame("esp", "eip", 0x1c, 0x24, _words(["edi", "esi", "ebx", "ebp"], 0x0c, 4), callee_pops=4),
    # Boost's jump_arm64_aapcs_elf_gas: d8-d15 (the low halves of v8-v15),
    # x19-x28, x29 (fp), x30 (lr), the return address, 8 bytes of padding.
    "aarch64": SwitchFrame("sp", "pc", 0xa0, 0xb0,
                           _words(["v%d" % n for n in range(8, 16)], 0x00, 8)
                           + _words(["x%d" % n for n in range(19, 31)], 0x40, 8)),
    # Boost's jump_arm_aapcs_elf_gas: d8-d15, r0 (the hidden pointer to the
    # transfer_t it returns), r4-r11, lr, the return address.
    "arm": SwitchFrame("sp", "pc", 0x68, 0x6c,
                       _words(["d%d" % n for n in range(8, 16)], 0x00, 8)
                       + _words(["r%d" % n for n in range(4, 12)] + ["lr"], 0x44, 4), thumb_bit=True),
    # The library's own jump on MIPS64 n64 (src/jump.cpp): s0-s7, s8 (fp), gp,
    # ra, which is also the return address, 8 unused bytes, f24-f31.
    "mips64": SwitchFrame("sp", "pc", 80, 160,
                          _words(["s%d" % n for n in range(0, 9)] + ["gp", "ra"], 0, 8)
                          + _words(["f%d" % n for n in range(24, 32)], 96, 8)),
}


def _switch_frame_name(gdb_architecture, pointer_size):
    """The key of SWITCH_FRAMES for gdb's name of the inferior's architecture, or None."""
    if gdb_architecture == "i386:x86-64":
        return "x86-64"
    if gdb_architecture in ("i386", "i386:intel"):
        return "i386"
    if gdb_architecture.startswith("aarch64"):
        return "aarch64"
    if gdb_architecture.startswith("arm"):
        return "arm"
    if gdb_architecture.startswith("mips") and pointer_size == 8:
        return "mips64"
    return None


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


def _word(address):
    """The pointer-sized word at `address` (unsigned long is a pointer's size on every Linux ABI)."""
    return int(gdb.Value(address).cast(gdb.lookup_type("unsigned long").pointer()).dereference())


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
            # A task's record derives from scheduled_fiber alone: both start
            # at the same address.
            self.name = _std_string(_field(address, "fibers::detail::task_record", "given_name")) or "Fiber-%d" % int(
                _field(address, "fibers::detail::scheduled_fiber", "schedule_number"))
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
    vtable = _word(address)
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
        self.frame = None  # the fiber's SwitchFrame
        self.fiber_registers = None  # {register: gdb.Value} of the fiber, with its sp and pc

    def __call__(self, pending_frame):
        if self.fiber_registers is None or pending_frame.level() != 0:
            return None
        frame_id = _FrameId(pending_frame.read_register(self.frame.sp), pending_frame.read_register(self.frame.pc))
        unwind = pending_frame.create_unwind_info(frame_id)
        for name, value in self.fiber_registers.items():
            unwind.add_saved_register(name, value)
        return unwind


_unwinder = _FiberUnwinder()
gdb.unwinder.register_unwinder(None, _unwinder, replace=True)

# Where every fiber's stack begins (src/fiber.cpp): the trampoline of
# make_fcontext (of fibers_make_fcontext on MIPS64) calls it, and it never
# returns.
FIBER_ENTRY = "fibers::detail::(anonymous namespace)::fiber_entry"


class _NamedLikeBacktrace(gdb.FrameDecorator.FrameDecorator):
    """A frame as `backtrace` names it without filters (gdb's default
    decorator adds the parameter types of C++ functions)."""

    def function(self):
        name = self.inferior_frame().name()
        return name if name is not None else super().function()

    def frame_locals(self):
        """The frame's locals. gdb 13's default goes on past an inlined
        function's blocks into those of the function it is inlined in."""
        frame = self.inferior_frame()
        variables = gdb.FrameDecorator.FrameVars(frame)
        found = []
        try:
            block = frame.block()
        except RuntimeError:
            return found
        while block is not None and not (block.is_global or block.is_static):
            found.extend(gdb.FrameDecorator.SymValueWrapper(symbol, None) for symbol in block
                         if not symbol.is_argument and variables.fetch_b(symbol))
            if block.function is not None:
                break
            block = block.superblock
        return found


class _FiberFrames:
    """A frame filter, enabled only while `fiber bt` runs, that shows the
    fiber's frames alone. It leaves out frame #0, where the thread is: the
    unwinder makes it return into the fiber, so its arguments on the stack
    would be read from the fiber's frame. And it ends the backtrace at the
    fiber's entry function: below it lies only the trampoline that called
    it. Boost's has no unwind information, and gdb would go on with a frame
    of make_fcontext and stop at "previous frame identical to this frame
    (corrupt stack?)", a zero pc or garbage frames, depending on the
    architecture and on whether it has Boost.Context's symbols (the
    library's own on MIPS64, fibers_start_context, says it has no caller).
    `fiber bt ID -no-filters` shows it all."""

    def __init__(self):
        self.name = "fibers"
        self.priority = 100
        self.enabled = False
        gdb.frame_filters[self.name] = self

    def filter(self, frames):
        for frame in frames:
            if frame.inferior_frame().level() == 0:
                continue
            yield _NamedLikeBacktrace(frame)
            if frame.inferior_frame().name() == FIBER_ENTRY:
                return


_fiber_frames = _FiberFrames()


def _switch_frame():
    architecture = gdb.selected_inferior().architecture().name()
    name = _switch_frame_name(architecture, gdb.lookup_type("void").pointer().sizeof)
    if name is None:
        raise gdb.GdbError("fibers.py: `fiber bt` does not know the saved frame of %s (it knows %s)"
                           % (architecture, ", ".join(sorted(SWITCH_FRAMES))))
    return SWITCH_FRAMES[name]


def _register_type(name):
    return gdb.selected_frame().read_register(name).type


def _register_value(name, raw):
    """A value of register `name` from its bytes in memory; a wider register
    (aarch64's 128-bit v8-v15, of which calls keep the low half) reads the
    rest as zero. Every architecture the library supports is little-endian."""
    register_type = _register_type(name)
    return gdb.Value(raw.ljust(register_type.sizeof, b"\0"), register_type)


def _saved_registers(fiber, frame):
    """{register: gdb.Value} with which the fiber resumes, its pc included,
    and its sp as gdb unwinds it (see SwitchFrame)."""
    inferior = gdb.selected_inferior()
    registers = {}
    for name, offset, size in frame.saved:
        try:
            registers[name] = _register_value(name, bytes(inferior.read_memory(fiber.context + offset, size)))
        except ValueError:
            pass  # not in this target's description (an ARM without VFP, say): gdb shows it as not saved
    pc = _word(fiber.context + frame.return_address)
    if frame.thumb_bit:
        cpsr = int(gdb.selected_frame().read_register("cpsr")) & ~0x20 | (0x20 if pc & 1 else 0)
        registers["cpsr"] = _register_value("cpsr", cpsr.to_bytes(4, "little"))
        pc &= ~1
    pointer_size = gdb.lookup_type("void").pointer().sizeof
    registers[frame.pc] = _register_value(frame.pc, pc.to_bytes(pointer_size, "little"))
    caller_sp = fiber.context + frame.size - frame.callee_pops
    registers[frame.sp] = _register_value(frame.sp, caller_sp.to_bytes(pointer_size, "little"))
    return registers


class FiberBacktrace(gdb.Command):
    """fiber bt ID [bt options]: the backtrace of the suspended fiber ID (from `info fibers`).

Frames #1 and up are the fiber's, from the switch it is suspended in down
to its entry function (`-no-filters`: also frame #0, where the selected
thread is, and what gdb finds below the entry)."""

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
        frame = _switch_frame()
        selected = gdb.selected_frame()
        gdb.newest_frame().select()
        registers = _saved_registers(found, frame)
        print("fiber 0x%x (%s, %s), suspended at pc 0x%x sp 0x%x:" % (found.address, found.name, found.kind,
                                                                    _pointer(registers[frame.pc]),
                                                                    _pointer(registers[frame.sp])))
        _unwinder.frame = frame
        _unwinder.fiber_registers = registers
        _fiber_frames.enabled = True
        gdb.invalidate_cached_frames()
        try:
            gdb.execute("backtrace " + " ".join(words[1:]), from_tty)
        finally:
            _fiber_frames.enabled = False
            _unwinder.fiber_registers = None
            _unwinder.frame = None
            gdb.invalidate_cached_frames()
            try:
                selected.select()
            except gdb.error:
                gdb.newest_frame().select()


InfoFibers()
FiberPrefix()
FiberBacktrace()
