#!/usr/bin/env bash
# --listen and --server as users write them: a host name (localhost), a
# port alone, HOST:PORT from RILL_SERVER, and IPv6 in brackets or bare,
# which librill does not take yet: refused at once, saying so (exit 2),
# not failing later with the address mangled. Usage: addr_test.sh rill
rill=$1
# shellcheck source=tests/net/lib.sh
. "$(dirname "$0")/lib.sh"

port=$(free_port)
"$rill" serve --listen localhost:$port --data "$d/data" >"$d/serve.out" 2>&1 &
srv=$!
for _ in $(seq 100); do grep -q listening "$d/serve.out" 2>/dev/null && break; sleep 0.05; done
grep -q "listening on 127.0.0.1:$port" "$d/serve.out" || fail "serve --listen localhost: $(cat "$d/serve.out")"
[ "$("$rill" pub --server localhost:$port --ack t one)" = 0 ] || fail "--server localhost:PORT"
[ "$(RILL_SERVER=localhost:$port "$rill" pub --ack t two)" = 1 ] || fail "RILL_SERVER=localhost:PORT"
[ "$("$rill" topic ls --server=:$port)" = t ] || fail "--server=:PORT"
"$rill" serve --listen :$port --print-config | grep -qx "listen = 127.0.0.1:$port" || fail "--listen :PORT"
"$rill" serve --listen localhost --print-config | grep -qx "listen = 127.0.0.1:7450" ||
  fail "--listen HOST"
for bad in "[::1]:$port" "::1" "[::1]"; do
  st=0
  "$rill" pub --server "$bad" t x 2>"$d/err" || st=$?
  [ $st = 2 ] && grep -q "an IPv6 address, which librill does not take yet" "$d/err" ||
    fail "--server $bad: $st $(cat "$d/err")"
  st=0
  "$rill" serve --listen "$bad" --print-config >/dev/null 2>"$d/err" || st=$?
  [ $st = 2 ] && grep -q "IPv6" "$d/err" || fail "--listen $bad: $st $(cat "$d/err")"
done
for bad in "[::1" "localhost:0" "localhost:99999" "localhost:x" ":"; do
  st=0
  "$rill" pub --server "$bad" t x 2>"$d/err" || st=$?
  [ $st = 2 ] && grep -q -- "--server wants HOST:PORT" "$d/err" || fail "--server $bad: $st $(cat "$d/err")"
done
echo "host names and addresses: all checks passed"
