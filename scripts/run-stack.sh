#!/usr/bin/env bash
# The main job: builds every ODIN exporter of exporters.toml and starts each on its default
# port on loopback with the manifest's run_args; a real Prometheus with
# deploy/prometheus/prometheus.yml (which loads every rule file of rules/); Alertmanager with
# deploy/alertmanager/alertmanager.yml (cluster port off); and scripts/webhook-logger.py, the
# receiver that prints every notification Alertmanager sends. Prints the URLs; Ctrl-C stops
# everything cleanly. A second run while one runs says so and exits.
#
# Where this machine lacks what an exporter reads, the exporter runs on demo data from the
# repository, with --demo (a warning in its log, "demo": true in /health, demo="true" on its
# build info series), and this script says so:
#   gpu-exporter     no nvidia-smi and no /dev/nvidia0: its NVML backend on the fake
#                    libnvidia-ml (exporters/gpu-exporter/tests/fake-nvml/fake_nvml.c, built
#                    with cc into the run directory) answering from a capture
#                    (exporters/gpu-exporter/demo/odin-demo.txt, two made-up GPUs, the second
#                    split into MIG devices; or ODIN_GPU_DEMO), whose data file the example
#                    fake-nvml-data writes (built once in release: about 10 s on the first run);
#                    an XID 31 on GPU 0 at start (the GPUXidError warning fires for 10 minutes)
#   power-exporter   no RAPL and no battery under /sys: a laptop's tree (scripts/demo-data.py);
#                    its GPU power from gpu-exporter's demo GPUs (same backend) when those
#                    are demo too
#   razer-exporter   no openrazer device and no Razer hidraw device: the fixture desk and a
#                    Blade's controller replay (exporters/razer-exporter/tests/fixtures/desk,
#                    exporters/razer-exporter/demo/blade-15.toml)
#   token-collector  no ~/.claude/projects: six generated days of Claude Code history, with
#                    a daily and a 5-hour block budget ($20, $10) for the budget panels
#   network-exporter only with ODIN_DEMO=all (otherwise it reads this machine, whatever it
#                    has): the interfaces of the fixture host
#                    exporters/network-exporter/tests/fixtures/host-a (link speeds, a wireless
#                    link) beside this machine's TCP/UDP/IP counters; DNS probes still go out
# claude-process-exporter reads the machine as it is (no Claude Code process is fine).
#
# Environment (all optional):
#   ODIN_DEMO                        auto (default: demo data where the machine lacks it),
#                                    all, or none
#   NETWORK_EXPORTER_DNS_PROBE_NAME  names the DNS prober resolves, comma-separated
#                                    (default: example.com; on a machine with no DNS the
#                                    DnsProbeFailing alert fires, which is the truth)
#   ODIN_GPU_DEMO                    an nvidia-smi capture for gpu-exporter's demo: a path, or a
#                                    file in exporters/gpu-exporter/demo/; setting it forces
#                                    the GPU demo
#   ODIN_GPU_DEMO_SECTION            idle (default) or load: which part of the capture
#   ODIN_GPU_DEMO_BACKEND            nvml (default: the fake libnvidia-ml, every series) or
#                                    nvidia-smi (the fake nvidia-smi answering from the
#                                    capture: no PCIe throughput, replays or MIG devices)
#   PROMETHEUS_PORT, ALERTMANAGER_PORT, WEBHOOK_PORT   default 9090, 9093, 5001
#   ODIN_RUN_DIR                     state (logs, TSDB, demo data), default .run/
set -euo pipefail
cd "$(dirname "$0")/.."

run_dir=${ODIN_RUN_DIR:-.run}
prom_port=${PROMETHEUS_PORT:-9090}
am_port=${ALERTMANAGER_PORT:-9093}
hook_port=${WEBHOOK_PORT:-5001}
demo_mode=${ODIN_DEMO:-auto}
case "$demo_mode" in auto | all | none) ;; *) echo "ODIN_DEMO: auto, all or none, not $demo_mode" >&2; exit 2 ;; esac
gpu_backend=${ODIN_GPU_DEMO_BACKEND:-nvml}
case "$gpu_backend" in nvml | nvidia-smi) ;; *) echo "ODIN_GPU_DEMO_BACKEND: nvml or nvidia-smi, not $gpu_backend" >&2; exit 2 ;; esac
mkdir -p "$run_dir"
run_abs=$(cd "$run_dir" && pwd) # for paths handed to processes that run elsewhere
lock="$run_dir/run-stack.pid"

