#!/bin/sh
# Copyright the fibers authors.
# Distributed under the Boost Software License, Version 1.0.
# (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#
# ctest's gdb_fiber_bt: runs test/gdb_fiber_bt.py in gdb-multiarch against
# a cross-built program under qemu-user's gdb stub.
#
#   gdb_fiber_bt.sh FIBERS_PY DRIVER INFERIOR SOLIB_DIRS [EMULATOR...]
#
# FIBERS_PY is tools/gdb/fibers.py, DRIVER test/gdb_fiber_bt.py, INFERIOR
# the program (test/gdb_fiber_bt_inferior.cpp), SOLIB_DIRS where gdb finds
# the target's Boost libraries, EMULATOR the command that runs the target's
# programs (CMAKE_CROSSCOMPILING_EMULATOR: env VAR=... qemu-ARCH). Exits 77,
# which ctest reports as skipped, where the test cannot run.
set -eu

[ $# -ge 4 ] || { echo "usage: $0 FIBERS_PY DRIVER INFERIOR SOLIB_DIRS [EMULATOR...]" >&2; exit 2; }
fibers_py=$1 driver=$2 inferior=$3 solib_dirs=$4
shift 4

if [ $# -eq 0 ]; then
    echo "a native build: test_echo_server's gdb cases test fiber bt here; this test is for builds under qemu-user"
    exit 77
fi
if ! command -v gdb-multiarch >/dev/null 2>&1; then
    echo "gdb-multiarch is not installed (./build.sh test --arch installs it): fiber bt is not tested under qemu-user"
    exit 77
fi
for word in "$@"; do
    case $word in
    qemu-*)
        if ! command -v "$word" >/dev/null 2>&1; then
            echo "$word is not installed (./build.sh test --arch installs it): fiber bt is not tested under qemu-user"
            exit 77
        fi ;;
    esac
done

FIBERS_GDB_SCRIPT=$fibers_py
FIBERS_INFERIOR=$inferior
FIBERS_SOLIB_DIRS=$solib_dirs
FIBERS_EMULATOR=$(printf '%s\n' "$@")
export FIBERS_GDB_SCRIPT FIBERS_INFERIOR FIBERS_SOLIB_DIRS FIBERS_EMULATOR
exec gdb-multiarch -nx -batch -x "$driver" </dev/null
