#!/usr/bin/env python3
"""All six exporters in one run, measured the same way, against their peers where one runs
here: one Markdown table (docs/benchmarks.md, "All six in one run").

Each exporter is started with the setup of its own benchmark (the `start*` functions of
bench/network_vs_node_exporter.py, power_vs_node_exporter.py, razer_absolute.py,
claude_vs_process_exporter.py and token_vs_ccusage.py; gpu-exporter as
`cargo bench -p gpu-exporter` runs it: the fake libnvidia-ml with 8 copies of the L40S
capture's GPU under load), beside its peer, and both are measured alike:

- scrapes as Prometheus sends them: `Accept-Encoding: gzip` over a kept-alive connection,
  --scrapes per exporter in --rounds alternating rounds (tests/odin/measure.py head_to_head),
  after 20 unmeasured ones;
- CPU per scrape: utime+stime of the server process (all threads, /proc/<pid>/stat) over the
  measured scrapes, divided by their number;
- latency p50/p99 as the client saw it; resident memory VmRSS after the scrapes;
- the image: docker/build.sh with buildah (another tag, localhost/odin-bench/NAME:bench,
  removed afterwards), the bytes of its layer as stored (what `buildah images` shows) and gzip
  compressed as `buildah push` writes it to an oci-archive (what a registry sends). Without
  buildah or root: the bytes of the files docker/rootfs.sh lays out, and the table says so.

The groups, one after another (each alternates only within itself):

  network-exporter    node_exporter with netdev, netstat, sockstat, tcpstat
  power-exporter      node_exporter with rapl, powersupplyclass, thermal_zone, hwmon, same tree
  gpu-exporter,       no peer runs here (dcgm-exporter needs a GPU and DCGM); both are shown
  razer-exporter      in absolute figures beside node_exporter with every collector off (the
                      floor of a Go exporter, scraped in the same rounds), for scale only
  claude-process-     process-exporter (default flags, a group per comm) on a host of
    exporter          --processes processes; --claude-scrapes scrapes each, in turn, at least
                      1 s apart per exporter (below 0.5 s claude-process-exporter serves its
                      last scan again; Prometheus scrapes every 15 s or more)
  token-collector     ccusage is a command, not a server: token-collector serving a generated
                      --token-tree-mib transcript tree (imported at start) is scraped, and
                      `ccusage daily --json --offline` is run on the same tree --ccusage-runs
                      times in the same rounds; a run is what a ccusage-based exporter would
                      pay per scrape. Its CPU is the process's own (wait4), its latency its
                      wall time, its memory its peak VmHWM.

Usage: python3 bench/all.py [--scrapes 2000] [--rounds 10] [--claude-scrapes 100]
         [--processes 2000] [--token-tree-mib 200] [--ccusage-runs 20] [--no-images]
(builds the six release binaries; about 3 minutes on 2 cores once they are built).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from odin import REPO, measure, shared_dir  # noqa: E402
from odin.claude import CCUSAGE, tool  # noqa: E402
from odin.exporters import Proc, free_port, http_get, wait_http  # noqa: E402
from odin.gpufakes import build_fake_nvml, fake_nvml_data  # noqa: E402
from odin.measure import cpu_seconds, memory_kib  # noqa: E402

import benchkit  # noqa: E402
import claude_vs_process_exporter as claude  # noqa: E402
import network_vs_node_exporter as network  # noqa: E402
import power_vs_node_exporter as power  # noqa: E402
import razer_absolute as razer  # noqa: E402
import token_vs_ccusage as token  # noqa: E402

# The README's order.
EXPORTERS = ["network-exporter", "gpu-exporter", "power-exporter", "claude-process-exporter",
             "token-collector", "razer-exporter"]
GPU_CAPTURE = "linux-x86_64__nvidia-l40s__595.80.txt"   # the one cargo bench uses (CAPTURES[4])
GPU_COPIES = 8
PEER_BINARIES = {"node_exporter": "/usr/bin/prometheus-node-exporter",
                 "process-exporter": claude.PEER_BIN, "ccusage": str(CCUSAGE)}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def row_of(r: dict, n: int) -> dict:
    """A row of measure.head_to_head (CPU s per 1,000 scrapes = ms per scrape) in this
    script's keys."""
    return {"cpu_ms": r["cpu_per_1000"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
            "rss_mib": r["rss_mib"], "n": n}


# ---------------------------------------------------------------- the groups

def group_pair(mod, label: str, bins: dict, work: Path, scrapes: int, rounds: int) -> tuple:
    """network or power: the script's own start(), then head_to_head. Like every group it
    returns (rows by name, {our exporter: (its peer's row or None, peer label)}, notes)."""
    targets = mod.start(bins[mod.OURS], work)
    try:
        rows, n = measure.head_to_head(targets, scrapes, rounds)
    finally:
        measure.close_all()
        benchkit.stop(targets)
    peer = f"{mod.PEER} ({mod.OURS})"
    return ({mod.OURS: row_of(rows[mod.OURS], n), peer: row_of(rows[mod.PEER], n)},
            {mod.OURS: (peer, label)}, None)


def start_gpu(gpu_bin: Path, work: Path) -> tuple[Proc, int]:
    """gpu-exporter on the NVML backend against the fake libnvidia-ml with GPU_COPIES copies
    of the capture's first GPU under load, as benches/scrape.rs starts it; serving GPU
    metrics."""
    lib = build_fake_nvml(work)
    data = work / "nvml.txt"
    data.write_text(fake_nvml_data(shared_dir() / "captures/nvidia-smi" / GPU_CAPTURE, "load",
                                   str(GPU_COPIES)))
    port = free_port()
    p = Proc([gpu_bin, f"--web.listen-address=127.0.0.1:{port}", "--backend=nvml",
              f"--nvml.library={lib}", "--metrics.dcgm-compat", "--log.level=warn"],
             work / "gpu.log", env={"FAKE_NVML_DATA": str(data)})
    deadline = time.time() + 30
    while True:
        try:
            _, _, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=2)
            if b"\nnvidia_gpu_temperature_celsius{" in body:
                return p, port
        except OSError:
            pass
        if time.time() > deadline or p.p.poll() is not None:
            p.stop()
            raise RuntimeError(f"gpu-exporter serves no GPU metrics:\n{p.tail()}")
        time.sleep(0.1)


