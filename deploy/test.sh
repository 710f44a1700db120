#!/usr/bin/env bash
# Checks everything under deploy/, docker/ and dashboards/:
#   Kubernetes   every overlay renders with plain `kubectl kustomize`; built-in kinds pass
#                `kubernetes-validate --strict`; the DaemonSet keeps its security settings;
#                ServiceMonitor/PrometheusRule (no schema there) checked by
#                check-operator-objects.py and `promtool check rules`; the committed
#                PrometheusRule file is up to date; the dashboard ConfigMaps are the JSON files.
#   Prometheus   `promtool check config` on the static config; its rule_files glob finds rules/.
#   systemd      `systemd-analyze verify` and an offline security score for each unit (skipped if unusable).
#   Docker       hadolint.
#   YAML         yamllint --strict (.yamllint) on deploy/, rules/, dashboards/kustomization.yaml.
#   Dashboards   valid JSON; tests/dashboard_queries.py --lint (datasource ${datasource},
#                unique ids, $instance everywhere, names in docs/metrics.md) and --list-metrics;
#                and every query run against a real Prometheus scraping a stand-in exporter
#                that serves each metric of docs/metrics.md.
# Prints `N passed, M failed` (and skips) and exits 1 if anything failed.
# Needs: kubectl, promtool + prometheus, python3, .venv from scripts/setup.sh.
set -uo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO" || exit 1
VENV="$REPO/.venv/bin"
K8S="deploy/kubernetes"
TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
skipped=0

# check NAME COMMAND...: runs COMMAND, records the result, shows its output on failure.
check() {
  local name="$1"
  shift
  if "$@" >"$TMP/out" 2>&1; then
    passed=$((passed + 1))
    echo "ok    $name"
  else
    failed=$((failed + 1))
    echo "FAIL  $name"
    sed -e 's/^/      /' "$TMP/out" | tail -n 40
  fi
}

skip() {
  skipped=$((skipped + 1))
  echo "skip  $1"
}

# ------------------------------------------------------------------ tools
tools_ok=true
for t in kubectl promtool prometheus python3 "$VENV/yamllint" "$VENV/kubernetes-validate" \
  "$VENV/hadolint" "$VENV/python"; do
  if ! command -v "$t" >/dev/null; then
    echo "FAIL  tool $t missing (run scripts/setup.sh)"
    failed=$((failed + 1))
    tools_ok=false
  fi
done
$tools_ok || {
  echo "$passed passed, $failed failed"
  exit 1
}