# A second run: say so instead of failing on busy ports.
if [ -f "$lock" ] && kill -0 "$(cat "$lock")" 2>/dev/null; then
  echo "run-stack is already running (pid $(cat "$lock")): its exporters, Prometheus on" \
    "http://127.0.0.1:$prom_port/ and Alertmanager on http://127.0.0.1:$am_port/ are up." >&2
  echo "Stop it with Ctrl-C in its terminal (or kill $(cat "$lock")) before starting another." >&2
  exit 1
fi
# Until the stack's own cleanup takes over below: the lock goes however this ends (a failed
# setup or build, Ctrl-C during them).
trap 'rm -f "$lock"' EXIT
trap 'exit 130' INT TERM
echo $$ >"$lock"

# Ctrl-C during setup.sh stops this script at once. In the foreground bash would run the INT
# trap only once setup.sh has ended, and setup.sh itself carries on when the command it runs
# catches the SIGINT and exits normally (pip, apt-get, a prompt). So it runs as a job waited
# for with `wait`, which a trapped signal interrupts at once; the trap then stops it. The
# subshell gives it back the default SIGINT (a script's background jobs ignore it) and its
# standard input (they get /dev/null), so its commands see Ctrl-C and the terminal as before.
setup_pid=
stop_setup() {
  [ -z "$setup_pid" ] || kill -TERM "$setup_pid" 2>/dev/null || true
  echo "interrupted during setup" >&2
  exit 130
}
trap stop_setup INT TERM
(trap - INT; exec ./scripts/setup.sh) <&0 &
setup_pid=$!
wait "$setup_pid"
setup_pid=
trap 'exit 130' INT TERM
export NETWORK_EXPORTER_DNS_PROBE_NAME=${NETWORK_EXPORTER_DNS_PROBE_NAME:-example.com}

manifest() { python3 scripts/manifest.py "$@"; }
mapfile -t exporters < <(manifest names)
[ "${#exporters[@]}" -gt 0 ] || { echo "exporters.toml lists no exporter" >&2; exit 1; }

# Ports taken by something else: say which, before starting anything.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
busy=()
for name in "${exporters[@]}"; do
  port=$(manifest field "$name" port)
  port_busy "$port" && busy+=("$port ($name)")
done
for p in "$prom_port (Prometheus)" "$am_port (Alertmanager)" "$hook_port (webhook logger)"; do
  port_busy "${p%% *}" && busy+=("$p")
done
if [ "${#busy[@]}" -gt 0 ]; then
  echo "ports already in use on 127.0.0.1: ${busy[*]}" >&2
  echo "something else listens there (ss -ltnp shows what); stop it, or set PROMETHEUS_PORT," \
    "ALERTMANAGER_PORT or WEBHOOK_PORT for those three" >&2
  rm -f "$lock"
  exit 1
fi

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
  rm -f "$lock"
  echo "stopped."
}
trap 'cleanup; exit 0' INT TERM
trap cleanup EXIT

