#!/usr/bin/env bash
# Copyright the fibers authors.
# Distributed under the Boost Software License, Version 1.0.
# (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#
# The echo benchmark: the fibers example echo server beside its peers, a raw
# epoll server, Asio callbacks, Asio C++20 coroutines and asio::spawn, all
# with 16 KiB buffers and one thread, driven by the same client runs, one
# server at a time, interleaved. See test/perf/README.md.
#
#   test/perf/echo.sh [options] [BUILD_DIR]     BUILD_DIR: default build/release
#
#   --duration S      seconds measured per run (default 5)
#   --warmup S        seconds run before each measurement, not counted (0.5)
#   --repetitions N   runs per server and workload; each keeps its best (3)
#   --servers LIST    comma-separated keys (default: all but fibers-hybrid
#                     and fibers-token): epoll asio asio-coro asio-spawn
#                     fibers fibers-spin fibers-threads2 fibers-hybrid
#                     fibers-token
#   --no-pin          do not pin (default: server on CPU 0, client on CPU 1)
#   --syscalls HOW    perf (default when tracepoints work), strace or none
#
# Workloads: ping-pong (100 connections, 512-byte messages, one in flight
# each) and streaming (4 connections, 512-byte messages, 16 in flight each).
# The client runs with --threads 1 on its own CPU; every server with
# --threads 1 on the other, but fibers-threads2 (the example server with
# --threads 2, both threads on the server's CPU). The order of the servers
# rotates from one repetition to the next.
#
# Per server and workload it reports, over the measured interval (the
# client's, less a quarter second at each end): messages per second and
# server CPU time per message (user and system, all threads, from /proc),
# then, in a second client run against the same server process, system
# calls per echoed message (perf stat -e raw_syscalls:sys_enter -p on the
# server: tracing slows the server, hence a run of its own; with --syscalls
# strace, strace -c -f in a separate short run). Each figure is the best of
# the repetitions: the highest rate, the least CPU, the fewest calls. Then a
# table, and ECHO and RESULT lines for test/perf/collect.py.
# Environment: ECHO_SERVER, ECHO_LOAD, ASIO_ECHO_SERVER, EPOLL_ECHO_SERVER,
# ASIO_CORO_ECHO_SERVER, ASIO_SPAWN_ECHO_SERVER override the programs' paths.
#
# Exit status: 0 when every run was correct, whatever the figures; 1 when a
# server or the client failed (a wrong byte, a dropped connection, a server
# that did not start or did not exit 0 on SIGTERM); 2 on bad usage.
set -euo pipefail

usage() {
    sed -n '6,43p' "$0" | sed 's/^# \{0,1\}//'
}
die() {
    printf 'echo.sh: %s\n' "$*" >&2
    exit 1
}
bad_usage() {
    printf 'echo.sh: %s\n' "$*" >&2
    exit 2
}

duration=5
warmup=0.5
repetitions=3
pin=true
syscalls=
servers_option=epoll,asio,asio-coro,asio-spawn,fibers,fibers-spin,fibers-threads2
build=
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) [ $# -ge 2 ] || bad_usage "--duration needs a value"; duration=$2; shift 2 ;;
        --warmup) [ $# -ge 2 ] || bad_usage "--warmup needs a value"; warmup=$2; shift 2 ;;
        --repetitions) [ $# -ge 2 ] || bad_usage "--repetitions needs a value"; repetitions=$2; shift 2 ;;
        --servers) [ $# -ge 2 ] || bad_usage "--servers needs a value"; servers_option=$2; shift 2 ;;
        --syscalls) [ $# -ge 2 ] || bad_usage "--syscalls needs a value"; syscalls=$2; shift 2 ;;
        --no-pin) pin=false; shift ;;
        --pin) pin=true; shift ;; # the default; kept for older command lines
        -h | --help) usage; exit 0 ;;
        -*) usage >&2; bad_usage "unknown option $1" ;;
        *) [ -z "$build" ] || bad_usage "one build directory only"; build=$1; shift ;;
    esac
done
build=${build:-build/release}
number='^[0-9]+([.][0-9]+)?$'
[[ $duration =~ $number ]] && awk -v d="$duration" 'BEGIN { exit !(d >= 1) }' ||
    bad_usage "--duration must be a number of seconds, at least 1"
