"""End to end: a real Prometheus scrapes the real power-exporter binary.

Four exporters run: a workstation (RAPL on two packages, coretemp, a Super I/O chip with
fans and voltages, NVMe, amdgpu, a current and power monitor, and two GPUs through
gpu-exporter's fake NVML: an RTX 2080 SUPER capture under load, its energy counter growing at
its power) and a laptop (psys RAPL, a battery with AC and a peripheral battery, thermal zones
with trip points and cooling devices, a ThinkPad fan), an AMD laptop (AMD RAPL, batteries that report charge, k10temp and
amd_energy), each made of the collectors' own
fixture trees merged into one `sys/`, so that between them every family has a series and
every panel something to show; and one on this machine's live /sys with no GPU library
(which may have none of these classes: absence is no failure, so it must be healthy).
Prometheus loads every rule file of rules/.
"""
from __future__ import annotations

import shutil

import pytest

from odin import REPO, checks, manifest, metricsdoc, shared_dir
from odin.exporters import binary
from odin.gpufakes import build_fake_nvml, fake_nvml_data
from odin.exposition import families, parse, promtool_findings
from odin.prometheus import Stack, Target

EXPORTER = manifest.get("power-exporter")
FIXTURES = REPO / "exporters/power-exporter/tests/fixtures"
# Each host's fixture trees, merged in this order into one tree.
HOSTS = {"desktop": ["rapl-desktop", "host-desktop"],
         "laptop": ["rapl-psys", "battery-laptop", "host-laptop"],
         "amd": ["rapl-amd", "battery-charge", "host-amd"]}
CAPTURE = "linux-x86_64__nvidia-geforce-rtx-2080-super__595.71.05.txt"


def merged_tree(dest, trees):
    for name in trees:
        src = FIXTURES / name / "sys"
        assert src.is_dir(), f"fixture {src} missing"
        shutil.copytree(src, dest / "sys", dirs_exist_ok=True, symlinks=True)
    return dest


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e-power")
    desktop = merged_tree(work / "desktop", HOSTS["desktop"])
    laptop = merged_tree(work / "laptop", HOSTS["laptop"])
    amd = merged_tree(work / "amd", HOSTS["amd"])
    lib = build_fake_nvml(work)
    data = work / "nvml.txt"
    data.write_text(fake_nvml_data(shared_dir() / "captures/nvidia-smi" / CAPTURE, "load", "2")
                    + "energy_follows_power=1\n")
    exporter = binary(EXPORTER["name"])
    return Stack(work, EXPORTER["name"], [
        Target("laptop", [exporter, f"--path.sysfs={laptop / 'sys'}", "--rapl.window=2s",
                          "--no-collector.gpu"]),
        Target("amd", [exporter, f"--path.sysfs={amd / 'sys'}", "--rapl.window=2s", "--no-collector.gpu"]),
        Target("desktop", [exporter, f"--path.sysfs={desktop / 'sys'}", "--rapl.window=2s",
                           "--gpu.backend=nvml", f"--gpu.nvml-library={lib}", "--gpu.interval=1s"],
               env={"FAKE_NVML_DATA": str(data)}),
        Target("live", [exporter, "--rapl.window=2s", "--gpu.nvml-library=/nonexistent/libnvidia-ml.so.1",
                        "--gpu.nvidia-smi-command=/nonexistent/nvidia-smi"]),
    ])


def test_prometheus_scrapes_all_four(stack):
    ups = stack.client.query(f'up{{job="{stack.job}"}}')
    assert len(ups) == 4 and all(r["value"][1] == "1" for r in ups), ups


def test_every_collector_succeeds_everywhere(stack):
    for t in stack.targets:
        text = t.metrics()
        samples, _ = parse(text)
        success = {dict(l)["collector"]: v for (n, l), v in samples.items() if n == "power_collector_success"}
        assert success and all(v == 1 for v in success.values()), (t.host, success)
        status, _, body = t.get("/health")
        assert status == 200, (t.host, body)


def test_rapl_power_after_two_samples(stack):
    res = stack.client.wait_query('power_rapl_power_watts{host="desktop"}', timeout=30)
    assert res, "no RAPL power on the fixture tree"


def test_gpu_power_through_the_fake_nvml(stack):
    res = stack.client.wait_query('power_gpu_power_watts{host="desktop"} > 0', timeout=30)
    assert len(res) == 2, res


def test_prometheus_rules_loaded_and_healthy(stack):
    loaded, declared = checks.rules_loaded(stack.client)
    assert loaded == declared and loaded > 0, f"{loaded} rules loaded, rules/*.yml declare {declared}"
    assert not checks.rules_unhealthy(stack.client)


def test_prometheus_promtool_check_metrics_silent(stack):
    for t in stack.targets:
        rc, findings = promtool_findings(t.metrics())
        assert rc == 0 and not findings, (t.host, "\n".join(findings))


def test_prometheus_metrics_doc_matches_live_output(stack):
    text = "\n".join(stack[host].metrics() for host in HOSTS)
    problems = metricsdoc.problems(EXPORTER["name"], EXPORTER["prefix"], families(text), parse(text)[1])
    assert not problems, "\n".join(problems)


def test_prometheus_every_power_query_returns_data(stack):
    rc, report = checks.query_dashboards(stack.url, ["dashboards/power.json", "dashboards/overview.json"],
                                         prefix=EXPORTER["prefix"], allow_empty="dashboards/e2e-allow-empty-power.tsv")
    assert rc == 0, report


def test_exporters_exit_0_on_sigterm(stack):
    rcs = stack.stop_exporters()
    assert all(rc == 0 for rc in rcs.values()), rcs
