#!/usr/bin/env bash
# The main job: builds every ODIN exporter that exists so far, starts each on its default port
# on loopback, and starts a real Prometheus with deploy/prometheus/prometheus.yml (which loads
# rules/). Prints the URLs; Ctrl-C stops everything cleanly.
#
# Environment (all optional):
#   NETWORK_EXPORTER_DNS_PROBE_NAME  names the DNS prober resolves, comma-separated
#                                    (default: example.com; on a machine with no DNS the
#                                    DnsProbeFailing alert fires, which is the truth)
#   PROMETHEUS_PORT                  default 9090
#   ODIN_RUN_DIR                     state (logs, TSDB), default .run/
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

run_dir=${ODIN_RUN_DIR:-.run}
prom_port=${PROMETHEUS_PORT:-9090}
mkdir -p "$run_dir"
export NETWORK_EXPORTER_DNS_PROBE_NAME=${NETWORK_EXPORTER_DNS_PROBE_NAME:-example.com}

echo "building exporters (release)..."
cargo build --release --locked --bins -q
bin=${CARGO_TARGET_DIR:-target}/release

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "stopped."
}
trap cleanup INT TERM EXIT

# exporter name:port, as in DESIGN.md and deploy/prometheus/prometheus.yml.
exporters=("network-exporter:19102")
for entry in "${exporters[@]}"; do
  name=${entry%%:*}; port=${entry##*:}
  "$bin/$name" --web.listen-address="127.0.0.1:$port" >"$run_dir/$name.log" 2>&1 &
  pids+=($!)
done

prometheus --config.file=deploy/prometheus/prometheus.yml \
  --storage.tsdb.path="$run_dir/prometheus" \
  --web.listen-address="127.0.0.1:$prom_port" >"$run_dir/prometheus.log" 2>&1 &
pids+=($!)

for entry in "${exporters[@]}"; do
  name=${entry%%:*}; port=${entry##*:}
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
  echo "$name: http://127.0.0.1:$port/  (metrics /metrics, health /health; log $run_dir/$name.log)"
done
for _ in $(seq 300); do curl -fs "http://127.0.0.1:$prom_port/-/ready" >/dev/null && break; sleep 0.1; done
echo "prometheus: http://127.0.0.1:$prom_port/  (targets /targets, rules /rules, alerts /alerts)"
echo "Ctrl-C stops everything."
wait -n "${pids[@]}" || true
echo "a process exited; see $run_dir/*.log"
