#!/usr/bin/env bash
# scripts/bench_report.py (make bench-report) on a fixed sample of
# `rill bench --json` rows, report_sample.json: the ring rows are a quick
# run's output, the net rows figures made up to cover a three-peer case, a
# rill-only case and latency quantiles. Checks the charts and the markdown
# it writes, that it writes the same bytes twice, that --embed keeps the
# rest of the file, and that bad input stops it with FILE:LINE and what is
# wrong, writing nothing. $1 (the rill command) is not needed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
script="$root/scripts/bench_report.py"
sample="$here/report_sample.json"
# matplotlib is Debian's (python3-matplotlib), for Debian's python3.
py=/usr/bin/python3
d=$(mktemp -d /tmp/rill-bench-report-XXXXXX)
trap 'rm -rf "$d"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

"$py" -c 'import matplotlib' 2>/dev/null ||
  fail "python3-matplotlib is not installed for $py (scripts/deps.sh installs it)"

# ---- good input -------------------------------------------------------------------
mkdir "$d/in" && cp "$sample" "$d/in/all.json"
"$py" "$script" --out "$d/out" "$d/in" >"$d/log" 2>&1 || fail "sample: $(cat "$d/log")"
for s in ring net; do
  [ "$(head -c 8 "$d/out/$s.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
    fail "$s.png is not a PNG"
done
[ "$(ls "$d/out" | sort | tr '\n' ' ')" = "net.png report.md ring.png " ] ||
  fail "unexpected files: $(ls "$d/out")"
md="$d/out/report.md"
grep -qx '### ring' "$md" || fail "no ring section: $(cat "$md")"
grep -qx '### net' "$md" || fail "no net section: $(cat "$md")"
grep -qF '![rill bench ring: rill against each peer](ring.png)' "$md" || fail "no ring chart link"
# Ratios are the peer's ns/op over the case's first rill row, computed here.
grep -qxF '| spsc_u64_batch32 | 8 | ck_ring | 46.79 | 19.50x |  |  |  |' "$md" ||
  fail "ring batch row: $(grep batch32 "$md")"
grep -qxF '| pub_128 | 128 | redis_pubsub | 1,000 | 4.00x |  |  |  |' "$md" ||
  fail "net redis row: $(grep redis "$md")"
grep -qxF '| pub_ack_batch | 128 | rill_net | 400 |  |  |  |  |' "$md" ||
  fail "a rill-only case: $(grep pub_ack "$md")"
grep -qxF '| ask_rtt | 128 | zmq_reqrep | 30,000 | 1.50x | 28000 | 60000 | 120000 |' "$md" ||
  fail "latency row: $(grep ask_rtt "$md")"
[ "$(grep -c '^| ' "$md")" -eq 16 ] || fail "rows: $(grep -c '^| ' "$md"), not 14 and 2 headers"

# The same rows give the same bytes.
"$py" "$script" --out "$d/out2" "$sample" >/dev/null 2>&1 || fail "sample as a file"
cmp -s "$d/out/ring.png" "$d/out2/ring.png" || fail "ring.png differs between two runs"
cmp -s "$md" "$d/out2/report.md" ||
  fail "report.md differs between two runs: $(diff "$md" "$d/out2/report.md")"

# --embed: the section between the markers replaced, the rest kept, twice alike.
mkdir "$d/doc"
printf '# Title\n\nbefore\n<!-- bench-report:begin -->\nold text\n<!-- bench-report:end -->\nafter\n' \
  >"$d/doc/B.md"
"$py" "$script" --out "$d/doc/bench" --embed "$d/doc/B.md" "$d/in" >"$d/log" 2>&1 ||
  fail "embed: $(cat "$d/log")"
grep -q 'old text' "$d/doc/B.md" && fail "embed kept the old section"
[ "$(head -3 "$d/doc/B.md")" = "$(printf '# Title\n\nbefore')" ] || fail "embed: the head changed"
[ "$(tail -2 "$d/doc/B.md")" = "$(printf '<!-- bench-report:end -->\nafter')" ] ||
  fail "embed: the tail changed: $(tail -2 "$d/doc/B.md")"
grep -qF '](bench/ring.png)' "$d/doc/B.md" || fail "embed: links not relative to the file"
[ -e "$d/doc/bench/report.md" ] && fail "embed also wrote report.md"
cp "$d/doc/B.md" "$d/B1.md"
"$py" "$script" --out "$d/doc/bench" --embed "$d/doc/B.md" "$d/in" >/dev/null 2>&1 ||
  fail "embed again"
cmp -s "$d/B1.md" "$d/doc/B.md" || fail "embedding twice changed the file"

# ---- bad input: exit 1, FILE:LINE and why, nothing written ------------------------
# bad NAME LINE2 WANT: the sample's first line, then LINE2, must fail with WANT.
bad() {
  local name=$1 line=$2 want=$3
  rm -rf "$d/bad" "$d/badout" && mkdir "$d/bad"
  { head -1 "$sample"; printf '%s\n' "$line"; } >"$d/bad/$name.json"
  local st=0
  "$py" "$script" --out "$d/badout" "$d/bad" >"$d/out.txt" 2>"$d/err.txt" || st=$?
  [ "$st" -eq 1 ] || fail "$name: exit status $st, not 1"
  grep -qF "bench_report: $d/bad/$name.json:2: $want" "$d/err.txt" ||
    fail "$name: said '$(cat "$d/err.txt")', not '$want'"
  [ -e "$d/badout" ] && fail "$name: wrote $(ls "$d/badout")"
  return 0
}
bad notjson '{"suite":"ring",' 'not JSON'
bad array '["ring"]' 'not a JSON object'
bad nofield '{"suite":"ring","case":"x","impl":"rill_a","size":8}' 'no "ns_per_op" field'
bad strns '{"suite":"ring","case":"x","impl":"rill_a","size":8,"ns_per_op":"5"}' \
  '"ns_per_op" is "5", not of the harness'
bad negns '{"suite":"ring","case":"x","impl":"rill_a","size":8,"ns_per_op":-1.5}' \
  '"ns_per_op" is -1.5, not a positive finite number'
bad nan '{"suite":"ring","case":"x","impl":"rill_a","size":8,"ns_per_op":NaN}' \
  '"ns_per_op" is nan, not a positive finite number'
bad negsize '{"suite":"ring","case":"x","impl":"rill_a","size":-8,"ns_per_op":1}' \
  '"size" is negative'
bad slash '{"suite":"../x","case":"x","impl":"rill_a","size":8,"ns_per_op":1}' \
  'the name "../x" has a character a report cannot use'
bad dup "$(head -1 "$sample")" 'a second row for suite ring, case spsc_u64, size 8, impl rill_spsc'

st=0
mkdir "$d/empty"
"$py" "$script" --out "$d/badout" "$d/empty" 2>"$d/err.txt" || st=$?
[ "$st" -eq 1 ] && grep -qF "no *.json file in $d/empty" "$d/err.txt" ||
  fail "empty dir: $st $(cat "$d/err.txt")"
: >"$d/empty/none.json"
st=0
"$py" "$script" --out "$d/badout" "$d/empty" 2>"$d/err.txt" || st=$?
[ "$st" -eq 1 ] && grep -qF "no rows in $d/empty" "$d/err.txt" ||
  fail "empty file: $st $(cat "$d/err.txt")"
st=0
"$py" "$script" --out "$d/badout" "$d/nowhere" 2>"$d/err.txt" || st=$?
[ "$st" -eq 1 ] && grep -qF "$d/nowhere: no such file or directory" "$d/err.txt" ||
  fail "missing input: $st $(cat "$d/err.txt")"
printf 'no markers here\n' >"$d/plain.md"
st=0
"$py" "$script" --out "$d/badout" --embed "$d/plain.md" "$sample" 2>"$d/err.txt" || st=$?
[ "$st" -eq 1 ] && grep -qF "$d/plain.md: needs one line <!-- bench-report:begin -->" "$d/err.txt" ||
  fail "embed without markers: $st $(cat "$d/err.txt")"
[ -e "$d/badout" ] && fail "embed without markers wrote $(ls "$d/badout")"
[ "$(cat "$d/plain.md")" = "no markers here" ] || fail "embed without markers changed the file"
st=0
"$py" "$script" >/dev/null 2>&1 || st=$?
[ "$st" -eq 2 ] || fail "no arguments: exit status $st, not 2"

echo "bench report: ok"
