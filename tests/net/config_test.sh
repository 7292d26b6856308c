#!/usr/bin/env bash
# rill serve --config: a good file shown back by --print-config, flags
# overriding it wherever they stand, each kind of bad line refused with
# its file, line and key, and a server started from a file listening
# where the file says with the file's token. Usage: config_test.sh rill
set -euo pipefail
rill=$1
d=$(mktemp -d)
srv=
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$d"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cat >"$d/good.conf" <<CONF
# a rill server

listen = 127.0.0.1:7451
data = $d/data   # a comment after a value
  token = "tk # not a comment"
max_conns = 100
max_body = 2M
max_message = 1GiB
tx_limit = 262144k
sync = every:50
handshake_timeout = 1500ms
idle_timeout = 2m
sub_credits_max = 1000
loops = 3
metrics = 127.0.0.1:0
max_topics = 10
max_asks_per_conn = 50
max_asks = 500
max_serves_per_conn = 5
max_serves = 60
max_disk = 10240M
max_binds_per_conn = 70
max_binds = 700
max_subs_per_conn = 80
max_subs = 800
segment_bytes = 2G
retain_bytes = 10G
retain_count = 5000
retain_age = 48h
log_rate = 3
topic.logs-*.retain_age = 168h
topic.logs-*.segment_bytes = 4M
topic.audit.retain_count = none
CONF
"$rill" serve --config "$d/good.conf" --print-config >"$d/out" || fail "good file"
cat >"$d/want" <<WANT
listen = 127.0.0.1:7451
data = $d/data
# token = (set, not shown)
max_conns = 100
max_body = 2M
max_message = 1G
tx_limit = 256M
sync = every:50
handshake_timeout = 1500ms
idle_timeout = 2m
sub_credits_max = 1000
loops = 3
metrics = 127.0.0.1:0
max_topics = 10
max_asks_per_conn = 50
max_asks = 500
max_serves_per_conn = 5
max_serves = 60
max_disk = 10G
max_binds_per_conn = 70
max_binds = 700
max_subs_per_conn = 80
max_subs = 800
segment_bytes = 2G
retain_bytes = 10G
retain_count = 5000
retain_age = 2d
log_rate = 3
topic.logs-*.segment_bytes = 4M
topic.logs-*.retain_age = 7d
topic.audit.retain_count = none
WANT
diff "$d/want" "$d/out" || fail "print-config of the good file"

# What --print-config prints reads back as the same options (but the
# token, which it does not show).
"$rill" serve --config "$d/out" --print-config | grep -v '^# token' >"$d/again"
grep -v '^# token' "$d/out" | diff - "$d/again" || fail "print-config round trip"

# Flags override the file, before or after --config.
"$rill" serve --loops 5 --config "$d/good.conf" --sync interval:20 --metrics off \
  --max-conns 7 --listen 127.0.0.1:9000 --idle_timeout 30s --max-asks 9 \
  --max-serves-per-conn 2 --max-subs-per-conn 3 --print-config >"$d/out" ||
  fail "flags with the file"
for want in 'listen = 127.0.0.1:9000' 'loops = 5' 'sync = interval:20' 'metrics = off' \
  'max_conns = 7' 'idle_timeout = 30s' 'max_body = 2M' 'sub_credits_max = 1000' \
  'max_asks = 9' 'max_serves_per_conn = 2' 'max_asks_per_conn = 50' 'max_subs_per_conn = 3' \
  'max_binds = 700'; do
  grep -qx "$want" "$d/out" || fail "override: no '$want' in $(cat "$d/out")"
done

# Per-topic keys as flags too, over the file's.
"$rill" serve --config "$d/good.conf" --topic.logs-*.retain-age 1d --topic.new.retain-bytes 1G \
  --print-config >"$d/out" || fail "topic flags"
for want in 'topic.logs-*.retain_age = 1d' 'topic.logs-*.segment_bytes = 4M' \
  'topic.new.retain_bytes = 1G' 'topic.audit.retain_count = none'; do
  grep -qFx -- "$want" "$d/out" || fail "topic flags: no '$want' in $(cat "$d/out")"
