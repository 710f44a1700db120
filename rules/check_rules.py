#!/usr/bin/env python3
"""Consistency checks that promtool does not do, for rules/*.rules.yml.

For every alerting rule: a `severity` of warning or critical; non-empty `summary` and
`description`; a `runbook_url` of the form `<base>/docs/runbooks.md#<alert name in lower
case>`, with one `<base>` shared by all rules and a matching heading in docs/runbooks.md;
at least one `promtool test rules` case in rules/tests/ where it fires and one where it
does not. Runbook links are followed as GitHub would (odin.runbooks): the path after the base
must be the repository's docs/runbooks.md and the anchor a heading of it, computed from the
heading's rendered text, repeats numbered; the heading reached must be the `## <alert name>`
section. Also: every runbook section belongs to an alert, every `alertname` in the tests
names an existing alert (promtool would pass a misspelled name with `exp_alerts: []`), every
recording rule is named level:metric:operations and is evaluated by a `promql_expr_test`,
every rule file is loaded by a test file, and every exporter metric an expression uses is
listed in docs/metrics.md. Alerts that carry a `condition` label come in pairs, one warning and
one critical of the same condition, and every label their test cases expect on them is in the
`equal` list of the inhibition rule in deploy/alertmanager/alertmanager.yml that lets the
critical one silence the warning (a label missing there would let a critical alert on one
GPU or battery silence the warning of another). The exporters' metric prefixes come from exporters.toml; the
metric reference is read and PromQL is taken apart by the test helpers in tests/odin/
(odin.metricsdoc, odin.promql, odin.manifest).

Prints a `FAIL` line per failed check (and an `ok` line per passed one with `-v`) and,
last, `passed=N failed=M`. Exit status: 0 when nothing failed.
"""

import glob
import os
import re
import sys
from pathlib import Path

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
from odin import manifest, metricsdoc, promql, runbooks  # noqa: E402

RUNBOOK_URL = re.compile(r"^(?P<base>https?://\S+?)/docs/runbooks\.md#(?P<anchor>[a-z0-9_-]+)$")
ALERTMANAGER = os.path.join(REPO, "deploy", "alertmanager", "alertmanager.yml")
RECORD_NAME = re.compile(r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z0-9_]+$")
# The metric prefixes of ODIN's exporters (exporters.toml).
EXPORTER_PREFIXES = tuple(manifest.prefixes())


class Report:
    def __init__(self, verbose):
        self.verbose = verbose
        self.passed = 0
        self.failed = 0

    def check(self, ok, what, why=""):
        if ok:
            self.passed += 1
            if self.verbose:
                print(f"ok   {what}")
        else:
            self.failed += 1
            print(f"FAIL {what}{': ' + why if why else ''}")


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def used_metric_ok(name, documented):
    """A name (histogram series included) in docs/metrics.md, under its own name or as a
    shared `<prefix>_...` row for one of the exporters' prefixes."""
    return metricsdoc.documents(name, EXPORTER_PREFIXES, documented=documented)


def condition_inhibit_rule(config):
    """The inhibition rule that lets a critical alert silence the warning of its condition:
    the one whose `equal` names `condition`."""
    for rule in config.get("inhibit_rules") or []:
        if "condition" in (rule.get("equal") or []):
            return rule
    return None


def check_condition_pairs(report, conditions, expected_labels):
    """Each `condition` label on one warning and one critical alert; their labels (as their
    promtool cases expect them) all compared by the Alertmanager inhibition rule."""
    conditions = {c: a for c, a in conditions.items() if c is not None}
    if not conditions:
        return
    rule = condition_inhibit_rule(load_yaml(ALERTMANAGER))
    report.check(
        rule is not None,
        "deploy/alertmanager/alertmanager.yml has an inhibition rule with `condition` in equal",
    )
    equal = set((rule or {}).get("equal") or [])
    for condition, pair in sorted(conditions.items()):
        severities = sorted(sev for _, sev in pair)
        report.check(
            severities == ["critical", "warning"],
            f"condition {condition} is on one warning and one critical alert",
            f"got {sorted(pair)}",
        )
        for alert, _ in pair:
            missing = sorted(expected_labels.get(alert, set()) - equal - {"severity"})
            report.check(
                not missing,
                f"alert {alert} (condition {condition}): the inhibition rule compares every label it has",
                f"not in equal: {missing}",
            )


