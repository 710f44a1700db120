"""End to end: a real Prometheus scrapes the real gpu-exporter binary on both backends.

No GPU needed. Two gpu-exporters run `--backend=nvidia-smi` with the fake nvidia-smi
(exporters/gpu-exporter/tests/fake-nvidia-smi) answering from real captures in
shared/captures/nvidia-smi/: an RTX 4080 SUPER at idle and an H100 under load, both with
`--metrics.dcgm-compat --collect.interval=1s`. Each gets a small fixture /sys (the GPU's
runtime_status is "active", so it is read, not reported suspended) and a fixture /proc (one
GPU process has a /proc/<pid>/comm, the others fall back to the driver's name). Two more run
on the NVML backend with the fake libnvidia-ml.so (exporters/gpu-exporter/tests/fake-nvml/,
compiled here with `cc`), whose data file the example `fake-nvml-data` writes from a capture
(the nvidia-smi parser's readings in NVML's units, plus the values only NVML has):
two copies of an RTX 2080 SUPER under load (`--backend=auto`, two fans each, an XID 13 on
GPU 1 through FAKE_NVML_XID_AT_START) and the MIG-enabled H100 under load (`--backend=nvml`,
four MIG devices). Prometheus loads every rule file of rules/.

Grafana dashboard 12239 (dcgm-exporter's) is read from shared/dashboards-upstream/; every
query of it must return data except DCGM_FI_PROF_PIPE_TENSOR_ACTIVE (a DCGM profiling counter
that NVML cannot read).
"""
from __future__ import annotations

import json

import pytest

from odin import REPO, checks, dashboards, manifest, metricsdoc, promql, rules, shared_dir
from odin.exporters import binary
from odin.gpufakes import FAKE_SMI, build_fake_nvml, fake_nvml_data
from odin.exposition import close, family_of, parse, promtool_findings, sample
from odin.prometheus import Stack, Target

EXPORTER = manifest.get("gpu-exporter")
PREFIX = EXPORTER["prefix"]
DASHBOARD_12239 = "dashboards-upstream/dcgm-exporter-dashboard-12239.json"
# Panels of 12239 whose metric NVML cannot provide (named in the gpu-exporter docs).
OUT_OF_NVML_REACH = {
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "a DCGM profiling counter (tensor pipe activity) "
                                       "that NVML has no call for",
}
# Documented metrics that every capture used here reports as unknown, so no series is right.
CAPTURE_NA = {
    "nvidia_gpu_retired_pages": "retired_pages.* is [N/A] on every GPU used (H100s remap rows)",
    "nvidia_gpu_retired_pages_pending": "retired_pages.pending is [N/A] on every GPU used",
}

# One exporter per capture on the nvidia-smi backend. `expect`: values read off the capture's
# --query-gpu section (GPU 0), in the exporter's base units.
MIB = 1048576
SMI_EXPORTERS = {
    "rtx4080": {
        "capture": "linux-x86_64__nvidia-geforce-rtx-4080-super__595.71.05.txt",
        "section": "idle",
        "model": "NVIDIA GeForce RTX 4080 SUPER",
        "bus_sysfs": "0000:01:00.0",
        "expect": {
            "nvidia_gpu_temperature_celsius": 43,
            "nvidia_gpu_power_draw_watts": 26.20,
            "nvidia_gpu_memory_used_bytes": 596 * MIB,
            "nvidia_gpu_memory_total_bytes": 16376 * MIB,
            "nvidia_gpu_utilization_percent": 0,
            "nvidia_gpu_power_enforced_limit_watts": 320,
            "nvidia_gpu_performance_state": 8,
        },
        # pid -> (expected process label, bytes); no comm file: the driver's name.
        "processes": {"2165": (None, 25 * MIB)},
        "comm": {},
    },
    "h100": {
        "capture": "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt",
        "section": "load",
        "model": "NVIDIA H100 80GB HBM3",
        "bus_sysfs": "0000:00:09.0",
        "expect": {
            "nvidia_gpu_temperature_celsius": 59,
            "nvidia_gpu_power_draw_watts": 631.95,
            "nvidia_gpu_memory_used_bytes": 19818 * MIB,
            "nvidia_gpu_memory_total_bytes": 81559 * MIB,
            "nvidia_gpu_utilization_percent": 100,
            "nvidia_gpu_temperature_slowdown_margin_celsius": 26,
            "nvidia_gpu_memory_temperature_celsius": 54,
            "nvidia_gpu_power_enforced_limit_watts": 700,
            "nvidia_gpu_performance_state": 0,
        },
        "processes": {"11345": ("gpu_burn", 15690 * MIB), "11327": (None, 2566 * MIB)},
        # The fixture /proc names pid 11345 as its comm does ("gpu_burn", not "./gpu_burn").
        "comm": {"11345": "gpu_burn"},
    },
}

