#!/usr/bin/env python3
"""gpu-exporter and power-exporter's GPU path on a real NVIDIA GPU: checks and figures.

Runs only where a GPU and its driver are (nvidia-smi on PATH, libnvidia-ml.so.1 loadable);
nothing here is part of the test run, which has no GPU. On such a machine:

    cargo build --release -p gpu-exporter -p power-exporter
    python3 bench/gpu_real.py --out /tmp/gpu-real        # about 2 minutes

Started, all on loopback:

    nvml      gpu-exporter --backend=nvml --metrics.dcgm-compat
    smi       gpu-exporter --backend=nvidia-smi --collect.interval=2s, its nvidia-smi run
              through a recorder that keeps every command line and answer (capture.txt, in
              the layout of the real captures the tests read, so the parser can be run on it)
    power     power-exporter (every collector, the real /sys), GPU through NVML, 1 s
    power-smi power-exporter --gpu.backend=nvidia-smi --gpu.interval=2s, GPU collector only

Then, in this order:

1. idle: every exporter's /metrics and /health; the two gpu-exporter backends compared value
   by value on every series both serve (exact for identities and sizes, with a tolerance for
   what moves between two reads: temperatures, power, clocks, utilization); power-exporter's
   GPU power against gpu-exporter's;
2. figures: the NVML backend scraped --scrapes times and the nvidia-smi backend a quarter of
   that, as Prometheus scrapes (gzip, kept-alive connection): CPU per scrape of the exporter
   process, latency p50/p99, RSS; the real nvidia-smi query the backend runs, timed (what a
   scrape would take with nvidia-smi inside it); `--once` from a cold start;
3. load (PyTorch matrix products for --load-seconds, if python3 has torch): scraped again,
   utilization, power, clocks and the process listing must move; the backends compared again;
4. SIGTERM: how long each exporter takes to exit.

Everything is written under --out: summary.json, report.md (what docs/gpu-exporter.md
quotes), each scrape, each log, and capture.txt. Exit status 1 when a check failed.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from odin import target_dir  # noqa: E402
from odin.exporters import Proc, free_port, http_get, wait_http  # noqa: E402
from odin.exposition import parse, sample  # noqa: E402
from odin.measure import close_all, cpu_seconds, memory_kib, scrape  # noqa: E402

RULE = "#" * 80

# How far two reads of the same GPU a second apart may differ and still agree.
# (absolute, relative); a series not listed must be equal.
MOVING = {
    "nvidia_gpu_temperature_celsius": (3, 0),
    "nvidia_gpu_memory_temperature_celsius": (3, 0),
    "nvidia_gpu_temperature_slowdown_margin_celsius": (3, 0),
    "nvidia_gpu_power_draw_watts": (15, 0.15),
    "nvidia_gpu_power_draw_instant_watts": (25, 0.25),
    "nvidia_gpu_utilization_percent": (100, 0),
    "nvidia_gpu_engine_utilization_ratio": (1, 0),
    "nvidia_gpu_clock_hertz": (0, 0.5),
    "nvidia_gpu_memory_used_bytes": (64 << 20, 0.02),
    "nvidia_gpu_memory_free_bytes": (64 << 20, 0.02),
    "nvidia_gpu_performance_state": (8, 0),
    "nvidia_gpu_clock_event_reason_active": (1, 0),
    # nvidia-smi's copy is up to --collect.interval (2 s here) older, and under load the
    # power cap counter runs at up to 1 s per second.
    "nvidia_gpu_clock_event_reason_seconds_total": (3, 0.05),
    "nvidia_gpu_energy_consumed_joules_total": (0, 0.01),
    "nvidia_gpu_pcie_link_generation": (5, 0),  # current generation drops at idle
    "nvidia_gpu_pcie_link_width_lanes": (16, 0),
    "nvidia_gpu_fan_speed_ratio": (0.1, 0),
}

RECORDER = r"""#!/bin/sh
# Runs nvidia-smi and appends the command line and its answer to $CAPTURE, headed like the
# real captures' sections; the phase word comes from $PHASE_FILE.
phase=$(cat "$PHASE_FILE" 2>/dev/null || echo idle)
out=$(nvidia-smi "$@" 2>&1); rc=$?
{
  echo "################################################################################"
  echo "# $phase :: gpu-exporter's nvidia-smi backend (exit $rc)"
  echo "# \$ nvidia-smi $*"
  echo "################################################################################"
  printf '%s\n' "$out"
} >> "$CAPTURE"
printf '%s\n' "$out"
exit $rc
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def get(port: int, path: str) -> str:
    status, _, body = http_get(f"http://127.0.0.1:{port}{path}", timeout=30)
    return body.decode() if isinstance(body, bytes) else body


