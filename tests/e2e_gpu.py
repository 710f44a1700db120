#!/usr/bin/env python3
"""End to end: a real Prometheus scrapes the real gpu-exporter binary on the nvidia-smi backend.

No GPU needed: two gpu-exporters run `--backend=nvidia-smi` with the fake nvidia-smi
(exporters/gpu-exporter/tests/fake-nvidia-smi) answering from real captures in
shared/captures/nvidia-smi/: an RTX 4080 SUPER at idle and an H100 under load, both with
`--metrics.dcgm-compat --collect.interval=1s`. Each gets a small fixture /sys (the GPU's
runtime_status is "active", so it is read, not reported suspended) and a fixture /proc (one
GPU process has a /proc/<pid>/comm, the others fall back to the driver's name). Prometheus
loads every rule file of rules/. Then:
- both targets are up, every rule loaded, no rule evaluation errors;
- values read off the captures arrive unchanged, in base units, and the DCGM family agrees
  with the native one (dcgm-exporter's units and labels);
- `promtool check metrics` finds nothing but the upper-case DCGM_* names (exempt by design);
- served families are documented in docs/metrics.md with their type and labels, and those
  whose only source is NVML are not served on this backend;
- every metric the GPU rules and the GPU/overview dashboards use is in the live output,
  except the NVML-only ones and those both captures report as [N/A] (listed with reasons);
- every query and template variable of dashboards/gpu.json and dashboards/overview.json
  returns data (dashboards/e2e-allow-empty-gpu.tsv lists the NVML-only panels);
- every query and template variable of Grafana dashboard 12239 (dcgm-exporter's, read from
  shared/dashboards-upstream/) returns data, except DCGM_FI_PROF_PIPE_TENSOR_ACTIVE
  (a DCGM profiling counter that NVML cannot read);
- the exporters exit 0 on SIGTERM.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from odintest import (REPO, Checks, Proc, binary, family_of, free_port, http_get,  # noqa: E402
                      parse_exposition, prom_query, shared_dir, wait_http)

FAKE_SMI = REPO / "exporters/gpu-exporter/tests/fake-nvidia-smi"
DASHBOARD_12239 = "dashboards-upstream/dcgm-exporter-dashboard-12239.json"
# Panels of 12239 whose metric NVML cannot provide (named in README.md, gpu-exporter section).
OUT_OF_NVML_REACH = {
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "a DCGM profiling counter (tensor pipe activity) "
                                       "that NVML has no call for",
}
# Documented metrics that both captures report as unknown, so no series is right here.
CAPTURE_NA = {
    "nvidia_gpu_retired_pages": "retired_pages.* is [N/A] on both GPUs (the H100 remaps rows)",
    "nvidia_gpu_retired_pages_pending": "retired_pages.pending is [N/A] on both GPUs",
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


def main() -> int:
    c = Checks("e2e-gpu")
    exporter = binary("gpu-exporter")
    captures = shared_dir() / "captures" / "nvidia-smi"
    work = Path(tempfile.mkdtemp(prefix="odin-e2e-gpu-"))
    docs = documented_gpu()
    nvml = nvml_only(docs)
    c.check(bool(nvml) and "nvidia_gpu_energy_consumed_joules_total" in nvml,
            f"docs/metrics.md names NVML-only metrics ({len(nvml)})", str(sorted(nvml)))

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

    prom_port = free_port()
    rules = ", ".join(f"'{p}'" for p in rule_files())
    targets = "\n".join(
        f"      - targets: ['127.0.0.1:{e['port']}']\n        labels: {{host: {e['host']}}}"
        for e in EXPORTERS)
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
        for e in EXPORTERS:
            wait_http(f"http://127.0.0.1:{e['port']}/ready", timeout=30)
        wait_http(f"{base}/-/ready", timeout=60)
        deadline = time.time() + 60
        while time.time() < deadline:
            res = prom_query(base, 'count_over_time(up{job="gpu-exporter"}[1m])')
            if len(res) == len(EXPORTERS) and min(float(r["value"][1]) for r in res) >= 8:
                break
            time.sleep(1)

        ups = prom_query(base, 'up{job="gpu-exporter"}')
        c.check(len(ups) == len(EXPORTERS) and all(r["value"][1] == "1" for r in ups),
                "Prometheus scrapes both gpu-exporters (up == 1)", str(ups))

        _, _, body = http_get(f"{base}/api/v1/rules")
        groups = json.loads(body)["data"]["groups"]
        loaded = sum(len(g["rules"]) for g in groups)
        declared = sum(len(re.findall(r"^\s*- (alert|record):", f.read_text(), re.M))
                       for f in rule_files())
        c.check(loaded == declared and loaded > 0, f"every rule of rules/*.yml loaded ({loaded}/{declared})")
        bad = [r["name"] for g in groups for r in g["rules"] if r.get("health") not in ("ok", None)]
        c.check(not bad, "no rule evaluation errors", str(bad))

        texts = {}
        for e in EXPORTERS:
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
        for text in texts.values():
            samples, t = parse_exposition(text)
            types.update(t)
            for (name, labels) in samples:
                fam = family_of(name, t)
                served.setdefault(fam, set()).update(k for k, _ in labels if k != "le")
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
        leaked = sorted(set(served) & nvml)
        c.check(not leaked, "no NVML-only family is served on the nvidia-smi backend", str(leaked))

        # ---------------------------------------------------------------- rules and dashboards
        live = set(served)
        print("  note: NVML-only, not checked on this backend: " + ", ".join(sorted(nvml)))
        for name, why in sorted(CAPTURE_NA.items()):
            print(f"  note: {name} not checked: {why}")
        excused = nvml | set(CAPTURE_NA)

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
        # The variables resolve to both exporters and their GPU.
        for var, label in (("instance", "instance"), ("gpu", "gpu")):
            _, _, body = http_get(f"{base}/api/v1/label/{label}/values?match[]=DCGM_FI_DEV_GPU_TEMP")
            values = json.loads(body).get("data", [])
            want = {f"127.0.0.1:{e['port']}" for e in EXPORTERS} if var == "instance" else {"0"}
            c.check(set(values) == want, f"dashboard 12239: ${var} lists {sorted(want)}", str(values))
    finally:
        for e in EXPORTERS:
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