# gpu-exporters on the NVML backend (fake libnvidia-ml.so). `gpus`: the example's third argument
# (copies of the capture's first GPU, or as-is); `backend`: the --backend flag and the reason
# nvidia_gpu_backend_info must give; `xid`: FAKE_NVML_XID_AT_START (GPU, code).
NVML_EXPORTERS = {
    "nvml-2080": {
        "capture": "linux-x86_64__nvidia-geforce-rtx-2080-super__595.71.05.txt",
        "section": "load",
        "gpus": "2",
        "backend": ("auto", "nvml_ok"),
        "xid": (1, 13),
    },
    "nvml-h100mig": {
        "capture": "linux-x86_64__nvidia-h100-mig__590.48.01.txt",
        "section": "load",
        "gpus": "as-is",
        "backend": ("nvml", "forced"),
        "xid": None,
    },
}
EVERYONE = [*SMI_EXPORTERS, *NVML_EXPORTERS]
SMI_PROCESSES = [(h, pid) for h, e in SMI_EXPORTERS.items() for pid in e["processes"]]


# ------------------------------------------------------------------ the documented families

@pytest.fixture(scope="module")
def docs():
    """docs/metrics.md's rows for gpu-exporter (shared ones with the prefix)."""
    return metricsdoc.for_exporter(EXPORTER["name"], PREFIX)


@pytest.fixture(scope="module")
def nvml_only(docs):
    """Rows whose only source is NVML (`NVML`, `NVML events`): absent on nvidia-smi."""
    return {name for name, row in docs.items() if row.source.startswith("NVML")}


def test_docs_name_nvml_only_metrics(nvml_only):
    assert nvml_only and "nvidia_gpu_energy_consumed_joules_total" in nvml_only, sorted(nvml_only)


# ------------------------------------------------------------------ the scenario

def sysfs_name(bus_id: str) -> str:
    """`00000000:0C:00.0` -> `0000:0c:00.0`, the device's directory in sysfs."""
    domain, bus, devfn = bus_id.split(":")
    return f"{int(domain, 16):04x}:{bus.lower()}:{devfn.lower()}"


def active_gpu(sysfs, bus_dir: str) -> None:
    power = sysfs / "bus/pci/devices" / bus_dir / "power"
    power.mkdir(parents=True)
    (power / "runtime_status").write_text("active\n")