def group_absolute(bins: dict, work: Path, scrapes: int, rounds: int) -> tuple:
    """gpu-exporter and razer-exporter (no peer runs here) with the node_exporter floor (row
    "floor"), in the same alternating rounds."""
    (work / "gpu").mkdir()
    (work / "razer").mkdir()
    targets = {}
    try:
        targets["gpu-exporter"] = start_gpu(bins["gpu-exporter"], work / "gpu")
        targets.update(razer.start(bins[razer.OURS], work / "razer"))
        rows, n = measure.head_to_head(targets, scrapes, rounds)
    finally:
        measure.close_all()
        benchkit.stop(targets)
    return ({"gpu-exporter": row_of(rows["gpu-exporter"], n), razer.OURS: row_of(rows[razer.OURS], n),
             "floor": row_of(rows[razer.FLOOR], n)},
            {"gpu-exporter": (None, "none¹"), razer.OURS: (None, "none¹")}, None)


def group_claude(label: str, bins: dict, work: Path, processes: int, scrapes: int, rounds: int) -> tuple:
    """claude-process-exporter and process-exporter (default flags) on the same host of
    `processes` processes, paced scrapes; notes: what the run saw of the host."""
    peer_name, peer_argv = claude.peer_spec(work)
    specs = [claude.our_spec(bins[claude.OURS]), (peer_name, peer_argv)]
    fleet, procs = claude.start_host(work, processes, specs)
    try:
        m = claude.measure_paced(procs, scrapes, rounds, interval=1.0, warmup=3)
    except BaseException:
        claude.explain_deaths(procs)
        raise
    finally:
        claude.stop_host(fleet, procs)
    rows = {name: {"cpu_ms": r["cpu_ms"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
                   "rss_mib": r["rss_mib"], "n": m["n"]} for name, r in claude.summarize(m).items()}
    return ({claude.OURS: rows[claude.OURS], "process-exporter": rows[peer_name]},
            {claude.OURS: ("process-exporter", label)},
            {"processes": (min(m["counts"]), max(m["counts"]))})


def group_token(label: str, bins: dict, work: Path, tree_mib: float, scrapes: int, runs: int,
                rounds: int) -> tuple:
    """token-collector serving a generated tree, scraped; `ccusage daily --json --offline` on
    the same tree, run in the same rounds."""
    cc = tool(CCUSAGE)
    home = work / "home"  # empty: no other data for either tool
    home.mkdir()
    tree = work / "tree"
    info = token.make_tree(tree, tree_mib)
    subprocess.run(f"cat $(find {tree} -name '*.jsonl') > /dev/null", shell=True, check=True)
    db = work / "db" / "state.db"
    db.parent.mkdir()
    p, port = token.serve(bins["token-collector"], tree, db, home, work / "token.log")
    try:
        t0 = time.perf_counter()
        wait_http(f"http://127.0.0.1:{port}/ready", timeout=300)
        ready_s = time.perf_counter() - t0
        import_cpu = cpu_seconds(p.p.pid)
        token.wait_idle(p.p.pid)
        for _ in range(20):
            measure.scrape(port)
        lat, cpu, cc_runs = [], 0.0, []
        per_round, runs_per_round = scrapes // rounds, max(1, runs // rounds)
        for _ in range(rounds):
            c0 = cpu_seconds(p.p.pid)
            for _ in range(per_round):
                lat.append(measure.scrape(port)[0])
            cpu += cpu_seconds(p.p.pid) - c0
            for _ in range(runs_per_round):
                m = token.run_measured([cc, "daily", "--json", "--offline"], token.cc_env(home, tree),
                                       work, work / f"ccusage-{len(cc_runs)}.out")
                if m["rc"] != 0:
                    raise RuntimeError(f"ccusage failed (rc {m['rc']}): {m['stderr']}")
                cc_runs.append(m)
        rss_kib = memory_kib(p.p.pid)[0]
    finally:
        measure.close_all()
        p.stop()
    n = per_round * rounds
    lat.sort()
    walls = sorted(m["wall"] for m in cc_runs)
    rows = {
        "token-collector": {"cpu_ms": cpu / n * 1000, "p50_ms": statistics.median(lat) * 1000,
                            "p99_ms": lat[int(0.99 * (n - 1))] * 1000, "rss_mib": rss_kib / 1024,
                            "n": n},
        "ccusage": {"cpu_ms": statistics.mean(m["cpu"] for m in cc_runs) * 1000,
                    "p50_ms": statistics.median(walls) * 1000,
                    "p99_ms": walls[int(0.99 * (len(walls) - 1))] * 1000,
                    "rss_mib": max(m["maxrss_kib"] for m in cc_runs) / 1024, "n": len(cc_runs)},
    }
    return (rows, {"token-collector": ("ccusage", label)},
            {"tree": info, "ready_s": ready_s, "import_cpu_s": import_cpu})


# ---------------------------------------------------------------- images

def oci_archive_layers(archive: Path) -> int:
    """Bytes of the (gzip) layers an oci-archive's manifest lists."""
    with tarfile.open(archive) as t:
        blob = lambda digest: json.load(t.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}"))  # noqa: E731
        index = json.load(t.extractfile("index.json"))
        manifest = blob(index["manifests"][0]["digest"])
        return sum(layer["size"] for layer in manifest["layers"])


def image_sizes(bins: dict, work: Path) -> tuple[dict, str]:
    """{name: (stored layer bytes, gzip layer bytes or None)} and how they were measured."""
    out = {}
    if shutil.which("buildah") and os.geteuid() == 0:
        bah = ["buildah", "--storage-driver", "vfs"]
        for name in EXPORTERS:
            tag = f"localhost/odin-bench/{name}:bench"
            subprocess.run(["bash", str(REPO / "docker/build.sh"), "--binary", str(bins[name]),
                            "--tag", tag, name], check=True, stdout=subprocess.DEVNULL)
            try:
                info = json.loads(subprocess.run([*bah, "inspect", "--type", "image", tag], check=True,
                                                 capture_output=True, text=True).stdout)
                stored = sum(layer["size"] for layer in json.loads(info["Manifest"])["layers"])
                archive = work / f"{name}.tar"
                subprocess.run([*bah, "push", "-q", tag, f"oci-archive:{archive}"], check=True,
                               stdout=subprocess.DEVNULL)
                out[name] = (stored, oci_archive_layers(archive))
                archive.unlink()
            finally:
                subprocess.run([*bah, "rmi", tag], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return out, "image"
    for name in EXPORTERS:
        root = work / f"rootfs-{name}"
        subprocess.run(["bash", str(REPO / "docker/rootfs.sh"), str(bins[name]), name, str(root)],
                       check=True, stdout=subprocess.DEVNULL)
        out[name] = (sum(f.lstat().st_size for f in root.rglob("*") if f.is_file() and not f.is_symlink()),
                     None)
    return out, "rootfs"


# ---------------------------------------------------------------- report

def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor())
    mem = next(int(ln.split()[1]) for ln in open("/proc/meminfo") if ln.startswith("MemTotal"))
    return f"{os.cpu_count()} vCPU {cpu}, Linux {platform.release()}, {mem / 1024 / 1024:.0f} GiB"


def commit() -> str:
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no",
                            "--", "exporters", "common", "Cargo.lock"],
                           capture_output=True, text=True).stdout.strip()
    return rev + (" (exporters' sources changed since)" if dirty else "")


