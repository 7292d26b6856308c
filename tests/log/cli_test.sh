#!/usr/bin/env bash
# `rill log` end to end: every subcommand, human and JSON output, a reader
# following a writer in another process, damage found by verify and dump
# and stopping cat and tail, every command's exit status on a damaged log,
# and clear errors for bad input. Usage: cli_test.sh path/to/rill
set -euo pipefail
rill=$1
d=$(mktemp -d)
trap 'rm -rf "$d"; kill $(jobs -p) 2>/dev/null || true' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

[ "$("$rill" log append "$d" t one two 'three é')" = $'0\n1\n2' ] || fail "append args"
printf 'x\ny\n' | "$rill" log append "$d" t --json --sync group >"$d/out"
grep -q '^{"seq":4,"len":1,"durable":true}$' "$d/out" || fail "append stdin json: $(cat "$d/out")"
"$rill" log cat "$d" t | awk '{print $1, $3, $4, $5}' >"$d/out"
[ "$(cat "$d/out")" = $'0 3 one \n1 3 two \n2 8 three é\n3 1 x \n4 1 y ' ] || fail "cat: $(cat "$d/out")"
[ "$("$rill" log cat "$d" t --json --from 1 --count 1 | sed 's/"ts_ns":[0-9]*,//')" = \
  '{"seq":1,"len":3,"data":"two"}' ] || fail "cat json"
printf 'a\001b' | "$rill" log append "$d" t >/dev/null
"$rill" log cat "$d" t --from 5 | grep -q 'a\\x01b$' || fail "control bytes escaped"
"$rill" log cat "$d" t --from 5 --json | grep -q '"data":"a\\u0001b"' || fail "json escapes"
"$rill" log stat "$d" t --json | grep -q '"first":0,"next":6,"records":6' || fail "stat"
"$rill" log verify "$d" t | grep -q '^6 records, 6 ok, 0 damaged$' || fail "verify clean"

# tail follows a writer in another process.
"$rill" log tail "$d" t --count 2 >"$d/tail" &
tailpid=$!
sleep 0.3
"$rill" log append "$d" t later1 later2 >/dev/null
wait $tailpid || fail "tail exit"
[ "$(awk '{print $1, $4}' "$d/tail")" = $'6 later1\n7 later2' ] || fail "tail: $(cat "$d/tail")"

# A flipped payload byte: verify finds it and says which record.
seg="$d/t/00000000000000000000.seg"
off=$(( 64 + 40 + 32 ))   # record 1's payload ("two"): the header, record 0 (32 + 8), its header
printf 'X' | dd of="$seg" bs=1 seek=$off conv=notrunc status=none
if "$rill" log verify "$d" t >"$d/out"; then fail "verify missed damage"; fi
grep -q '^record 1: ECORRUPT' "$d/out" || fail "verify report: $(cat "$d/out")"

# cat never prints it: it stops there (exit 1, naming it), or with
# --skip-corrupt names it, passes over it and exits 3.
rc=0; "$rill" log cat "$d" t >"$d/out" 2>"$d/err" || rc=$?
[ $rc -eq 1 ] || fail "cat over damage: exit $rc"
[ "$(awk '{print $1}' "$d/out")" = 0 ] || fail "cat printed past the damage: $(cat "$d/out")"
grep -q '^rill log: record 1 is damaged' "$d/err" || fail "cat damage message: $(cat "$d/err")"
rc=0; "$rill" log cat "$d" t --skip-corrupt >"$d/out" 2>"$d/err" || rc=$?
[ $rc -eq 3 ] || fail "cat --skip-corrupt: exit $rc"
[ "$(awk '{print $1}' "$d/out" | tr '\n' ' ')" = '0 2 3 4 5 6 7 ' ] || \
  fail "cat --skip-corrupt printed: $(cat "$d/out")"
