#!/usr/bin/env bash
# rill ipc pub, sub, ls and rm end to end: a route created by a pub, a sub
# in the background that prints what is published after it attached, ls
# showing the route with its sender gone, rm removing it; channels (two
# pubs into one broadcast channel, a work queue shared by two subs, no
# overwrite policy, rm); rill ipc bench NAME on routes, a pool, a queue and
# --latency (the figures are not checked, only that the runs add up); and
# bad arguments refused with a message.
# Usage: cli_test.sh rill
set -euo pipefail
rill=$1
d=$(mktemp -d)
name="rill-cli-test-$$"
sub=
cleanup() {
  [ -z "$sub" ] || kill "$sub" 2>/dev/null || true
  "$rill" ipc rm --force "$name" 2>/dev/null || true
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
# --raw: the bytes exactly, backslashes and control bytes too.
"$rill" ipc sub --count 2 --raw --timeout 5000 "$name" >"$d/raw.out" &
sub=$!
wait_ls '"receivers":1,'
printf 'C:\\dir\001\n{"k":"\\n"}\n' | "$rill" ipc pub "$name"
wait $sub || fail "sub --raw"
sub=
printf 'C:\\dir\001\n{"k":"\\n"}\n' | cmp - "$d/raw.out" || fail "sub --raw printed: $(od -c "$d/raw.out")"
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
grep -q "no route or channel $name" "$d/err" || fail "rm twice message: $(cat "$d/err")"
if "$rill" ipc sub --timeout 100 "$name" 2>"$d/err"; then fail "sub without a route"; fi
grep -q "no route $name" "$d/err" || fail "sub without a route: $(cat "$d/err")"

# A route with a pool: a line over the slot payload goes through a chunk
# of the class that holds it, and arrives whole; ls shows the classes.
"$rill" ipc pub --slot-size 64 --pool 1024:4,8192:2 "$name" </dev/null || fail "pub --pool"
"$rill" ipc ls --json | grep "\"name\":\"$name\"" |
  grep -q '"pool":\[{"size":1024,"chunks":4},{"size":8192,"chunks":2}\]' ||
  fail "ls pool: $("$rill" ipc ls --json)"
"$rill" ipc sub --count 2 --timeout 10000 "$name" >"$d/pool.out" &
sub=$!
wait_ls '"receivers":1,'
big=$(head -c 5000 /dev/zero | tr '\0' y)
"$rill" ipc pub "$name" "$big" 'short' || fail "pub through the pool"
wait $sub || fail "sub of pooled lines"
sub=
[ "$(cat "$d/pool.out")" = "$big"$'\nshort' ] || fail "pooled line: $(wc -c <"$d/pool.out") bytes"
"$rill" ipc pub "$name" "$(head -c 9000 /dev/zero | tr '\0' z)" 2>"$d/big.err" &&
  fail "a line over the largest class was sent"
grep -q "takes at most 8192" "$d/big.err" || fail "over the pool: $(cat "$d/big.err")"
"$rill" ipc pub --pool 1024:4,512:2 "$name-bad" x 2>/dev/null && fail "descending classes taken"
rc=0
"$rill" ipc pub --pool 1024 "$name-bad" x 2>/dev/null || rc=$?
[ $rc -eq 2 ] || fail "--pool 1024: exit $rc, not a usage error"
"$rill" ipc rm "$name" || fail "rm of the pooled route"

# A channel with a pool, made by the sub that opens it first.
"$rill" ipc sub --channel --pool 8192:8 --count 2 --timeout 10000 "$name" >"$d/cpool.out" &
sub=$!
for _ in $(seq 100); do
  "$rill" ipc ls --json | grep "\"channel\":\"$name\"" | grep -q '"receivers":1,' && break
  sleep 0.05
done
"$rill" ipc ls --json | grep "\"channel\":\"$name\"" | grep -q '"pool":\[{"size":8192,"chunks":8}\]' ||
  fail "ls channel pool: $("$rill" ipc ls --json)"
"$rill" ipc pub --channel "$name" "$big" 'after' || fail "pub through a channel's pool"
wait $sub || fail "sub of a channel's pooled lines"
sub=
[ "$(cat "$d/cpool.out")" = "$big"$'\nafter' ] || fail "channel pooled line: $(wc -c <"$d/cpool.out") bytes"
"$rill" ipc rm "$name" || fail "rm of the pooled channel"

# Channels. Two pubs into one broadcast channel: a sub that opened it
# first (creating it) gets every line of both, each pub's in its order.
chan="$name-chan"
queue="$name-queue"
cleanup_chan() {
  "$rill" ipc rm "$chan" 2>/dev/null || true
  "$rill" ipc rm "$queue" 2>/dev/null || true
}
q1= q2=
trap '{ [ -n "$q1" ] && kill $q1 $q2 2>/dev/null; } || true; cleanup_chan; cleanup' EXIT
wait_chan() { # name pattern
  for _ in $(seq 100); do
    "$rill" ipc ls --json | grep "\"channel\":\"$1\"" | grep -q "$2" && return 0
    sleep 0.05
  done
  fail "ls never showed $1 with $2: $("$rill" ipc ls)"
}
"$rill" ipc sub --channel --count 6 --timeout 10000 "$chan" >"$d/chan.out" 2>"$d/chan.err" &
sub=$!
wait_chan "$chan" '"receivers":1,'
"$rill" ipc pub --channel "$chan" a1 a2 a3 &
p1=$!
printf 'b1\nb2\nb3\n' | "$rill" ipc pub --channel "$chan" || fail "channel pub from stdin"
wait $p1 || fail "channel pub from arguments"
wait $sub || fail "channel sub exit status: $(cat "$d/chan.err")"
sub=
[ "$(sort "$d/chan.out" | tr '\n' ' ')" = "a1 a2 a3 b1 b2 b3 " ] ||
  fail "channel sub printed: $(cat "$d/chan.out")"
[ "$(grep a "$d/chan.out" | tr '\n' ' ')" = "a1 a2 a3 " ] || fail "a's order: $(cat "$d/chan.out")"
[ "$(grep b "$d/chan.out" | tr '\n' ' ')" = "b1 b2 b3 " ] || fail "b's order: $(cat "$d/chan.out")"
line=$("$rill" ipc ls --json | grep "\"channel\":\"$chan\"")
echo "$line" | grep -q '"delivery":"broadcast"' || fail "ls channel: $line"
echo "$line" | grep -q '"claimed":6,' || fail "ls channel claimed: $line"
# --json on a channel; the seq is the channel's message number.
"$rill" ipc sub --channel --count 1 --json --timeout 10000 "$chan" >"$d/cj.out" &
sub=$!
wait_chan "$chan" '"receivers":1,'
"$rill" ipc pub --channel "$chan" 'c "q"' || fail "channel pub for --json"
wait $sub || fail "channel sub --json"
sub=
grep -q '^{"seq":6,"len":5,"data":"c \\"q\\""}$' "$d/cj.out" ||
  fail "channel sub --json printed: $(cat "$d/cj.out")"
# A route's commands on a channel, and the other delivery, are refused.
if "$rill" ipc pub "$chan" x 2>"$d/err"; then fail "route pub on a channel"; fi
grep -q "is a channel: add --channel" "$d/err" || fail "route pub on a channel: $(cat "$d/err")"
if "$rill" ipc pub --queue "$chan" x 2>"$d/err"; then fail "--queue on a broadcast channel"; fi
grep -q "use --channel" "$d/err" || fail "--queue on a broadcast channel: $(cat "$d/err")"

# A work queue with two subs: every line reaches exactly one of them.
# The pub creates it with room for all 200 lines, so it never waits.
"$rill" ipc pub --queue --slots 256 --senders 2 --receivers 2 "$queue" </dev/null ||
  fail "queue pub creating the channel"
"$rill" ipc ls | grep -q "^$queue .*256x128 .*queue" || fail "ls queue: $("$rill" ipc ls)"
# Neither knows how many it will get: both run until all 200 are printed,
# then leave on SIGTERM (a sub prints each message before it looks at a
# signal, so nothing taken is lost on the way out).
"$rill" ipc sub --queue --timeout 60000 "$queue" >"$d/q1.out" 2>"$d/q1.err" &
q1=$!
"$rill" ipc sub --queue --timeout 60000 "$queue" >"$d/q2.out" 2>"$d/q2.err" &
q2=$!
wait_chan "$queue" '"receivers":2,'
# A third receiver does not fit: --receivers 2.
if "$rill" ipc sub --queue --timeout 100 "$queue" 2>"$d/err"; then fail "a third receiver"; fi
grep -q EBUSY "$d/err" || fail "a third receiver: $(cat "$d/err")"
seq 1 100 | "$rill" ipc pub --queue "$queue" &
p1=$!
seq 101 200 | "$rill" ipc pub --queue "$queue" || fail "queue pub 2"
wait $p1 || fail "queue pub 1"
for _ in $(seq 400); do
  [ "$(cat "$d/q1.out" "$d/q2.out" | wc -l)" -ge 200 ] && break
  sleep 0.05
done
kill -TERM $q1 $q2
st=0
wait $q1 || st=$?
[ $st = 143 ] || fail "queue sub 1 after SIGTERM: $st $(cat "$d/q1.err")"
st=0
wait $q2 || st=$?
[ $st = 143 ] || fail "queue sub 2 after SIGTERM: $st $(cat "$d/q2.err")"
q1= q2=
[ "$(cat "$d/q1.out" "$d/q2.out" | sort -n | tr '\n' ' ')" = "$(seq 1 200 | tr '\n' ' ')" ] ||
  fail "queue: not each line once: $(wc -l "$d/q1.out" "$d/q2.out")"
line=$("$rill" ipc ls --json | grep "\"channel\":\"$queue\"")
echo "$line" | grep -q '"delivery":"queue"' || fail "ls queue: $line"

# No overwrite on a channel; layout options only with --channel/--queue.
st=0
"$rill" ipc pub --channel --policy overwrite "$name-x" x 2>"$d/err" || st=$?
[ "$st" -eq 2 ] || fail "--policy overwrite on a channel: status $st"
grep -q "overwrite is for routes" "$d/err" || fail "overwrite message: $(cat "$d/err")"
st=0
"$rill" ipc sub --queue --policy overwrite "$name-x" 2>"$d/err" || st=$?
[ "$st" -eq 2 ] || fail "sub --policy overwrite on a queue: status $st"
st=0
"$rill" ipc pub --senders 2 "$name-x" x 2>"$d/err" || st=$?
[ "$st" -eq 2 ] || fail "--senders without --channel: status $st"
"$rill" ipc ls --json | grep -q "$name-x" && fail "a refused channel was created"

# rm removes a channel as it does a route.
"$rill" ipc rm "$chan" || fail "rm channel"
"$rill" ipc rm "$queue" || fail "rm queue"
"$rill" ipc ls --json | grep -Eq "\"channel\":\"($chan|$queue)\"" && fail "ls after rm of channels"
if "$rill" ipc rm "$chan" 2>/dev/null; then fail "rm channel twice"; fi

# rill ipc bench NAME: a route made for the run, measured and removed.
bench="$name-bench"
lsname() { "$rill" ipc ls --json | grep -E "\"(name|channel)\":\"$1\"" || true; }
pubpid=
cleanup_bench() {
  { [ -n "$pubpid" ] && kill "$pubpid" 2>/dev/null; } || true
  "$rill" ipc rm --force "$name-demo" 2>/dev/null || true
  "$rill" ipc rm --force "$name-demo-c" 2>/dev/null || true
  "$rill" ipc rm --force "$name-demo-q" 2>/dev/null || true
  "$rill" ipc rm "$bench" 2>/dev/null || true
  "$rill" ipc rm "$bench.back" 2>/dev/null || true
}
trap '{ [ -n "$q1" ] && kill $q1 $q2 2>/dev/null; } || true; cleanup_bench; cleanup_chan; cleanup' EXIT
"$rill" ipc bench --count 20000 "$bench" >"$d/b.out" 2>"$d/b.err" || fail "bench: $(cat "$d/b.err")"
grep -q "^20000 messages of 64 bytes" "$d/b.out" || fail "bench output: $(cat "$d/b.out")"
grep -q "^receiver 0: 20000 messages in .* msg/s, .* MB/s$" "$d/b.out" || fail "bench: $(cat "$d/b.out")"
[ -z "$(lsname "$bench")" ] || fail "bench left its route: $(lsname "$bench")"
# Through the pool, with --json: one object, the layout in it.
"$rill" ipc bench --count 20000 --size 5000 --pool 8192:16 --receivers 2 --json "$bench" \
  >"$d/b.out" 2>"$d/b.err" || fail "bench --size 5000: $(cat "$d/b.err")"
[ "$(wc -l <"$d/b.out")" -eq 1 ] || fail "bench --json lines: $(cat "$d/b.out")"
grep -q '"mode":"throughput".*"pool":\[{"size":8192,"chunks":16}\].*"size":5000,"count":20000' \
  "$d/b.out" || fail "bench --json: $(cat "$d/b.out")"
[ "$(grep -o '"messages":20000,' "$d/b.out" | wc -l)" -eq 2 ] || fail "bench 2 receivers: $(cat "$d/b.out")"
grep -q '"ok":true}$' "$d/b.out" || fail "bench --json ok: $(cat "$d/b.out")"
# Too large for the route: the library's refusal, and no run.
st=0
"$rill" ipc bench --count 10 --size 5000 "$bench" >/dev/null 2>"$d/err" || st=$?
[ $st -eq 1 ] && grep -q EMSGSIZE "$d/err" || fail "bench --size over a slot: $st $(cat "$d/err")"
[ -z "$(lsname "$bench")" ] || fail "a refused bench left its route"
# A work queue, two senders and two receivers: their shares add up.
"$rill" ipc bench --queue --senders 2 --receivers 2 --count 20000 "$bench" >"$d/b.out" \
  2>"$d/b.err" || fail "bench --queue: $(cat "$d/b.err")"
grep -q "^received 20000 messages in " "$d/b.out" || fail "bench --queue: $(cat "$d/b.out")"
[ "$(grep -c '^  receiver [01]: ' "$d/b.out")" -eq 2 ] || fail "bench --queue: $(cat "$d/b.out")"
[ -z "$(lsname "$bench")" ] || fail "bench left its queue"
# Latency: a ping-pong over NAME and NAME.back, both removed after.
"$rill" ipc bench --latency --count 2000 "$bench" >"$d/b.out" 2>"$d/b.err" ||
  fail "bench --latency: $(cat "$d/b.err")"
grep -q "^2000 round trips of 64 bytes" "$d/b.out" || fail "bench --latency: $(cat "$d/b.out")"
grep -Eq "p50 [0-9]+ ns, p99 [0-9]+ ns, p999 [0-9]+ ns, max [0-9]+ ns" "$d/b.out" ||
  fail "bench --latency: $(cat "$d/b.out")"
[ -z "$(lsname "$bench")$(lsname "$bench.back")" ] || fail "bench --latency left a route"
# A route someone else made is used as it is and kept; while it has a
# live sender, bench refuses it rather than take it over.
"$rill" ipc pub --slots 64 "$bench" </dev/null || fail "pub for bench"
# Its stdin a fifo held open here: closing it ends the pub (no stray
# process keeps ctest's output open).
mkfifo "$d/fifo"
"$rill" ipc pub "$bench" <"$d/fifo" &
pubpid=$!
exec 3>"$d/fifo"
for _ in $(seq 100); do lsname "$bench" | grep -q '"sender_alive":true' && break; sleep 0.05; done
st=0
"$rill" ipc bench --count 10 "$bench" >/dev/null 2>"$d/err" || st=$?
[ $st -eq 1 ] && grep -q "live sender" "$d/err" || fail "bench on a live sender's route: $st $(cat "$d/err")"
exec 3>&-
wait $pubpid || fail "the pub holding the route"
pubpid=
"$rill" ipc bench --count 20000 "$bench" >"$d/b.out" 2>"$d/b.err" || fail "bench: $(cat "$d/b.err")"
grep -q "^route $bench (as it was): 64 slots of 128 bytes" "$d/b.out" || fail "bench: $(cat "$d/b.out")"
lsname "$bench" | grep -q '"head":20000,' || fail "bench on an existing route: $(lsname "$bench")"
st=0
"$rill" ipc bench --slots 128 --count 10 "$bench" >/dev/null 2>"$d/err" || st=$?
[ $st -eq 1 ] && grep -q EINVAL "$d/err" || fail "bench with another layout: $st $(cat "$d/err")"
"$rill" ipc rm "$bench" || fail "rm after bench"
# Usage errors are 2; the built-in suite is still `rill ipc bench` without NAME.
for args in "--size 4 $bench" "--count 0 $bench" "--senders 2 $bench" "--receivers 65 $bench" \
  "--latency --receivers 2 $bench" "--bogus $bench" "$bench extra" "--count 5" \
  "--queue --policy overwrite $bench"; do
  st=0
  # shellcheck disable=SC2086
  "$rill" ipc bench $args >/dev/null 2>"$d/err" || st=$?
  [ $st -eq 2 ] && [ -s "$d/err" ] || fail "rill ipc bench $args: status $st"
done
[ -z "$(lsname "$bench")" ] || fail "a refused bench made its route"
"$rill" ipc help | grep -q "bench .*NAME" || fail "help: bench NAME"
# bench's own usage, both forms, not `rill bench`'s.
for h in --help -h; do
  out=$("$rill" ipc bench $h) || fail "rill ipc bench $h: status $?"
  echo "$out" | grep -q "^usage: rill ipc bench .*--size" || fail "rill ipc bench $h: $out"
  echo "$out" | grep -q -e "--filter S" || fail "rill ipc bench $h: no suite form: $out"
  ! echo "$out" | grep -q "rill bench <suite>" || fail "rill ipc bench $h is rill bench's: $out"
done

# The README's demo, in its order: a sub waiting for a route that does not
# exist yet, then a pub that creates it and sends. The pub waits for the
# receiver before sending, so the sub gets both lines every time.
demo="$name-demo"
for i in $(seq 20); do
  "$rill" ipc sub --count 2 --timeout 10000 "$demo" >"$d/demo.out" 2>"$d/demo.err" &
  sub=$!
  "$rill" ipc pub --slots 1024 "$demo" 'a' "b$i" 2>"$d/demo.pub" || fail "demo pub $i: $(cat "$d/demo.pub")"
  wait $sub || fail "demo sub $i: $(cat "$d/demo.err")"
  sub=
  [ "$(cat "$d/demo.out")" = $'a\nb'"$i" ] || fail "demo $i: the sub printed '$(cat "$d/demo.out")'"
  "$rill" ipc rm "$demo" || fail "demo rm $i"
done
# A pub with nobody to receive says so and sends nothing: --timeout bounds
# its wait (0: none at all).
st=0
"$rill" ipc pub --timeout 200 "$demo" 'lost?' 2>"$d/err" || st=$?
[ $st -eq 1 ] && grep -q "no receiver on route $demo in time" "$d/err" ||
  fail "pub without a receiver: $st $(cat "$d/err")"
grep -q "0 messages sent" "$d/err" || fail "pub without a receiver: $(cat "$d/err")"
st=0
"$rill" ipc pub --timeout 0 "$demo" 'lost?' 2>"$d/err" || st=$?
[ $st -eq 1 ] && grep -q "no receiver on route $demo" "$d/err" || fail "pub --timeout 0: $st"
"$rill" ipc ls --json | grep "\"name\":\"$demo\"" | grep -q '"head":0,' ||
  fail "a pub without a receiver published: $("$rill" ipc ls --json)"
# Without --timeout it waits, and says so, until a receiver comes.
"$rill" ipc pub "$demo" 'late' 2>"$d/late.err" &
pubpid=$!
for _ in $(seq 100); do grep -q "waiting for one" "$d/late.err" && break; sleep 0.05; done
grep -q "no receiver on route $demo; waiting for one" "$d/late.err" || fail "pub waiting: $(cat "$d/late.err")"
"$rill" ipc sub --count 1 --timeout 10000 "$demo" >"$d/late.out" || fail "sub of a waiting pub"
wait $pubpid || fail "the waiting pub: $(cat "$d/late.err")"
pubpid=
[ "$(cat "$d/late.out")" = late ] || fail "late: $(cat "$d/late.out")"

# A broadcast channel the same: its pub waits for a receiver (--timeout
# bounds it); a queue's pub does not (the queue keeps the lines).
st=0
"$rill" ipc pub --channel --timeout 200 "$demo-c" 'lost?' 2>"$d/err" || st=$?
[ $st -eq 1 ] && grep -q "no receiver on channel $demo-c in time" "$d/err" ||
  fail "channel pub without a receiver: $st $(cat "$d/err")"
"$rill" ipc ls --json | grep "\"channel\":\"$demo-c\"" | grep -q '"claimed":0,' ||
  fail "a channel pub without a receiver sent: $("$rill" ipc ls --json)"
"$rill" ipc pub --channel "$demo-c" 'first' 'second' 2>"$d/late.err" &
pubpid=$!
for _ in $(seq 100); do grep -q "waiting for one" "$d/late.err" && break; sleep 0.05; done
"$rill" ipc sub --channel --count 2 --timeout 10000 "$demo-c" >"$d/late.out" || fail "channel sub"
wait $pubpid || fail "the waiting channel pub: $(cat "$d/late.err")"
pubpid=
[ "$(cat "$d/late.out")" = $'first\nsecond' ] || fail "channel late: $(cat "$d/late.out")"
"$rill" ipc rm "$demo-c" || fail "rm $demo-c"
"$rill" ipc pub --queue --timeout 0 "$demo-q" 'kept' || fail "queue pub without a receiver"
"$rill" ipc sub --queue --count 1 --timeout 10000 "$demo-q" >"$d/q.out" || fail "queue sub"
[ "$(cat "$d/q.out")" = kept ] || fail "queue kept: $(cat "$d/q.out")"
"$rill" ipc rm "$demo-q" || fail "rm $demo-q"

# rm refuses a route in use, naming who uses it; --force removes it, and
# the sub is told and exits 1.
"$rill" ipc sub --timeout 30000 "$demo" >/dev/null 2>"$d/rm.err" &
sub=$!
for _ in $(seq 100); do
  "$rill" ipc ls --json | grep "\"name\":\"$demo\"" | grep -q '"receivers":1,' && break
  sleep 0.05
done
st=0
"$rill" ipc rm "$demo" 2>"$d/err" || st=$?
[ $st -eq 1 ] && grep -q "route $demo is in use: 1 live receivers; --force" "$d/err" ||
  fail "rm of a route in use: $st $(cat "$d/err")"
"$rill" ipc ls --json | grep -q "\"name\":\"$demo\"" || fail "a refused rm removed the route"
"$rill" ipc rm --force "$demo" || fail "rm --force"
st=0
wait $sub || st=$?
sub=
[ $st -eq 1 ] && grep -q "route $demo was removed" "$d/rm.err" || fail "sub after rm: $st $(cat "$d/rm.err")"
# The same for a channel.
"$rill" ipc sub --channel --timeout 30000 "$demo" >/dev/null 2>"$d/rm.err" &
sub=$!
for _ in $(seq 100); do
  "$rill" ipc ls --json | grep "\"channel\":\"$demo\"" | grep -q '"receivers":1,' && break
  sleep 0.05
done
st=0
"$rill" ipc rm "$demo" 2>"$d/err" || st=$?
[ $st -eq 1 ] && grep -q "channel $demo is in use: 0 live senders and 1 live receivers" "$d/err" ||
  fail "rm of a channel in use: $st $(cat "$d/err")"
"$rill" ipc rm --force "$demo" || fail "rm --force of a channel"
st=0
wait $sub || st=$?
sub=
[ $st -eq 1 ] && grep -q "channel $demo was removed" "$d/rm.err" ||
  fail "channel sub after rm: $st $(cat "$d/rm.err")"

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
bad rm --bogus "$name"
bad pub 'bad/name' x
bad pub '.hidden' x
bad sub ''
bad pub --channel --queue "$name" x
bad pub --channel --senders 0 "$name" x
bad pub --channel --senders 65 "$name" x
bad sub --queue --receivers many "$name"
bad sub --slots 64 "$name"
"$rill" ipc ls --json | grep -q '"name":"bad' && fail "a bad name was created"
"$rill" ipc help | grep -q "rill ipc <command>" || fail "help"
echo "rill ipc pub/sub/ls/rm, routes and channels: all checks passed"
