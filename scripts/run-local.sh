#!/usr/bin/env bash
# `make run`: a local Redis (unless MOBIUS_REDIS_URL is set) and the sidecar in the foreground.
# Redis keeps its data under .run/ (git-ignored) and is stopped when the sidecar exits (Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR="$PWD/.run"
mkdir -p "$RUN_DIR"
BIN="${VENV_BIN:-$PWD/.venv/bin}"
HOST="${MOBIUS_SIDECAR_HOST:-127.0.0.1}"
PORT="${MOBIUS_SIDECAR_PORT:-8787}"

port_free() {  # true when nothing listens on 127.0.0.1:$1
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

redis_pid=""
cleanup() {
  if [ -n "$redis_pid" ]; then  # Ctrl-C may have reached it already (same process group)
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    echo "local redis-server stopped"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "${MOBIUS_REDIS_URL:-}" ]; then
  redis_port=6379
  if ! port_free "$redis_port"; then
    redis_port="$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  fi
  redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$RUN_DIR" --save 300 10 --appendonly no \
    --dbfilename dump.rdb --maxmemory "${MOBIUS_MAX_MEMORY:-256mb}" \
    --maxmemory-policy "${MOBIUS_EVICTION_POLICY:-allkeys-lru}" --logfile "$RUN_DIR/redis.log" &
  redis_pid=$!
  for _ in $(seq 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
    kill -0 "$redis_pid" 2>/dev/null || { echo "redis-server failed to start; see $RUN_DIR/redis.log" >&2; exit 1; }
    sleep 0.05
  done
  export MOBIUS_REDIS_URL="redis://127.0.0.1:$redis_port/0"
  echo "local redis-server on 127.0.0.1:$redis_port (data in .run/, log .run/redis.log)"
fi

url="http://$HOST:$PORT"
auth=""
[ -n "${MOBIUS_SIDECAR_TOKEN:-}" ] && auth=" -H 'Authorization: Bearer \$MOBIUS_SIDECAR_TOKEN'"
cat <<EOT

mobius-sidecar on $url  (Redis: $MOBIUS_REDIS_URL)   API docs: $url/docs
Try:
  curl -i -X PUT$auth -H 'Content-Type: application/json' --data '{"name":"demo"}' '$url/v1/cache/project:42:metadata?ttl=60'
  curl -i$auth $url/v1/cache/project:42:metadata
  curl -s$auth -X POST -H 'Content-Type: application/json' --data '{"keys":["project:42:metadata","nope"]}' $url/v1/batch/get
  curl -s$auth -X POST -H 'Content-Type: application/json' --data '{"pattern":"project:*"}' $url/v1/invalidate
  curl -s$auth $url/v1/stats ; curl -s $url/readyz ; curl -s $url/metrics | grep mobius_
Ctrl-C stops the sidecar (and the local Redis).

EOT
# Not exec: the EXIT trap must still stop Redis when the sidecar ends.
"$BIN/python" -m mobius_cache.server --host "$HOST" --port "$PORT" "$@" &
sidecar_pid=$!
trap 'kill -TERM "$sidecar_pid" 2>/dev/null || true' INT TERM
wait "$sidecar_pid" || true
wait "$sidecar_pid" 2>/dev/null || true