done

# A file's "any port" (0) gives way to a port on the command line.
printf 'listen = 127.0.0.1:0\n' >"$d/any.conf"
"$rill" serve --config "$d/any.conf" --print-config | grep -qx 'listen = 127.0.0.1:0' || fail "port 0"
"$rill" serve --config "$d/any.conf" --listen 127.0.0.1:9001 --print-config |
  grep -qx 'listen = 127.0.0.1:9001' || fail "--listen over port 0"

# Without a file: the defaults the server applies.
"$rill" serve --print-config >"$d/out" || fail "defaults"
for want in 'listen = 127.0.0.1:7450' 'data = ./rill-data' '# token = (none)' 'max_conns = 1024' \
  'max_body = 1M' 'sync = never' 'handshake_timeout = 5s' 'idle_timeout = 5m' 'metrics = off' \
  'max_asks_per_conn = 4096' 'max_asks = 65536' 'max_serves_per_conn = 1024' \
  'max_serves = 65536' 'max_disk = 64G' 'max_binds_per_conn = 4096' 'max_binds = 262144' \
  'max_subs_per_conn = 4096' 'max_subs = 262144' \
  'segment_bytes = 128M' 'retain_bytes = 0' 'retain_count = 0' 'retain_age = 0' 'log_rate = 10'; do
  grep -qx "$want" "$d/out" || fail "defaults: no '$want' in $(cat "$d/out")"
done

# No bound on the disk but the filesystem's, spelled out.
"$rill" serve --max-disk unlimited --print-config | grep -qx 'max_disk = unlimited' ||
  fail "max_disk unlimited"
"$rill" serve --max-disk 1k --print-config >/dev/null 2>&1 && fail "max_disk under 1M accepted"

# Each kind of bad line: exit status 2, and the file, line and key named.
bad() { # bad NAME LINE 'file text' 'stderr pattern'
  printf '%b' "$3" >"$d/$1.conf"
  if "$rill" serve --config "$d/$1.conf" --print-config >"$d/out" 2>"$d/err"; then
    fail "$1: accepted"
  fi
  grep -q "$d/$1.conf:$2: $4" "$d/err" || fail "$1: stderr: $(cat "$d/err")"
}
bad unknown 2 'loops = 2\nfrobs = 1\n' 'frobs: unknown key'
bad duplicate 4 'loops = 2\n\n# again\nloops = 3\n' 'loops: given before, on line 1'
bad size 1 'max_body = 12Q\n' 'max_body: wants bytes'
bad small_body 1 'max_body = 100\n' 'max_body: wants bytes'
bad no_unit 1 'idle_timeout = 30\n' 'idle_timeout: wants a time with a unit'
bad sync 2 'data = x\nsync = sometimes\n' 'sync: wants never, group'
bad sync_n 1 'sync = every:0\n' 'sync: wants never, group'
bad listen 1 'listen = ::1:80\n' 'listen: wants HOST:PORT or \[V6\]:PORT'
bad listen_v6 1 'listen = [::1:80\n' 'listen: wants HOST:PORT or \[V6\]:PORT'
bad port 1 'metrics = 127.0.0.1:70000\n' 'metrics: wants HOST:PORT or \[V6\]:PORT'
bad loops 1 'loops = 0\n' 'loops: wants a count'
bad count 1 'max_conns = -1\n' 'max_conns: wants a count'
bad subs 1 'max_subs_per_conn = 0\n' 'max_subs_per_conn: wants a count'
bad no_eq 3 '# x\n\njust words\n' 'just words: not key = value'
bad quote 1 'token = "abc\n' 'token: the quote is not closed'
bad after_quote 1 'token = "abc" def\n' 'token: text after the closing quote'
bad empty 1 'data =\n' 'data: wants a directory'
bad segment 1 'segment_bytes = 100000\n' 'segment_bytes: wants bytes from 64K to 2G, a multiple of 4K'
bad retain_age 1 'retain_age = 30\n' 'retain_age: wants a time with a unit'
bad topic_name 1 'topic.a/b.retain_count = 5\n' "topic.a/b.retain_count: 'a/b' is neither"
bad topic_twice 2 'topic.x.retain_age = 1d\ntopic.x.retain_age = 2d\n' 'topic.x.retain_age: given before'
bad topic_key 1 'topic.x.frobs = 1\n' 'topic.x.frobs: unknown key'
bad topic_segment 1 'topic.x.segment_bytes = none\n' 'topic.x.segment_bytes: wants bytes'
bad long_token 1 "token = $(head -c 300 /dev/zero | tr '\0' x)\n" 'token: wants 1 to 256 bytes'
if "$rill" serve --config "$d/nosuch.conf" --print-config 2>"$d/err"; then fail "missing file"; fi
grep -q "nosuch.conf" "$d/err" || fail "missing file message"
if "$rill" serve --loops x --print-config 2>"$d/err"; then fail "bad flag value"; fi
grep -q -- "--loops" "$d/err" || fail "bad flag message: $(cat "$d/err")"

