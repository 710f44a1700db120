"""deploy/alertmanager/alertmanager.yml: valid, routes every alert by its severity, and each
inhibition rule silences what it should and nothing else.

amtool checks the file and the routing tree (`amtool config routes test`: one case per route,
then every alert of rules/ with the labels its rule gives it). amtool cannot evaluate
inhibition, so a real Alertmanager (on loopback, cluster port off, the file with its webhooks
sent to the test's webhook logger) is given alerts through POST /api/v2/alerts, and
GET /api/v2/alerts says which of them are inhibited and by which. Each inhibition rule has
cases where it must inhibit and cases where it must not, every case on its own `instance`
so that the cases cannot touch each other; the alerts' `severity` and `condition` labels
are read from the rule files, as Prometheus would send them.
"""
from __future__ import annotations

import json
import time

import pytest
import yaml

from odin import REPO, rules
from odin.alerting import CONFIG, Alertmanager, WebhookLogger, amtool, shorten

CRITICAL, WARNING, DEFAULT = "odin-critical", "odin-warning", "odin-default"


def config() -> dict:
    return yaml.safe_load(CONFIG.read_text(encoding="utf-8"))


def rule_labels() -> dict[str, dict]:
    """alert name -> the labels its rule sets (severity, condition)."""
    return {r["alert"]: dict(r.get("labels") or {}) for p in rules.files() for r in rules.rules(p)
            if "alert" in r}


# ------------------------------------------------------------------ amtool

def test_amtool_check_config():
    p = amtool("check-config", CONFIG)
    assert p.returncode == 0, p.stdout + p.stderr
    n = len(config()["inhibit_rules"])
    assert f"{n} inhibit rules" in p.stdout, p.stdout


def route(*labels, receiver):
    p = amtool("config", "routes", "test", f"--config.file={CONFIG}", f"--verify.receivers={receiver}",
               *labels)
    return p.returncode == 0, (p.stdout + p.stderr).strip()


@pytest.mark.parametrize("labels, receiver", [
    (["severity=critical", "alertname=GPUTemperatureCritical", "instance=ws1:9835"], CRITICAL),
    (["severity=warning", "alertname=PowerBatteryLow", "instance=laptop:19101"], WARNING),
    (["alertname=SomebodyElsesAlert", "instance=ws1:9100"], DEFAULT),
    (["severity=info", "alertname=SomebodyElsesAlert"], DEFAULT),
], ids=["critical", "warning", "no-severity", "other-severity"])
def test_route(labels, receiver):
    ok, out = route(*labels, receiver=receiver)
    assert ok, out


def test_every_alert_reaches_the_receiver_of_its_severity():
    wrong = []
    for name, labels in sorted(rule_labels().items()):
        want = {"critical": CRITICAL, "warning": WARNING}[labels["severity"]]
        ok, out = route(f"alertname={name}", *(f"{k}={v}" for k, v in labels.items()), receiver=want)
        if not ok:
            wrong.append(f"{name} ({labels}): {out}")
    assert not wrong, "\n".join(wrong)


def test_routing_tree_shape():
    root = config()["route"]
    assert {"alertname", "instance"} <= set(root["group_by"]), root["group_by"]
    sub = {r["receiver"]: r for r in root["routes"]}
    assert set(sub) == {CRITICAL, WARNING}, sub
    seconds = {"s": 1, "m": 60, "h": 3600}

    def s(d):
        return int(d[:-1]) * seconds[d[-1]]

    # Critical goes out sooner than warnings are gathered, and is repeated more often.
    assert s(sub[CRITICAL]["group_wait"]) <= 10 < s(sub[WARNING]["group_wait"])
    assert s(sub[CRITICAL]["repeat_interval"]) < s(sub[WARNING]["repeat_interval"])


def test_receivers_are_loopback_webhooks_that_send_resolved():
    for r in config()["receivers"]:
        for hook in r["webhook_configs"]:
            assert hook["url"].startswith("http://127.0.0.1:5001/odin/"), hook
            assert hook.get("send_resolved") is True, hook


# ------------------------------------------------------------------ inhibition, on a running Alertmanager

def a(alert, /, **labels):
    """An alert as Prometheus sends it: the rule's own labels plus the series' `labels`."""
    return {"alertname": alert, **RULE_LABELS[alert], **labels}


RULE_LABELS = rule_labels()
PW = {"job": "power-exporter"}
GPU = {"job": "gpu-exporter"}
NET = {"job": "network-exporter"}
GPU_A = {"gpu": "0", "uuid": "GPU-a"}
GPU_B = {"gpu": "1", "uuid": "GPU-b"}
CPU = {"chip": "platform_coretemp_0", "sensor": "temp1", "label": "Package id 0"}

