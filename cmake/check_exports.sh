#!/usr/bin/env bash
# Holds librill.so's exports to the public headers: every exported symbol
# is rill_ and a letter, declared in include/rill/, or a rill__ internal
# that a public header's inline code names; and every rill__ internal the
# headers name is exported, or a program built against them does not link;
# and the soname is librill.so.MAJOR.
# Usage: check_exports.sh LIBRILL_SO INCLUDE_DIR
set -euo pipefail
so=$1 inc=$2

exported=$(nm -D --defined-only "$so" | awk '{print $3}' | sed 's/@.*//' | sort -u)
[ -n "$exported" ] || { echo "no exported symbols in $so"; exit 1; }
headers=$(cat "$inc"/rill/*.h)
# The rill__ names public headers use (inline fast paths, their data).
needed=$(grep -ohE '\brill__[a-z0-9_]+' "$inc"/rill/*.h | sort -u)

bad=0
for s in $exported; do
  # The version node itself (RILL_0) is listed as an absolute symbol.
  case $s in RILL_*) continue ;; esac
  if [[ $s =~ ^rill_[a-z][a-z0-9_]*$ ]]; then
    grep -qw -- "$s" <<<"$headers" || { echo "exported, declared in no public header: $s"; bad=1; }
  elif [[ $s =~ ^rill__ ]]; then
    grep -qx -- "$s" <<<"$needed" || { echo "exported internal: $s"; bad=1; }
  else
    echo "exported without the rill_ prefix: $s"; bad=1
  fi
done
# What the headers' inline code calls must be there, or users cannot link.
defined=$(nm --defined-only "$so" | awk '{print $3}' | sed 's/@.*//' | sort -u)
for s in $needed; do
  grep -qx -- "$s" <<<"$defined" || continue # a type or struct tag
  grep -qx -- "$s" <<<"$exported" || { echo "named by a public header but not exported: $s"; bad=1; }
done
# The soname carries the major version that rill/version.h gives.
major=$(sed -n 's/^#define RILL_VERSION_MAJOR \([0-9]*\).*/\1/p' "$inc"/rill/version.h)
soname=$(readelf -d "$so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = "librill.so.$major" ] || { echo "soname '$soname', not librill.so.$major"; bad=1; }
[ $bad -eq 0 ] && echo "exports: $(wc -w <<<"$exported") symbols, all public"
exit $bad
