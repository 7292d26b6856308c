#!/usr/bin/env bash
# Each public header compiles alone, as a user's code includes it, under
# strict flags: ISO C11 with -pedantic (the library is GNU C17 inside, its
# headers must not be), ISO C99 for the headers that a C99 program may use,
# and C++17 (extern "C", no C-only constructs). Nothing is linked.
# Usage: check_headers.sh INCLUDE_DIR CC [CXX]
set -euo pipefail
inc=$1 cc=$2 cxx=${3:-}
# C99 lacks C11's repeated typedef, which bus.h (and what includes it)
# uses for rill_filter_t; core.h above all must stay C99-clean.
c99="core.h version.h mem.h ring.h ipc.h"
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
  case " $c99 " in *" $b "*)
    try "$b: c99 -pedantic" "$tmp/$b.c" "$cc" -std=c99 -pedantic $warn
    ;;
  esac
  if [ -n "$cxx" ]; then
    cp "$tmp/$b.c" "$tmp/$b.cc"
    try "$b: c++17" "$tmp/$b.cc" "$cxx" -std=c++17 $warn
  fi
done
[ $bad -eq 0 ] && echo "headers: $n compilations clean"
exit $bad
