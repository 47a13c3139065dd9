#!/usr/bin/env bash
# Copyright the fibers authors.
# Distributed under the Boost Software License, Version 1.0.
# (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#
# One entry point for building fibers on Debian 12.
#
#   ./build.sh test            install what is missing, build, run the whole suite
#   ./build.sh test --asan     the same under AddressSanitizer + UBSan
#   ./build.sh test --tsan     the same under ThreadSanitizer
#   ./build.sh run [args]      the same set-up, then the example echo server on 127.0.0.1:7000
#   ./build.sh bench [--quick] build the release tree, run every benchmark in test/perf,
#                              print one table and write it into doc/performance.md
#   ./build.sh b2              build and test with Boost.Build (b2) instead of CMake
#
# Build trees go to build/<variant>. Environment: JOBS (parallel jobs,
# default: the number of cores).
set -euo pipefail
cd "$(dirname "$0")"

packages=(
    g++ cmake
    libboost1.81-dev libboost-context1.81-dev libboost-test1.81-dev
    libboost-program-options1.81-dev libboost1.81-tools-dev
)
# Only the benchmarks use them: Boost.Fiber as an anchor to compare against,
# perf to count system calls, gnuplot for the chart, python3 for the table.
bench_packages=(libboost-fiber1.81-dev linux-perf gnuplot-nox python3 util-linux)
jobs=${JOBS:-$(nproc)}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

# install_missing_packages [extra packages...]
install_missing_packages() {
    local missing=() p
    for p in "${packages[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "missing packages (${missing[*]}) and no sudo to install them"
        sudo=(sudo)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# configure_and_build VARIANT [cmake args...]
configure_and_build() {
    local variant=$1; shift
    local dir=build/$variant
    say "configuring $dir"
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
    say "building $dir"
    cmake --build "$dir" -j "$jobs"
}

# run_suite VARIANT: ctest with a failure when no test ran at all.
run_suite() {
    local dir=build/$1 log
    log=$(mktemp)
    say "testing $dir"
    set +e
    ctest --test-dir "$dir" --output-on-failure --no-tests=error -j "$jobs" 2>&1 | tee "$log"
    local status=${PIPESTATUS[0]}
    set -e
    local ran
    ran=$(sed -n 's/.*tests passed, [0-9]* tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -n 1)
    rm -f "$log"
    [ "$status" -eq 0 ] || die "the suite failed in $dir"
    [ -n "$ran" ] && [ "$ran" -gt 0 ] || die "no test ran in $dir"
    say "$ran tests passed in $dir"
}

variant_of() {
    case "${1:-}" in
        "") echo release ;;
        --asan) echo asan ;;
        --tsan) echo tsan ;;
        *) die "unknown option: $1 (expected --asan or --tsan)" ;;
    esac
}

cmake_args_of() {
    case "$1" in
        release) ;;
        asan) echo "-DFIBERS_SANITIZE=address;undefined" ;;
        tsan) echo "-DFIBERS_SANITIZE=thread" ;;
    esac
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
test)
    variant=$(variant_of "${1:-}")
    install_missing_packages
    configure_and_build "$variant" $(cmake_args_of "$variant")
    case "$variant" in
        asan)
            export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:detect_stack_use_after_return=1:abort_on_error=0}
            export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} ;;
        tsan)
            export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1} ;;
    esac
    run_suite "$variant"
    ;;
run)
    install_missing_packages
    configure_and_build release
    server=build/release/example/echo_server
    [ -x "$server" ] || die "$server was not built"
    say "echo server on 127.0.0.1:7000 (Ctrl-C stops it)"
    exec "$server" --host 127.0.0.1 --port 7000 "$@"
    ;;
bench)
    install_missing_packages "${bench_packages[@]}"
    configure_and_build release
    # Options (--quick, --no-doc, --note TEXT): see test/perf/bench.sh.
    exec test/perf/bench.sh "$@" build/release
    ;;
b2)
    install_missing_packages
    say "building and testing with b2"
    b2 -j "$jobs" variant=release
    ;;
*)
    sed -n '6,17p' "$0" | sed 's/^# \{0,1\}//'
    [ -z "$command" ] || die "unknown command: $command"
    exit 2
    ;;
esac
