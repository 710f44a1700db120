#!/usr/bin/env python3
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
four MIG devices). Prometheus loads every rule file of rules/. Then:
- both targets are up, every rule loaded, no rule evaluation errors;
- values read off the captures arrive unchanged, in base units, and the DCGM family agrees
  with the native one (dcgm-exporter's units and labels);
- `promtool check metrics` finds nothing but the upper-case DCGM_* names (exempt by design);
- NVML: backend_info names nvml and the reason the flag gives; the NVML-only families
  (energy in joules, temperature thresholds, PCIe throughput and replays, every fan, XID
  errors, MIG devices) carry the values of the data file, the DCGM family too (energy in mJ,
  the last XID's code); the XID alert fires in Prometheus;
- served families are documented in docs/metrics.md with their type and labels; those whose
  only source is NVML are not served on the nvidia-smi backend, and all are served on NVML;
- every metric the GPU rules and the GPU/overview dashboards use is in the live output,
  except those the captures report as [N/A] (listed with reasons);
- every query and template variable of dashboards/gpu.json and dashboards/overview.json
  returns data (dashboards/e2e-allow-empty-gpu.tsv lists the panels that cannot, and why);
- every query and template variable of Grafana dashboard 12239 (dcgm-exporter's, read from
  shared/dashboards-upstream/) returns data, except DCGM_FI_PROF_PIPE_TENSOR_ACTIVE
  (a DCGM profiling counter that NVML cannot read);
- the exporters exit 0 on SIGTERM.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from odintest import (REPO, Checks, Proc, binary, family_of, free_port, http_get,  # noqa: E402
                      parse_exposition, prom_query, shared_dir, target_dir, wait_http)

FAKE_SMI = REPO / "exporters/gpu-exporter/tests/fake-nvidia-smi"
FAKE_NVML_C = REPO / "exporters/gpu-exporter/tests/fake-nvml/fake_nvml.c"
DASHBOARD_12239 = "dashboards-upstream/dcgm-exporter-dashboard-12239.json"
# Panels of 12239 whose metric NVML cannot provide (named in README.md, gpu-exporter section).
OUT_OF_NVML_REACH = {
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "a DCGM profiling counter (tensor pipe activity) "
                                       "that NVML has no call for",
}
# Documented metrics that every capture used here reports as unknown, so no series is right.
CAPTURE_NA = {
    "nvidia_gpu_retired_pages": "retired_pages.* is [N/A] on every GPU used (H100s remap rows)",
    "nvidia_gpu_retired_pages_pending": "retired_pages.pending is [N/A] on every GPU used",
}

# One exporter per capture. `expect`: values read off the capture's --query-gpu section
# (GPU 0), in the exporter's base units.
MIB = 1048576
EXPORTERS = [
    {
        "host": "rtx4080",
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
    {
        "host": "h100",
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
]


# gpu-exporters on the NVML backend (fake libnvidia-ml.so). `gpus`: the example's third argument
# (copies of the capture's first GPU, or as-is); `backend`: the --backend flag and the reason
# nvidia_gpu_backend_info must give; `xid`: FAKE_NVML_XID_AT_START (GPU, code).
NVML_EXPORTERS = [
    {
        "host": "nvml-2080",
        "capture": "linux-x86_64__nvidia-geforce-rtx-2080-super__595.71.05.txt",
        "section": "load",
        "gpus": "2",
        "backend": ("auto", "nvml_ok"),
        "xid": (1, 13),
    },
    {
        "host": "nvml-h100mig",
        "capture": "linux-x86_64__nvidia-h100-mig__590.48.01.txt",
        "section": "load",
        "gpus": "as-is",
        "backend": ("nvml", "forced"),
        "xid": None,
    },
]


def fake_nvml_data(capture: Path, section: str, gpus: str) -> str:
    """The fake NVML's data file for a capture, from the example `fake-nvml-data` (cargo test
    and `cargo build --examples` build it)."""
    example = target_dir() / "debug" / "examples" / "fake-nvml-data"
    if not example.exists():
        raise SystemExit(f"{example} missing: build it first "
                         "(cargo build -p gpu-exporter --examples, or cargo test)")
    p = subprocess.run([str(example), str(capture), section, gpus], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"fake-nvml-data {capture.name} {section} {gpus} failed: {p.stderr}")
    return p.stdout


def build_fake_nvml(out: Path) -> Path:
    """Compile fake_nvml.c into `out`/libnvidia-ml.so.1 with $CC (else cc)."""
    lib = out / "libnvidia-ml.so.1"
    cc = os.environ.get("CC", "cc")
    p = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", str(lib),
                        str(FAKE_NVML_C), "-lpthread"], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"building the fake NVML with {cc} failed:\n{p.stderr}")
    return lib


def parse_data(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def sysfs_name(bus_id: str) -> str:
    """`00000000:0C:00.0` -> `0000:0c:00.0`, the device's directory in sysfs."""
    domain, bus, devfn = bus_id.split(":")
    return f"{int(domain, 16):04x}:{bus.lower()}:{devfn.lower()}"


def rule_files() -> list[Path]:
    return sorted((REPO / "rules").glob("*.yml"))


def gpu_metrics_in(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w:])(nvidia_gpu_[a-z0-9_]+)(?![\w:])", text))


def rule_exprs(path: Path) -> list[str]:
    import yaml  # the repo's .venv has PyYAML; rules/test.sh needs it too
    doc = yaml.safe_load(path.read_text())
    return [str(r.get("expr", "")) for g in doc.get("groups", []) for r in g.get("rules", [])]


def documented_gpu() -> dict[str, tuple[str, set[str], str]]:
    """docs/metrics.md rows of the shared and gpu-exporter sections: name -> (type, labels,
    source), `<prefix>` replaced by nvidia_gpu."""
    rows: dict[str, tuple[str, set[str], str]] = {}
    section = None
    for line in (REPO / "docs/metrics.md").read_text().splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
            continue
        if section is None or not (section.startswith("Shared by every exporter")
                                   or section.startswith("gpu-exporter")):
            continue
        m = re.match(r"^\|\s*`([^`]+)`\s*\|\s*(\w+)\s*\|([^|]*)\|([^|]*)\|", line)
        if m:
            name = m.group(1).replace("<prefix>", "nvidia_gpu")
            labels = {x.strip() for x in m.group(3).split(",") if x.strip()}
            rows[name] = (m.group(2), labels, m.group(4).strip())
    return rows


def nvml_only(docs: dict[str, tuple[str, set[str], str]]) -> set[str]:
    """Rows whose only source is NVML (`NVML`, `NVML events`): absent on nvidia-smi."""
    return {name for name, (_, _, source) in docs.items() if source.startswith("NVML")}


def sample(samples: dict, name: str, **labels) -> list[tuple[dict, float]]:
    out = []
    for (n, ls), v in samples.items():
        d = dict(ls)
        if n == name and all(d.get(k) == want for k, want in labels.items()):
            out.append((d, v))
    return out


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def check_nvml(c: Checks, e: dict, text: str) -> None:
    """An exporter on the fake NVML: every NVML-only value as the data file has it, in the
    exporter's base units, and the DCGM family in dcgm-exporter's."""
    h, data = e["host"], e["data"]
    samples, _ = parse_exposition(text)
    backend = sample(samples, "nvidia_gpu_backend_info")
    flag, reason = e["backend"]
    c.check(len(backend) == 1 and backend[0][0].get("backend") == "nvml"
            and backend[0][0].get("reason") == reason,
            f"{h}: backend nvml, reason {reason} (--backend={flag})", str(backend))
    count = int(data["count"])
    devices = sample(samples, "nvidia_gpu_devices")
    c.check(len(devices) == 1 and devices[0][1] == count, f"{h}: nvidia_gpu_devices is {count}",
            str(devices))
    for i in range(count):
        g = f"gpu{i}"
        uuid = data[f"{g}.uuid"]
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
            want[("nvidia_gpu_fan_speed_ratio", (("fan", str(fan)),))] = \
                float(data[f"{g}.fan{fan}"]) / 100
        xid = e["xid"] if e["xid"] and e["xid"][0] == i else None
        if xid:
            want[("nvidia_gpu_xid_errors_total", (("xid", str(xid[1])),))] = 1.0
        want[("DCGM_FI_DEV_XID_ERRORS", ())] = float(xid[1]) if xid else 0.0
        wrong = {}
        for (name, labels), value in want.items():
            got = sample(samples, name, gpu=str(i), **dict(labels))
            if name.startswith("DCGM_"):
                ok = len(got) == 1 and got[0][0].get("UUID") == uuid
            else:
                ok = len(got) == 1 and got[0][0].get("uuid") == uuid
            if not ok or not close(got[0][1], value):
                wrong[f"{name}{dict(labels)}"] = ([v for _, v in got], value)
        xids = sample(samples, "nvidia_gpu_xid_errors_total", gpu=str(i))
        if len(xids) != (1 if xid else 0):
            wrong["nvidia_gpu_xid_errors_total (series)"] = [d.get("xid") for d, _ in xids]
        c.check(not wrong, f"{h} GPU {i}: NVML values of the data file ({len(want)} series"
                + (f", fans {int(data[g + '.num_fans'])}" if f"{g}.num_fans" in data else "")
                + (f", XID {xid[1]}" if xid else "") + ")", str(wrong))

        procs = [p.split(":") for p in data[f"{g}.procs"].split(";") if p]
        bad = []
        for pid, used in procs:
            got = sample(samples, "nvidia_gpu_process_memory_used_bytes", gpu=str(i), pid=pid)
            name = data.get(f"proc.{pid}.name", "").split(" ")[0].rsplit("/", 1)[-1]
            if len(got) != 1 or not close(got[0][1], float(used)) or got[0][0].get("process") != name:
                bad.append((pid, used, name, got))
        c.check(not bad and len(sample(samples, "nvidia_gpu_process_memory_used_bytes", gpu=str(i)))
                == len(procs), f"{h} GPU {i}: {len(procs)} processes with the driver's names",
                str(bad))

        migs = sorted({k.split(".")[1] for k in data if k.startswith(f"{g}.mig") and
                       k.split(".")[1] != "mig_max" and k.count(".") == 2})
        bad = []
        for m in migs:
            mp = f"{g}.{m}"
            mig_uuid = data[f"{mp}.uuid"]
            info = sample(samples, "nvidia_gpu_mig_device_info", gpu=str(i), mig_uuid=mig_uuid)
            want_info = {"uuid": uuid, "gpu_instance": data[f"{mp}.gi"],
                         "compute_instance": data[f"{mp}.ci"],
                         "profile": data[f"{mp}.name"].split(" MIG ", 1)[1]}
            if len(info) != 1 or info[0][1] != 1 or any(info[0][0].get(k) != v
                                                        for k, v in want_info.items()):
                bad.append((m, "info", info, want_info))
            for key, name in (("mem_used", "nvidia_gpu_mig_device_memory_used_bytes"),
                              ("mem_total", "nvidia_gpu_mig_device_memory_total_bytes")):
                got = sample(samples, name, gpu=str(i), mig_uuid=mig_uuid)
                if len(got) != 1 or not close(got[0][1], float(data[f"{mp}.{key}"])):
                    bad.append((m, name, got, data[f"{mp}.{key}"]))
        all_migs = sample(samples, "nvidia_gpu_mig_device_info", gpu=str(i))
        if migs or data.get(f"{g}.mig_current") == "1":
            c.check(bool(migs) and not bad and len(all_migs) == len(migs),
                    f"{h} GPU {i}: {len(migs)} MIG devices (profile, instances, memory)", str(bad))
        else:
            c.check(not all_migs, f"{h} GPU {i}: no MIG devices", str(all_migs))


def main() -> int:
    c = Checks("e2e-gpu")
    exporter = binary("gpu-exporter")
    captures = shared_dir() / "captures" / "nvidia-smi"
    work = Path(tempfile.mkdtemp(prefix="odin-e2e-gpu-"))
    docs = documented_gpu()
    nvml = nvml_only(docs)
    c.check(bool(nvml) and "nvidia_gpu_energy_consumed_joules_total" in nvml,
            f"docs/metrics.md names NVML-only metrics ({len(nvml)})", str(sorted(nvml)))

    # The fake NVML and its data files first: a missing build stops the test before any process.
    lib = build_fake_nvml(work)
    for e in NVML_EXPORTERS:
        (work / e["host"]).mkdir()
        text = fake_nvml_data(captures / e["capture"], e["section"], e["gpus"])
        (work / e["host"] / "nvml-data.txt").write_text(text)
        e["data"] = parse_data(text)

    procs = []
    for e in EXPORTERS:
        e["port"] = free_port()
        sysfs = work / e["host"] / "sys"
        power = sysfs / "bus/pci/devices" / e["bus_sysfs"] / "power"
        power.mkdir(parents=True)
        (power / "runtime_status").write_text("active\n")
        procfs = work / e["host"] / "proc"
        procfs.mkdir(parents=True)
        for pid, comm in e["comm"].items():
            (procfs / pid).mkdir()
            (procfs / pid / "comm").write_text(comm + "\n")
        e["proc"] = Proc([exporter, f"--web.listen-address=127.0.0.1:{e['port']}",
                          "--backend=nvidia-smi", f"--nvidia-smi.command={FAKE_SMI}",
                          "--collect.interval=1s", "--metrics.dcgm-compat",
                          f"--metrics.dcgm-hostname={e['host']}-node",
                          f"--path.sysfs={sysfs}", f"--path.procfs={procfs}"],
                         work / f"{e['host']}.log",
                         env={"FAKE_NVIDIA_SMI_CAPTURE": str(captures / e["capture"]),
                              "FAKE_NVIDIA_SMI_SECTION": e["section"]})
        procs.append(e["proc"])

    for e in NVML_EXPORTERS:
        e["port"] = free_port()
        home = work / e["host"]
        sysfs = home / "sys"
        for i in range(int(e["data"]["count"])):
            power = sysfs / "bus/pci/devices" / sysfs_name(e["data"][f"gpu{i}.bus_id"]) / "power"
            power.mkdir(parents=True)
            (power / "runtime_status").write_text("active\n")
        procfs = home / "proc"  # empty: process names are the driver's
        procfs.mkdir()
        env = {"FAKE_NVML_DATA": str(home / "nvml-data.txt")}
        if e["xid"]:
            env["FAKE_NVML_XID_AT_START"] = f"{e['xid'][0]}:{e['xid'][1]}"
        e["proc"] = Proc([exporter, f"--web.listen-address=127.0.0.1:{e['port']}",
                          f"--backend={e['backend'][0]}", f"--nvml.library={lib}",
                          "--metrics.dcgm-compat", f"--metrics.dcgm-hostname={e['host']}-node",
                          f"--path.sysfs={sysfs}", f"--path.procfs={procfs}"],
                         work / f"{e['host']}.log", env=env)
        procs.append(e["proc"])
    everyone = EXPORTERS + NVML_EXPORTERS

    prom_port = free_port()
    rules = ", ".join(f"'{p}'" for p in rule_files())
    targets = "\n".join(
        f"      - targets: ['127.0.0.1:{e['port']}']\n        labels: {{host: {e['host']}}}"
        for e in everyone)
    (work / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [{rules}]
scrape_configs:
  - job_name: gpu-exporter
    static_configs:
{targets}
""")
    prom = Proc(["prometheus", f"--config.file={work / 'prometheus.yml'}",
                 f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                work / "prometheus.log")
    base = f"http://127.0.0.1:{prom_port}"
    rcs = []
    try:
        for e in everyone:
            wait_http(f"http://127.0.0.1:{e['port']}/ready", timeout=30)
        wait_http(f"{base}/-/ready", timeout=60)
        deadline = time.time() + 60
        while time.time() < deadline:
            res = prom_query(base, 'count_over_time(up{job="gpu-exporter"}[1m])')
            if len(res) == len(everyone) and min(float(r["value"][1]) for r in res) >= 8:
                break
            time.sleep(1)

        ups = prom_query(base, 'up{job="gpu-exporter"}')
        c.check(len(ups) == len(everyone) and all(r["value"][1] == "1" for r in ups),
                f"Prometheus scrapes all {len(everyone)} gpu-exporters (up == 1)", str(ups))

        _, _, body = http_get(f"{base}/api/v1/rules")
        groups = json.loads(body)["data"]["groups"]
        loaded = sum(len(g["rules"]) for g in groups)
        declared = sum(len(re.findall(r"^\s*- (alert|record):", f.read_text(), re.M))
                       for f in rule_files())
        c.check(loaded == declared and loaded > 0, f"every rule of rules/*.yml loaded ({loaded}/{declared})")
        bad = [r["name"] for g in groups for r in g["rules"] if r.get("health") not in ("ok", None)]
        c.check(not bad, "no rule evaluation errors", str(bad))

        texts = {}
        for e in everyone:
            texts[e["host"]] = http_get(f"http://127.0.0.1:{e['port']}/metrics")[2].decode()

        # ---------------------------------------------------------------- values
        for e in EXPORTERS:
            samples, _ = parse_exposition(texts[e["host"]])
            h = e["host"]
            got = {name: sample(samples, name, gpu="0") for name in e["expect"]}
            wrong = {name: ([v for _, v in got[name]], want) for name, want in e["expect"].items()
                     if len(got[name]) != 1 or not close(got[name][0][1], want)}
            c.check(not wrong, f"{h}: values read off the capture ({len(e['expect'])} metrics)", str(wrong))
            count = sample(samples, "nvidia_gpu_devices")
            c.check(len(count) == 1 and count[0][1] == 1, f"{h}: nvidia_gpu_devices is 1", str(count))
            info = sample(samples, "nvidia_gpu_info", gpu="0")
            c.check(len(info) == 1 and info[0][0].get("name") == e["model"] and info[0][1] == 1,
                    f"{h}: nvidia_gpu_info names the {e['model']}", str(info))
            backend = sample(samples, "nvidia_gpu_backend_info")
            c.check(len(backend) == 1 and backend[0][0].get("backend") == "nvidia-smi"
                    and backend[0][0].get("reason") != "nvml_unavailable_fell_back",
                    f"{h}: backend nvidia-smi, chosen by flag (not a fallback)", str(backend))
            suspended = sample(samples, "nvidia_gpu_suspended", gpu="0")
            c.check(len(suspended) == 1 and suspended[0][1] == 0,
                    f"{h}: runtime_status 'active' read from --path.sysfs: not suspended", str(suspended))
            age = sample(samples, "nvidia_gpu_collector_result_age_seconds", collector="gpu")
            c.check(len(age) == 1 and 0 <= age[0][1] < 5,
                    f"{h}: result age below 5s at a 1s interval", str(age))
            for pid, (name, used) in e["processes"].items():
                p = sample(samples, "nvidia_gpu_process_memory_used_bytes", gpu="0", pid=pid)
                ok = len(p) == 1 and close(p[0][1], used)
                if ok and name is not None:
                    ok = p[0][0].get("process") == name
                elif ok:
                    ok = bool(p[0][0].get("process"))  # the driver's name
                c.check(ok, f"{h}: process {pid} uses {used} bytes"
                        + (f", named {name!r} from /proc/{pid}/comm" if name else ", driver's name"), str(p))
            # DCGM family: dcgm-exporter's units and labels, same readings.
            dcgm_temp = sample(samples, "DCGM_FI_DEV_GPU_TEMP", gpu="0")
            want_labels = {"gpu": "0", "device": "nvidia0", "modelName": e["model"],
                           "Hostname": f"{h}-node"}
            c.check(len(dcgm_temp) == 1 and all(dcgm_temp[0][0].get(k) == v for k, v in want_labels.items())
                    and {"UUID", "pci_bus_id"} <= set(dcgm_temp[0][0])
                    and close(dcgm_temp[0][1], e["expect"]["nvidia_gpu_temperature_celsius"]),
                    f"{h}: DCGM_FI_DEV_GPU_TEMP with dcgm-exporter's labels", str(dcgm_temp))
            fb = sample(samples, "DCGM_FI_DEV_FB_USED", gpu="0")
            c.check(len(fb) == 1 and close(fb[0][1] * MIB, e["expect"]["nvidia_gpu_memory_used_bytes"]),
                    f"{h}: DCGM_FI_DEV_FB_USED in MiB", str(fb))
            pw = sample(samples, "DCGM_FI_DEV_POWER_USAGE", gpu="0")
            c.check(len(pw) == 1 and close(pw[0][1], e["expect"]["nvidia_gpu_power_draw_watts"]),
                    f"{h}: DCGM_FI_DEV_POWER_USAGE in W", str(pw))
            sm = sample(samples, "DCGM_FI_DEV_SM_CLOCK", gpu="0")
            native = sample(samples, "nvidia_gpu_clock_hertz", gpu="0", clock="sm")
            c.check(len(sm) == 1 and len(native) == 1 and close(sm[0][1] * 1e6, native[0][1]),
                    f"{h}: DCGM_FI_DEV_SM_CLOCK in MHz equals nvidia_gpu_clock_hertz{{clock=\"sm\"}}",
                    f"{sm} {native}")

        # ---------------------------------------------------------------- NVML values
        for e in NVML_EXPORTERS:
            check_nvml(c, e, texts[e["host"]])
        xid_host = next(e for e in NVML_EXPORTERS if e["xid"])
        gpu, code = xid_host["xid"]
        deadline = time.time() + 30
        alerts: list = []
        while time.time() < deadline:
            alerts = prom_query(base, f'ALERTS{{alertname="GPUXidError", alertstate="firing", '
                                      f'host="{xid_host["host"]}"}}')
            if alerts:
                break
            time.sleep(1)
        c.check(len(alerts) == 1 and alerts[0]["metric"].get("gpu") == str(gpu)
                and alerts[0]["metric"].get("xid") == str(code),
                f"GPUXidError fires for XID {code} on {xid_host['host']} GPU {gpu}", str(alerts))

        # ---------------------------------------------------------------- promtool
        for h, text in texts.items():
            p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True)
            lines = [ln for ln in (p.stdout + p.stderr).decode().splitlines() if ln.strip()]
            others = [ln for ln in lines if "DCGM_" not in ln]
            c.check(not others, f"promtool check metrics: only DCGM_* findings on {h} "
                    f"({len(lines) - len(others)} DCGM lines ignored)", "\n    ".join(others))

        # ---------------------------------------------------------------- docs/metrics.md
        served: dict[str, set[str]] = {}
        types: dict[str, str] = {}
        served_smi: set[str] = set()
        served_nvml: set[str] = set()
        smi_hosts = {e["host"] for e in EXPORTERS}
        for host, text in texts.items():
            samples, t = parse_exposition(text)
            types.update(t)
            for (name, labels) in samples:
                fam = family_of(name, t)
                served.setdefault(fam, set()).update(k for k, _ in labels if k != "le")
                (served_smi if host in smi_hosts else served_nvml).add(fam)
        problems = []
        for fam, labels in sorted(served.items()):
            if fam not in docs:
                problems.append(f"{fam} is served but not documented")
                continue
            typ, doc_labels, _ = docs[fam]
            if types.get(fam) != typ:
                problems.append(f"{fam}: documented as {typ}, served as {types.get(fam)}")
            if labels != doc_labels:
                problems.append(f"{fam}: documented labels {sorted(doc_labels)}, served {sorted(labels)}")
        c.check(not problems, "served families are documented (name, type, labels)", "\n    ".join(problems))
        leaked = sorted(served_smi & nvml)
        c.check(not leaked, "no NVML-only family is served on the nvidia-smi backend", str(leaked))
        absent = sorted(nvml - served_nvml)
        c.check(not absent, f"every NVML-only family is served on the NVML backend ({len(nvml)})",
                str(absent))

        # ---------------------------------------------------------------- rules and dashboards
        live = set(served)
        for name, why in sorted(CAPTURE_NA.items()):
            print(f"  note: {name} not checked: {why}")
        excused = set(CAPTURE_NA)

        wanted = set()
        for e in rule_exprs(REPO / "rules/gpu.rules.yml"):
            wanted |= gpu_metrics_in(e)
        missing = sorted(wanted - live - excused)
        c.check(bool(wanted) and not missing,
                f"every metric rules/gpu.rules.yml uses exists ({len(wanted - excused)} checked, "
                f"{len(wanted & excused)} excused)", str(missing))

        p = subprocess.run([sys.executable, str(REPO / "tests/dashboard_queries.py"),
                            str(REPO / "dashboards/gpu.json"), str(REPO / "dashboards/overview.json"),
                            "--list-metrics=exporter"], capture_output=True, text=True)
        dash = {m for m in p.stdout.split() if m.startswith("nvidia_gpu_")}
        missing = sorted(dash - live - excused)
        c.check(p.returncode == 0 and bool(dash) and not missing,
                f"every metric dashboards/gpu.json and overview.json use exists "
                f"({len(dash - excused)} checked, {len(dash & excused)} excused)",
                str(missing) + ("\n" + p.stderr if p.returncode else ""))

        p = subprocess.run([sys.executable, str(REPO / "tests/dashboard_queries.py"),
                            "--prometheus", base, "--rate-interval", "1m", "--wait", "60",
                            "--allow-empty", "dashboards/e2e-allow-empty-gpu.tsv",
                            "dashboards/gpu.json", "dashboards/overview.json"],
                           capture_output=True, text=True, cwd=REPO)
        print(p.stdout)
        c.check(p.returncode == 0, "every query of the GPU and overview dashboards returns data",
                p.stderr[-2000:])

        # ---------------------------------------------------------------- dashboard 12239
        upstream = shared_dir() / DASHBOARD_12239
        d12239 = json.loads(upstream.read_text())
        allow = work / "allow-12239.tsv"
        entries = []
        for panel in d12239.get("panels", []):
            exprs = " ".join(t.get("expr", "") for t in panel.get("targets", []) or [])
            for metric, why in OUT_OF_NVML_REACH.items():
                if metric in exprs:
                    entries.append(f"{d12239['uid']}\t{panel['title']}\t{metric}: {why}")
        c.check(len(entries) == len(OUT_OF_NVML_REACH),
                f"dashboard 12239: the panels out of NVML's reach are found ({len(entries)})", str(entries))
        allow.write_text("\n".join(entries) + "\n")
        p = subprocess.run([sys.executable, str(REPO / "tests/dashboard_queries.py"),
                            "--prometheus", base, "--rate-interval", "1m", "--wait", "30",
                            "--allow-empty", str(allow), str(upstream)],
                           capture_output=True, text=True, cwd=REPO)
        print(p.stdout)
        c.check(p.returncode == 0,
                "every query and template variable of dashboard 12239 returns data "
                "(DCGM_FI_PROF_PIPE_TENSOR_ACTIVE excepted)", p.stderr[-2000:])
        # The variables resolve to every exporter and every GPU.
        gpu_indexes = {"0"} | {str(i) for e in NVML_EXPORTERS for i in range(int(e["data"]["count"]))}
        for var, label in (("instance", "instance"), ("gpu", "gpu")):
            _, _, body = http_get(f"{base}/api/v1/label/{label}/values?match[]=DCGM_FI_DEV_GPU_TEMP")
            values = json.loads(body).get("data", [])
            want = {f"127.0.0.1:{e['port']}" for e in everyone} if var == "instance" else gpu_indexes
            c.check(set(values) == want, f"dashboard 12239: ${var} lists {sorted(want)}", str(values))
    finally:
        for e in everyone:
            rcs.append(e["proc"].stop())
        prom.stop()
    c.check(all(rc == 0 for rc in rcs), "gpu-exporters exit 0 on SIGTERM", str(rcs))
    if c.failed:
        for p in procs + [prom]:
            print(f"--- {p.log_path} (tail)")
            print(p.output()[-3000:])
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
