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
#   ./build.sh test --arch A   cross-build for A (arm64, armhf, i386, mips64el)
#                              and run the whole suite under qemu-user
#   ./build.sh run [args]      the same set-up, then the example echo server on 127.0.0.1:7000
#   ./build.sh bench [--quick] build the release tree, run every benchmark in test/perf,
#                              print one table and write it into doc/performance.md
#   ./build.sh b2              build and test with Boost.Build (b2) instead of CMake
#
# Build trees go to build/<variant> (build/<arch> for --arch). Environment:
# JOBS (parallel jobs, default: the number of cores).
set -euo pipefail
cd "$(dirname "$0")"

packages=(
    g++ cmake
    libboost1.81-dev libboost-context1.81-dev libboost-test1.81-dev
    libboost-program-options1.81-dev libboost1.81-tools-dev
    gdb # the test of tools/gdb/fibers.py
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
    apt_update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o DPkg::Lock::Timeout=600 "${missing[@]}"
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        command -v sudo >/dev/null || die "needs root or sudo: $*"
        sudo "$@"
    fi
}

# A list that fails to download (a mirror in the middle of a sync) leaves
# apt with the lists it had; what is needed may still be there, and the
# install that follows says so if not.
apt_update() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
        say "apt-get update reported errors; going on with the package lists apt has"
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
    if [ "$status" -ne 0 ]; then
        # A failing test's output can run to thousands of lines: its failed
        # checks are repeated last, where a reader of the log's tail sees them.
        say "the failed checks in $dir:"
        grep -aE '(error|fatal error): in "|runtime error:|ERROR: (Address|Leak|ThreadSanitizer)|WARNING: ThreadSanitizer|\*\*\*(Failed|Timeout|Exception)' "$log" | sed 's/\x1b\[[0-9;]*m//g' | head -n 40 || true
    fi
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
        --arch)
            [ -n "${2:-}" ] || die "--arch needs an architecture: ${cross_arches[*]}"
            triplet_of "$2" >/dev/null
            echo "$2" ;;
        *) die "unknown option: $1 (expected --asan, --tsan or --arch ARCH)" ;;
    esac
}

# ---------------------------------------------------------------------------
# Cross builds, run under qemu-user.
#
# The cross compilers come with their own C and C++ runtimes in
# /usr/<triplet>. Boost for the target is not installed through multiarch:
# Multi-Arch: same packages must have one version across architectures,
# and the security archive serves no mips64el (and, at times, not every
# architecture's index), so libc6-dev:<arch>, which Boost's -dev packages
# pull in, often cannot match the host's. Debian's Boost packages for the
# target are downloaded instead and unpacked into build/sysroot/<arch>.

cross_arches=(arm64 armhf i386 mips64el)

# The cross compiler's prefix, which is also its directory under /usr.
triplet_of() {
    case "$1" in
        arm64) echo aarch64-linux-gnu ;;
        armhf) echo arm-linux-gnueabihf ;;
        i386) echo i686-linux-gnu ;;
        mips64el) echo mips64el-linux-gnuabi64 ;;
        *) die "unknown architecture: $1 (expected one of ${cross_arches[*]})" ;;
    esac
}

qemu_of() {
    case "$1" in
        arm64) echo aarch64 ;;
        armhf) echo arm ;;
        *) echo "$1" ;;
    esac
}

boost_cross_packages=(
    libboost1.81-dev
    libboost-context1.81-dev libboost-context1.81.0
    libboost-test1.81-dev libboost-test1.81.0
    libboost-program-options1.81-dev libboost-program-options1.81.0
)

# prepare_cross ARCH: the cross compiler, qemu-user, Boost for ARCH in
# build/sysroot/ARCH, and binfmt_misc entries for ARCH. gdb-multiarch is for
# the test of tools/gdb/fibers.py under qemu-user (test/gdb_fiber_bt.py):
# Debian's gdb reads x86 programs only.
prepare_cross() {
    local arch=$1 triplet qemu
    triplet=$(triplet_of "$arch")
    qemu=$(qemu_of "$arch")
    install_missing_packages "g++-$triplet" qemu-user qemu-user-binfmt gdb-multiarch

    local foreign
    foreign=$(dpkg --print-foreign-architectures)
    if ! grep -qx "$arch" <<<"$foreign"; then
        say "adding the $arch architecture to dpkg"
        as_root dpkg --add-architecture "$arch"
        apt_update
    fi
    apt-cache show "libboost-context1.81.0:$arch" >/dev/null 2>&1 || apt_update

    local root=build/sysroot/$arch want p version
    want=$(for p in "${boost_cross_packages[@]}"; do
        version=$(apt-cache show --no-all-versions "$p:$arch" 2>/dev/null | sed -n 's/^Version: //p')
        [ -n "$version" ] || die "no package $p:$arch in apt's lists"
        echo "$p:$arch=$version"
    done)
    if [ "$(cat "$root/.packages" 2>/dev/null)" != "$want" ]; then
        say "unpacking Boost for $arch into $root"
        local debs
        debs=$(mktemp -d)
        (cd "$debs" && apt-get download -q $(printf '%s\n' "$want"))
        rm -rf "$root"
        mkdir -p "$root"
        for p in "$debs"/*.deb; do
            dpkg-deb -x "$p" "$root"
        done
        rm -rf "$debs"
        printf '%s\n' "$want" >"$root/.packages"
    fi

    register_binfmt "$arch" "$qemu"
}

# Some tests start programs with exec (the echo server, a re-run of a test
# binary): the kernel runs them through qemu-user when binfmt_misc knows the
# architecture. Debian's qemu-user-binfmt ships the entries, but nothing
# here loads them at boot; i386 has none on amd64, whose kernels usually run
# i386 programs themselves.
register_binfmt() {
    local arch=$1 qemu=$2 dir=/proc/sys/fs/binfmt_misc entry
    if [ ! -e "$dir/register" ]; then
        as_root mount -t binfmt_misc binfmt_misc "$dir" ||
            die "cannot mount binfmt_misc: the tests that exec programs need it"
    fi
    [ -e "$dir/qemu-$qemu" ] && return 0
    case "$arch" in
        i386)
            entry=':qemu-i386:M::\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x03\x00:'
            entry+='\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-i386:' ;;
        *)
            entry=$(cat "/usr/lib/binfmt.d/qemu-$qemu.conf") ;;
    esac
    say "registering qemu-$qemu with binfmt_misc"
    printf '%s' "$entry" | as_root tee "$dir/register" >/dev/null ||
        die "cannot register qemu-$qemu with binfmt_misc"
}

cmake_args_of() {
    case "$1" in
        release) ;;
        asan) echo "-DFIBERS_SANITIZE=address;undefined" ;;
        tsan) echo "-DFIBERS_SANITIZE=thread" ;;
        *) echo "-DCMAKE_TOOLCHAIN_FILE=$PWD/cmake/toolchains/$1.cmake -DCMAKE_PREFIX_PATH=$PWD/build/sysroot/$1/usr" ;;
    esac
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
test)
    variant=$(variant_of "$@")
    install_missing_packages
    case "$variant" in release | asan | tsan) ;; *) prepare_cross "$variant" ;; esac
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
    sed -n '6,19p' "$0" | sed 's/^# \{0,1\}//'
    [ -z "$command" ] || die "unknown command: $command"
    exit 2
    ;;
esac
