#!/usr/bin/env bash
# make run: the whole stack on this machine, on 127.0.0.1.
#   - the Temporal dev server with its Web UI, state kept in .run/temporal.db
#   - the Headstart control worker, configured by controlplane/samples/pipeline/headstart.yaml:
#     the forecaster, a ledger, the coordinator, and Transform's replicas
#   - the pipeline sample's worker, profiled by Headstart, serving /metrics
#   - a starter that keeps submitting pipelines at a varying rate
# Ports: TEMPORAL_PORT (default 7233), TEMPORAL_UI_PORT (default 8233) and
# METRICS_PORT (the worker's /metrics, default 9464), or the next free ones. HEADSTART_RUN_DIR (default .run) holds the state and
# logs. HEADSTART_CONFIG (default controlplane/samples/pipeline/headstart.yaml) configures the
# control worker. STARTER_ARGS are passed to the starter. Ctrl-C stops
# every child process.
set -euo pipefail
cd "$(dirname "$0")/.."
state=$(realpath -m "${HEADSTART_RUN_DIR:-.run}")
mkdir -p "$state/bin"

temporal=$(scripts/build-temporal.sh)
(cd controlplane && go build -o "$state/bin/" ./cmd/headstart ./samples/pipeline/worker ./samples/pipeline/starter)

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p=$1
  while listening "$p"; do p=$((p + 1)); done
  echo "$p"
}
port=$(free_port "${TEMPORAL_PORT:-7233}")
ui_port=$(free_port "${TEMPORAL_UI_PORT:-8233}")
[ "$ui_port" != "$port" ] || ui_port=$(free_port $((port + 1)))
metrics_port=$(free_port "${METRICS_PORT:-9464}")
address=127.0.0.1:$port

pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping..." >&2
  # Newest first: the starter and workers flush to the server before it stops.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  echo "stopped" >&2
}
trap stop EXIT
trap 'exit 130' INT TERM

"$temporal" server start-dev --ip 127.0.0.1 --port "$port" --ui-port "$ui_port" \
  --db-filename "$state/temporal.db" --log-level warn >"$state/temporal.log" 2>&1 &
pids+=($!)

deadline=$((SECONDS + 60))
until "$temporal" operator cluster health --address "$address" >/dev/null 2>&1; do
  if [ $SECONDS -ge $deadline ] || ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo "the Temporal dev server did not become healthy; its log:" >&2
    tail -n 30 "$state/temporal.log" >&2
    exit 1
  fi
  sleep 0.2
done

HEADSTART_BIN=$(cd "$state/bin" && pwd) "$state/bin/headstart" worker -address "$address" \
  -config "${HEADSTART_CONFIG:-controlplane/samples/pipeline/headstart.yaml}" >"$state/headstart.log" 2>&1 &
pids+=($!)
"$state/bin/worker" -address "$address" -metrics-address "127.0.0.1:$metrics_port" >"$state/worker.log" 2>&1 &
pids+=($!)
# shellcheck disable=SC2086 # STARTER_ARGS is a list of flags
"$state/bin/starter" -address "$address" ${STARTER_ARGS:-} >"$state/starter.log" 2>&1 &
pids+=($!)

cat <<MSG
Headstart dev stack is up:
  Temporal Web UI   http://127.0.0.1:$ui_port/namespaces/default/workflows
  Temporal frontend $address
  worker metrics    http://127.0.0.1:$metrics_port/metrics
  forecaster        http://127.0.0.1:$ui_port/namespaces/default/workflows/headstart-forecaster-default
  coordinator       http://127.0.0.1:$ui_port/namespaces/default/workflows/headstart-coordinator-default
  ledger            http://127.0.0.1:$ui_port/namespaces/default/workflows/headstart-ledger-local
  logs              $state/temporal.log $state/headstart.log $state/worker.log $state/starter.log
Ctrl-C stops everything.
MSG
# Follow the starter until a child exits or we are interrupted.
tail -n +1 -F "$state/starter.log" &
pids+=($!)
wait -n "${pids[@]:0:4}" || true
echo "stopping: a child process exited or Ctrl-C was pressed; logs are in $state/" >&2