# ------------------------------------------------------------------ Kubernetes
overlays=("$K8S/base")
for d in "$K8S"/overlays/*/; do overlays+=("${d%/}"); done

render() { kubectl kustomize "$1" >"$2"; }

# Built-in kinds must validate; the only kinds without a schema may be the Operator's CRDs.
validate() {
  local file="$1" version="$2" out rc
  out="$("$VENV/kubernetes-validate" --strict ${version:+-k "$version"} "$file" 2>&1)"
  rc=$?
  echo "$out"
  [ "$rc" -eq 0 ] || return 1
  ! grep -q '^ERROR' <<<"$out" || return 1
  if grep "Couldn't find schema" <<<"$out" | grep -v -E 'kind (ServiceMonitor|PrometheusRule) with api version monitoring.coreos.com/v1'; then
    echo "a kind other than the Prometheus Operator's has no schema"
    return 1
  fi
  grep -q 'passed for resource' <<<"$out"
}

for o in "${overlays[@]}"; do
  name="${o#"$K8S"/}"
  out="$TMP/${name//\//_}.yaml"
  check "kustomize renders $name" render "$o" "$out"
  [ -s "$out" ] || continue
  check "kubernetes-validate --strict $name (newest)" validate "$out" ""
  check "kubernetes-validate --strict $name (1.29)" validate "$out" "1.29.0"
done

# The validator must catch a misspelt field, or the checks above prove nothing.
strict_catches_typo() {
  sed -e 's/^      hostPID: false$/      hostPID: false\n      hostNetwrok: true/' \
    "$TMP/base.yaml" >"$TMP/typo.yaml"
  grep -q hostNetwrok "$TMP/typo.yaml" || return 1
  ! "$VENV/kubernetes-validate" --strict "$TMP/typo.yaml"
}
check "kubernetes-validate --strict rejects an unknown field" strict_catches_typo

daemonset_settings() {
  "$VENV/python" - "$TMP/base.yaml" <<'EOF'
import sys, yaml
docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(sys.argv[1])) if d}
ds = docs[("DaemonSet", "network-exporter")]
svc = docs[("Service", "network-exporter")]
pod = ds["spec"]["template"]["spec"]
c = pod["containers"][0]
sc, psc = c["securityContext"], pod["securityContext"]
env = {e["name"]: e.get("value") for e in c.get("env", [])}
mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
vols = {v["name"]: v for v in pod["volumes"]}
want = {
    "namespace monitoring": all(d["metadata"].get("namespace") == "monitoring" for d in docs.values()),
    "hostNetwork": pod.get("hostNetwork") is True,
    "no hostPID": not pod.get("hostPID"),
    "dnsPolicy ClusterFirstWithHostNet": pod.get("dnsPolicy") == "ClusterFirstWithHostNet",
    "tolerates every taint": {"operator": "Exists"} in pod.get("tolerations", []),
    "runAsNonRoot 65534": psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65534,
    "seccomp RuntimeDefault": psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
    "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
    "no privilege escalation": sc.get("allowPrivilegeEscalation") is False,
    "drop ALL capabilities": sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc["capabilities"].get("add"),
    "command": c.get("command") == ["/usr/local/bin/network-exporter"],
    "args": c.get("args") == ["--path.procfs=/host/proc", "--path.sysfs=/host/sys", "--web.listen-address=:19102"],
    "port metrics 19102": {"name": "metrics", "containerPort": 19102, "protocol": "TCP"} in c["ports"],
    "liveness /healthz": c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"},
    "readiness /ready": c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"},
    "requests and limits": all(k in c["resources"].get(s, {}) for s in ("requests", "limits") for k in ("cpu", "memory")),
    "/proc read-only": mounts["/host/proc"].get("readOnly") is True and vols[mounts["/host/proc"]["name"]]["hostPath"]["path"] == "/proc",
    "/sys read-only": mounts["/host/sys"].get("readOnly") is True and vols[mounts["/host/sys"]["name"]]["hostPath"]["path"] == "/sys",
    "env twin example": bool(env.get("NETWORK_EXPORTER_DNS_PROBE_NAME")),
    "rolling update": ds["spec"]["updateStrategy"]["type"] == "RollingUpdate"
        and "maxUnavailable" in ds["spec"]["updateStrategy"]["rollingUpdate"],
    "no service account token": pod.get("automountServiceAccountToken") is False,
    "headless service": svc["spec"].get("clusterIP") == "None",
    "service selects the pods": all(ds["spec"]["template"]["metadata"]["labels"].get(k) == v
                                    for k, v in svc["spec"]["selector"].items()),
    "service port metrics": any(p["name"] == "metrics" and p["port"] == 19102 for p in svc["spec"]["ports"]),
}
bad = [k for k, ok in want.items() if not ok]
print("missing: " + ", ".join(bad) if bad else f"{len(want)} settings as intended")
sys.exit(1 if bad else 0)
EOF
}
check "DaemonSet and Service settings" daemonset_settings

gpu_daemonset_settings() {
  "$VENV/python" - "$TMP/base.yaml" <<'EOF'
import sys, yaml
docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(sys.argv[1])) if d}
ds = docs[("DaemonSet", "gpu-exporter")]
svc = docs[("Service", "gpu-exporter")]
sa = docs[("ServiceAccount", "gpu-exporter")]
pod = ds["spec"]["template"]["spec"]
c = pod["containers"][0]
sc, psc = c["securityContext"], pod["securityContext"]
env = {e["name"]: e for e in c.get("env", [])}
mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
vols = {v["name"]: v for v in pod["volumes"]}
want = {
    "namespace monitoring": all(d["metadata"].get("namespace") == "monitoring"
                                for d in (ds, svc, sa)),
    "GPU nodes only": pod.get("nodeSelector", {}).get("nvidia.com/gpu.present") == "true",
    "runtimeClassName nvidia": pod.get("runtimeClassName") == "nvidia",
    "hostPID (GPU processes of other pods)": pod.get("hostPID") is True,
    "not on the host network": not pod.get("hostNetwork"),
    "tolerates every taint": {"operator": "Exists"} in pod.get("tolerations", []),
    "runAsNonRoot 65534": psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65534,
    "seccomp RuntimeDefault": psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
    "readOnlyRootFilesystem": sc.get("readOnlyRootFilesystem") is True,
    "no privilege escalation": sc.get("allowPrivilegeEscalation") is False,
    "not privileged": not sc.get("privileged"),
    "drop ALL capabilities": sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc["capabilities"].get("add"),
    "no GPU resource taken": not any("nvidia.com/gpu" in c["resources"].get(k, {}) for k in ("requests", "limits")),
    "command": c.get("command") == ["/usr/local/bin/gpu-exporter"],
    "args": c.get("args") == ["--web.listen-address=:9835", "--path.sysfs=/host/sys", "--metrics.dcgm-compat"],
    "NVIDIA_VISIBLE_DEVICES=all": env.get("NVIDIA_VISIBLE_DEVICES", {}).get("value") == "all",
    "NVIDIA_DRIVER_CAPABILITIES=utility": env.get("NVIDIA_DRIVER_CAPABILITIES", {}).get("value") == "utility",
    "NODE_NAME from spec.nodeName": env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName",
    "DCGM Hostname is the node": env.get("GPU_EXPORTER_METRICS_DCGM_HOSTNAME", {}).get("value") == "$(NODE_NAME)",
    "port metrics 9835": {"name": "metrics", "containerPort": 9835, "protocol": "TCP"} in c["ports"],
    "liveness /healthz": c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"},
    "readiness /ready": c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"},
    "requests and limits": all(k in c["resources"].get(s, {}) for s in ("requests", "limits") for k in ("cpu", "memory")),
    "/sys read-only": mounts["/host/sys"].get("readOnly") is True and vols[mounts["/host/sys"]["name"]]["hostPath"]["path"] == "/sys",
    "no service account token": pod.get("automountServiceAccountToken") is False,
    "headless service": svc["spec"].get("clusterIP") == "None",
    "service selects the pods": all(ds["spec"]["template"]["metadata"]["labels"].get(k) == v
                                    for k, v in svc["spec"]["selector"].items()),
    "service port metrics 9835": any(p["name"] == "metrics" and p["port"] == 9835 for p in svc["spec"]["ports"]),
}
bad = [k for k, ok in want.items() if not ok]
print("missing: " + ", ".join(bad) if bad else f"{len(want)} settings as intended")
sys.exit(1 if bad else 0)
EOF
}
check "gpu-exporter DaemonSet and Service settings" gpu_daemonset_settings

# The optional GPU components, each rendered on top of the base and validated.
gpu_components() {
  local comp dir out
  for comp in gpu-runtimeclass gpu-default-runtime; do
    dir="$TMP/comp-$comp"
    mkdir -p "$dir"
    # kustomize refuses absolute paths; relative ones may leave the kustomization's root.
    cat >"$dir/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$dir" "$REPO/$K8S/base")
components:
  - $(realpath --relative-to="$dir" "$REPO/$K8S/components/$comp")
EOF
    out="$dir/rendered.yaml"
    kubectl kustomize "$dir" >"$out" || return 1
    if ! validate "$out" "" >"$dir/validate.txt"; then
      echo "$comp: kubernetes-validate failed"
      cat "$dir/validate.txt"
      return 1
    fi
    case "$comp" in
      gpu-runtimeclass)
        "$VENV/python" -c 'import sys, yaml; d = [x for x in yaml.safe_load_all(open(sys.argv[1])) if x and x["kind"] == "RuntimeClass"]; sys.exit(0 if len(d) == 1 and d[0]["handler"] == "nvidia" and d[0]["metadata"]["name"] == "nvidia" else 1)' "$out" ||
          { echo "$comp: no RuntimeClass nvidia"; return 1; } ;;
      gpu-default-runtime)
        "$VENV/python" -c 'import sys, yaml; d = [x for x in yaml.safe_load_all(open(sys.argv[1])) if x and x["kind"] == "DaemonSet" and x["metadata"]["name"] == "gpu-exporter"]; sys.exit(0 if len(d) == 1 and "runtimeClassName" not in d[0]["spec"]["template"]["spec"] else 1)' "$out" ||
          { echo "$comp: runtimeClassName still set"; return 1; } ;;
    esac
    echo "$comp: renders and validates"
  done
}
check "optional GPU components (gpu-runtimeclass, gpu-default-runtime)" gpu_components

dashboard_configmaps() {
  "$VENV/python" - "$TMP/overlays_default.yaml" <<'EOF'
import glob, os, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ConfigMap"]
have = {}
for d in docs:
    labels = d["metadata"].get("labels", {})
    if labels.get("grafana_dashboard") != "1":
        print(f"{d['metadata']['name']}: no grafana_dashboard label"); sys.exit(1)
    have.update(d["data"])
bad = 0
for path in sorted(glob.glob("dashboards/*.json")):
    name = os.path.basename(path)
    if name not in have:
        print(f"{path} is in no ConfigMap: add it to dashboards/kustomization.yaml"); bad += 1
    elif have[name] != open(path).read():
        print(f"{path}: ConfigMap content differs"); bad += 1
print(f"{len(have)} dashboards in ConfigMaps")
sys.exit(1 if bad or not have else 0)
EOF
}
check "dashboard ConfigMaps hold every dashboards/*.json" dashboard_configmaps
check "PrometheusRule file up to date (gen-prometheusrule.sh --check)" "$K8S/gen-prometheusrule.sh" --check

operator_objects() {
  mkdir -p "$TMP/rules-from-operator"
  "$VENV/python" "$K8S/check-operator-objects.py" "$REPO" "$TMP/rules-from-operator" \
    <"$TMP/overlays_prometheus-operator.yaml" || return 1
  promtool check rules "$TMP"/rules-from-operator/*.yml
}
check "ServiceMonitor and PrometheusRules (check-operator-objects.py, promtool)" operator_objects

# ------------------------------------------------------------------ Prometheus
prometheus_config() {
  local out n
  out="$(promtool check config deploy/prometheus/prometheus.yml 2>&1)" || {
    echo "$out"
    return 1
  }
  echo "$out"
  # rule_files is relative to the config file: it must find exactly the files in rules/.
  n="$(find rules -maxdepth 1 -name '*.yml' 2>/dev/null | wc -l)"
  if [ "$n" -gt 0 ]; then
    grep -q "SUCCESS: $n rule files found" <<<"$out"
  fi
}
check "promtool check config deploy/prometheus/prometheus.yml" prometheus_config

# ------------------------------------------------------------------ systemd
if command -v systemd-analyze >/dev/null; then
  for svc in network-exporter gpu-exporter; do
    unit="$TMP/$svc.service"
    # verify insists that ExecStart's binary exists; point it at one that does.
    sed -e "s#^ExecStart=/usr/local/bin/$svc#ExecStart=/bin/true#" \
      "deploy/systemd/$svc.service" >"$unit"
    if systemd-analyze verify "$unit" >"$TMP/sd" 2>&1; then
      passed=$((passed + 1))
      echo "ok    systemd-analyze verify $svc.service"
    elif grep -q -i -e 'not permitted' -e 'no such file or directory.*/run/systemd' -e 'System has not been booted' "$TMP/sd"; then
      skip "systemd-analyze verify: cannot run here ($(head -n 1 "$TMP/sd"))"
    else
      failed=$((failed + 1))
      echo "FAIL  systemd-analyze verify $svc.service"
      sed -e 's/^/      /' "$TMP/sd"
    fi
    security_score() {
      local out score
      out="$(systemd-analyze security --offline=true "$1" 2>&1)" || true
      score="$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")"
      echo "exposure ${score:-unknown} (must be at most 2.0)"
      [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'
    }
    if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
      check "systemd-analyze security --offline $svc.service: exposure at most 2.0" security_score "$unit"
    else
      skip "systemd-analyze security --offline not supported by this systemd"
    fi
  done