[[ $warmup =~ $number ]] || bad_usage "--warmup must be a number"
[[ $repetitions =~ ^[1-9][0-9]*$ ]] || bad_usage "--repetitions must be a positive integer"

# The servers, in the order of the table. The anchor of the goals is epoll.
all_servers=(epoll asio asio-coro asio-spawn fibers fibers-spin fibers-threads2 fibers-hybrid fibers-token)
declare -A server_name=([epoll]="raw epoll" [asio]="asio callbacks" [asio-coro]="asio C++20 coroutines"
                        [asio-spawn]="asio::spawn" [fibers]="fibers"
                        [fibers-spin]="fibers --idle-spin 50" [fibers-threads2]="fibers --threads 2"
                        [fibers-hybrid]="fibers --io hybrid" [fibers-token]="fibers --io token")
IFS=, read -r -a servers <<<"$servers_option"
[ ${#servers[@]} -gt 0 ] || bad_usage "--servers is empty"
for key in "${servers[@]}"; do
    [ -n "${server_name[$key]:-}" ] || bad_usage "unknown server $key (known: ${all_servers[*]})"
done

echo_server=${ECHO_SERVER:-$build/example/echo_server}
echo_load=${ECHO_LOAD:-$build/test/perf/echo_load}
declare -A program=([epoll]=${EPOLL_ECHO_SERVER:-$build/test/perf/epoll_echo_server}
                    [asio]=${ASIO_ECHO_SERVER:-$build/test/perf/asio_echo_server}
                    [asio-coro]=${ASIO_CORO_ECHO_SERVER:-$build/test/perf/asio_coro_echo_server}
                    [asio-spawn]=${ASIO_SPAWN_ECHO_SERVER:-$build/test/perf/asio_spawn_echo_server})
# server_command KEY: sets the array `command` (the caller's).
server_command() {
    case "$1" in
        fibers) command=("$echo_server" --threads 1) ;;
        fibers-spin) command=("$echo_server" --threads 1 --idle-spin 50) ;;
        fibers-threads2) command=("$echo_server" --threads 2) ;;
        fibers-hybrid) command=("$echo_server" --threads 1 --io hybrid) ;;
        fibers-token) command=("$echo_server" --threads 1 --io token) ;;
        *) command=("${program[$1]}" --threads 1) ;;
    esac
}
for key in "${servers[@]}"; do
    command=()
    server_command "$key"
    [ -x "${command[0]}" ] || die "${command[0]} is missing: build it first (cmake --build $build)"
done
[ -x "$echo_load" ] || die "$echo_load is missing: build it first (cmake --build $build --target echo_load)"

server_pin=()
client_pin=()
if $pin; then
    command -v taskset >/dev/null || die "pinning needs taskset (util-linux); or pass --no-pin"
    [ "$(nproc)" -ge 2 ] || die "pinning needs two CPUs; pass --no-pin"
    server_pin=(taskset -c 0)
    client_pin=(taskset -c 1)
fi

have_perf_tracepoints() {
    command -v perf >/dev/null && perf stat -x, -e raw_syscalls:sys_enter -- true >/dev/null 2>&1
}
if [ -z "$syscalls" ]; then
    if have_perf_tracepoints; then
        syscalls=perf
    elif command -v strace >/dev/null; then
        printf 'echo.sh: perf or its syscall tracepoints are not available here: counting with strace -c -f in separate runs\n' >&2
        syscalls=strace
    else
        printf 'echo.sh: neither perf tracepoints nor strace: no system call counts\n' >&2
        syscalls=none
    fi
fi
case "$syscalls" in
    perf) have_perf_tracepoints || die "--syscalls perf: perf stat -e raw_syscalls:sys_enter does not work here" ;;
    strace) command -v strace >/dev/null || die "--syscalls strace: strace is missing" ;;
    none) ;;
    *) bad_usage "--syscalls is perf, strace or none" ;;
esac

workloads=(ping-pong streaming)
declare -A workload_args=([ping-pong]="--connections 100 --size 512 --depth 1"
                          [streaming]="--connections 4 --size 512 --depth 16")
declare -A workload_name=([ping-pong]="ping-pong 100 x 512 B"
                          [streaming]="streaming 4 x 16 x 512 B")
declare -A workload_id=([ping-pong]=pingpong [streaming]=streaming)
declare -A workload_short=([ping-pong]="ping-pong" [streaming]="streaming")