def main():
    report = Report(verbose="-v" in sys.argv[1:])
    rule_files = sorted(glob.glob(os.path.join(REPO, "rules", "*.rules.yml")))
    test_files = sorted(glob.glob(os.path.join(REPO, "rules", "tests", "*.test.yml")))
    with open(os.path.join(REPO, "docs", "runbooks.md"), encoding="utf-8") as f:
        runbooks_md = f.read()
    documented = metricsdoc.names()

    report.check(bool(rule_files), "rule files found under rules/")
    report.check(bool(test_files), "test files found under rules/tests/")

    # Anchor -> heading text of the `##` sections, as GitHub names them.
    anchors = {a: text for level, text, a in runbooks.headings(runbooks_md) if level == 2}

    alerts = {}  # name -> rule file
    conditions = {}  # condition label -> [(alert, severity)]
    records = {}
    bases = set()
    for path in rule_files:
        rel = os.path.relpath(path, REPO)
        for group in load_yaml(path).get("groups", []):
            for rule in group.get("rules", []):
                expr = str(rule.get("expr", ""))
                for name in sorted(promql.exporter_names(expr, EXPORTER_PREFIXES)):
                    report.check(
                        used_metric_ok(name, documented),
                        f"{rel}: metric {name} is in docs/metrics.md",
                    )
                for suffix in sorted(promql.generic_suffixes(expr)):
                    report.check(
                        f"<prefix>{suffix}" in documented,
                        f"{rel}: shared metric <prefix>{suffix} is in docs/metrics.md",
                    )
                if "record" in rule:
                    name = rule["record"]
                    report.check(
                        RECORD_NAME.match(name) is not None,
                        f"recording rule {name} is named level:metric:operations",
                    )
                    records[name] = rel
                    continue
                name = rule["alert"]
                report.check(name not in alerts, f"alert {name} is defined once")
                alerts[name] = rel
                labels = rule.get("labels") or {}
                ann = rule.get("annotations") or {}
                report.check(
                    labels.get("severity") in ("warning", "critical"),
                    f"alert {name} has severity warning or critical",
                    f"severity is {labels.get('severity')!r}",
                )
                for key in ("summary", "description"):
                    report.check(
                        bool(str(ann.get(key, "")).strip()), f"alert {name} has a {key}"
                    )
                url = str(ann.get("runbook_url", ""))
                m = RUNBOOK_URL.match(url)
                report.check(
                    m is not None,
                    f"alert {name} has a runbook_url into docs/runbooks.md",
                    f"got {url!r}",
                )
                if m:
                    bases.add(m.group("base"))
                    anchor = m.group("anchor")
                    report.check(
                        anchor == name.lower(),
                        f"alert {name}: runbook anchor is the alert name in lower case",
                        f"got #{anchor}",
                    )
                    report.check(
                        anchor in anchors,
                        f"alert {name}: docs/runbooks.md has a section #{anchor}",
                    )
                    reached = runbooks.follow(url, m.group("base"), Path(REPO))
                    report.check(
                        not isinstance(reached, str) and reached[:2] == (2, name),
                        f"alert {name}: its runbook_url reaches the heading ## {name}",
                        reached if isinstance(reached, str) else f"reaches {reached}",
                    )
                conditions.setdefault(labels.get("condition"), []).append(
                    (name, labels.get("severity"))
                )
    report.check(
        len(bases) == 1,
        "every runbook_url shares one base URL",
        f"bases: {sorted(bases)}",
    )
    for anchor, heading in sorted(anchors.items()):
        report.check(
            heading in alerts, f"runbook section '{heading}' belongs to an alert"
        )

    fires, quiet = set(), set()
    expected_labels = {}  # alert -> label names its firing test cases expect
    loaded = set()
    expr_tests = []
    for path in test_files:
        rel = os.path.relpath(path, REPO)
        doc = load_yaml(path)
        for rf in doc.get("rule_files", []):
            loaded.add(os.path.normpath(os.path.join(os.path.dirname(path), rf)))
        for case in doc.get("tests", []):
            for t in case.get("alert_rule_test", []) or []:
                name = t.get("alertname")
                report.check(
                    name in alerts,
                    f"{rel}: test at {t.get('eval_time')} names an existing alert ({name})",
                )
                (fires if t.get("exp_alerts") else quiet).add(name)
                for a in t.get("exp_alerts") or []:
                    expected_labels.setdefault(name, set()).update((a.get("exp_labels") or {}).keys())
            for t in case.get("promql_expr_test", []) or []:
                expr_tests.append(str(t.get("expr", "")))
    for name in sorted(alerts):
        report.check(name in fires, f"alert {name} has a test case where it fires")
        report.check(name in quiet, f"alert {name} has a test case where it does not fire")
    for name in sorted(records):
        used = any(re.search(r"(?<![\w:])%s(?![\w:])" % re.escape(name), e) for e in expr_tests)
        report.check(used, f"recording rule {name} is evaluated by a promql_expr_test")
    for path in rule_files:
        report.check(
            os.path.normpath(path) in loaded,
            f"{os.path.relpath(path, REPO)} is loaded by a test file",
        )

    check_condition_pairs(report, conditions, expected_labels)

    print(f"passed={report.passed} failed={report.failed}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
