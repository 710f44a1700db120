"""End to end: conditions made by real exporters fire in Prometheus, are routed by
Alertmanager and arrive at the webhook logger; their resolution arrives too; an amtool
silence stops them.

What runs: scripts/webhook-logger.py, Alertmanager (prometheus-alertmanager, cluster port
off) with deploy/alertmanager/alertmanager.yml, a Prometheus (scrape and evaluation every
second) with every rules/*.rules.yml, a dnsmasq on loopback (odin.dnsmasq: its own hosts
file and port, no system resolver) and three exporters: power-exporter on a copy of its
`battery-laptop` fixture tree (BAT0, a system battery, at 60% and charging), gpu-exporter
on the nvidia-smi backend with the fake nvidia-smi answering from a copy of a real RTX 4080
SUPER capture (43 °C), and network-exporter on its `host-a` fixture tree probing two names
through that dnsmasq every second (ok.odin.test and flaky.odin.test, both answered). To fit
a test run, the rules and the Alertmanager configuration are the real files passed through
scripts/shorten-rules.py (`for:` and Alertmanager's waiting times divided by 60, at least
1 s; webhooks sent to the test's logger), never hand-edited copies.

The conditions, in order (each test builds on the state the one before left):

- flaky.odin.test dropped from dnsmasq's hosts file (it answers NXDOMAIN): the probe fails
  while ok.odin.test still resolves; the alert is checked further down, so that its `for:`
  and Alertmanager's wait pass while the battery tests run;
- BAT0 discharging at 10%: PowerBatteryLow (warning) reaches /odin/warning with its labels
  and its summary, description and runbook_url filled in;
- at 3%: PowerBatteryCritical reaches /odin/critical, and Alertmanager holds the warning as
  inhibited by it (same `condition`, same battery);
- charging at 60% again: both resolutions arrive, and nothing about the warning came between
  its first notification and its resolution;
- NetworkDNSProbeFailing for flaky.odin.test has reached /odin/critical with the probe's
  labels (name, server) and its annotations; flaky.odin.test is put back into the hosts file;
- an `amtool silence add` for PowerBatteryLow on this instance, then 10% and discharging
  again: Prometheus fires the alert, Alertmanager holds it as silenced and nothing arrives;
  `amtool silence expire` and the notification arrives;
- the GPU's capture rewritten to 91 °C: GPUTemperatureCritical reaches /odin/critical with
  the GPU's labels, GPUTemperatureHigh fires in Prometheus but is inhibited before it was
  ever sent; back at 43 °C the resolution arrives;
- the resolution of NetworkDNSProbeFailing has arrived.

Finally: nothing else arrived, and the logger printed on stdout the lines it wrote to its file.
"""
from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from odin import REPO, shared_dir
from odin.alerting import Alertmanager, WebhookLogger, amtool, shorten
from odin.dnsmasq import Dnsmasq
from odin.exporters import binary
from odin.gpufakes import FAKE_SMI
from odin.prometheus import Stack, Target
from odin.runbooks import base_of, follow

BATTERY = REPO / "exporters/power-exporter/tests/fixtures/battery-laptop"
CAPTURE = "linux-x86_64__nvidia-geforce-rtx-4080-super__595.71.05.txt"
NETWORK = REPO / "exporters/network-exporter/tests/fixtures/host-a"
# What dnsmasq answers; FLAKY is the name that stops resolving.
NAMES = {"ok.odin.test": "127.0.0.9", "flaky.odin.test": "127.0.0.10"}
FLAKY = "flaky.odin.test"
EXPECTED = {"PowerBatteryLow", "PowerBatteryCritical", "GPUTemperatureCritical", "NetworkDNSProbeFailing"}
# The shortened warning route's group_interval (10m / 60), the longest wait for a warning.
WARNING_INTERVAL = 10


