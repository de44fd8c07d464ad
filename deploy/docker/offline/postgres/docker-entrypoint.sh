#!/usr/bin/env bash
# The postgres image's contract, for the offline stand-in: on an empty PGDATA,
# initdb with POSTGRES_USER (default postgres) and POSTGRES_PASSWORD, host
# connections authenticated by POSTGRES_HOST_AUTH_METHOD (default
# scram-sha-256), POSTGRES_DB created when it is not the user's default; then
# the server in the foreground.
set -euo pipefail
user=${POSTGRES_USER:-postgres}
auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
if [ "$auth" != trust ] && [ -z "${POSTGRES_PASSWORD:-}" ]; then
  echo "POSTGRES_PASSWORD is empty: set it, or POSTGRES_HOST_AUTH_METHOD=trust" >&2
  exit 1
fi
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  trap 'rm -f "$pwfile"' EXIT
  printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
  initdb -D "$PGDATA" -U "$user" --auth-local=trust --auth-host="$auth" --pwfile="$pwfile" >/dev/null
  rm -f "$pwfile"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  echo "host all all all $auth" >>"$PGDATA/pg_hba.conf"
  db=${POSTGRES_DB:-$user}
  if [ "$db" != postgres ]; then
    echo "CREATE DATABASE \"$db\";" | postgres --single -D "$PGDATA" postgres >/dev/null
  fi
fi
if [ "${1:-}" = postgres ]; then
  shift
  exec postgres -D "$PGDATA" "$@"
fi
exec "$@"
