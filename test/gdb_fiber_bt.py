# Copyright the fibers authors.
# Distributed under the Boost Software License, Version 1.0.
# (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
"""tools/gdb/fibers.py on a cross-built program under qemu-user, run by
gdb-multiarch (test/gdb_fiber_bt.sh sets the environment it reads).

The program (test/gdb_fiber_bt_inferior.cpp) runs under qemu-user's gdb
stub and stops in fibers_are_suspended(), where a plain fiber and the
tasks `waiter` and `holder` are suspended in functions of their own, and
the hub in its loop. Checked:

- `info fibers` lists the five fibers with their kinds, states and waits;
- `fiber bt ID` of each suspended fiber shows its own frames, from the
  switch it is suspended in down to the fiber's entry, and no other's
  (nor frame #0, where the thread is);
- the registers it gives each fiber (pc, sp and those the switch restores)
  are those the fiber has when it really resumes: a breakpoint on the
  address each resumes at compares them, once the program goes on;
- `fiber bt` refuses the running root and an unknown id, and leaves the
  thread's own backtrace and selected frame as they were;
- the program then ends normally.
"""

import os
import re
import socket
import subprocess
import tempfile
import traceback

import gdb

FIBERS_PY = os.environ["FIBERS_GDB_SCRIPT"]
INFERIOR = os.environ["FIBERS_INFERIOR"]
SOLIB_DIRS = os.environ["FIBERS_SOLIB_DIRS"]
EMULATOR = os.environ["FIBERS_EMULATOR"].split("\n")

failures = []


def check(condition, what, details=""):
    if condition:
        print("ok: " + what)
    else:
        failures.append(what)
        print("FAILED: " + what + ("\n" + details if details else ""))
    return condition


def run(command):
    return gdb.execute(command, to_string=True)


def run_or_error(command):
    """The output of `command`, or the error it raised."""
    try:
        return run(command)
    except gdb.error as e:
        return "Error: %s" % e


def refusal(command):
    """The error `command` raises, or "" if it raises none."""
    try:
        run(command)
    except gdb.error as e:
        return str(e)
    return ""


# ---------------------------------------------------------------------------
# The program under qemu-user's gdb stub.