@pytest.fixture(scope="module")
def nvml_data(tmp_path_factory):
    """host -> the fake NVML's data file (path, parsed)."""
    work = tmp_path_factory.mktemp("nvml-data")
    captures = shared_dir() / "captures" / "nvidia-smi"
    out = {}
    for h, e in NVML_EXPORTERS.items():
        text = fake_nvml_data(captures / e["capture"], e["section"], e["gpus"])
        (work / f"{h}.txt").write_text(text)
        out[h] = (work / f"{h}.txt", dict(line.split("=", 1) for line in text.splitlines() if "=" in line))
    return out


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, nvml_data):
    work = tmp_path_factory.mktemp("e2e-gpu")
    exporter = binary(EXPORTER["name"])
    captures = shared_dir() / "captures" / "nvidia-smi"
    # The fake NVML first: a failed build stops the test before any process starts.
    lib = build_fake_nvml(work)
    targets = []
    for h, e in SMI_EXPORTERS.items():
        active_gpu(work / h / "sys", e["bus_sysfs"])
        procfs = work / h / "proc"
        procfs.mkdir(parents=True)
        for pid, comm in e["comm"].items():
            (procfs / pid).mkdir()
            (procfs / pid / "comm").write_text(comm + "\n")
        targets.append(Target(h, [exporter, "--backend=nvidia-smi", f"--nvidia-smi.command={FAKE_SMI}",
                                  "--collect.interval=1s", "--metrics.dcgm-compat",
                                  f"--metrics.dcgm-hostname={h}-node",
                                  f"--path.sysfs={work / h / 'sys'}", f"--path.procfs={procfs}"],
                              env={"FAKE_NVIDIA_SMI_CAPTURE": str(captures / e["capture"]),
                                   "FAKE_NVIDIA_SMI_SECTION": e["section"]}))
    for h, e in NVML_EXPORTERS.items():
        path, data = nvml_data[h]
        for i in range(int(data["count"])):
            active_gpu(work / h / "sys", sysfs_name(data[f"gpu{i}.bus_id"]))
        (work / h / "proc").mkdir(parents=True)  # empty: process names are the driver's
        env = {"FAKE_NVML_DATA": str(path)}
        if e["xid"]:
            env["FAKE_NVML_XID_AT_START"] = f"{e['xid'][0]}:{e['xid'][1]}"
        targets.append(Target(h, [exporter, f"--backend={e['backend'][0]}", f"--nvml.library={lib}",
                                  "--metrics.dcgm-compat", f"--metrics.dcgm-hostname={h}-node",
                                  f"--path.sysfs={work / h / 'sys'}", f"--path.procfs={work / h / 'proc'}"],
                              env=env))
    return Stack(work, EXPORTER["name"], targets)


@pytest.fixture(scope="module")
def texts(stack):
    return {t.host: t.metrics() for t in stack.targets}


@pytest.fixture(scope="module")
def samples(texts):
    return {h: parse(text)[0] for h, text in texts.items()}


# ------------------------------------------------------------------ Prometheus and rules

def test_prometheus_scrapes_every_gpu_exporter(stack):
    ups = stack.client.query(f'up{{job="{stack.job}"}}')
    assert len(ups) == len(EVERYONE) and all(r["value"][1] == "1" for r in ups), ups


def test_every_rule_loaded(stack):
    loaded, declared = checks.rules_loaded(stack.client)
    assert loaded == declared and loaded > 0, f"{loaded} rules loaded, rules/*.yml declare {declared}"


def test_no_rule_evaluation_errors(stack):
    assert not checks.rules_unhealthy(stack.client)


# ------------------------------------------------------------------ nvidia-smi backend values

@pytest.mark.parametrize("host", SMI_EXPORTERS)
def test_smi_values_read_off_the_capture(samples, host):
    s, expect = samples[host], SMI_EXPORTERS[host]["expect"]
    got = {name: sample(s, name, gpu="0") for name in expect}
    wrong = {name: ([v for _, v in got[name]], want) for name, want in expect.items()
             if len(got[name]) != 1 or not close(got[name][0][1], want)}
    assert not wrong, f"(got, want): {wrong}"


@pytest.mark.parametrize("host", SMI_EXPORTERS)
def test_smi_one_device(samples, host):
    count = sample(samples[host], "nvidia_gpu_devices")
    assert len(count) == 1 and count[0][1] == 1, count


@pytest.mark.parametrize("host", SMI_EXPORTERS)
def test_smi_info_names_the_model(samples, host):
    info = sample(samples[host], "nvidia_gpu_info", gpu="0")
    assert len(info) == 1 and info[0][0].get("name") == SMI_EXPORTERS[host]["model"] and info[0][1] == 1, info


@pytest.mark.parametrize("host", SMI_EXPORTERS)
def test_smi_backend_chosen_by_flag_not_fallback(samples, host):
    backend = sample(samples[host], "nvidia_gpu_backend_info")
    assert (len(backend) == 1 and backend[0][0].get("backend") == "nvidia-smi"
            and backend[0][0].get("reason") != "nvml_unavailable_fell_back"), backend


