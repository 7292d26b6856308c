#!/usr/bin/env bash
# The C in the documentation is code: every ```c block of README.md and
# docs/*.md is compiled against this build's headers and librill.a with
# -Wall -Wextra -Werror, as a user would copy it.
#
# The convention, for whoever writes a block:
#   - a block with a line beginning `int main(` is a complete program: it is
#     linked and run, and fails the test unless it exits 0. Such a program
#     checks that it did what the prose around it says (the events it
#     polled, the bytes it sliced) and returns non-zero otherwise.
#   - any other ```c block is a fragment: it is compiled (not run) as the
#     body of main() after #include <rill/rill.h> and the usual libc
#     headers, so every name it uses must be declared in it.
#   - a block whose opening line is ```c skip (a declaration list, a
#     pseudo-code sketch) is left alone; say in the prose why.
# Usage: snippets.sh CC SOURCE_DIR LIBRILL_A [SANITIZE]
set -euo pipefail
cc=$1 src=$2 lib=$3 san=${4:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

flags=(-std=c17 -Wall -Wextra -Werror -I"$src/include")
link=("$lib" -pthread -lm)
if pkg-config --exists libxxhash 2>/dev/null; then
  read -ra xx <<<"$(pkg-config --libs libxxhash)"
  link+=("${xx[@]}")
else
  link+=(-lxxhash)
fi
if [ -n "$san" ]; then
  flags+=(-fsanitize="$san" -fno-omit-frame-pointer)
  link+=(-fsanitize="$san")
fi

bad=0 programs=0 fragments=0
for md in "$src/README.md" "$src"/docs/*.md; do
  [ -f "$md" ] || continue
  rel=${md#"$src"/}
  # Split the file's ```c blocks into numbered files, each named by the
  # line its block starts on.
  awk -v dir="$tmp" -v tag="$(basename "$md" .md)" '
    /^```c[ \t]*$/ { inblk = 1; start = NR; out = dir "/" tag "_" NR ".c"; printf "" > out; next }
    /^```c[ \t]+skip[ \t]*$/ { skipping = 1; next }
    /^```/ { if (inblk) close(out); inblk = 0; skipping = 0; next }
    inblk { print >> out }
  ' "$md"
  for c in "$tmp/$(basename "$md" .md)"_*.c; do
    [ -f "$c" ] || continue
    line=${c##*_}
    line=${line%.c}
    what="$rel:$line"
    if grep -q '^int main(' "$c"; then
      programs=$((programs + 1))
      if ! "$cc" "${flags[@]}" "$c" "${link[@]}" -o "$tmp/prog" 2>"$tmp/err"; then
        echo "== $what: does not compile"
        head -30 "$tmp/err"
        bad=1
      else
        rc=0
        timeout 60 "$tmp/prog" >"$tmp/out" 2>&1 || rc=$?
        if [ $rc -ne 0 ]; then
          echo "== $what: exits $rc (its output:)"
          head -30 "$tmp/out"
          bad=1
        fi
      fi
    else
      fragments=$((fragments + 1))
      {
        printf '#include <rill/rill.h>\n#include <stdint.h>\n#include <stdio.h>\n'
        printf '#include <stdlib.h>\n#include <string.h>\n'
        printf 'int main(void) {\n#line %d "%s"\n' $((line + 1)) "$rel"
        cat "$c"
        printf '\nreturn 0;\n}\n'
      } >"$tmp/frag.c"
      if ! "$cc" "${flags[@]}" -c "$tmp/frag.c" -o "$tmp/frag.o" 2>"$tmp/err"; then
        echo "== $what: fragment does not compile"
        head -30 "$tmp/err"
        bad=1
      fi
    fi
    rm -f "$c"
  done
done
if [ $((programs + fragments)) -eq 0 ]; then
  echo "snippets: no \`\`\`c block found under $src" >&2
  exit 1
fi
[ $bad -eq 0 ] && echo "snippets: $programs programs ran, $fragments fragments compiled"
exit $bad
