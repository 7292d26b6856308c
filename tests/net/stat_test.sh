#!/usr/bin/env bash
# rill stat's parsing and printing, on canned Prometheus text through the
# hidden --from-file option (once: totals; twice: rates over --interval):
# totals, rates, refusals, topics, quantiles from cumulative buckets,
# escapes, metrics stat has no row of its own for shown by name, and
# malformed text refused with its line; then a live server's refusal
# counters and SERVE gauge. Usage: stat_test.sh rill
set -euo pipefail
rill=$1
d=$(mktemp -d)
srv=
trap '[ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$d"' EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$d/out" ] && cat "$d/out" >&2; exit 1; }

cat >"$d/a.prom" <<'PROM'
# HELP rill_connections_open Connections open now.
# TYPE rill_connections_open gauge
rill_connections_open 3
# HELP rill_connections_accepted_total Connections accepted.
# TYPE rill_connections_accepted_total counter
rill_connections_accepted_total 10
rill_connections_refused_total 1
rill_connections_dropped_total 0
rill_frames_in_total 1000
rill_frames_out_total 500
rill_bytes_in_total 1048576
rill_bytes_out_total 2048 1700000000000
rill_messages_published_total 900
rill_messages_delivered_total 400
rill_errors_sent_total 2
rill_asks_in_flight 0
rill_asks_refused_total 5
rill_serves_refused_total 1
rill_serve_registrations 4
rill_widgets_total 9
rill_widgets_total{loop="1"} 4
rill_queue_depth 2
rill_uptime_seconds 3723.5
rill_loops 2
# TYPE rill_topic_appended_total counter
rill_topic_appended_total{topic="orders"} 800
rill_topic_appended_bytes_total{topic="orders"} 80000
rill_topic_next_sequence{topic="orders"} 800
rill_topic_subscribers{topic="orders"} 2
rill_topic_appended_total{topic="we\"ird\\x"} 100
# TYPE rill_publish_ack_seconds histogram
rill_publish_ack_seconds_bucket{le="0.000001"} 0
rill_publish_ack_seconds_bucket{le="0.00001"} 50
rill_publish_ack_seconds_bucket{le="0.0001"} 99
rill_publish_ack_seconds_bucket{le="0.001"} 100
rill_publish_ack_seconds_bucket{le="+Inf"} 100
rill_publish_ack_seconds_sum 0.002
rill_publish_ack_seconds_count 100
rill_ask_seconds_bucket{le="0.001"} 0
rill_ask_seconds_bucket{le="+Inf"} 0
rill_ask_seconds_sum 0
rill_ask_seconds_count 0
PROM
# Two seconds later: 2000 more frames, 2 MiB more in, 200 more orders,
# 200 publishes acknowledged in (10 us, 100 us], and 10 asks over 1 ms.
sed -e 's/^rill_frames_in_total 1000/rill_frames_in_total 3000/' \
  -e 's/^rill_bytes_in_total 1048576/rill_bytes_in_total 3145728/' \
  -e 's/{topic="orders"} 800$/{topic="orders"} 1000/' \
  -e 's/le="0.0001"} 99/le="0.0001"} 299/; s/le="0.001"} 100/le="0.001"} 300/' \
  -e 's/_seconds_bucket{le="+Inf"} 100/_seconds_bucket{le="+Inf"} 300/' \
  -e 's/rill_ask_seconds_bucket{le="+Inf"} 0/rill_ask_seconds_bucket{le="+Inf"} 10/' \
  -e 's/^rill_asks_refused_total 5/rill_asks_refused_total 25/' \
  -e 's/^rill_widgets_total 9/rill_widgets_total 29/' \
  "$d/a.prom" >"$d/b.prom"

row() { # row LABEL: the line of the report that starts with LABEL, spaces squeezed
  grep -E "^$1( |$)" "$d/out" | tr -s ' ' || true
}

