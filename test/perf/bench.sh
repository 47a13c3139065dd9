#!/usr/bin/env bash
# Copyright the fibers authors.
# Distributed under the Boost Software License, Version 1.0.
# (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#
# Runs every benchmark of test/perf against a built tree, one after the
# other, and turns their RESULT lines into one table (test/perf/collect.py):
# printed, and written into doc/performance.md with a chart
# (doc/performance.svg). ./build.sh bench builds the release tree, installs
# what this needs, and runs it.
#
#   test/perf/bench.sh [--quick] [--no-doc] [--note TEXT] [BUILD_DIR]
#
#   --quick      smaller counts, fewer repetitions, shorter echo runs: a
#                few minutes instead of a quarter of an hour, for a first look
#   --no-doc     print the table only; doc/ stays as it is
#   --note TEXT  a sentence printed under the machine in the report (e.g.
#                what else was running)
#
# The log of the run is BUILD_DIR/bench/bench.log (default build/release).
# Exit status: 0 when every benchmark ran and every echo server behaved,
# whatever the figures; 1 otherwise (the table is still made from what ran);
# 2 on bad usage.
set -euo pipefail
cd "$(dirname "$0")/../.."

quick=false
doc=true
note=
build=
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=true; shift ;;
        --no-doc) doc=false; shift ;;
        --note) [ $# -ge 2 ] || { echo "bench.sh: --note needs a text" >&2; exit 2; }; note=$2; shift 2 ;;
        -h | --help) sed -n '6,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
        *) build=$1; shift ;;
    esac
done
build=${build:-build/release}
perf=$build/test/perf
[ -d "$perf" ] || { echo "bench.sh: $perf is missing: build the tree first (./build.sh bench does)" >&2; exit 1; }
mkdir -p "$build/bench"
log=$build/bench/bench.log
: >"$log"

say() { printf '==> %s\n' "$*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

if $quick; then
    switch_args=(50000 3)
    stack_args=(100000)
    hub_args=(1 3)
    sync_args=(1 3)
    million_args=(--tasks 100000 --repetitions 3)
    scope_args=(1 3)
    echo_args=(--duration 2 --warmup 0.5 --repetitions 1)
else
    switch_args=()
    stack_args=()
    hub_args=()
    sync_args=()
    million_args=()
    scope_args=()
    echo_args=()
fi

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
command_line="./build.sh bench$(if $quick; then echo ' --quick'; fi)"
{
    printf 'MACHINE cpu="%s" cores=%s kernel="%s" date="%s" load="%s" command="%s"\n' "${cpu:-unknown}" \
        "$(nproc)" "$(uname -r)" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(loadavg)" "$command_line"
    [ -z "$note" ] || printf 'MACHINE note="%s"\n' "${note//\"/\'}"
} >>"$log"

failed=()
# run NAME COMMAND...: its output to the terminal and the log.
run() {
    local name=$1 status=0
    shift
    if [ ! -x "$1" ]; then
        say "$name: $1 is not built, skipped"
        return 0
    fi
    say "$name"
    local started=$SECONDS
    "$@" 2>&1 | tee -a "$log" || status=$?
    say "$name: $((SECONDS - started)) s$([ "$status" -eq 0 ] || echo ", FAILED with status $status")"
    [ "$status" -eq 0 ] || failed+=("$name")
}

started=$SECONDS
run perf_switch "$perf/perf_switch" "${switch_args[@]}"
run perf_stack "$perf/perf_stack" "${stack_args[@]}"
run perf_hub "$perf/perf_hub" "${hub_args[@]}"
run perf_sync "$perf/perf_sync" "${sync_args[@]}"
run perf_million "$perf/perf_million" "${million_args[@]}"
run perf_scope "$perf/perf_scope" "${scope_args[@]}"
run echo.sh test/perf/echo.sh "${echo_args[@]}" "$build"
printf 'MACHINE load_after="%s"\n' "$(loadavg)" >>"$log"
say "all benchmarks: $((SECONDS - started)) s; log: $log"

collect=(python3 test/perf/collect.py "$log")
if $doc; then
    collect+=(--markdown doc/performance.md)
    command -v gnuplot >/dev/null && collect+=(--chart doc/performance.svg) ||
        say "gnuplot is missing: no chart (./build.sh bench installs it)"
fi
echo
"${collect[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    say "failed: ${failed[*]}"
    exit 1
fi