def write(path, text):
    """Replaces a file whole, so that a reader never sees it half written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def gpu_capture(src, dest, celsius: int | None = None) -> None:
    """`src` copied to `dest` with temperature.gpu of every GPU in the idle query-gpu section
    (what the fake nvidia-smi answers from) set to `celsius` (None: as captured)."""
    lines = src.read_text(encoding="utf-8").split("\n")
    if celsius is not None:
        k = next(i for i, line in enumerate(lines) if line.startswith("# $ nvidia-smi --query-gpu=")
                 and lines[i - 1].startswith("# idle ::"))
        j = k + 2
        while not lines[j].strip():
            j += 1
        header = [c.split(" [")[0] for c in lines[j].split(", ")]
        col = header.index("temperature.gpu")
        j += 1
        while j < len(lines) and lines[j].strip() and not lines[j].startswith("#"):
            values = lines[j].split(", ")
            values[col] = str(celsius)
            lines[j] = ", ".join(values)
            j += 1
    write(dest, "\n".join(lines))


class Env:
    def __init__(self, work):
        self.work = work
        self.sys = work / "laptop" / "sys"
        shutil.copytree(BATTERY / "sys", self.sys, symlinks=True)
        self.bat = self.sys / "class/power_supply/BAT0"
        self.capture_src = shared_dir() / "captures/nvidia-smi" / CAPTURE
        self.capture = work / "capture.txt"
        gpu_capture(self.capture_src, self.capture)
        self.dns = Dnsmasq(work / "dns", NAMES)
        self.logger = WebhookLogger(work)
        self.rules, config = shorten(work / "short", webhook_url=self.logger.url)
        self.am = Alertmanager(config, work / "am")
        self.stack = Stack(work, "power-exporter", [
            Target("laptop", [binary("power-exporter"), f"--path.sysfs={self.sys}", "--no-collector.gpu"]),
            Target("gpu", [binary("gpu-exporter"), "--backend=nvidia-smi", f"--nvidia-smi.command={FAKE_SMI}",
                           "--collect.interval=1s"],
                   env={"FAKE_NVIDIA_SMI_CAPTURE": str(self.capture), "FAKE_NVIDIA_SMI_SECTION": "idle"},
                   job="gpu-exporter"),
            Target("net", [binary("network-exporter"), f"--path.procfs={NETWORK / 'proc'}",
                           f"--path.sysfs={NETWORK / 'sys'}", *(f"--dns.probe-name={n}" for n in NAMES),
                           f"--dns.server={self.dns.server}", "--dns.interval=1s", "--dns.timeout=1s"],
                   job="network-exporter"),
        ], min_samples=2, rules=self.rules, alertmanager=self.am.address)
        self.stack.start()
        self.power = self.stack["laptop"].address
        self.gpu = self.stack["gpu"].address
        self.net = self.stack["net"].address

    def battery(self, percent: int, status: str) -> None:
        write(self.bat / "capacity", f"{percent}\n")
        write(self.bat / "status", f"{status}\n")

    def arrived(self, alertname, status="firing", since=0, timeout=30, **labels):
        return self.logger.wait_for(
            lambda r: r.get("labels", {}).get("alertname") == alertname and r.get("status") == status
            and all(r["labels"].get(k) == v for k, v in labels.items()),
            timeout=timeout, since=since)

    def firing_in_prometheus(self, alertname, timeout=30, **labels):
        sel = ",".join([f'alertname="{alertname}"', 'alertstate="firing"']
                       + [f'{k}="{v}"' for k, v in labels.items()])
        return self.stack.client.wait_query(f"ALERTS{{{sel}}}", timeout=timeout)

    def am_alert(self, alertname, timeout=15, want=lambda a: True, **labels):
        """Alertmanager's view of an alert, once `want` holds for it (or the time is up)."""
        deadline = time.time() + timeout
        while True:
            got = self.am.alerts(alertname=alertname, **labels)
            if (got and want(got[0])) or time.time() >= deadline:
                return got[0] if got else None
            time.sleep(0.5)

    def stop(self):
        self.stack.stop()
        self.am.stop()
        self.logger.stop()
        self.dns.stop()

    def tails(self):
        return "\n".join([self.stack.tails(), self.am.proc.tail(), self.logger.proc.tail(), self.dns.tail()])


@pytest.fixture(scope="module")
def env(request, tmp_path_factory):
    failed_before = request.session.testsfailed
    e = None
    try:
        e = Env(tmp_path_factory.mktemp("alerting"))
        yield e
    finally:
        if e is not None:
            if request.session.testsfailed > failed_before:
                capture = request.config.pluginmanager.getplugin("capturemanager")
                with capture.global_and_fixture_disabled():
                    print("\n" + e.tails(), file=__import__("sys").stderr)
            e.stop()


def check_runbook(annotations):
    url = annotations.get("runbook_url", "")
    base = base_of(url)
    assert base, url
    heading = follow(url, base)
    assert not isinstance(heading, str), heading
    return heading


def probe_success(env, name):
    got = env.stack.client.query(f'network_dns_probe_success{{job="network-exporter",name="{name}"}}')
    return [r["value"][1] for r in got]


def wait_probe(env, name, value, timeout=15):
    deadline = time.time() + timeout
    while probe_success(env, name) != [value] and time.time() < deadline:
        time.sleep(0.5)
    return probe_success(env, name)


