#!/usr/bin/env bash
# Copyright the fibers authors.
# Distributed under the Boost Software License, Version 1.0.
# (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#
# The echo benchmark: the fibers example echo server (--io hybrid, its
# default, --io direct, --io token, and hybrid without the hub's idle spin)
# against an Asio callback echo server, driven by the same client runs, one
# server at a time. See test/perf/README.md.
#
#   test/perf/echo.sh [options] [BUILD_DIR]     BUILD_DIR: default build/release
#
#   --duration S      seconds measured per run (default 5)
#   --warmup S        seconds run before each measurement, not counted (0.5)
#   --repetitions N   runs per server and workload; each keeps its best (3)
#   --pin             pin the server to CPU 0 and the client to CPU 1 (taskset)
#
# Workloads: ping-pong (100 connections, 512-byte messages, one in flight
# each) and streaming (4 connections, 512-byte messages, 16 in flight each).
# Servers and client all run with --threads 1: one core each on a 2-core
# machine. The order of the servers rotates from one repetition to the next.
# The table gives each server's best round trips per second and its ratio to
# the Asio server's (the goals are on these), and the server's CPU time per
# round trip (its lowest, from /proc), which the client's own speed and the
# machine's other load sway less.
# Environment: ECHO_SERVER, ECHO_CLIENT, ASIO_ECHO_SERVER override the
# programs' paths.
#
# Exit status: 0 when every run was correct, whatever the ratios; 1 when a
# server or the client failed (a wrong byte, a dropped connection, a server
# that did not start or did not exit 0 on SIGTERM); 2 on bad usage.
set -euo pipefail

usage() {
    sed -n '6,31p' "$0" | sed 's/^# \{0,1\}//'
}
die() {
    printf 'echo.sh: %s\n' "$*" >&2
    exit 1
}

duration=5
warmup=0.5
repetitions=3
pin=false
build=
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) [ $# -ge 2 ] || { usage >&2; exit 2; }; duration=$2; shift 2 ;;
        --warmup) [ $# -ge 2 ] || { usage >&2; exit 2; }; warmup=$2; shift 2 ;;
        --repetitions) [ $# -ge 2 ] || { usage >&2; exit 2; }; repetitions=$2; shift 2 ;;
        --pin) pin=true; shift ;;
        -h | --help) usage; exit 0 ;;
        -*) printf 'echo.sh: unknown option %s\n' "$1" >&2; usage >&2; exit 2 ;;
        *) [ -z "$build" ] || { usage >&2; exit 2; }; build=$1; shift ;;
    esac
done
build=${build:-build/release}
number='^[0-9]+([.][0-9]+)?$'
if ! [[ $duration =~ $number ]] || ! awk -v d="$duration" 'BEGIN { exit !(d > 0) }'; then
    echo "echo.sh: --duration must be a positive number" >&2
    exit 2
fi
[[ $warmup =~ $number ]] || { echo "echo.sh: --warmup must be a number" >&2; exit 2; }
[[ $repetitions =~ ^[1-9][0-9]*$ ]] || { echo "echo.sh: --repetitions must be a positive integer" >&2; exit 2; }

echo_server=${ECHO_SERVER:-$build/example/echo_server}
echo_client=${ECHO_CLIENT:-$build/test/perf/echo_load}
asio_server=${ASIO_ECHO_SERVER:-$build/test/perf/asio_echo_server}
for program in "$echo_server" "$echo_client" "$asio_server"; do
    [ -x "$program" ] ||
        die "$program is missing: build the targets echo_server, echo_load and asio_echo_server first"
done

server_pin=()
client_pin=()
if $pin; then
    command -v taskset >/dev/null || die "--pin needs taskset (util-linux)"
    [ "$(nproc)" -ge 2 ] || die "--pin needs two CPUs"
    server_pin=(taskset -c 0)
    client_pin=(taskset -c 1)
fi

# The servers, in the order of the table; the last is the anchor.
servers=(hybrid direct token nospin asio)
declare -A server_name=([hybrid]="fibers --io hybrid" [direct]="fibers --io direct" [token]="fibers --io token"
                        [nospin]="fibers --idle-spin 0" [asio]="asio callbacks")
# server_command KEY: sets the array `command` (the caller's).
server_command() {
    case "$1" in
        hybrid) command=("$echo_server" --io hybrid) ;;
        direct) command=("$echo_server" --io direct) ;;
        token) command=("$echo_server" --io token) ;;
        nospin) command=("$echo_server" --io hybrid --idle-spin 0) ;;
        asio) command=("$asio_server") ;;
    esac
}
workloads=(ping-pong streaming)
declare -A workload_args=([ping-pong]="--connections 100 --size 512 --depth 1"
                          [streaming]="--connections 4 --size 512 --depth 16")
declare -A workload_name=([ping-pong]="ping-pong (100 x 512 B, depth 1)"
                          [streaming]="streaming (4 x 512 B, depth 16)")
declare -A goal=([ping-pong]=1.2 [streaming]=2.0)

scratch=$(mktemp -d)
server_pid=

