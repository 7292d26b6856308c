# What the rill command's shell tests share, sourced after rill=$1: $d, a
# scratch directory removed at exit (every background job killed, then
# the test's own `more_cleanup` if it defines one); fail; free_port; and
# serve, a server on a free port.
set -euo pipefail
d=$(mktemp -d)
srv=
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  if declare -F more_cleanup >/dev/null; then more_cleanup; fi
  rm -rf "$d"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
unset RILL_SERVER RILL_TOKEN

# A free port: the kernel's pick for a socket closed at once.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# serve [ARGS...]: rill serve on 127.0.0.1:$port (a free one) with its
# data in $d/data, its output in $d/serve.out and its pid in $srv, once
# it listens.
serve() {
  port=$(free_port)
  "$rill" serve --listen 127.0.0.1:$port --data "$d/data" "$@" >"$d/serve.out" 2>&1 &
  srv=$!
  for _ in $(seq 100); do grep -q listening "$d/serve.out" 2>/dev/null && break; sleep 0.05; done
  grep -q "listening on 127.0.0.1:$port" "$d/serve.out" || fail "rill serve: $(cat "$d/serve.out")"
}