@pytest.mark.parametrize("host", SMI_EXPORTERS)
def test_smi_active_runtime_status_not_suspended(samples, host):
    suspended = sample(samples[host], "nvidia_gpu_suspended", gpu="0")
    assert len(suspended) == 1 and suspended[0][1] == 0, suspended


@pytest.mark.parametrize("host", SMI_EXPORTERS)
def test_smi_result_age_below_5s(samples, host):
    age = sample(samples[host], "nvidia_gpu_collector_result_age_seconds", collector="gpu")
    assert len(age) == 1 and 0 <= age[0][1] < 5, age


@pytest.mark.parametrize("host,pid", SMI_PROCESSES)
def test_smi_process_memory_and_name(samples, host, pid):
    name, used = SMI_EXPORTERS[host]["processes"][pid]
    p = sample(samples[host], "nvidia_gpu_process_memory_used_bytes", gpu="0", pid=pid)
    assert len(p) == 1 and close(p[0][1], used), p
    if name is not None:
        assert p[0][0].get("process") == name, f"want {name!r} from /proc/{pid}/comm: {p}"
    else:
        assert p[0][0].get("process"), f"want the driver's name: {p}"


# DCGM family: dcgm-exporter's units and labels, same readings.
@pytest.mark.parametrize("host", SMI_EXPORTERS)
def test_smi_dcgm_gpu_temp_with_dcgm_exporters_labels(samples, host):
    e = SMI_EXPORTERS[host]
    t = sample(samples[host], "DCGM_FI_DEV_GPU_TEMP", gpu="0")
    want = {"gpu": "0", "device": "nvidia0", "modelName": e["model"], "Hostname": f"{host}-node"}
    assert (len(t) == 1 and all(t[0][0].get(k) == v for k, v in want.items())
            and {"UUID", "pci_bus_id"} <= set(t[0][0])
            and close(t[0][1], e["expect"]["nvidia_gpu_temperature_celsius"])), t


@pytest.mark.parametrize("host", SMI_EXPORTERS)
def test_smi_dcgm_fb_used_in_mib(samples, host):
    fb = sample(samples[host], "DCGM_FI_DEV_FB_USED", gpu="0")
    assert len(fb) == 1 and close(fb[0][1] * MIB, SMI_EXPORTERS[host]["expect"]["nvidia_gpu_memory_used_bytes"]), fb


@pytest.mark.parametrize("host", SMI_EXPORTERS)
def test_smi_dcgm_power_usage_in_watts(samples, host):
    pw = sample(samples[host], "DCGM_FI_DEV_POWER_USAGE", gpu="0")
    assert len(pw) == 1 and close(pw[0][1], SMI_EXPORTERS[host]["expect"]["nvidia_gpu_power_draw_watts"]), pw


@pytest.mark.parametrize("host", SMI_EXPORTERS)
def test_smi_dcgm_sm_clock_in_mhz_equals_native(samples, host):
    sm = sample(samples[host], "DCGM_FI_DEV_SM_CLOCK", gpu="0")
    native = sample(samples[host], "nvidia_gpu_clock_hertz", gpu="0", clock="sm")
    assert len(sm) == 1 and len(native) == 1 and close(sm[0][1] * 1e6, native[0][1]), (sm, native)


# ------------------------------------------------------------------ NVML backend values

@pytest.mark.parametrize("host", NVML_EXPORTERS)
def test_nvml_backend_and_reason(samples, host):
    flag, reason = NVML_EXPORTERS[host]["backend"]
    backend = sample(samples[host], "nvidia_gpu_backend_info")
    assert (len(backend) == 1 and backend[0][0].get("backend") == "nvml"
            and backend[0][0].get("reason") == reason), f"--backend={flag}: {backend}"


