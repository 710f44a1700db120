"""End to end: a real Prometheus scrapes the real network-exporter binary.

Two exporters run: one on the live host, one on the fixture tree (which has a wireless
interface, so every dashboard panel has something to show), both probing DNS against a real
dnsmasq on loopback. Prometheus loads every rule file of rules/.
"""
from __future__ import annotations

import pytest

from odin import REPO, checks, dashboards, manifest, metricsdoc, promql, rules
from odin.dnsmasq import Dnsmasq
from odin.exporters import binary
from odin.exposition import families, normalize, parse, promtool_findings
from odin.prometheus import Stack, Target

EXPORTER = manifest.get("network-exporter")
FIXTURE = REPO / "exporters/network-exporter/tests/fixtures/host-a"
HOSTS = ["live", "fixture"]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e-network")
    exporter = binary(EXPORTER["name"])
    dnsmasq = Dnsmasq(work, {"ok.odin.test": "127.0.0.9"})
    dns = ["--dns.probe-name=ok.odin.test", "--dns.probe-name=missing.odin.test",
           f"--dns.server={dnsmasq.server}", "--dns.interval=1s", "--dns.timeout=1s"]
    yield Stack(work, EXPORTER["name"], [
        Target("live", [exporter, *dns]),
        Target("fixture", [exporter, f"--path.procfs={FIXTURE / 'proc'}",
                           f"--path.sysfs={FIXTURE / 'sys'}", *dns]),
    ])
    dnsmasq.stop()


@pytest.fixture(scope="module")
def texts(stack):
    return {t.host: t.metrics() for t in stack.targets}


@pytest.fixture(scope="module")
def live_families(texts):
    fams: set[str] = set()
    for text in texts.values():
        fams |= set(families(text))
    return fams


def test_prometheus_scrapes_both_exporters(stack):
    ups = stack.client.query(f'up{{job="{stack.job}"}}')
    assert len(ups) == 2 and all(r["value"][1] == "1" for r in ups), ups


def test_every_rule_loaded(stack):
    loaded, declared = checks.rules_loaded(stack.client)
    assert loaded == declared and loaded > 0, f"{loaded} rules loaded, rules/*.yml declare {declared}"


def test_no_rule_evaluation_errors(stack):
    assert not checks.rules_unhealthy(stack.client)


@pytest.mark.parametrize("host", HOSTS)
def test_promtool_check_metrics_silent(texts, host):
    rc, findings = promtool_findings(texts[host])
    assert rc == 0 and not findings, "\n".join(findings)


def test_metrics_used_by_rules_exist(live_families):
    wanted = {normalize(m, live_families)
              for e in rules.exprs() for m in promql.exporter_names(e, [EXPORTER["prefix"]])}
    assert wanted, "no rule uses a network-exporter metric"
    assert not sorted(wanted - live_families)


def test_metrics_used_by_dashboards_exist(live_families):
    used = dashboards.metric_names_used(dashboards.load(dashboards.default_files()))
    wanted = {normalize(m, live_families) for m in used if m.startswith(EXPORTER["prefix"] + "_")}
    assert wanted, "no dashboard uses a network-exporter metric"
    assert not sorted(wanted - live_families)


def test_metrics_doc_matches_live_output(texts):
    text = "\n".join(texts[h] for h in HOSTS)
    _, types = parse(text)
    problems = metricsdoc.problems(EXPORTER["name"], EXPORTER["prefix"], families(text), types)
    assert not problems, "\n".join(problems)


def test_every_dashboard_query_returns_data(stack):
    rc, report = checks.query_dashboards(stack.url, ["dashboards/network.json", "dashboards/overview.json"],
                                         allow_empty="dashboards/e2e-allow-empty.tsv")
    assert rc == 0, report


def test_exporters_exit_0_on_sigterm(stack):
    rcs = stack.stop_exporters()
    assert all(rc == 0 for rc in rcs.values()), rcs
