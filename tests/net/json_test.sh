#!/usr/bin/env bash
# Output that never alters a payload, and --json on every command that
# prints data: a JSON payload (backslashes, quotes, UTF-8) published and
# read back with rill sub is the same bytes in the default line mode and
# with --raw, parses with python3 -m json.tool (and jq when installed),
# and every --json output parses as JSON. Usage: json_test.sh rill
rill=$1
# shellcheck source=tests/net/lib.sh
. "$(dirname "$0")/lib.sh"
# json_lines FILE: every line of FILE is a JSON value.
json_lines() {
  python3 -c 'import json,sys
for l in open(sys.argv[1]): json.loads(l)' "$1" || fail "not JSON lines: $(cat "$1")"
}

serve
export RILL_SERVER=127.0.0.1:$port

payload='{"path":"C:\\dir\\new","say":"\"hi\"","tab":"a\tb","é":"☃"}'
printf '%s\n' "$payload" >"$d/want"
"$rill" pub --json j "$payload" >"$d/pub.out"
[ "$(cat "$d/pub.out")" = '{"seq":0}' ] || fail "pub --json: $(cat "$d/pub.out")"
# The default line mode: SEQ and the payload as it was.
"$rill" sub --from earliest --count 1 j >"$d/line"
[ "$(cut -d' ' -f2- "$d/line")" = "$payload" ] || fail "sub altered the payload: $(cat "$d/line")"
# --raw: the bytes exactly, and a newline.
"$rill" sub --raw --from earliest --count 1 j >"$d/raw"
cmp "$d/raw" "$d/want" || fail "sub --raw: $(od -c "$d/raw" | head)"
python3 -m json.tool "$d/raw" >/dev/null || fail "sub --raw does not parse: $(cat "$d/raw")"
if command -v jq >/dev/null; then
  [ "$(jq -r .path "$d/raw")" = 'C:\dir\new' ] || fail "jq: $(jq . "$d/raw")"
fi
# --json: the payload as a JSON string, exact.
"$rill" sub --json --from earliest --count 1 j >"$d/json"
python3 -c 'import json,sys
o = json.loads(open(sys.argv[1]).read())
want = open(sys.argv[2], encoding="utf-8").read()[:-1]
assert o["seq"] == 0 and o["data"] == want and o["len"] == len(want.encode()), o' "$d/json" "$d/want" ||
  fail "sub --json: $(cat "$d/json")"
# Bytes that are not text: escaped in the line mode, exact with --raw and --json.
printf 'a\001b\377\n' | "$rill" pub bin
"$rill" sub --from earliest --count 1 bin >"$d/line"
[ "$(cat "$d/line")" = '0 a\x01b\xff' ] || fail "binary line: $(cat "$d/line")"
"$rill" sub --raw --from earliest --count 1 bin | cmp - <(printf 'a\001b\377\n') || fail "binary --raw"
"$rill" sub --json --from earliest --count 1 bin | grep -qF '"data":"a\u0001b\u00ff"' || fail "binary --json"
st=0
"$rill" sub --json --raw j 2>"$d/err" || st=$?
[ $st = 2 ] && grep -q "one or the other" "$d/err" || fail "--json --raw: $st"

# --json everywhere else that prints data.
"$rill" pub --ack --json j two three >"$d/out" && json_lines "$d/out"
[ "$(tr -d '\n' <"$d/out")" = '{"seq":1}{"seq":2}' ] || fail "pub --ack --json: $(cat "$d/out")"
"$rill" topic ls --json >"$d/out" && json_lines "$d/out"
grep -qx '{"topic":"j"}' "$d/out" || fail "topic ls --json: $(cat "$d/out")"
"$rill" topic info --json j >"$d/out" && json_lines "$d/out"
python3 -c 'import json,sys; o=json.load(open(sys.argv[1])); assert o["next"] == 3 and o["retain_bytes"] is None, o' \
  "$d/out" || fail "topic info --json: $(cat "$d/out")"
"$rill" reply echo >"$d/reply.out" 2>&1 &
for _ in $(seq 100); do grep -q serving "$d/reply.out" 2>/dev/null && break; sleep 0.05; done
"$rill" ask --json echo 'x\y"' >"$d/out" && json_lines "$d/out"
[ "$(cat "$d/out")" = '{"len":4,"data":"x\\y\""}' ] || fail "ask --json: $(cat "$d/out")"
"$rill" stat --json --interval 0.05 --count 2 >"$d/out" && json_lines "$d/out"
[ "$(wc -l <"$d/out")" = 2 ] || fail "stat --json --count 2: $(cat "$d/out")"
python3 -c 'import json,sys
o = json.loads(open(sys.argv[1]).readlines()[-1])
names = {m["name"] for m in o["metrics"]}
assert "rill_messages_published_total" in names, names
assert any(t["topic"] == "j" and t["appended"] == 3 for t in o["topics"]), o["topics"]
assert o["interval_s"] > 0, o' "$d/out" || fail "stat --json: $(cat "$d/out")"
"$rill" log cat --json "$d/data" j >"$d/out" && json_lines "$d/out"
"$rill" log stat --json "$d/data" j >"$d/out" && json_lines "$d/out"
echo "payloads unaltered, --json everywhere: all checks passed"