@pytest.mark.parametrize("host", NVML_EXPORTERS)
def test_nvml_device_count(samples, nvml_data, host):
    count = int(nvml_data[host][1]["count"])
    devices = sample(samples[host], "nvidia_gpu_devices")
    assert len(devices) == 1 and devices[0][1] == count, devices


def nvml_wanted(data: dict, i: int, xid) -> dict:
    """(name, labels) -> value the exporter must serve for GPU i, in its base units (and the
    DCGM family in dcgm-exporter's)."""
    g = f"gpu{i}"
    want = {
        ("nvidia_gpu_temperature_celsius", ()): float(data[f"{g}.temp_gpu"]),
        ("nvidia_gpu_power_draw_watts", ()): float(data[f"{g}.power_usage"]) / 1000,
        ("nvidia_gpu_memory_used_bytes", ()): float(data[f"{g}.mem_used"]),
        ("nvidia_gpu_energy_consumed_joules_total", ()): float(data[f"{g}.energy"]) / 1000,
        ("nvidia_gpu_temperature_threshold_celsius", (("threshold", "slowdown"),)):
            float(data[f"{g}.threshold1"]),
        ("nvidia_gpu_temperature_threshold_celsius", (("threshold", "shutdown"),)):
            float(data[f"{g}.threshold0"]),
        ("nvidia_gpu_pcie_throughput_bytes_per_second", (("direction", "tx"),)):
            float(data[f"{g}.pcie_tx"]) * 1024,
        ("nvidia_gpu_pcie_throughput_bytes_per_second", (("direction", "rx"),)):
            float(data[f"{g}.pcie_rx"]) * 1024,
        ("nvidia_gpu_pcie_replays_total", ()): float(data[f"{g}.pcie_replay"]),
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", ()): float(data[f"{g}.energy"]),
        ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", ()): float(data[f"{g}.pcie_replay"]),
    }
    for fan in range(int(data.get(f"{g}.num_fans", "0"))):
        want[("nvidia_gpu_fan_speed_ratio", (("fan", str(fan)),))] = float(data[f"{g}.fan{fan}"]) / 100
    if xid:
        want[("nvidia_gpu_xid_errors_total", (("xid", str(xid[1])),))] = 1.0
    want[("DCGM_FI_DEV_XID_ERRORS", ())] = float(xid[1]) if xid else 0.0
    return want


@pytest.mark.parametrize("host", NVML_EXPORTERS)
def test_nvml_values_of_the_data_file(samples, nvml_data, host):
    """Every NVML-only value (energy, thresholds, PCIe, fans, XIDs) and its DCGM twin."""
    s, data, e = samples[host], nvml_data[host][1], NVML_EXPORTERS[host]
    problems = {}
    for i in range(int(data["count"])):
        uuid = data[f"gpu{i}.uuid"]
        xid = e["xid"] if e["xid"] and e["xid"][0] == i else None
        for (name, labels), value in nvml_wanted(data, i, xid).items():
            got = sample(s, name, gpu=str(i), **dict(labels))
            uuid_label = "UUID" if name.startswith("DCGM_") else "uuid"
            if len(got) != 1 or got[0][0].get(uuid_label) != uuid or not close(got[0][1], value):
                problems[f"GPU {i} {name}{dict(labels)}"] = ([v for _, v in got], value)
        xids = sample(s, "nvidia_gpu_xid_errors_total", gpu=str(i))
        if len(xids) != (1 if xid else 0):
            problems[f"GPU {i} nvidia_gpu_xid_errors_total (series)"] = [d.get("xid") for d, _ in xids]
    assert not problems, f"(got, want): {problems}"


@pytest.mark.parametrize("host", NVML_EXPORTERS)
def test_nvml_processes_with_the_drivers_names(samples, nvml_data, host):
    s, data = samples[host], nvml_data[host][1]
    bad = []
    for i in range(int(data["count"])):
        procs = [p.split(":") for p in data[f"gpu{i}.procs"].split(";") if p]
        for pid, used in procs:
            got = sample(s, "nvidia_gpu_process_memory_used_bytes", gpu=str(i), pid=pid)
            name = data.get(f"proc.{pid}.name", "").split(" ")[0].rsplit("/", 1)[-1]
            if len(got) != 1 or not close(got[0][1], float(used)) or got[0][0].get("process") != name:
                bad.append((i, pid, used, name, got))
        served = sample(s, "nvidia_gpu_process_memory_used_bytes", gpu=str(i))
        if len(served) != len(procs):
            bad.append((i, f"{len(served)} process series served, {len(procs)} in the data file"))
    assert not bad


