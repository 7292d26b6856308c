#!/usr/bin/env bash
# Installs the Debian packages that rill's build, tests and benches need;
# `scripts/deps.sh lib` only those librill and the rill command need (what
# `make run` asks for). Idempotent, and quiet when nothing is missing, so
# `make test` can call it every time. Root (or sudo) is needed only when
# something must be installed.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config
  libxxhash-dev      # core: xxh3
)
[ "${1:-}" = lib ] || pkgs+=(
  clang libclang-rt-14-dev # make fuzz
  libcriterion-dev   # tests
  libck-dev          # bench peer: ck_ring, and the bench's neutral transport
  libmimalloc-dev    # bench peer
  libjemalloc-dev    # bench peer
  libzmq3-dev        # bench peer: ZeroMQ inproc PUSH/PULL for `rill bench bus`
  redis-server       # bench peer: Redis Streams for `rill bench log` (scripts/redis.sh)
  libhiredis-dev     # bench peer: the Redis client `rill bench log` drives it with
  libsqlite3-dev     # bench peer: SQLite in WAL mode, an embedded log for `rill bench log`
  liblmdb-dev        # bench peer: LMDB, an embedded log for `rill bench log`
  python3-matplotlib # make bench-report: the charts (scripts/bench_report.py)
  liburing-dev       # io: later modules
  abigail-tools      # make abi-check: abidw, abidiff
  gcovr              # make coverage
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
