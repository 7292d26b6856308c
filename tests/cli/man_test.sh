#!/usr/bin/env bash
# The man pages (docs/man): each renders without a warning (groff -ww,
# when groff is installed), and each subcommand's page names every option
# its --help names, so the two cannot drift apart unseen.
# Usage: man_test.sh rill
set -euo pipefail
rill=$1
man=$(cd "$(dirname "$0")/../../docs/man" && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }

pages=(rill serve pub sub ask reply stat topic log ipc bench)
for p in "${pages[@]}"; do
  f=$man/rill-$p.1
  [ "$p" = rill ] && f=$man/rill.1
  [ -f "$f" ] || fail "no page $f"
  if command -v groff >/dev/null; then
    err=$(groff -man -Tutf8 -ww "$f" 2>&1 >/dev/null)
    [ -z "$err" ] || fail "groff warns on $(basename "$f"): $err"
  fi
  [ "$p" = rill ] && continue
  # Without the benches (RILL_BENCH=OFF) there is no rill bench --help.
  [ "$p" = bench ] && ! "$rill" bench list >/dev/null 2>&1 && continue
  # Every --option of the command's help, as the page spells it (\-\-opt).
  for o in $("$rill" "$p" --help | grep -oE -- '--[a-z][a-z-]*' | sort -u); do
    [ "$o" = --help ] && continue
    want=$(printf '%s' "$o" | sed 's/-/\\\\-/g')
    grep -q -- "$want" "$f" || fail "rill $p --help names $o, rill-$p.1 does not"
  done
done
command -v groff >/dev/null || echo "groff not installed: pages not rendered"
echo "man pages: all checks passed"
