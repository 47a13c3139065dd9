#!/usr/bin/env bash
# Copyright the fibers authors.
# Distributed under the Boost Software License, Version 1.0.
# (See accompanying file LICENSE_1_0.txt or copy at https://www.boost.org/LICENSE_1_0.txt)
#
# The example client against the example server: every line comes back
# (exit 0); against a port where nothing listens it fails (exit 1); a bad
# command line is refused (exit 2).
#
#   check_echo_client.sh ECHO_SERVER ECHO_CLIENT
set -euo pipefail
server=$1
client=$2
scratch=$(mktemp -d)
server_pid=
cleanup() {
    [ -z "$server_pid" ] || kill -KILL "$server_pid" 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT
fail() {
    printf 'check_echo_client.sh: %s\n' "$*" >&2
    exit 1
}

"$server" --host 127.0.0.1 --port 0 >"$scratch/server.out" 2>&1 &
server_pid=$!
port=
for _ in $(seq 200); do
    port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$scratch/server.out")
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || fail "the server did not start: $(cat "$scratch/server.out")"

output=$("$client" --port "$port" --connections 4 --messages 20) || fail "the client failed against the server"
[ "$output" = "4 of 4 connections echoed 20 lines each" ] || fail "unexpected output: $output"

kill -TERM "$server_pid"
wait "$server_pid" || fail "the server did not exit 0 on SIGTERM"
server_pid=

status=0
"$client" --port "$port" --connections 2 >"$scratch/refused.out" 2>"$scratch/refused.err" || status=$?
[ "$status" -eq 1 ] || fail "against a closed port the client exited $status, not 1"
grep -q "^echo_client: connection 2: " "$scratch/refused.err" || fail "no error per connection: $(cat "$scratch/refused.err")"
grep -q "^0 of 2 connections" "$scratch/refused.out" || fail "unexpected output: $(cat "$scratch/refused.out")"

status=0
"$client" --port 70000 2>/dev/null || status=$?
[ "$status" -eq 2 ] || fail "--port 70000 exited $status, not 2"
echo "example echo_client: passed"
