#!/usr/bin/env bash
# --listen and --server as users write them: a host name (localhost), a
# port alone, HOST:PORT from RILL_SERVER, and IPv6 in brackets or bare,
# which librill resolves and dials itself (the IPv6 part is skipped where
# the machine has no ::1). Bad forms are refused at once, saying why
# (exit 2). Usage: addr_test.sh rill
rill=$1
# shellcheck source=tests/net/lib.sh
. "$(dirname "$0")/lib.sh"

port=$(free_port)
"$rill" serve --listen localhost:$port --data "$d/data" >"$d/serve.out" 2>&1 &
srv=$!
for _ in $(seq 100); do grep -q listening "$d/serve.out" 2>/dev/null && break; sleep 0.05; done
grep -q "listening on localhost:$port" "$d/serve.out" || fail "serve --listen localhost: $(cat "$d/serve.out")"
[ "$("$rill" pub --server localhost:$port --ack t one)" = 0 ] || fail "--server localhost:PORT"
[ "$(RILL_SERVER=localhost:$port "$rill" pub --ack t two)" = 1 ] || fail "RILL_SERVER=localhost:PORT"
[ "$("$rill" topic ls --server=:$port)" = t ] || fail "--server=:PORT"
"$rill" serve --listen :$port --print-config | grep -qx "listen = 127.0.0.1:$port" || fail "--listen :PORT"
"$rill" serve --listen localhost --print-config | grep -qx "listen = localhost:7450" ||
  fail "--listen HOST"
"$rill" serve --listen "[::1]:5000" --print-config | grep -qx "listen = \[::1\]:5000" ||
  fail "--listen [V6]:PORT"
printf 'listen = [::1]:0\nmetrics = [::1]:0\n' >"$d/v6.conf"
"$rill" serve --config "$d/v6.conf" --print-config | grep -qx "listen = \[::1\]:0" ||
  fail "listen = [V6]:PORT in a config file"
if python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null; then
  port6=$(free_port)
  "$rill" serve --listen "[::1]:$port6" --data "$d/data6" >"$d/serve6.out" 2>&1 &
  srv6=$!
  for _ in $(seq 100); do grep -q listening "$d/serve6.out" 2>/dev/null && break; sleep 0.05; done
  grep -q "listening on \[::1\]:$port6" "$d/serve6.out" || fail "serve on [::1]: $(cat "$d/serve6.out")"
  [ "$("$rill" pub --server "[::1]:$port6" --ack t6 one)" = 0 ] || fail "--server [::1]:PORT"
  [ "$(RILL_SERVER="[::1]:$port6" "$rill" pub --ack t6 two)" = 1 ] || fail "RILL_SERVER=[::1]:PORT"
  st=0
  "$rill" pub --server "127.0.0.1:$port6" --ack t6 three 2>"$d/err" || st=$?
  [ $st = 1 ] || fail "the IPv6 server answered on IPv4: $st $(cat "$d/err")"
  kill "$srv6"
  wait "$srv6" 2>/dev/null || true
else
  echo "no IPv6 loopback here: the IPv6 checks are skipped"
fi
for bad in "[::1" "[]:5" "localhost:0" "localhost:99999" "localhost:x" ":"; do
  st=0
  "$rill" pub --server "$bad" t x 2>"$d/err" || st=$?
  [ $st = 2 ] && grep -q -- "--server wants HOST:PORT" "$d/err" || fail "--server $bad: $st $(cat "$d/err")"
done
echo "host names and addresses: all checks passed"
