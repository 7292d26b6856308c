#!/usr/bin/env bash
# rill serve, pub, sub, ask and reply end to end: a server on a free port,
# acknowledged and plain publishes, a subscriber from the earliest record
# and one from the latest, an ask answered by rill reply's echo, a wrong
# token refused, a clean stop on SIGTERM, and the topic's log readable
# afterwards with rill log. Then what a new user meets: options a command
# does not take refused, sub --timeout, pub sending lines as they come and
# on SIGINT, a refused line named with where to resume, and a sub whose
# server stops exiting non-zero. Usage: cli_test.sh rill
set -euo pipefail
rill=$1
d=$(mktemp -d)
srv=
rep=
cleanup() {
  [ -n "$rep" ] && kill "$rep" 2>/dev/null
  [ -n "$srv" ] && kill "$srv" 2>/dev/null
  rm -rf "$d"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$d/serve.out" ] && cat "$d/serve.out" >&2; exit 1; }

# A free port: the kernel's pick for a socket we close at once.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$rill" serve --listen 127.0.0.1:$port --data "$d/data" --token tk --max-message 2097152 \
  --segment-bytes 4M --topic.made.segment-bytes 128K --topic.made.retain-count 10 \
  >"$d/serve.out" 2>&1 &
srv=$!
for _ in $(seq 100); do grep -q listening "$d/serve.out" 2>/dev/null && break; sleep 0.05; done
grep -q "listening on 127.0.0.1:$port" "$d/serve.out" || fail "server did not start"

# A second server on the same data directory fails at start, naming the first.
port2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if "$rill" serve --listen 127.0.0.1:$port2 --data "$d/data" >"$d/serve2.out" 2>&1; then
  fail "a second server on one data directory started"
fi
grep -q "in use by another server (pid $srv)" "$d/serve2.out" || fail "second server: $(cat "$d/serve2.out")"
if "$rill" serve --listen 127.0.0.1:$port2 --data "$d/serve.out" >"$d/serve2.out" 2>&1; then
  fail "a server on a file started"
fi
grep -q "not a directory" "$d/serve2.out" || fail "server on a file: $(cat "$d/serve2.out")"

s="--server 127.0.0.1:$port --token tk"
[ "$("$rill" pub $s --ack orders first second)" = $'0\n1' ] || fail "pub --ack"
printf 'third\nfourth\n' | "$rill" pub $s orders || fail "pub from stdin"
[ "$("$rill" sub $s --from earliest --count 4 orders)" = $'0 first\n1 second\n2 third\n3 fourth' ] ||
  fail "sub from earliest"
"$rill" sub $s --from earliest --count 1 --json orders | grep -q '^{"seq":0,"len":5,"data":"first"}$' ||
  fail "sub --json"

# From the latest: only what comes after it subscribed.
"$rill" sub $s --count 1 orders >"$d/live" &
sub=$!
sleep 0.3
"$rill" pub $s --ack orders fifth >/dev/null
wait $sub || fail "live sub"
[ "$(cat "$d/live")" = "4 fifth" ] || fail "live sub got: $(cat "$d/live")"

if "$rill" pub --server 127.0.0.1:$port --token nope orders x 2>"$d/err"; then fail "wrong token"; fi
grep -q EACCES "$d/err" || fail "wrong token message: $(cat "$d/err")"
if "$rill" pub $s 'bad/topic' x 2>"$d/err"; then fail "bad topic"; fi

# Each command takes only its own options: one it does not use is an error
# that names it (it used to be accepted and ignored).
if "$rill" sub $s --ack orders 2>"$d/err"; then fail "sub --ack accepted"; fi
grep -q -- "--ack is not an option of rill sub" "$d/err" || fail "sub --ack: $(cat "$d/err")"
if "$rill" pub $s --count 1 orders x 2>"$d/err"; then fail "pub --count accepted"; fi
grep -q -- "--count is not an option of rill pub" "$d/err" || fail "pub --count: $(cat "$d/err")"
"$rill" sub -h | grep -q "^usage: rill sub" || fail "sub -h is help, not a topic"
[ "$("$rill" pub $s --ack dash -- -5)" = 0 ] || fail "-- ends the options"

# sub --timeout: nothing comes, so it gives up, says so, and exits non-zero.
if "$rill" sub $s --timeout 300 orders >"$d/out" 2>"$d/err"; then fail "sub --timeout exit 0"; fi
grep -q "no record for 300 ms" "$d/err" || fail "sub --timeout: $(cat "$d/err")"

# pub sends lines as they come, not at EOF: two lines into a pipe kept
# open reach a subscriber while pub still runs; SIGINT then ends pub, which
# says what it sent (and that the unfinished line was not).
mkfifo "$d/fifo"
"$rill" pub $s live <"$d/fifo" 2>"$d/pub.err" &
pub=$!
exec 7>"$d/fifo"
printf 'one\ntwo\npart' >&7
[ "$("$rill" sub $s --from earliest --count 2 --timeout 5000 --create live)" = $'0 one\n1 two' ] ||
  fail "pub held its lines back"
kill -INT $pub
st=0
wait $pub || st=$?
exec 7>&-
[ $st = 130 ] || fail "pub after SIGINT: exit $st, $(cat "$d/pub.err")"
grep -q "the 2 lines read were published; an unfinished line of 4 bytes was not" "$d/pub.err" ||
  fail "pub after SIGINT: $(cat "$d/pub.err")"

# A line the server refuses (over its max_message of 2 MiB): pub names it,
# stops there (m3 and m4 are not stored after it) and says where to resume.
if { echo m1; head -c 3000000 /dev/zero | tr '\0' a; printf '\nm3\nm4\n'; } |
  "$rill" pub $s parts 2>"$d/err"; then fail "pub of a refused line exit 0"; fi
grep -q "line 2 (3000000 bytes) was not published" "$d/err" || fail "refused line: $(cat "$d/err")"
grep -q "1 line was stored before it; nothing after line 2 was sent: resume from line 2" "$d/err" ||
  fail "refused line: $(cat "$d/err")"
"$rill" sub $s --from earliest --timeout 500 parts >"$d/out" 2>/dev/null || true
[ "$(cat "$d/out")" = "0 m1" ] || fail "after a refused line: $(cat "$d/out")"

# A service: rill reply echoes each ask, rill ask prints the reply.
"$rill" reply $s echo >"$d/reply.out" 2>&1 &
rep=$!
for _ in $(seq 100); do grep -q serving "$d/reply.out" 2>/dev/null && break; sleep 0.05; done
grep -q "serving echo" "$d/reply.out" || fail "rill reply did not start: $(cat "$d/reply.out")"
[ "$("$rill" ask $s --timeout 2000 echo hello)" = "hello" ] || fail "ask"
[ "$(printf 'from\nstdin' | "$rill" ask $s echo)" = $'from\nstdin' ] || fail "ask from stdin"
kill -TERM $rep
st=0
wait $rep || st=$?
[ $st = 143 ] || fail "rill reply exit status after SIGTERM: $st $(cat "$d/reply.out")"
rep=
if "$rill" ask $s --timeout 500 echo x 2>"$d/err"; then fail "ask with nobody serving"; fi
grep -q ENOENT "$d/err" || fail "ask with nobody serving: $(cat "$d/err")"

# A subscription to a topic nobody made is an error at once, not a new
# topic waiting forever; --create makes one. rill topic lists, describes
# and deletes them.
if timeout 10 "$rill" sub $s --count 1 ordres 2>"$d/err"; then fail "sub of a missing topic"; fi
grep -q "no topic 'ordres'" "$d/err" || fail "sub of a missing topic: $(cat "$d/err")"
timeout 10 "$rill" sub $s --create --count 0 made || fail "sub --create"
[ "$("$rill" topic ls $s)" = $'dash\nlive\nmade\norders\nparts' ] || fail "topic ls: $("$rill" topic ls $s)"
"$rill" topic info $s orders >"$d/info" || fail "topic info"
grep -qx 'next           5' "$d/info" || fail "topic info: $(cat "$d/info")"
grep -qx 'segment_bytes  4194304' "$d/info" || fail "topic info segment: $(cat "$d/info")"
"$rill" topic info $s made >"$d/info" || fail "topic info made"
grep -qx 'segment_bytes  131072' "$d/info" || fail "per-topic segment: $(cat "$d/info")"
grep -qx 'retain_count   10' "$d/info" || fail "per-topic retention: $(cat "$d/info")"
"$rill" topic rm $s made || fail "topic rm"
[ "$("$rill" topic ls $s)" = $'dash\nlive\norders\nparts' ] || fail "topic ls after rm"
if "$rill" topic rm $s made 2>"$d/err"; then fail "topic rm of a missing topic"; fi
grep -q ENOENT "$d/err" || fail "topic rm of a missing topic: $(cat "$d/err")"
if "$rill" topic info $s nosuch 2>"$d/err"; then fail "topic info of a missing topic"; fi

# A sub whose server stops before --count says so and exits non-zero.
"$rill" sub $s --count 5 orders 2>"$d/sub.err" &
sub=$!
sleep 0.3
kill -TERM $srv
st=0
wait $srv || st=$?
[ $st = 143 ] || fail "server exit status after SIGTERM: $st"
srv=
st=0
wait $sub || st=$?
[ $st != 0 ] || fail "sub exit 0 when the server stopped"
grep -q "the server ended the subscription after 0 records" "$d/sub.err" ||
  fail "sub when the server stopped: $(cat "$d/sub.err")"
grep -q "stopped; .* 9 published" "$d/serve.out" || fail "server summary: $(cat "$d/serve.out")"
# Its log: topics created and deleted, and the wrong token's connection.
grep -Eq "^[0-9T:.-]+Z rill serve: info: topic 'orders' created$" "$d/serve.out" || fail "log: created"
grep -q "info: topic 'made' deleted" "$d/serve.out" || fail "log: deleted"
grep -q "info: closing the connection from 127.0.0.1:[0-9]*: wrong or missing token" "$d/serve.out" ||
  fail "log: the wrong token"
[ "$("$rill" log cat "$d/data" orders | awk '{print $1, $4}')" = \
  $'0 first\n1 second\n2 third\n3 fourth\n4 fifth' ] || fail "the log after the server stopped"
echo "rill serve/pub/sub/ask/reply: all checks passed"