def peer_version(path: str) -> str:
    """The first x.y.z its --version prints (process-exporter's Debian build has it only in
    the revision)."""
    flag = "-version" if path == claude.PEER_BIN else "--version"
    out = subprocess.run([path, flag], capture_output=True, text=True)
    found = re.search(r"\d+\.\d+\.\d+", out.stdout + out.stderr)
    return found.group(0) if found else "(version unknown)"


def ms(x: float) -> str:
    """Milliseconds, three significant digits below 100 (0.673, 2.50, 28.0), whole above."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}" if x >= 1 else f"{x:.3f}"


def ratio(a: float, b: float) -> str:
    r = a / b
    return f"1/{1 / r:,.0f}" if r < 0.01 else f"{r:.2g}" if r < 0.1 else f"{r:.2f}"


def mb(b: int) -> str:
    return f"{b / 1e6:.2f} MB"


def print_table(rows: dict, peers: dict, images: dict, how: str, floor: dict) -> None:
    print("| exporter | peer | CPU ms / scrape, ours / peer (ratio) | p50 ms, ours / peer | "
          "p99 ms, ours / peer | RSS MiB, ours / peer (ratio) | image² |")
    print("|---|---|---|---|---|---|---|")
    for name in EXPORTERS:
        a = rows[name]
        peer, label = peers[name]
        stored, gz = images[name]
        image = {"image": f"{mb(stored)} ({mb(gz) if gz else '?'} gzip)",
                 "rootfs": f"{mb(stored)} of files"}.get(how, "not measured")
        if peer is None:
            print(f"| {name} | {label} | {ms(a['cpu_ms'])} | {ms(a['p50_ms'])} | {ms(a['p99_ms'])} | "
                  f"{a['rss_mib']:.1f} | {image} |")
            continue
        b = rows[peer]
        print(f"| {name} | {label} | {ms(a['cpu_ms'])} / {ms(b['cpu_ms'])} "
              f"(**{ratio(a['cpu_ms'], b['cpu_ms'])}**) | {ms(a['p50_ms'])} / {ms(b['p50_ms'])} | "
              f"{ms(a['p99_ms'])} / {ms(b['p99_ms'])} | {a['rss_mib']:.1f} / {b['rss_mib']:.1f} "
              f"(**{ratio(a['rss_mib'], b['rss_mib'])}**) | {image} |")
    f = floor
    print(f"| *scale:* node_exporter, every collector off | | {ms(f['cpu_ms'])} | {ms(f['p50_ms'])} | "
          f"{ms(f['p99_ms'])} | {f['rss_mib']:.1f} | |")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scrapes", type=int, default=2000,
                    help="scrapes per exporter (all but claude-process-exporter and its peer)")
    ap.add_argument("--rounds", type=int, default=10, help="alternating rounds per group")
    ap.add_argument("--claude-scrapes", type=int, default=100,
                    help="scrapes of claude-process-exporter and process-exporter, 1 s apart each")
    ap.add_argument("--processes", type=int, default=2000, help="processes on the host of that group")
    ap.add_argument("--token-tree-mib", type=float, default=200, help="transcript tree of the token group")
    ap.add_argument("--ccusage-runs", type=int, default=20, help="ccusage runs in the token group")
    ap.add_argument("--no-images", action="store_true", help="skip the image sizes")
    args = ap.parse_args()
    started = time.perf_counter()
    load0 = os.getloadavg()
    when = datetime.now(timezone.utc)

    log("building the six release binaries and the fake NVML's data tool")
    bins = benchkit.build(*EXPORTERS)
    subprocess.run(["cargo", "build", "--locked", "-q", "-p", "gpu-exporter", "--example", "fake-nvml-data"],
                   cwd=REPO, check=True)
    build_s = time.perf_counter() - started
    for name, path in PEER_BINARIES.items():
        if not os.access(path, os.X_OK):
            print(f"{path} missing ({name}): scripts/setup.sh installs it", file=sys.stderr)
            return 2

    versions = {name: peer_version(path) for name, path in PEER_BINARIES.items()}
    work = Path(tempfile.mkdtemp(prefix="odin-bench-all-"))
    node = f"node_exporter {versions['node_exporter']}"
    groups = [
        ("network", f"network-exporter against node_exporter, {args.scrapes} scrapes each",
         lambda w: group_pair(network, f"{node}, its 4 network collectors", bins, w, args.scrapes,
                              args.rounds)),
        ("power", f"power-exporter against node_exporter, {args.scrapes} scrapes each",
         lambda w: group_pair(power, f"{node}, rapl, powersupplyclass, thermal_zone, hwmon", bins, w,
                              args.scrapes, args.rounds)),
        ("gpu, razer", f"gpu-exporter and razer-exporter beside the node_exporter floor, "
                       f"{args.scrapes} scrapes each",
         lambda w: group_absolute(bins, w, args.scrapes, args.rounds)),
        ("claude", f"claude-process-exporter against process-exporter on {args.processes} processes, "
                   f"{args.claude_scrapes} scrapes each, 1 s apart",
         lambda w: group_claude(f"process-exporter {versions['process-exporter']}³", bins, w,
                                args.processes, args.claude_scrapes, args.rounds)),
        ("token", f"token-collector scraped {args.scrapes} times, ccusage run {args.ccusage_runs} "
                  f"times, on a {args.token_tree_mib:g} MiB tree",
         lambda w: group_token(f"ccusage {versions['ccusage']}, one run⁴", bins, w, args.token_tree_mib,
                               args.scrapes, args.ccusage_runs, args.rounds)),
    ]
    rows, peers, notes, timing = {}, {}, {}, {}
    try:
        for key, what, run in groups:
            t = time.perf_counter()
            log(what)
            w = work / key.replace(", ", "-")
            w.mkdir()
            r, p, notes[key] = run(w)
            rows.update(r)
            peers.update(p)
            timing[key] = time.perf_counter() - t

        t = time.perf_counter()
        if args.no_images:
            images, how = {name: (0, 0) for name in EXPORTERS}, "skipped"
        else:
            log("images: docker/build.sh for each exporter")
            (work / "images").mkdir()
            images, how = image_sizes(bins, work / "images")
        timing["images"] = time.perf_counter() - t
    finally:
        shutil.rmtree(work, ignore_errors=True)

    total = time.perf_counter() - started
    load1 = os.getloadavg()
    print(f"\n{when:%Y-%m-%d %H:%M} UTC, {machine()}; commit {commit()}; load average "
          f"{load0[0]:.2f} at the start, {load1[0]:.2f} at the end. {total:.0f} s in all "
          f"({build_s:.0f} s building; " + ", ".join(f"{k} {v:.0f} s" for k, v in timing.items()) + ").\n")
    print_table(rows, peers, images, how, rows["floor"])
    c, tk = notes["claude"], notes["token"]
    tree = tk["tree"]
    print(f"\n{rows['network-exporter']['n']} scrapes per exporter in {args.rounds} alternating rounds "
          f"(claude-process-exporter and process-exporter: {rows[claude.OURS]['n']}), after 20 "
          "unmeasured ones; gzip, one kept-alive connection each. CPU: utime+stime of the server "
          "process over the measured scrapes. RSS: VmRSS after them.\n")
    print(f"¹ No peer runs here: gpu-exporter's (dcgm-exporter) needs a GPU and DCGM; no other Razer "
          f"exporter exists. Absolute figures; gpu-exporter on the fake libnvidia-ml with "
          f"{GPU_COPIES} copies of the {GPU_CAPTURE.split('__')[1]} capture's GPU under load (NVML "
          "read on every scrape), razer-exporter on the desk fixture (6 openrazer devices) and the "
          "Blade replay. For scale, the last row: node_exporter with every collector off, scraped "
          "in the same rounds.")
    if how == "image":
        print("\n² Image: docker/build.sh (buildah, `scratch`, the stripped release binary and the "
              "libraries it needs); the first figure is the layer as stored (`buildah images`), the "
              "second gzip compressed as `buildah push` writes it (what a registry sends). The peers' "
              "images were not measured (no registry here); their binaries: " +
              ", ".join(f"{k} {mb(os.stat(v).st_size)}" for k, v in PEER_BINARIES.items()) + ".")
    elif how == "rootfs":
        print("\n² No image built (buildah missing or not root): the bytes of the files "
              "docker/rootfs.sh lays out for the image (binary, libraries, /etc/passwd, /etc/group).")
    print(f"\n³ process-exporter with its default flags and a group per comm, on a host of "
          f"{c['processes'][0]}–{c['processes'][1]} processes (5 fake Claude Code instances among "
          "them); two scrapes of one exporter at least 1 s apart, CPU counted to 0.5 s after the "
          "last scrape (bench/claude_vs_process_exporter.py).")
    print(f"\n⁴ ccusage is a command, not a server: its column is one `ccusage daily --json "
          f"--offline` run over the same {tree['bytes'] / 2**20:.0f} MiB transcript tree "
          f"({tree['files']:,} files, {tree['responses']:,} responses) that token-collector serves, "
          f"which is what an exporter built on ccusage would pay per scrape; {rows['ccusage']['n']} "
          "runs in the same rounds. CPU from wait4, latency = wall time, RSS = the run's peak "
          f"(VmHWM). token-collector imported the tree once at start ({tk['import_cpu_s']:.2f} s CPU, "
          f"ready after {tk['ready_s']:.2f} s) and then follows it; scrapes read its database. The "
          "ratio grows with the tree (ccusage rereads all of it per run).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