@pytest.mark.parametrize("host", NVML_EXPORTERS)
def test_nvml_mig_devices(samples, nvml_data, host):
    """MIG devices (profile, instances, memory) where the data file has them, none elsewhere."""
    s, data = samples[host], nvml_data[host][1]
    bad = []
    for i in range(int(data["count"])):
        g = f"gpu{i}"
        uuid = data[f"{g}.uuid"]
        migs = sorted({k.split(".")[1] for k in data if k.startswith(f"{g}.mig") and
                       k.split(".")[1] != "mig_max" and k.count(".") == 2})
        all_migs = sample(s, "nvidia_gpu_mig_device_info", gpu=str(i))
        if not (migs or data.get(f"{g}.mig_current") == "1"):
            if all_migs:
                bad.append((i, "MIG devices served for a GPU without MIG", all_migs))
            continue
        if not migs:
            bad.append((i, "MIG mode on but no MIG device in the data file"))
        if len(all_migs) != len(migs):
            bad.append((i, f"{len(all_migs)} MIG devices served, {len(migs)} in the data file"))
        for m in migs:
            mp = f"{g}.{m}"
            mig_uuid = data[f"{mp}.uuid"]
            info = sample(s, "nvidia_gpu_mig_device_info", gpu=str(i), mig_uuid=mig_uuid)
            want_info = {"uuid": uuid, "gpu_instance": data[f"{mp}.gi"],
                         "compute_instance": data[f"{mp}.ci"],
                         "profile": data[f"{mp}.name"].split(" MIG ", 1)[1]}
            if len(info) != 1 or info[0][1] != 1 or any(info[0][0].get(k) != v for k, v in want_info.items()):
                bad.append((i, m, "info", info, want_info))
            for key, name in (("mem_used", "nvidia_gpu_mig_device_memory_used_bytes"),
                              ("mem_total", "nvidia_gpu_mig_device_memory_total_bytes")):
                got = sample(s, name, gpu=str(i), mig_uuid=mig_uuid)
                if len(got) != 1 or not close(got[0][1], float(data[f"{mp}.{key}"])):
                    bad.append((i, m, name, got, data[f"{mp}.{key}"]))
    assert not bad


def test_xid_alert_fires(stack):
    host = next(h for h, e in NVML_EXPORTERS.items() if e["xid"])
    gpu, code = NVML_EXPORTERS[host]["xid"]
    alerts = stack.client.wait_query(
        f'ALERTS{{alertname="GPUXidError", alertstate="firing", host="{host}"}}', timeout=30)
    assert (len(alerts) == 1 and alerts[0]["metric"].get("gpu") == str(gpu)
            and alerts[0]["metric"].get("xid") == str(code)), alerts


# ------------------------------------------------------------------ promtool, docs/metrics.md

@pytest.mark.parametrize("host", EVERYONE)
def test_promtool_finds_only_dcgm_names(texts, host):
    """promtool check metrics: nothing but the upper-case DCGM_* names (exempt by design)."""
    _, lines = promtool_findings(texts[host])
    others = [ln for ln in lines if "DCGM_" not in ln]
    assert not others, "\n".join(others)


@pytest.fixture(scope="module")
def served(texts):
    """(family -> label names over every exporter, family -> type, families on nvidia-smi,
    families on NVML)."""
    fams: dict[str, set[str]] = {}
    types: dict[str, str] = {}
    smi, nvml = set(), set()
    for host, text in texts.items():
        s, t = parse(text)
        types.update(t)
        for (name, labels) in s:
            fam = family_of(name, t)
            fams.setdefault(fam, set()).update(k for k, _ in labels if k != "le")
            (smi if host in SMI_EXPORTERS else nvml).add(fam)
    return fams, types, smi, nvml


