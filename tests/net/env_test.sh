#!/usr/bin/env bash
# RILL_SERVER, RILL_TOKEN and --token-file: a server whose token comes
# from a file, clients finding it and their token through the
# environment or a file, a flag winning over the environment, and the
# token nowhere in the processes' command lines. Usage: env_test.sh rill
rill=$1
# shellcheck source=tests/net/lib.sh
. "$(dirname "$0")/lib.sh"

printf 's3cret-tk\n' >"$d/token"
serve --token-file "$d/token"
grep -q "listening on 127.0.0.1:$port, .*token required" "$d/serve.out" || fail "server: $(cat "$d/serve.out")"
tr '\0' ' ' </proc/$srv/cmdline | grep -q s3cret && fail "the server's token in ps"

# The environment: no --server, no --token.
export RILL_SERVER=127.0.0.1:$port RILL_TOKEN=s3cret-tk
[ "$("$rill" pub --ack t one)" = 0 ] || fail "pub with RILL_SERVER and RILL_TOKEN"
[ "$("$rill" topic ls)" = t ] || fail "topic ls with the environment"
"$rill" stat --interval 0.05 >/dev/null || fail "stat with the environment"
# A token file, and nothing of it in ps.
unset RILL_TOKEN
if "$rill" pub t x 2>"$d/err"; then fail "no token accepted"; fi
grep -q EACCES "$d/err" || fail "no token: $(cat "$d/err")"
"$rill" sub --token-file "$d/token" --from earliest --count 2 t >"$d/sub.out" &
sub=$!
sleep 0.3
tr '\0' ' ' </proc/$sub/cmdline | grep -q s3cret && fail "the token in ps"
"$rill" pub --token-file="$d/token" t two
wait $sub || fail "sub --token-file"
sub=
[ "$(cat "$d/sub.out")" = $'0 one\n1 two' ] || fail "sub --token-file: $(cat "$d/sub.out")"
# A flag wins over the environment.
export RILL_TOKEN=wrong RILL_SERVER=127.0.0.1:1
if "$rill" pub t x 2>/dev/null; then fail "a wrong RILL_TOKEN and RILL_SERVER accepted"; fi
[ "$("$rill" pub --server 127.0.0.1:$port --token s3cret-tk --ack t three)" = 2 ] ||
  fail "flags over the environment"
[ "$("$rill" pub --server 127.0.0.1:$port --token-file "$d/token" --ack t four)" = 3 ] ||
  fail "--token-file over RILL_TOKEN"
# Mistakes: usage errors (exit 2) naming what is wrong.
st=0
"$rill" pub --token a --token-file "$d/token" t x 2>"$d/err" || st=$?
[ $st = 2 ] && grep -q "one or the other" "$d/err" || fail "--token and --token-file: $st $(cat "$d/err")"
st=0
"$rill" pub --token-file "$d/nosuch" t x 2>"$d/err" || st=$?
[ $st = 2 ] && grep -q "nosuch: No such file" "$d/err" || fail "missing token file: $st $(cat "$d/err")"
: >"$d/empty"
st=0
"$rill" sub --token-file "$d/empty" t 2>"$d/err" || st=$?
[ $st = 2 ] && grep -q "no token on its first line" "$d/err" || fail "empty token file: $(cat "$d/err")"
st=0
RILL_SERVER=host:port "$rill" topic ls 2>"$d/err" || st=$?
[ $st = 2 ] && grep -q "RILL_SERVER wants HOST:PORT" "$d/err" || fail "bad RILL_SERVER: $(cat "$d/err")"
# The server takes RILL_TOKEN too, under its flags and config file.
unset RILL_SERVER RILL_TOKEN
RILL_TOKEN=envtk "$rill" serve --print-config | grep -q '^# token = (set, not shown)$' ||
  fail "serve with RILL_TOKEN"
"$rill" serve --print-config | grep -q '^# token = (none)$' || fail "serve without a token"
echo "RILL_SERVER, RILL_TOKEN, --token-file: all checks passed"