"$rill" stat --from-file "$d/a.prom" >"$d/out" || fail "one file"
grep -q 'up 1h2m3s  2 loops$' "$d/out" || fail "header"
[ "$(row connections)" = "connections open 3 accepted 10 refused 1 dropped 0" ] || fail "connections"
[ "$(row 'frames in')" = "frames in 1000 -" ] || fail "frames in without rates"
[ "$(row 'bytes in')" = "bytes in 1.0 MiB -" ] || fail "bytes in"
[ "$(row 'errors sent')" = "errors sent 2 -" ] || fail "errors"
[ "$(row 'asks refused')" = "asks refused 5 -" ] || fail "asks refused"
[ "$(row 'serves refused')" = "serves refused 1 -" ] || fail "serves refused"
[ "$(row 'serves held')" = "serves held 4" ] || fail "serve registrations"
# Metrics this rill stat has no row for (a newer server's): by their name.
[ "$(row widgets)" = "widgets 9 -" ] || fail "an unknown counter"
[ "$(row 'widgets{loop=1}')" = "widgets{loop=1} 4 -" ] || fail "an unknown counter with a label"
[ "$(row queue_depth)" = "queue_depth 2" ] || fail "an unknown gauge"
# ... but not a histogram's parts, nor a known one twice.
if grep -qE '^(publish_ack|ask)_(sum|count)|^asks_refused' "$d/out"; then fail "shown twice"; fi
[ "$(row orders)" = "orders 800 - 78.1 KiB - 800 2" ] || fail "topic row"
# The backslash comes back as it is: printable text is never altered.
[ "$(grep -F 'we"ird' "$d/out" | tr -s ' ')" = 'we"ird\x 100 - - - - -' ] || fail "escaped topic"
# 50 of 100 at or under 10 us; the 99.9th is 0.9 of the way into (100 us, 1 ms].
[ "$(row publish_ack)" = "publish_ack 100 10us 100us 910us all time" ] || fail "quantiles"
[ "$(row ask)" = "ask 0 - - - all time" ] || fail "empty histogram"

"$rill" stat --from-file "$d/a.prom" --from-file "$d/b.prom" --interval 2 >"$d/out" ||
  fail "two files"
grep -q '(rates over 2.00 s)' "$d/out" || fail "interval in the header"
[ "$(row 'frames in')" = "frames in 3000 1000.0/s" ] || fail "frame rate"
[ "$(row 'frames out')" = "frames out 500 0.0/s" ] || fail "flat counter"
[ "$(row 'bytes in')" = "bytes in 3.0 MiB 1.0 MiB/s" ] || fail "byte rate"
[ "$(row 'asks refused')" = "asks refused 25 10.0/s" ] || fail "asks refused rate"
[ "$(row widgets)" = "widgets 29 10.0/s" ] || fail "an unknown counter's rate"
[ "$(row orders)" = "orders 1000 100.0/s 78.1 KiB 0 B/s 1000 2" ] || fail "topic rate"
# Over the interval only: 200 new, all in (10 us, 100 us].
[ "$(row publish_ack)" = "publish_ack 200 55us 99.1us 99.9us interval" ] || fail "interval quantiles"
[ "$(row ask)" = "ask 10 >1ms >1ms >1ms interval" ] || fail "+Inf quantiles"

"$rill" stat --from-file "$d/a.prom" --prom | cmp - "$d/a.prom" || fail "--prom prints the text"

# A counter that went back (a restarted server) has no rate.
"$rill" stat --from-file "$d/b.prom" --from-file "$d/a.prom" >"$d/out" || fail "restart"
[ "$(row 'frames in')" = "frames in 1000 -" ] || fail "rate after a restart"

# Malformed text: refused, with the line.
for bad in 'rill_x{le="1"' 'rill_x{a=1} 2' 'rill_x' 'rill_x 1 2 3' '{a="b"} 1' 'rill_x abc'; do
  printf 'rill_ok 1\n%s\n' "$bad" >"$d/bad.prom"
  if "$rill" stat --from-file "$d/bad.prom" >"$d/out" 2>"$d/err"; then fail "accepted: $bad"; fi
  grep -q 'bad.prom, line 2: not a Prometheus sample' "$d/err" || fail "message for: $bad"
done
if "$rill" stat --from-file "$d/nosuch" 2>/dev/null; then fail "missing file"; fi
if "$rill" stat --count 0 2>/dev/null; then fail "--count 0"; fi
if "$rill" stat --interval -1 2>/dev/null; then fail "--interval -1"; fi

# A live server: the refusal counters and the SERVE gauge it sends are shown.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$rill" serve --listen 127.0.0.1:$port --data "$d/data" >"$d/serve.out" 2>&1 &
srv=$!
for _ in $(seq 100); do grep -q listening "$d/serve.out" 2>/dev/null && break; sleep 0.05; done
grep -q "listening on 127.0.0.1:$port" "$d/serve.out" || fail "server did not start"
"$rill" stat --server 127.0.0.1:$port --interval 0.1 >"$d/out" || fail "live stat"
[ "$(row 'asks refused')" = "asks refused 0 0.0/s" ] || fail "live asks refused"
[ "$(row 'serves refused')" = "serves refused 0 0.0/s" ] || fail "live serves refused"
[ "$(row 'serves held')" = "serves held 0" ] || fail "live serve registrations"
"$rill" pub --server 127.0.0.1:$port busy a b c
"$rill" pub --server 127.0.0.1:$port other x
kill "$srv"
wait "$srv" || true
# After a restart every topic is listed, those with no traffic since too.
"$rill" serve --listen 127.0.0.1:$port --data "$d/data" >"$d/serve.out" 2>&1 &
srv=$!
for _ in $(seq 100); do grep -q listening "$d/serve.out" 2>/dev/null && break; sleep 0.05; done
"$rill" pub --server 127.0.0.1:$port other y
"$rill" stat --server 127.0.0.1:$port --interval 0.1 >"$d/out" || fail "stat after a restart"
[ "$(row busy)" = "busy 0 0.0/s 0 B 0 B/s - 0" ] || fail "a quiet topic after a restart: $(cat "$d/out")"
row other | grep -q '^other 1 ' || fail "a busy topic after a restart: $(cat "$d/out")"
"$rill" stat --server 127.0.0.1:$port --interval 0.1 --json >"$d/out" || fail "stat --json"
python3 -c 'import json,sys
o = json.load(open(sys.argv[1]))
t = {x["topic"]: x for x in o["topics"]}
assert t["busy"]["appended"] == 0 and t["busy"]["next_seq"] is None, t
assert t["other"]["appended"] == 1, t' "$d/out" || fail "stat --json after a restart: $(cat "$d/out")"
kill "$srv"
wait "$srv" || true
srv=
echo "rill stat: all checks passed"