def metrics(port: int) -> str:
    _, body, enc = scrape(port)
    return (gzip.decompress(body) if enc == "gzip" else body).decode()


def by_name(text: str) -> dict:
    samples, _ = parse(text)
    return samples


def compare_backends(a: dict, b: dict) -> tuple[list, list, list]:
    """(agreed, disagreed, only-in-one) over the nvidia_gpu_* series of the two backends."""
    agreed, disagreed, only = [], [], []
    skip = ("nvidia_gpu_backend_info", "nvidia_gpu_collector", "nvidia_gpu_exporter",
            "nvidia_gpu_scrape", "nvidia_gpu_last_collection", "nvidia_gpu_collection")
    keys = {k for k in set(a) | set(b) if k[0].startswith("nvidia_gpu_") and not k[0].startswith(skip)}
    for k in sorted(keys):
        if k not in a or k not in b:
            only.append((k, "nvml" if k in a else "nvidia-smi"))
            continue
        x, y = a[k], b[k]
        ab, rel = MOVING.get(k[0], (0, 0))
        tol = max(ab, rel * max(abs(x), abs(y)))
        # nvidia-smi prints MiB, MHz and W with two decimals: allow its rounding.
        tol = max(tol, 1.05 * 2**20 if k[0].endswith("_bytes") else 0, 0.01 * max(abs(x), abs(y)) * 0.01)
        (agreed if abs(x - y) <= tol else disagreed).append((k, x, y))
    return agreed, disagreed, only


def fmt_key(k) -> str:
    name, labels = k
    lab = ",".join(f'{n}="{v}"' for n, v in labels if n not in ("uuid", "gpu"))
    return f"{name}{{{lab}}}" if lab else name


def val(samples: dict, name: str, **want) -> list[float]:
    """The values of odin.exposition.sample."""
    return [v for _, v in sample(samples, name, **want)]


def bench(proc: Proc, port: int, n: int) -> dict:
    close_all()  # the exporter closes a connection idle since the last snapshot
    for _ in range(20):
        scrape(port)
    c0 = cpu_seconds(proc.p.pid)
    lat = []
    for _ in range(n):
        dt, _, _ = scrape(port)
        lat.append(dt)
    cpu = cpu_seconds(proc.p.pid) - c0
    lat.sort()
    rss, hwm = memory_kib(proc.p.pid)
    return {"scrapes": n, "cpu_ms_per_scrape": cpu / n * 1000, "p50_ms": statistics.median(lat) * 1000,
            "p99_ms": lat[int(0.99 * (n - 1))] * 1000, "max_ms": lat[-1] * 1000,
            "rss_mib": rss / 1024, "hwm_mib": hwm / 1024}


