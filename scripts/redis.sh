#!/usr/bin/env bash
# Starts the redis-server that `rill bench log` measures as a peer, unless
# one already answers on its port. Idempotent, so `make test` and `make
# bench` call it every time; `scripts/redis.sh stop` stops it.
#
#   scripts/redis.sh [DIR]   DIR holds its pid, log and dump files
#                            (default build/redis)
#
# A port of its own (RILL_REDIS_PORT, default 6390), so it is never
# mistaken for a system instance on 6379 (Debian's package starts one
# where systemd runs). Bound to 127.0.0.1 only. Persistence is left at
# redis-server's built-in defaults (RDB snapshots on its save rules, no
# AOF), as a user who installs it gets: `rill bench log` turns AOF on,
# fsynced to match rill's sync policy case by case, and restores it after.
set -euo pipefail
cd "$(dirname "$0")/.."

port=${RILL_REDIS_PORT:-6390}

if [ "${1:-}" = stop ]; then
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  exit 0
fi

dir=${1:-build/redis}

if ! command -v redis-server >/dev/null; then
  echo "redis: redis-server is not installed (scripts/deps.sh installs it)" >&2
  exit 1
fi
# One left running by an earlier build whose directory is gone (a removed
# clone) cannot write its snapshots, and then refuses every write, PING
# included (MISCONF): stop it and start one here instead.
reply=$(redis-cli -p "$port" ping 2>/dev/null || true)
if [ "$reply" = PONG ]; then
  running=$(redis-cli -p "$port" config get dir 2>/dev/null | sed -n 2p)
  persistence=$(redis-cli -p "$port" info persistence 2>/dev/null || true)
  if [ -n "$running" ] && [ -d "$running" ] &&
    [[ $persistence != *rdb_last_bgsave_status:err* ]]; then
    exit 0
  fi
fi
if [ -n "$reply" ]; then
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  for _ in $(seq 50); do
    [ -n "$(redis-cli -p "$port" ping 2>/dev/null || true)" ] || break
    sleep 0.1
  done
fi

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
  --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"

# It forks and returns before it listens: wait for it to answer.
for _ in $(seq 50); do
  [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && exit 0
  sleep 0.1
done
echo "redis: redis-server on 127.0.0.1:$port did not answer; see $dir/redis.log" >&2
exit 1