# (rule, what, sources, target, inhibited): `rule` names the inhibition rule the case is about
# (RULE_KEYS below finds each in the file). `instance` is added per case.
CASES = [
    ("exporter-down", "collector alert of the exporter that is down",
     [a("OdinExporterDown", **PW)], a("OdinCollectorFailing", **PW, collector="battery"), True),
    ("exporter-down", "value alert of the exporter that is down",
     [a("OdinExporterDown", **PW)], a("PowerBatteryLow", **PW, supply="BAT0", scope="system"), True),
    ("exporter-down", "another exporter on the same host",
     [a("OdinExporterDown", **PW)], a("GPUTemperatureHigh", **GPU, **GPU_A), False),
    ("exporter-down", "the same exporter on another host",
     [a("OdinExporterDown", **PW, instance="elsewhere:19101")],
     a("PowerBatteryLow", **PW, supply="BAT0", scope="system"), False),

    ("condition", "battery low under battery critical",
     [a("PowerBatteryCritical", **PW, supply="BAT0", scope="system")],
     a("PowerBatteryLow", **PW, supply="BAT0", scope="system"), True),
    ("condition", "GPU temperature high under critical on the same GPU",
     [a("GPUTemperatureCritical", **GPU, **GPU_A)], a("GPUTemperatureHigh", **GPU, **GPU_A), True),
    ("condition", "CPU package high under critical",
     [a("PowerCPUPackageTemperatureCritical", **PW, **CPU)],
     a("PowerCPUPackageTemperatureHigh", **PW, **CPU), True),
    ("condition", "slow DNS lookups under failing ones of the same probe",
     [a("NetworkDNSProbeFailing", **NET, name="example.com", server="system")],
     a("NetworkDNSLookupSlow", **NET, name="example.com", server="system"), True),
    ("condition", "another battery",
     [a("PowerBatteryCritical", **PW, supply="BAT0", scope="system")],
     a("PowerBatteryLow", **PW, supply="BAT1", scope="system"), False),
    ("condition", "another GPU",
     [a("GPUTemperatureCritical", **GPU, **GPU_A)], a("GPUTemperatureHigh", **GPU, **GPU_B), False),
    ("condition", "another DNS name",
     [a("NetworkDNSProbeFailing", **NET, name="example.com", server="system")],
     a("NetworkDNSLookupSlow", **NET, name="example.org", server="system"), False),
    ("condition", "another condition on the same instance",
     [a("GPUTemperatureCritical", **GPU, **GPU_A)], a("PowerBatteryLow", **PW, supply="BAT0", scope="system"),
     False),
    ("condition", "a warning without a condition, same GPU",
     [a("GPUTemperatureCritical", **GPU, **GPU_A)], a("GPUPowerAboveLimit", **GPU, **GPU_A), False),

    ("gpu-vanished", "the XID that comes with the lost GPU",
     [a("GPUDisappeared", **GPU, **GPU_B)], a("GPUXidErrorCritical", **GPU, **GPU_B, xid="79"), True),
    ("gpu-vanished", "the lost GPU's temperature",
     [a("GPUDisappeared", **GPU, **GPU_B)], a("GPUTemperatureHigh", **GPU, **GPU_B), True),
    ("gpu-vanished", "the lost GPU at its power limit (power.rules.yml, job gpu-exporter)",
     [a("GPUDisappeared", **GPU, **GPU_B)], a("PowerGPUAtPowerLimit", **GPU, **GPU_B), True),
    ("gpu-vanished", "another GPU of the host",
     [a("GPUDisappeared", **GPU, **GPU_B)], a("GPUTemperatureHigh", **GPU, **GPU_A), False),
    ("gpu-vanished", "a host-wide GPU alert",
     [a("GPUDisappeared", **GPU, **GPU_B)], a("GPUCollectionStale", **GPU, collector="gpu"), False),
    ("gpu-vanished", "the count-only alert (no uuid) silences nothing",
     [a("GPUDisappeared", **GPU)], a("GPUCollectionStale", **GPU, collector="gpu"), False),
    ("gpu-vanished", "the count-only alert and a GPU's alert",
     [a("GPUDisappeared", **GPU)], a("GPUTemperatureHigh", **GPU, **GPU_A), False),

    ("link-down", "flapping of the link that is down",
     [a("NetworkLinkDown", **NET, device="eth0")], a("NetworkLinkFlapping", **NET, device="eth0"), True),
    ("link-down", "flapping of another link",
     [a("NetworkLinkDown", **NET, device="eth0")], a("NetworkLinkFlapping", **NET, device="eth1"), False),
]


def rule_key(rule: dict) -> str | None:
    """Which of the CASES' rule names an inhibition rule of the file is."""
    src = " ".join(rule.get("source_matchers") or [])
    if 'alertname="OdinExporterDown"' in src:
        return "exporter-down"
    if "condition" in (rule.get("equal") or []):
        return "condition"
    if 'alertname="GPUDisappeared"' in src:
        return "gpu-vanished"
    if 'alertname="NetworkLinkDown"' in src:
        return "link-down"
    return None


def test_every_inhibition_rule_has_cases_both_ways():
    keys = [rule_key(r) for r in config()["inhibit_rules"]]
    assert None not in keys, f"an inhibition rule without cases here: {config()['inhibit_rules'][keys.index(None)]}"
    assert len(set(keys)) == len(keys), keys
    for k in keys:
        assert {c[4] for c in CASES if c[0] == k} == {True, False}, f"{k}: needs a case each way"
    assert {c[0] for c in CASES} == set(keys)