def torch_load(seconds: float, log_path: Path):
    code = textwrap.dedent(f"""
        import time, torch
        a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        end = time.time() + {seconds}
        n = 0
        while time.time() < end:
            for _ in range(20):
                c = a @ b
            torch.cuda.synchronize(); n += 20
        print("products", n, flush=True)
    """)
    return subprocess.Popen([sys.executable, "-c", code], stdout=open(log_path, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", type=Path, default=target_dir() / "release")
    ap.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="odin-gpu-real-")))
    ap.add_argument("--scrapes", type=int, default=2000)
    ap.add_argument("--load-seconds", type=float, default=30)
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"checks": {}, "figures": {}}
    failed: list[str] = []

    def check(name: str, ok: bool, detail) -> None:
        summary["checks"][name] = {"ok": bool(ok), "detail": detail}
        log(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
        if not ok:
            failed.append(name)

    smi = shutil.which("nvidia-smi")
    if not smi:
        print("no nvidia-smi on PATH: this script needs a GPU machine", file=sys.stderr)
        return 2
    for cmd, file in ((["nvidia-smi", "-L"], "nvidia-smi-L.txt"), (["nvidia-smi", "-q"], "nvidia-smi-q.txt"),
                      (["nvidia-smi", "--version"], "nvidia-smi-version.txt")):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        (out / file).write_text(r.stdout + r.stderr)
    summary["gpus"] = (out / "nvidia-smi-L.txt").read_text().strip().splitlines()
    summary["uname"] = os.uname().release
    log(f"GPUs: {summary['gpus']}")

    recorder = out / "nvidia-smi-recorder.sh"
    recorder.write_text(RECORDER)
    recorder.chmod(0o755)
    phase_file = out / "phase"
    phase_file.write_text("idle")
    capture = out / "capture.txt"
    capture.write_text(f"{RULE}\n# ODIN gpu_real.py capture: {summary['gpus']}\n# kernel {summary['uname']}\n{RULE}\n")
    env_rec = {"CAPTURE": str(capture), "PHASE_FILE": str(phase_file)}

    gpu_bin, power_bin = args.bin_dir / "gpu-exporter", args.bin_dir / "power-exporter"
    ports = {k: free_port() for k in ("nvml", "smi", "power", "power-smi")}
    argv = {
        "nvml": [gpu_bin, "--backend=nvml", "--metrics.dcgm-compat"],
        "smi": [gpu_bin, "--backend=nvidia-smi", "--collect.interval=2s", f"--nvidia-smi.command={recorder}"],
        "power": [power_bin, "--gpu.backend=nvml", "--gpu.interval=1s"],
        "power-smi": [power_bin, "--gpu.backend=nvidia-smi", "--gpu.interval=2s", "--no-collector.rapl",
                      "--no-collector.battery", "--no-collector.thermal", "--no-collector.hwmon"],
    }
    procs: dict[str, Proc] = {}
    load = None
    try:
        t_start = {}
        for name, a in argv.items():
            t_start[name] = time.monotonic()
            procs[name] = Proc([*a, f"--web.listen-address=127.0.0.1:{ports[name]}"], out / f"{name}.log",
                               env=env_rec)
        for name in procs:
            wait_http(f"http://127.0.0.1:{ports[name]}/ready", timeout=60)
            summary["figures"].setdefault("ready_s", {})[name] = round(time.monotonic() - t_start[name], 3)
        log(f"ready after {summary['figures']['ready_s']}")
        time.sleep(5)  # two nvidia-smi collections, five power reads

        def snapshot(phase: str) -> dict:
            close_all()
            snap = {}
            for name, port in ports.items():
                text = metrics(port)
                (out / f"{phase}-{name}.prom").write_text(text)
                (out / f"{phase}-{name}.health.json").write_text(get(port, "/health"))
                snap[name] = by_name(text)
            return snap

        def compare(phase: str, snap: dict) -> None:
            agreed, disagreed, only = compare_backends(snap["nvml"], snap["smi"])
            summary[f"{phase}_compare"] = {
                "agreed": len(agreed),
                "disagreed": [(fmt_key(k), x, y) for k, x, y in disagreed],
                "only": [(fmt_key(k), side) for k, side in only],
            }
            check(f"{phase}: NVML and nvidia-smi backends agree", not disagreed and len(agreed) > 20,
                  f"{len(agreed)} series agree, {len(disagreed)} differ: "
                  f"{[(fmt_key(k), x, y) for k, x, y in disagreed][:12]}")
            w_nvml = val(snap["nvml"], "nvidia_gpu_power_draw_watts")
            w_pow = val(snap["power"], "power_gpu_power_watts")
            w_pow_smi = val(snap["power-smi"], "power_gpu_power_watts")
            summary[f"{phase}_power"] = {"gpu-exporter": w_nvml, "power-exporter nvml": w_pow,
                                         "power-exporter nvidia-smi": w_pow_smi}
            ok = bool(w_nvml) and len(w_pow) == len(w_nvml) and len(w_pow_smi) == len(w_nvml) and all(
                abs(p - g) <= max(25, 0.25 * g) for p, g in zip(sorted(w_pow + w_pow_smi), sorted(w_nvml * 2)))
            check(f"{phase}: power-exporter's GPU power near gpu-exporter's", ok, summary[f"{phase}_power"])
            for name in ports:
                samples = snap[name]
                prefix = "nvidia_gpu" if name in ("nvml", "smi") else "power"
                bad = [fmt_key(k) for k, v in samples.items()
                       if k[0] == f"{prefix}_collector_success" and v != 1]
                check(f"{phase}: {name} collectors all succeed", not bad, bad or "all 1")

        snap = snapshot("idle")
        compare("idle", snap)
        n_gpus = len(summary["gpus"])
        check("idle: every GPU listed by both backends",
              len(val(snap["nvml"], "nvidia_gpu_info")) == n_gpus == len(val(snap["smi"], "nvidia_gpu_info")),
              {"nvidia-smi -L": n_gpus, "nvml": len(val(snap["nvml"], "nvidia_gpu_info")),
               "smi": len(val(snap["smi"], "nvidia_gpu_info"))})
        hydra = ["nvidia_gpu_temperature_celsius", "nvidia_gpu_power_draw_watts", "nvidia_gpu_memory_used_bytes",
                 "nvidia_gpu_memory_total_bytes", "nvidia_gpu_utilization_percent"]
        check("idle: Hydra's five series on both backends",
              all(val(snap[b], h) for b in ("nvml", "smi") for h in hydra),
              {b: {h: val(snap[b], h) for h in hydra} for b in ("nvml", "smi")})
        check("idle: DCGM family served", bool(val(snap["nvml"], "DCGM_FI_DEV_GPU_TEMP")),
              val(snap["nvml"], "DCGM_FI_DEV_GPU_TEMP"))

        # figures
        log("benchmark: NVML backend")
        summary["figures"]["nvml"] = bench(procs["nvml"], ports["nvml"], args.scrapes)
        log(f"  {summary['figures']['nvml']}")
        log("benchmark: nvidia-smi backend")
        summary["figures"]["smi"] = bench(procs["smi"], ports["smi"], max(100, args.scrapes // 4))
        log(f"  {summary['figures']['smi']}")
        query = next((line[4:] for line in capture.read_text().splitlines()
                      if line.startswith("# $ nvidia-smi --query-gpu=")), None)
        if query:
            times = []
            for _ in range(10):
                t0 = time.perf_counter()
                subprocess.run(query.split(), capture_output=True, timeout=60)
                times.append(time.perf_counter() - t0)
            summary["figures"]["nvidia_smi_query_ms"] = {"p50": statistics.median(times) * 1000,
                                                         "max": max(times) * 1000}
        once = []
        for _ in range(5):
            t0 = time.perf_counter()
            r = subprocess.run([gpu_bin, "--once", "--backend=nvml"], capture_output=True, timeout=60)
            once.append(time.perf_counter() - t0)
        summary["figures"]["once_nvml_ms"] = {"p50": statistics.median(once) * 1000, "max": max(once) * 1000,
                                              "exit": r.returncode}
        log(f"nvidia-smi query {summary['figures'].get('nvidia_smi_query_ms')}, --once {summary['figures']['once_nvml_ms']}")

        # load
        try:
            import importlib.util
            has_torch = importlib.util.find_spec("torch") is not None
        except Exception:  # noqa: BLE001
            has_torch = False
        if has_torch and args.load_seconds > 0:
            phase_file.write_text("load")
            load = torch_load(args.load_seconds, out / "load.log")
            time.sleep(min(15, args.load_seconds / 2))
            snap_load = snapshot("load")
            compare("load", snap_load)
            u = val(snap_load["nvml"], "nvidia_gpu_utilization_percent")
            w_idle = val(snap["nvml"], "nvidia_gpu_power_draw_watts")
            w_load = val(snap_load["nvml"], "nvidia_gpu_power_draw_watts")
            check("load: utilization seen", u and max(u) >= 50, u)
            check("load: power rises", w_load and w_idle and max(w_load) > max(w_idle) + 50,
                  {"idle": w_idle, "load": w_load})
            pids = {dict(k[1]).get("pid") for k in snap_load["nvml"] if k[0] == "nvidia_gpu_process_memory_used_bytes"}
            pids_smi = {dict(k[1]).get("pid") for k in snap_load["smi"] if k[0] == "nvidia_gpu_process_memory_used_bytes"}
            check("load: the load's process listed (pid)", str(load.pid) in pids,
                  {"load pid": load.pid, "nvml": sorted(pids), "nvidia-smi": sorted(pids_smi)})
            load.wait(timeout=args.load_seconds + 60)
            phase_file.write_text("after")
            time.sleep(4)
            snapshot("after")
        else:
            log("no torch in this python: load phase skipped")

        # SIGTERM
        exits = {}
        for name, p in procs.items():
            t0 = time.monotonic()
            rc = p.stop(timeout=15)
            exits[name] = {"rc": rc, "ms": round((time.monotonic() - t0) * 1000, 1)}
        summary["figures"]["sigterm"] = exits
        check("SIGTERM: every exporter exits 0 within 2 s",
              all(e["rc"] == 0 and e["ms"] < 2000 for e in exits.values()), exits)
    finally:
        if load and load.poll() is None:
            os.killpg(load.pid, signal.SIGKILL)
        for p in procs.values():
            p.stop()
        (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    log(f"{len(summary['checks']) - len(failed)} checks passed, {len(failed)} failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
