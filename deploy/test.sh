#!/usr/bin/env bash
# Checks everything under deploy/, docker/ and dashboards/:
#   Kubernetes   every overlay renders with plain `kubectl kustomize`; built-in kinds pass
#                `kubernetes-validate --strict`; every exporter's DaemonSet matches what
#                exporters.toml says it needs and keeps the shared security settings
#                (tests/odin/deploychecks.py);
#                ServiceMonitor/PrometheusRule (no schema there) checked by
#                check-operator-objects.py and `promtool check rules`; the committed
#                PrometheusRule file is up to date; the dashboard ConfigMaps are the JSON files.
#   Prometheus   `promtool check config` on the static config; its rule_files glob finds rules/;
#                a job per exporter of exporters.toml on its port.
#   systemd      the units grant what exporters.toml says; `systemd-analyze verify` and an
#                offline security score for each exporter's unit (skipped if unusable);
#                `systemd-analyze --user verify` for the user units (*-user.service).
#   Docker       hadolint.
#   YAML         yamllint --strict (.yamllint) on deploy/, rules/, dashboards/kustomization.yaml.
#   Dashboards   the ConfigMaps above; the dashboards' own checks (lint, queries against a
#                Prometheus) are tests/test_dashboards.py.
# Prints `N passed, M failed` (and skips) and exits 1 if anything failed.
# Needs: kubectl, promtool + prometheus, python3, .venv from scripts/setup.sh. The manifest
# (exporters.toml) is read through scripts/manifest.py and tests/odin/.
set -uo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO" || exit 1
VENV="$REPO/.venv/bin"
K8S="deploy/kubernetes"
TMP="$(mktemp -d)"
cleanup() {
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
for t in kubectl promtool python3 "$VENV/yamllint" "$VENV/kubernetes-validate" \
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

# One check for every exporter of exporters.toml: hostNetwork, hostPID, host mounts, the GPU
# runtime and args from the manifest, plus the security settings they all share
# (tests/odin/deploychecks.py).
check "DaemonSet, Service and ServiceAccount of every exporter (exporters.toml)" \
  "$VENV/python" tests/odin/deploychecks.py daemonsets "$TMP/base.yaml"

# The optional components, each rendered on top of the base and validated.
optional_components() {
  local comp dir out
  for comp in gpu-runtimeclass gpu-default-runtime razer-hidraw; do
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
        # Every exporter that needs the GPU runtime (exporters.toml) loses runtimeClassName.
        "$VENV/python" -c 'import sys, yaml; sys.path.insert(0, "tests"); from odin import manifest; gpu = {e["name"] for e in manifest.load() if e["host"]["gpu_runtime"]}; d = [x for x in yaml.safe_load_all(open(sys.argv[1])) if x and x["kind"] == "DaemonSet" and x["metadata"]["name"] in gpu]; sys.exit(0 if gpu and len(d) == len(gpu) and all("runtimeClassName" not in x["spec"]["template"]["spec"] for x in d) else 1)' "$out" ||
          { echo "$comp: runtimeClassName still set"; return 1; } ;;
      razer-hidraw)
        # razer-exporter takes the hidraw nodes from the device plugin and looks for them
        # where the plugin puts them; nothing else changes.
        "$VENV/python" -c 'import sys, yaml; d = [x for x in yaml.safe_load_all(open(sys.argv[1])) if x and x["kind"] == "DaemonSet" and x["metadata"]["name"] == "razer-exporter"]; c = d[0]["spec"]["template"]["spec"]["containers"][0] if len(d) == 1 else {}; env = {e["name"]: e.get("value") for e in c.get("env", [])}; lim = c.get("resources", {}).get("limits", {}); sys.exit(0 if int(lim.get("squat.ai/razer-hidraw", 0)) > 0 and env.get("RAZER_EXPORTER_PATH_DEV") == "/dev/odin-razer" and not c.get("securityContext", {}).get("privileged") else 1)' "$out" ||
          { echo "$comp: no device plugin resource or RAZER_EXPORTER_PATH_DEV"; return 1; } ;;
    esac
    echo "$comp: renders and validates"
  done
}
check "optional components (gpu-runtimeclass, gpu-default-runtime, razer-hidraw)" optional_components

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
check "a ServiceMonitor for every exporter of exporters.toml" \
  "$VENV/python" tests/odin/deploychecks.py servicemonitors "$TMP/overlays_prometheus-operator.yaml"

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
check "deploy/prometheus/prometheus.yml scrapes every exporter of exporters.toml on its port" \
  "$VENV/python" tests/odin/deploychecks.py prometheus deploy/prometheus/prometheus.yml

# ------------------------------------------------------------------ systemd
check "systemd units grant what exporters.toml says (devices, host processes)" \
  "$VENV/python" tests/odin/deploychecks.py systemd deploy/systemd
mapfile -t exporters < <("$VENV/python" scripts/manifest.py names)
if command -v systemd-analyze >/dev/null; then
  for svc in "${exporters[@]}"; do
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
  # User units (systemctl --user), e.g. token-collector-user.service: verify needs a user
  # manager, which containers and CI shells usually lack.
  for unit_file in deploy/systemd/*-user.service; do
    [ -e "$unit_file" ] || continue
    unit="$TMP/$(basename "$unit_file")"
    sed -e 's#^ExecStart=[^ ]*#ExecStart=/bin/true#' "$unit_file" >"$unit"
    if systemd-analyze --user verify "$unit" >"$TMP/sd" 2>&1; then
      passed=$((passed + 1))
      echo "ok    systemd-analyze --user verify $(basename "$unit_file")"
    elif grep -q -i -e 'not permitted' -e 'Failed to initialize manager' -e 'No such device or address' -e 'System has not been booted' "$TMP/sd"; then
      skip "systemd-analyze --user verify $(basename "$unit_file"): no user manager here ($(head -n 1 "$TMP/sd"))"
    else
      failed=$((failed + 1))
      echo "FAIL  systemd-analyze --user verify $(basename "$unit_file")"
      sed -e 's/^/      /' "$TMP/sd"
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

echo "$passed passed, $failed failed${skipped:+, $skipped skipped}"
[ "$failed" -eq 0 ]