else
  skip "systemd-analyze not installed"
fi

# ------------------------------------------------------------------ Docker, YAML
check "hadolint docker/Dockerfile" "$VENV/hadolint" docker/Dockerfile
yaml_paths=(deploy dashboards/kustomization.yaml .yamllint)
[ -d rules ] && yaml_paths+=(rules)
check "yamllint --strict ${yaml_paths[*]}" "$VENV/yamllint" --strict "${yaml_paths[@]}"

# ------------------------------------------------------------------ dashboards
json_valid() {
  local f
  for f in dashboards/*.json; do python3 -m json.tool "$f" >/dev/null || { echo "$f"; return 1; }; done
}
check "dashboards/*.json are valid JSON" json_valid
check "dashboard lint (tests/dashboard_queries.py --lint)" python3 tests/dashboard_queries.py --lint \
  --allow-empty dashboards/e2e-allow-empty.tsv
check "dashboard lint with the GPU end-to-end allow-list" python3 tests/dashboard_queries.py --lint \
  --allow-empty dashboards/e2e-allow-empty-gpu.tsv

lint_catches_faults() {
  # A panel on a fixed datasource, a duplicate id, a query without $instance and an
  # undocumented metric must all be reported.
  python3 - dashboards/network.json "$TMP/broken.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
p = [x for x in d["panels"] if x["type"] != "row"]
p[0]["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
p[1]["id"] = p[0]["id"]
p[2]["targets"][0]["expr"] = "rate(network_receive_bytes_total[5m])"
p[3]["targets"][0]["expr"] = 'network_no_such_metric{instance=~"$instance", device=~"$device"}'
json.dump(d, open(sys.argv[2], "w"))
EOF
  local out
  out="$(python3 tests/dashboard_queries.py --lint "$TMP/broken.json")" && return 1
  echo "$out"
  grep -q 'not ${datasource}' <<<"$out" && grep -q 'panel id' <<<"$out" &&
    grep -q 'does not use \$instance' <<<"$out" && grep -q 'network_no_such_metric is not in docs/metrics.md' <<<"$out"
}
check "dashboard lint catches broken panels" lint_catches_faults

list_metrics() {
  python3 tests/dashboard_queries.py --list-metrics >"$TMP/metrics.txt" || return 1
  wc -l <"$TMP/metrics.txt"
  grep -qx network_receive_bytes_total "$TMP/metrics.txt" &&
    grep -qx network_dns_lookup_duration_seconds_bucket "$TMP/metrics.txt" &&
    ! grep -qx up "$TMP/metrics.txt"
}
check "dashboard_queries.py --list-metrics" list_metrics

# Every dashboard query against a real Prometheus. The scrape target is a stand-in exporter
# serving each documented metric (docs/metrics.md) with counters that grow every second, so
# this shows that the dashboards only need what the metric reference promises, with the
# documented labels. The lead's end-to-end test runs the same script against the real binary.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
cat >"$TMP/doc_exporter.py" <<'EOF'
import http.server, itertools, re, sys, time
port, doc = int(sys.argv[1]), sys.argv[2]
# One value per label, or a list: one series per value (dashboards that select each value).
VALUES = {"device": "eth0", "family": "ipv4", "state": "established", "cpu": "0",
          "collector": "netdev", "name": "example.com", "server": "system", "result": "failure",
          "rcode": "servfail", "reason": "retry", "operstate": "up", "duplex": "full",
          "address": "02:00:00:00:00:01", "version": "0.1.0",
          # gpu-exporter
          "gpu": "0", "uuid": "GPU-00000000-0000-0000-0000-000000000001",
          "pci_bus_id": "00000000:01:00.0", "driver_version": "595.71.05",
          "vbios_version": "95.03.1f.00.01", "compute_capability": "8.9", "serial": "0",
          "cuda_version": "13.0", "backend": "nvml", "threshold": ["slowdown", "shutdown"],
          "engine": "memory", "clock": "sm", "fan": "0", "link": ["current", "max"],
          "direction": "rx", "type": "uncorrected", "scope": "volatile",
          "kind": "correctable", "xid": "13", "pid": "4242", "process": "python3",
          "mig_uuid": "MIG-00000000-0000-0000-0000-000000000001", "gpu_instance": "1",
          "compute_instance": "0", "profile": "1g.10gb", "UUID": "GPU-00000000-0000-0000-0000-000000000001",
          "modelName": "NVIDIA GeForce RTX 4080 SUPER", "Hostname": "ws1", "cause": "double_bit_ecc"}
PREFIXES = ("network", "nvidia_gpu")
rows = []
for line in open(doc, encoding="utf-8"):
    m = re.match(r"^\|\s*`([^`]+)`\s*\|\s*(\w+)\s*\|([^|]*)\|", line)
    if not m:
        continue
    labels = [x.strip() for x in m.group(3).split(",") if x.strip()]
    if m.group(1).startswith("<prefix>_"):
        for prefix in PREFIXES:
            rows.append((m.group(1).replace("<prefix>", prefix), m.group(2), labels))
    elif m.group(1).startswith(tuple(p + "_" for p in PREFIXES)) or m.group(1).startswith("DCGM_"):
        rows.append((m.group(1), m.group(2), labels))
start = time.time()

def labelsets(labels):
    choices = [[(l, v) for v in (VALUES[l] if isinstance(VALUES[l], list) else [VALUES[l]])]
               for l in labels]
    for combo in itertools.product(*choices):
        yield ",".join(f'{l}="{v}"' for l, v in combo)

def body():
    t = time.time() - start
    out = []
    for name, mtype, labels in rows:
        out.append(f"# TYPE {name} {mtype}")
        for ls in labelsets(labels):
            if mtype == "histogram":
                n = int(t) + 1
                sep = "," if ls else ""
                out.append(f'{name}_bucket{{{ls}{sep}le="0.05"}} {n}')
                out.append(f'{name}_bucket{{{ls}{sep}le="+Inf"}} {n}')
                out.append(f"{name}_sum{{{ls}}} {0.01 * n}")
                out.append(f"{name}_count{{{ls}}} {n}")
            else:
                out.append(f"{name}{{{ls}}} {100 * t + 1 if mtype == 'counter' else 1}")
    return ("\n".join(out) + "\n").encode()

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = body()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass

http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
EOF

live_queries() {
  local eport pport q="$TMP/queries.txt"
  eport="$(free_port)"
  pport="$(free_port)"
  python3 "$TMP/doc_exporter.py" "$eport" docs/metrics.md &
  PIDS+=($!)
  # One alert that always fires, so the ALERTS panels have data too.
  cat >"$TMP/rules.yml" <<EOF
groups:
  - name: selftest
    rules:
      - alert: SelfTestAlwaysFiring
        expr: up{job="network-exporter"} == 1
        labels:
          severity: info
EOF
  cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
scrape_configs:
  - job_name: network-exporter
    static_configs:
      - targets: ["127.0.0.1:$eport"]
EOF
  prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/tsdb" \
    --web.listen-address="127.0.0.1:$pport" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
  PIDS+=($!)
  local url="http://127.0.0.1:$pport"
  # All queries must return data (rate over 5s once a few scrapes are in).
  python3 tests/dashboard_queries.py --prometheus "$url" --rate-interval 5s --wait 30 >"$q" 2>&1
  local rc=$?
  tail -n 1 "$q"
  [ "$rc" -eq 0 ] || {
    grep -v '^OK' "$q"
    return 1
  }
  # A device that does not exist empties the device panels: reported, exit 1 ...
  python3 tests/dashboard_queries.py --prometheus "$url" --rate-interval 5s \
    --var device=no-such-device >"$q" 2>&1 && {
    echo "no failure for an unknown device"
    return 1
  }
  grep -q '^EMPTY   odin-network "Receive throughput" A' "$q" || return 1
  # ... unless each of those panels is in an --allow-empty file.
  sed -n 's/^EMPTY   \([^ ]*\) "\(.*\)" [A-Z]*: .*/\1\t\2\tselftest: device absent/p' "$q" | sort -u >"$TMP/allow.tsv"
  python3 tests/dashboard_queries.py --prometheus "$url" --rate-interval 5s \
    --var device=no-such-device --allow-empty "$TMP/allow.tsv" >"$q" 2>&1 || {
    cat "$q"
    return 1
  }
  grep -q '^ALLOWED odin-network "Receive throughput" A' "$q" && tail -n 1 "$q"
}
check "every dashboard query returns data from a Prometheus scraping docs/metrics.md" live_queries

echo "$passed passed, $failed failed${skipped:+, $skipped skipped}"
[ "$failed" -eq 0 ]