def test_served_families_are_documented(served):
    fams, types, _, _ = served
    problems = metricsdoc.problems(EXPORTER["name"], PREFIX, fams, types, both_ways=False)
    assert not problems, "\n".join(problems)


def test_no_nvml_only_family_on_nvidia_smi(served, nvml_only):
    assert not sorted(served[2] & nvml_only)


def test_every_nvml_only_family_served_on_nvml(served, nvml_only):
    assert not sorted(nvml_only - served[3])


# ------------------------------------------------------------------ rules and dashboards

def excused() -> set[str]:
    for name, why in sorted(CAPTURE_NA.items()):
        print(f"note: {name} not checked: {why}")
    return set(CAPTURE_NA)


def test_metrics_used_by_gpu_rules_exist(served):
    wanted = set()
    for e in rules.exprs([REPO / "rules" / f"{EXPORTER['short']}.rules.yml"]):
        wanted |= promql.exporter_names(e, [PREFIX])
    assert wanted
    assert not sorted(wanted - set(served[0]) - excused())


def test_metrics_used_by_gpu_and_overview_dashboards_exist(served):
    used = dashboards.metric_names_used(dashboards.load(
        [str(REPO / f"dashboards/{EXPORTER['short']}.json"), str(REPO / "dashboards/overview.json")]))
    dash = {m for m in used if m.startswith(PREFIX + "_")}
    assert dash
    assert not sorted(dash - set(served[0]) - excused())


def test_every_query_of_gpu_and_overview_dashboards_returns_data(stack):
    rc, report = checks.query_dashboards(stack.url, [f"dashboards/{EXPORTER['short']}.json", "dashboards/overview.json"],
                                         allow_empty="dashboards/e2e-allow-empty-gpu.tsv")
    assert rc == 0, report


# ------------------------------------------------------------------ Grafana dashboard 12239

@pytest.fixture(scope="module")
def dashboard_12239():
    path = shared_dir() / DASHBOARD_12239
    return path, json.loads(path.read_text())


@pytest.fixture(scope="module")
def allow_12239(dashboard_12239, tmp_path_factory):
    """The 12239 panels out of NVML's reach, as an --allow-empty file's entries."""
    _, d = dashboard_12239
    entries = []
    for panel in d.get("panels", []):
        exprs = " ".join(t.get("expr", "") for t in panel.get("targets", []) or [])
        for metric, why in OUT_OF_NVML_REACH.items():
            if metric in exprs:
                entries.append(f"{d['uid']}\t{panel['title']}\t{metric}: {why}")
    path = tmp_path_factory.mktemp("12239") / "allow-12239.tsv"
    path.write_text("\n".join(entries) + "\n")
    return path, entries


def test_12239_panels_out_of_nvml_reach_are_found(allow_12239):
    assert len(allow_12239[1]) == len(OUT_OF_NVML_REACH), allow_12239[1]


def test_12239_every_query_and_variable_returns_data(stack, dashboard_12239, allow_12239):
    """Every query and template variable, DCGM_FI_PROF_PIPE_TENSOR_ACTIVE excepted."""
    rc, report = checks.query_dashboards(stack.url, [dashboard_12239[0]], allow_empty=allow_12239[0], wait=30)
    assert rc == 0, report


@pytest.mark.parametrize("label", ["instance", "gpu"])
def test_12239_variable_lists_every_exporter_and_gpu(stack, nvml_data, label):
    values = stack.client.label_values(label, "DCGM_FI_DEV_GPU_TEMP")
    if label == "instance":
        want = {t.address for t in stack.targets}
    else:
        want = {"0"} | {str(i) for _, data in nvml_data.values() for i in range(int(data["count"]))}
    assert set(values) == want


def test_exporters_exit_0_on_sigterm(stack):
    rcs = stack.stop_exporters()
    assert all(rc == 0 for rc in rcs.values()), rcs
