#!/usr/bin/env bash
# The rill command's one way of taking arguments, the same for every
# subcommand: help at every level on stdout with exit 0; usage errors on
# stderr with exit 2; options before or after the positional arguments,
# as --opt value or --opt=value; -- ending them (a message that is
# literally --ack); --timeout -5 refused by every command that takes it,
# naming it; an option a command does not take refused.
# Usage: args_test.sh rill
rill=$1
# shellcheck source=tests/net/lib.sh
. "$(dirname "$0")/lib.sh"

# Help: every spelling, every level, on stdout, exit 0, nothing on stderr.
while read -r args; do
  st=0
  # shellcheck disable=SC2086
  "$rill" $args >"$d/out" 2>"$d/err" || st=$?
  [ $st = 0 ] || fail "rill $args: exit $st"
  [ -s "$d/out" ] || fail "rill $args: no help on stdout"
  [ ! -s "$d/err" ] || fail "rill $args: stderr: $(cat "$d/err")"
  grep -q '^usage: rill' "$d/out" || fail "rill $args: $(head -2 "$d/out")"
done <<'ARGS'
help
--help
-h
help pub
pub --help
pub -h
pub help
help sub
sub --help
sub -h
ask help
ask --help
reply -h
reply help
serve help
serve --help
serve -h
help serve
log help
log --help
log cat --help
log cat help
help log cat
stat --help
stat help
help stat
topic help
topic ls --help
topic info -h
ipc help
ipc sub --help
ipc pub help
help ipc
ARGS
# The benches, when this rill has them (RILL_BENCH).
if "$rill" bench list >/dev/null 2>&1; then
  for args in "bench help" "help bench" "bench --help"; do
    # shellcheck disable=SC2086
    "$rill" $args 2>"$d/err" | grep -q '^usage: rill bench' || fail "rill $args: $(cat "$d/err")"
  done
fi

# Usage errors: on stderr, exit 2, nothing on stdout.
usage_error() {
  local want=$1
  shift
  st=0
  "$rill" "$@" >"$d/out" 2>"$d/err" || st=$?
  [ $st = 2 ] || fail "rill $*: exit $st, want 2"
  [ ! -s "$d/out" ] || fail "rill $*: stdout: $(cat "$d/out")"
  grep -q -- "$want" "$d/err" || fail "rill $*: stderr: $(cat "$d/err")"
}
usage_error "unknown command" frob
usage_error "usage: rill" # no command at all
# --timeout -5 and --timeout=-5, everywhere it is taken, refused naming it.
for cmd in "pub t x" "sub t" "ask svc x" "ipc pub r x" "ipc sub r"; do
  # shellcheck disable=SC2086
  usage_error "--timeout wants milliseconds" $cmd --timeout -5
  # shellcheck disable=SC2086
  usage_error "--timeout wants milliseconds" $cmd --timeout=-5
done
usage_error "--timeout wants milliseconds" sub --timeout 5x t
# The net commands wait 1 ms at least: an ask with 0 could only time out,
# and pub's 0 would be the library's default, not "do not wait".
for cmd in "pub t x" "sub t" "ask svc x"; do
  # shellcheck disable=SC2086
  usage_error "--timeout wants milliseconds from 1" $cmd --timeout 0
done
usage_error "--count wants a number" sub --count -1 t
usage_error "--count wants a number" log cat --count=-1 "$d" t
usage_error "--from wants" sub --from yesterday t
usage_error "--interval wants seconds" stat --interval -1
usage_error "--count wants a number" stat --count 0
usage_error "--max-conns wants a count" serve --max-conns=0
usage_error "--timeout wants a value" sub t --timeout
usage_error "--json takes no value" sub --json=yes t
# An option a command does not take is an error naming it, not ignored.
usage_error "--ack is not an option of rill sub" sub --ack t
usage_error "--count is not an option of rill pub" pub --count 1 t x
usage_error "--sync is not an option of rill log cat" log cat --sync group "$d" t
usage_error "--skip-corrupt is not an option of rill log dump" log dump --skip-corrupt "$d" t
usage_error "--force is not an option of rill ipc ls" ipc ls --force
usage_error "--bogus is not an option of rill serve" serve --bogus 1
usage_error "--bogus is not an option of rill stat" stat --bogus
usage_error "-x is not an option of rill topic ls" topic ls -x
usage_error "unexpected argument" serve extra
usage_error "a topic is needed" pub
usage_error "DIR and TOPIC are needed" log cat "$d"

# Options anywhere, and --opt=value, for the log (no server needed).
"$rill" log append "$d" t one two >/dev/null
[ "$("$rill" log cat --json "$d" t --count=1 | sed 's/"ts_ns":[0-9]*,//')" = \
  '{"seq":0,"len":3,"data":"one"}' ] || fail "log cat --json DIR T"
[ "$("$rill" log cat --from=1 "$d" --json t | grep -c '"data":"two"')" = 1 ] || fail "log cat --from="
"$rill" log append "$d" t -- --json >/dev/null
[ "$("$rill" log cat "$d" t --from 2 --json | grep -c '"data":"--json"')" = 1 ] ||
  fail "log append -- --json"

# With a server: options after the topic, --opt=value, -- before a message
# that is literally --ack.
serve
[ "$("$rill" pub t --server=127.0.0.1:$port --ack -- --ack -h)" = $'0\n1' ] || fail "pub -- --ack"
[ "$("$rill" sub t --count=2 --server 127.0.0.1:$port --from=earliest)" = $'0 --ack\n1 -h' ] ||
  fail "sub: options after the topic"
[ "$("$rill" topic ls --server=127.0.0.1:$port)" = t ] || fail "topic ls --server="
echo "rill arguments: all checks passed"
