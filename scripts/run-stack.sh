#!/usr/bin/env bash
# The main job: builds every ODIN exporter of exporters.toml, starts each on its default port
# on loopback with the manifest's run_args, and starts a real Prometheus with
# deploy/prometheus/prometheus.yml (which loads rules/). Prints the URLs; Ctrl-C stops
# everything cleanly.
#
# Environment (all optional):
#   NETWORK_EXPORTER_DNS_PROBE_NAME  names the DNS prober resolves, comma-separated
#                                    (default: example.com; on a machine with no DNS the
#                                    DnsProbeFailing alert fires, which is the truth)
#   ODIN_GPU_DEMO                    an nvidia-smi capture: a path, or the name of a file in
#                                    exporters/gpu-exporter/demo/ (the repository's own, e.g.
#                                    odin-demo.txt): run gpu-exporter on the fake nvidia-smi
#                                    answering from it, for a machine without a GPU.
#                                    DEMO DATA, logged as such.
#   ODIN_GPU_DEMO_SECTION            idle (default) or load: which part of the capture
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
trap 'cleanup; exit 0' INT TERM
trap cleanup EXIT

# Extra environment per exporter (its flags are run_args in exporters.toml).
# gpu-exporter: NVML when it loads, else nvidia-smi; on a machine with neither it still serves
# (0 GPUs, the GPU component unhealthy in /health, GPUBackendUnavailable after 10 minutes).
demo_dir=exporters/gpu-exporter/demo
gpu_demo_args=()
gpu_env=()
if [ -n "${ODIN_GPU_DEMO:-}" ]; then
  capture=$ODIN_GPU_DEMO
  if [ ! -f "$capture" ]; then
    capture="$demo_dir/$ODIN_GPU_DEMO"
  fi
  if [ ! -f "$capture" ]; then
    echo "ODIN_GPU_DEMO: no capture file $ODIN_GPU_DEMO (neither a path nor a file in $demo_dir/)" >&2
    exit 1
  fi
  capture=$(cd "$(dirname "$capture")" && pwd)/$(basename "$capture")
  gpu_demo_args=(--backend=nvidia-smi "--nvidia-smi.command=$PWD/exporters/gpu-exporter/tests/fake-nvidia-smi")
  gpu_env=(FAKE_NVIDIA_SMI_CAPTURE="$capture" FAKE_NVIDIA_SMI_SECTION="${ODIN_GPU_DEMO_SECTION:-idle}")
  echo "*** gpu-exporter DEMO MODE: its GPU metrics are a replay of the capture $(basename "$capture")"
  echo "*** (section ${ODIN_GPU_DEMO_SECTION:-idle}) through the fake nvidia-smi, not this machine's GPUs."
fi

# Every exporter of exporters.toml (name, port, run_args). Every exporter that has been built
# is started; a missing binary is skipped with a note.
manifest() { python3 scripts/manifest.py "$@"; }
mapfile -t exporters < <(manifest names)
[ "${#exporters[@]}" -gt 0 ] || { echo "exporters.toml lists no exporter" >&2; exit 1; }
started=()
for name in "${exporters[@]}"; do
  port=$(manifest field "$name" port)
  if [ ! -x "$bin/$name" ]; then
    echo "$name: not built, skipped"
    continue
  fi
  mapfile -t args < <(manifest field "$name" run_args)
  envs=()
  if [ "$name" = gpu-exporter ]; then
    args+=("${gpu_demo_args[@]}")
    envs=("${gpu_env[@]}")
  fi
  env "${envs[@]}" "$bin/$name" --web.listen-address="127.0.0.1:$port" "${args[@]}" \
    >"$run_dir/$name.log" 2>&1 &
  pids+=($!)
  started+=("$name:$port")
done

prometheus --config.file=deploy/prometheus/prometheus.yml \
  --storage.tsdb.path="$run_dir/prometheus" \
  --web.listen-address="127.0.0.1:$prom_port" >"$run_dir/prometheus.log" 2>&1 &
pids+=($!)

for entry in "${started[@]}"; do
  name=${entry%%:*}; port=${entry##*:}
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
  echo "$name: http://127.0.0.1:$port/  (metrics /metrics, health /health; log $run_dir/$name.log)"
done
if [ -n "${ODIN_GPU_DEMO:-}" ]; then
  echo "*** reminder: gpu-exporter serves DEMO data from $(basename "$capture")"
fi
for _ in $(seq 300); do curl -fs "http://127.0.0.1:$prom_port/-/ready" >/dev/null && break; sleep 0.1; done
echo "prometheus: http://127.0.0.1:$prom_port/  (targets /targets, rules /rules, alerts /alerts)"
echo "Ctrl-C stops everything."
rc=0
wait -n "${pids[@]}" || rc=$?
# A process that stops by itself with status 0 was told to (Ctrl-C reaches the whole group).
[ "$rc" -eq 0 ] || echo "a process exited with status $rc; see $run_dir/*.log"