stop_quietly() {
    [ -n "$server_pid" ] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
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
    "${server_pin[@]}" "${command[@]}" --host 127.0.0.1 --port 0 --threads 1 \
        >"$scratch/server.out" 2>"$scratch/server.err" &
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

# server_cpu_ticks: the CPU time the server has used (all its threads, user
# and system), in clock ticks.
server_cpu_ticks() {
    # After "pid (name) ", utime and stime are the 12th and 13th fields.
    sed 's/.*) //' "/proc/$server_pid/stat" | awk '{ print $12 + $13 }'
}
ticks_per_second=$(getconf CLK_TCK)

# run_client WORKLOAD: prints the round trips per second.
run_client() {
    local workload=$1 args output status=0
    read -r -a args <<<"${workload_args[$workload]}"
    output=$("${client_pin[@]}" "$echo_client" --host 127.0.0.1 --port "$port" --threads 1 "${args[@]}" \
        --duration "$duration" --warmup "$warmup" 2>"$scratch/client.err") || status=$?
    [ "$status" -ne 130 ] || exit 130 # Ctrl-C reached the client too
    if [ "$status" -ne 0 ]; then
        printf 'echo.sh: the client failed (status %s) against %s, %s:\n%s\n' "$status" \
            "${server_name[$current]}" "$workload" "$(cat "$scratch/client.err")" >&2
        [ -s "$scratch/server.err" ] && printf 'the server said:\n%s\n' "$(cat "$scratch/server.err")" >&2
        exit 1
    fi
    local rate
    rate=$(printf '%s\n' "$output" | sed -n 's/.* round_trips_per_second=\([0-9][0-9]*\).*/\1/p')
    [ -n "$rate" ] || die "no round_trips_per_second in the client's output: $output"
    echo "$rate"
}

declare -A best=() best_cpu=()
current=
for ((rep = 0; rep < repetitions; rep++)); do
    # Rotate the servers so that none is always first or last.
    order=()
    for ((i = 0; i < ${#servers[@]}; i++)); do
        order+=("${servers[$(((i + rep) % ${#servers[@]}))]}")
    done
    for workload in "${workloads[@]}"; do
        for current in "${order[@]}"; do
            start_server "$current"
            ticks_before=$(server_cpu_ticks)
            rate=$(run_client "$workload")
            ticks_after=$(server_cpu_ticks)
            stop_server "$current"
            # The server's CPU time per round trip, over the whole client run
            # (whose round trips are about rate x (warm-up + duration)).
            cpu=$(awk -v t=$((ticks_after - ticks_before)) -v hz="$ticks_per_second" -v r="$rate" \
                -v s="$(awk -v w="$warmup" -v d="$duration" 'BEGIN { print w + d }')" \
                'BEGIN { printf "%.3f", t / hz * 1e6 / (r * s) }')
            printf '  run %d/%d  %-10s %-20s %10s round trips/s %8s us server CPU per round trip\n' \
                $((rep + 1)) "$repetitions" "$workload" "${server_name[$current]}" "$rate" "$cpu" >&2
            key="$workload/$current"
            if [ -z "${best[$key]:-}" ] || [ "$rate" -gt "${best[$key]}" ]; then
                best[$key]=$rate
            fi
            if [ -z "${best_cpu[$key]:-}" ] || awk -v a="$cpu" -v b="${best_cpu[$key]}" 'BEGIN { exit !(a < b) }'; then
                best_cpu[$key]=$cpu
            fi
        done
    done
done

printf '\necho benchmark: best of %d runs of %s s (after %s s of warm-up); servers and client with --threads 1%s\n' \
    "$repetitions" "$duration" "$warmup" "$(if $pin; then echo ', pinned'; fi)"
printf '%-34s %-20s %14s %8s %-19s %16s %8s\n' workload server "round trips/s" "vs asio" "goal" \
    "server CPU us/rt" "vs asio"
for workload in "${workloads[@]}"; do
    anchor=${best[$workload/asio]}
    anchor_cpu=${best_cpu[$workload/asio]}
    for key in "${servers[@]}"; do
        rate=${best[$workload/$key]}
        ratio=$(awk -v a="$rate" -v b="$anchor" 'BEGIN { printf "%.2f", a / b }')
        # CPU: how many times less the server spends per round trip.
        cpu_ratio=$(awk -v a="${best_cpu[$workload/$key]}" -v b="$anchor_cpu" \
            'BEGIN { if (a > 0) printf "%.2f", b / a; else printf "-" }')
        verdict=
        if [ "$key" != asio ]; then
            verdict=$(awk -v r="$ratio" -v g="${goal[$workload]}" \
                'BEGIN { printf ">= %.1fx: %s", g, (r >= g ? "met" : "not met") }')
        fi
        printf '%-34s %-20s %14s %7sx %-19s %16s %7sx\n' "${workload_name[$workload]}" "${server_name[$key]}" \
            "$rate" "$ratio" "$verdict" "${best_cpu[$workload/$key]}" "$cpu_ratio"
    done
done
