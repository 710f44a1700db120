#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what is missing
# (scripts/setup.sh), then formatting, lints, unit and integration tests, rules, manifests,
# dashboards, end-to-end tests with a real Prometheus, and differential tests against
# node_exporter. Ends with one line: "test-all: N passed, M failed" (suites).
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh || { echo "setup failed"; exit 1; }

passed=0
failed=()
suite() {
  local name=$1; shift
  echo
  echo "=== $name: $*"
  if "$@"; then passed=$((passed + 1)); else failed+=("$name"); echo "=== $name FAILED"; fi
}

suite fmt cargo fmt --all --check
suite clippy cargo clippy --workspace --all-targets --locked -- -D warnings
suite cargo-test cargo test --workspace --locked
suite build cargo build --workspace --locked --bins --examples
suite rules ./rules/test.sh
suite deploy ./deploy/test.sh
suite e2e-network python3 tests/e2e_network.py
suite differential-node-exporter python3 tests/differential_node.py
suite e2e-gpu python3 tests/e2e_gpu.py

echo
for f in "${failed[@]}"; do echo "failed suite: $f"; done
echo "test-all: ${passed} passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
