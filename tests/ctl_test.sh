#!/bin/sh
# SPDX-License-Identifier: MIT
# ctl_test.sh PEERDISTD PEERDISTCTL - peerdistctl status against a real daemon, and
# its exit codes (0 success, 1 failure, 2 bad usage).
set -u
daemon=$1
ctl=$2
tmp=$(mktemp -d /tmp/pdctl.XXXXXX)
pid=
trap 'kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$ctl" --socket "$tmp/s.sock" status >/dev/null 2>&1
[ $? -eq 1 ] || fail "status without a daemon should exit 1"
"$ctl" --socket "$tmp/s.sock" status --json 2>/dev/null | grep -q '"status": "unavailable"' ||
    fail "json without a daemon should say unavailable"
"$ctl" frobnicate >/dev/null 2>&1
[ $? -eq 2 ] || fail "unknown command should exit 2"
"$ctl" >/dev/null 2>&1
[ $? -eq 2 ] || fail "no command should exit 2"

printf '[peerdistd]\nmode = disabled\n' >"$tmp/conf"
"$daemon" --socket "$tmp/s.sock" --db "$tmp/cache.db" --state-dir "$tmp/state" --config "$tmp/conf" 2>"$tmp/log" &
pid=$!
for _ in $(seq 100); do test -S "$tmp/s.sock" && break; sleep 0.05; done
out=$(PEERDIST_SOCKET="$tmp/s.sock" "$ctl" status --json) || fail "status --json exit $?"
echo "$out"
echo "$out" | grep -q '"status": "disabled"' || fail "status should be disabled"
echo "$out" | grep -q '"mode": "disabled"' || fail "mode should be disabled"
echo "$out" | grep -q "\"database\": \"$tmp/cache.db\"" || fail "database path"
echo "$out" | grep -q '"connections": 1' || fail "connections"
"$ctl" --socket "$tmp/s.sock" status | grep -q '^mode: *disabled' || fail "plain status"

# The data commands: publish -> inject -> get -> tags -> flush, through a local-mode daemon.
kill "$pid"; wait "$pid" 2>/dev/null
"$daemon" --socket "$tmp/s.sock" --db "$tmp/cache.db" --state-dir "$tmp/state" 2>>"$tmp/log" &
pid=$!
for _ in $(seq 100); do "$ctl" --socket "$tmp/s.sock" status >/dev/null 2>&1 && break; sleep 0.05; done
head -c 3000000 /dev/urandom >"$tmp/file"
export PEERDIST_SOCKET="$tmp/s.sock"
"$ctl" publish "$tmp/file" --version 2 -o "$tmp/file.ci" 2>/dev/null || fail "publish"
"$ctl" ci-dump "$tmp/file.ci" | grep -q '^version: 2.0' || fail "publish --version 2 gives V2"
"$ctl" get --ci "$tmp/file.ci" -o "$tmp/out" 2>"$tmp/missing"
[ $? -eq 1 ] || fail "get before inject should exit 1"
grep -q '^missing: 0-3000000 ' "$tmp/missing" || fail "missing range: $(cat "$tmp/missing")"
tag='{00112233-4455-6677-8899-aabbccddeeff}'
"$ctl" inject "$tmp/file" --ci "$tmp/file.ci" --tag "$tag" 2>/dev/null || fail "inject"
"$ctl" get --ci "$tmp/file.ci" -o "$tmp/out" || fail "get after inject"
cmp -s "$tmp/file" "$tmp/out" || fail "get returned different bytes"
"$ctl" get --ci "$tmp/file.ci" | cmp -s - "$tmp/file" || fail "get to stdout"
"$ctl" tags | grep -q '^33221100554477668899aabbccddeeff .* 3000000 bytes' || fail "tags: $("$ctl" tags)"
"$ctl" tags --json | grep -q '"bytes": 3000000' || fail "tags --json"
"$ctl" flush --tag 33221100554477668899aabbccddeeff || fail "flush"
# The flush freed 46 blocks; their space is reclaimed in the background and counted.
for _ in $(seq 50); do
    "$ctl" status --json | grep -q '"reclaim_pending_slots": 0, "reclaimed_slots": [1-9]' && break
    sleep 0.1
done
"$ctl" status --json | grep -q '"reclaimed_slots": [1-9]' || fail "reclaim: $("$ctl" status --json)"
"$ctl" get --ci "$tmp/file.ci" -o "$tmp/out" 2>/dev/null
[ $? -eq 1 ] || fail "get after flush should exit 1"
"$ctl" flush --tag nonsense >/dev/null 2>&1
[ $? -eq 2 ] || fail "a bad tag is bad usage"
head -c 100 /dev/urandom >"$tmp/bad.ci"
"$ctl" inject "$tmp/file" --ci "$tmp/bad.ci" --tag "$tag" 2>/dev/null
[ $? -eq 1 ] || fail "inject with bad content information should exit 1"
unset PEERDIST_SOCKET

# A bad configuration is refused at start-up with the line number.
printf '[peerdistd]\nmode = sideways\n' >"$tmp/bad.conf"
"$daemon" --socket "$tmp/b.sock" --db "$tmp/b.db" --state-dir "$tmp/state" --config "$tmp/bad.conf" 2>"$tmp/badlog"
[ $? -eq 1 ] || fail "bad config should exit 1"
grep -q "bad.conf:2: mode: 'sideways'" "$tmp/badlog" || fail "bad config message: $(cat "$tmp/badlog")"
"$daemon" --socket "$tmp/b.sock" --db "$tmp/b.db" --state-dir "$tmp/state" --config "$tmp/missing.conf" 2>"$tmp/badlog"
[ $? -eq 1 ] || fail "a missing explicit config should exit 1"
echo "ctl test passed"