def test_dns_name_stops_resolving(env):
    assert wait_probe(env, FLAKY, "1") == ["1"], "flaky.odin.test does not resolve to begin with"
    env.dns.answer({n: a for n, a in NAMES.items() if n != FLAKY})
    assert wait_probe(env, FLAKY, "0") == ["0"], "the probe of flaky.odin.test still succeeds"
    nx = env.stack.client.wait_query(
        f'increase(network_dns_lookups_total{{name="{FLAKY}",rcode="nxdomain"}}[1m]) > 0', timeout=10)
    assert nx, "no NXDOMAIN counted for flaky.odin.test"
    assert probe_success(env, "ok.odin.test") == ["1"]


def test_battery_low_arrives_as_a_warning(env):
    env.battery(10, "Discharging")
    r = env.arrived("PowerBatteryLow", supply="BAT0")
    assert r, f"no PowerBatteryLow notification: {env.logger.records()}"
    assert r["path"] == "/odin/warning" and r["receiver"] == "odin-warning", r
    assert r["labels"] == {
        "alertname": "PowerBatteryLow", "severity": "warning", "condition": "battery-charge",
        "job": "power-exporter", "instance": env.power, "host": "laptop",
        "supply": "BAT0", "scope": "system"}, r["labels"]
    ann = r["annotations"]
    assert ann["summary"] == f"Battery BAT0 on {env.power} is at 10% and discharging", ann
    assert ann["description"].startswith(f"Battery BAT0 of {env.power} has been discharging below 15%"), ann
    assert check_runbook(ann)[1] == "PowerBatteryLow"


def test_battery_critical_arrives_and_inhibits_the_warning(env):
    env.battery(3, "Discharging")
    r = env.arrived("PowerBatteryCritical", supply="BAT0")
    assert r, f"no PowerBatteryCritical notification: {env.logger.records()}"
    assert r["path"] == "/odin/critical" and r["labels"]["severity"] == "critical", r
    assert r["annotations"]["summary"] == f"Battery BAT0 on {env.power} is almost empty (3%)", r
    assert check_runbook(r["annotations"])[1] == "PowerBatteryCritical"
    crit = env.am_alert("PowerBatteryCritical", instance=env.power)
    low = env.am_alert("PowerBatteryLow", instance=env.power, want=lambda a: a["status"]["inhibitedBy"])
    assert low and low["status"]["state"] == "suppressed", low
    assert low["status"]["inhibitedBy"] == [crit["fingerprint"]], (low, crit)


def test_resolutions_arrive(env):
    env.battery(60, "Charging")
    crit = env.arrived("PowerBatteryCritical", status="resolved", supply="BAT0")
    low = env.arrived("PowerBatteryLow", status="resolved", supply="BAT0", timeout=WARNING_INTERVAL + 20)
    assert crit and low, env.logger.records()
    for r in (crit, low):
        assert r["endsAt"] > r["startsAt"] and r["annotations"]["runbook_url"], r
    assert crit["path"] == "/odin/critical" and low["path"] == "/odin/warning", (crit, low)
    # While the critical alert fired, the inhibited warning sent nothing: one notification
    # when it fired, one when it resolved.
    lows = [r["status"] for r in env.logger.records() if r["labels"]["alertname"] == "PowerBatteryLow"]
    assert lows == ["firing", "resolved"], lows


def test_dns_failure_arrives_as_critical(env):
    server = env.dns.server
    r = env.arrived("NetworkDNSProbeFailing", name=FLAKY)
    assert r, f"no NetworkDNSProbeFailing notification: {env.logger.records()}"
    assert r["path"] == "/odin/critical" and r["receiver"] == "odin-critical", r
    assert r["labels"] == {
        "alertname": "NetworkDNSProbeFailing", "severity": "critical", "condition": "dns-lookup",
        "job": "network-exporter", "instance": env.net, "host": "net",
        "name": FLAKY, "server": server}, r["labels"]
    ann = r["annotations"]
    assert ann["summary"] == f"DNS lookups of {FLAKY} via {server} fail on {env.net}", ann
    assert ann["description"].startswith(
        f"The DNS prober on {env.net} has got no address for {FLAKY} from resolver {server} "), ann
    assert check_runbook(ann)[1] == "NetworkDNSProbeFailing"
    # Only the name that stopped resolving: the other one, probed on the same server, is fine.
    names = {x["labels"].get("name") for x in env.logger.records()
             if x["labels"]["alertname"] == "NetworkDNSProbeFailing"}
    assert names == {FLAKY}, names
    env.dns.answer(NAMES)
    assert wait_probe(env, FLAKY, "1") == ["1"], "flaky.odin.test does not resolve again"


