#!/usr/bin/env bash
# Start or stop the throwaway services the test suite needs, on loopback only:
# PostgreSQL 15 (a fresh cluster), an S3-compatible server (rclone serve s3) and Redis.
# `start` writes .services/env with the LOOPLINE_TEST_* variables the tests read.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${LOOPLINE_SERVICES_DIR:-$ROOT/.services}"
PGBIN="${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
RCLONE="${RCLONE:-$ROOT/.venv/bin/rclone}"
S3_KEY=loopline-test
S3_SECRET=loopline-test-secret

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
wait_port() {  # host port seconds
  for _ in $(seq 1 $(( $3 * 10 ))); do
    if python3 -c "import socket,sys; socket.create_connection(('$1',$2),0.2)" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "service on $1:$2 did not start" >&2; return 1
}

start() {
  stop >/dev/null 2>&1 || true
  rm -rf "$DIR"; mkdir -p "$DIR"
  chmod 755 "$DIR"
  # PostgreSQL: initdb refuses to run as root, so the cluster belongs to 'postgres'.
  local pgport; pgport=$(free_port)
  mkdir -p "$DIR/pg" "$DIR/pgsock"
  [ "$(id -u)" = 0 ] && chown postgres "$DIR/pg" "$DIR/pgsock"
  as_pg "$PGBIN/initdb" -D "$DIR/pg/data" -U postgres -A trust -E UTF8 >"$DIR/pg-initdb.log" 2>&1
  as_pg "$PGBIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/server.log" -w -t 60 start \
    -o "-p $pgport -k $DIR/pgsock -c listen_addresses=127.0.0.1 -c max_connections=200" >/dev/null
  as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$pgport" -U postgres -qc "CREATE DATABASE loopline_test" >/dev/null
  # S3: rclone serves the folder's subfolders as buckets.
  local s3port; s3port=$(free_port)
  mkdir -p "$DIR/s3/loopline-test"
  "$RCLONE" serve s3 "$DIR/s3" --addr "127.0.0.1:$s3port" --auth-key "$S3_KEY,$S3_SECRET" \
    --vfs-cache-mode off >"$DIR/s3.log" 2>&1 &
  echo $! >"$DIR/s3.pid"
  wait_port 127.0.0.1 "$s3port" 30
  # Redis: no persistence needed for tests.
  local redisport; redisport=$(free_port)
  redis-server --port "$redisport" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" --dir "$DIR"
  wait_port 127.0.0.1 "$redisport" 30
  cat >"$DIR/env" <<ENV
export LOOPLINE_TEST_PG_URI=postgresql://postgres@127.0.0.1:$pgport/loopline_test
export LOOPLINE_TEST_PG_ADMIN_URI=postgresql://postgres@127.0.0.1:$pgport/postgres
export LOOPLINE_TEST_PG_CTL="$PGBIN/pg_ctl -D $DIR/pg/data"
export LOOPLINE_TEST_S3_ENDPOINT=http://127.0.0.1:$s3port
export LOOPLINE_TEST_S3_BUCKET=loopline-test
export LOOPLINE_TEST_S3_KEY=$S3_KEY
export LOOPLINE_TEST_S3_SECRET=$S3_SECRET
export LOOPLINE_TEST_REDIS_URL=redis://127.0.0.1:$redisport/0
ENV
  echo "services up: postgresql :$pgport, s3 :$s3port, redis :$redisport ($DIR/env)"
}

stop() {
  if [ -f "$DIR/pg/data/postmaster.pid" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$DIR/pg/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  for f in "$DIR/s3.pid" "$DIR/redis.pid"; do
    if [ -f "$f" ]; then kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; fi
  done
  echo "services stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
