#!/usr/bin/env bash
# Checks ODIN's Prometheus rules and Alertmanager config:
#   - promtool check rules      (syntax, PromQL, templates)
#   - promtool test rules       (the unit tests in rules/tests/)
#   - amtool check-config       (deploy/alertmanager/alertmanager.yml)
#   - amtool config routes test (critical and warning alerts reach their receivers)
#   - rules/check_rules.py      (labels, annotations, runbook anchors, test coverage,
#                                metric names against docs/metrics.md)
# Needs promtool and amtool (Debian: prometheus, prometheus-alertmanager; scripts/setup.sh)
# and python3 with PyYAML (the repo's .venv has it). Exits non-zero if any check fails; the
# last line is "N passed, M failed".
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 1

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }

# run NAME CMD...: one check; shows the command's output when it fails.
run() {
  local name="$1" out
  shift
  if out="$("$@" 2>&1)"; then
    ok "$name"
  else
    fail "$name"
    printf '%s\n' "$out" | sed 's/^/    /'
  fi
}

for tool in promtool amtool; do
  if ! command -v "$tool" >/dev/null; then
    fail "$tool is installed (run scripts/setup.sh)"
  fi
done

shopt -s nullglob
rule_files=(rules/*.yml)
test_files=(rules/tests/*.yml)
shopt -u nullglob

if command -v promtool >/dev/null; then
  run "promtool check rules ${rule_files[*]}" promtool check rules "${rule_files[@]}"
  for t in "${test_files[@]}"; do
    run "promtool test rules $t" promtool test rules "$t"
  done
fi

am_config=deploy/alertmanager/alertmanager.yml
if command -v amtool >/dev/null; then
  run "amtool check-config $am_config" amtool check-config "$am_config"
  for route in critical:odin-critical warning:odin-warning; do
    sev="${route%%:*}" receiver="${route#*:}"
    run "alertmanager routes severity=$sev to $receiver" \
      amtool config routes test --config.file="$am_config" --verify.receivers="$receiver" \
      severity="$sev" alertname=NetworkLinkDown
  done
fi

python=python3
[ -x "$REPO/.venv/bin/python3" ] && python="$REPO/.venv/bin/python3"
if out="$("$python" rules/check_rules.py 2>&1)"; then
  status=0
else
  status=$?
fi
summary="$(printf '%s\n' "$out" | tail -n 1)"
if [[ "$summary" =~ ^passed=([0-9]+)\ failed=([0-9]+)$ ]]; then
  printf '%s\n' "$out" | sed '$d'
  passed=$((passed + BASH_REMATCH[1]))
  failed=$((failed + BASH_REMATCH[2]))
  label="ok  "
  [ "${BASH_REMATCH[2]}" -eq 0 ] || label="FAIL"
  echo "$label rules/check_rules.py: ${BASH_REMATCH[1]} consistency checks passed, ${BASH_REMATCH[2]} failed"
  # A crash after the summary line would still have to fail the run.
  if [ "$status" -ne 0 ] && [ "${BASH_REMATCH[2]}" -eq 0 ]; then
    fail "rules/check_rules.py exited with status $status"
  fi
else
  fail "rules/check_rules.py ran (exit status $status)"
  printf '%s\n' "$out" | sed 's/^/    /'
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
