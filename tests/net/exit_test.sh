#!/usr/bin/env bash
# One exit-status convention for every command, as rill --help says: 0
# success, 1 a runtime failure, 2 a usage error, 3 a partial success, and
# 130 or 143 for every long-running command stopped by SIGINT or SIGTERM
# (it finishes cleanly, then dies of the signal). Usage: exit_test.sh rill
rill=$1
# shellcheck source=tests/net/lib.sh
. "$(dirname "$0")/lib.sh"
more_cleanup() { rm -f /dev/shm/rill.exit-test-$$; }

"$rill" --help >"$d/help"
grep -q "^exit status: 0 success; 1 a runtime failure" "$d/help" || fail "rill --help: exit status"
grep -q "130 or 143" "$d/help" || fail "rill --help: signals"

# start NAME CMD...: runs CMD in the background with stdin from a fifo
# kept open, stdout and stderr in $d/NAME.*, its pid in $pid.
start() {
  local name=$1
  shift
  mkfifo "$d/$name.in"
  "$@" <"$d/$name.in" >"$d/$name.out" 2>"$d/$name.err" &
  pid=$!
  exec {fd}>"$d/$name.in"
  eval "fd_$name=$fd"
}
# ready PID: waits until PID catches (or blocks, to sigwait) both SIGINT
# and SIGTERM: before, a background job has them ignored by the shell.
ready() {
  for _ in $(seq 200); do
    local cgt blk
    cgt=$(awk '/^SigCgt:/ {print $2}' /proc/"$1"/status 2>/dev/null || echo 0)
    blk=$(awk '/^SigBlk:/ {print $2}' /proc/"$1"/status 2>/dev/null || echo 0)
    (( ((0x$cgt | 0x$blk) & 0x4002) == 0x4002 )) && return 0
    sleep 0.05
  done
  fail "pid $1 never caught SIGINT and SIGTERM"
}
# stopped NAME SIG WANT: sends SIG to $pid once it is ready, expects WANT.
stopped() {
  ready "$pid"
  sleep 0.1
  kill -"$2" "$pid"
  local st=0
  wait "$pid" || st=$?
  [ "$st" = "$3" ] || fail "$1 after SIG$2: exit $st, want $3: $(cat "$d/$1.err")"
}

port=$(free_port)
start serve "$rill" serve --listen 127.0.0.1:$port --data "$d/data"
srv=$pid
for _ in $(seq 100); do grep -q listening "$d/serve.out" 2>/dev/null && break; sleep 0.05; done
grep -q listening "$d/serve.out" || fail "server: $(cat "$d/serve.err")"
export RILL_SERVER=127.0.0.1:$port

start sub "$rill" sub --create t
stopped sub INT 130
start sub2 "$rill" sub t
stopped sub2 TERM 143
start reply "$rill" reply svc
stopped reply INT 130
start pub "$rill" pub t
stopped pub TERM 143
grep -q "the 0 lines read were published" "$d/pub.err" || fail "pub: $(cat "$d/pub.err")"
start stat "$rill" stat --count 100 --interval 0.1
stopped stat INT 130
"$rill" log append "$d/log" t a >/dev/null
start tail "$rill" log tail "$d/log" t
stopped tail INT 130
start tail2 "$rill" log tail "$d/log" t
stopped tail2 TERM 143
start ipcsub "$rill" ipc sub exit-test-$$
stopped ipcsub INT 130
start ipcpub "$rill" ipc pub exit-test-$$
stopped ipcpub TERM 143

# 1: a runtime failure (no server there); 2: a usage error.
st=0
"$rill" pub --server 127.0.0.1:1 t x 2>/dev/null || st=$?
[ $st = 1 ] || fail "pub to no server: exit $st"
st=0
"$rill" sub --timeout 100 t 2>/dev/null || st=$?
[ $st = 1 ] || fail "sub --timeout: exit $st"
st=0
"$rill" sub --bogus t 2>/dev/null || st=$?
[ $st = 2 ] || fail "sub --bogus: exit $st"

# The server last: SIGINT, after a clean stop.
pid=$srv
stopped serve INT 130
grep -q "rill serve: stopped" "$d/serve.out" || fail "serve did not stop cleanly: $(cat "$d/serve.out")"
echo "exit statuses: all checks passed"