grep -q '^rill log: record 1 is damaged, skipped' "$d/err" || fail "skip message: $(cat "$d/err")"
grep -q '^rill log: 1 damaged record(s) skipped$' "$d/err" || fail "skip count: $(cat "$d/err")"
rc=0; "$rill" log cat "$d" t --json --from 2 >/dev/null 2>&1 || rc=$?
[ $rc -eq 0 ] || fail "cat after the damage: exit $rc"
if "$rill" log stat "$d" t --skip-corrupt >/dev/null 2>&1; then fail "--skip-corrupt on stat"; fi

# dump goes on past it, marks and names it, and exits 1 as verify does.
rc=0; "$rill" log dump "$d" t >"$d/out" 2>"$d/err" || rc=$?
[ $rc -eq 1 ] || fail "dump over damage: exit $rc"
grep -qE '^ +1  DAMAGED ' "$d/out" || fail "dump marks it: $(cat "$d/out")"
[ "$(grep -cE '^ +[0-9]+  [0-9]+ ' "$d/out")" = 7 ] || fail "dump goes on: $(cat "$d/out")"
grep -q '^rill log: record 1 is damaged: ECORRUPT' "$d/err" || fail "dump names it: $(cat "$d/err")"
grep -q '^rill log: 1 damaged record(s)$' "$d/err" || fail "dump count: $(cat "$d/err")"
rc=0; "$rill" log dump "$d" t --json >"$d/out" 2>/dev/null || rc=$?
[ $rc -eq 1 ] || fail "dump --json over damage: exit $rc"
grep -q '^{"seq":1,"ok":false,"error":"ECORRUPT' "$d/out" || fail "dump json: $(cat "$d/out")"
rc=0; "$rill" log dump "$d" t --from 2 >/dev/null 2>&1 || rc=$?
[ $rc -eq 0 ] || fail "dump after the damage: exit $rc"
# The other commands on the damaged log: tail stops at it as cat does;
# stat and append do not read records (verify is what looks).
rc=0; "$rill" log tail "$d" t --from 0 --count 3 >"$d/out" 2>/dev/null || rc=$?
[ $rc -eq 1 ] || fail "tail over damage: exit $rc"
rc=0; "$rill" log tail "$d" t --from 0 --count 2 --skip-corrupt >"$d/out" 2>/dev/null || rc=$?
[ $rc -eq 3 ] || fail "tail --skip-corrupt over damage: exit $rc"
[ "$(awk '{print $1}' "$d/out" | tr '\n' ' ')" = '0 2 ' ] || fail "tail --skip-corrupt: $(cat "$d/out")"
"$rill" log stat "$d" t >/dev/null || fail "stat of a damaged log"
# A damaged segment header: every command fails to open it (exit 1).
cp -r "$d/t" "$d/h"
printf 'Z' | dd of="$d/h/00000000000000000000.seg" bs=1 seek=8 conv=notrunc status=none
for c in cat tail stat verify dump append; do
  rec=(); [ $c = append ] && rec=(x)
  rc=0; "$rill" log $c "$d" h "${rec[@]}" >/dev/null 2>"$d/err" || rc=$?
  [ $rc -eq 1 ] || fail "$c of a damaged header: exit $rc"
  grep -q 'ECORRUPT' "$d/err" || fail "$c of a damaged header: $(cat "$d/err")"
done

# Bad input is an error code and a message, never a crash.
if "$rill" log cat "$d" nosuch 2>"$d/err"; then fail "missing topic"; fi
grep -q ENOENT "$d/err" || fail "missing topic message"
if "$rill" log cat "$d" t --from x 2>/dev/null; then fail "bad --from"; fi
if "$rill" log append "$d" ../t x 2>"$d/err"; then fail "bad topic name"; fi
grep -q EINVAL "$d/err" || fail "bad topic message"
if "$rill" log frob "$d" t 2>/dev/null; then fail "unknown command"; fi
echo "rill log: all checks passed"
