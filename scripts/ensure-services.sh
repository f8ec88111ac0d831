#!/usr/bin/env bash
# Make PostgreSQL and Redis reachable on loopback for the test suite, and Chromium present for
# the browser tests (and, with --bench, wrk): start what is installed but stopped, install with
# apt what is missing.
set -euo pipefail

PGHOST=127.0.0.1 PGPORT=5432 REDIS_PORT=6379
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_updated=""

apt_install() {
  if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

wait_for() {  # wait_for <description> <command...>
  local what=$1; shift
  for _ in $(seq 1 30); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "error: $what did not become reachable" >&2; exit 1
}

pg_ready() { pg_isready -q -h "$PGHOST" -p "$PGPORT"; }
if ! command -v pg_isready >/dev/null 2>&1 || ! pg_ready; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "Installing PostgreSQL…"; apt_install postgresql
  fi
  echo "Starting PostgreSQL…"
  for version in $(ls /etc/postgresql); do
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
  done
  wait_for "PostgreSQL on $PGHOST:$PGPORT" pg_ready
fi
# Tests connect as postgres without a password; a stock Debian cluster only trusts the socket.
if ! psql -h "$PGHOST" -U postgres -d postgres -Atc "select 1" >/dev/null 2>&1; then
  hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -n 1)
  echo "Allowing trusted loopback connections in $hba…"
  $SUDO sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  for version in $(ls /etc/postgresql); do
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true
  done
  wait_for "PostgreSQL login as postgres" psql -h "$PGHOST" -U postgres -d postgres -Atc "select 1"
fi

redis_ready() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping | grep -q PONG; }
if ! command -v redis-cli >/dev/null 2>&1 || ! redis_ready; then
  command -v redis-server >/dev/null 2>&1 || { echo "Installing Redis…"; apt_install redis-server; }
  echo "Starting Redis…"
  mkdir -p /tmp/tally-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir /tmp/tally-redis --logfile /tmp/tally-redis/redis.log
  wait_for "Redis on 127.0.0.1:$REDIS_PORT" redis_ready
fi

if [ ! -x /usr/bin/chromium ]; then
  echo "Installing Chromium for the browser tests…"; apt_install chromium
fi
# `make bench` also drives the HTTP benchmark with wrk.
if [ "${1:-}" = "--bench" ] && ! command -v wrk >/dev/null 2>&1; then
  echo "Installing wrk for the HTTP benchmark…"; apt_install wrk
fi
echo "PostgreSQL, Redis and Chromium are ready."