@pytest.fixture(scope="module")
def am(tmp_path_factory):
    work = tmp_path_factory.mktemp("alertmanager")
    logger = WebhookLogger(work)
    # The shipped file, its webhooks sent to this test's logger (timings as shipped).
    _, cfg = shorten(work / "config", webhook_url=logger.url, factor=1)
    am = Alertmanager(cfg, work)
    yield am
    am.stop()
    logger.stop()


def case_labels(i: int) -> tuple[list[dict], dict]:
    """A case's source and target label sets, on the case's own instance (unless a source
    names another)."""
    _, _, sources, target, _ = CASES[i]
    inst = f"case{i}:9999"
    return [{"instance": inst, **s} for s in sources], {"instance": inst, **target}


@pytest.fixture(scope="module")
def inhibition(am):
    """Every case's alerts posted at once, then Alertmanager's view of them once each target
    that should be inhibited is (or after 20 s), looked at again a second later so that a
    late inhibition of a target that must stay active shows too.
    Returns case -> (target alert or None, source alerts)."""
    labels = [case_labels(i) for i in range(len(CASES))]
    am.post([{"labels": l} for sources, target in labels for l in (*sources, target)])

    def view():
        got = am.alerts()

        def find(l):
            return next((x for x in got if x["labels"] == l), None)
        return {i: (find(target), [x for x in map(find, sources) if x])
                for i, (sources, target) in enumerate(labels)}

    want = [i for i, c in enumerate(CASES) if c[4]]
    deadline = time.time() + 20
    while True:
        v = view()
        if all(v[i][0] and v[i][0]["status"]["inhibitedBy"] for i in want) or time.time() > deadline:
            break
        time.sleep(0.5)
    time.sleep(1)
    return view()


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_inhibition(inhibition, i):
    rule, what, sources, target, inhibited = CASES[i]
    alert, srcs = inhibition[i]
    assert alert is not None, f"{target} not in Alertmanager"
    status = alert["status"]
    if inhibited:
        assert status["state"] == "suppressed" and status["inhibitedBy"], status
        assert set(status["inhibitedBy"]) <= {s["fingerprint"] for s in srcs}, (status, srcs)
    else:
        assert status["state"] == "active" and not status["inhibitedBy"], status
    # An inhibiting alert is itself not inhibited (and a source matching the target side of
    # its own rule does not inhibit itself).
    assert len(srcs) == len(sources) and all(s["status"]["state"] == "active" for s in srcs), srcs


# ------------------------------------------------------------------ the test tools

def test_shortened_copies_differ_only_in_waiting_times(tmp_path):
    """scripts/shorten-rules.py (tests/test_alerting.py's rules and config) changes the
    waiting times and the webhooks' address, nothing else."""
    rule_files, cfg = shorten(tmp_path, webhook_url="http://127.0.0.1:1", factor=60)
    assert [p.name for p in rule_files] == [p.name for p in sorted(rules.files()) if p.name.endswith(".rules.yml")]
    for short in rule_files:
        real = rules.rules(REPO / "rules" / short.name)
        got = rules.rules(short)
        assert len(real) == len(got)
        for r, g in zip(real, got):
            if "for" in r:
                assert g["for"] != r["for"] or r["for"] in ("0s", "1s"), (r["alert"], g["for"])
            assert {k: v for k, v in g.items() if k != "for"} == {k: v for k, v in r.items() if k != "for"}
    real, got = config(), yaml.safe_load(cfg.read_text())
    assert got["route"]["routes"][0]["group_wait"] == "1s" and got["route"]["group_interval"] == "5s", got["route"]
    assert got["inhibit_rules"] == real["inhibit_rules"]
    assert [h["url"] for r in got["receivers"] for h in r["webhook_configs"]] == [
        h["url"].replace("127.0.0.1:5001", "127.0.0.1:1") for r in real["receivers"] for h in r["webhook_configs"]]


def test_webhook_logger_refuses_what_is_not_a_notification(tmp_path):
    import urllib.error
    import urllib.request
    logger = WebhookLogger(tmp_path)
    try:
        req = urllib.request.Request(f"{logger.url}/odin/x", data=b'{"no": "alerts"}', method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=5)
        assert e.value.code == 400
        body = {"receiver": "r", "status": "firing", "alerts": [
            {"status": "firing", "labels": {"alertname": "A"}, "annotations": {"summary": "s"}},
            {"status": "resolved", "labels": {"alertname": "B"}, "annotations": {}}]}
        req = urllib.request.Request(f"{logger.url}/odin/y", data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200
        got = logger.records()
        assert "error" in got[0] and got[0]["path"] == "/odin/x", got
        assert [(g["path"], g["status"], g["labels"]["alertname"]) for g in got[1:]] == [
            ("/odin/y", "firing", "A"), ("/odin/y", "resolved", "B")], got
    finally:
        assert logger.stop() == 0