class Emulator:
    def __init__(self, scratch):
        self.log_path = os.path.join(scratch, "inferior.log")
        self.process = None

    def start_and_connect(self):
        """Starts the program under `qemu -g PORT` and connects gdb; qemu
        waits for gdb before the program's first instruction."""
        last_error = None
        for _ in range(5):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(EMULATOR + ["-g", str(port), INFERIOR], stdout=log,
                                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                # gdb retries a refused connection while qemu starts listening.
                gdb.execute("target remote 127.0.0.1:%d" % port)
                return
            except gdb.error as e:
                last_error = e  # another process took the port: try another
                self.stop()
        raise gdb.GdbError("cannot connect to %s under qemu's gdb stub: %s" % (INFERIOR, last_error))

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(timeout=60)

    def output(self):
        with open(self.log_path, "rb") as log:
            return log.read().decode(errors="replace")


def linux_description_for_i386():
    """qemu-i386's target description lacks the i386 GNU/Linux feature
    (orig_eax), without which gdb sets up no GNU/Linux support for the
    target: it loads no shared library and relocates only the text, data
    and bss of a position-independent program, so that its vtables, say,
    are read at their unrelocated addresses. Returns the description with
    the feature added, or None where nothing is missing."""
    if gdb.selected_inferior().architecture().name() != "i386":
        return None
    description = run("maint print xml-tdesc")
    if "org.gnu.gdb.i386.linux" in description:
        return None
    next_register = max(int(n) for n in re.findall(r'regnum="(\d+)"', description)) + 1
    feature = ('  <feature name="org.gnu.gdb.i386.linux">\n'
               '    <reg name="orig_eax" bitsize="32" type="int" regnum="%d"/>\n'
               '  </feature>\n' % next_register)
    return description.replace("</target>", feature + "</target>")


def connect(emulator, scratch):
    prefix = next((w.split("=", 1)[1] for w in EMULATOR if w.startswith("QEMU_LD_PREFIX=")), None)
    if prefix is None:
        raise gdb.GdbError("the emulator command sets no QEMU_LD_PREFIX: %s" % " ".join(EMULATOR))
    gdb.execute("set pagination off")
    gdb.execute("set confirm off")
    gdb.execute("set sysroot " + prefix)
    gdb.execute("set solib-search-path " + ":".join([prefix + "/lib", SOLIB_DIRS]))
    gdb.execute("file " + INFERIOR)
    emulator.start_and_connect()
    description = linux_description_for_i386()
    if description is not None:
        print("qemu's i386 target description lacks org.gnu.gdb.i386.linux: connecting again with it added")
        gdb.execute("kill")
        emulator.stop()
        path = os.path.join(scratch, "i386-linux.xml")
        with open(path, "w") as f:
            f.write(description)
        gdb.execute("set tdesc filename " + path)
        emulator.start_and_connect()


# ---------------------------------------------------------------------------
# What the program's fibers are doing when it stops.

FIBER_ROW = re.compile(r"^\s+(0x[0-9a-f]+)\s+(\S+)\s+(\w+)\s+(running|suspended|not started|ended)\s+(\d+)\s+(\S+)\s*(.*)$")

# Each suspended fiber's own frames, and the bottom frame every fiber bt ends with.
OWN_FRAMES = {
    "plain": ["(anonymous namespace)::plain_fiber_descends"],
    "waiter": ["(anonymous namespace)::waiter_task_waits", "fibers::event::wait"],
    "holder": ["(anonymous namespace)::holder_task_locks", "fibers::detail::basic_mutex::lock"],
    "Hub": ["fibers::hub::run_loop"],
}
FIBER_ENTRY = "fibers::detail::(anonymous namespace)::fiber_entry"


def fibers_listed(listing):
    """{name: (id, kind, state, waiting on)} from `info fibers`, the plain
    fiber (named after its id) as "plain"."""
    fibers = {}
    for line in listing.splitlines():
        m = FIBER_ROW.match(line)
        if m:
            fid, _, kind, state, _, name, waiting = m.groups()
            fibers["plain" if kind == "fiber" else name] = (fid, kind, state, waiting.strip())
    return fibers


def frame_lines(backtrace):
    return [line for line in backtrace.splitlines() if re.match(r"#\d+\s", line)]


def check_backtrace(name, fid, backtrace):
    frames = frame_lines(backtrace)
    where = "fiber bt %s (%s)" % (fid, name)
    check(len(frames) >= 3, where + " shows frames", backtrace)
    check(" fibers_are_suspended " not in backtrace, where + " leaves out where the thread is", backtrace)
    if len(frames) < 3:
        return
    check(frames[0].startswith("#1 ") and "fibers::detail::jump_to " in frames[0],
          where + " begins at frame #1, the switch the fiber is suspended in", backtrace)
    for own in OWN_FRAMES[name]:
        check(own + " (" in backtrace, where + " shows " + own, backtrace)
    for other, functions in OWN_FRAMES.items():
        if other != name:
            for function in functions:
                check(function + " (" not in backtrace, where + " does not show %s's %s" % (other, function),
                      backtrace)
    check(FIBER_ENTRY + " " in frames[-1], where + " ends at the fiber's entry", backtrace)
    for bad in ("Backtrace stopped", "Python Exception", "Error", "??"):
        check(bad not in backtrace, where + " has no " + bad, backtrace)
    if name == "plain":
        depths = re.findall(r"plain_fiber_descends \(depth=(?:depth@entry=)?(\d+|<optimized out>)", backtrace)
        if gdb.selected_inferior().architecture().name().startswith("mips"):
            # GCC 12 describes depth by its value at entry alone
            # (DW_OP_entry_value), which gdb recovers from the caller's call
            # site. On MIPS it records each call site's return address as
            # the call's delay slot, 4 bytes short of where the callee
            # returns, so gdb finds no call site and cannot show depth. The
            # registers the fiber resumes with are checked below all the same.
            check(len(depths) == 4, where + " shows the recursion's four levels", backtrace)
        else:
            check(depths == ["0", "1", "2", "3"], where + " shows the recursion's four levels and their arguments",
                  backtrace)


class ResumeCheck(gdb.Breakpoint):
    """At the address suspended fibers resume at: the registers of the one
    that resumes are those `fiber bt` gave it."""

    def __init__(self, pc, expected, switch_frame, resumed):
        super().__init__("*0x%x" % pc, internal=True)
        self.expected = expected  # [(name, {register: hex})] of the fibers that resume here
        self.switch_frame = switch_frame
        self.resumed = resumed  # name: [mismatches]

    def stop(self):
        frame = gdb.newest_frame()
        stack_pointer = self.switch_frame.sp
        # gdb unwinds the sp of the call; the switch also pops what its callee pops.
        sp = int(frame.read_register(stack_pointer)) - self.switch_frame.callee_pops
        for name, registers in self.expected:
            if int(registers[stack_pointer], 16) != sp:
                continue
            mismatches = []
            for register, value in registers.items():
                live = frame.read_register(register)
                if register == "cpsr":  # only its Thumb bit comes from the frame
                    same = (int(live) & 0x20) == (int(value, 16) & 0x20)
                elif register == stack_pointer:
                    same = int(live) - self.switch_frame.callee_pops == int(value, 16)
                else:
                    same = live.format_string(format="x") == value
                if not same:
                    mismatches.append("%s: fiber bt gave %s, the fiber resumed with %s"
                                      % (register, value, live.format_string(format="x")))
            self.resumed.setdefault(name, mismatches)
        return False


def main():
    scratch = tempfile.mkdtemp(prefix="fibers-gdb-")
    emulator = Emulator(scratch)
    exit_codes = []
    try:
        connect(emulator, scratch)
        gdb.events.exited.connect(lambda event: exit_codes.append(getattr(event, "exit_code", None)))
        gdb.execute("break fibers_are_suspended")
        gdb.execute("continue")
        if not check(gdb.selected_frame().name() == "fibers_are_suspended",
                     "the program stops in fibers_are_suspended", run("bt")):
            return
        # libstdc++'s pretty printers raise on some optimized-out values
        # (std::optional in a frame of sync.cpp on i386); what they print is
        # not under test, and an exception of fibers.py's must stand out.
        run("disable pretty-printer")
        gdb.execute("source " + FIBERS_PY)

        listing = run("info fibers")
        print(listing)
        fibers = fibers_listed(listing)
        check(": 5 fibers\n" in listing, "info fibers lists five fibers on one thread", listing)
        expected_rows = {
            "Root": ("root", "running", ""),
            "Hub": ("hub", "suspended", None),
            "plain": ("fiber", "suspended", ""),
            "waiter": ("task", "suspended", "event 0x"),
            "holder": ("task", "suspended", "mutex 0x"),
        }
        for name, (kind, state, waiting) in expected_rows.items():
            row = fibers.get(name)
            check(row is not None and row[1:3] == (kind, state)
                  and (waiting is None or row[3].startswith(waiting) and (waiting or not row[3])),
                  "info fibers: %s is a %s, %s%s" % (name, kind, state, ", waiting on " + waiting if waiting else ""),
                  listing)
        if any(name not in fibers for name in expected_rows):
            return

        # Each suspended fiber's backtrace.
        gdb.execute("frame 1")
        resumes_at = {}  # name: (pc, sp) from fiber bt's first line
        for name in OWN_FRAMES:
            fid = fibers[name][0]
            backtrace = run_or_error("fiber bt " + fid)
            print(backtrace)
            check_backtrace(name, fid, backtrace)
            header = re.search(r"suspended at pc (0x[0-9a-f]+) sp (0x[0-9a-f]+):", backtrace)
            if header is not None:
                resumes_at[name] = (int(header.group(1), 16), int(header.group(2), 16))

        # The registers fiber bt gives each, by fibers.py's own function.
        main_module = __import__("__main__")
        switch_frame = main_module._switch_frame()
        records = {f.address: f for _, thread in main_module._all_fibers() for f in thread}
        resume_points = {}  # pc: [(name, {register: hex})]
        selected = gdb.selected_frame()
        gdb.newest_frame().select()
        for name in OWN_FRAMES:
            registers = main_module._saved_registers(records[int(fibers[name][0], 16)], switch_frame)
            pc = int(registers[switch_frame.pc])
            sp = int(registers[switch_frame.sp])
            check(resumes_at.get(name) == (pc, sp), "fiber bt (%s) names the pc and sp it resumes at" % name,
                  "fiber bt: %s, registers: %s" % (resumes_at.get(name), (pc, sp)))
            resume_points.setdefault(pc, []).append(
                (name, {r: v.format_string(format="x") for r, v in registers.items()}))
        selected.select()

        # The thread is as it was.
        check(" main " in run("frame"), "fiber bt leaves the selected frame as it was", run("frame"))
        own = run("bt")
        check(len(frame_lines(own)) == 2 and " main " in frame_lines(own)[1],
              "after fiber bt, bt is the thread's own again", own)

        # What fiber bt refuses.
        refused = refusal("fiber bt " + fibers["Root"][0])
        check("only a suspended one has saved registers" in refused, "fiber bt refuses the running root", refused)
        refused = refusal("fiber bt 0x1")
        check("no live fiber 0x1" in refused, "fiber bt refuses an id that is no fiber", refused)

        # The program goes on: each fiber resumes with the registers fiber bt gave it.
        resumed = {}
        for pc, expected in resume_points.items():
            ResumeCheck(pc, expected, switch_frame, resumed)
        gdb.execute("delete 1")
        gdb.execute("continue")
        for name in OWN_FRAMES:
            if check(name in resumed, "%s resumed at the pc and sp fiber bt gave it" % name):
                check(not resumed[name], "%s resumed with the registers fiber bt gave it" % name,
                      "\n".join(resumed[name]))
        check(exit_codes == [0], "the program ends normally", "exit codes: %s" % exit_codes)
        check("all fibers ended" in emulator.output(), "the program's fibers all ended", emulator.output())
    finally:
        emulator.stop()


try:
    main()
except Exception:
    failures.append("the test ran to its end")
    traceback.print_exc()
if failures:
    print("%d check(s) failed:\n  %s" % (len(failures), "\n  ".join(failures)))
    gdb.execute("quit 1")
print("all checks passed")
gdb.execute("quit 0")
