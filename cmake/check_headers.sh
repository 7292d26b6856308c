#!/usr/bin/env bash
# Each public header compiles alone, as a user's code includes it, under
# strict flags: ISO C11 and ISO C99 with -pedantic (the library is GNU C17
# inside, its headers must not be: a C99 program may include any of them),
# and C++17 with -pedantic (extern "C", no C-only constructs such as a
# flexible array member). Nothing is linked.
# Usage: check_headers.sh INCLUDE_DIR CC [CXX]
set -euo pipefail
inc=$1 cc=$2 cxx=${3:-}
warn="-Wall -Wextra -Werror"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

bad=0 n=0
try() { # what file flags...
  local what=$1 src=$2
  shift 2
  n=$((n + 1))
  if ! "$@" -I"$inc" -c "$src" -o "$tmp/o.o" 2>"$tmp/err"; then
    echo "== $what"
    head -20 "$tmp/err"
    bad=1
  fi
}
for h in "$inc"/rill/*.h; do
  b=$(basename "$h")
  printf '#include <rill/%s>\n#include <rill/%s>\n' "$b" "$b" >"$tmp/$b.c"
  try "$b: c11 -pedantic" "$tmp/$b.c" "$cc" -std=c11 -pedantic $warn -Wshadow -Wstrict-prototypes
  try "$b: c99 -pedantic" "$tmp/$b.c" "$cc" -std=c99 -pedantic $warn
  if [ -n "$cxx" ]; then
    cp "$tmp/$b.c" "$tmp/$b.cc"
    try "$b: c++17 -pedantic" "$tmp/$b.cc" "$cxx" -std=c++17 -pedantic $warn
  fi
done
[ $bad -eq 0 ] && echo "headers: $n compilations clean"
exit $bad
