#!/usr/bin/env bash
# rill ipc pub, sub, ls and rm end to end: a route created by a pub, a sub
# in the background that prints what is published after it attached, ls
# showing the route with its sender gone, rm removing it, and bad
# arguments refused with a message. Usage: cli_test.sh rill
set -euo pipefail
rill=$1
d=$(mktemp -d)
name="rill-cli-test-$$"
sub=
cleanup() {
  [ -n "$sub" ] && kill "$sub" 2>/dev/null
  "$rill" ipc rm "$name" 2>/dev/null || true
  rm -rf "$d"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# Polls `rill ipc ls --json` until the route's line matches a pattern.
wait_ls() {
  for _ in $(seq 100); do
    "$rill" ipc ls --json | grep "\"name\":\"$name\"" | grep -q "$1" && return 0
    sleep 0.05
  done
  fail "ls never showed $1: $("$rill" ipc ls)"
}

# A pub with nothing to send creates the route with its layout.
"$rill" ipc pub --slots 64 --slot-size 128 "$name" </dev/null || fail "pub creating the route"
"$rill" ipc ls | grep -q "^$name .*64x128 .*block" || fail "ls after create: $("$rill" ipc ls)"

# A sub receives what is published once it is attached.
"$rill" ipc sub --count 3 --timeout 10000 "$name" >"$d/sub.out" 2>"$d/sub.err" &
sub=$!
wait_ls '"receivers":1,'
printf 'first\nsecond\n' | "$rill" ipc pub "$name" || fail "pub from stdin"
"$rill" ipc pub "$name" 'third one' || fail "pub from arguments"
wait $sub || fail "sub exit status: $(cat "$d/sub.err")"
sub=
[ "$(cat "$d/sub.out")" = $'first\nsecond\nthird one' ] || fail "sub printed: $(cat "$d/sub.out")"

# The pubs are gone: no live sender; three messages published; the
# receiver left cleanly, so no place is taken.
wait_ls '"receivers":0,'
line=$("$rill" ipc ls --json | grep "\"name\":\"$name\"")
echo "$line" | grep -q '"head":3,' || fail "ls head: $line"
echo "$line" | grep -q '"sender_alive":false' || fail "ls sender: $line"
"$rill" ipc ls | grep "^$name " | grep -Eq ' (none|[0-9]+ dead) ' ||
  fail "ls table sender: $("$rill" ipc ls)"

# --json, and a sub that times out short of its count fails.
"$rill" ipc sub --count 1 --json --timeout 5000 "$name" >"$d/json.out" &
sub=$!
wait_ls '"receivers":1,'
"$rill" ipc pub "$name" 'a "quoted" line'
wait $sub || fail "sub --json"
sub=
grep -q '^{"seq":3,"len":15,"data":"a \\"quoted\\" line"}$' "$d/json.out" ||
  fail "sub --json printed: $(cat "$d/json.out")"
if "$rill" ipc sub --count 1 --timeout 200 "$name" 2>"$d/err"; then fail "sub timeout"; fi
grep -q "0 of 1 messages" "$d/err" || fail "sub timeout message: $(cat "$d/err")"

# A message larger than a slot is refused with a message.
big=$(head -c 200 /dev/zero | tr '\0' x)
if "$rill" ipc pub "$name" "$big" 2>"$d/err"; then fail "oversized message"; fi
grep -q "at most 112" "$d/err" || fail "oversized message: $(cat "$d/err")"

# rm removes it; a second rm, or a sub that gives up, says there is none.
"$rill" ipc rm "$name" || fail "rm"
"$rill" ipc ls --json | grep -q "\"name\":\"$name\"" && fail "ls after rm"
if "$rill" ipc rm "$name" 2>"$d/err"; then fail "rm twice"; fi
grep -q "no route $name" "$d/err" || fail "rm twice message: $(cat "$d/err")"
if "$rill" ipc sub --timeout 100 "$name" 2>"$d/err"; then fail "sub without a route"; fi
grep -q "no route $name" "$d/err" || fail "sub without a route: $(cat "$d/err")"

# Bad arguments: a message and a non-zero exit, never a crash.
bad() {
  local st=0
  "$rill" ipc "$@" >/dev/null 2>"$d/err" || st=$?
  [ "$st" -ne 0 ] && [ "$st" -lt 128 ] && [ -s "$d/err" ] || fail "rill ipc $* (status $st)"
}
bad
bad frobnicate
bad pub
bad sub
bad rm
bad pub --slots many "$name" x
bad pub --policy sometimes "$name" x
bad pub --slots 3 "$name" x
bad pub --slots 0 "$name" x
bad pub --slot-size 100 "$name" x
bad sub --count -1 "$name"
bad sub --bogus "$name"
bad ls extra
bad rm "$name" extra
bad pub 'bad/name' x
bad pub '.hidden' x
bad sub ''
"$rill" ipc ls --json | grep -q '"name":"bad' && fail "a bad name was created"
"$rill" ipc help | grep -q "rill ipc <command>" || fail "help"
echo "rill ipc pub/sub/ls/rm: all checks passed"
