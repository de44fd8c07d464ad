#!/usr/bin/env bash
# The contract of temporalio/auto-setup, for the offline stand-in, PostgreSQL
# only: create or update the schemas of DBNAME and VISIBILITY_DBNAME, start the
# server from config/docker.yaml (which reads the same environment), and
# create DEFAULT_NAMESPACE once the frontend answers.
set -euo pipefail
export DB=${DB:-postgres12} DB_PORT=${DB_PORT:-5432} DBNAME=${DBNAME:-temporal}
export VISIBILITY_DBNAME=${VISIBILITY_DBNAME:-temporal_visibility}
own_ip=$(getent hosts "$(hostname)" | awk '{print $1; exit}')
export BIND_ON_IP=${BIND_ON_IP:-$own_ip}
if [ "$BIND_ON_IP" = 0.0.0.0 ] || [ "$BIND_ON_IP" = ::0 ]; then # every interface (a container on several networks)
  export TEMPORAL_BROADCAST_ADDRESS=${TEMPORAL_BROADCAST_ADDRESS:-$own_ip}
fi
namespace=${DEFAULT_NAMESPACE:-default}
retention=${DEFAULT_NAMESPACE_RETENTION:-24h}
case $DB in
postgres12 | postgres12_pgx) ;;
*) echo "auto-setup: DB=$DB: this image supports postgres12 and postgres12_pgx" >&2; exit 1 ;;
esac
: "${POSTGRES_SEEDS:?auto-setup: POSTGRES_SEEDS (the PostgreSQL host) is required}"

sql() {
  temporal-sql-tool --plugin "$DB" --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "${POSTGRES_USER:-}" --pw "${POSTGRES_PWD:-}" "$@"
}
for i in $(seq 1 60); do
  sql --db "$DBNAME" create-database >/dev/null 2>&1 && break
  [ "$i" = 60 ] && { echo "auto-setup: PostgreSQL at $POSTGRES_SEEDS:$DB_PORT did not answer" >&2; sql --db "$DBNAME" create-database; exit 1; }
  sleep 1
done
sql --db "$VISIBILITY_DBNAME" create-database
for pair in "$DBNAME:temporal" "$VISIBILITY_DBNAME:visibility"; do
  db=${pair%%:*}
  sql --db "$db" setup-schema -v 0.0
  sql --db "$db" update-schema --schema-name "postgresql/v12/${pair#*:}"
done

temporal-server --root /etc/temporal --config config --env docker start &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server' TERM INT
address=${TEMPORAL_BROADCAST_ADDRESS:-$BIND_ON_IP}:${FRONTEND_GRPC_PORT:-7233}
until temporal operator cluster health --address "$address" >/dev/null 2>&1; do
  kill -0 $server 2>/dev/null || { wait $server; exit $?; }
  sleep 1
done
temporal operator namespace describe -n "$namespace" --address "$address" >/dev/null 2>&1 ||
  temporal operator namespace create -n "$namespace" --retention "$retention" --address "$address"
wait $server
