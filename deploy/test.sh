#!/usr/bin/env bash
# Checks everything under deploy/, docker/ and dashboards/:
#   Kubernetes   every overlay renders with plain `kubectl kustomize`; built-in kinds pass
#                `kubernetes-validate --strict`; every exporter's DaemonSet matches what
#                exporters.toml says it needs and keeps the shared security settings
#                (tests/odin/deploychecks.py); each optional component renders on the base
#                and does what it says (web-config: every DaemonSet mounts the Secret, gets
#                the flags' twins and HTTPS probes, the rest unchanged; with
#                prometheus-operator-web-config every ServiceMonitor scrapes over HTTPS with
#                a CA and basic auth); the example Secrets validate and agree with the mount,
#                and their web-config.yml (and systemd's) passes `promtool check web-config`;
#                ServiceMonitor/PrometheusRule (no schema there) checked by
#                check-operator-objects.py and `promtool check rules`; the committed
#                PrometheusRule file is up to date; the dashboard ConfigMaps are the JSON files.
#   Prometheus   `promtool check config` on the static config; its rule_files glob finds rules/;
#                a job per exporter of exporters.toml on its port.
#   systemd      the units grant what exporters.toml says; `systemd-analyze verify` and an
#                offline security score for each exporter's unit (skipped if unusable);
#                the web config drop-in (web-config.conf.example) holds only LoadCredential=
#                and ExecStart= and keeps each unit's command line, and verifies on every unit;
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
  for comp in gpu-runtimeclass gpu-default-runtime razer-hidraw web-config; do
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
      web-config)
        # Every exporter of exporters.toml: the Secret mounted whole and read-only at
        # /etc/odin/web, the twins of --web.config.file and --web.unauthenticated-probes,
        # HTTPS probes; everything the base check holds them to still holds.
        "$VENV/python" tests/odin/deploychecks.py daemonsets --web-config "$out" || return 1 ;;
    esac
    echo "$comp: renders and validates"
  done
}
check "optional components (gpu-runtimeclass, gpu-default-runtime, razer-hidraw, web-config)" optional_components

# The web config for the Prometheus Operator: both components on the prometheus-operator
# overlay's content, in the order their headers say.
operator_web_config() {
  local dir="$TMP/comp-operator-web-config" c
  mkdir -p "$dir"
  {
    printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: monitoring\n'
    printf 'resources:\n  - %s\ncomponents:\n' "$(realpath --relative-to="$dir" "$REPO/$K8S/base")"
    for c in prometheus-operator web-config prometheus-operator-web-config; do
      printf '  - %s\n' "$(realpath --relative-to="$dir" "$REPO/$K8S/components/$c")"
    done
  } >"$dir/kustomization.yaml"
  kubectl kustomize "$dir" >"$dir/rendered.yaml" || return 1
  validate "$dir/rendered.yaml" "" >"$dir/validate.txt" || { cat "$dir/validate.txt"; return 1; }
  mkdir -p "$dir/rules"
  "$VENV/python" "$K8S/check-operator-objects.py" "$REPO" "$dir/rules" <"$dir/rendered.yaml" || return 1
  "$VENV/python" tests/odin/deploychecks.py servicemonitors --web-config "$dir/rendered.yaml" || return 1
  "$VENV/python" tests/odin/deploychecks.py daemonsets --web-config "$dir/rendered.yaml"
}
check "web-config + prometheus-operator-web-config: HTTPS, CA and basic auth on every ServiceMonitor" operator_web_config

# The example Secrets of the two components (not resources of them): valid objects, and the
# files web-config.yml names are keys of its Secret where the pods mount it.
web_config_secrets() {
  local f
  for f in "$K8S"/components/web-config/secret.example.yaml \
    "$K8S"/components/prometheus-operator-web-config/secret.example.yaml; do
    validate "$f" "" || return 1
  done
  "$VENV/python" tests/odin/deploychecks.py web-config-secrets
}
check "example Secrets of the web config components" web_config_secrets

