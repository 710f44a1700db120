"""End to end: a real Prometheus scrapes the real razer-exporter binary.

Three exporters run: a desk (openrazer's fixture tree: a Blade's keyboard, a wireless mouse
charging and one discharging, an old mouse with one DPI number, a dock without a battery, a
headset, and garbage in three files) with the laptop's controller from the demo replay file;
the same replay with a controller that answers every fault there is (busy, wrong CRC, wrong
transaction id, another command, short reads, silence, failure, not supported); and this
machine's live /sys and /dev, which has no Razer device: absence is no failure, so it must be
healthy and serve zero devices. Prometheus loads every rule file of rules/.
"""
from __future__ import annotations

import pytest

from odin import REPO, checks, manifest, metricsdoc
from odin.exporters import binary
from odin.exposition import families, parse, promtool_findings
from odin.prometheus import Stack, Target

EXPORTER = manifest.get("razer-exporter")
CRATE = REPO / "exporters/razer-exporter"
DESK = CRATE / "tests/fixtures/desk/sys"
REPLAY = CRATE / "demo/blade-15.toml"

# A controller that gets every answer wrong in turn, then answers well: every error kind.
FAULTY = """
[[laptop]]
product = 0x029F
device = "1532:029F@2-1"
""" + "".join(f"""
[[laptop.answer]]
request = "{req}"
{fault}
""" for req, fault in [
    ("firmware", 'status = "failure"'), ("firmware", "data = [2, 0]"),
    ("power_mode", 'crc = "bad"\ndata = [0, 1, 4, 0]'), ("power_mode", "data = [0, 1, 4, 0]"),
    ("boost_cpu", "transaction = 0x1f\ndata = [0, 1, 3]"), ("boost_cpu", "data = [0, 1, 3]"),
    ("boost_gpu", "command = 0x82\ndata = [0, 2, 2]"), ("boost_gpu", "data = [0, 2, 2]"),
    ("fan_1", "length = 40\ndata = [0, 1, 50]"), ("fan_1", "data = [0, 1, 50]"),
    ("fan_2", 'status = "silence"'), ("fan_2", "data = [0, 2, 50]"),
    ("keyboard_brightness", 'status = "timeout"'), ("keyboard_brightness", "data = [1, 0]"),
])


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e-razer")
    faulty = work / "faulty.toml"
    faulty.write_text(FAULTY)
    empty_dev = work / "dev"
    empty_dev.mkdir()
    exporter = binary(EXPORTER["name"])
    fast = ["--openrazer.interval=1s", "--hid.interval=1s"]
    return Stack(work, EXPORTER["name"], [
        Target("desk", [exporter, f"--path.sysfs={DESK}", f"--path.dev={empty_dev}",
                        f"--hid.replay={REPLAY}", *fast]),
        Target("faulty", [exporter, f"--path.sysfs={work / 'nothing'}", f"--hid.replay={faulty}", *fast]),
        Target("live", [exporter, *fast]),
    ])


def test_prometheus_scrapes_all_three(stack):
    ups = stack.client.query(f'up{{job="{stack.job}"}}')
    assert len(ups) == 3 and all(r["value"][1] == "1" for r in ups), ups


def test_every_collector_succeeds_everywhere(stack):
    for t in stack.targets:
        samples, _ = parse(t.metrics())
        success = {dict(l)["collector"]: v for (n, l), v in samples.items() if n == "razer_collector_success"}
        assert success == {"openrazer": 1, "hid": 1}, (t.host, success)
        status, _, body = t.get("/health")
        assert status == 200, (t.host, body)


def test_the_desk(stack):
    c = stack.client
    assert c.wait_query('razer_devices{host="desk",source="openrazer"} == 6', timeout=30)
    assert c.query('razer_devices{host="desk",source="hid"} == 1')
    assert c.query('razer_power_mode{host="desk",mode="gaming"} == 1')
    assert c.query('razer_fan_target_rpm{host="desk",zone="1"} == 4200')
    low = c.query('razer_battery_ratio{host="desk"} < razer_battery_low_threshold_ratio{host="desk"}')
    assert [r["metric"]["device"] for r in low] == ["1532:0090@3-3:1.0"], low


def test_every_fault_is_counted_and_the_values_still_come(stack):
    c = stack.client
    kinds = {"failure", "bad_crc", "wrong_transaction", "wrong_command", "short_read", "no_answer",
             "timeout", "not_supported"}
    res = c.wait_query('razer_hid_errors_total{host="faulty"} > 0', timeout=30)
    assert {r["metric"]["kind"] for r in res} == kinds, res
    # Retried or asked again on the next read: every value arrives in the end.
    assert c.wait_query('razer_power_mode{host="faulty",mode="custom"} == 1', timeout=30)
    assert c.wait_query('razer_fan_target_rpm{host="faulty",zone="2"} == 5000', timeout=30)
    assert c.wait_query('razer_boost{host="faulty",component="gpu",level="high"} == 1', timeout=30)
    # The battery optimizer is not in the file: not supported, asked once.
    assert not c.query('razer_battery_optimizer_enabled{host="faulty"}')


def test_live_host_without_razer_hardware(stack):
    samples, _ = parse(stack["live"].metrics())
    devices = {dict(l)["source"]: v for (n, l), v in samples.items() if n == "razer_devices"}
    assert devices == {"openrazer": 0, "hid": 0}, devices


def test_prometheus_rules_loaded_and_healthy(stack):
    loaded, declared = checks.rules_loaded(stack.client)
    assert loaded == declared and loaded > 0, f"{loaded} rules loaded, rules/*.yml declare {declared}"
    assert not checks.rules_unhealthy(stack.client)


def test_prometheus_promtool_check_metrics_silent(stack):
    for t in stack.targets:
        rc, findings = promtool_findings(t.metrics())
        assert rc == 0 and not findings, (t.host, "\n".join(findings))


def test_prometheus_metrics_doc_matches_live_output(stack):
    text = "\n".join(stack[host].metrics() for host in ("desk", "faulty"))
    problems = metricsdoc.problems(EXPORTER["name"], EXPORTER["prefix"], families(text), parse(text)[1])
    assert not problems, "\n".join(problems)


def test_prometheus_every_razer_query_returns_data(stack):
    rc, report = checks.query_dashboards(stack.url, ["dashboards/razer.json", "dashboards/overview.json"],
                                         prefix=EXPORTER["prefix"],
                                         allow_empty="dashboards/e2e-allow-empty-razer.tsv")
    assert rc == 0, report


def test_exporters_exit_0_on_sigterm(stack):
    rcs = stack.stop_exporters()
    assert all(rc == 0 for rc in rcs.values()), rcs