# Limits are checked when the config is read, those binding keys together
# too, on the values in effect (flags, file, defaults), naming the keys.
refused() { # refused 'stderr pattern' serve-args...
  local want=$1
  shift
  st=0
  "$rill" serve "$@" --print-config >"$d/out" 2>"$d/err" || st=$?
  [ $st = 2 ] || fail "serve $*: exit $st, want 2"
  grep -q -- "$want" "$d/err" || fail "serve $*: stderr: $(cat "$d/err")"
}
refused "--loops wants a count from 1 to 64" --loops 1024
refused "--max-message wants bytes from 4K to 4G-1" --max-message 4G
refused "max_message (2097152) is over what a segment of segment_bytes (1048576) holds" \
  --segment-bytes 1M --max-message 2M
refused "max_message (268435456) is over what a segment of segment_bytes (134217728)" \
  --max-message 256M
refused "max_body (2097152) is over max_message (1048576)" --max-body 2M --max-message 1M
refused "tx_limit (67108864) is under four frames of max_body (67108864)" --max-body 64M \
  --tx-limit 64M
printf 'max_body = 4M\n' >"$d/body.conf"
refused "max_body (4194304) is over max_message (1048576)" --config "$d/body.conf" \
  --max-message 1M
"$rill" serve --segment-bytes 1M --max-message 1M --max-body 1M --print-config >/dev/null 2>&1 &&
  fail "max_message equal to a 1M segment accepted"
"$rill" serve --segment-bytes 2M --max-message 1M --print-config >/dev/null ||
  fail "a good combination refused"

# rill serve --help lists every key --print-config prints, with its
# default (the same value) and what it takes.
"$rill" serve --help >"$d/help"
"$rill" serve --data ./rill-data --print-config | grep -v '^#' | while IFS= read -r line; do
  key=${line%% = *} val=${line#* = }
  grep -qE "^  $key +.*; default $val\$" "$d/help" || fail "serve --help: $key ($val): $(cat "$d/help")"
done
grep -qE '^  token +1 to 256 bytes; default none$' "$d/help" || fail "serve --help: token"
grep -q 'topic.MATCH.KEY' "$d/help" || fail "serve --help: per-topic keys"

# A server started from a file listens where it says and wants its token.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'listen = 127.0.0.1:%s\ndata = %s\ntoken = filetk\n' "$port" "$d/srv" >"$d/srv.conf"
"$rill" serve --config "$d/srv.conf" >"$d/serve.out" 2>&1 &
srv=$!
for _ in $(seq 100); do grep -q listening "$d/serve.out" 2>/dev/null && break; sleep 0.05; done
grep -q "listening on 127.0.0.1:$port" "$d/serve.out" || fail "server from a file: $(cat "$d/serve.out")"
[ "$("$rill" pub --server 127.0.0.1:$port --token filetk --ack t one)" = 0 ] || fail "the file's token"
if "$rill" pub --server 127.0.0.1:$port --token other t x 2>/dev/null; then fail "another token"; fi
kill -TERM $srv
st=0
wait $srv || st=$?
[ $st = 143 ] || fail "server exit status after SIGTERM: $st"
srv=
echo "rill serve --config: all checks passed"