scratch=$(mktemp -d)
server_pid=
client_pid=

stop_quietly() {
    local pid
    for pid in "$client_pid" "$server_pid"; do
        [ -n "$pid" ] || continue
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    client_pid=
    server_pid=
}
cleanup() {
    stop_quietly
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_server KEY: starts it on a free port; sets server_pid and port.
start_server() {
    local key=$1
    local -a command
    server_command "$key"
    : >"$scratch/server.out"
    : >"$scratch/server.err"
    "${server_pin[@]}" "${command[@]}" --host 127.0.0.1 --port 0 >"$scratch/server.out" 2>"$scratch/server.err" &
    server_pid=$!
    port=
    local _
    for _ in $(seq 200); do
        port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$scratch/server.out" | head -n 1)
        [ -n "$port" ] && return 0
        if ! kill -0 "$server_pid" 2>/dev/null; then
            local status=0
            wait "$server_pid" || status=$?
            server_pid=
            die "${server_name[$key]} exited (status $status) before listening: $(cat "$scratch/server.err")"
        fi
        sleep 0.05
    done
    die "${server_name[$key]} did not say 'listening on' within 10 s"
}

# stop_server KEY: SIGTERM, then its exit status must be 0.
stop_server() {
    local key=$1 status=0
    kill -TERM "$server_pid" 2>/dev/null || true
    local _
    for _ in $(seq 100); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        stop_quietly
        die "${server_name[$key]} did not exit within 10 s of SIGTERM"
    fi
    wait "$server_pid" || status=$?
    server_pid=
    [ "$status" -eq 0 ] ||
        die "${server_name[$key]} exited with status $status on SIGTERM: $(cat "$scratch/server.err")"
}

# The server's CPU time (all its threads, user and system), in seconds.
ticks_per_second=$(getconf CLK_TCK)
server_cpu_seconds() {
    # After "pid (name) ", utime and stime are the 12th and 13th fields.
    local t
    t=$(sed 's/.*) //' "/proc/$server_pid/stat" | awk '{ print $12 + $13 }')
    awk -v t="$t" -v hz="$ticks_per_second" 'BEGIN { printf "%.4f", t / hz }'
}
now() { date +%s.%N; }

# The measured window inside the client's: it starts a quarter second after
# the warm-up and ends a quarter second before the drain.
window=$(awk -v d="$duration" 'BEGIN { printf "%.2f", d - 0.5 }')
window_delay=$(awk -v w="$warmup" 'BEGIN { printf "%.2f", w + 0.25 }')

# client_failed WORKLOAD KEY STATUS: reports and exits 1.
client_failed() {
    printf 'echo.sh: the client failed (status %s) against %s, %s:\n%s\n' "$3" "${server_name[$2]}" "$1" \
        "$(cat "$scratch/client.err")" >&2
    [ -s "$scratch/server.err" ] && printf 'the server said:\n%s\n' "$(cat "$scratch/server.err")" >&2
    exit 1
}

# run_client WORKLOAD KEY COUNT: one client run against the running server.
# COUNT "cpu": sets m_rate (messages per second) and m_cpu (server CPU us
# per message, from /proc over the measured window). COUNT "calls": sets
# m_calls (system calls per message, perf stat over the window), in a run
# of its own, since tracing every system call slows the server down.
run_client() {
    local workload=$1 key=$2 count=$3 args status=0
    read -r -a args <<<"${workload_args[$workload]}"
    "${client_pin[@]}" "$echo_load" --host 127.0.0.1 --port "$port" --threads 1 "${args[@]}" \
        --duration "$duration" --warmup "$warmup" >"$scratch/client.out" 2>"$scratch/client.err" &
    client_pid=$!
    sleep "$window_delay"
    local cpu0 cpu1 t0 t1
    t0=$(now)
    cpu0=$(server_cpu_seconds)
    if [ "$count" = calls ]; then
        perf stat -x, -e raw_syscalls:sys_enter -p "$server_pid" -o "$scratch/perf.csv" \
            -- sleep "$window" 2>/dev/null || true
    else
        sleep "$window"
    fi
    cpu1=$(server_cpu_seconds)
    t1=$(now)
    wait "$client_pid" || status=$?
    client_pid=
    [ "$status" -ne 130 ] || exit 130 # Ctrl-C reached the client too
    [ "$status" -eq 0 ] || client_failed "$workload" "$key" "$status"
    local rate
    rate=$(sed -n 's/.* round_trips_per_second=\([0-9][0-9]*\).*/\1/p' "$scratch/client.out")
    [ -n "$rate" ] || die "no round_trips_per_second in the client's output: $(cat "$scratch/client.out")"
    if [ "$count" = calls ]; then
        local calls
        calls=$(awk -F, '$3 ~ /raw_syscalls:sys_enter/ { print $1 }' "$scratch/perf.csv")
        [[ $calls =~ ^[0-9]+$ ]] || die "perf stat counted no system calls: $(cat "$scratch/perf.csv")"
        m_calls=$(awk -v r="$rate" -v s="$window" -v n="$calls" 'BEGIN { printf "%.3f", n / (r * s) }')
    else
        m_rate=$rate
        m_cpu=$(awk -v r="$rate" -v a="$t0" -v b="$t1" -v c0="$cpu0" -v c1="$cpu1" \
            'BEGIN { printf "%.3f", (c1 - c0) * 1e6 / (r * (b - a)) }')
    fi
}

# strace_count WORKLOAD KEY: sets m_calls, the system calls per message of
# one short run under strace -c -f (slower: its rate is not reported).
strace_count() {
    local workload=$1 key=$2 args status=0
    read -r -a args <<<"${workload_args[$workload]}"
    strace -c -f -p "$server_pid" -o "$scratch/strace.txt" 2>/dev/null &
    local strace_pid=$!
    sleep 0.5
    "${client_pin[@]}" "$echo_load" --host 127.0.0.1 --port "$port" --threads 1 "${args[@]}" \
        --duration 2 --warmup 0 >"$scratch/client.out" 2>"$scratch/client.err" || status=$?
    kill -INT "$strace_pid" 2>/dev/null || true
    wait "$strace_pid" 2>/dev/null || true
    [ "$status" -eq 0 ] || client_failed "$workload" "$key" "$status"
    local trips calls
    trips=$(sed -n 's/.* round_trips=\([0-9][0-9]*\).*/\1/p' "$scratch/client.out")
    calls=$(awk '$NF == "total" { print $(NF-2) }' "$scratch/strace.txt")
    m_calls=$(awk -v n="${calls:-0}" -v m="${trips:-0}" 'BEGIN { if (m > 0) printf "%.3f", n / m; else print "-" }')
}

declare -A best_rate=() best_cpu=() best_calls=()
keep_best() { # KEY RATE CPU CALLS
    local k=$1
    if [ -z "${best_rate[$k]:-}" ] || [ "$2" -gt "${best_rate[$k]}" ]; then best_rate[$k]=$2; fi
    if [ -z "${best_cpu[$k]:-}" ] || awk -v a="$3" -v b="${best_cpu[$k]}" 'BEGIN { exit !(a < b) }'; then
        best_cpu[$k]=$3
    fi
    if [ "$4" != - ]; then
        if [ -z "${best_calls[$k]:-}" ] || awk -v a="$4" -v b="${best_calls[$k]}" 'BEGIN { exit !(a < b) }'; then
            best_calls[$k]=$4
        fi
    fi
}

printf 'echo benchmark: %d x %s s per server and workload (after %s s of warm-up)%s, system calls by %s\n' \
    "$repetitions" "$duration" "$warmup" "$(if $pin; then echo ', pinned'; fi)" "$syscalls" >&2
for ((rep = 0; rep < repetitions; rep++)); do
    order=()
    for ((i = 0; i < ${#servers[@]}; i++)); do
        order+=("${servers[$(((i + rep) % ${#servers[@]}))]}")
    done
    for workload in "${workloads[@]}"; do
        for key in "${order[@]}"; do
            start_server "$key"
            run_client "$workload" "$key" cpu
            m_calls=-
            [ "$syscalls" != perf ] || run_client "$workload" "$key" calls
            stop_server "$key"
            printf '  run %d/%d  %-10s %-22s %9s msg/s %8s us CPU/msg %7s calls/msg\n' $((rep + 1)) \
                "$repetitions" "$workload" "${server_name[$key]}" "$m_rate" "$m_cpu" "$m_calls" >&2
            keep_best "$workload/$key" "$m_rate" "$m_cpu" "$m_calls"
        done
    done
done
if [ "$syscalls" = strace ]; then
    for workload in "${workloads[@]}"; do
        for key in "${servers[@]}"; do
            start_server "$key"
            strace_count "$workload" "$key"
            best_calls[$workload/$key]=$m_calls
            stop_server "$key"
            printf '  strace   %-10s %-22s %7s calls/msg\n' "$workload" "${server_name[$key]}" \
                "${best_calls[$workload/$key]}" >&2
        done
    done
fi

printf '\necho benchmark: best of %d runs of %s s; server and client with --threads 1 (but "fibers --threads 2")%s\n' \
    "$repetitions" "$duration" "$(if $pin; then echo ', pinned'; fi)"
printf '%-26s %-24s %12s %14s %12s\n' workload server "messages/s" "server CPU/msg" "calls/msg"
for workload in "${workloads[@]}"; do
    for key in "${servers[@]}"; do
        k=$workload/$key
        printf '%-26s %-24s %12s %11s us %12s\n' "${workload_name[$workload]}" "${server_name[$key]}" \
            "${best_rate[$k]}" "${best_cpu[$k]}" "${best_calls[$k]:--}"
    done
done

# Machine-readable: one ECHO line per server and workload, then RESULT
# lines, each comparing the fibers server with one peer.
printf '\n'
for workload in "${workloads[@]}"; do
    for key in "${servers[@]}"; do
        k=$workload/$key
        printf 'ECHO workload="%s" server="%s" rate=%s cpu_us=%s calls=%s\n' "${workload_name[$workload]}" \
            "${server_name[$key]}" "${best_rate[$k]}" "${best_cpu[$k]}" "${best_calls[$k]:--}"
    done
done
# result ID FIGURE OURS ANCHOR ANCHOR_NAME UNIT GOAL
result() {
    [ -n "$3" ] && [ -n "$4" ] && [ "$3" != - ] && [ "$4" != - ] || return 0
    printf 'RESULT id=%s figure="%s" fibers=%s anchor=%s anchor_name="%s" unit=%s goal=%s\n' "$@"
}
has() { [[ ",$servers_option," == *",$1,"* ]]; }
for workload in "${workloads[@]}"; do
    w=${workload_id[$workload]}
    name=${workload_short[$workload]}
    has fibers || continue
    ours=$workload/fibers
    for peer in epoll asio asio-coro asio-spawn; do
        has "$peer" || continue
        goal=-
        [ "$peer" = epoll ] && goal='ratio<=1.15'
        result "echo.$w.calls.$peer" "echo $name: system calls per message" "${best_calls[$ours]:-}" \
            "${best_calls[$workload/$peer]:-}" "${server_name[$peer]}" calls "$goal"
    done
    for peer in epoll asio; do
        has "$peer" || continue
        result "echo.$w.cpu.$peer" "echo $name: server CPU per message" "${best_cpu[$ours]}" \
            "${best_cpu[$workload/$peer]}" "${server_name[$peer]}" us -
    done
    has asio && result "echo.$w.rate.asio" "echo $name: messages per second" \
        "${best_rate[$ours]}" "${best_rate[$workload/asio]}" "${server_name[asio]}" msg/s -
    if has fibers-spin; then
        result "echo.$w.spin.calls" "echo $name: system calls per message, --idle-spin 50" \
            "${best_calls[$workload/fibers-spin]:-}" "${best_calls[$ours]:-}" "no idle spin" calls -
        result "echo.$w.spin.cpu" "echo $name: server CPU per message, --idle-spin 50" \
            "${best_cpu[$workload/fibers-spin]}" "${best_cpu[$ours]}" "no idle spin" us -
        result "echo.$w.spin.rate" "echo $name: messages per second, --idle-spin 50" \
            "${best_rate[$workload/fibers-spin]}" "${best_rate[$ours]}" "no idle spin" msg/s -
    fi
    if has fibers-threads2; then
        result "echo.$w.threads2.cpu" "echo $name: server CPU per message, --threads 2" \
            "${best_cpu[$workload/fibers-threads2]}" "${best_cpu[$ours]}" "--threads 1" us -
        result "echo.$w.threads2.rate" "echo $name: messages per second, --threads 2" \
            "${best_rate[$workload/fibers-threads2]}" "${best_rate[$ours]}" "--threads 1" msg/s -
    fi
done