# ---------------------------------------------------------------- demo data where needed
# want_demo NAME HAS_HARDWARE(0/1): whether NAME runs on demo data.
want_demo() {
  case "$demo_mode" in
    all) return 0 ;;
    none) return 1 ;;
    *) [ "$2" = 0 ] ;;
  esac
}
have_gpu=0
{ command -v nvidia-smi >/dev/null || [ -e /dev/nvidia0 ]; } && have_gpu=1
have_power=0
{ ls /sys/class/powercap/intel-rapl:* >/dev/null 2>&1 || grep -qx Battery /sys/class/power_supply/*/type 2>/dev/null; } && have_power=1
have_razer=0
{ ls -d /sys/bus/hid/drivers/razer*/0003:1532:* >/dev/null 2>&1 || grep -qs "HID_ID=0003:00001532" /sys/class/hidraw/*/device/uevent; } && have_razer=1
have_claude=0
[ -d "$HOME/.claude/projects" ] && [ -n "$(ls -A "$HOME/.claude/projects" 2>/dev/null)" ] && have_claude=1

declare -A extra_args extra_env demo_note demo_real
gpu_demo_dir=exporters/gpu-exporter/demo
if [ -n "${ODIN_GPU_DEMO:-}" ] || want_demo gpu-exporter "$have_gpu"; then
  capture=${ODIN_GPU_DEMO:-odin-demo.txt}
  [ -f "$capture" ] || capture="$gpu_demo_dir/$capture"
  if [ ! -f "$capture" ]; then
    echo "ODIN_GPU_DEMO: no capture file ${ODIN_GPU_DEMO:-} (neither a path nor a file in $gpu_demo_dir/)" >&2
    exit 1
  fi
  capture=$(cd "$(dirname "$capture")" && pwd)/$(basename "$capture")
  section=${ODIN_GPU_DEMO_SECTION:-idle}
  case "$section" in idle | load) ;; *) echo "ODIN_GPU_DEMO_SECTION: idle or load, not $section" >&2; exit 2 ;; esac
  case "$gpu_backend" in
    nvml)
      # NVML (the backend of a real machine): the fake library, its data file from the
      # capture (MIG devices from its `nvidia-smi -L` section), energy counters that grow
      # with the power drawn.
      gpu_demo=$run_abs/demo/gpu
      mkdir -p "$gpu_demo"
      fake_nvml=$gpu_demo/libnvidia-ml.so.1
      "${CC:-cc}" -shared -fPIC -O2 -o "$fake_nvml" exporters/gpu-exporter/tests/fake-nvml/fake_nvml.c -lpthread
      cargo build --release --locked -q -p gpu-exporter --example fake-nvml-data
      "$bin/examples/fake-nvml-data" "$capture" "$section" as-is >"$gpu_demo/nvml-data.txt"
      echo "energy_follows_power=1" >>"$gpu_demo/nvml-data.txt"
      extra_args[gpu-exporter]="--demo --backend=nvml --nvml.library=$fake_nvml"
      # An XID 31 (an application's GPU memory page fault) on GPU 0 at start, for the XID
      # panel and the GPUXidError warning (it fires for 10 minutes).
      extra_env[gpu-exporter]="FAKE_NVML_DATA=$gpu_demo/nvml-data.txt FAKE_NVML_XID_AT_START=0:31"
      demo_note[gpu-exporter]="the capture $(basename "$capture") (section $section) through the fake libnvidia-ml, an XID 31 on GPU 0 at start"
      ;;
    nvidia-smi)
      extra_args[gpu-exporter]="--demo --backend=nvidia-smi --nvidia-smi.command=$PWD/exporters/gpu-exporter/tests/fake-nvidia-smi"
      extra_env[gpu-exporter]="FAKE_NVIDIA_SMI_CAPTURE=$capture FAKE_NVIDIA_SMI_SECTION=$section"
      demo_note[gpu-exporter]="the capture $(basename "$capture") (section $section) through the fake nvidia-smi"
      ;;
  esac
fi
# network-exporter's point is this machine's network: its fixture host only with ODIN_DEMO=all
# (want_demo with "hardware present" is true for "all" alone).
if want_demo network-exporter 1; then
  # The fixture host's interfaces (net/dev, net/wireless, /sys/class/net: link speeds, a
  # wireless link), this machine's protocol counters and sockets (the host-wide files of
  # /proc/net, so that rates such as the TCP retransmission ratio have traffic to divide by).
  net_fixture=$PWD/exporters/network-exporter/tests/fixtures/host-a
  net_demo=$run_abs/demo/network
  rm -rf "$net_demo" && mkdir -p "$net_demo/proc/net"
  ln -s "$net_fixture/proc/net/dev" "$net_fixture/proc/net/wireless" "$net_demo/proc/net/"
  for f in netstat snmp snmp6 sockstat sockstat6 softnet_stat tcp tcp6; do
    if [ -e "/proc/net/$f" ]; then ln -s "/proc/net/$f" "$net_demo/proc/net/$f"; fi
  done
  extra_args[network-exporter]="--demo --path.procfs=$net_demo/proc --path.sysfs=$net_fixture/sys"
  demo_note[network-exporter]="the interfaces of the fixture host $net_fixture (link speeds, a wireless link)"
  demo_real[network-exporter]="TCP/UDP/IP counters, sockets and DNS probes of $NETWORK_EXPORTER_DNS_PROBE_NAME are"
fi
if want_demo power-exporter "$have_power"; then
  sys=$(python3 scripts/demo-data.py power "$run_dir/demo/power")
  extra_args[power-exporter]="--demo --path.sysfs=$sys"
  demo_note[power-exporter]="a laptop's /sys tree from its fixtures ($sys)"
  if [ -n "${extra_env[gpu-exporter]:-}" ]; then
    # GPU power from the same demo GPUs as gpu-exporter's, through the same fake.
    case "$gpu_backend" in
      nvml) extra_args[power-exporter]+=" --gpu.backend=nvml --gpu.nvml-library=$fake_nvml" ;;
      nvidia-smi) extra_args[power-exporter]+=" --gpu.backend=nvidia-smi --gpu.nvidia-smi-command=$PWD/exporters/gpu-exporter/tests/fake-nvidia-smi" ;;
    esac
    extra_env[power-exporter]=${extra_env[gpu-exporter]}
    demo_note[power-exporter]+=", GPU power from gpu-exporter's demo capture"
  fi
fi
if want_demo razer-exporter "$have_razer"; then
  extra_args[razer-exporter]="--demo --path.sysfs=$PWD/exporters/razer-exporter/tests/fixtures/desk/sys --path.dev=$run_dir/demo/razer-dev --hid.replay=$PWD/exporters/razer-exporter/demo/blade-15.toml"
  mkdir -p "$run_dir/demo/razer-dev"
  demo_note[razer-exporter]="the fixture desk (six peripherals) and a Blade 15's controller replay"
fi
if want_demo token-collector "$have_claude"; then
  home=$(python3 scripts/demo-data.py token "$run_dir/demo/claude")
  rm -rf "$run_dir/demo/token-state" && mkdir -p "$run_dir/demo/token-state"
  extra_args[token-collector]="--demo --claude.config-dir=$home --storage.path=$run_dir/demo/token-state/state.db --spool.dir=$run_dir/demo/token-state/spool --budget.day-usd=20 --budget.block-usd=10"
  demo_note[token-collector]="six generated days of Claude Code history ($home/projects), budgets of \$20 a day and \$10 a block"
fi

# ---------------------------------------------------------------- start
started=()
for name in "${exporters[@]}"; do
  port=$(manifest field "$name" port)
  if [ ! -x "$bin/$name" ]; then
    echo "$name: not built, skipped"
    continue
  fi
  mapfile -t args < <(manifest field "$name" run_args)
  read -r -a more <<<"${extra_args[$name]:-}"
  read -r -a envs <<<"${extra_env[$name]:-}"
  env "${envs[@]}" "$bin/$name" --web.listen-address="127.0.0.1:$port" "${args[@]}" "${more[@]}" \
    >"$run_dir/$name.log" 2>&1 &
  pids+=($!)
  started+=("$name:$port")
done

python3 scripts/webhook-logger.py --listen "127.0.0.1:$hook_port" --file "$run_dir/notifications.jsonl" \
  >"$run_dir/webhook-logger.log" 2>&1 &
pids+=($!)
# Alertmanager's receivers post to the webhook logger; with another WEBHOOK_PORT, a copy of
# the file points there.
am_config=deploy/alertmanager/alertmanager.yml
if [ "$hook_port" != 5001 ]; then
  sed "s#127.0.0.1:5001#127.0.0.1:$hook_port#g" "$am_config" >"$run_dir/alertmanager.yml"
  am_config="$run_dir/alertmanager.yml"
fi
prometheus-alertmanager --config.file="$am_config" --storage.path="$run_dir/alertmanager" \
  --web.listen-address="127.0.0.1:$am_port" --cluster.listen-address= \
  >"$run_dir/alertmanager.log" 2>&1 &
pids+=($!)
prom_config=deploy/prometheus/prometheus.yml
if [ "$am_port" != 9093 ]; then
  sed "s#127.0.0.1:9093#127.0.0.1:$am_port#g" "$prom_config" >"$run_dir/prometheus.yml"
  # rule_files are relative to the config file: keep them pointing at rules/.
  sed -i "s#\.\./\.\./rules/#$PWD/rules/#g" "$run_dir/prometheus.yml"
  prom_config="$run_dir/prometheus.yml"
fi
prometheus --config.file="$prom_config" \
  --storage.tsdb.path="$run_dir/prometheus" \
  --web.listen-address="127.0.0.1:$prom_port" >"$run_dir/prometheus.log" 2>&1 &
pids+=($!)

for entry in "${started[@]}"; do
  name=${entry%%:*}; port=${entry##*:}
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
  echo "$name: http://127.0.0.1:$port/  (metrics /metrics, health /health; log $run_dir/$name.log)"
  if [ -n "${demo_note[$name]:-}" ]; then
    echo "    *** DEMO DATA: ${demo_note[$name]}; not this machine's${demo_real[$name]:+ (its ${demo_real[$name]})}"
  fi
done
for _ in $(seq 300); do curl -fs "http://127.0.0.1:$prom_port/-/ready" >/dev/null && break; sleep 0.1; done
# Debian's prometheus package has no React UI: its pages are the classic ones under /classic/.
ui=
curl -fs -o /dev/null "http://127.0.0.1:$prom_port/targets" || ui=/classic
echo "prometheus: http://127.0.0.1:$prom_port/  (targets $ui/targets, rules $ui/rules, alerts $ui/alerts)"
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$am_port/-/ready" >/dev/null && break; sleep 0.1; done
echo "alertmanager: http://127.0.0.1:$am_port/  (routes from $am_config)"
echo "webhook logger: http://127.0.0.1:$hook_port/  (every notification Alertmanager sends: $run_dir/notifications.jsonl)"
echo "Ctrl-C stops everything."
rc=0
wait -n "${pids[@]}" || rc=$?
# Nothing of the stack should stop by itself: one that did is a failed run (exit 1), whatever
# its own status; the EXIT trap stops the rest.
echo "a process of the stack exited (status $rc); see $run_dir/*.log" >&2
exit 1