# The example web configurations load (promtool reads the certificate and key too): the
# Kubernetes one with /etc/odin/web/ pointed at a throwaway certificate, systemd's as it is,
# its relative names taken from the folder of the file.
web_config_examples() {
  local dir="$TMP/web-config-examples" d
  for d in kubernetes systemd; do
    mkdir -p "$dir/$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
      -subj /CN=odin-exporter.monitoring.svc -keyout "$dir/$d/tls.key" -out "$dir/$d/tls.crt" \
      2>"$dir/openssl.txt" || { cat "$dir/openssl.txt"; return 1; }
  done
  "$VENV/python" -c 'import sys, yaml; sys.stdout.write(yaml.safe_load(open(sys.argv[1]))["stringData"]["web-config.yml"])' \
    "$K8S/components/web-config/secret.example.yaml" |
    sed -e "s#/etc/odin/web/#$dir/kubernetes/#g" >"$dir/kubernetes/web-config.yml" || return 1
  cp deploy/systemd/web-config.yml.example "$dir/systemd/web-config.yml"
  promtool check web-config "$dir/kubernetes/web-config.yml" "$dir/systemd/web-config.yml"
}
if command -v openssl >/dev/null; then
  check "promtool check web-config: the example web configurations" web_config_examples
else
  skip "promtool check web-config on the examples: no openssl for a throwaway certificate"
fi

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

# The commented job for an exporter behind a web configuration, uncommented (its files, CA and
# password, in a scratch folder): promtool refuses an unknown or misplaced field.
prometheus_web_config_job() {
  local dir="$TMP/prometheus-web-config"
  mkdir -p "$dir"
  : >"$dir/ca.crt"
  echo example >"$dir/password"
  {
    echo "scrape_configs:"
    awk '/^  # - job_name:/ { on = 1 } on && !/^  #/ { exit } on' deploy/prometheus/prometheus.yml |
      sed -e 's/^  # \{0,1\}/  /' -e "s#/etc/prometheus/odin/#$dir/#"
  } >"$dir/prometheus.yml"
  cat "$dir/prometheus.yml"
  grep -q 'scheme: https' "$dir/prometheus.yml" && grep -q 'basic_auth:' "$dir/prometheus.yml" || return 1
  promtool check config "$dir/prometheus.yml"
}
check "deploy/prometheus/prometheus.yml: the commented web config job, uncommented, passes promtool" \
  prometheus_web_config_job

# ------------------------------------------------------------------ systemd
check "systemd units grant what exporters.toml says (devices, host processes)" \
  "$VENV/python" tests/odin/deploychecks.py systemd deploy/systemd
check "web config drop-in: only LoadCredential= and ExecStart=, each unit's command line kept" \
  "$VENV/python" tests/odin/deploychecks.py systemd-web-config deploy/systemd
mapfile -t exporters < <("$VENV/python" scripts/manifest.py names)
if command -v systemd-analyze >/dev/null; then
  webdir="$TMP/web-config-dropin"
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
    # The same unit with the web config drop-in beside it (<unit>.d/ next to the unit file is
    # where verify looks): no complaint about the drop-in, which verify only warns about.
    mkdir -p "$webdir/$svc.service.d"
    cp "$unit" "$webdir/$svc.service"
    sed -e 's#^ExecStart=/usr/local/bin/%N#ExecStart=/bin/true#' deploy/systemd/web-config.conf.example \
      >"$webdir/$svc.service.d/web-config.conf"
    if systemd-analyze verify "$webdir/$svc.service" >"$TMP/sd" 2>&1 && ! grep -q 'web-config.conf' "$TMP/sd"; then
      passed=$((passed + 1))
      echo "ok    systemd-analyze verify $svc.service with web-config.conf"
    elif grep -q -i -e 'not permitted' -e 'no such file or directory.*/run/systemd' -e 'System has not been booted' "$TMP/sd"; then
      skip "systemd-analyze verify with web-config.conf: cannot run here ($(head -n 1 "$TMP/sd"))"
    else
      failed=$((failed + 1))
      echo "FAIL  systemd-analyze verify $svc.service with web-config.conf"
      sed -e 's/^/      /' "$TMP/sd"
    fi
  done
  # ...and verify does read it: a misspelt key in a copy is reported.
  dropin_is_read() {
    local svc="${exporters[0]}"
    sed -e 's/^LoadCredential=tls.key:/LoadCredentail=tls.key:/' "$webdir/$svc.service.d/web-config.conf" \
      >"$webdir/$svc.service.d/zz-typo.conf"
    grep -q LoadCredentail "$webdir/$svc.service.d/zz-typo.conf" || return 1
    local out
    out="$(systemd-analyze verify "$webdir/$svc.service" 2>&1)"
    rm -f "$webdir/$svc.service.d/zz-typo.conf"
    echo "$out"
    grep -q "zz-typo.conf.*LoadCredentail" <<<"$out"
  }
  if [ "${#exporters[@]}" -gt 0 ] && [ -e "$webdir/${exporters[0]}.service.d/web-config.conf" ]; then
    check "systemd-analyze verify reads the drop-in (a misspelt key in it is reported)" dropin_is_read
  fi
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