def test_amtool_silence_stops_the_alert(env):
    p = amtool("silence", "add", f"--alertmanager.url={env.am.url}", "--author=test_alerting",
               "--comment=battery test", "--duration=10m",
               "alertname=PowerBatteryLow", f"instance={env.power}")
    assert p.returncode == 0, p.stdout + p.stderr
    silence = p.stdout.strip()
    q = amtool("silence", "query", "-q", f"--alertmanager.url={env.am.url}")
    assert silence in q.stdout.split(), q.stdout + q.stderr
    before = len(env.logger.records())
    env.battery(10, "Discharging")
    assert env.firing_in_prometheus("PowerBatteryLow", instance=env.power), "PowerBatteryLow did not fire"
    low = env.am_alert("PowerBatteryLow", instance=env.power, want=lambda a: a["status"]["silencedBy"])
    assert low and low["status"]["state"] == "suppressed" and low["status"]["silencedBy"] == [silence], low
    # A new warning would have gone out within group_wait + group_interval.
    time.sleep(WARNING_INTERVAL + 2)
    # (The DNS alert's resolution may arrive meanwhile: nothing from the laptop may.)
    laptop = [r for r in env.logger.records()[before:] if r["labels"].get("instance") == env.power]
    assert laptop == [], laptop
    # Without the silence it arrives: the silence, not slowness, held it back.
    p = amtool("silence", "expire", f"--alertmanager.url={env.am.url}", silence)
    assert p.returncode == 0, p.stdout + p.stderr
    r = env.arrived("PowerBatteryLow", since=before, timeout=WARNING_INTERVAL + 20)
    assert r and r["path"] == "/odin/warning", env.logger.records()[before:]
    env.battery(60, "Charging")


def test_hot_gpu_arrives_as_critical_and_the_warning_is_inhibited(env):
    info = env.stack.client.wait_query('nvidia_gpu_info{job="gpu-exporter"}')
    assert len(info) == 1, info
    gpu = {k: info[0]["metric"][k] for k in ("gpu", "uuid")}
    before = len(env.logger.records())
    gpu_capture(env.capture_src, env.capture, celsius=91)
    r = env.arrived("GPUTemperatureCritical", since=before, **gpu)
    assert r, f"no GPUTemperatureCritical notification: {env.logger.records()[before:]}"
    assert r["path"] == "/odin/critical", r
    assert r["labels"] == {"alertname": "GPUTemperatureCritical", "severity": "critical",
                           "condition": "gpu-temperature", "job": "gpu-exporter", "instance": env.gpu,
                           "host": "gpu", **gpu}, r["labels"]
    assert r["annotations"]["summary"] == f"GPU {gpu['gpu']} on {env.gpu} is at 91 °C (critical)", r
    assert gpu["uuid"] in r["annotations"]["description"], r
    assert check_runbook(r["annotations"])[1] == "GPUTemperatureCritical"
    # The warning fires later (its for: is longer) and is inhibited before it is ever sent.
    assert env.firing_in_prometheus("GPUTemperatureHigh", instance=env.gpu), "GPUTemperatureHigh did not fire"
    high = env.am_alert("GPUTemperatureHigh", instance=env.gpu, want=lambda a: a["status"]["inhibitedBy"])
    assert high and high["status"]["state"] == "suppressed", high
    gpu_capture(env.capture_src, env.capture)
    r = env.arrived("GPUTemperatureCritical", status="resolved", since=before, **gpu)
    assert r, env.logger.records()[before:]
    names = [x["labels"]["alertname"] for x in env.logger.records()[before:]]
    assert "GPUTemperatureHigh" not in names, names


def test_dns_resolution_arrives(env):
    r = env.arrived("NetworkDNSProbeFailing", status="resolved", name=FLAKY, instance=env.net)
    assert r, [x for x in env.logger.records() if x["labels"]["alertname"] == "NetworkDNSProbeFailing"]
    assert r["path"] == "/odin/critical" and r["endsAt"] > r["startsAt"], r
    assert r["annotations"]["runbook_url"], r


def test_nothing_else_arrived(env):
    names = {r["labels"]["alertname"] for r in env.logger.records()}
    assert names <= EXPECTED, names - EXPECTED


def test_logger_prints_what_it_writes(env):
    printed = [json.loads(line) for line in env.logger.proc.output().splitlines() if line.startswith("{")]
    assert printed == env.logger.records() and printed, (printed, env.logger.records())
